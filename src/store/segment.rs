//! One segment of the log: a preallocated file holding a header and a run of records, written
//! in batches that each end with a commit record and one `fdatasync`.
//!
//! # Recovery rule
//! A scan reads records in sequence after the header and stops at the first position that is
//! not a valid next record: zeros (the end), a record of an earlier generation or out of
//! sequence, a short read, or a bad checksum.
//! - Records after the last commit record are dropped: their batch was never synced, so none
//!   of them was acknowledged (acknowledgements wait for the sync that covers the commit).
//! - If the scan stopped at a damaged record and a valid record of this generation with a
//!   later sequence number lies anywhere after it, the damage is in the middle of the log:
//!   [`ScanEnd::Corrupt`] names the offset and the log must not be used. Otherwise it is a
//!   write that did not finish (a torn tail) and is truncated.
//! - A write tears only at the end of the last batch, so a torn tail never loses a committed
//!   batch. Damage inside the last committed batch itself cannot be told from a torn write
//!   with nothing written after it; it is reported as a torn tail at that offset.

use std::io;

use crc32c::crc32c;

use super::file::SegmentFile;
use super::record::{self, Decoded, HEADER_LEN, Kind};

/// How much a scan reads at a time.
const SCAN_CHUNK: usize = 4 << 20;

/// Bytes reserved for the segment header.
pub const SEGMENT_HEADER: u64 = 64;
const MAGIC: &[u8; 8] = b"FERRYWAL";
const VERSION: u32 = 1;

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The segment has no room for the record and the batch's commit: use the next one.
    #[error("segment full")]
    Full,
    /// An earlier write or sync failed; the segment takes nothing more.
    #[error("segment failed earlier")]
    Failed,
}

/// A segment being written.
#[derive(Debug)]
pub struct Segment<F: SegmentFile> {
    file: F,
    generation: u32,
    capacity: u64,
    /// Where the next batch goes.
    pos: u64,
    next_seq: u64,
    /// The open batch, encoded.
    batch: Vec<u8>,
    failed: bool,
}

/// The header of a segment of `generation` starting at record `first_seq`.
pub fn header_bytes(generation: u32, first_seq: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(SEGMENT_HEADER as usize);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&generation.to_le_bytes());
    h.extend_from_slice(&first_seq.to_le_bytes());
    let crc = crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h.resize(SEGMENT_HEADER as usize, 0);
    h
}

impl<F: SegmentFile> Segment<F> {
    /// Starts a segment in `file` (new, or recycled with a higher `generation`) whose first
    /// record will be `first_seq`; the header is synced before anything else is written.
    pub fn create(mut file: F, generation: u32, first_seq: u64, capacity: u64) -> io::Result<Self> {
        file.write_at(0, &header_bytes(generation, first_seq))?;
        file.sync_data()?;
        Ok(Self::start(file, generation, first_seq, capacity))
    }

    /// Adds a record to the open batch; returns its sequence number. Nothing is written
    /// until [`Segment::commit`].
    pub fn append(&mut self, kind: Kind, payload: &[u8]) -> Result<u64, AppendError> {
        self.append_with(kind, payload.len(), &mut |out| {
            out.extend_from_slice(payload)
        })
    }

    /// [`Segment::append`] with the payload of `len` bytes written by `fill` (see
    /// [`record::encode_with`]); `fill` is not called if the record is refused.
    pub fn append_with(
        &mut self,
        kind: Kind,
        len: usize,
        fill: &mut dyn FnMut(&mut Vec<u8>),
    ) -> Result<u64, AppendError> {
        if self.failed {
            return Err(AppendError::Failed);
        }
        // The record, the batch's commit record, and the end marker after it.
        let need = (HEADER_LEN + len) as u64 + 2 * HEADER_LEN as u64;
        if len > record::MAX_PAYLOAD || self.pos + self.batch.len() as u64 + need > self.capacity {
            return Err(AppendError::Full);
        }
        let seq = self.next_seq;
        record::encode_with(&mut self.batch, self.generation, seq, kind, len, fill);
        self.next_seq += 1;
        Ok(seq)
    }

    /// Ends the open batch with a commit record, writes it and syncs. Once this returns
    /// `Ok`, every record of the batch survives a crash; on `Err` none may be acknowledged
    /// and the segment takes nothing more.
    pub fn commit(&mut self) -> io::Result<()> {
        self.commit_with(true)
    }

