//! Durable storage for messages: a write-ahead log of opaque records.
//!
//! The store knows nothing of AMQP: it keeps message bytes and small metadata (times,
//! priority, per-queue delivery-counts, opaque annotation changes), framed as [`record`]s in
//! preallocated [`segment`] files, written through [`file::Storage`] so tests can put a disk
//! that fails underneath.
//!
//! # Layout
//! - [`record`]: the framing of one record (length, CRC32C, generation, sequence, kind).
//! - [`payload`]: what each kind of record says (the on-disk format of messages, settles,
//!   updates, dead-letter moves and declarations).
//! - [`segment`]: one preallocated file of records in committed batches, and the recovery
//!   rule that tells an unsynced tail from corruption.
//! - [`log`]: the numbered segments of a directory, replayed in order, rolled and retired.
//! - [`index`]: what is live: messages and their queues, declarations, live bytes per segment.
//! - [`writer`]: the group-commit thread, its sync policies, and space reclamation.
//! - [`file`](mod@file): real files and the fault-injecting ones tests use.
//!
//! The on-disk format, and the recovery rule, are written down in `src/store/FORMAT.md`.
//!
//! The broker talks to the store through [`Journal`]: it submits [`Op`]s, which the writer
//! makes durable in order, and reads bodies back by message id after a restart.

pub mod file;
pub mod index;
pub mod log;
pub mod payload;
pub mod record;
pub mod segment;
pub mod writer;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use file::{ReadAt, Storage};
use index::Index;
use log::{Log, LogError};
pub use payload::{Meta, Ref};
use record::{Decoded, HEADER_LEN};
pub use writer::{DISK_FULL, Done, Op, SyncPolicy, WriterStats};
use writer::{Pending, Shared};

/// How the store is set up.
#[derive(Debug, Clone, Copy)]
pub struct StoreConfig {
    /// Bytes per segment file.
    pub segment_size: u64,
    /// When writes become durable.
    pub sync: SyncPolicy,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            sync: SyncPolicy::Always,
        }
    }
}

/// One message of a queue as the log held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredMessage {
    /// Its id.
    pub msg: u64,
    /// Times and priority.
    pub meta: Meta,
    /// This queue's delivery-count for it.
    pub delivery_count: u32,
    /// Annotation changes to merge when reading it (see [`index::annotation_changes`]).
    pub annotations: Vec<u8>,
}

/// A queue as the log held it.
#[derive(Debug, Clone)]
pub struct RecoveredQueue {
    /// Its store id.
    pub id: u32,
    /// Its address.
    pub name: String,
    /// Broker-defined properties.
    pub props: Vec<u8>,
    /// Its messages, in the order they were enqueued.
    pub messages: Vec<RecoveredMessage>,
}

/// A declared object (binding, subscription) as the log held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredObject {
    /// What it is, in the broker's numbering.
    pub kind: u8,
    /// Its id.
    pub id: u32,
    /// Its name.
    pub name: String,
    /// Its contents.
    pub props: Vec<u8>,
}

/// What opening the store found.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Every declared queue.
    pub queues: Vec<RecoveredQueue>,
    /// Every other declared object, by kind and id.
    pub objects: Vec<RecoveredObject>,
    /// Records replayed.
    pub records: u64,
    /// Segments read.
    pub segments: usize,
    /// Bytes read.
    pub bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// Why a body could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The message is not (or no longer) in the log.
    #[error("message {0} is not in the log")]
    Missing(u64),
    /// The read failed or found damage.
    #[error("reading message {msg}: {why}")]
    Failed {
        /// The message.
        msg: u64,
        /// What went wrong.
        why: String,
    },
}

/// A paged-out message read back.
#[derive(Debug, Clone)]
pub struct Paged {
    /// Its id.
    pub msg: u64,
    /// This queue's delivery-count for it.
    pub delivery_count: u32,
    /// Annotation changes to merge (see [`index::annotation_changes`]).
    pub annotations: Vec<u8>,
    /// The message bytes.
    pub body: Bytes,
    /// When it expires (ms since the epoch), 0 for never.
    pub expiry: u64,
}

