//! The write-ahead log's record format.
//!
//! ```text
//! offset  size  field
//!      0     4  length of the payload (u32, little-endian)
//!      4     4  CRC32C of bytes 8.. up to the end of the payload
//!      8     4  generation of the segment the record was written into
//!     12     8  sequence number (u64), one more than the record before it
//!     20     1  kind
//!     21     n  payload
//! ```
//!
//! Why each field:
//! - The length comes first so a reader can skip a record without understanding it, and is
//!   bounded ([`MAX_PAYLOAD`]) so a flipped bit cannot make it read gigabytes.
//! - The CRC covers everything after itself, so a bit flip anywhere in a record is caught.
//! - Segment files are preallocated and recycled. A recycled segment still holds the old
//!   records after the new ones: the generation (raised each time a file is reused) tells the
//!   reader those are stale, and the sequence number, which must follow on from the previous
//!   record, catches a stale record that happens to carry the right generation.
//! - Preallocated space is zeros. A written header is never all zeros (no kind is 0), so an
//!   all-zero header reads as [`Decoded::End`]: the end of what was written.
//!
//! Reading never panics on any input: every outcome is a [`Decoded`] value, and the caller
//! (recovery) decides whether a bad record at that position is an unsynced tail or
//! corruption.

use crc32c::crc32c;

/// Bytes before the payload.
pub const HEADER_LEN: usize = 21;

/// Largest payload accepted: a message plus its metadata. Bounded so a damaged length
/// field cannot ask for an absurd read.
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

/// What a record says. The numbers are on disk: never reuse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A message body, stored once, with the queues that reference it.
    Enqueue = 1,
    /// A queue is done with a message.
    Settle = 2,
    /// A message's delivery-count or annotations changed.
    Update = 3,
    /// Settle on one queue and enqueue on its dead-letter queue, as one record.
    DeadLetter = 4,
    /// A queue, binding or subscription was declared or deleted.
    Declare = 5,
    /// Every record since the previous commit is part of a synced batch.
    Commit = 6,
    /// Live records copied forward by compaction.
    Relocate = 7,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Enqueue,
            2 => Self::Settle,
            3 => Self::Update,
            4 => Self::DeadLetter,
            5 => Self::Declare,
            6 => Self::Commit,
            7 => Self::Relocate,
            _ => return None,
        })
    }
}

/// One record, borrowed from the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The segment generation it was written under.
    pub generation: u32,
    /// Its sequence number.
    pub seq: u64,
    /// What it says.
    pub kind: Kind,
    /// Its payload.
    pub payload: &'a [u8],
}

