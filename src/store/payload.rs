//! What the records of the log say: the payload of each [`Kind`](super::record::Kind), little-endian throughout.
//!
//! ```text
//! Enqueue, Relocate
//!   msg u64 | expiry u64 | scheduled u64 | priority u8 | nrefs u16
//!   nrefs × ( queue u32 | delivery-count u32 | annotations-len u32 | annotations )
//!   body (the rest: the message bytes, opaque to the store)
//! Settle      n u32 | n × ( queue u32 | msg u64 )
//! Update      queue u32 | msg u64 | delivery-count u32 | annotations (the rest, may be empty)
//! DeadLetter  from u32 | msg u64 | to u32 | annotations (the rest)
//! Declare     op u8 | id u32, then for op 1 (queue) and 3 (other object):
//!             [kind u8, op 3 only] name-len u16 | name | props
//!             op 2: queue deleted; op 4: kind u8, the object deleted
//! Commit      empty
//! ```
//!
//! - A message body is written once with one reference per queue holding it, so fan-out to
//!   several durable queues costs one body on disk.
//! - `msg` ids are assigned by the broker, increase, and are never reused: recovery resumes
//!   them above the largest id still mentioned anywhere in the log.
//! - Times are milliseconds since the Unix epoch, 0 for none. They are stored so a restart
//!   neither extends a TTL nor releases a scheduled message early.
//! - Annotations are an opaque blob the broker merges into the message when it reads it back
//!   (its encoded message-annotation changes). The store never interprets them.
//! - `Relocate` is compaction's copy of a live `Enqueue` with its current references: on
//!   replay it replaces whatever was known about that message.
//!
//! Every decoder returns `None` on a short or inconsistent payload rather than panicking; a
//! record's checksum has already been verified, so that means a bug or a format mismatch,
//! and recovery refuses the log with the record's place.

/// One queue's reference to a stored message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ref {
    /// The queue's store id.
    pub queue: u32,
    /// Failed delivery attempts so far (the header's delivery-count).
    pub delivery_count: u32,
    /// Annotation changes to merge when the message is read back (empty: none).
    pub annotations: Vec<u8>,
}

/// Times and priority, kept with the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    /// When the message expires (ms since the epoch), 0 for never.
    pub expiry: u64,
    /// When it may first be delivered (ms since the epoch), 0 for at once.
    pub scheduled: u64,
    /// Its priority.
    pub priority: u8,
}

/// An `Enqueue` or `Relocate` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueue<'a> {
    /// The message id.
    pub msg: u64,
    /// Times and priority.
    pub meta: Meta,
    /// The queues holding it.
    pub refs: Vec<Ref>,
    /// The message.
    pub body: &'a [u8],
}

/// What a `Declare` record does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declare<'a> {
    /// Queue `queue` exists, named `name`, with broker-defined `props`.
    Queue {
        /// Its store id.
        queue: u32,
        /// Its address.
        name: &'a str,
        /// Opaque to the store.
        props: &'a [u8],
    },
    /// Queue `queue` was deleted, with every reference it held.
    Deleted {
        /// Its store id.
        queue: u32,
    },
    /// Something else the broker keeps across restarts (a binding, a subscription): `kind`
    /// and the contents are the broker's.
    Object {
        /// What it is, in the broker's numbering.
        kind: u8,
        /// Its id (from the queue id counter).
        id: u32,
        /// Its name.
        name: &'a str,
        /// Its contents.
        props: &'a [u8],
    },
    /// Object `id` of `kind` was deleted.
    ObjectDeleted {
        /// What it was.
        kind: u8,
        /// Its id.
        id: u32,
    },
}

/// Bytes an `Enqueue` payload takes before its body.
pub fn enqueue_overhead(refs: &[Ref]) -> usize {
    8 + 8 + 8 + 1 + 2 + refs.iter().map(|r| 12 + r.annotations.len()).sum::<usize>()
}