/// What the broker needs from durable storage.
pub trait Journal: Send + Sync + std::fmt::Debug {
    /// A fresh message id.
    fn next_message_id(&self) -> u64;
    /// A fresh queue id.
    fn next_queue_id(&self) -> u32;
    /// Queues `ops` for the writer, in order, without blocking.
    fn submit(&self, ops: Vec<Op>);
    /// Reads message `msg`'s body back.
    fn read(&self, msg: u64) -> Result<Bytes, ReadError>;
    /// Bytes submitted and not yet written.
    fn backlog(&self) -> usize;
    /// Why the log refuses writes, if it does.
    fn failure(&self) -> Option<String>;
    /// The writer's counters.
    fn stats(&self) -> WriterStats;
    /// Whether the disk is too full to take new messages.
    fn disk_full(&self) -> bool;
    /// Reads back up to `max` of `queue`'s paged-out messages (about `max_bytes` at most,
    /// but at least one), oldest first. They are then held one by one like any other.
    fn page_in(&self, queue: u32, max: usize, max_bytes: usize) -> Result<Vec<Paged>, ReadError>;
}

type Opener = Box<dyn Fn(u64) -> std::io::Result<Arc<dyn ReadAt>> + Send + Sync>;

/// The durable store: a log in a directory and the writer thread that owns it.
pub struct Store {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    next_msg: AtomicU64,
    next_queue: AtomicU64,
    readers: Mutex<BTreeMap<u64, Arc<dyn ReadAt>>>,
    opener: Opener,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("next_msg", &self.next_msg)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the log in `storage`, replays it, and starts the writer.
    pub fn open<S: Storage + Clone>(
        storage: S,
        cfg: StoreConfig,
    ) -> Result<(Arc<Self>, Recovery), LogError> {
        let started = Instant::now();
        let reader_storage = storage.clone();
        let mut index = Index::default();
        let (log, found) = Log::open_in(storage, cfg.segment_size, |place, kind, payload| {
            index.apply(place, kind, payload)
        })?;
        index.finish();
        let mut recovery = Recovery {
            records: found.records,
            segments: found.segments,
            bytes: found.bytes,
            ..Default::default()
        };
        let mut by_queue: BTreeMap<u32, Vec<RecoveredMessage>> = BTreeMap::new();
        for (msg, live) in &index.messages {
            for r in live.refs.to_vec() {
                by_queue.entry(r.queue).or_default().push(RecoveredMessage {
                    msg: *msg,
                    meta: live.meta,
                    delivery_count: r.delivery_count,
                    annotations: r.annotations,
                });
            }
        }
        for (id, decl) in &index.queues {
            let mut messages = by_queue.remove(id).unwrap_or_default();
            messages.sort_unstable_by_key(|m| m.msg);
            recovery.queues.push(RecoveredQueue {
                id: *id,
                name: decl.name.clone(),
                props: decl.props.clone(),
                messages,
            });
        }
        recovery.queues.sort_by_key(|q| q.id);
        recovery.objects = index
            .objects
            .iter()
            .map(|((kind, id), d)| RecoveredObject {
                kind: *kind,
                id: *id,
                name: d.name.clone(),
                props: d.props.clone(),
            })
            .collect();
        let next_msg = index.next_msg;
        let next_queue = u64::from(index.next_queue);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            index: Mutex::new(index),
            stats: Mutex::new(WriterStats::default()),
            failed: Mutex::new(None),
            disk_full: std::sync::atomic::AtomicBool::new(false),
        });
        let for_thread = Arc::clone(&shared);
        let policy = cfg.sync;
        let thread = std::thread::Builder::new()
            .name("ferry-wal".into())
            .spawn(move || {
                let log = writer::run(log, for_thread, policy);
                drop(log);
            })
            .map_err(|source| LogError::Io {
                path: reader_storage.name(0),
                source,
            })?;
        recovery.elapsed = started.elapsed();
        let store = Arc::new(Self {
            shared,
            thread: Mutex::new(Some(thread)),
            next_msg: AtomicU64::new(next_msg),
            next_queue: AtomicU64::new(next_queue),
            readers: Mutex::new(BTreeMap::new()),
            opener: Box::new(move |n| reader_storage.reader(n)),
        });
        Ok((store, recovery))
    }

    /// Finishes every queued op, syncs (unless the policy is `never`) and stops the writer.
    /// Later submissions are answered with an error.
    pub fn close(&self) {
        self.shared.lock_pending().closed = true;
        self.shared.wake.notify_all();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }

    fn reader(&self, segment: u64) -> std::io::Result<Arc<dyn ReadAt>> {
        let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = readers.get(&segment) {
            return Ok(Arc::clone(r));
        }
        let r = (self.opener)(segment)?;
        // Readers of retired segments are dropped as the log moves on.
        if let Some(&oldest) = readers.keys().next()
            && readers.len() >= 64
        {
            readers.remove(&oldest);
        }
        readers.insert(segment, Arc::clone(&r));
        Ok(r)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

impl Journal for Store {
    fn next_message_id(&self) -> u64 {
        self.next_msg.fetch_add(1, Ordering::Relaxed)
    }

    fn next_queue_id(&self) -> u32 {
        u32::try_from(self.next_queue.fetch_add(1, Ordering::Relaxed)).unwrap_or(u32::MAX)
    }

    fn submit(&self, ops: Vec<Op>) {
        if ops.is_empty() {
            return;
        }
        let weight: usize = ops.iter().map(Op::weight).sum();
        let mut p = self.shared.lock_pending();
        if p.closed {
            drop(p);
            for op in ops {
                if let Op::Done(d) = op {
                    d(Err("the store is closed".into()));
                }
            }
            return;
        }
        let was_empty = p.ops.is_empty();
        p.ops.extend(ops);
        p.bytes += weight;
        drop(p);
        if was_empty {
            self.shared.wake.notify_one();
        }
    }

    fn read(&self, msg: u64) -> Result<Bytes, ReadError> {
        let (segment, offset, seq, len) = {
            let index = self.shared.lock_index();
            let live = index.messages.get(&msg).ok_or(ReadError::Missing(msg))?;
            (live.segment, live.offset, live.seq, live.len)
        };
        let failed = |why: String| ReadError::Failed { msg, why };
        let reader = self.reader(segment).map_err(|e| failed(e.to_string()))?;
        let mut buf = vec![0u8; HEADER_LEN + len as usize];
        let n = reader
            .read_at(offset, &mut buf)
            .map_err(|e| failed(e.to_string()))?;
        let generation = buf
            .get(8..12)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes);
        // Checked again on the way back: checksum, and the sequence number the index expects.
        let start = match record::decode(buf.get(..n).unwrap_or_default(), generation, Some(seq)) {
            Decoded::Record(r, _) => {
                let e = payload::decode_enqueue(r.payload)
                    .filter(|e| e.msg == msg)
                    .ok_or_else(|| failed("record does not hold this message".into()))?;
                HEADER_LEN + r.payload.len() - e.body.len()
            }
            other => {
                return Err(failed(format!(
                    "segment {segment} offset {offset}: {other:?}"
                )));
            }
        };
        Ok(Bytes::from(buf).split_off(start))
    }

    fn backlog(&self) -> usize {
        self.shared.lock_pending().bytes
    }

    fn failure(&self) -> Option<String> {
        self.shared.failure()
    }

    fn stats(&self) -> WriterStats {
        *self.shared.lock_stats()
    }

    fn disk_full(&self) -> bool {
        self.shared.disk_full.load(Ordering::Relaxed)
    }

    fn page_in(&self, queue: u32, max: usize, max_bytes: usize) -> Result<Vec<Paged>, ReadError> {
        // The run may move under us (compaction copies it, the segment is retired): read
        // it, then take what was read only if the run is still where it was; else again.
        for _ in 0..8 {
            let Some(run) = self
                .shared
                .lock_index()
                .cold
                .get(&queue)
                .and_then(|runs| runs.front().copied())
            else {
                return Ok(Vec::new());
            };
            let failed = |why: String| ReadError::Failed { msg: 0, why };
            let reader = self
                .reader(run.segment)
                .map_err(|e| failed(e.to_string()))?;
            let (paged, next, bytes, hot) = match read_run(&*reader, queue, &run, max, max_bytes) {
                Ok(r) => r,
                // Damage in a run that has since moved is only a recycled file: retry.
                Err(why) => {
                    let still = self
                        .shared
                        .lock_index()
                        .cold
                        .get(&queue)
                        .and_then(|runs| runs.front().copied())
                        .is_some_and(|r| r.segment == run.segment && r.start == run.start);
                    if still {
                        return Err(failed(format!(
                            "segment {} offset {}: {why}",
                            run.segment, run.start
                        )));
                    }
                    continue;
                }
            };
            let mut index = self.shared.lock_index();
            let still = index
                .cold
                .get(&queue)
                .and_then(|runs| runs.front())
                .is_some_and(|r| r.segment == run.segment && r.start == run.start);
            if !still {
                continue;
            }
            index.take_cold(queue, next, paged.len() as u64, bytes, hot);
            return Ok(paged);
        }
        Ok(Vec::new())
    }
}

