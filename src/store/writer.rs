//! Group commit: one thread owns the log and makes the records of every connection durable
//! together, with one `fdatasync` per batch.
//!
//! Connections push [`Op`]s onto a shared list and return at once (they run on async
//! threads and must not block). The writer takes the whole list, appends a record per op
//! (consecutive settles share one record), commits, applies the batch to the [`Index`], and
//! only then calls each [`Op::Done`]. Under the `always` policy that call means "on disk",
//! and the next batch starts the moment the previous sync returns, so batches grow with the
//! load and syncs per second stay bounded by the disk, not by the number of producers.
//!
//! Between batches the writer reclaims space: dead segments at the head of the log are
//! retired, and when the log holds more than twice its live bytes plus two segments, the
//! oldest segment's live records are copied forward (compaction) so it can be retired too.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::file::Storage;
use super::index::{ColdRun, Index};
use super::log::{Log, LogError, Place};
use super::payload::{self, Declare, Meta, Ref};
use super::record::Kind;
use super::segment::scan;

/// When written records become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Sync every batch before answering: nothing answered is ever lost (the default).
    Always,
    /// Answer once written; sync at least this often. A power loss (not `kill -9`: the page
    /// cache survives that) can lose what was answered within the last interval.
    Interval(Duration),
    /// Answer once written and never sync: for tests and benchmarks only; a power loss can
    /// lose anything the kernel has not yet written back.
    Never,
}

/// What the writer calls once the ops before it are as durable as the policy makes them, or
/// why they are not. A callback rather than a channel, so the store stays free of any async
/// runtime (the transport passes one that wakes its connection task).
pub type Done = Box<dyn FnOnce(Result<(), String>) + Send>;

/// One thing for the writer to do.
pub enum Op {
    /// Store a message for the queues in `refs`.
    Enqueue {
        /// Its id (from [`super::Journal::next_message_id`]).
        msg: u64,
        /// Times and priority.
        meta: Meta,
        /// The queues.
        refs: Vec<Ref>,
        /// The message bytes.
        body: Bytes,
        /// The queues keep it paged out: the index records it in their cold runs instead
        /// of one by one (see [`super::index::ColdRun`]).
        cold: bool,
    },
    /// `queue` is done with `msg`.
    Settle {
        /// The queue.
        queue: u32,
        /// The message.
        msg: u64,
    },
    /// `queue`'s copy of `msg` has a new delivery-count and maybe annotation changes.
    Update {
        /// The queue.
        queue: u32,
        /// The message.
        msg: u64,
        /// The new delivery-count.
        delivery_count: u32,
        /// Encoded annotation changes, or empty.
        annotations: Vec<u8>,
    },
    /// Moves `msg` from queue `from` to queue `to` in one record.
    DeadLetter {
        /// The queue it leaves.
        from: u32,
        /// The message.
        msg: u64,
        /// Its dead-letter queue.
        to: u32,
        /// Encoded annotations saying why.
        annotations: Vec<u8>,
    },
    /// Queue `queue` exists.
    DeclareQueue {
        /// Its store id.
        queue: u32,
        /// Its address.
        name: String,
        /// Broker-defined properties.
        props: Vec<u8>,
    },
    /// Queue `queue` is gone, with its messages.
    DeleteQueue {
        /// Its store id.
        queue: u32,
    },
    /// Another object the broker keeps (a binding, a subscription; `kind` is the broker's).
    DeclareObject {
        /// What it is.
        kind: u8,
        /// Its id (from the queue id counter).
        id: u32,
        /// Its name.
        name: String,
        /// Its contents.
        props: Vec<u8>,
    },
    /// That object is gone.
    DeleteObject {
        /// What it was.
        kind: u8,
        /// Its id.
        id: u32,
    },
    /// Call back once every op before this one is durable.
    Done(Done),
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Enqueue { msg, body, .. } => write!(f, "Enqueue({msg}, {} bytes)", body.len()),
            Op::Settle { queue, msg } => write!(f, "Settle({queue}, {msg})"),
            Op::Update { queue, msg, .. } => write!(f, "Update({queue}, {msg})"),
            Op::DeadLetter { from, msg, to, .. } => write!(f, "DeadLetter({from}→{to}, {msg})"),
            Op::DeclareQueue { queue, name, .. } => write!(f, "DeclareQueue({queue}, {name})"),
            Op::DeleteQueue { queue } => write!(f, "DeleteQueue({queue})"),
            Op::DeclareObject { kind, id, name, .. } => {
                write!(f, "DeclareObject({kind}, {id}, {name})")
            }
            Op::DeleteObject { kind, id } => write!(f, "DeleteObject({kind}, {id})"),
            Op::Done(_) => f.write_str("Done"),
        }
    }
}