/// Encodes an `Enqueue`/`Relocate` payload into `out`.
pub fn encode_enqueue(out: &mut Vec<u8>, msg: u64, meta: &Meta, refs: &[Ref], body: &[u8]) {
    out.reserve(enqueue_overhead(refs) + body.len());
    out.extend_from_slice(&msg.to_le_bytes());
    out.extend_from_slice(&meta.expiry.to_le_bytes());
    out.extend_from_slice(&meta.scheduled.to_le_bytes());
    out.push(meta.priority);
    out.extend_from_slice(&(refs.len().min(u16::MAX as usize) as u16).to_le_bytes());
    for r in refs.iter().take(u16::MAX as usize) {
        out.extend_from_slice(&r.queue.to_le_bytes());
        out.extend_from_slice(&r.delivery_count.to_le_bytes());
        out.extend_from_slice(&(r.annotations.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.annotations);
    }
    out.extend_from_slice(body);
}

/// A cursor over a payload that never reads past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn rest(self) -> &'a [u8] {
        self.0
    }
    /// A name: its length (u16), then UTF-8.
    fn name(&mut self) -> Option<&'a str> {
        let len = usize::from(self.u16()?);
        std::str::from_utf8(self.take(len)?).ok()
    }
}

/// Writes a name as `Reader::name` reads it (cut at 65,535 bytes).
fn put_name(out: &mut Vec<u8>, name: &str) {
    let name = name.as_bytes();
    let name = name
        .get(..name.len().min(u16::MAX as usize))
        .unwrap_or_default();
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name);
}

/// Decodes an `Enqueue`/`Relocate` payload.
pub fn decode_enqueue(payload: &[u8]) -> Option<Enqueue<'_>> {
    let mut r = Reader(payload);
    let msg = r.u64()?;
    let meta = Meta {
        expiry: r.u64()?,
        scheduled: r.u64()?,
        priority: r.u8()?,
    };
    let n = r.u16()?;
    let mut refs = Vec::with_capacity(usize::from(n).min(64));
    for _ in 0..n {
        let queue = r.u32()?;
        let delivery_count = r.u32()?;
        let len = r.u32()? as usize;
        refs.push(Ref {
            queue,
            delivery_count,
            annotations: r.take(len)?.to_vec(),
        });
    }
    Some(Enqueue {
        msg,
        meta,
        refs,
        body: r.rest(),
    })
}

/// Encodes a `Settle` payload.
pub fn encode_settle(out: &mut Vec<u8>, settled: &[(u32, u64)]) {
    out.extend_from_slice(&(settled.len() as u32).to_le_bytes());
    for (queue, msg) in settled {
        out.extend_from_slice(&queue.to_le_bytes());
        out.extend_from_slice(&msg.to_le_bytes());
    }
}

/// Decodes a `Settle` payload.
pub fn decode_settle(payload: &[u8]) -> Option<Vec<(u32, u64)>> {
    let mut r = Reader(payload);
    let n = r.u32()? as usize;
    if n.checked_mul(12)? != r.0.len() {
        return None;
    }
    (0..n).map(|_| Some((r.u32()?, r.u64()?))).collect()
}

/// Encodes an `Update` payload.
pub fn encode_update(
    out: &mut Vec<u8>,
    queue: u32,
    msg: u64,
    delivery_count: u32,
    annotations: &[u8],
) {
    encode_ref_change(out, queue, msg, delivery_count, annotations);
}

/// Decodes an `Update` payload: (queue, msg, delivery-count, annotations).
pub fn decode_update(payload: &[u8]) -> Option<(u32, u64, u32, &[u8])> {
    decode_ref_change(payload)
}

/// Encodes a `DeadLetter` payload.
pub fn encode_dead_letter(out: &mut Vec<u8>, from: u32, msg: u64, to: u32, annotations: &[u8]) {
    encode_ref_change(out, from, msg, to, annotations);
}

/// Decodes a `DeadLetter` payload: (from, msg, to, annotations).
pub fn decode_dead_letter(payload: &[u8]) -> Option<(u32, u64, u32, &[u8])> {
    decode_ref_change(payload)
}

/// `Update` and `DeadLetter` share a layout: `u32, msg u64, u32, annotations`.
fn encode_ref_change(out: &mut Vec<u8>, a: u32, msg: u64, b: u32, annotations: &[u8]) {
    out.extend_from_slice(&a.to_le_bytes());
    out.extend_from_slice(&msg.to_le_bytes());
    out.extend_from_slice(&b.to_le_bytes());
    out.extend_from_slice(annotations);
}

fn decode_ref_change(payload: &[u8]) -> Option<(u32, u64, u32, &[u8])> {
    let mut r = Reader(payload);
    Some((r.u32()?, r.u64()?, r.u32()?, r.rest()))
}