    /// [`Segment::commit`], with the sync left out when `sync` is false (the `interval` and
    /// `never` sync policies): the batch is then in the page cache only, until [`Segment::sync`].
    pub fn commit_with(&mut self, sync: bool) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("segment failed earlier"));
        }
        if self.batch.is_empty() {
            return if sync { self.sync() } else { Ok(()) };
        }
        record::encode(
            &mut self.batch,
            self.generation,
            self.next_seq,
            Kind::Commit,
            &[],
        );
        self.next_seq += 1;
        let len = self.batch.len() as u64;
        if let Err(why) = check_batch(&self.batch, self.generation, self.next_seq) {
            self.failed = true;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a record failed its check before being written: {why}"),
            ));
        }
        // An end marker (a zero header) follows every batch without counting as written:
        // the next batch overwrites it. It makes a scan stop cleanly here even in a recycled
        // file, whose old records would otherwise follow the new ones.
        self.batch.extend_from_slice(&[0u8; HEADER_LEN]);
        let mut result = self.file.write_at(self.pos, &self.batch);
        if sync && result.is_ok() {
            result = self.file.sync_data();
        }
        match result {
            Ok(()) => {
                self.pos += len;
                self.batch.clear();
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Makes everything written so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("segment failed earlier"));
        }
        self.file.sync_data().inspect_err(|_| self.failed = true)
    }

    /// Starts a segment in `file`, whose header (from [`header_bytes`]) is already written
    /// and synced: the log writes it before the file gets its number, so a power loss can
    /// never leave a numbered segment without a valid header.
    pub fn start(file: F, generation: u32, first_seq: u64, capacity: u64) -> Self {
        Self {
            file,
            generation,
            capacity,
            pos: SEGMENT_HEADER,
            next_seq: first_seq,
            batch: Vec::new(),
            failed: false,
        }
    }

    /// Hands over the (empty) batch buffer, so the next segment does not grow one again.
    pub fn take_buffer(&mut self) -> Vec<u8> {
        let mut b = std::mem::take(&mut self.batch);
        b.clear();
        b
    }

    /// Uses `buffer` (empty) for batches.
    pub fn with_buffer(mut self, buffer: Vec<u8>) -> Self {
        if self.batch.is_empty() {
            self.batch = buffer;
        }
        self
    }

    /// Continues a segment after a scan: the next batch goes right after the last commit,
    /// and whatever was written after it (an unfinished batch) is zeroed and synced first, so
    /// a later scan cannot mistake it for records following the new ones.
    pub fn resume(mut file: F, scan: &Scan, capacity: u64) -> io::Result<Self> {
        if scan.dirty_end > scan.committed_end {
            let zeros = vec![0u8; (scan.dirty_end - scan.committed_end) as usize];
            file.write_at(scan.committed_end, &zeros)?;
            file.sync_data()?;
        }
        Ok(Self {
            file,
            generation: scan.generation,
            capacity,
            pos: scan.committed_end,
            next_seq: scan.next_seq,
            batch: Vec::new(),
            failed: false,
        })
    }

    /// Where the next appended record will start in the file.
    pub fn next_offset(&self) -> u64 {
        self.pos + self.batch.len() as u64
    }

    /// The segment's generation.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The file, e.g. to simulate a crash in tests.
    pub fn file_mut(&mut self) -> &mut F {
        &mut self.file
    }
}

/// Reads a batch back before it is written: every record must decode (checksum, kind,
/// generation) in sequence, ending with the commit record before `next_seq`. A failure is a
/// bug or memory corruption, caught before it reaches the disk.
fn check_batch(batch: &[u8], generation: u32, next_seq: u64) -> Result<(), &'static str> {
    let mut pos = 0;
    let mut seq = None;
    let mut last = None;
    while pos < batch.len() {
        match record::decode(batch.get(pos..).unwrap_or_default(), generation, seq) {
            Decoded::Record(r, used) => {
                seq = Some(r.seq + 1);
                last = Some(r);
                pos += used;
            }
            _ => return Err("a record does not decode"),
        }
    }
    match last {
        Some(r) if r.kind == Kind::Commit && r.seq + 1 == next_seq => Ok(()),
        _ => Err("the batch does not end with its commit record"),
    }
}

/// A record found by [`scan`]; its payload is [`Scan::payload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Its sequence number.
    pub seq: u64,
    /// What it says.
    pub kind: Kind,
    /// Where the record starts in the segment.
    pub offset: u64,
    /// Its payload's length.
    pub len: u32,
}