impl Op {
    /// Bytes this op adds to the log, roughly: what the pending list is bounded by.
    pub fn weight(&self) -> usize {
        match self {
            Op::Enqueue { body, refs, .. } => body.len() + payload::enqueue_overhead(refs),
            Op::Update { annotations, .. } | Op::DeadLetter { annotations, .. } => {
                32 + annotations.len()
            }
            Op::DeclareQueue { name, props, .. } | Op::DeclareObject { name, props, .. } => {
                16 + name.len() + props.len()
            }
            _ => 16,
        }
    }
}

/// Counters the writer keeps (for metrics, tests and the benchmark report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Batches committed.
    pub batches: u64,
    /// `fdatasync` calls.
    pub syncs: u64,
    /// Records appended.
    pub records: u64,
    /// Messages enqueued.
    pub enqueued: u64,
    /// Bytes appended, record framing included.
    pub bytes: u64,
    /// Live records copied forward by compaction.
    pub relocated: u64,
    /// Segments retired.
    pub retired: u64,
    /// Segments in the log now.
    pub segments: u64,
    /// Bytes of live records now.
    pub live_bytes: u64,
    /// Live messages now.
    pub live_messages: u64,
    /// Messages refused because the disk was full.
    pub refused_full: u64,
}

/// What a refused enqueue's waiter hears while the disk is full; the broker maps it to
/// `amqp:resource-limit-exceeded`.
pub const DISK_FULL: &str = "disk full";

/// State shared by the writer thread and the store handle.
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) ops: Vec<Op>,
    pub(super) bytes: usize,
    pub(super) closed: bool,
}

/// What connections and the writer share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) pending: Mutex<Pending>,
    pub(super) wake: Condvar,
    pub(super) index: Mutex<Index>,
    pub(super) stats: Mutex<WriterStats>,
    /// Set when the log failed: every later write is refused with this.
    pub(super) failed: Mutex<Option<String>>,
    /// Free space is below the reserve: new messages are refused, settles still written.
    pub(super) disk_full: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub(super) fn lock_pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(super) fn lock_index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(super) fn lock_stats(&self) -> MutexGuard<'_, WriterStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(super) fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Most op bytes appended per batch: bounds how long one batch's callers wait for another's.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Segments compacted between two batches at most.
const MAX_COMPACTIONS: usize = 4;

