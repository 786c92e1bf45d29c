//! Named subscriptions: durable and shared receivers on an exchange.
//!
//! A receiver on an exchange gets a queue of its own, bound to the exchange. A private,
//! volatile one is a dynamic queue deleted with its link ([`Broker::subscribe`] without a
//! name). A named one outlives its link:
//!
//! - **Durable** (source `durable` other than `none`, as JMS clients send `unsettled-state`
//!   with expiry `never`): kept while its receiver is away, `detach(closed=false)` included,
//!   and across restarts; `detach(closed=true)` of its last receiver ends it.
//! - **Shared** (source capability `shared`): several receivers take turns on one queue. A
//!   shared volatile subscription ends when its last receiver goes.
//!
//! The identity is (container-id, link name), or the link name alone when the source has
//! both `shared` and `global` capabilities (so receivers of different containers share it).
//! Re-attaching keeps the queue and its messages; a new selector, no-local or key applies
//! to messages routed from then on (the binding is swapped atomically). Deliveries are not
//! resumed (§2.6.13): messages unsettled at detach return to the queue and are delivered
//! again as new deliveries with delivery-count + 1.
//!
//! A durable subscription's queue is a durable queue of the store, and its binding is an
//! object declaration there (`kind` [`OBJECT_SUBSCRIPTION`], id the queue's id, props the
//! source as attached), so a restart brings both back.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use ferry_codec::definitions::ErrorCondition;
use ferry_codec::messaging::Source;
use ferry_codec::types::{Symbol, Value};
use ferry_codec::{DecodeLimits, Decoder, Encode};

use super::address::{self, Direction, ExchangeType};
use super::exchange::{BindSpec, Exchange};
use super::filter::{self, BindingFilter, On};
use super::queue::{Queue, QueueKind};
use super::{Broker, LinkNode, PROPS_SUB, ResolveError};
use crate::store::{Op, RecoveredObject};

/// The store's object kind for a subscription's binding.
pub const OBJECT_SUBSCRIPTION: u8 = 1;

/// Queue names of named subscriptions start with this (reserved: never auto-created).
pub const SUBSCRIPTION_PREFIX: &str = "$ferry.sub.";

/// Longest subscription identity (queue name), so it is stored whole (the log keeps names of
/// up to 65,535 bytes) and stays a reasonable key.
pub const MAX_SUBSCRIPTION_ID: usize = 4096;

/// The source capability asking for a shared subscription.
pub const SHARED: &str = "shared";
/// With [`SHARED`]: the subscription is shared across containers (identity: link name).
pub const GLOBAL: &str = "global";

/// A subscription's identity, as the queue name it gives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubscriptionId(String);

impl SubscriptionId {
    /// The identity of link `name` of `container`, or of `name` alone when `global`.
    pub fn new(container: &str, name: &str, global: bool) -> Self {
        let owner = if global {
            std::borrow::Cow::Borrowed("$global")
        } else {
            address::encode(container)
        };
        Self(format!(
            "{SUBSCRIPTION_PREFIX}{owner}/{}",
            address::encode(name)
        ))
    }

    /// The queue name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The identity of a subscription asked for by receiver `link_name` of `container`.
    ///
    /// A shared subscription's receivers cannot all use one link name on one connection, so
    /// JMS clients (Qpid JMS, NMS AMQP) name them `sub`, `sub|2`, … (`sub|global`,
    /// `sub|global2`, … without a client id; `sub|volatile1`, `sub|global-volatile1`, … for
    /// non-durable ones): for a shared source the name ends at the first `|`. Durable and
    /// volatile shared subscriptions of one name are different subscriptions, as in JMS.
    pub fn of(container: &str, link_name: &str, shared: bool, global: bool, durable: bool) -> Self {
        if !shared {
            return Self::new(container, link_name, global);
        }
        let base = link_name.split('|').next().unwrap_or(link_name);
        if durable {
            Self::new(container, base, global)
        } else {
            Self::new(container, &format!("{base}|volatile"), global)
        }
    }

