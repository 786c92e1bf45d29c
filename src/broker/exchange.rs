//! Exchanges: nodes that route each message to the queues bound to them, by routing key.
//!
//! - `fanout`: every bound queue, whatever the key.
//! - `direct`: queues bound with exactly the message's key.
//! - `topic`: queues bound with a pattern matching the key (`*` one word, `#` any number;
//!   see [`super::topic`]).
//! - `headers`: not routed by key; Ferry does not evaluate header bindings yet, so a headers
//!   exchange routes nowhere (its unroutable outcome applies).
//!
//! A binding may carry a selector (a subscription's filter): the message goes to that queue
//! only if it selects, so a filtered subscription never stores what it would not deliver.
//! The routing key is the address's key, or else the message's `subject`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ferry_codec::messaging::Message;

use super::address::{ExchangeSpec, ExchangeType, Unroutable};
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

#[derive(Debug)]
struct Binding {
    queue: Arc<Queue>,
    key: String,
    selector: Option<Arc<Selector>>,
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

    /// Binds `queue` with `key` (a pattern for a topic exchange; ignored by fanout) and an
    /// optional selector; returns the binding's id.
    pub fn bind(
        &self,
        queue: Arc<Queue>,
        key: &str,
        selector: Option<Arc<Selector>>,
    ) -> Result<u64, BindError> {
        let mut b = self.write();
        if b.all.len() >= MAX_BINDINGS {
            return Err(BindError::Full);
        }
        let id = b.next;
        match self.spec.ty {
            ExchangeType::Topic => {
                b.topics.bind(key, id)?;
            }
            ExchangeType::Direct => b.by_key.entry(key.to_string()).or_default().push(id),
            ExchangeType::Fanout | ExchangeType::Headers => {}
        }
        b.next += 1;
        b.all.insert(
            id,
            Binding {
                queue,
                key: key.to_string(),
                selector,
            },
        );
        Ok(id)
    }

    /// Removes binding `id`.
    pub fn unbind(&self, id: u64) {
        let mut b = self.write();
        let Some(binding) = b.all.remove(&id) else {
            return;
        };
        match self.spec.ty {
            ExchangeType::Topic => {
                b.topics.unbind(&binding.key, &id);
            }
            ExchangeType::Direct => {
                if let Some(ids) = b.by_key.get_mut(&binding.key) {
                    ids.retain(|i| *i != id);
                    if ids.is_empty() {
                        b.by_key.remove(&binding.key);
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
    pub fn route(&self, message: &Message, key: &str) -> Vec<Arc<Queue>> {
        let b = self.read();
        let mut ids: Vec<u64> = Vec::new();
        match self.spec.ty {
            ExchangeType::Fanout => ids.extend(b.all.keys().copied()),
            ExchangeType::Direct => {
                if let Some(v) = b.by_key.get(key) {
                    ids.extend(v.iter().copied());
                }
            }
            ExchangeType::Topic => b.topics.matches(key, &mut ids),
            ExchangeType::Headers => {}
        }
        let mut out: Vec<Arc<Queue>> = Vec::with_capacity(ids.len());
        // A queue bound several ways gets the message once; a set only pays off when many
        // bindings matched.
        let mut seen = std::collections::HashSet::new();
        for id in ids.iter() {
            let Some(binding) = b.all.get(id) else {
                continue;
            };
            if binding
                .selector
                .as_ref()
                .is_some_and(|s| !s.matches_message(message))
            {
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
