//! The log: numbered segment files in one directory, replayed in order on open.
//!
//! Files are named `00000001.wal`, `00000002.wal`, … Every segment but the last must end in a
//! clean state (the log only moves to a new segment after a commit), and each must start
//! with the sequence number the previous one ended at; anything else is corruption, and
//! opening fails with the file and offset. The last segment may end in a torn tail, which is
//! truncated (see [`segment`](super::segment) for the rule).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::file::{FsStorage, ReadAt, Storage};
use super::record::Kind;
use super::segment::{AppendError, ScanEnd, Segment, header_bytes, scan};

/// Why the log cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Damage the recovery rule does not allow.
    #[error("{path}: corrupt at offset {offset}: {why}")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What.
        why: String,
    },
    /// A record larger than a whole segment.
    #[error("record of {0} bytes does not fit in a segment")]
    TooLarge(usize),
}

fn io_at(path: PathBuf) -> impl FnOnce(io::Error) -> LogError {
    move |source| LogError::Io { path, source }
}

/// Where a record is: its segment, its offset there, and its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Place {
    /// The segment's number.
    pub segment: u64,
    /// The record's first byte in the segment.
    pub offset: u64,
    /// The record's sequence number.
    pub seq: u64,
}

/// An open log.
#[derive(Debug)]
pub struct Log<S: Storage = FsStorage> {
    storage: S,
    capacity: u64,
    /// Number of the oldest segment kept.
    first: u64,
    /// Number of the segment being written.
    number: u64,
    current: Segment<S::File>,
    syncs: u64,
}

/// What [`Log::open`] found, besides the records it handed to the visitor.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recovered {
    /// Committed records.
    pub records: u64,
    /// Segments read.
    pub segments: usize,
    /// Bytes of segment files read.
    pub bytes: u64,
}

/// Every record of a log, as [`Log::open`] collects them.
pub type Records = Vec<(Place, Kind, Vec<u8>)>;

impl Log<FsStorage> {
    /// Opens the log in directory `dir` (see [`Log::open_in`]), collecting every record:
    /// for tests and tools; the broker streams them instead.
    pub fn open(dir: &Path, capacity: u64) -> Result<(Self, Records), LogError> {
        let storage = FsStorage::new(dir).map_err(io_at(dir.to_path_buf()))?;
        let mut records = Vec::new();
        let (log, _) = Log::open_in(storage, capacity, |place, kind, payload| {
            records.push((place, kind, payload.to_vec()));
            Ok(())
        })?;
        Ok((log, records))
    }
}

impl<S: Storage> Log<S> {
    /// Opens (creating if needed) the log in `storage` with segments of `capacity` bytes,
    /// handing every committed record, in order, to `visit`. A visitor error stops the open
    /// and is reported as corruption at that record.
    pub fn open_in(
        mut storage: S,
        capacity: u64,
        mut visit: impl FnMut(Place, Kind, &[u8]) -> Result<(), String>,
    ) -> Result<(Self, Recovered), LogError> {
        let numbers = storage.numbers().map_err(io_at(storage.name(0)))?;
        let mut recovered = Recovered::default();
        let mut last = None;
        let mut expected_seq: Option<u64> = None;
        let mut max_generation = 0;
        for (i, &number) in numbers.iter().enumerate() {
            let path = storage.name(number);
            if i > 0 && numbers.get(i - 1) != Some(&(number - 1)) {
                return Err(LogError::Corrupt {
                    path,
                    offset: 0,
                    why: "the segment before it is missing".into(),
                });
            }
            let file = storage.open(number).map_err(io_at(path.clone()))?;
            let s = scan(&file).map_err(io_at(path.clone()))?;
            let is_last = i + 1 == numbers.len();
            if let Some(seq) = expected_seq
                && s.first_seq != seq
            {
                return Err(LogError::Corrupt {
                    path,
                    offset: 0,
                    why: format!("starts at record {}, expected {seq}", s.first_seq),
                });
            }
            match &s.end {
                ScanEnd::Corrupt { offset, why } => {
                    return Err(LogError::Corrupt {
                        path,
                        offset: *offset,
                        why: (*why).to_string(),
                    });
                }
                ScanEnd::TornTail { offset } if !is_last => {
                    return Err(LogError::Corrupt {
                        path,
                        offset: *offset,
                        why: "damaged record in a segment that is not the last".into(),
                    });
                }
                _ => {}
            }
            for r in &s.records {
                let place = Place {
                    segment: number,
                    offset: r.offset,
                    seq: r.seq,
                };
                visit(place, r.kind, s.payload(r)).map_err(|why| LogError::Corrupt {
                    path: path.clone(),
                    offset: r.offset,
                    why,
                })?;
            }
            expected_seq = Some(s.next_seq);
            max_generation = max_generation.max(s.generation);
            recovered.segments += 1;
            recovered.records += s.records.len() as u64;
            recovered.bytes += s.data.len() as u64;
            if is_last {
                last = Some((number, s, file));
            }
        }
        let first = numbers.first().copied().unwrap_or(1);
        let (number, current) = match last {
            Some((number, s, file)) => {
                let seg = Segment::resume(file, &s, capacity.max(s.dirty_end))
                    .map_err(io_at(storage.name(number)))?;
                (number, seg)
            }
            None => {
                let path = storage.name(1);
                let generation = max_generation + 1;
                let file = storage
                    .create(1, capacity, &header_bytes(generation, 0))
                    .map_err(io_at(path))?;
                (1, Segment::start(file, generation, 0, capacity))
            }
        };
        Ok((
            Self {
                storage,
                capacity,
                first,
                number,
                current,
                syncs: 0,
            },
            recovered,
        ))
    }