    /// Where a receiver with no source looks its durable subscription up (how JMS clients
    /// unsubscribe): `sub|global` names the global `sub`; any other name, the container's.
    pub fn lookup(container: &str, link_name: &str) -> Self {
        match link_name.strip_suffix("|global") {
            Some(base) => Self::new(container, base, true),
            None => Self::new(container, link_name, false),
        }
    }
}

/// What a receiver asks of a subscription.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    /// The exchange.
    pub exchange: Arc<Exchange>,
    /// The address's routing key or pattern.
    pub key: Option<String>,
    /// The filters it asked for that apply.
    pub filters: filter::Requested,
    /// The subscriber's container (for no-local).
    pub container: Arc<str>,
    /// Named subscriptions: its identity, durability and sharing; `None`: private, volatile.
    pub named: Option<Named>,
}

/// A named subscription's identity and kind.
#[derive(Debug, Clone)]
pub struct Named {
    /// Its identity.
    pub id: SubscriptionId,
    /// Kept while no receiver is attached, and across restarts.
    pub durable: bool,
    /// Several receivers at once.
    pub shared: bool,
    /// The source as attached: stored, and echoed to a receiver that re-attaches without one.
    pub source: Source,
}

/// A named subscription.
#[derive(Debug)]
pub(super) struct Subscription {
    queue: Arc<Queue>,
    binding: Option<(Arc<Exchange>, u64)>,
    durable: bool,
    shared: bool,
    source: Source,
    container: Arc<str>,
}

/// Whether a source asks for a shared subscription, and a global one.
pub fn sharing(capabilities: &[Symbol]) -> (bool, bool) {
    let has = |c: &str| capabilities.iter().any(|s| s.as_str() == c);
    (has(SHARED), has(SHARED) && has(GLOBAL))
}

/// The binding a receiver gets: the filter's key or match if it gave one, else the address's
/// key, else everything the exchange type allows.
fn bind_spec(ty: ExchangeType, key: Option<&str>, r: &SubscribeRequest) -> BindSpec {
    let mut spec = BindSpec {
        selector: r.filters.selector.clone(),
        no_local: r.filters.no_local.then(|| Arc::clone(&r.container)),
        ..BindSpec::default()
    };
    match &r.filters.binding {
        Some(BindingFilter::Key(k)) => spec.key = k.clone(),
        Some(BindingFilter::Headers(h)) => spec.headers = Some(h.clone()),
        None => {
            spec.key = key
                .unwrap_or(match ty {
                    ExchangeType::Topic => "#",
                    _ => "",
                })
                .to_string();
        }
    }
    spec
}

/// How a subscription is stored: `[container, source, shared, durable]` as an AMQP list.
fn encode_object(container: &str, source: &Source, shared: bool) -> Vec<u8> {
    Value::List(vec![
        Value::String(container.into()),
        Value::Binary(source.to_bytes()),
        Value::Bool(shared),
    ])
    .to_bytes()
    .to_vec()
}

fn decode_object(props: &[u8]) -> Option<(String, Source, bool)> {
    let props = bytes::Bytes::copy_from_slice(props);
    let Ok(Value::List(items)) = Decoder::decode_exact::<Value>(&props, DecodeLimits::DEFAULT)
    else {
        return None;
    };
    let [
        Value::String(container),
        Value::Binary(source),
        Value::Bool(shared),
    ] = &items[..]
    else {
        return None;
    };
    let source = Decoder::decode_exact::<Source>(source, DecodeLimits::DEFAULT).ok()?;
    Some((container.as_str().to_string(), source, *shared))
}

