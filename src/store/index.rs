//! What the log holds that is still live: every stored message with the queues referencing
//! it, every declared queue, and per segment how much of it is live.
//!
//! The same code applies records at recovery (replay) and after each committed batch, so
//! the index after a restart is the index before it. It tells the writer which segments can
//! be retired and which records compaction must copy forward, and tells readers where a
//! message's body is. Bodies themselves are never held here.

use std::collections::BTreeMap;

use crate::idhash::IdMap;

use super::log::Place;
use super::payload::{self, Declare, Meta, Ref};
use super::record::Kind;

/// The queues referencing one message. Nearly every message is in one queue with no
/// annotation changes, so that case is kept inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refs {
    /// One queue, no annotation changes.
    One {
        /// The queue's store id.
        queue: u32,
        /// Its delivery-count.
        delivery_count: u32,
    },
    /// Anything else.
    Many(Vec<Ref>),
}

impl Refs {
    fn from_vec(mut refs: Vec<Ref>) -> Self {
        if refs.len() == 1
            && let Some(r) = refs.pop()
        {
            if r.annotations.is_empty() {
                return Refs::One {
                    queue: r.queue,
                    delivery_count: r.delivery_count,
                };
            }
            return Refs::Many(vec![r]);
        }
        Refs::Many(refs)
    }

    /// The references, expanded.
    pub fn to_vec(&self) -> Vec<Ref> {
        match self {
            Refs::One {
                queue,
                delivery_count,
            } => vec![Ref {
                queue: *queue,
                delivery_count: *delivery_count,
                annotations: Vec::new(),
            }],
            Refs::Many(v) => v.clone(),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, Refs::Many(v) if v.is_empty())
    }

    /// Removes `queue`'s reference; whether it had one.
    fn remove(&mut self, queue: u32) -> bool {
        match self {
            Refs::One { queue: q, .. } if *q == queue => {
                *self = Refs::Many(Vec::new());
                true
            }
            Refs::One { .. } => false,
            Refs::Many(v) => {
                let before = v.len();
                v.retain(|r| r.queue != queue);
                v.len() != before
            }
        }
    }

    fn update(&mut self, queue: u32, delivery_count: u32, annotations: &[u8]) {
        let mut v = match std::mem::replace(self, Refs::Many(Vec::new())) {
            Refs::One {
                queue: q,
                delivery_count: d,
            } if annotations.is_empty() => {
                *self = Refs::One {
                    queue: q,
                    delivery_count: if q == queue { delivery_count } else { d },
                };
                return;
            }
            other => other.to_vec(),
        };
        if let Some(r) = v.iter_mut().find(|r| r.queue == queue) {
            r.delivery_count = delivery_count;
            if !annotations.is_empty() {
                // The later change wins per key; the broker merges in record order, so keeping
                // every change in order is enough.
                r.annotations
                    .extend_from_slice(&(annotations.len() as u32).to_le_bytes());
                r.annotations.extend_from_slice(annotations);
            }
        }
        *self = Refs::from_vec(v);
    }
}

/// A live message: where its record is and who references it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    /// Its segment.
    pub segment: u64,
    /// Its record's offset there.
    pub offset: u64,
    /// Its record's sequence number.
    pub seq: u64,
    /// Its record's payload length.
    pub len: u32,
    /// Times and priority.
    pub meta: Meta,
    /// The queues holding it.
    pub refs: Refs,
}

/// A declared queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDecl {
    /// Its address.
    pub name: String,
    /// Broker-defined properties.
    pub props: Vec<u8>,
    /// Where its declaration record is.
    pub place: Place,
}

/// What is live in one segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentStat {
    /// Messages whose record is here and which the index holds one by one.
    pub messages: u64,
    /// References here held only in cold runs (see [`ColdRun`]).
    pub cold: u64,
    /// Their record bytes.
    pub bytes: u64,
    /// Queue declarations whose record is here.
    pub declarations: u64,
}

impl SegmentStat {
    /// Whether nothing here is needed any more.
    pub fn is_dead(&self) -> bool {
        self.messages == 0 && self.cold == 0 && self.declarations == 0
    }
}