/// Encodes a `Declare` payload.
pub fn encode_declare(out: &mut Vec<u8>, d: &Declare<'_>) {
    match d {
        Declare::Queue { queue, name, props } => {
            out.push(1);
            out.extend_from_slice(&queue.to_le_bytes());
            put_name(out, name);
            out.extend_from_slice(props);
        }
        Declare::Deleted { queue } => {
            out.push(2);
            out.extend_from_slice(&queue.to_le_bytes());
        }
        Declare::Object {
            kind,
            id,
            name,
            props,
        } => {
            out.push(3);
            out.extend_from_slice(&id.to_le_bytes());
            out.push(*kind);
            put_name(out, name);
            out.extend_from_slice(props);
        }
        Declare::ObjectDeleted { kind, id } => {
            out.push(4);
            out.extend_from_slice(&id.to_le_bytes());
            out.push(*kind);
        }
    }
}

/// Decodes a `Declare` payload.
pub fn decode_declare(payload: &[u8]) -> Option<Declare<'_>> {
    let mut r = Reader(payload);
    match r.u8()? {
        1 => {
            let queue = r.u32()?;
            let name = r.name()?;
            Some(Declare::Queue {
                queue,
                name,
                props: r.rest(),
            })
        }
        2 => Some(Declare::Deleted { queue: r.u32()? }),
        3 => {
            let id = r.u32()?;
            let kind = r.u8()?;
            let name = r.name()?;
            Some(Declare::Object {
                kind,
                id,
                name,
                props: r.rest(),
            })
        }
        4 => {
            let id = r.u32()?;
            Some(Declare::ObjectDeleted { kind: r.u8()?, id })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a_ref() -> impl Strategy<Value = Ref> {
        (
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..20),
        )
            .prop_map(|(queue, delivery_count, annotations)| Ref {
                queue,
                delivery_count,
                annotations,
            })
    }

    proptest! {
        #[test]
        fn enqueue_round_trips(
            msg in any::<u64>(),
            expiry in any::<u64>(),
            scheduled in any::<u64>(),
            priority in any::<u8>(),
            refs in proptest::collection::vec(a_ref(), 0..5),
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let meta = Meta { expiry, scheduled, priority };
            let mut out = Vec::new();
            encode_enqueue(&mut out, msg, &meta, &refs, &body);
            prop_assert_eq!(out.len(), enqueue_overhead(&refs) + body.len());
            let back = decode_enqueue(&out).unwrap();
            prop_assert_eq!(back, Enqueue { msg, meta, refs, body: &body });
        }

        #[test]
        fn settle_round_trips(pairs in proptest::collection::vec((any::<u32>(), any::<u64>()), 0..50)) {
            let mut out = Vec::new();
            encode_settle(&mut out, &pairs);
            prop_assert_eq!(decode_settle(&out).unwrap(), pairs);
        }

        /// Any bytes at all decode to something or to `None`, never a panic.
        #[test]
        fn decoders_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_enqueue(&bytes);
            let _ = decode_settle(&bytes);
            let _ = decode_update(&bytes);
            let _ = decode_dead_letter(&bytes);
            let _ = decode_declare(&bytes);
        }
    }

    #[test]
    fn the_small_records_round_trip() {
        let mut out = Vec::new();
        encode_update(&mut out, 7, 99, 3, b"ann");
        assert_eq!(decode_update(&out), Some((7, 99, 3, &b"ann"[..])));
        out.clear();
        encode_dead_letter(&mut out, 1, 2, 3, b"why");
        assert_eq!(decode_dead_letter(&out), Some((1, 2, 3, &b"why"[..])));
        for d in [
            Declare::Queue {
                queue: 5,
                name: "orders",
                props: b"p",
            },
            Declare::Deleted { queue: 5 },
            Declare::Object {
                kind: 2,
                id: 9,
                name: "binding",
                props: b"key",
            },
            Declare::ObjectDeleted { kind: 2, id: 9 },
        ] {
            out.clear();
            encode_declare(&mut out, &d);
            assert_eq!(decode_declare(&out), Some(d));
        }
        // A settle whose count does not match its length is refused.
        out.clear();
        encode_settle(&mut out, &[(1, 2)]);
        out.push(0);
        assert_eq!(decode_settle(&out), None);
    }
}
