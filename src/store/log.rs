//! The log: numbered segment files in one directory, replayed in order on open.
//!
//! Files are named `00000001.wal`, `00000002.wal`, … Every segment but the last must end in a
//! clean state (the log only moves to a new segment after a commit), and each must start
//! with the sequence number the previous one ended at; anything else is corruption, and
//! opening fails with the file and offset. The last segment may end in a torn tail, which is
//! truncated (see [`segment`](super::segment) for the rule).

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};

use super::file::FsFile;
use super::record::Kind;
use super::segment::{AppendError, Scan, ScanEnd, Scanned, Segment, scan};

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

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An open log.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    capacity: u64,
    /// Number of the segment being written.
    number: u64,
    current: Segment<FsFile>,
    syncs: u64,
}

/// What [`Log::open`] found: every committed record, in order.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The records.
    pub records: Vec<Scanned>,
    /// Segments read.
    pub segments: usize,
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:08}.wal"))
}

/// The numbers of the segment files in `dir`, in order.
fn segment_numbers(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut numbers: Vec<u64> = std::fs::read_dir(dir)
        .map_err(io_at(dir))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".wal")?.parse().ok()
        })
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}

fn open_file(path: &Path, capacity: u64) -> Result<FsFile, LogError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_at(path))?;
    let mut file = FsFile(f);
    file.preallocate(capacity).map_err(io_at(path))?;
    Ok(file)
}

impl Log {
    /// Opens (creating if needed) the log in `dir` with segments of `capacity` bytes, and
    /// returns what it holds.
    pub fn open(dir: &Path, capacity: u64) -> Result<(Self, Recovered), LogError> {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        let numbers = segment_numbers(dir)?;
        let mut recovered = Recovered::default();
        let mut last: Option<(u64, Scan, FsFile)> = None;
        let mut expected_seq: Option<u64> = None;
        for (i, &number) in numbers.iter().enumerate() {
            let path = segment_path(dir, number);
            let file = open_file(&path, 0)?;
            let s = scan(&file).map_err(io_at(&path))?;
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
            expected_seq = Some(s.next_seq);
            recovered.segments += 1;
            recovered.records.extend(s.records.iter().cloned());
            if is_last {
                last = Some((number, s, file));
            }
        }
        let (number, current) = match last {
            Some((number, s, file)) => {
                let path = segment_path(dir, number);
                let seg =
                    Segment::resume(file, &s, capacity.max(s.dirty_end)).map_err(io_at(&path))?;
                (number, seg)
            }
            None => {
                let path = segment_path(dir, 1);
                let file = open_file(&path, capacity)?;
                (
                    1,
                    Segment::create(file, 1, 0, capacity).map_err(io_at(&path))?,
                )
            }
        };
        Ok((
            Self {
                dir: dir.to_path_buf(),
                capacity,
                number,
                current,
                syncs: 0,
            },
            recovered,
        ))
    }

    /// Adds a record to the open batch, moving to a new segment (after committing the batch
    /// so far) when this one is full. Returns the record's sequence number.
    pub fn append(&mut self, kind: Kind, payload: &[u8]) -> Result<u64, LogError> {
        match self.current.append(kind, payload) {
            Ok(seq) => Ok(seq),
            Err(AppendError::Full) => {
                self.commit()?;
                self.roll()?;
                self.current
                    .append(kind, payload)
                    .map_err(|_| LogError::TooLarge(payload.len()))
            }
            Err(AppendError::Failed) => Err(LogError::Io {
                path: segment_path(&self.dir, self.number),
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
        let path = segment_path(&self.dir, self.number);
        self.current.commit_with(sync).map_err(io_at(&path))?;
        if sync {
            self.syncs += 1;
        }
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn sync(&mut self) -> Result<(), LogError> {
        let path = segment_path(&self.dir, self.number);
        self.current.sync().map_err(io_at(&path))?;
        self.syncs += 1;
        Ok(())
    }

    /// `fdatasync` calls made through [`Log::commit`] and [`Log::sync`] so far.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    fn roll(&mut self) -> Result<(), LogError> {
        let next = self.number + 1;
        let path = segment_path(&self.dir, next);
        let file = open_file(&path, self.capacity)?;
        let seq = self.current.next_seq();
        self.current = Segment::create(file, 1, seq, self.capacity).map_err(io_at(&path))?;
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
    let numbers = segment_numbers(dir)?;
    let mut out = Vec::new();
    let mut expected_seq: Option<u64> = None;
    for (i, &number) in numbers.iter().enumerate() {
        let path = segment_path(dir, number);
        let is_last = i + 1 == numbers.len();
        let file = OpenOptions::new()
            .read(true)
            .open(&path)
            .map(FsFile)
            .map_err(io_at(&path))?;
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
        assert!(r.records.is_empty());
        for i in 0..300u32 {
            log.append(Kind::Enqueue, &i.to_le_bytes()).unwrap();
            if i % 7 == 0 {
                log.commit().unwrap();
            }
        }
        log.commit().unwrap();
        drop(log);
        let (mut log, r) = Log::open(&dir, 8192).unwrap();
        assert!(r.segments > 1, "{} segments", r.segments);
        let got: Vec<u32> = r
            .records
            .iter()
            .map(|s| u32::from_le_bytes(s.payload.clone().try_into().unwrap()))
            .collect();
        assert_eq!(got, (0..300).collect::<Vec<_>>());
        // And the log goes on where it stopped.
        log.append(Kind::Settle, b"after").unwrap();
        log.commit().unwrap();
        drop(log);
        let (_, r) = Log::open(&dir, 8192).unwrap();
        assert_eq!(r.records.len(), 301);
        assert_eq!(r.records.last().unwrap().payload, b"after");
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
        let first = segment_path(&dir, 1);
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
