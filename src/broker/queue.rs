//! A queue: messages in FIFO order, served round-robin to the consumer links that have credit.
//!
//! Dispatch is push: when a message arrives or a consumer gains credit, the queue picks the
//! next consumer with credit, takes one credit, and hands the message to that consumer's
//! connection task through its bounded channel. The connection writes the transfer; the
//! peer's disposition comes back as [`Queue::settle`]. Because the queue never sends more
//! than the credit the connection reported, the channel cannot overflow.

use std::collections::VecDeque;

use crate::idhash::IdMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use ferry_codec::definitions::{Error, ErrorCondition, Fields};
use ferry_codec::messaging::{Header, Message, MessageAnnotations};
use ferry_codec::types::{Map, Value};
use tokio::sync::mpsc;

use crate::broker::memory::Memory;
use crate::proto::LinkId;
use crate::store::{Journal, Op, RecoveredMessage};

/// Stored messages are copied once into memory of their own size (`Message::compacted` with
/// no size limit). Left as slices of the read buffers, they would keep those buffers alive
/// and fragment the heap: measured, 17 MiB of queued 64 KiB messages held 34 MiB of RSS that
/// way, against 18 MiB once copied. The copy is one memcpy per message, paid once.
const COMPACT_BELOW: usize = usize::MAX;

/// Identifies a consumer: its connection and its link there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConsumerId {
    /// The connection's broker-wide number.
    pub connection: u64,
    /// The link on that connection.
    pub link: LinkId,
}

/// What a queue asks a connection task to do.
#[derive(Debug)]
pub enum Outbound {
    /// Send a message to a consumer. Boxed so the channel's slots stay small: a channel
    /// allocates its slots in blocks, and idle connections should not pay for large ones.
    Deliver(Box<Delivery>),
    /// The drain the peer asked for is complete: nothing more is available for `link`.
    Drained {
        /// The consumer link.
        link: LinkId,
        /// Which drain request it answers (as given to [`Queue::set_credit`]): an answer to
        /// an earlier request still in the channel must not answer a newer one.
        round: u64,
    },
    /// The lock on an unsettled delivery ran out: settle it toward the consumer as
    /// `released` and ignore any later outcome; the queue has the message back.
    LockExpired {
        /// The consumer link.
        link: LinkId,
        /// The queue's entry id (as in [`Delivery::entry`]).
        entry: u64,
    },
    /// Detach `link` with `error` (its queue was deleted).
    Detach {
        /// The link.
        link: LinkId,
        /// Why (boxed, like deliveries, to keep the channel's slots small).
        error: Box<Error>,
    },
}

/// A message on its way from a queue to a consumer link.
#[derive(Debug)]
pub struct Delivery {
    /// The consumer link.
    pub link: LinkId,
    /// The queue it came from.
    pub queue: Arc<Queue>,
    /// The queue's id for it: settle it at the queue with this when the peer does.
    pub entry: u64,
    /// The message (shared bytes; never copied).
    pub message: Message,
    /// Sent pre-settled: the queue has already forgotten it.
    pub settled: bool,
    /// A browser's copy: the message is still in the queue.
    pub copy: bool,
}

/// How a queue treats messages whose consumer settled them (§3.4).
#[derive(Debug, Clone)]
pub enum Settlement {
    /// `accepted`: the message is done.
    Accepted,
    /// `released`: back to the queue as it was.
    Released,
    /// `modified`: back to the queue with the changes.
    Modified {
        /// Count a failed attempt (header delivery-count + 1).
        delivery_failed: bool,
        /// Never offer it to this consumer again.
        undeliverable_here: bool,
        /// Annotations to merge into the message-annotations.
        annotations: Option<Fields>,
    },
    /// `rejected`: dead-lettered (dropped and counted without a dead-letter queue).
    Rejected {
        /// The rejection's error description, kept on the dead-lettered message.
        description: Option<String>,
    },
}

/// Limits of one queue; 0 means unlimited.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueLimits {
    /// Most messages.
    pub max_length: usize,
    /// Most bytes.
    pub max_bytes: usize,
    /// Largest message accepted.
    pub max_message_size: u64,
}

/// What happens to a queue's messages over time: expiry and dead-lettering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueuePolicy {
    /// Expiry of messages that carry none of their own (`header.ttl`,
    /// `properties.absolute-expiry-time`).
    pub message_ttl: Option<std::time::Duration>,
    /// Dead-letter a message once its delivery-count reaches this.
    pub max_delivery_count: Option<u32>,
    /// The address of the dead-letter queue; without one, dead letters are dropped and
    /// counted.
    pub dead_letter_queue: Option<String>,
    /// What happens when the queue is at its `max_length` or `max_bytes`.
    pub overflow: Overflow,
    /// How long a consumer holds an unsettled message before it returns to the queue (with
    /// delivery-count + 1) for another consumer; `None`: as long as the link lives.
    pub lock_duration: Option<std::time::Duration>,
}

/// A full queue's behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Producers get no credit until there is room: the broker core's backpressure.
    #[default]
    Block,
    /// Credit keeps flowing; each message that does not fit is `rejected` with
    /// `amqp:resource-limit-exceeded`.
    RejectPublish,
    /// The oldest message is dead-lettered (reason `maxlen`) to make room.
    DropHead,
}

/// Annotations a dead-lettered message carries.
pub const DEADLETTER_REASON: &str = "x-opt-deadletter-reason";
/// The rejecting consumer's error description, when there was one.
pub const DEADLETTER_DESCRIPTION: &str = "x-opt-deadletter-description";
/// The queue it was dead-lettered from.
pub const DEADLETTER_SOURCE: &str = "x-opt-deadletter-source";

/// Priority levels (§3.2.1: 0 to 9; above 9 counts as 9).
const LEVELS: usize = 10;

/// The level that pages out under the queue's own store id (the default priority).
const BASE_LEVEL: u8 = 4;

/// What a queue's store declaration of a priority level says: `b"level"`, the level, and the
/// queue's own store id (little-endian).
pub(crate) const PROPS_LEVEL: &[u8] = b"level";

/// The props of a level's store queue.
pub(crate) fn level_props(level: u8, parent: u32) -> Vec<u8> {
    let mut v = PROPS_LEVEL.to_vec();
    v.push(level);
    v.extend_from_slice(&parent.to_le_bytes());
    v
}

/// The (level, parent id) a level's store queue declaration names, if it is one.
pub(crate) fn parse_level_props(props: &[u8]) -> Option<(u8, u32)> {
    let rest = props.strip_prefix(PROPS_LEVEL)?;
    let (&level, id) = rest.split_first()?;
    let id: [u8; 4] = id.try_into().ok()?;
    (usize::from(level) < LEVELS).then_some((level, u32::from_le_bytes(id)))
}

/// A stored message found at start-up, not read yet.
#[derive(Debug, Clone, Copy)]
struct Restored {
    msg: u64,
    delivery_count: u32,
    /// The store queue holding its reference.
    sq: u32,
}

/// A message leaving its queue for the dead-letter queue, and why.
#[derive(Debug)]
struct Dead {
    entry: Entry,
    reason: &'static str,
    description: Option<String>,
}

/// Why a queue exists, which decides when it goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// Declared in config: lives until the broker stops.
    Declared,
    /// Created by an attach: deleted after a while with no links and no messages.
    AutoCreated,
    /// A dynamic node (§3.5.9), deleted by its lifetime policy.
    Dynamic(Lifetime),
    /// A named subscription to an exchange (durable or shared): deleted when its receiver
    /// closes it, or, if not durable, when its last receiver goes.
    Subscription,
}

/// Lifetime policies (§3.5.10-§3.5.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Deleted when the link that created it detaches.
    DeleteOnClose,
    /// Deleted when no link is attached.
    DeleteOnNoLinks,
    /// Deleted when it holds no messages.
    DeleteOnNoMessages,
    /// Deleted when it has neither links nor messages.
    DeleteOnNoLinksOrMessages,
}

/// A durable queue's place in the store.
#[derive(Debug, Clone)]
pub struct Durability {
    /// The store.
    pub journal: Arc<dyn Journal>,
    /// The queue's id there.
    pub id: u32,
    /// Bytes of stored messages kept in memory; past it they wait on disk only (paged out)
    /// and are read back in order as consumers catch up.
    pub page_above: usize,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    message: Message,
    /// The message's id in the store, if it is stored.
    stored: Option<u64>,
    /// The store queue whose reference to it this entry holds: the queue's own id, or the
    /// id of the priority level it was paged out under (see [`Durability`]).
    sq: u32,
    /// When it expires, in ms since the Unix epoch; 0 for never.
    expires: u64,
    /// Its priority, 0 to 9 (§3.2.1: 4 when absent; above 9 counts as 9).
    priority: u8,
    /// Consumers this message must not go to again (modified undeliverable-here).
    excluded: Vec<ConsumerId>,
    /// While delivered unsettled under a lock: when the lock runs out (ms); else 0.
    locked_until: u64,
}

