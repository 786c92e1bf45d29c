//! Exchanges: nodes that route each message to the queues bound to them, by routing key.
//!
//! - `fanout`: every bound queue, whatever the key.
//! - `direct`: queues bound with exactly the message's key.
//! - `topic`: queues bound with a pattern matching the key (`*` one word, `#` any number;
//!   see [`super::topic`]).
//! - `headers`: not routed by key: each binding's match (`x-match` all/any over pairs) is
//!   tested against the message's application-properties.
//!
//! A binding may carry a selector (a subscription's filter): the message goes to that queue
//! only if it selects, so a filtered subscription never stores what it would not deliver.
//! A no-local binding skips messages published by its subscriber's own container.
//! The routing key is the address's key, or else the message's `subject`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ferry_codec::messaging::Message;

use super::address::{ExchangeSpec, ExchangeType, Unroutable};
use super::filter::HeadersMatch;
use super::queue::Queue;
use super::selector::Selector;
use super::topic::{TopicError, TopicTable};

/// Most bindings on one exchange: every publish may look at all of a fanout's.
pub const MAX_BINDINGS: usize = 100_000;

/// Why a binding was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// The key or pattern is over the topic limits.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// [`MAX_BINDINGS`] reached.
    #[error("exchange has {MAX_BINDINGS} bindings already")]
    Full,
}

/// What a binding matches, besides its queue.
#[derive(Debug, Clone, Default)]
pub struct BindSpec {
    /// The key (a pattern for a topic exchange; ignored by fanout and headers).
    pub key: String,
    /// A headers exchange's match; `None` there matches everything.
    pub headers: Option<HeadersMatch>,
    /// Only messages this selects.
    pub selector: Option<Arc<Selector>>,
    /// Not messages published by this container (the subscriber's: no-local).
    pub no_local: Option<Arc<str>>,
}

impl BindSpec {
    /// Whether it has no filter beyond its key.
    fn is_plain(&self) -> bool {
        self.headers.is_none() && self.selector.is_none() && self.no_local.is_none()
    }

    /// A binding with `key` and nothing else.
    pub fn key(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            ..Self::default()
        }
    }
}

#[derive(Debug)]
struct Binding {
    id: u64,
    queue: Arc<Queue>,
    spec: BindSpec,
}

/// A binding as the key indexes hold it: routing reaches the queue and the filters without
/// another lookup. Equal (and hashed) by binding id.
#[derive(Debug, Clone)]
struct Hit(Arc<Binding>);

impl PartialEq for Hit {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for Hit {}

impl std::hash::Hash for Hit {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

impl Binding {
    /// Whether the message passes this binding's filters (its key already matched).
    fn admits(&self, message: &Message, origin: Option<&str>) -> bool {
        if let (Some(mine), Some(theirs)) = (&self.spec.no_local, origin)
            && **mine == *theirs
        {
            return false;
        }
        if let Some(h) = &self.spec.headers
            && !h.matches(message)
        {
            return false;
        }
        self.spec
            .selector
            .as_ref()
            .is_none_or(|s| s.matches_message(message))
    }
}

#[derive(Debug, Default)]
struct Bindings {
    /// By binding id.
    all: HashMap<u64, Hit>,
    /// Direct: bindings by key.
    by_key: HashMap<String, Vec<Hit>>,
    /// Topic: bindings by pattern.
    topics: TopicTable<Hit>,
    next: u64,
}

/// Routing keys of one topic exchange recently routed, with the bindings their patterns
/// matched (before filters): a key seen again costs one hash lookup instead of a trie walk.
/// Emptied whenever a binding changes (under the bindings' write lock, so no route can
/// store a result computed from the old bindings). Bounded per exchange and across all.
#[derive(Debug, Default)]
struct KeyCache {
    shards: [Shard; KEY_CACHE_SHARDS],
    hasher: std::hash::RandomState,
}

/// What a remembered key routes to: one queue through a binding without filters (the
/// common case, ready without touching the binding), or the bindings matched.
#[derive(Debug, Clone)]
enum Cached {
    One(Arc<Queue>),
    Hits(Arc<[Hit]>),
}

/// One shard of the key cache.
type Shard = Mutex<HashMap<Box<str>, Cached>>;

const KEY_CACHE_SHARDS: usize = 8;
/// Keys one topic exchange remembers.
const KEY_CACHE_PER_EXCHANGE: usize = 16_384;
/// Keys all topic exchanges remember together.
const KEY_CACHE_TOTAL: usize = 131_072;
/// Longer keys are not remembered.
const KEY_CACHE_KEY_BYTES: usize = 128;

/// Keys remembered now, across every exchange.
static KEY_CACHE_USED: AtomicUsize = AtomicUsize::new(0);

impl KeyCache {
    fn shard(&self, key: &str) -> Option<&Shard> {
        self.shards
            .get((self.hasher.hash_one(key) as usize) % KEY_CACHE_SHARDS)
    }