/// A stretch of one segment holding a queue's paged-out messages: every `Enqueue` or
/// `Relocate` record between `start` and `end` that references the queue is one of them.
/// That holds because a queue sends all its stored messages cold from its first paged-out
/// message until it has read every run back, and runs are sealed when compaction writes
/// copies into the log. So a backlog costs a few words per run, not per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColdRun {
    /// The segment.
    pub segment: u64,
    /// Offset of the first record.
    pub start: u64,
    /// Offset just past the last record.
    pub end: u64,
    /// Records of the queue in the stretch.
    pub count: u64,
    /// Their bytes, framing included.
    pub bytes: u64,
    /// No more records may be added (compaction wrote copies after it).
    pub sealed: bool,
}

/// The index.
#[derive(Debug, Default)]
pub struct Index {
    /// Live messages by id.
    pub messages: IdMap<u64, Live>,
    /// Declared queues by store id.
    pub queues: IdMap<u32, QueueDecl>,
    /// Other declared objects (bindings, subscriptions) by (kind, id).
    pub objects: BTreeMap<(u8, u32), QueueDecl>,
    /// Per segment number.
    pub segments: BTreeMap<u64, SegmentStat>,
    /// One more than the largest message id seen.
    pub next_msg: u64,
    /// One more than the largest queue id seen.
    pub next_queue: u32,
    /// Bytes of live records.
    pub live_bytes: u64,
    /// Each queue's paged-out messages, oldest first.
    pub cold: IdMap<u32, std::collections::VecDeque<ColdRun>>,
}

fn record_bytes(len: u32) -> u64 {
    u64::from(len) + super::record::HEADER_LEN as u64
}

impl Index {
    fn stat(&mut self, segment: u64) -> &mut SegmentStat {
        self.segments.entry(segment).or_default()
    }

    fn unlink(&mut self, live: &Live) {
        let bytes = record_bytes(live.len);
        let s = self.stat(live.segment);
        s.messages = s.messages.saturating_sub(1);
        s.bytes = s.bytes.saturating_sub(bytes);
        self.live_bytes = self.live_bytes.saturating_sub(bytes);
    }

    fn link(&mut self, live: &Live) {
        let bytes = record_bytes(live.len);
        let s = self.stat(live.segment);
        s.messages += 1;
        s.bytes += bytes;
        self.live_bytes += bytes;
    }

    /// Drops `queue`'s reference to `msg`, and the message with its last reference.
    fn drop_ref(&mut self, queue: u32, msg: u64) {
        let Some(live) = self.messages.get_mut(&msg) else {
            return;
        };
        if live.refs.remove(queue)
            && live.refs.is_empty()
            && let Some(live) = self.messages.remove(&msg)
        {
            self.unlink(&live);
        }
    }

    /// Applies an `Enqueue` or `Relocate` record of `len` payload bytes at `place`.
    pub fn apply_enqueue(
        &mut self,
        place: Place,
        len: usize,
        msg: u64,
        meta: Meta,
        refs: Vec<Ref>,
    ) {
        self.next_msg = self.next_msg.max(msg + 1);
        // References are not checked against declared queues here: compaction may have
        // copied a declaration forward past its messages. `finish` checks them.
        if let Some(old) = self.messages.remove(&msg) {
            self.unlink(&old);
        }
        if refs.is_empty() {
            return;
        }
        let live = Live {
            segment: place.segment,
            offset: place.offset,
            seq: place.seq,
            len: len as u32,
            meta,
            refs: Refs::from_vec(refs),
        };
        self.link(&live);
        self.messages.insert(msg, live);
    }

    /// Applies an `Enqueue` of `len` payload bytes at `place` for queues that keep it paged
    /// out: it joins each queue's last cold run, or starts one.
    pub fn apply_cold(&mut self, place: Place, len: usize, msg: u64, refs: &[Ref]) {
        self.next_msg = self.next_msg.max(msg + 1);
        let bytes = record_bytes(len as u32);
        let end = place.offset + bytes;
        for r in refs {
            let runs = self.cold.entry(r.queue).or_default();
            match runs.back_mut() {
                Some(last)
                    if !last.sealed
                        && last.segment == place.segment
                        && last.end <= place.offset =>
                {
                    last.end = end;
                    last.count += 1;
                    last.bytes += bytes;
                }
                _ => runs.push_back(ColdRun {
                    segment: place.segment,
                    start: place.offset,
                    end,
                    count: 1,
                    bytes,
                    sealed: false,
                }),
            }
            let s = self.stat(place.segment);
            s.cold += 1;
            s.bytes += bytes;
            self.live_bytes += bytes;
        }
    }