    /// Adds a record to the open batch, moving to a new segment (after committing the batch
    /// so far) when this one is full. Returns where the record will be.
    pub fn append(&mut self, kind: Kind, payload: &[u8]) -> Result<Place, LogError> {
        self.append_with(kind, payload.len(), &mut |out| {
            out.extend_from_slice(payload)
        })
    }

    /// [`Log::append`] with the payload of `len` bytes written by `fill` (called once, or
    /// twice if the first segment had no room).
    pub fn append_with(
        &mut self,
        kind: Kind,
        len: usize,
        fill: &mut dyn FnMut(&mut Vec<u8>),
    ) -> Result<Place, LogError> {
        let offset = self.current.next_offset();
        match self.current.append_with(kind, len, fill) {
            Ok(seq) => Ok(Place {
                segment: self.number,
                offset,
                seq,
            }),
            Err(AppendError::Full) => {
                self.commit()?;
                self.roll()?;
                let offset = self.current.next_offset();
                let seq = self
                    .current
                    .append_with(kind, len, fill)
                    .map_err(|_| LogError::TooLarge(len))?;
                Ok(Place {
                    segment: self.number,
                    offset,
                    seq,
                })
            }
            Err(AppendError::Failed) => Err(LogError::Io {
                path: self.storage.name(self.number),
                source: io::Error::other("the log failed earlier"),
            }),
        }
    }

    /// Writes and syncs the open batch; once this returns `Ok` its records survive a crash.
    pub fn commit(&mut self) -> Result<(), LogError> {
        self.commit_with(true)
    }