/// The result of reading at one position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A valid record, and the bytes it took.
    Record(Record<'a>, usize),
    /// Zeros: nothing was written here.
    End,
    /// A record of an earlier use of this segment (or out of sequence): the log ends here.
    Stale,
    /// Fewer bytes than the record needs: a write that did not finish.
    Torn,
    /// The bytes are not a record (checksum, length or kind wrong).
    Corrupt(&'static str),
}

/// Appends one record to `out`. The payload must be at most [`MAX_PAYLOAD`] bytes.
pub fn encode(out: &mut Vec<u8>, generation: u32, seq: u64, kind: Kind, payload: &[u8]) {
    encode_with(out, generation, seq, kind, payload.len(), |out| {
        out.extend_from_slice(payload)
    });
}

/// [`encode`] with the payload written by `fill`, which must append exactly `len` bytes:
/// the caller encodes its payload straight into the batch instead of into a copy first.
pub fn encode_with(
    out: &mut Vec<u8>,
    generation: u32,
    seq: u64,
    kind: Kind,
    len: usize,
    fill: impl FnOnce(&mut Vec<u8>),
) {
    debug_assert!(len <= MAX_PAYLOAD);
    let start = out.len();
    out.reserve(HEADER_LEN + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(kind as u8);
    fill(out);
    debug_assert_eq!(out.len(), start + HEADER_LEN + len);
    let crc = crc32c(out.get(start + 8..).unwrap_or_default());
    if let Some(slot) = out.get_mut(start + 4..start + 8) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
}

/// Reads the record at the start of `buf`, written under `generation`, whose sequence
/// number must be `expected_seq` (`None`: any, for the first record of a scan).
pub fn decode(buf: &[u8], generation: u32, expected_seq: Option<u64>) -> Decoded<'_> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return if buf.iter().all(|&b| b == 0) {
            Decoded::End
        } else {
            Decoded::Torn
        };
    };
    if header.iter().all(|&b| b == 0) {
        return Decoded::End;
    }
    let u32_at = |i: usize| {
        header
            .get(i..i + 4)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    };
    let len = u32_at(0) as usize;
    let crc = u32_at(4);
    let record_generation = u32_at(8);
    let seq = header
        .get(12..20)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    if len > MAX_PAYLOAD {
        return Decoded::Corrupt("length beyond the largest record");
    }
    let Some(body) = buf.get(8..HEADER_LEN + len) else {
        return Decoded::Torn;
    };
    if crc32c(body) != crc {
        return Decoded::Corrupt("checksum mismatch");
    }
    // A valid record from an earlier use of the segment, or one that does not follow on.
    if record_generation != generation || expected_seq.is_some_and(|s| s != seq) {
        return Decoded::Stale;
    }
    let Some(kind) = header.get(20).copied().and_then(Kind::from_u8) else {
        return Decoded::Corrupt("unknown record kind");
    };
    let payload = buf.get(HEADER_LEN..HEADER_LEN + len).unwrap_or_default();
    Decoded::Record(
        Record {
            generation,
            seq,
            kind,
            payload,
        },
        HEADER_LEN + len,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn one(generation: u32, seq: u64, kind: Kind, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode(&mut v, generation, seq, kind, payload);
        v
    }

    proptest! {
        #[test]
        fn records_round_trip_in_sequence(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20),
            generation in any::<u32>(),
            first in any::<u64>(),
        ) {
            let mut log = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                encode(&mut log, generation, first.wrapping_add(i as u64), Kind::Enqueue, p);
            }
            // Preallocated space after the last record.
            log.extend_from_slice(&[0; 64]);
            let mut pos = 0;
            let mut expected = Some(first);
            for p in &payloads {
                match decode(&log[pos..], generation, expected) {
                    Decoded::Record(r, used) => {
                        prop_assert_eq!(r.payload, &p[..]);
                        prop_assert_eq!(r.kind, Kind::Enqueue);
                        pos += used;
                        expected = Some(r.seq.wrapping_add(1));
                    }
                    other => prop_assert!(false, "{:?}", other),
                }
            }
            prop_assert_eq!(decode(&log[pos..], generation, expected), Decoded::End);
        }

        #[test]
        fn any_single_bit_flip_is_caught(
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            bit in any::<prop::sample::Index>(),
        ) {
            let mut rec = one(7, 42, Kind::Settle, &payload);
            let i = bit.index(rec.len() * 8);
            rec[i / 8] ^= 1 << (i % 8);
            rec.extend_from_slice(&[0; 8]);
            // A flip never yields a different valid record.
            match decode(&rec, 7, Some(42)) {
                Decoded::Record(r, _) => prop_assert!(false, "flip at bit {} accepted: {:?}", i, r),
                Decoded::End => prop_assert!(false, "flip read as end"),
                _ => {}
            }
        }

        #[test]
        fn every_truncation_is_torn_never_a_record(
            payload in proptest::collection::vec(any::<u8>(), 1..200),
            cut in any::<prop::sample::Index>(),
        ) {
            let rec = one(1, 1, Kind::Enqueue, &payload);
            let n = 1 + cut.index(rec.len() - 1);
            let short = &rec[..n];
            prop_assert!(matches!(decode(short, 1, Some(1)), Decoded::Torn | Decoded::Corrupt(_)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode(&bytes, 0, None);
        }
    }

    #[test]
    fn records_of_an_earlier_generation_or_out_of_sequence_are_stale() {
        let rec = one(3, 10, Kind::Commit, b"");
        assert!(matches!(decode(&rec, 3, Some(10)), Decoded::Record(..)));
        assert_eq!(decode(&rec, 4, Some(10)), Decoded::Stale);
        assert_eq!(decode(&rec, 3, Some(11)), Decoded::Stale);
        assert!(matches!(decode(&rec, 3, None), Decoded::Record(..)));
    }

    #[test]
    fn zeros_are_the_end_and_a_huge_length_is_corrupt() {
        assert_eq!(decode(&[0; 100], 0, None), Decoded::End);
        assert_eq!(decode(&[0; 5], 0, None), Decoded::End);
        let mut rec = one(0, 0, Kind::Enqueue, b"x");
        rec[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&rec, 0, None), Decoded::Corrupt(_)));
        let mut unknown = one(0, 0, Kind::Enqueue, b"x");
        unknown[20] = 99;
        // The checksum covers the kind byte, so a changed kind is a checksum error.
        assert!(matches!(decode(&unknown, 0, None), Decoded::Corrupt(_)));
    }
}
