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
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

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

/// One exchange.
#[derive(Debug)]
pub struct Exchange {
    name: String,
    spec: ExchangeSpec,
    bindings: RwLock<Bindings>,
}

impl Exchange {
    /// An exchange with no bindings.
    pub fn new(name: String, spec: ExchangeSpec) -> Self {
        Self {
            name,
            spec,
            bindings: RwLock::new(Bindings::default()),
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
    pub fn route(&self, message: &Message, key: &str, origin: Option<&str>) -> Vec<Arc<Queue>> {
        let b = self.read();
        let mut out: Vec<Arc<Queue>> = Vec::new();
        // A queue bound several ways gets the message once; a set only pays off when many
        // bindings matched (`n`).
        let mut seen = std::collections::HashSet::new();
        let mut add = |hit: &Hit, n: usize| {
            let binding = &hit.0;
            if !binding.admits(message, origin) {
                return;
            }
            let fresh = if n > 16 {
                seen.insert(Arc::as_ptr(&binding.queue))
            } else {
                !out.iter().any(|q| Arc::ptr_eq(q, &binding.queue))
            };
            if fresh {
                out.push(Arc::clone(&binding.queue));
            }
        };
        match self.spec.ty {
            ExchangeType::Fanout | ExchangeType::Headers => {
                let n = b.all.len();
                b.all.values().for_each(|h| add(h, n));
            }
            ExchangeType::Direct => {
                let hits = b.by_key.get(key).map_or(&[][..], Vec::as_slice);
                hits.iter().for_each(|h| add(h, hits.len()));
            }
            ExchangeType::Topic => {
                let mut found: Vec<Hit> = Vec::new();
                b.topics.matches(key, &mut found);
                found.iter().for_each(|h| add(h, found.len()));
            }
        }
        out
    }
}