impl Entry {
    fn expired(&self, now_ms: u64) -> bool {
        self.expires != 0 && self.expires <= now_ms
    }

    /// Bytes it holds in memory.
    fn len(&self) -> usize {
        self.message.len()
    }
}

#[derive(Debug)]
struct Consumer {
    id: ConsumerId,
    tx: mpsc::Sender<Outbound>,
    credit: u32,
    drain: bool,
    /// The round number of the drain in progress.
    drain_round: u64,
    /// The link sends pre-settled (at-most-once).
    presettled: bool,
    max_message_size: Option<u64>,
    /// Only messages this selects go to this consumer (a selector filter on its source).
    selector: Option<Arc<crate::broker::selector::Selector>>,
    /// A browser (distribution-mode copy, §3.5.7): it gets copies, pre-settled, and the
    /// messages stay; `cursor` is the first entry id it has not seen.
    browse: bool,
    cursor: u64,
    /// Every ready entry placed before this is one this consumer may not take (selector,
    /// size, undeliverable-here): dispatch looks for its next message from here, so each
    /// entry is judged once per consumer however long it waits.
    passed: Place,
}

/// How many messages refill reads ahead of consumers' credit at most.
const SKIP_SCAN_LIMIT: usize = 1024;

/// An entry's place in `ready`, which is ordered by it: higher priority first, then older
/// (lower entry id) first.
type Place = (u8, u64);

fn place(e: &Entry) -> Place {
    (9u8.saturating_sub(e.priority), e.id)
}

impl Consumer {
    /// Whether this consumer may be offered `entry` (credit aside).
    fn may_take(&self, entry: &Entry) -> bool {
        !entry.excluded.contains(&self.id)
            && self
                .max_message_size
                .is_none_or(|m| entry.len() as u64 <= m)
            && self
                .selector
                .as_ref()
                .is_none_or(|s| s.matches_message(&entry.message))
    }
}

#[derive(Debug, Default)]
struct State {
    ready: VecDeque<Entry>,
    unacked: IdMap<u64, (Entry, ConsumerId)>,
    consumers: Vec<Consumer>,
    rr: usize,
    bytes: usize,
    next_entry: u64,
    /// Producer links, to detach them if the queue is deleted.
    producers: Vec<(ConsumerId, mpsc::Sender<Outbound>)>,
    deleted: bool,
    idle_since: Option<Instant>,
    /// Stored messages found at start-up and not read yet, by priority level, each level
    /// in order (after that level's `ready` entries).
    restored: [VecDeque<Restored>; LEVELS],
    /// Annotation changes of restored messages that have any.
    restored_annotations: IdMap<u64, Vec<u8>>,
    /// Paged-out messages by priority level, each after that level's restored ones: the
    /// store holds them in the cold runs of the level's store queue.
    cold: [u64; LEVELS],
    /// Store queue ids of the priority levels other than 4 that have paged messages out
    /// (level 4, the default, pages out under the queue's own id).
    level_ids: [Option<u32>; LEVELS],
    /// Their bytes (for the byte limit).
    cold_bytes: usize,
    /// A consumer had credit while paged-out messages were still on their way to the log.
    waiting_for_store: bool,
    /// Messages to dead-letter once the lock is released (the dead-letter queue has its own
    /// lock, and two queues may dead-letter into each other).
    dead: Vec<Dead>,
    /// Expiry (ms) of restored messages that have one.
    restored_expiry: IdMap<u64, u64>,
    /// Some message jumped ahead by priority, so `ready` is not in id order.
    mixed_priorities: bool,
    /// The furthest `passed` of any consumer: an entry placed after it needs no check.
    max_passed: Place,
    /// Messages held until their scheduled time, by (due ms, entry id).
    scheduled: std::collections::BTreeMap<(u64, u64), Entry>,
    /// Unacked entries under a lock, by (lock end ms, entry id).
    locks: std::collections::BTreeSet<(u64, u64)>,
    /// Expired locks whose consumer's channel was full: told again on the next tick.
    lock_notices: Vec<(ConsumerId, u64)>,
    /// The earliest deadline armed with the broker's timers (0: none).
    armed: u64,
}

impl State {
    /// Messages waiting for a consumer, wherever they are (scheduled ones included).
    fn waiting(&self) -> usize {
        self.ready.len() + self.on_disk() + self.scheduled.len()
    }

    /// Messages waiting on disk only (restored and not read yet, or paged out).
    fn on_disk(&self) -> usize {
        self.restored.iter().map(VecDeque::len).sum::<usize>()
            + self.cold.iter().sum::<u64>() as usize
    }

    /// The highest priority level with messages on disk, and whether they are restored
    /// ones (read before that level's paged-out ones, being older).
    fn top_on_disk(&self) -> Option<(u8, bool)> {
        (0..LEVELS).rev().find_map(|l| {
            if self.restored.get(l).is_some_and(|r| !r.is_empty()) {
                Some((l as u8, true))
            } else if self.cold.get(l).is_some_and(|c| *c > 0) {
                Some((l as u8, false))
            } else {
                None
            }
        })
    }

    /// Takes an entry off the unacked map, and its lock off the lock index.
    fn take_unacked(&mut self, entry: u64) -> Option<(Entry, ConsumerId)> {
        let (mut e, c) = self.unacked.remove(&entry)?;
        if e.locked_until != 0 {
            self.locks.remove(&(e.locked_until, e.id));
            e.locked_until = 0;
        }
        Some((e, c))
    }