    /// `queue` read `taken` messages (`bytes` of records) from the front of its first cold
    /// run, which now starts at `next`; they are now held one by one (`hot`).
    pub fn take_cold(
        &mut self,
        queue: u32,
        next: u64,
        taken: u64,
        bytes: u64,
        hot: Vec<(u64, Live)>,
    ) {
        let Some(runs) = self.cold.get_mut(&queue) else {
            return;
        };
        let Some(first) = runs.front_mut() else {
            return;
        };
        let segment = first.segment;
        first.count = first.count.saturating_sub(taken);
        first.bytes = first.bytes.saturating_sub(bytes);
        first.start = next;
        if first.count == 0 {
            runs.pop_front();
        }
        if runs.is_empty() {
            self.cold.remove(&queue);
        }
        let s = self.stat(segment);
        s.cold = s.cold.saturating_sub(taken);
        s.bytes = s.bytes.saturating_sub(bytes);
        self.live_bytes = self.live_bytes.saturating_sub(bytes);
        for (msg, live) in hot {
            match self.messages.get_mut(&msg) {
                // Already held for another queue: this queue's reference joins it.
                Some(existing) => {
                    let mut refs = existing.refs.to_vec();
                    refs.extend(live.refs.to_vec());
                    existing.refs = Refs::from_vec(refs);
                }
                None => {
                    self.link(&live);
                    self.messages.insert(msg, live);
                }
            }
        }
    }

    /// Drops `queue`'s cold runs (the queue was deleted).
    fn drop_cold(&mut self, queue: u32) {
        for run in self.cold.remove(&queue).unwrap_or_default() {
            let s = self.stat(run.segment);
            s.cold = s.cold.saturating_sub(run.count);
            s.bytes = s.bytes.saturating_sub(run.bytes);
            self.live_bytes = self.live_bytes.saturating_sub(run.bytes);
        }
    }

    /// Seals every queue's last cold run: records written from now on start new runs.
    pub fn seal_cold(&mut self) {
        for runs in self.cold.values_mut() {
            if let Some(last) = runs.back_mut() {
                last.sealed = true;
            }
        }
    }

    /// Replaces a cold run (found by its queue, segment and start) with `pieces` (its
    /// records copied elsewhere), keeping its position in the queue's order.
    pub fn replace_cold(&mut self, queue: u32, from: (u64, u64), pieces: Vec<ColdRun>) {
        let Some(runs) = self.cold.get_mut(&queue) else {
            return;
        };
        let Some(i) = runs
            .iter()
            .position(|r| r.segment == from.0 && r.start == from.1)
        else {
            return;
        };
        let Some(old) = runs.remove(i) else {
            return;
        };
        for (k, p) in pieces.iter().enumerate() {
            runs.insert(i + k, *p);
        }
        if runs.is_empty() {
            self.cold.remove(&queue);
        }
        let s = self.stat(old.segment);
        s.cold = s.cold.saturating_sub(old.count);
        s.bytes = s.bytes.saturating_sub(old.bytes);
        self.live_bytes = self.live_bytes.saturating_sub(old.bytes);
        for p in pieces {
            let s = self.stat(p.segment);
            s.cold += p.count;
            s.bytes += p.bytes;
            self.live_bytes += p.bytes;
        }
    }