/// The writer thread's loop; returns the log when the store closes.
pub(super) fn run<S: Storage>(mut log: Log<S>, shared: Arc<Shared>, policy: SyncPolicy) -> Log<S> {
    let mut last_sync = Instant::now();
    let mut unsynced = false;
    let mut scratch = Vec::new();
    loop {
        let ops = {
            let mut p = shared.lock_pending();
            loop {
                if !p.ops.is_empty() {
                    break;
                }
                if p.closed {
                    drop(p);
                    if unsynced && policy != SyncPolicy::Never {
                        let _ = log.sync();
                    }
                    return log;
                }
                // While the disk is full, look at it again every second even with nothing to
                // write, so space freed from outside is noticed.
                if shared.disk_full.load(std::sync::atomic::Ordering::Relaxed) {
                    let (g, timeout) = shared
                        .wake
                        .wait_timeout(p, Duration::from_secs(1))
                        .unwrap_or_else(|e| e.into_inner());
                    p = g;
                    if timeout.timed_out() && p.ops.is_empty() {
                        break;
                    }
                    continue;
                }
                match policy {
                    SyncPolicy::Interval(every) if unsynced => {
                        let left = every.saturating_sub(last_sync.elapsed());
                        if left.is_zero() {
                            break;
                        }
                        p = shared
                            .wake
                            .wait_timeout(p, left)
                            .map(|(g, _)| g)
                            .unwrap_or_else(|e| e.into_inner().0);
                    }
                    _ => {
                        p = shared.wake.wait(p).unwrap_or_else(|e| e.into_inner());
                    }
                }
            }
            take_batch(&mut p)
        };
        let ops = check_space(&log, &shared, ops);
        let sync_now = match policy {
            SyncPolicy::Always => true,
            SyncPolicy::Interval(every) => last_sync.elapsed() >= every,
            SyncPolicy::Never => false,
        };
        let mut dones = Vec::new();
        let result = write_batch(&mut log, ops, &mut scratch, &mut dones, sync_now, &shared);
        match &result {
            Ok(()) if sync_now => {
                last_sync = Instant::now();
                unsynced = false;
            }
            Ok(()) => unsynced = true,
            Err(e) => {
                tracing::error!(error = %e, "the write-ahead log failed; durable writes are refused from now on");
                *shared.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
            }
        }
        let answer = result.map_err(|e| e.to_string());
        for done in dones {
            done(answer.clone());
        }
        if shared.failure().is_none()
            && let Err(e) = reclaim(&mut log, &shared, &mut scratch)
        {
            tracing::error!(error = %e, "reclaiming log space failed; durable writes are refused from now on");
            *shared.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
        }
    }
}

/// Whether the device has room, with hysteresis: full below two segments free (the reserve
/// that settle records and compaction may still use), room again from three. While full,
/// every group of ops holding an enqueue has the enqueues dropped and its `Done` answered
/// with [`DISK_FULL`]; the rest (settles, updates, declarations) is written.
fn check_space<S: Storage>(log: &Log<S>, shared: &Shared, ops: Vec<Op>) -> Vec<Op> {
    use std::sync::atomic::Ordering;
    let cap = log.capacity();
    let was_full = shared.disk_full.load(Ordering::Relaxed);
    let full = match log.storage().free_space() {
        Some(free) if was_full => free < 3 * cap,
        Some(free) => free < 2 * cap,
        None => false,
    };
    if full != was_full {
        shared.disk_full.store(full, Ordering::Relaxed);
        if full {
            tracing::warn!(
                reserve_bytes = 2 * cap,
                "disk almost full: durable messages are refused (resource-limit-exceeded) and producers of durable queues get no credit until space is freed"
            );
        } else {
            tracing::info!("disk space is back: durable messages are accepted again");
        }
    }
    if !full {
        return ops;
    }
    let mut kept = Vec::with_capacity(ops.len());
    let mut refused = 0;
    let mut group_refused = false;
    for op in ops {
        match op {
            Op::Enqueue { .. } => {
                refused += 1;
                group_refused = true;
            }
            Op::Done(done) if group_refused => {
                group_refused = false;
                done(Err(DISK_FULL.into()));
            }
            Op::Done(done) => kept.push(Op::Done(done)),
            other => kept.push(other),
        }
    }
    shared.lock_stats().refused_full += refused;
    kept
}

/// Takes up to [`MAX_BATCH_BYTES`] of ops, whole.
fn take_batch(p: &mut Pending) -> Vec<Op> {
    if p.bytes <= MAX_BATCH_BYTES {
        p.bytes = 0;
        return std::mem::take(&mut p.ops);
    }
    let mut taken = 0;
    let mut n = 0;
    for op in &p.ops {
        if taken >= MAX_BATCH_BYTES {
            break;
        }
        taken += op.weight();
        n += 1;
    }
    p.bytes = p.bytes.saturating_sub(taken);
    p.ops.drain(..n).collect()
}

/// A record of the batch, kept to apply to the index once the batch is written.
enum Applied {
    /// A message: what the index needs, without its body.
    Enqueue {
        place: Place,
        len: usize,
        msg: u64,
        meta: Meta,
        refs: Vec<Ref>,
        cold: bool,
    },
    /// Any other record, with its (small) payload.
    Record(Place, Kind, Vec<u8>),
}