impl Broker {
    pub(super) fn subscription_table(
        &self,
    ) -> MutexGuard<'_, HashMap<SubscriptionId, Subscription>> {
        self.subscriptions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver's subscription to `r.exchange`: a private queue deleted with the link, or
    /// the named subscription, created or re-attached. Returns its queue.
    pub fn subscribe(&self, r: SubscribeRequest) -> Result<Arc<Queue>, (ErrorCondition, String)> {
        let ty = r.exchange.spec().ty;
        let spec = bind_spec(ty, r.key.as_deref(), &r);
        let Some(named) = &r.named else {
            let q = self
                .create_dynamic(super::Lifetime::DeleteOnClose)
                .map_err(|e| (e.condition(), e.to_string()))?;
            if let Err(e) = r.exchange.bind(Arc::clone(&q), spec) {
                self.delete(q.name());
                return Err((ErrorCondition::InvalidField, e.to_string()));
            }
            return Ok(q);
        };
        if named.id.as_str().len() > MAX_SUBSCRIPTION_ID {
            return Err((
                ErrorCondition::InvalidField,
                format!("subscription identity over {MAX_SUBSCRIPTION_ID} bytes"),
            ));
        }
        let mut subs = self.subscription_table();
        if let Some(sub) = subs.get_mut(&named.id) {
            if !sub.shared && sub.queue.stats().consumers > 0 {
                return Err((
                    ErrorCondition::ResourceLocked,
                    format!("subscription {} has a receiver already", named.id.as_str()),
                ));
            }
            let same_exchange = sub
                .binding
                .as_ref()
                .is_some_and(|(e, _)| Arc::ptr_eq(e, &r.exchange));
            if !same_exchange && sub.queue.stats().consumers > 0 {
                return Err((
                    ErrorCondition::PreconditionFailed,
                    format!(
                        "subscription {} is in use on another exchange",
                        named.id.as_str()
                    ),
                ));
            }
            // The new binding replaces the old at once: messages routed before stay queued,
            // messages routed after see the new filters.
            let rebound = match sub.binding.take() {
                Some((e, id)) if Arc::ptr_eq(&e, &r.exchange) => {
                    e.rebind(id, Arc::clone(&sub.queue), spec)
                }
                Some((e, id)) => {
                    e.unbind(id);
                    r.exchange.bind(Arc::clone(&sub.queue), spec)
                }
                None => r.exchange.bind(Arc::clone(&sub.queue), spec),
            };
            match rebound {
                Ok(id) => sub.binding = Some((Arc::clone(&r.exchange), id)),
                Err(e) => return Err((ErrorCondition::InvalidField, e.to_string())),
            }
            sub.source = named.source.clone();
            sub.container = Arc::clone(&r.container);
            sub.shared = named.shared;
            if sub.durable {
                self.store_subscription(
                    &sub.queue,
                    &named.id,
                    &r.container,
                    &named.source,
                    named.shared,
                );
            }
            return Ok(Arc::clone(&sub.queue));
        }
        let q = self
            .create_subscription_queue(&named.id, named.durable)
            .map_err(|e| (e.condition(), e.to_string()))?;
        let id = match r.exchange.bind(Arc::clone(&q), spec) {
            Ok(id) => id,
            Err(e) => {
                self.delete(q.name());
                return Err((ErrorCondition::InvalidField, e.to_string()));
            }
        };
        if named.durable {
            self.store_subscription(&q, &named.id, &r.container, &named.source, named.shared);
        }
        tracing::debug!(
            subscription = named.id.as_str(),
            durable = named.durable,
            shared = named.shared,
            "subscription created"
        );
        subs.insert(
            named.id.clone(),
            Subscription {
                queue: Arc::clone(&q),
                binding: Some((Arc::clone(&r.exchange), id)),
                durable: named.durable,
                shared: named.shared,
                source: named.source.clone(),
                container: Arc::clone(&r.container),
            },
        );
        Ok(q)
    }

    /// The source a named subscription was last attached with, for a receiver re-attaching
    /// without one (how JMS clients look a durable subscription up to unsubscribe).
    pub fn subscription_source(&self, id: &SubscriptionId) -> Option<Source> {
        self.subscription_table().get(id).map(|s| s.source.clone())
    }

    /// A receiver of subscription `id` went away; `closed`: it closed its link. A durable
    /// subscription ends when a receiver closes it and none is left; a volatile shared one
    /// when none is left.
    pub fn receiver_gone(&self, id: &SubscriptionId, closed: bool) {
        let mut subs = self.subscription_table();
        let Some(sub) = subs.get(id) else {
            return;
        };
        if sub.queue.stats().consumers > 0 || (sub.durable && !closed) {
            return;
        }
        if let Some(sub) = subs.remove(id) {
            drop(subs);
            self.end_subscription(id, sub);
        }
    }