    /// The earliest lock end or scheduled time, if any.
    fn next_deadline(&self) -> Option<u64> {
        let lock = self.locks.first().map(|(t, _)| *t);
        let due = self.scheduled.keys().next().map(|(t, _)| *t);
        match (lock, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Counters, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages ready for delivery.
    pub ready: usize,
    /// Messages delivered and awaiting settlement.
    pub unacked: usize,
    /// Bytes held.
    pub bytes: usize,
    /// Consumer links.
    pub consumers: usize,
    /// Producer links.
    pub producers: usize,
}

/// One queue.
#[derive(Debug)]
pub struct Queue {
    name: String,
    kind: QueueKind,
    limits: QueueLimits,
    memory: Arc<Memory>,
    state: Mutex<State>,
    /// Messages rejected and dropped (no dead-letter queue yet).
    rejected: std::sync::atomic::AtomicU64,
    durable: Option<Durability>,
    policy: QueuePolicy,
    dead_letter: Option<Arc<Queue>>,
    /// Messages moved to the dead-letter queue.
    dead_lettered: std::sync::atomic::AtomicU64,
    /// Dead letters dropped: no dead-letter queue, or already dead-lettered once (no loops).
    dead_dropped: std::sync::atomic::AtomicU64,
    /// Where locks and schedules arm their deadlines (none: neither is honoured in time).
    timers: Option<Arc<super::timers::Timers>>,
}

/// Bytes a durable queue's store may have waiting to be written before its producers get
/// no more credit: the writer is behind the disk, and producers must slow down to it.
const MAX_STORE_BACKLOG: usize = 64 << 20;

impl Queue {
    pub(crate) fn new(
        name: String,
        kind: QueueKind,
        limits: QueueLimits,
        memory: Arc<Memory>,
    ) -> Self {
        Self::with_durability(name, kind, limits, memory, None)
    }

    pub(crate) fn with_durability(
        name: String,
        kind: QueueKind,
        limits: QueueLimits,
        memory: Arc<Memory>,
        durable: Option<Durability>,
    ) -> Self {
        Self {
            name,
            kind,
            limits,
            memory,
            state: Mutex::new(State::default()),
            rejected: std::sync::atomic::AtomicU64::new(0),
            durable,
            policy: QueuePolicy::default(),
            dead_letter: None,
            dead_lettered: std::sync::atomic::AtomicU64::new(0),
            dead_dropped: std::sync::atomic::AtomicU64::new(0),
            timers: None,
        }
    }

    /// Sets the broker's timers, which fire lock expiry and scheduled delivery.
    pub(crate) fn with_timers(mut self, timers: Arc<super::timers::Timers>) -> Self {
        self.timers = Some(timers);
        self
    }

    /// Arms the queue's earliest deadline if it is earlier than the one armed.
    fn arm(self: &Arc<Self>, s: &mut State) {
        let Some(next) = s.next_deadline() else {
            return;
        };
        let next = if s.lock_notices.is_empty() {
            next
        } else {
            next.min(now_ms() + super::timers::TICK.as_millis() as u64)
        };
        if s.armed != 0 && s.armed <= next {
            return;
        }
        if let Some(t) = &self.timers {
            s.armed = next;
            t.arm(next, self);
        }
    }

    /// Arms the deadlines of messages restored at start-up (scheduled ones).
    pub(crate) fn start_timers(self: &Arc<Self>) {
        let mut s = self.lock();
        self.arm(&mut s);
    }

    /// A deadline passed: expired locks give their messages back (delivery-count + 1, the
    /// consumer told to settle the delivery as released), and scheduled messages that are
    /// due join the queue.
    pub fn on_timer(self: &Arc<Self>, now: u64) {
        let mut s = self.lock();
        s.armed = 0;
        let mut ops = Vec::new();
        let mut notices = std::mem::take(&mut s.lock_notices);
        while let Some(&(t, id)) = s.locks.first() {
            if t > now {
                break;
            }
            s.locks.pop_first();
            let Some((mut e, consumer)) = s.unacked.remove(&id) else {
                continue;
            };
            e.locked_until = 0;
            tracing::debug!(queue = %self.name, entry = id, "lock expired");
            notices.push((consumer, id));
            self.rewrite(&mut s, &mut e, true, None, &mut ops);
            self.requeue_or_kill(&mut s, e);
        }
        for (consumer, entry) in notices {
            let Some(c) = s.consumers.iter().find(|c| c.id == consumer) else {
                continue;
            };
            let notice = Outbound::LockExpired {
                link: consumer.link,
                entry,
            };
            if c.tx.try_send(notice).is_err() && !c.tx.is_closed() {
                s.lock_notices.push((consumer, entry));
            }
        }
        while let Some(entry) = s.scheduled.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let mut e = entry.remove();
            // It joins the queue now: behind what is already there at its level.
            e.id = s.next_entry;
            s.next_entry += 1;
            Self::push(&mut s, e);
        }
        self.journal(|_| ops);
        self.arm(&mut s);
        self.dispatch(&mut s);
        self.finish(s);
    }

    /// Sets the expiry and dead-letter policy, with the dead-letter queue resolved.
    pub(crate) fn with_policy(
        mut self,
        policy: QueuePolicy,
        dead_letter: Option<Arc<Queue>>,
    ) -> Self {
        self.policy = policy;
        self.dead_letter = dead_letter;
        self
    }

    /// Its expiry and dead-letter policy.
    pub fn policy(&self) -> &QueuePolicy {
        &self.policy
    }

    /// Messages moved to the dead-letter queue, and dead letters dropped.
    pub fn dead_letter_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.dead_lettered.load(Relaxed),
            self.dead_dropped.load(Relaxed),
        )
    }

    /// Its place in the store, if it is durable.
    pub fn durability(&self) -> Option<&Durability> {
        self.durable.as_ref()
    }

    /// Puts back messages the store held at start-up: the queue's own, and those of its
    /// priority levels' store queues (`levels`: level, store id, messages), each level in
    /// order. Their bodies stay on disk until a consumer is about to get them.
    pub(crate) fn restore(
        &self,
        messages: Vec<RecoveredMessage>,
        levels: Vec<(u8, u32, Vec<RecoveredMessage>)>,
    ) {
        let mut s = self.lock();
        let Some(d) = &self.durable else {
            return;
        };
        let now = now_ms();
        let mut all: Vec<(u32, RecoveredMessage)> =
            messages.into_iter().map(|m| (d.id, m)).collect();
        for (level, id, msgs) in levels {
            if let Some(slot) = s.level_ids.get_mut(usize::from(level)) {
                *slot = Some(id);
            }
            all.extend(msgs.into_iter().map(|m| (id, m)));
        }
        // Message ids follow arrival; the queue's own and its levels' interleave.
        all.sort_by_key(|(_, m)| m.msg);
        for (sq, m) in all {
            // Still scheduled: read now and held in memory until due (see `start_timers`).
            if m.meta.scheduled > now {
                let read = d
                    .journal
                    .read(m.msg)
                    .map_err(|e| e.to_string())
                    .and_then(|b| Message::decode(b).map_err(|e| e.to_string()));
                match read {
                    Ok(message) => {
                        let message = restored(message, m.delivery_count, &m.annotations);
                        let id = s.next_entry;
                        s.next_entry += 1;
                        s.bytes += message.len();
                        self.memory.charge(message.len());
                        s.scheduled.insert(
                            (m.meta.scheduled, id),
                            Entry {
                                id,
                                priority: priority_of(&message),
                                message,
                                stored: Some(m.msg),
                                sq,
                                expires: m.meta.expiry,
                                excluded: Vec::new(),
                                locked_until: 0,
                            },
                        );
                    }
                    Err(why) => {
                        tracing::error!(queue = %self.name, msg = m.msg, why, "a stored scheduled message cannot be read; it is dropped");
                        d.journal.submit(vec![Op::Settle {
                            queue: sq,
                            msg: m.msg,
                        }]);
                    }
                }
                continue;
            }
            // A dead letter keeps no expiry (as before the restart).
            if m.meta.expiry != 0 && !dead_lettered(&m.annotations) {
                s.restored_expiry.insert(m.msg, m.meta.expiry);
            }
            if !m.annotations.is_empty() {
                s.restored_annotations.insert(m.msg, m.annotations);
            }
            let level = usize::from(m.meta.priority.min(9));
            if let Some(r) = s.restored.get_mut(level) {
                r.push_back(Restored {
                    msg: m.msg,
                    delivery_count: m.delivery_count,
                    sq,
                });
            }
        }
    }

    /// The store queue a message of `priority` pages out under: the queue's own for the
    /// default level, else the level's, declared in the store the first time.
    fn level_id(&self, s: &mut State, d: &Durability, priority: u8) -> u32 {
        if priority == BASE_LEVEL {
            return d.id;
        }
        let Some(slot) = s.level_ids.get_mut(usize::from(priority)) else {
            return d.id;
        };
        if let Some(id) = *slot {
            return id;
        }
        let id = d.journal.next_queue_id();
        d.journal.submit(vec![Op::DeclareQueue {
            queue: id,
            name: format!("{}#p{priority}", self.name),
            props: level_props(priority, d.id),
        }]);
        *slot = Some(id);
        id
    }

    /// The queue's own store id (0 when it has none; then nothing is stored).
    fn own_id(&self) -> u32 {
        self.durable.as_ref().map_or(0, |d| d.id)
    }

    /// Tells the store about `ops` of this queue, if it is durable.
    fn journal(&self, ops: impl FnOnce(u32) -> Vec<Op>) {
        if let Some(d) = &self.durable {
            d.journal.submit(ops(d.id));
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in this file; keep serving anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The queue's address.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why it exists.
    pub fn kind(&self) -> QueueKind {
        self.kind
    }

    /// Its limits.
    pub fn limits(&self) -> QueueLimits {
        self.limits
    }

    /// Current counters.
    pub fn stats(&self) -> QueueStats {
        let s = self.lock();
        QueueStats {
            ready: s.waiting(),
            unacked: s.unacked.len(),
            bytes: s.bytes,
            consumers: s.consumers.len(),
            producers: s.producers.len(),
        }
    }

    /// Messages rejected by consumers and dropped.
    pub fn rejected_count(&self) -> u64 {
        self.rejected.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many more messages fit, by this queue's limits and the memory budget, assuming
    /// messages of `typical` bytes. Producers are granted credit only within this.
    pub fn room(&self, typical: usize) -> usize {
        let s = self.lock();
        if s.deleted {
            return 0;
        }
        let typical = typical.max(1);
        let held = s.waiting() + s.unacked.len();
        // Only `block` turns the limits into backpressure; the others act per message.
        let limits = self.policy.overflow == Overflow::Block;
        let by_count = match self.limits.max_length {
            0 => usize::MAX,
            _ if !limits => usize::MAX,
            max => max.saturating_sub(held),
        };
        let by_bytes = match self.limits.max_bytes {
            0 => usize::MAX,
            _ if !limits => usize::MAX,
            max => max.saturating_sub(s.bytes + s.cold_bytes) / typical,
        };
        // A durable queue pages what does not fit in memory out to disk.
        let by_memory = match &self.durable {
            Some(_) => usize::MAX,
            None => self.memory.available() / typical,
        };
        // A writer behind the disk, a full disk or a failed log: producers wait (messages
        // already on their way are refused by the transport when the disk is full).
        if self.durable.as_ref().is_some_and(|d| {
            d.journal.backlog() > MAX_STORE_BACKLOG
                || d.journal.disk_full()
                || d.journal.failure().is_some()
        }) {
            return 0;
        }
        by_count.min(by_bytes).min(by_memory)
    }

    /// Whether the queue has been deleted.
    pub fn is_deleted(&self) -> bool {
        self.lock().deleted
    }

    /// Adds a message. Granted credit may slightly overshoot the limits (several producers
    /// share the room); the overshoot is bounded by the credit in flight.
    pub fn enqueue(self: &Arc<Self>, message: Message) -> Result<(), ErrorCondition> {
        self.enqueue_stored(message, None).map(|_| ())
    }

    /// Whether a message of `len` bytes may be enqueued here at all.
    pub fn check_size(&self, len: usize) -> Result<(), ErrorCondition> {
        if self.limits.max_message_size > 0 && len as u64 > self.limits.max_message_size {
            return Err(ErrorCondition::MessageSizeExceeded);
        }
        Ok(())
    }

    /// Adds a message; with `stored`, one that goes to the store under that id. The store's
    /// enqueue record is submitted here, under the queue's lock, before the message can be
    /// dispatched: so the store sees it before any settle, and in this queue's order, which
    /// is what lets paged-out messages be found again by position. Returns whether the
    /// message was paged out.
    pub fn enqueue_stored(
        self: &Arc<Self>,
        message: Message,
        stored: Option<u64>,
    ) -> Result<bool, ErrorCondition> {
        self.enqueue_with(message, stored, true)
    }

    /// As [`Queue::enqueue_stored`], for a message already copied out of its read buffers
    /// (one routed to several queues shares that one copy).
    pub fn enqueue_copied(
        self: &Arc<Self>,
        message: Message,
        stored: Option<u64>,
    ) -> Result<bool, ErrorCondition> {
        self.enqueue_with(message, stored, false)
    }

    fn enqueue_with(
        self: &Arc<Self>,
        message: Message,
        stored: Option<u64>,
        copy: bool,
    ) -> Result<bool, ErrorCondition> {
        self.check_size(message.len())?;
        let mut s = self.lock();
        if s.deleted {
            return Err(ErrorCondition::ResourceDeleted);
        }
        s.idle_since = None;
        let len = message.len();
        if self.policy.overflow == Overflow::RejectPublish && self.over_limit(&s, len) {
            return Err(ErrorCondition::ResourceLimitExceeded);
        }
        let now = now_ms();
        let Arrival {
            expires,
            priority,
            due,
        } = arrival_of(&message, self.policy.message_ttl, now);
        // Scheduled messages wait in memory (and in the store), never paged out, so they can
        // join the queue the moment they are due.
        let scheduled = due > now;
        if let (Some(msg), Some(d)) = (stored, &self.durable) {
            let cold = !scheduled
                && (s.on_disk() > 0
                    || s.bytes + len > d.page_above
                    || self.memory.available() < len);
            // A paged-out message goes under its priority level's store queue, so each level
            // reads back in its own order.
            let sq = if cold {
                self.level_id(&mut s, d, priority)
            } else {
                d.id
            };
            d.journal.submit(vec![Op::Enqueue {
                msg,
                meta: crate::store::Meta {
                    expiry: expires,
                    priority,
                    scheduled: if scheduled { due } else { 0 },
                },
                refs: vec![crate::store::Ref {
                    queue: sq,
                    ..Default::default()
                }],
                body: message.to_contiguous(),
                cold,
            }]);
            if cold {
                if let Some(c) = s.cold.get_mut(usize::from(priority)) {
                    *c += 1;
                }
                s.cold_bytes += len;
                self.dispatch(&mut s);
                self.finish(s);
                return Ok(true);
            }
        }
        // Messages must not pin the read buffers they arrived in (see COMPACT_BELOW).
        let message = if copy {
            message.compacted(COMPACT_BELOW)
        } else {
            message
        };
        if scheduled {
            self.hold(&mut s, message, stored, expires, priority, due);
            self.finish(s);
            return Ok(false);
        }
        self.admit(&mut s, message, stored, self.own_id(), expires, priority);
        if self.policy.overflow == Overflow::DropHead {
            // The oldest go (to the dead-letter queue) until the newest fits.
            while s.ready.len() > 1 && self.over_limit(&s, 0) {
                let Some(oldest) = s.ready.pop_front() else {
                    break;
                };
                self.kill(&mut s, oldest, "maxlen", None);
            }
        }
        self.dispatch(&mut s);
        self.finish(s);
        Ok(false)
    }

    /// Takes a dead-lettered message whose store reference was already moved here (or that
    /// is not stored): no store record is written. It is kept in memory. Dead letters do not
    /// expire again (`expires` 0): an expired message must stay readable in its DLQ.
    fn enqueue_moved(
        self: &Arc<Self>,
        message: Message,
        stored: Option<u64>,
        expires: u64,
    ) -> bool {
        let mut s = self.lock();
        if s.deleted {
            return false;
        }
        s.idle_since = None;
        let message = message.compacted(COMPACT_BELOW);
        let priority = priority_of(&message);
        self.admit(&mut s, message, stored, self.own_id(), expires, priority);
        self.dispatch(&mut s);
        self.finish(s);
        true
    }

    /// Dead-letters the messages queued for it, after the lock is released.
    fn finish(self: &Arc<Self>, mut s: MutexGuard<'_, State>) {
        if s.dead.is_empty() {
            return;
        }
        let dead = std::mem::take(&mut s.dead);
        drop(s);
        for d in dead {
            self.dead_letter_one(d);
        }
    }

    /// Moves one message to the dead-letter queue with its reason, or drops it (no
    /// dead-letter queue, or it was dead-lettered before: no loops).
    fn dead_letter_one(self: &Arc<Self>, d: Dead) {
        use std::sync::atomic::Ordering::Relaxed;
        let Dead {
            entry,
            reason,
            description,
        } = d;
        let again = entry
            .message
            .message_annotations()
            .ok()
            .flatten()
            .is_some_and(|m| {
                m.0.iter()
                    .any(|(k, _)| matches!(k, Value::Symbol(s) if s.as_str() == DEADLETTER_REASON))
            });
        let target = self
            .dead_letter
            .as_ref()
            .filter(|q| !again && !Arc::ptr_eq(q, self) && !q.is_deleted());
        let Some(dlq) = target else {
            self.dead_dropped.fetch_add(1, Relaxed);
            if let Some(msg) = entry.stored {
                self.journal(|_| {
                    vec![Op::Settle {
                        queue: entry.sq,
                        msg,
                    }]
                });
            }
            tracing::debug!(queue = %self.name, reason, "dead letter dropped");
            return;
        };
        let mut fields = Fields::new();
        fields.push(
            ferry_codec::types::Symbol::from_static(DEADLETTER_REASON),
            Value::String(reason.into()),
        );
        if let Some(text) = &description {
            fields.push(
                ferry_codec::types::Symbol::from_static(DEADLETTER_DESCRIPTION),
                Value::String(text.as_str().into()),
            );
        }
        fields.push(
            ferry_codec::types::Symbol::from_static(DEADLETTER_SOURCE),
            Value::String(self.name.as_str().into()),
        );
        // A dead letter does not expire again, so its ttl goes (the bare message, with any
        // absolute-expiry-time, stays as it was).
        let message = reannotated(&entry.message, |h| h.ttl = None, Some(&fields));
        let same_store = match (&self.durable, dlq.durability()) {
            (Some(a), Some(b)) => Arc::ptr_eq(&a.journal, &b.journal).then_some((entry.sq, b.id)),
            _ => None,
        };
        let moved = match (entry.stored, same_store) {
            // One record moves the reference: the message is never in both queues, or
            // neither, whatever happens next.
            (Some(msg), Some((from, to))) => {
                if let Some(d) = &self.durable {
                    d.journal.submit(vec![Op::DeadLetter {
                        from,
                        msg,
                        to,
                        annotations: ferry_codec::Encode::to_bytes(&fields).to_vec(),
                    }]);
                }
                dlq.enqueue_moved(message, Some(msg), 0)
            }
            (stored, _) => {
                if let Some(msg) = stored {
                    self.journal(|_| {
                        vec![Op::Settle {
                            queue: entry.sq,
                            msg,
                        }]
                    });
                }
                let durable = message.header().is_ok_and(|h| h.durable);
                match dlq.durability() {
                    Some(d) if durable => {
                        let id = d.journal.next_message_id();
                        dlq.enqueue_stored(message, Some(id)).is_ok()
                    }
                    _ => dlq.enqueue_moved(message, None, 0),
                }
            }
        };
        if moved {
            self.dead_lettered.fetch_add(1, Relaxed);
        } else {
            self.dead_dropped.fetch_add(1, Relaxed);
        }
    }

    /// Queues `entry` for dead-lettering; its memory is released now.
    fn kill(&self, s: &mut State, entry: Entry, reason: &'static str, description: Option<String>) {
        s.bytes = s.bytes.saturating_sub(entry.len());
        self.memory.refund(entry.len());
        s.dead.push(Dead {
            entry,
            reason,
            description,
        });
    }

    /// Dead-letters every expired message in memory (and restored ones, by their stored
    /// expiry) without reading any body: called by housekeeping.
    pub fn expire(self: &Arc<Self>, now_ms: u64) {
        let mut s = self.lock();
        if s.ready.iter().any(|e| e.expired(now_ms)) {
            let ready = std::mem::take(&mut s.ready);
            for e in ready {
                if e.expired(now_ms) {
                    self.kill(&mut s, e, "expired", None);
                } else {
                    s.ready.push_back(e);
                }
            }
        }
        if !s.restored_expiry.is_empty() {
            let gone: Vec<u64> = s
                .restored_expiry
                .iter()
                .filter(|(_, t)| **t <= now_ms)
                .map(|(m, _)| *m)
                .collect();
            if !gone.is_empty() {
                let gone: std::collections::HashSet<u64> = gone.into_iter().collect();
                let mut settles = Vec::new();
                for level in s.restored.iter_mut() {
                    level.retain(|r| {
                        if gone.contains(&r.msg) {
                            // Never read: dropped from the store without dead-lettering.
                            settles.push(Op::Settle {
                                queue: r.sq,
                                msg: r.msg,
                            });
                            false
                        } else {
                            true
                        }
                    });
                }
                for msg in gone {
                    s.restored_expiry.remove(&msg);
                    s.restored_annotations.remove(&msg);
                    self.dead_dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                self.journal(|_| settles);
            }
        }
        self.finish(s);
    }

    /// The store has written this queue's paged-out messages of a turn: a consumer that
    /// caught up with them meanwhile gets them now.
    pub fn on_stored(self: &Arc<Self>) {
        let mut s = self.lock();
        if s.waiting_for_store {
            s.waiting_for_store = false;
            self.dispatch(&mut s);
        }
        self.finish(s);
    }

    /// Registers a producer link (for lifetimes, auto-delete, and detaching it on delete).
    pub fn add_producer(&self, id: ConsumerId, tx: mpsc::Sender<Outbound>) {
        let mut s = self.lock();
        s.producers.push((id, tx));
        s.idle_since = None;
    }

    /// Unregisters a producer link.
    pub fn remove_producer(&self, id: ConsumerId, now: Instant) {
        let mut s = self.lock();
        s.producers.retain(|(p, _)| *p != id);
        Self::mark_idle(&mut s, now);
    }

    /// Registers a consumer link with no credit yet. With a `selector`, it is offered only
    /// the messages it selects (filtered at dispatch; the others wait for other consumers).
    pub fn add_consumer(
        &self,
        id: ConsumerId,
        tx: mpsc::Sender<Outbound>,
        presettled: bool,
        max_message_size: Option<u64>,
        selector: Option<Arc<crate::broker::selector::Selector>>,
        browse: bool,
    ) {
        let mut s = self.lock();
        s.consumers.push(Consumer {
            id,
            tx,
            credit: 0,
            drain: false,
            drain_round: 0,
            presettled: presettled || browse,
            max_message_size,
            selector: selector.filter(|s| !s.selects_all()),
            browse,
            cursor: 0,
            passed: (0, 0),
        });
        s.idle_since = None;
    }

    /// Sets a consumer's credit (absolute, as the peer's flow says) and dispatches. With
    /// `drain`, the request's round number, echoed in the `Drained` answer.
    pub fn set_credit(self: &Arc<Self>, id: ConsumerId, credit: u32, drain: Option<u64>) {
        let mut s = self.lock();
        if let Some(c) = s.consumers.iter_mut().find(|c| c.id == id) {
            c.credit = credit;
            c.drain = drain.is_some();
            if let Some(round) = drain {
                c.drain_round = round;
            }
        }
        self.dispatch(&mut s);
        self.finish(s);
    }

    /// Removes a consumer; its unsettled messages return to the queue as if modified with
    /// delivery-failed (§3.4.5), so another consumer gets them.
    pub fn remove_consumer(self: &Arc<Self>, id: ConsumerId, now: Instant) {
        let mut s = self.lock();
        s.consumers.retain(|c| c.id != id);
        let mut returned: Vec<Entry> = Vec::new();
        let ids: Vec<u64> = s
            .unacked
            .iter()
            .filter(|(_, (_, c))| *c == id)
            .map(|(k, _)| *k)
            .collect();
        for k in ids {
            if let Some((entry, _)) = s.take_unacked(k) {
                returned.push(entry);
            }
        }
        returned.sort_by_key(|e| e.id);
        let mut ops = Vec::new();
        for mut entry in returned.into_iter().rev() {
            self.rewrite(&mut s, &mut entry, true, None, &mut ops);
            self.requeue_or_kill(&mut s, entry);
        }
        self.journal(|_| ops);
        Self::mark_idle(&mut s, now);
        self.dispatch(&mut s);
        self.finish(s);
    }

    /// Whether the queue is over its limits with `extra` more bytes in one more message
    /// (`extra` 0: as it is now).
    fn over_limit(&self, s: &State, extra: usize) -> bool {
        let held = s.waiting() + s.unacked.len() + usize::from(extra > 0);
        let bytes = s.bytes + s.cold_bytes + extra;
        (self.limits.max_length > 0 && held > self.limits.max_length)
            || (self.limits.max_bytes > 0 && bytes > self.limits.max_bytes)
    }

    /// Back to the queue, unless it has now failed `max_delivery_count` times.
    fn requeue_or_kill(&self, s: &mut State, entry: Entry) {
        let count = entry.message.header().map_or(0, |h| h.delivery_count);
        match self.policy.max_delivery_count {
            Some(max) if count >= max => {
                let why = format!("delivered {count} times (max-delivery-count {max})");
                self.kill(s, entry, "max-delivery-count", Some(why));
            }
            _ => Self::requeue(s, entry),
        }
    }

    fn mark_idle(s: &mut State, now: Instant) {
        if s.consumers.is_empty()
            && s.producers.is_empty()
            && s.waiting() == 0
            && s.unacked.is_empty()
        {
            s.idle_since.get_or_insert(now);
        }
    }

    /// Starts the idle clock now if the queue has no links and no messages (a queue
    /// restored at start-up).
    pub(crate) fn mark_idle_now(&self, now: Instant) {
        Self::mark_idle(&mut self.lock(), now);
    }

    /// Since when the queue has had no links and no messages.
    pub fn idle_since(&self) -> Option<Instant> {
        self.lock().idle_since
    }

    /// Whether the queue has any link attached.
    pub fn has_links(&self) -> bool {
        let s = self.lock();
        !s.consumers.is_empty() || !s.producers.is_empty()
    }

    /// Whether it holds no messages.
    pub fn is_empty(&self) -> bool {
        let s = self.lock();
        s.waiting() == 0 && s.unacked.is_empty()
    }

    /// Applies a consumer's outcome to a delivered message.
    pub fn settle(self: &Arc<Self>, entry: u64, outcome: Settlement, now: Instant) {
        let mut s = self.lock();
        let Some((mut e, consumer)) = s.take_unacked(entry) else {
            return;
        };
        match outcome {
            Settlement::Accepted => self.forget(&mut s, &e),
            Settlement::Rejected { description } => {
                self.rejected
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.kill(&mut s, e, "rejected", description);
            }
            Settlement::Released => {
                Self::requeue(&mut s, e);
            }
            Settlement::Modified {
                delivery_failed,
                undeliverable_here,
                annotations,
            } => {
                if delivery_failed || annotations.is_some() {
                    let mut ops = Vec::new();
                    self.rewrite(
                        &mut s,
                        &mut e,
                        delivery_failed,
                        annotations.as_ref(),
                        &mut ops,
                    );
                    self.journal(|_| ops);
                }
                if undeliverable_here {
                    e.excluded.push(consumer);
                }
                if delivery_failed {
                    self.requeue_or_kill(&mut s, e);
                } else {
                    Self::requeue(&mut s, e);
                }
            }
        }
        Self::mark_idle(&mut s, now);
        self.dispatch(&mut s);
        self.finish(s);
    }

    /// Puts a message back at its place in FIFO order (by entry id).
    fn requeue(s: &mut State, e: Entry) {
        Self::unpass(s, &e);
        let at = place(&e);
        let pos = s.ready.partition_point(|r| place(r) < at);
        s.ready.insert(pos, e);
    }

    /// An entry is going into `ready` before where some consumers have looked: those that
    /// may take it must look again from it; for the others it is one more passed.
    fn unpass(s: &mut State, e: &Entry) {
        let at = place(e);
        if at >= s.max_passed {
            return;
        }
        let mut max = (0, 0);
        for c in s.consumers.iter_mut() {
            if at < c.passed && c.may_take(e) {
                c.passed = at;
            }
            max = max.max(c.passed);
        }
        s.max_passed = max;
    }

    /// Adds a new message (the newest id) behind every message of its priority or higher:
    /// delivery is by level, FIFO within a level. With one level in use this is a push at
    /// the back.
    fn push(s: &mut State, e: Entry) {
        Self::unpass(s, &e);
        if s.ready
            .back()
            .is_none_or(|last| last.priority >= e.priority)
        {
            s.ready.push_back(e);
            return;
        }
        s.mixed_priorities = true;
        let at = place(&e);
        let pos = s.ready.partition_point(|r| place(r) < at);
        s.ready.insert(pos, e);
    }

    /// The message is done with: its memory is refunded and the store told.
    fn forget(&self, s: &mut State, e: &Entry) {
        s.bytes = s.bytes.saturating_sub(e.len());
        self.memory.refund(e.len());
        if let Some(msg) = e.stored {
            self.journal(|_| vec![Op::Settle { queue: e.sq, msg }]);
        }
    }

    /// Applies a failed delivery and/or annotation changes to an entry, and queues the
    /// store's update record for it in `ops`.
    fn rewrite(
        &self,
        s: &mut State,
        e: &mut Entry,
        delivery_failed: bool,
        annotations: Option<&Fields>,
        ops: &mut Vec<Op>,
    ) {
        let old = e.message.len();
        let message = modified(&e.message, delivery_failed, annotations);
        let new = message.len();
        s.bytes = s.bytes.saturating_sub(old) + new;
        if new >= old {
            self.memory.charge(new - old);
        } else {
            self.memory.refund(old - new);
        }
        if let (Some(msg), Some(_)) = (e.stored, &self.durable) {
            ops.push(Op::Update {
                queue: e.sq,
                msg,
                delivery_count: message.header().map_or(0, |h| h.delivery_count),
                annotations: annotations
                    .map(|a| ferry_codec::Encode::to_bytes(a).to_vec())
                    .unwrap_or_default(),
            });
        }
        e.message = message;
    }

    /// Reads messages back from the store, highest priority level first and in order within
    /// a level (restored ones, then paged-out ones from the level's cold runs): while
    /// consumers have more credit than `ready` has messages, and whenever a level waiting on
    /// disk is above the best one in `ready`, so priority holds across a backlog on disk.
    fn refill(&self, s: &mut State) {
        let Some(d) = &self.durable else {
            return;
        };
        let want: usize = s
            .consumers
            .iter()
            .map(|c| c.credit as usize)
            .sum::<usize>()
            .min(SKIP_SCAN_LIMIT);
        while let Some((level, from_restored)) = s.top_on_disk() {
            let head = s.ready.front().map(|e| e.priority);
            if s.ready.len() >= want && head.is_some_and(|h| h >= level) {
                break;
            }
            let l = usize::from(level);
            if from_restored {
                let Some(r) = s.restored.get_mut(l).and_then(VecDeque::pop_front) else {
                    break;
                };
                let annotations = s.restored_annotations.remove(&r.msg).unwrap_or_default();
                let read = d
                    .journal
                    .read(r.msg)
                    .map_err(|e| e.to_string())
                    .and_then(|b| Message::decode(b).map_err(|e| e.to_string()));
                match read {
                    Ok(m) => {
                        let expires = s.restored_expiry.remove(&r.msg).unwrap_or(0);
                        let m = restored(m, r.delivery_count, &annotations);
                        self.push_loaded(s, m, r.msg, r.sq, expires);
                    }
                    Err(why) => {
                        tracing::error!(queue = %self.name, msg = r.msg, why, "a stored message cannot be read; it is dropped");
                        d.journal.submit(vec![Op::Settle {
                            queue: r.sq,
                            msg: r.msg,
                        }]);
                    }
                }
                continue;
            }
            let sq = match level {
                BASE_LEVEL => d.id,
                _ => match s.level_ids.get(l).copied().flatten() {
                    Some(id) => id,
                    None => {
                        // Cannot happen (a level's cold count implies its id); do not spin.
                        if let Some(c) = s.cold.get_mut(l) {
                            *c = 0;
                        }
                        continue;
                    }
                },
            };
            let batch = want.saturating_sub(s.ready.len()).clamp(64, 1024);
            match d.journal.page_in(sq, batch, 1 << 20) {
                Ok(paged) if paged.is_empty() => {
                    // Submitted but not yet written: dispatch again once it is.
                    s.waiting_for_store = true;
                    break;
                }
                Ok(paged) => {
                    for p in paged {
                        if let Some(c) = s.cold.get_mut(l) {
                            *c = c.saturating_sub(1);
                        }
                        let len = p.body.len();
                        s.cold_bytes = s.cold_bytes.saturating_sub(len);
                        match Message::decode(p.body) {
                            Ok(m) => {
                                let m = restored(m, p.delivery_count, &p.annotations);
                                self.push_loaded(s, m, p.msg, sq, p.expiry);
                            }
                            Err(e) => {
                                tracing::error!(queue = %self.name, msg = p.msg, error = %e, "a paged message does not decode; it is dropped");
                                d.journal.submit(vec![Op::Settle {
                                    queue: sq,
                                    msg: p.msg,
                                }]);
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(queue = %self.name, error = %e, "paged messages cannot be read");
                    break;
                }
            }
        }
    }

    /// Keeps a message until `due` (ms), in memory, counted against the limits.
    fn hold(
        self: &Arc<Self>,
        s: &mut State,
        message: Message,
        stored: Option<u64>,
        expires: u64,
        priority: u8,
        due: u64,
    ) {
        let id = s.next_entry;
        s.next_entry += 1;
        s.bytes += message.len();
        self.memory.charge(message.len());
        s.scheduled.insert(
            (due, id),
            Entry {
                id,
                message,
                stored,
                sq: self.own_id(),
                expires,
                priority,
                excluded: Vec::new(),
                locked_until: 0,
            },
        );
        self.arm(s);
    }

    fn push_loaded(&self, s: &mut State, message: Message, msg: u64, sq: u32, expires: u64) {
        let priority = priority_of(&message);
        self.admit(s, message, Some(msg), sq, expires, priority);
    }

    /// Takes `message` into memory as the newest entry: its id, its bytes charged, its place
    /// by priority.
    fn admit(
        &self,
        s: &mut State,
        message: Message,
        stored: Option<u64>,
        sq: u32,
        expires: u64,
        priority: u8,
    ) {
        let id = s.next_entry;
        s.next_entry += 1;
        s.bytes += message.len();
        self.memory.charge(message.len());
        Self::push(
            s,
            Entry {
                id,
                message,
                stored,
                sq,
                expires,
                priority,
                excluded: Vec::new(),
                locked_until: 0,
            },
        );
    }

    /// A message the connection could not send after all (credit shrank meanwhile): back to
    /// the queue unchanged, and the consumer's credit as the engine sees it.
    pub fn undeliverable(&self, entry: u64, consumer: ConsumerId, credit: u32) {
        let mut s = self.lock();
        if let Some((e, _)) = s.take_unacked(entry) {
            Self::requeue(&mut s, e);
        }
        if let Some(c) = s.consumers.iter_mut().find(|c| c.id == consumer) {
            c.credit = credit;
        }
    }

    /// A pre-settled message the connection could not send after all: back to its place in
    /// the queue (by its entry id, so at-most-once consumers still see FIFO order), and, if
    /// the consumer is still there, its credit as the engine sees it.
    pub fn give_back(
        self: &Arc<Self>,
        entry: u64,
        message: Message,
        consumer: Option<(ConsumerId, u32)>,
    ) {
        let mut s = self.lock();
        if s.deleted {
            return;
        }
        s.bytes += message.len();
        self.memory.charge(message.len());
        Self::requeue(
            &mut s,
            Entry {
                id: entry,
                priority: priority_of(&message),
                message,
                stored: None,
                sq: 0,
                expires: 0,
                excluded: Vec::new(),
                locked_until: 0,
            },
        );
        if let Some((id, credit)) = consumer
            && let Some(c) = s.consumers.iter_mut().find(|c| c.id == id)
        {
            c.credit = credit;
        }
        s.idle_since = None;
        self.dispatch(&mut s);
        self.finish(s);
    }

    /// A browser's copy could not be sent: it is offered again from `entry` on.
    pub fn rewind(&self, consumer: ConsumerId, entry: u64, credit: u32) {
        let mut s = self.lock();
        if let Some(c) = s.consumers.iter_mut().find(|c| c.id == consumer) {
            c.cursor = c.cursor.min(entry);
            c.credit = credit;
        }
    }

    /// Deletes the queue: its links are detached with `amqp:resource-deleted`, its messages
    /// dropped.
    pub fn delete(&self) {
        let mut s = self.lock();
        if s.deleted {
            return;
        }
        s.deleted = true;
        for c in &s.consumers {
            let _ = c.tx.try_send(Outbound::Detach {
                link: c.id.link,
                error: Box::new(Error::new(
                    ErrorCondition::ResourceDeleted,
                    format!("queue {} deleted", self.name),
                )),
            });
        }
        s.consumers.clear();
        let held = s.bytes;
        s.ready.clear();
        s.unacked.clear();
        s.scheduled.clear();
        s.locks.clear();
        s.lock_notices.clear();
        s.restored = Default::default();
        s.restored_annotations.clear();
        s.restored_expiry.clear();
        s.cold = [0; LEVELS];
        s.cold_bytes = 0;
        // The levels' store queues go with the queue (the broker deletes its own id).
        if let Some(d) = &self.durable {
            let ops: Vec<Op> = s
                .level_ids
                .iter()
                .flatten()
                .map(|id| Op::DeleteQueue { queue: *id })
                .collect();
            if !ops.is_empty() {
                d.journal.submit(ops);
            }
        }
        s.bytes = 0;
        self.memory.refund(held);
    }

    /// Hands ready messages to consumers with credit, round-robin, in FIFO order.
    fn dispatch(self: &Arc<Self>, s: &mut State) {
        let n = s.consumers.len();
        if n == 0 {
            return;
        }
        // The first ready message (in order) that some consumer with credit may take, ties
        // going round-robin: a message a consumer may not take (its selector, its size,
        // modified undeliverable-here) must not hold back the messages behind it.
        self.browse(s);
        while s.consumers.iter().any(|c| c.credit > 0 && !c.browse) {
            // Messages only on disk are read back as consumers reach them.
            self.refill(s);
            let Some((pos, i)) = Self::choose(s) else {
                break;
            };
            s.rr = (i + 1) % n;
            let Some(entry) = s.ready.remove(pos) else {
                break;
            };
            if entry.expires != 0 && entry.expired(now_ms()) {
                self.kill(s, entry, "expired", None);
                continue;
            }
            let Some(c) = s.consumers.get_mut(i) else {
                Self::requeue(s, entry);
                break;
            };
            c.credit -= 1;
            let (id, presettled) = (c.id, c.presettled);
            // §3.2.1: the ttl the consumer sees is what is left of it.
            let message = match entry.message.header().ok().and_then(|h| h.ttl) {
                Some(_) if entry.expires != 0 => {
                    let left = entry
                        .expires
                        .saturating_sub(now_ms())
                        .min(u64::from(u32::MAX)) as u32;
                    reannotated(&entry.message, |h| h.ttl = Some(left.max(1)), None)
                }
                _ => entry.message.clone(),
            };
            let entry_id = entry.id;
            let queue = Arc::clone(self);
            // Pre-settled: forgotten once handed over; unsettled: kept until the outcome.
            let kept = if presettled {
                Some(entry)
            } else {
                let mut entry = entry;
                if let Some(d) = self.policy.lock_duration {
                    let until = now_ms().saturating_add(d.as_millis() as u64);
                    entry.locked_until = until;
                    s.locks.insert((until, entry_id));
                }
                s.unacked.insert(entry_id, (entry, id));
                None
            };
            let delivery = Outbound::Deliver(Box::new(Delivery {
                link: id.link,
                queue,
                entry: entry_id,
                message,
                settled: presettled,
                copy: false,
            }));
            let sent = s.consumers.get(i).map(|c| c.tx.try_send(delivery));
            if matches!(sent, Some(Ok(()))) {
                if let Some(entry) = kept {
                    self.forget(s, &entry);
                }
            } else {
                // The connection is gone or behind: take the message back, stop offering.
                if let Some(e) = kept.or_else(|| s.take_unacked(entry_id).map(|(e, _)| e)) {
                    Self::requeue(s, e);
                }
                if let Some(c) = s.consumers.get_mut(i) {
                    c.credit = 0;
                }
            }
        }
        if self.policy.lock_duration.is_some() {
            self.arm(s);
        }
        // Drain: a consumer that asked to drain and still has credit has seen everything it
        // may take.
        let elsewhere = s.on_disk() > 0;
        let State {
            consumers,
            ready,
            max_passed,
            ..
        } = s;
        for c in consumers.iter_mut().filter(|c| c.drain) {
            let nothing_left = if c.browse {
                !ready.iter().any(|e| e.id >= c.cursor && c.may_take(e))
            } else {
                !elsewhere && Self::next_for(c, ready, ready.len(), max_passed).is_none()
            };
            if c.drain && (c.credit == 0 || nothing_left) {
                c.drain = false;
                c.credit = 0;
                let _ = c.tx.try_send(Outbound::Drained {
                    link: c.id.link,
                    round: c.drain_round,
                });
            }
        }
    }
}

impl Queue {
    /// The position in `ready` of the first entry consumer `c` may take, looking no further
    /// than `limit`; the entries it passes are remembered as passed.
    fn next_for(
        c: &mut Consumer,
        ready: &VecDeque<Entry>,
        limit: usize,
        max_passed: &mut Place,
    ) -> Option<usize> {
        let mut pos = if c.passed == (0, 0) {
            0
        } else {
            ready.partition_point(|e| place(e) < c.passed)
        };
        let found = loop {
            if pos >= limit {
                break None;
            }
            let e = ready.get(pos)?;
            if c.may_take(e) {
                break Some(pos);
            }
            let (level, id) = place(e);
            c.passed = (level, id + 1);
            pos += 1;
        };
        *max_passed = (*max_passed).max(c.passed);
        found
    }

    /// The next delivery: (position in `ready`, consumer index). The earliest entry any
    /// consumer with credit may take; among consumers that may take it, the next in
    /// round-robin order.
    fn choose(s: &mut State) -> Option<(usize, usize)> {
        let n = s.consumers.len();
        let State {
            consumers,
            ready,
            rr,
            max_passed,
            ..
        } = s;
        let mut chosen: Option<(usize, usize)> = None;
        for k in 0..n {
            let i = (*rr + k) % n;
            let Some(c) = consumers.get_mut(i) else {
                continue;
            };
            if c.credit == 0 || c.browse {
                continue;
            }
            let limit = chosen.map_or(ready.len(), |(p, _)| p);
            if let Some(pos) = Self::next_for(c, ready, limit, max_passed) {
                chosen = Some((pos, i));
                if pos == 0 {
                    break;
                }
            }
        }
        chosen
    }

    /// Sends browsers copies of the ready messages past their cursors, in order, within
    /// their credit. The messages stay where they are.
    fn browse(self: &Arc<Self>, s: &mut State) {
        if !s.consumers.iter().any(|c| c.browse && c.credit > 0) {
            return;
        }
        let State {
            consumers,
            ready,
            mixed_priorities,
            ..
        } = s;
        // Browsers see messages in arrival order, whatever their priority.
        let mut order: Vec<&Entry> = ready.iter().collect();
        if *mixed_priorities {
            order.sort_by_key(|e| e.id);
        }
        for c in consumers.iter_mut().filter(|c| c.browse && c.credit > 0) {
            for e in order.iter() {
                if c.credit == 0 {
                    break;
                }
                if e.id < c.cursor {
                    continue;
                }
                c.cursor = e.id + 1;
                if !c.may_take(e) {
                    continue;
                }
                let delivery = Outbound::Deliver(Box::new(Delivery {
                    link: c.id.link,
                    queue: Arc::clone(self),
                    entry: e.id,
                    message: e.message.clone(),
                    settled: true,
                    copy: true,
                }));
                if c.tx.try_send(delivery).is_err() {
                    // Behind: this one is offered again next time.
                    c.cursor = e.id;
                    c.credit = 0;
                    break;
                }
                c.credit -= 1;
            }
        }
    }
}

/// A message read back from the store with what happened to it since it was stored: its
/// delivery-count, and annotation changes (each an encoded map, oldest first).
fn restored(message: Message, delivery_count: u32, annotations: &[u8]) -> Message {
    let mut message = message;
    let mut dead = false;
    for fields in changes(annotations) {
        dead |= fields.get(DEADLETTER_REASON).is_some();
        message = modified(&message, false, Some(&fields));
    }
    if delivery_count == 0 && !dead {
        return message;
    }
    reannotated(
        &message,
        |h| {
            if delivery_count != 0 {
                h.delivery_count = delivery_count;
                h.first_acquirer = false;
            }
            if dead {
                h.ttl = None;
            }
        },
        None,
    )
}

/// The annotation changes the store recorded for a message, decoded, oldest first.
fn changes(annotations: &[u8]) -> impl Iterator<Item = Fields> + '_ {
    crate::store::index::annotation_changes(annotations)
        .into_iter()
        .filter_map(|change| {
            let bytes = bytes::Bytes::copy_from_slice(change);
            ferry_codec::Decoder::decode_exact::<Fields>(&bytes, ferry_codec::DecodeLimits::DEFAULT)
                .ok()
        })
}

/// Whether a stored message's annotation changes say it was dead-lettered.
fn dead_lettered(annotations: &[u8]) -> bool {
    !annotations.is_empty() && changes(annotations).any(|f| f.get(DEADLETTER_REASON).is_some())
}

/// The message after a `modified` outcome (§3.4.5): delivery-count + 1 if the delivery
/// failed, and `annotations` merged into its message-annotations.
fn modified(message: &Message, delivery_failed: bool, annotations: Option<&Fields>) -> Message {
    reannotated(
        message,
        |h| {
            if delivery_failed {
                h.delivery_count = h.delivery_count.saturating_add(1);
                h.first_acquirer = false;
            }
        },
        annotations,
    )
}

/// Rewrites the header (through `edit`) and merges `annotations` into the
/// message-annotations of `message`; the bare message is shared, not copied.
fn reannotated(
    message: &Message,
    edit: impl FnOnce(&mut Header),
    annotations: Option<&Fields>,
) -> Message {
    let mut header: Header = message.header().unwrap_or_default();
    edit(&mut header);
    let da = message
        .delivery_annotations()
        .ok()
        .flatten()
        .map(ferry_codec::messaging::DeliveryAnnotations);
    let mut ma: Option<Map> = message.message_annotations().ok().flatten();
    if let Some(extra) = annotations {
        let map = ma.get_or_insert_with(Map::new);
        for (k, v) in &extra.0 {
            let key = Value::Symbol(k.clone());
            match map.0.iter_mut().find(|(mk, _)| *mk == key) {
                Some(pair) => pair.1 = v.clone(),
                None => map.push(key, v.clone()),
            }
        }
    }
    let ma = ma.map(MessageAnnotations);
    message
        .reannotate(Some(&header), da.as_ref(), ma.as_ref())
        .unwrap_or_else(|_| message.clone())
}

/// Milliseconds since the Unix epoch (the unit of AMQP timestamps).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a queue works out about a message once, when it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Arrival {
    /// When it expires (ms since the epoch; 0 for never).
    expires: u64,
    /// Its priority, 0 to 9.
    priority: u8,
    /// When it may first be delivered (ms since the epoch; 0 or past: at once).
    due: u64,
}

/// Annotations that hold a message back: an absolute time (timestamp or ms since the epoch)
/// under either name, or a delay in ms from arrival.
pub const SCHEDULED_ENQUEUE_TIME: &str = "x-opt-scheduled-enqueue-time";
/// Artemis's name for the same absolute time.
pub const DELIVERY_TIME: &str = "x-opt-delivery-time";
/// Artemis's delay, in ms from arrival.
pub const DELIVERY_DELAY: &str = "x-opt-delivery-delay";

/// A message's expiry, priority and scheduled time as of its arrival at `now` (§3.2.1,
/// §3.2.4): `properties.absolute-expiry-time` wins over `header.ttl`, and either over the
/// queue's `default`. One exception: an absolute time already past on arrival, on a message
/// whose ttl says it is alive, is the sender's clock being wrong, and the ttl (counted from
/// arrival here, §3.2.1) is used. oslo.messaging sends exactly that: a ttl with an
/// "absolute" time computed from the monotonic clock, i.e. seconds since boot.
/// One header decode serves expiry and priority; the annotations are decoded only if the
/// message has any.
fn arrival_of(message: &Message, default: Option<std::time::Duration>, now: u64) -> Arrival {
    let header = message.header().unwrap_or_default();
    let priority = header.priority.min(9);
    let due = scheduled_of(message, now);
    if let Ok(Some(p)) = message.properties()
        && let Some(t) = p.absolute_expiry_time
    {
        let at = u64::try_from(t.0).unwrap_or(0).max(1);
        if at > now || header.ttl.is_none() {
            return Arrival {
                expires: at,
                priority,
                due,
            };
        }
    }
    let ttl = header
        .ttl
        .map(|ms| std::time::Duration::from_millis(u64::from(ms)))
        .or(default);
    let expires = match ttl {
        Some(ttl) => now.saturating_add(ttl.as_millis() as u64),
        None => 0,
    };
    Arrival {
        expires,
        priority,
        due,
    }
}

/// When a message asks to be delivered first (ms since the epoch), 0 if it does not.
fn scheduled_of(message: &Message, now: u64) -> u64 {
    if message.index().message_annotations.is_none() {
        return 0;
    }
    let Ok(Some(annotations)) = message.message_annotations() else {
        return 0;
    };
    let millis = |v: &Value| -> Option<i64> {
        match *v {
            Value::Timestamp(t) => Some(t.0),
            Value::Long(v) => Some(v),
            Value::Ulong(v) => i64::try_from(v).ok(),
            Value::Int(v) => Some(i64::from(v)),
            Value::Uint(v) => Some(i64::from(v)),
            _ => None,
        }
    };
    let mut due = 0u64;
    for (k, v) in &annotations.0 {
        let (Value::Symbol(k), Some(ms)) = (k, millis(v)) else {
            continue;
        };
        let at = match k.as_str() {
            SCHEDULED_ENQUEUE_TIME | DELIVERY_TIME => u64::try_from(ms).unwrap_or(0),
            DELIVERY_DELAY => now.saturating_add(u64::try_from(ms).unwrap_or(0)),
            _ => continue,
        };
        due = due.max(at);
    }
    due
}

/// A message's priority for delivery order: `header.priority`, 4 when absent, above 9 as 9.
fn priority_of(message: &Message) -> u8 {
    message.header().map_or(4, |h| h.priority).min(9)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::store::{Paged, ReadError, WriterStats};

    /// A store that takes everything and can be told its disk is full.
    #[derive(Debug, Default)]
    struct FakeJournal {
        full: AtomicBool,
    }

    impl Journal for FakeJournal {
        fn next_message_id(&self) -> u64 {
            1
        }
        fn next_queue_id(&self) -> u32 {
            1
        }
        fn submit(&self, _ops: Vec<Op>) {}
        fn read(&self, msg: u64) -> Result<bytes::Bytes, ReadError> {
            Err(ReadError::Missing(msg))
        }
        fn backlog(&self) -> usize {
            0
        }
        fn failure(&self) -> Option<String> {
            None
        }
        fn stats(&self) -> WriterStats {
            WriterStats::default()
        }
        fn disk_full(&self) -> bool {
            self.full.load(Ordering::Relaxed)
        }
        fn page_in(&self, _: u32, _: usize, _: usize) -> Result<Vec<Paged>, ReadError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn an_absolute_expiry_in_the_past_with_a_ttl_counts_from_arrival() {
        use ferry_codec::messaging::{Data, Properties, Section};
        use ferry_codec::types::Timestamp;
        let now = now_ms();
        let make = |ttl: Option<u32>, at: i64| {
            Message::from_sections(&[
                Section::Header(Header {
                    ttl,
                    ..Header::default()
                }),
                Section::Properties(Properties {
                    absolute_expiry_time: Some(Timestamp(at)),
                    ..Properties::default()
                }),
                Section::Data(Data(bytes::Bytes::from_static(b"x"))),
            ])
            .unwrap()
        };
        // oslo.messaging's shape: ttl 20 s, "absolute" time in 1970 (seconds since boot).
        let oslo = arrival_of(&make(Some(20_000), 29_207_000), None, now);
        assert_eq!(oslo.expires, now + 20_000);
        // A future absolute time still wins over the ttl.
        let sooner = arrival_of(&make(Some(60_000), now as i64 + 300), None, now);
        assert_eq!(sooner.expires, now + 300);
        // A past absolute time alone means expired.
        let past = arrival_of(&make(None, 29_207_000), None, now);
        assert_eq!(past.expires, 29_207_000);
    }

    #[test]
    fn a_full_disk_leaves_no_room_for_producers_of_a_durable_queue() {
        let journal = Arc::new(FakeJournal::default());
        let q = Queue::with_durability(
            "q".into(),
            QueueKind::Declared,
            QueueLimits::default(),
            Arc::new(Memory::new(1 << 20)),
            Some(Durability {
                journal: Arc::clone(&journal) as Arc<dyn Journal>,
                id: 1,
                page_above: 1 << 20,
            }),
        );
        assert!(q.room(1000) > 0);
        journal.full.store(true, Ordering::Relaxed);
        assert_eq!(q.room(1000), 0);
        journal.full.store(false, Ordering::Relaxed);
        assert!(q.room(1000) > 0);
    }
}