/// How a scan ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Zeros after the last record.
    Clean {
        /// Where the next batch would go.
        offset: u64,
    },
    /// An unfinished write after the last commit; the log is truncated here.
    TornTail {
        /// Where the damaged bytes start.
        offset: u64,
    },
    /// Damage with valid records after it: the log must not be used.
    Corrupt {
        /// Where.
        offset: u64,
        /// What was wrong.
        why: &'static str,
    },
}

/// What a segment holds.
#[derive(Debug, Clone)]
pub struct Scan {
    /// The segment's generation.
    pub generation: u32,
    /// Its first sequence number.
    pub first_seq: u64,
    /// The committed records, in order (commit records left out).
    pub records: Vec<Scanned>,
    /// How the scan ended.
    pub end: ScanEnd,
    /// Where the last commit record ends: the next batch goes here.
    pub committed_end: u64,
    /// The sequence number after the last commit record.
    pub next_seq: u64,
    /// Where bytes this generation may have written end: resuming zeroes up to here.
    pub dirty_end: u64,
    /// The segment's bytes, which the records' payloads are read from.
    pub data: Vec<u8>,
}

impl Scan {
    /// The payload of `r`, one of this scan's records.
    pub fn payload(&self, r: &Scanned) -> &[u8] {
        let start = r.offset as usize + HEADER_LEN;
        self.data
            .get(start..start + r.len as usize)
            .unwrap_or_default()
    }
}

/// Reads a segment back under the recovery rule (module docs).
pub fn scan<F: SegmentFile>(file: &F) -> io::Result<Scan> {
    let len = file.len()? as usize;
    // Read as far as records go, not the whole preallocated file: a young segment is mostly
    // zeros, and recovery time is what this costs.
    let mut data = Vec::new();
    let load = |data: &mut Vec<u8>, upto: usize| -> io::Result<()> {
        let upto = upto.min(len);
        if data.len() >= upto {
            return Ok(());
        }
        let start = data.len();
        data.resize(upto.max(start + SCAN_CHUNK).min(len), 0);
        let n = file.read_at(start as u64, data.get_mut(start..).unwrap_or_default())?;
        data.truncate(start + n);
        Ok(())
    };
    load(&mut data, SEGMENT_HEADER as usize)?;
    let bad_header = || io::Error::new(io::ErrorKind::InvalidData, "not a segment header");
    let header = data.get(..28).ok_or_else(bad_header)?;
    let field = |i: usize| {
        header
            .get(i..i + 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
    };
    if header.get(..8) != Some(&MAGIC[..])
        || field(8) != Some(VERSION)
        || field(24) != Some(crc32c(header.get(..24).unwrap_or_default()))
    {
        return Err(bad_header());
    }
    let generation = field(12).unwrap_or(0);
    let first_seq = header
        .get(16..24)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes);

    let mut pos = SEGMENT_HEADER as usize;
    let mut seq = first_seq;
    let mut records = Vec::new();
    let mut pending = Vec::new();
    let mut committed_end = pos as u64;
    let mut next_seq = first_seq;
    let end = loop {
        load(&mut data, pos + HEADER_LEN)?;
        let declared = data
            .get(pos..pos + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes) as usize;
        if declared <= record::MAX_PAYLOAD {
            load(&mut data, pos + HEADER_LEN + declared)?;
        }
        let rest = data.get(pos..).unwrap_or_default();
        let damage = match record::decode(rest, generation, Some(seq)) {
            Decoded::Record(r, used) => {
                if r.kind == Kind::Commit {
                    records.append(&mut pending);
                    committed_end = (pos + used) as u64;
                    next_seq = r.seq + 1;
                } else {
                    pending.push(Scanned {
                        seq: r.seq,
                        kind: r.kind,
                        offset: pos as u64,
                        len: r.payload.len() as u32,
                    });
                }
                pos += used;
                seq += 1;
                continue;
            }
            Decoded::End => break ScanEnd::Clean { offset: pos as u64 },
            // A record of the file's previous use (it was recycled): the end of this one.
            Decoded::Stale if rest.get(8..12) != Some(&generation.to_le_bytes()[..]) => {
                break ScanEnd::Clean { offset: pos as u64 };
            }
            Decoded::Stale | Decoded::Torn => "torn or stale record",
            Decoded::Corrupt(why) => why,
        };
        // Damage: whether it is a torn tail or corruption depends on the rest of the file.
        load(&mut data, len)?;
        break damaged(&data, pos, generation, seq, damage);
    };
    // What resuming must zero so a later scan cannot take it for records after new ones:
    // after a clean end nothing (every batch ends with an end marker, and a torn write keeps
    // only a prefix), after damage everything up to the last byte written at all.
    let dirty_end = match end {
        ScanEnd::Clean { offset } => offset,
        _ => data
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i as u64 + 1),
    };
    Ok(Scan {
        generation,
        first_seq,
        records,
        end,
        committed_end,
        next_seq,
        dirty_end: dirty_end.max(committed_end),
        data,
    })
}

