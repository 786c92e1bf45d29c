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
    queue: Arc<Queue>,
    spec: BindSpec,
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
    all: HashMap<u64, Binding>,
    /// Direct: binding ids by key.
    by_key: HashMap<String, Vec<u64>>,
    /// Topic: binding ids by pattern.
    topics: TopicTable<u64>,
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
        match self.spec.ty {
            ExchangeType::Topic => {
                b.topics.bind(&spec.key, id)?;
            }
            ExchangeType::Direct => b.by_key.entry(spec.key.clone()).or_default().push(id),
            ExchangeType::Fanout | ExchangeType::Headers => {}
        }
        b.next += 1;
        b.all.insert(id, Binding { queue, spec });
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
        let Some(binding) = b.all.remove(&id) else {
            return;
        };
        let key = &binding.spec.key;
        match self.spec.ty {
            ExchangeType::Topic => {
                b.topics.unbind(key, &id);
            }
            ExchangeType::Direct => {
                if let Some(ids) = b.by_key.get_mut(key) {
                    ids.retain(|i| *i != id);
                    if ids.is_empty() {
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
            .filter(|(_, b)| Arc::ptr_eq(&b.queue, queue))
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
        let mut ids: Vec<u64> = Vec::new();
        match self.spec.ty {
            ExchangeType::Fanout | ExchangeType::Headers => ids.extend(b.all.keys().copied()),
            ExchangeType::Direct => {
                if let Some(v) = b.by_key.get(key) {
                    ids.extend(v.iter().copied());
                }
            }
            ExchangeType::Topic => b.topics.matches(key, &mut ids),
        }
        let mut out: Vec<Arc<Queue>> = Vec::with_capacity(ids.len());
        // A queue bound several ways gets the message once; a set only pays off when many
        // bindings matched.
        let mut seen = std::collections::HashSet::new();
        for id in ids.iter() {
            let Some(binding) = b.all.get(id) else {
                continue;
            };
            if !binding.admits(message, origin) {
                continue;
            }
            let fresh = if ids.len() > 16 {
                seen.insert(Arc::as_ptr(&binding.queue))
            } else {
                !out.iter().any(|q| Arc::ptr_eq(q, &binding.queue))
            };
            if fresh {
                out.push(Arc::clone(&binding.queue));
            }
        }
        out
    }
}