    /// Applies one record found at `place`. `Err` says the payload does not parse.
    pub fn apply(&mut self, place: Place, kind: Kind, payload: &[u8]) -> Result<(), String> {
        let bad = || format!("{kind:?} record does not parse");
        match kind {
            Kind::Enqueue | Kind::Relocate => {
                let e = payload::decode_enqueue(payload).ok_or_else(bad)?;
                self.apply_enqueue(place, payload.len(), e.msg, e.meta, e.refs);
            }
            Kind::Settle => {
                for (queue, msg) in payload::decode_settle(payload).ok_or_else(bad)? {
                    self.next_msg = self.next_msg.max(msg + 1);
                    self.drop_ref(queue, msg);
                }
            }
            Kind::Update => {
                let (queue, msg, dc, ann) = payload::decode_update(payload).ok_or_else(bad)?;
                self.next_msg = self.next_msg.max(msg + 1);
                if let Some(live) = self.messages.get_mut(&msg) {
                    live.refs.update(queue, dc, ann);
                }
            }
            Kind::DeadLetter => {
                let (from, msg, to, ann) = payload::decode_dead_letter(payload).ok_or_else(bad)?;
                self.next_msg = self.next_msg.max(msg + 1);
                if let Some(live) = self.messages.get_mut(&msg) {
                    let mut refs = live.refs.to_vec();
                    if let Some(r) = refs.iter_mut().find(|r| r.queue == from) {
                        r.queue = to;
                        if !ann.is_empty() {
                            r.annotations
                                .extend_from_slice(&(ann.len() as u32).to_le_bytes());
                            r.annotations.extend_from_slice(ann);
                        }
                    }
                    live.refs = Refs::from_vec(refs);
                }
            }
            Kind::Declare => match payload::decode_declare(payload).ok_or_else(bad)? {
                Declare::Queue { queue, name, props } => {
                    self.next_queue = self.next_queue.max(queue.saturating_add(1));
                    if let Some(old) = self.queues.remove(&queue) {
                        let s = self.stat(old.place.segment);
                        s.declarations = s.declarations.saturating_sub(1);
                    }
                    self.stat(place.segment).declarations += 1;
                    self.queues.insert(
                        queue,
                        QueueDecl {
                            name: name.to_string(),
                            props: props.to_vec(),
                            place,
                        },
                    );
                }
                Declare::Deleted { queue } => {
                    self.next_queue = self.next_queue.max(queue.saturating_add(1));
                    if let Some(old) = self.queues.remove(&queue) {
                        let s = self.stat(old.place.segment);
                        s.declarations = s.declarations.saturating_sub(1);
                    }
                    let held: Vec<u64> = self
                        .messages
                        .iter()
                        .filter(|(_, l)| l.refs.to_vec().iter().any(|r| r.queue == queue))
                        .map(|(m, _)| *m)
                        .collect();
                    for msg in held {
                        self.drop_ref(queue, msg);
                    }
                    self.drop_cold(queue);
                }
                Declare::Object {
                    kind,
                    id,
                    name,
                    props,
                } => {
                    self.next_queue = self.next_queue.max(id.saturating_add(1));
                    if let Some(old) = self.objects.remove(&(kind, id)) {
                        let s = self.stat(old.place.segment);
                        s.declarations = s.declarations.saturating_sub(1);
                    }
                    self.stat(place.segment).declarations += 1;
                    self.objects.insert(
                        (kind, id),
                        QueueDecl {
                            name: name.to_string(),
                            props: props.to_vec(),
                            place,
                        },
                    );
                }
                Declare::ObjectDeleted { kind, id } => {
                    self.next_queue = self.next_queue.max(id.saturating_add(1));
                    if let Some(old) = self.objects.remove(&(kind, id)) {
                        let s = self.stat(old.place.segment);
                        s.declarations = s.declarations.saturating_sub(1);
                    }
                }
            },
            Kind::Commit => {}
        }
        Ok(())
    }

    /// The declaration records in segment `number`, re-encoded for compaction to copy.
    pub fn declarations_in(&self, number: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (q, decl) in &self.queues {
            if decl.place.segment == number {
                let mut p = Vec::new();
                payload::encode_declare(
                    &mut p,
                    &Declare::Queue {
                        queue: *q,
                        name: &decl.name,
                        props: &decl.props,
                    },
                );
                out.push(p);
            }
        }
        for ((kind, id), decl) in &self.objects {
            if decl.place.segment == number {
                let mut p = Vec::new();
                payload::encode_declare(
                    &mut p,
                    &Declare::Object {
                        kind: *kind,
                        id: *id,
                        name: &decl.name,
                        props: &decl.props,
                    },
                );
                out.push(p);
            }
        }
        out
    }

    /// After replay: drops references to queues that are not declared (deleted ones whose
    /// deletion record outlived the declaration), and the messages left with none.
    pub fn finish(&mut self) {
        let orphans: Vec<(u32, u64)> = self
            .messages
            .iter()
            .flat_map(|(m, l)| {
                l.refs
                    .to_vec()
                    .into_iter()
                    .filter(|r| !self.queues.contains_key(&r.queue))
                    .map(move |r| (r.queue, *m))
            })
            .collect();
        for (queue, msg) in orphans {
            self.drop_ref(queue, msg);
        }
    }