/// Classifies damage at `pos`: corruption if a valid record of this generation with a
/// sequence number of at least `seq` starts anywhere after it, else a torn tail.
fn damaged(data: &[u8], pos: usize, generation: u32, seq: u64, why: &'static str) -> ScanEnd {
    let later = (pos + 1..data.len().saturating_sub(HEADER_LEN - 1)).any(|at| {
        let Some(rest) = data.get(at..) else {
            return false;
        };
        // Cheap checks first: generation and sequence fields, then the checksum.
        let gen_ok = rest.get(8..12) == Some(&generation.to_le_bytes()[..]);
        let seq_ok = rest
            .get(12..20)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
            .is_some_and(|s| s >= seq && s < seq + (1 << 32));
        gen_ok && seq_ok && matches!(record::decode(rest, generation, None), Decoded::Record(..))
    });
    if later {
        ScanEnd::Corrupt {
            offset: pos as u64,
            why,
        }
    } else {
        ScanEnd::TornTail { offset: pos as u64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::file::{FaultFile, SECTOR};
    use proptest::prelude::*;

    const CAP: u64 = 256 * 1024;

    fn payload(batch: usize, i: usize) -> Vec<u8> {
        let len = 1 + (batch * 31 + i * 17) % 700;
        (0..len).map(|k| (batch + i + k) as u8).collect()
    }

    proptest! {
        /// Power loss at any point, with the last write torn at any sector: every record of
        /// every batch whose commit returned Ok is recovered, and never corruption. The batch
        /// whose sync did not complete is recovered whole or not at all (its writes may have
        /// reached the disk anyway; it was never acknowledged, so at worst it is a duplicate).
        #[test]
        fn nothing_committed_is_lost_at_power_loss(
            batches in proptest::collection::vec(1usize..12, 1..12),
            fail_at in any::<prop::sample::Index>(),
            sync_fails in any::<bool>(),
            torn in 0usize..8,
        ) {
            let mut seg = Segment::create(FaultFile::new(CAP as usize), 3, 100, CAP).unwrap();
            let crash_batch = fail_at.index(batches.len());
            let mut acked = Vec::new();
            let mut unacked = Vec::new();
            for (b, &n) in batches.iter().enumerate() {
                let mut this = Vec::new();
                for i in 0..n {
                    let p = payload(b, i);
                    seg.append(Kind::Enqueue, &p).unwrap();
                    this.push(p);
                }
                if b == crash_batch {
                    // This batch's write reaches the page cache but its sync never completes.
                    if sync_fails {
                        seg.file_mut().fail_syncs = 1;
                    } else {
                        seg.file_mut().fail_writes = 1;
                    }
                    prop_assert!(seg.commit().is_err());
                    unacked = this;
                    break;
                }
                seg.commit().unwrap();
                acked.extend(this);
            }
            let mut file = seg.file_mut().clone();
            file.power_loss(torn);
            let s = scan(&file).unwrap();
            let got: Vec<Vec<u8>> = s.records.iter().map(|r| s.payload(r).to_vec()).collect();
            let mut whole = acked.clone();
            whole.extend(unacked);
            prop_assert!(got == acked || got == whole, "recovered {} of {} acked", got.len(), acked.len());
            prop_assert!(!matches!(s.end, ScanEnd::Corrupt { .. }), "{:?}", s.end);
        }
    }

    #[test]
    fn after_a_crash_the_log_continues_behind_the_last_commit() {
        let mut seg = Segment::create(FaultFile::new(CAP as usize), 5, 0, CAP).unwrap();
        for i in 0..3 {
            seg.append(Kind::Enqueue, &payload(1, i)).unwrap();
        }
        seg.commit().unwrap();
        // A second batch is written but not synced, then the power goes with most of it on
        // disk.
        for i in 0..30 {
            seg.append(Kind::Enqueue, &payload(2, i)).unwrap();
        }
        seg.file_mut().fail_syncs = 1;
        assert!(seg.commit().is_err());
        let mut file = seg.file_mut().clone();
        file.power_loss(6);
        let s = scan(&file).unwrap();
        assert_eq!(s.records.len(), 3);
        assert!(s.dirty_end > s.committed_end);
        // Resume and write a short batch over the start of the old one.
        let mut seg = Segment::resume(file, &s, CAP).unwrap();
        assert_eq!(seg.next_seq(), s.next_seq);
        seg.append(Kind::Settle, b"x").unwrap();
        seg.commit().unwrap();
        let again = scan(seg.file_mut()).unwrap();
        assert_eq!(again.records.len(), 4);
        assert_eq!(again.payload(&again.records[3]), b"x");
        assert!(
            matches!(again.end, ScanEnd::Clean { .. }),
            "{:?}",
            again.end
        );
    }

    #[test]
    fn a_bit_flip_before_the_last_batch_is_reported_with_its_offset() {
        let mut seg = Segment::create(FaultFile::new(CAP as usize), 1, 0, CAP).unwrap();
        for b in 0..5 {
            for i in 0..4 {
                seg.append(Kind::Enqueue, &payload(b, i)).unwrap();
            }
            seg.commit().unwrap();
        }
        // Inside the first batch's second record.
        let first = payload(0, 0).len() + HEADER_LEN;
        let at = SEGMENT_HEADER as usize + first + HEADER_LEN + 3;
        seg.file_mut().flip_bit(at * 8 + 2);
        let s = scan(seg.file_mut()).unwrap();
        assert_eq!(
            s.end,
            ScanEnd::Corrupt {
                offset: (SEGMENT_HEADER as usize + first) as u64,
                why: "checksum mismatch"
            }
        );
    }

    #[test]
    fn a_recycled_segment_never_replays_the_old_records() {
        let mut old = Segment::create(FaultFile::new(CAP as usize), 1, 0, CAP).unwrap();
        for i in 0..50 {
            old.append(Kind::Enqueue, &payload(9, i)).unwrap();
        }
        old.commit().unwrap();
        let file = old.file_mut().clone();
        // Reuse the file under generation 2 with fewer, shorter records.
        let mut new = Segment::create(file, 2, 1000, CAP).unwrap();
        new.append(Kind::Settle, b"s").unwrap();
        new.commit().unwrap();
        let s = scan(new.file_mut()).unwrap();
        assert_eq!(s.generation, 2);
        assert_eq!(s.records.len(), 1);
        assert_eq!(s.records[0].seq, 1000);
        // The old records mark the end cleanly: a recycled segment may sit anywhere in the log.
        assert!(matches!(s.end, ScanEnd::Clean { .. }), "{:?}", s.end);
        assert_eq!(s.dirty_end, s.committed_end);
    }

    #[test]
    fn a_full_segment_refuses_and_a_failed_one_takes_nothing_more() {
        let mut seg = Segment::create(FaultFile::new(4096), 1, 0, 4096).unwrap();
        let mut n = 0;
        while seg.append(Kind::Enqueue, &[7; 100]).is_ok() {
            n += 1;
        }
        assert!(n > 10);
        seg.commit().unwrap();
        assert_eq!(scan(seg.file_mut()).unwrap().records.len(), n);

        let mut seg = Segment::create(FaultFile::new(CAP as usize), 1, 0, CAP).unwrap();
        seg.append(Kind::Enqueue, b"a").unwrap();
        seg.file_mut().fail_syncs = 1;
        assert!(seg.commit().is_err());
        assert!(matches!(
            seg.append(Kind::Enqueue, b"b"),
            Err(AppendError::Failed)
        ));
        assert_eq!(SECTOR, 512);
    }

    #[test]
    fn a_real_file_round_trips() {
        let dir = std::env::temp_dir().join(format!("ferry-seg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("0001.wal");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut file = crate::store::file::FsFile(f);
        file.preallocate(CAP).unwrap();
        let mut seg = Segment::create(file, 1, 0, CAP).unwrap();
        seg.append(Kind::Declare, b"queue q").unwrap();
        seg.append(Kind::Enqueue, b"hello").unwrap();
        seg.commit().unwrap();
        let s = scan(seg.file_mut()).unwrap();
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.payload(&s.records[1]), b"hello");
        assert!(matches!(s.end, ScanEnd::Clean { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