    fn end_subscription(&self, id: &SubscriptionId, sub: Subscription) {
        if let Some((e, binding)) = &sub.binding {
            e.unbind(*binding);
        }
        if let Some(d) = sub.queue.durability() {
            d.journal.submit(vec![Op::DeleteObject {
                kind: OBJECT_SUBSCRIPTION,
                id: d.id,
            }]);
        }
        self.delete(sub.queue.name());
        tracing::debug!(subscription = id.as_str(), "subscription ended");
    }

    /// Number of named subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.subscription_table().len()
    }

    fn store_subscription(
        &self,
        q: &Queue,
        id: &SubscriptionId,
        container: &str,
        source: &Source,
        shared: bool,
    ) {
        if let Some(d) = q.durability() {
            d.journal.submit(vec![Op::DeclareObject {
                kind: OBJECT_SUBSCRIPTION,
                id: d.id,
                name: id.as_str().to_string(),
                props: encode_object(container, source, shared),
            }]);
        }
    }

    fn create_subscription_queue(
        &self,
        id: &SubscriptionId,
        durable: bool,
    ) -> Result<Arc<Queue>, ResolveError> {
        let mut queues = self.registry();
        if let Some(stale) = queues.get(id.as_str()) {
            // Left over from a subscription whose binding was lost: start it afresh.
            let stale = Arc::clone(stale);
            drop(queues);
            self.delete(stale.name());
            queues = self.registry();
        }
        if queues.len() >= self.cfg.max_queues {
            return Err(ResolveError::TooManyQueues(self.cfg.max_queues));
        }
        Ok(self.create_queue(
            &mut queues,
            id.as_str(),
            QueueKind::Subscription,
            durable,
            PROPS_SUB,
        ))
    }

    /// Brings durable subscriptions back after a restart: each recovered subscription queue
    /// (already in the registry) is bound again as its stored source says. A queue without its
    /// binding record, or a record without its queue, is removed.
    pub(super) fn restore_subscriptions(
        &self,
        queues: HashMap<u32, Arc<Queue>>,
        objects: Vec<RecoveredObject>,
    ) {
        let mut queues = queues;
        for o in objects {
            if o.kind != OBJECT_SUBSCRIPTION {
                continue;
            }
            let Some(q) = queues.remove(&o.id) else {
                if let Some(j) = &self.journal {
                    j.submit(vec![Op::DeleteObject {
                        kind: o.kind,
                        id: o.id,
                    }]);
                }
                continue;
            };
            let Some((container, source, shared)) = decode_object(&o.props) else {
                tracing::error!(subscription = %o.name, "a stored subscription does not decode; it is removed");
                self.forget_queue(&q);
                continue;
            };
            let id = SubscriptionId(o.name.clone());
            let binding = self.rebind_restored(&q, &source, &container, &id);
            tracing::info!(subscription = %o.name, bound = binding.is_some(), "durable subscription recovered");
            self.subscription_table().insert(
                id,
                Subscription {
                    queue: q,
                    binding,
                    durable: true,
                    shared,
                    source,
                    container: Arc::from(container),
                },
            );
        }
        for q in queues.into_values() {
            self.forget_queue(&q);
        }
    }

    fn forget_queue(&self, q: &Arc<Queue>) {
        if let (Some(d), Some(j)) = (q.durability(), &self.journal) {
            j.submit(vec![Op::DeleteObject {
                kind: OBJECT_SUBSCRIPTION,
                id: d.id,
            }]);
        }
        self.delete(q.name());
    }

    fn rebind_restored(
        &self,
        q: &Arc<Queue>,
        source: &Source,
        container: &str,
        id: &SubscriptionId,
    ) -> Option<(Arc<Exchange>, u64)> {
        let node = self.resolve_link(
            source.address.as_deref(),
            Direction::Consume,
            &source.capabilities,
        );
        let (exchange, key) = match node {
            Ok(LinkNode::Exchange(e, key)) => (e, key),
            other => {
                tracing::warn!(subscription = id.as_str(), address = ?source.address.as_deref(), resolved = ?other.map(|_| ()), "a durable subscription's exchange is gone; its queue is kept unbound");
                return None;
            }
        };
        let ty = exchange.spec().ty;
        let filters = match filter::parse(source.filter.as_ref(), On::Exchange(ty)) {
            Ok(f) => f,
            Err(why) => {
                tracing::warn!(
                    subscription = id.as_str(),
                    why,
                    "a durable subscription's filters no longer apply"
                );
                filter::Requested::default()
            }
        };
        let request = SubscribeRequest {
            exchange: Arc::clone(&exchange),
            key: key.clone(),
            filters,
            container: Arc::from(container),
            named: None,
        };
        let spec = bind_spec(ty, key.as_deref(), &request);
        match exchange.bind(Arc::clone(q), spec) {
            Ok(b) => Some((exchange, b)),
            Err(e) => {
                tracing::warn!(subscription = id.as_str(), error = %e, "a durable subscription could not be bound again");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_do_not_collide() {
        let a = SubscriptionId::new("c/1", "n", false);
        let b = SubscriptionId::new("c", "1/n", false);
        assert_ne!(a, b);
        let g = SubscriptionId::new("$global", "n", false);
        assert_ne!(g, SubscriptionId::new("anything", "n", true));
        assert_eq!(
            SubscriptionId::new("x", "n", true),
            SubscriptionId::new("y", "n", true)
        );
        assert!(a.as_str().starts_with(SUBSCRIPTION_PREFIX));
    }

    #[test]
    fn an_overlong_identity_is_refused() {
        use crate::broker::address::{ExchangeSpec, ExchangeType, Unroutable};
        let broker = Broker::new(crate::broker::BrokerConfig::default());
        let exchange = Arc::new(Exchange::new(
            "x".into(),
            ExchangeSpec {
                ty: ExchangeType::Fanout,
                unroutable: Unroutable::Release,
            },
        ));
        let request = |name: &str| SubscribeRequest {
            exchange: Arc::clone(&exchange),
            key: None,
            filters: filter::Requested::default(),
            container: Arc::from("c"),
            named: Some(Named {
                id: SubscriptionId::of("c", name, false, false, true),
                durable: true,
                shared: false,
                source: Source::default(),
            }),
        };
        let long = "n".repeat(MAX_SUBSCRIPTION_ID);
        let refused = broker.subscribe(request(&long));
        assert_eq!(
            refused.err().map(|e| e.0),
            Some(ErrorCondition::InvalidField)
        );
        assert_eq!(broker.subscription_count(), 0);
        assert!(broker.subscribe(request("short")).is_ok());
    }

    #[test]
    fn jms_link_names_of_shared_receivers_name_one_subscription() {
        let first = SubscriptionId::of("c", "sub", true, false, true);
        assert_eq!(first, SubscriptionId::of("c", "sub|2", true, false, true));
        let global = SubscriptionId::of("x", "sub|global", true, true, true);
        assert_eq!(
            global,
            SubscriptionId::of("y", "sub|global2", true, true, true)
        );
        assert_eq!(global, SubscriptionId::lookup("z", "sub|global"));
        assert_eq!(first, SubscriptionId::lookup("c", "sub"));
        // Volatile and durable shared subscriptions of one name are distinct.
        let volatile = SubscriptionId::of("c", "sub|volatile1", true, false, false);
        assert_eq!(
            volatile,
            SubscriptionId::of("c", "sub|volatile2", true, false, false)
        );
        assert_ne!(volatile, first);
        // Not shared: the whole link name.
        assert_ne!(
            SubscriptionId::of("c", "a|b", false, false, true),
            SubscriptionId::of("c", "a", false, false, true)
        );
    }

    #[test]
    fn stored_subscriptions_decode_to_what_was_stored() {
        let source = Source {
            address: Some("/exchanges/x/a.*".into()),
            durable: ferry_codec::messaging::TerminusDurability::UnsettledState,
            ..Source::default()
        };
        let bytes = encode_object("c-1", &source, true);
        let (container, back, shared) = decode_object(&bytes).unwrap();
        assert_eq!(container, "c-1");
        assert_eq!(back, source);
        assert!(shared);
        assert!(decode_object(&bytes[..bytes.len() - 1]).is_none());
        assert!(decode_object(b"").is_none());
    }
}