    /// Forgets segments up to and including `number` (they were retired).
    pub fn forget_through(&mut self, number: u64) {
        self.segments.retain(|&n, _| n > number);
    }
}

/// Splits an annotations blob kept by [`Refs`] (each change length-prefixed) into the
/// changes, oldest first.
pub fn annotation_changes(blob: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = blob;
    while let Some(len) = rest
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
    {
        let Some(change) = rest.get(4..4 + len as usize) else {
            break;
        };
        out.push(change);
        rest = rest.get(4 + len as usize..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(segment: u64, offset: u64) -> Place {
        Place {
            segment,
            offset,
            seq: offset,
        }
    }

    fn declare(ix: &mut Index, queue: u32, at: Place) {
        let mut p = Vec::new();
        payload::encode_declare(
            &mut p,
            &Declare::Queue {
                queue,
                name: "q",
                props: b"",
            },
        );
        ix.apply(at, Kind::Declare, &p).unwrap();
    }

    fn enqueue(ix: &mut Index, msg: u64, queues: &[u32], at: Place) {
        let refs: Vec<Ref> = queues
            .iter()
            .map(|&queue| Ref {
                queue,
                ..Default::default()
            })
            .collect();
        let mut p = Vec::new();
        payload::encode_enqueue(&mut p, msg, &Meta::default(), &refs, b"body");
        ix.apply(at, Kind::Enqueue, &p).unwrap();
    }

    fn settle(ix: &mut Index, pairs: &[(u32, u64)], at: Place) {
        let mut p = Vec::new();
        payload::encode_settle(&mut p, pairs);
        ix.apply(at, Kind::Settle, &p).unwrap();
    }

    #[test]
    fn a_message_lives_until_its_last_queue_settles_it() {
        let mut ix = Index::default();
        declare(&mut ix, 1, place(1, 64));
        declare(&mut ix, 2, place(1, 100));
        enqueue(&mut ix, 10, &[1, 2], place(1, 200));
        assert_eq!(ix.segments[&1].messages, 1);
        settle(&mut ix, &[(1, 10)], place(2, 64));
        assert!(ix.messages.contains_key(&10));
        settle(&mut ix, &[(2, 10)], place(2, 100));
        assert!(!ix.messages.contains_key(&10));
        assert_eq!(ix.segments[&1].messages, 0);
        assert_eq!(ix.live_bytes, 0);
        assert_eq!(ix.next_msg, 11);
    }

    #[test]
    fn a_relocated_message_moves_segments_and_a_deleted_queue_drops_its_references() {
        let mut ix = Index::default();
        declare(&mut ix, 1, place(1, 64));
        enqueue(&mut ix, 5, &[1], place(1, 200));
        let mut p = Vec::new();
        payload::encode_update(&mut p, 1, 5, 2, b"");
        ix.apply(place(2, 64), Kind::Update, &p).unwrap();
        let mut p = Vec::new();
        let live = &ix.messages[&5];
        payload::encode_enqueue(&mut p, 5, &live.meta, &live.refs.to_vec(), b"body");
        ix.apply(place(3, 64), Kind::Relocate, &p).unwrap();
        assert_eq!(ix.segments[&1].messages, 0);
        assert_eq!(ix.segments[&3].messages, 1);
        assert_eq!(
            ix.messages[&5].refs,
            Refs::One {
                queue: 1,
                delivery_count: 2
            }
        );
        let mut p = Vec::new();
        payload::encode_declare(&mut p, &Declare::Deleted { queue: 1 });
        ix.apply(place(3, 500), Kind::Declare, &p).unwrap();
        assert!(ix.messages.is_empty() && ix.queues.is_empty());
        assert!(ix.segments.values().all(SegmentStat::is_dead));
    }

    #[test]
    fn annotation_changes_are_kept_in_order() {
        let mut r = Refs::One {
            queue: 1,
            delivery_count: 0,
        };
        r.update(1, 1, b"a");
        r.update(1, 2, b"bc");
        let v = r.to_vec();
        assert_eq!(v[0].delivery_count, 2);
        assert_eq!(annotation_changes(&v[0].annotations), [&b"a"[..], b"bc"]);
    }
}