    /// Writes the open batch, syncing it only if `sync` (see [`Segment::commit_with`]).
    pub fn commit_with(&mut self, sync: bool) -> Result<(), LogError> {
        let path = self.storage.name(self.number);
        self.current.commit_with(sync).map_err(io_at(path))?;
        if sync {
            self.syncs += 1;
        }
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn sync(&mut self) -> Result<(), LogError> {
        let path = self.storage.name(self.number);
        self.current.sync().map_err(io_at(path))?;
        self.syncs += 1;
        Ok(())
    }

    /// `fdatasync` calls made through [`Log::commit`] and [`Log::sync`] so far.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// The oldest segment kept and the one being written.
    pub fn segments(&self) -> (u64, u64) {
        (self.first, self.number)
    }

    /// The segment size.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Drops the oldest segments up to and including `number` (never the one being written),
    /// oldest first, so a crash in between leaves no gap.
    pub fn retire_through(&mut self, number: u64) -> Result<(), LogError> {
        while self.first <= number && self.first < self.number {
            let path = self.storage.name(self.first);
            self.storage.retire(self.first).map_err(io_at(path))?;
            self.first += 1;
        }
        Ok(())
    }

    /// A reader for segment `number`, usable from other threads.
    pub fn reader(&self, number: u64) -> Result<Arc<dyn ReadAt>, LogError> {
        self.storage
            .reader(number)
            .map_err(io_at(self.storage.name(number)))
    }

    /// The storage underneath.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Moves to a new segment. Only called right after a commit (which synced), so every
    /// segment but the last always ends clean.
    pub fn roll(&mut self) -> Result<(), LogError> {
        let next = self.number + 1;
        let path = self.storage.name(next);
        let seq = self.current.next_seq();
        let generation = self.current.generation() + 1;
        let file = self
            .storage
            .create(next, self.capacity, &header_bytes(generation, seq))
            .map_err(io_at(path))?;
        let buffer = self.current.take_buffer();
        self.current = Segment::start(file, generation, seq, self.capacity).with_buffer(buffer);
        self.number = next;
        Ok(())
    }
}

/// One segment as [`check`] found it.
#[derive(Debug, Clone)]
pub struct SegmentReport {
    /// The file.
    pub path: PathBuf,
    /// Its generation and first sequence number, if the header is readable.
    pub generation: Option<u32>,
    /// Its first sequence number.
    pub first_seq: Option<u64>,
    /// Committed records.
    pub records: usize,
    /// How it ends (or why it could not be read).
    pub end: String,
    /// Whether this segment would stop the broker from starting.
    pub fatal: bool,
}

/// Reads every segment in `dir` without changing anything, under the same rules as
/// [`Log::open`]: what `ferry wal check` prints.
pub fn check(dir: &Path) -> Result<Vec<SegmentReport>, LogError> {
    let storage = FsStorage::existing(dir);
    let numbers = storage.numbers().map_err(io_at(dir.to_path_buf()))?;
    let mut out = Vec::new();
    let mut expected_seq: Option<u64> = None;
    for (i, &number) in numbers.iter().enumerate() {
        let path = storage.name(number);
        let is_last = i + 1 == numbers.len();
        let file = std::fs::File::open(&path)
            .map(super::file::FsFile)
            .map_err(io_at(path.clone()))?;
        let report = match scan(&file) {
            Err(e) => SegmentReport {
                path,
                generation: None,
                first_seq: None,
                records: 0,
                end: format!("unreadable: {e}"),
                fatal: true,
            },
            Ok(s) => {
                let gap = expected_seq.filter(|&seq| seq != s.first_seq);
                let (end, fatal) = match (&s.end, gap) {
                    (_, Some(seq)) => (
                        format!("starts at record {}, expected {seq}", s.first_seq),
                        true,
                    ),
                    (ScanEnd::Clean { offset }, None) => {
                        (format!("clean, ends at {offset}"), false)
                    }
                    (ScanEnd::TornTail { offset }, None) if is_last => (
                        format!("unfinished write at {offset}, would be truncated"),
                        false,
                    ),
                    (ScanEnd::TornTail { offset }, None) => (
                        format!("damaged record at {offset} before the last segment"),
                        true,
                    ),
                    (ScanEnd::Corrupt { offset, why }, None) => {
                        (format!("corrupt at {offset}: {why}"), true)
                    }
                };
                expected_seq = Some(s.next_seq);
                SegmentReport {
                    path,
                    generation: Some(s.generation),
                    first_seq: Some(s.first_seq),
                    records: s.records.len(),
                    end,
                    fatal,
                }
            }
        };
        out.push(report);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ferry-log-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn records_survive_reopening_across_segments() {
        let dir = temp_dir("reopen");
        let (mut log, r) = Log::open(&dir, 8192).unwrap();
        assert!(r.is_empty());
        for i in 0..300u32 {
            log.append(Kind::Enqueue, &i.to_le_bytes()).unwrap();
            if i % 7 == 0 {
                log.commit().unwrap();
            }
        }
        log.commit().unwrap();
        drop(log);
        let (mut log, r) = Log::open(&dir, 8192).unwrap();
        assert!(r.last().unwrap().0.segment > 1);
        let got: Vec<u32> = r
            .iter()
            .map(|(_, _, p)| u32::from_le_bytes(p.clone().try_into().unwrap()))
            .collect();
        assert_eq!(got, (0..300).collect::<Vec<_>>());
        // And the log goes on where it stopped.
        log.append(Kind::Settle, b"after").unwrap();
        log.commit().unwrap();
        drop(log);
        let (_, r) = Log::open(&dir, 8192).unwrap();
        assert_eq!(r.len(), 301);
        assert_eq!(r.last().unwrap().2, b"after");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damage_in_an_earlier_segment_refuses_the_log_and_names_the_place() {
        let dir = temp_dir("corrupt");
        let (mut log, _) = Log::open(&dir, 4096).unwrap();
        for i in 0..200u32 {
            log.append(Kind::Enqueue, &[i as u8; 40]).unwrap();
            log.commit().unwrap();
        }
        drop(log);
        let first = dir.join("00000001.wal");
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[200] ^= 0x10;
        std::fs::write(&first, &bytes).unwrap();
        let err = Log::open(&dir, 4096).unwrap_err().to_string();
        assert!(
            err.contains("00000001.wal") && err.contains("offset"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