/// Appends one batch, commits it, and applies it to the index. The index is updated only
/// after the records are written, so a reader never looks for a body not yet in the file.
fn write_batch<S: Storage>(
    log: &mut Log<S>,
    ops: Vec<Op>,
    scratch: &mut Vec<u8>,
    dones: &mut Vec<Done>,
    sync: bool,
    shared: &Shared,
) -> Result<(), LogError> {
    if let Some(why) = shared.failure() {
        for op in ops {
            if let Op::Done(d) = op {
                dones.push(d);
            }
        }
        return Err(LogError::Io {
            path: "wal".into(),
            source: std::io::Error::other(why),
        });
    }
    let mut applied: Vec<Applied> = Vec::with_capacity(ops.len());
    let mut settles: Vec<(u32, u64)> = Vec::new();
    let mut stats = WriterStats::default();
    fn push<S: Storage>(
        log: &mut Log<S>,
        applied: &mut Vec<Applied>,
        stats: &mut WriterStats,
        kind: Kind,
        payload: Vec<u8>,
    ) -> Result<(), LogError> {
        let place = log.append(kind, &payload)?;
        stats.records += 1;
        stats.bytes += (payload.len() + super::record::HEADER_LEN) as u64;
        applied.push(Applied::Record(place, kind, payload));
        Ok(())
    }
    let mut failed = None;
    for op in ops {
        if failed.is_some() {
            if let Op::Done(d) = op {
                dones.push(d);
            }
            continue;
        }
        if !matches!(op, Op::Settle { .. }) && !settles.is_empty() {
            scratch.clear();
            payload::encode_settle(scratch, &settles);
            settles.clear();
            if let Err(e) = push(log, &mut applied, &mut stats, Kind::Settle, scratch.clone()) {
                failed = Some(e);
            }
        }
        let mut p = Vec::new();
        let r = match op {
            Op::Enqueue {
                msg,
                meta,
                refs,
                body,
                cold,
            } => {
                // Encoded straight into the batch: the body is copied once, there.
                let len = payload::enqueue_overhead(&refs) + body.len();
                match log.append_with(Kind::Enqueue, len, &mut |out| {
                    payload::encode_enqueue(out, msg, &meta, &refs, &body)
                }) {
                    Ok(place) => {
                        stats.enqueued += 1;
                        stats.records += 1;
                        stats.bytes += (len + super::record::HEADER_LEN) as u64;
                        applied.push(Applied::Enqueue {
                            place,
                            len,
                            msg,
                            meta,
                            refs,
                            cold,
                        });
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Op::Settle { queue, msg } => {
                settles.push((queue, msg));
                Ok(())
            }
            Op::Update {
                queue,
                msg,
                delivery_count,
                annotations,
            } => {
                payload::encode_update(&mut p, queue, msg, delivery_count, &annotations);
                push(log, &mut applied, &mut stats, Kind::Update, p)
            }
            Op::DeadLetter {
                from,
                msg,
                to,
                annotations,
            } => {
                payload::encode_dead_letter(&mut p, from, msg, to, &annotations);
                push(log, &mut applied, &mut stats, Kind::DeadLetter, p)
            }
            Op::DeclareQueue { queue, name, props } => {
                payload::encode_declare(
                    &mut p,
                    &Declare::Queue {
                        queue,
                        name: &name,
                        props: &props,
                    },
                );
                push(log, &mut applied, &mut stats, Kind::Declare, p)
            }
            Op::DeleteQueue { queue } => {
                payload::encode_declare(&mut p, &Declare::Deleted { queue });
                push(log, &mut applied, &mut stats, Kind::Declare, p)
            }
            Op::DeclareObject {
                kind,
                id,
                name,
                props,
            } => {
                payload::encode_declare(
                    &mut p,
                    &Declare::Object {
                        kind,
                        id,
                        name: &name,
                        props: &props,
                    },
                );
                push(log, &mut applied, &mut stats, Kind::Declare, p)
            }
            Op::DeleteObject { kind, id } => {
                payload::encode_declare(&mut p, &Declare::ObjectDeleted { kind, id });
                push(log, &mut applied, &mut stats, Kind::Declare, p)
            }
            Op::Done(d) => {
                dones.push(d);
                Ok(())
            }
        };
        if let Err(e) = r {
            failed = Some(e);
        }
    }
    if failed.is_none() && !settles.is_empty() {
        scratch.clear();
        payload::encode_settle(scratch, &settles);
        if let Err(e) = push(log, &mut applied, &mut stats, Kind::Settle, scratch.clone()) {
            failed = Some(e);
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    log.commit_with(sync)?;
    {
        let mut index = shared.lock_index();
        for a in applied {
            match a {
                Applied::Enqueue {
                    place,
                    len,
                    msg,
                    refs,
                    cold: true,
                    ..
                } => index.apply_cold(place, len, msg, &refs),
                Applied::Enqueue {
                    place,
                    len,
                    msg,
                    meta,
                    refs,
                    cold: false,
                } => index.apply_enqueue(place, len, msg, meta, refs),
                Applied::Record(place, kind, payload) => {
                    // Our own records always parse; a failure would be a bug, not damage.
                    if let Err(why) = index.apply(place, kind, &payload) {
                        tracing::error!(why, "index update failed");
                    }
                }
            }
        }
    }
    let mut s = shared.lock_stats();
    s.batches += 1;
    s.syncs += u64::from(sync);
    s.records += stats.records;
    s.enqueued += stats.enqueued;
    s.bytes += stats.bytes;
    Ok(())
}

/// Retires dead segments at the head of the log, and compacts the oldest one when the log
/// is more than twice its live bytes plus two segments: its live records are copied to the
/// end and synced, then it is retired. With one unsettled message in every segment the log
/// therefore stays within that bound instead of growing.
fn reclaim<S: Storage>(
    log: &mut Log<S>,
    shared: &Shared,
    scratch: &mut Vec<u8>,
) -> Result<(), LogError> {
    // Compactions per call are bounded so one batch's callers never wait long behind them;
    // the next batch continues where this one stopped.
    let mut compactions = 0;
    loop {
        let (first, current) = log.segments();
        if first >= current {
            break;
        }
        let (dead, live_bytes) = {
            let index = shared.lock_index();
            let dead = index.segments.get(&first).is_none_or(|s| s.is_dead());
            (dead, index.live_bytes)
        };
        if !dead {
            let kept = (current - first + 1) * log.capacity();
            if kept <= 2 * live_bytes + 2 * log.capacity() || compactions == MAX_COMPACTIONS {
                break;
            }
            compact(log, shared, first, scratch)?;
            compactions += 1;
        }
        log.retire_through(first)?;
        shared.lock_index().forget_through(first);
        shared.lock_stats().retired += 1;
    }
    let (first, current) = log.segments();
    let index = shared.lock_index();
    let mut s = shared.lock_stats();
    s.segments = current - first + 1;
    s.live_bytes = index.live_bytes;
    s.live_messages = index.messages.len() as u64;
    Ok(())
}

/// Copies segment `number`'s live records (declarations first, then messages with their
/// current references) to the end of the log, and syncs them.
fn compact<S: Storage>(
    log: &mut Log<S>,
    shared: &Shared,
    number: u64,
    scratch: &mut Vec<u8>,
) -> Result<(), LogError> {
    // Often only a queue declaration keeps the head alive: copy it without reading the
    // segment.
    let only_declarations = shared
        .lock_index()
        .segments
        .get(&number)
        .is_some_and(|s| s.messages == 0 && s.cold == 0);
    if only_declarations {
        let copies = shared.lock_index().declarations_in(number);
        let mut places = Vec::with_capacity(copies.len());
        for p in &copies {
            places.push(log.append(Kind::Declare, p)?);
        }
        log.commit()?;
        let mut index = shared.lock_index();
        for (place, p) in places.into_iter().zip(&copies) {
            if let Err(why) = index.apply(place, Kind::Declare, p) {
                tracing::error!(why, "index update failed");
            }
        }
        drop(index);
        let mut st = shared.lock_stats();
        st.relocated += copies.len() as u64;
        st.syncs += 1;
        return Ok(());
    }
    let reader = log.reader(number)?;
    let s = scan(&ReadOnly(reader)).map_err(|source| LogError::Io {
        path: log.storage().name(number),
        source,
    })?;
    let mut copies: Vec<(Kind, Vec<u8>)> = Vec::new();
    {
        let index = shared.lock_index();
        copies.extend(
            index
                .declarations_in(number)
                .into_iter()
                .map(|p| (Kind::Declare, p)),
        );
        for r in &s.records {
            if !matches!(r.kind, Kind::Enqueue | Kind::Relocate) {
                continue;
            }
            let Some(e) = payload::decode_enqueue(s.payload(r)) else {
                continue;
            };
            let Some(live) = index.messages.get(&e.msg) else {
                continue;
            };
            if live.segment != number || live.offset != r.offset {
                continue;
            }
            scratch.clear();
            payload::encode_enqueue(scratch, e.msg, &live.meta, &live.refs.to_vec(), e.body);
            copies.push((Kind::Relocate, scratch.clone()));
        }
    }
    // Cold runs in this segment: their records are copied as one block per run, so each
    // run stays one stretch of the log (split only where the log moves to a new segment).
    let runs: Vec<(u32, ColdRun)> = {
        let index = shared.lock_index();
        index
            .cold
            .iter()
            .flat_map(|(q, runs)| {
                runs.iter()
                    .filter(|r| r.segment == number)
                    .map(move |r| (*q, *r))
            })
            .collect()
    };
    let mut applied = Vec::with_capacity(copies.len());
    for (kind, p) in copies {
        let place = log.append(kind, &p)?;
        applied.push((place, kind, p));
    }
    // Per run: (old offset, new place, record bytes) of each copied record.
    let mut moved: Vec<(u32, ColdRun, Vec<Copied>)> = Vec::new();
    for (queue, run) in runs {
        let mut copied = Vec::new();
        for r in &s.records {
            if r.offset < run.start || r.offset >= run.end {
                continue;
            }
            if !matches!(r.kind, Kind::Enqueue | Kind::Relocate) {
                continue;
            }
            let p = s.payload(r);
            if !payload::decode_enqueue(p).is_some_and(|e| e.refs.iter().any(|x| x.queue == queue))
            {
                continue;
            }
            let place = log.append(Kind::Relocate, p)?;
            copied.push((
                r.offset,
                place,
                (p.len() + super::record::HEADER_LEN) as u64,
            ));
        }
        moved.push((queue, run, copied));
    }
    log.commit()?;
    let mut index = shared.lock_index();
    let mut relocated = applied.len() as u64;
    for (place, kind, p) in &applied {
        if let Err(why) = index.apply(*place, *kind, p) {
            tracing::error!(why, "index update failed");
        }
    }
    for (queue, run, copied) in moved {
        relocated += copied.len() as u64;
        // Read back meanwhile up to its current start (its end cannot have moved: this
        // segment is not written any more).
        let Some(now) = index
            .cold
            .get(&queue)
            .and_then(|runs| {
                runs.iter()
                    .find(|r| r.segment == number && r.end == run.end)
            })
            .copied()
        else {
            continue;
        };
        let rest: Vec<&Copied> = copied
            .iter()
            .filter(|(old, _, _)| *old >= now.start)
            .collect();
        let mut pieces: Vec<ColdRun> = Vec::new();
        for (_, place, bytes) in rest {
            match pieces.last_mut() {
                Some(p) if p.segment == place.segment => {
                    p.end = place.offset + bytes;
                    p.count += 1;
                    p.bytes += bytes;
                }
                _ => pieces.push(ColdRun {
                    segment: place.segment,
                    start: place.offset,
                    end: place.offset + bytes,
                    count: 1,
                    bytes: *bytes,
                    sealed: true,
                }),
            }
        }
        index.replace_cold(queue, (now.segment, now.start), pieces);
    }
    // Copies now sit in the log after every open run: no run may grow over them.
    index.seal_cold();
    drop(index);
    let mut st = shared.lock_stats();
    st.relocated += relocated;
    st.syncs += 1;
    Ok(())
}

/// A record compaction copied: its old offset, its new place, its bytes.
type Copied = (u64, Place, u64);

/// A reader used where the scan wants a segment file.
struct ReadOnly(Arc<dyn super::file::ReadAt>);

impl super::file::SegmentFile for ReadOnly {
    fn write_at(&mut self, _: u64, _: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::other("read-only"))
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read_at(offset, buf)
    }
    fn sync_data(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn len(&self) -> std::io::Result<u64> {
        self.0.size()
    }
}