    fn lock(m: &Shard) -> MutexGuard<'_, HashMap<Box<str>, Cached>> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &str) -> Option<Cached> {
        Self::lock(self.shard(key)?).get(key).cloned()
    }

    fn put(&self, key: &str, hits: Cached) {
        if key.len() > KEY_CACHE_KEY_BYTES {
            return;
        }
        let Some(shard) = self.shard(key) else {
            return;
        };
        let mut shard = Self::lock(shard);
        if shard.len() >= KEY_CACHE_PER_EXCHANGE / KEY_CACHE_SHARDS {
            KEY_CACHE_USED.fetch_sub(shard.len(), Ordering::Relaxed);
            shard.clear();
        }
        if KEY_CACHE_USED.load(Ordering::Relaxed) >= KEY_CACHE_TOTAL {
            return;
        }
        if shard.insert(key.into(), hits).is_none() {
            KEY_CACHE_USED.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn clear(&self) {
        for m in &self.shards {
            let mut shard = Self::lock(m);
            KEY_CACHE_USED.fetch_sub(shard.len(), Ordering::Relaxed);
            shard.clear();
        }
    }
}

impl Drop for KeyCache {
    fn drop(&mut self) {
        self.clear();
    }
}

/// One exchange.
#[derive(Debug)]
pub struct Exchange {
    name: String,
    spec: ExchangeSpec,
    bindings: RwLock<Bindings>,
    keys: KeyCache,
}

impl Exchange {
    /// An exchange with no bindings.
    pub fn new(name: String, spec: ExchangeSpec) -> Self {
        Self {
            name,
            spec,
            bindings: RwLock::new(Bindings::default()),
            keys: KeyCache::default(),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Bindings> {
        self.bindings.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Bindings> {
        self.bindings.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its type and unroutable outcome.
    pub fn spec(&self) -> ExchangeSpec {
        self.spec
    }

    /// What to tell a publisher whose message reached no queue.
    pub fn unroutable(&self) -> Unroutable {
        self.spec.unroutable
    }

    /// Binds `queue` as `spec` says; returns the binding's id.
    pub fn bind(&self, queue: Arc<Queue>, spec: BindSpec) -> Result<u64, BindError> {
        let mut b = self.write();
        if b.all.len() >= MAX_BINDINGS {
            return Err(BindError::Full);
        }
        self.insert(&mut b, queue, spec)
    }

    fn insert(
        &self,
        b: &mut Bindings,
        queue: Arc<Queue>,
        spec: BindSpec,
    ) -> Result<u64, BindError> {
        let id = b.next;
        self.keys.clear();
        let hit = Hit(Arc::new(Binding { id, queue, spec }));
        let key = &hit.0.spec.key;
        match self.spec.ty {
            ExchangeType::Topic => {
                b.topics.bind(key, hit.clone())?;
            }
            ExchangeType::Direct => b.by_key.entry(key.clone()).or_default().push(hit.clone()),
            ExchangeType::Fanout | ExchangeType::Headers => {}
        }
        b.next += 1;
        b.all.insert(id, hit);
        Ok(id)
    }

    /// Replaces binding `id` by one with `spec`, with no moment in between when a message
    /// could miss the queue; returns the new binding's id. If `spec` is refused, the old
    /// binding stays.
    pub fn rebind(&self, id: u64, queue: Arc<Queue>, spec: BindSpec) -> Result<u64, BindError> {
        let mut b = self.write();
        if !b.all.contains_key(&id) && b.all.len() >= MAX_BINDINGS {
            return Err(BindError::Full);
        }
        let new = self.insert(&mut b, queue, spec)?;
        self.remove(&mut b, id);
        Ok(new)
    }

    /// Removes binding `id`.
    pub fn unbind(&self, id: u64) {
        let mut b = self.write();
        self.remove(&mut b, id);
    }

    fn remove(&self, b: &mut Bindings, id: u64) {
        let Some(hit) = b.all.remove(&id) else {
            return;
        };
        self.keys.clear();
        let key = &hit.0.spec.key;
        match self.spec.ty {
            ExchangeType::Topic => {
                b.topics.unbind(key, &hit);
            }
            ExchangeType::Direct => {
                if let Some(hits) = b.by_key.get_mut(key) {
                    hits.retain(|h| h.0.id != id);
                    if hits.is_empty() {
                        b.by_key.remove(key);
                    }
                }
            }
            ExchangeType::Fanout | ExchangeType::Headers => {}
        }
    }

    /// Removes every binding of `queue` (it was deleted).
    pub fn unbind_queue(&self, queue: &Arc<Queue>) {
        let ids: Vec<u64> = self
            .read()
            .all
            .iter()
            .filter(|(_, h)| Arc::ptr_eq(&h.0.queue, queue))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.unbind(id);
        }
    }

    /// Number of bindings.
    pub fn binding_count(&self) -> usize {
        self.read().all.len()
    }

    /// The queues `message` goes to with routing `key`: each once, in no particular order.
    /// `origin` is the publisher's container-id, for no-local bindings.
    pub fn route(&self, message: &Message, key: &str, origin: Option<&str>) -> Routed {
        let b = self.read();
        let mut out = Routed::Many(Vec::new());
        let mut add = |hit: &Hit| {
            let binding = &hit.0;
            if binding.admits(message, origin) {
                out.add(&binding.queue);
            }
        };
        match self.spec.ty {
            ExchangeType::Fanout | ExchangeType::Headers => {
                b.all.values().for_each(&mut add);
            }
            ExchangeType::Direct => {
                let hits = b.by_key.get(key).map_or(&[][..], Vec::as_slice);
                hits.iter().for_each(&mut add);
            }
            ExchangeType::Topic => {
                let cached = match self.keys.get(key) {
                    Some(cached) => cached,
                    None => {
                        let mut found: Vec<Hit> = Vec::new();
                        b.topics.matches(key, &mut found);
                        let cached = match found.as_slice() {
                            [one] if one.0.spec.is_plain() => Cached::One(Arc::clone(&one.0.queue)),
                            _ => Cached::Hits(found.into()),
                        };
                        self.keys.put(key, cached.clone());
                        cached
                    }
                };
                match cached {
                    Cached::One(q) => return Routed::One(q),
                    Cached::Hits(hits) => hits.iter().for_each(&mut add),
                }
            }
        }
        out.dedupe();
        out
    }
}

/// Where a message goes: nearly always one queue, which needs no allocation.
#[derive(Debug)]
pub enum Routed {
    /// One queue.
    One(Arc<Queue>),
    /// Any number (none: unroutable).
    Many(Vec<Arc<Queue>>),
}

impl Routed {
    /// The queues.
    pub fn as_slice(&self) -> &[Arc<Queue>] {
        match self {
            Routed::One(q) => std::slice::from_ref(q),
            Routed::Many(v) => v,
        }
    }

    /// Adds `queue` unless it is there already (a queue bound several ways gets a message
    /// once). Past [`LINEAR_DEDUPE`] queues duplicates are left for [`Routed::dedupe`].
    fn add(&mut self, queue: &Arc<Queue>) {
        match self {
            Routed::Many(v) if v.is_empty() => *self = Routed::One(Arc::clone(queue)),
            Routed::One(q) => {
                if !Arc::ptr_eq(q, queue) {
                    *self = Routed::Many(vec![Arc::clone(q), Arc::clone(queue)]);
                }
            }
            Routed::Many(v) => {
                if v.len() > LINEAR_DEDUPE || !v.iter().any(|q| Arc::ptr_eq(q, queue)) {
                    v.push(Arc::clone(queue));
                }
            }
        }
    }

    /// Drops the duplicates [`Routed::add`] let through.
    fn dedupe(&mut self) {
        if let Routed::Many(v) = self
            && v.len() > LINEAR_DEDUPE
        {
            v.sort_by_key(Arc::as_ptr);
            v.dedup_by(|a, b| Arc::ptr_eq(a, b));
        }
    }
}

/// Routes up to this many queues find duplicates by scanning.
const LINEAR_DEDUPE: usize = 16;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::broker::address::Unroutable;
    use crate::broker::memory::Memory;
    use crate::broker::queue::{QueueKind, QueueLimits};
    use ferry_codec::messaging::{Data, Section};

    fn queue(name: &str) -> Arc<Queue> {
        Arc::new(Queue::new(
            name.into(),
            QueueKind::Declared,
            QueueLimits::default(),
            Arc::new(Memory::new(1 << 20)),
        ))
    }

    fn topic_exchange() -> (Exchange, Message) {
        let ex = Exchange::new(
            "t".into(),
            ExchangeSpec {
                ty: ExchangeType::Topic,
                unroutable: Unroutable::Release,
            },
        );
        let m = Message::from_sections(&[Section::Data(Data(bytes::Bytes::from_static(b"x")))])
            .unwrap();
        (ex, m)
    }

    fn names(r: Routed) -> Vec<String> {
        let mut v: Vec<String> = r.as_slice().iter().map(|q| q.name().to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_remembered_key_follows_every_binding_change() {
        let (ex, m) = topic_exchange();
        let (a, b) = (queue("a"), queue("b"));
        let first = ex.bind(Arc::clone(&a), BindSpec::key("x.*")).unwrap();
        assert_eq!(names(ex.route(&m, "x.y", None)), ["a"]);
        // Served from the cache now; a new binding must still be seen...
        assert_eq!(names(ex.route(&m, "x.y", None)), ["a"]);
        let second = ex.bind(Arc::clone(&b), BindSpec::key("#")).unwrap();
        assert_eq!(names(ex.route(&m, "x.y", None)), ["a", "b"]);
        // ...and a removed one gone, also after a rebind.
        ex.unbind(first);
        assert_eq!(names(ex.route(&m, "x.y", None)), ["b"]);
        let third = ex
            .rebind(second, Arc::clone(&b), BindSpec::key("z.#"))
            .unwrap();
        assert!(ex.route(&m, "x.y", None).as_slice().is_empty());
        assert_eq!(names(ex.route(&m, "z", None)), ["b"]);
        ex.unbind(third);
        assert!(ex.route(&m, "z", None).as_slice().is_empty());
    }

    #[test]
    fn the_key_cache_stays_within_its_bounds() {
        let (ex, m) = topic_exchange();
        ex.bind(queue("a"), BindSpec::key("#")).unwrap();
        for i in 0..(KEY_CACHE_PER_EXCHANGE * 2) {
            assert_eq!(ex.route(&m, &format!("k.{i}"), None).as_slice().len(), 1);
        }
        let held: usize = ex.keys.shards.iter().map(|s| KeyCache::lock(s).len()).sum();
        assert!(held <= KEY_CACHE_PER_EXCHANGE, "{held}");
        // Keys too long to remember route all the same.
        let long = "w".repeat(KEY_CACHE_KEY_BYTES + 1);
        assert_eq!(ex.route(&m, &long, None).as_slice().len(), 1);
    }
}