/// What reading the front of a cold run gives: the messages, where the run goes on, the
/// record bytes taken, and the index entries that now hold them one by one.
type RunRead = (Vec<Paged>, u64, u64, Vec<(u64, index::Live)>);

/// Reads up to `max` of `queue`'s records from the front of `run`, checking each record's
/// checksum and that the sequence numbers follow on.
fn read_run(
    reader: &dyn ReadAt,
    queue: u32,
    run: &index::ColdRun,
    max: usize,
    max_bytes: usize,
) -> Result<RunRead, String> {
    let span = (run.end - run.start) as usize;
    let mut buf = vec![0u8; span.min(max_bytes.max(HEADER_LEN))];
    let n = reader
        .read_at(run.start, &mut buf)
        .map_err(|e| e.to_string())?;
    buf.truncate(n);
    // A first record larger than what was read: read exactly it.
    if let Some(len) = buf
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
    {
        let need = HEADER_LEN + len as usize;
        if need > buf.len() && need <= span {
            buf.resize(need, 0);
            let n = reader
                .read_at(run.start, &mut buf)
                .map_err(|e| e.to_string())?;
            buf.truncate(n);
        }
    }
    let mut pos = 0usize;
    let mut seq = None;
    let mut out = Vec::new();
    let mut hot = Vec::new();
    let mut bytes = 0u64;
    while out.len() < max && (pos as u64) < run.end - run.start {
        let rest = buf.get(pos..).unwrap_or_default();
        let generation = rest
            .get(8..12)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes);
        let (r, used) = match record::decode(rest, generation, seq) {
            Decoded::Record(r, used) => (r, used),
            // The rest of the run is past what was read.
            Decoded::Torn if !out.is_empty() || pos > 0 => break,
            other => return Err(format!("{other:?}")),
        };
        seq = Some(r.seq + 1);
        let offset = run.start + pos as u64;
        pos += used;
        if !matches!(r.kind, record::Kind::Enqueue | record::Kind::Relocate) {
            continue;
        }
        let Some(e) = payload::decode_enqueue(r.payload) else {
            return Err("message record does not parse".into());
        };
        let Some(mine) = e.refs.iter().find(|x| x.queue == queue) else {
            continue;
        };
        bytes += used as u64;
        hot.push((
            e.msg,
            index::Live {
                segment: run.segment,
                offset,
                seq: r.seq,
                len: r.payload.len() as u32,
                meta: e.meta,
                refs: index::Refs::One {
                    queue,
                    delivery_count: mine.delivery_count,
                },
            },
        ));
        out.push(Paged {
            msg: e.msg,
            delivery_count: mine.delivery_count,
            annotations: mine.annotations.clone(),
            body: Bytes::copy_from_slice(e.body),
            expiry: e.meta.expiry,
        });
    }
    Ok((out, run.start + pos as u64, bytes, hot))
}

#[cfg(test)]
mod tests;
