//! One connection's links as the broker sees them: producers feeding queues and consumers
//! served by queues, plus the deliveries in flight between them.

use crate::idhash::{IdMap, IdSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ferry_codec::definitions::SequenceNo;
use ferry_codec::messaging::Message;

use ferry_codec::definitions::{Error, ErrorCondition, Role, SenderSettleMode};
use ferry_codec::delivery_state::{Accepted, DeliveryState, Rejected, Released};
use ferry_codec::messaging::{LifetimePolicy, Target, TargetKind, node_properties};
use ferry_codec::performatives::Attach;
use ferry_codec::types::{Str, Value};
use tokio::sync::mpsc;

use crate::broker::address::{self, Direction, Parsed, Unroutable};
use crate::broker::exchange::{Exchange, Routed as Route};
use crate::broker::filter::{self, On};
use crate::broker::subscription::{self, Named, SubscribeRequest, SubscriptionId};
use crate::broker::{
    Broker, ConsumerId, Delivery, Lifetime, LinkNode, Outbound, Queue, Settlement,
};
use crate::proto::{AttachReply, Connection, ConnectionConfig, Event, IncomingDelivery, LinkId};
use crate::store::Op;

/// A link where the peer sends and we enqueue.
#[derive(Debug)]
struct Producer {
    /// The queue it feeds; `None` with no exchange: the anonymous relay, routed by `to`.
    queue: Option<Arc<Queue>>,
    /// The exchange it publishes to, with the address's routing key (else `subject`).
    exchange: Option<(Arc<Exchange>, Option<String>)>,
    /// Running average message size, to turn the byte cap into a credit; `None` until the
    /// first message, when credit stays at `INITIAL_CREDIT`.
    avg_size: Option<usize>,
    /// Whether this link created its (dynamic) queue.
    creator: bool,
}

/// A link where a queue sends and the peer receives.
#[derive(Debug)]
struct Consumer {
    queue: Arc<Queue>,
    creator: bool,
    /// The named subscription it receives from, told when the link goes.
    subscription: Option<SubscriptionId>,
    /// A drain in progress: (the peer's credit when the queue was asked, the capped credit
    /// the queue was given, the round number). The queue only sees up to the per-link cap,
    /// so running out of that is not the end of a drain while the peer's credit and
    /// messages remain.
    drain_round: Option<(u32, u32, u64)>,
}

/// A delivery held until the end of the loop turn, because it (or one before it in the turn)
/// goes to the store: the store must see a message's enqueue before any consumer can settle
/// it, so the turn's enqueue records are submitted first and the messages enqueued after.
#[derive(Debug)]
struct Staged {
    queue: Arc<Queue>,
    message: Message,
    /// Already copied out of the read buffers (shared by the queues it was routed to).
    copied: bool,
    /// The store's id for it, if it is stored.
    stored: Option<u64>,
    link: LinkId,
    delivery_id: SequenceNo,
    settled: bool,
    /// This entry settles the delivery with the producer (a message routed to several
    /// queues is staged once per queue and answered once).
    answers: bool,
}

/// Where a message goes: its queues (none: unroutable), and what an unroutable one hears.
type Targets = (Route, Unroutable);

/// Deliveries the store answered for together, and its answer.
type Answer = (Vec<(LinkId, SequenceNo)>, Result<(), String>);

/// Outcomes the store's writer thread reports back to the connection: the deliveries whose
/// records it made durable (or failed to). The writer pushes and wakes the task; the task
/// settles them with the producer.
#[derive(Debug, Default)]
pub(super) struct StoredAcks {
    done: Mutex<Vec<Answer>>,
    pub(super) wake: tokio::sync::Notify,
}

impl StoredAcks {
    fn push(&self, deliveries: Vec<(LinkId, SequenceNo)>, result: Result<(), String>) {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((deliveries, result));
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<Answer> {
        std::mem::take(&mut *self.done.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The links of one connection.
#[derive(Debug)]
pub(super) struct Links {
    conn_id: u64,
    broker: Arc<Broker>,
    tx: mpsc::Sender<Outbound>,
    producers: IdMap<LinkId, Producer>,
    consumers: IdMap<LinkId, Consumer>,
    /// Our unsettled deliveries: (link, delivery-id) to the queue entry.
    inflight: IdMap<(LinkId, u32), (Arc<Queue>, u64)>,
    /// Consumers whose queue-side credit must be brought back in line with the engine's.
    touched: IdSet<LinkId>,
    /// Producers waiting for room before they get more credit.
    starved: IdSet<LinkId>,
    max_message_size: u64,
    /// This turn's deliveries waiting for their store records to be submitted.
    staged: Vec<Staged>,
    /// Where the store reports durable writes.
    pub(super) acks: Arc<StoredAcks>,
    /// Drain requests numbered so far.
    drain_rounds: u64,
    /// The peer's container-id (from its open): the identity of its subscriptions, and the
    /// origin no-local filters compare.
    container: Arc<str>,
}

/// Credit granted to a new producer link before its message size is known.
const INITIAL_CREDIT: u32 = 16;

/// Credit a producer is topped up to, and the level below which it is topped up.
fn refill_threshold(cap: u32) -> u32 {
    cap / 2
}

impl Links {
    pub(super) fn new(
        conn_id: u64,
        broker: Arc<Broker>,
        tx: mpsc::Sender<Outbound>,
        cfg: &ConnectionConfig,
    ) -> Self {
        Self {
            conn_id,
            broker,
            tx,
            producers: IdMap::default(),
            consumers: IdMap::default(),
            inflight: IdMap::default(),
            touched: IdSet::default(),
            starved: IdSet::default(),
            max_message_size: cfg.max_message_size,
            staged: Vec::new(),
            acks: Arc::new(StoredAcks::default()),
            drain_rounds: 0,
            container: Arc::from(""),
        }
    }

    fn consumer_id(&self, link: LinkId) -> ConsumerId {
        ConsumerId {
            connection: self.conn_id,
            link,
        }
    }

    pub(super) fn on_event(&mut self, engine: &mut Connection, event: Event) {
        match event {
            Event::AttachRequested { link, attach } => self.on_attach(engine, link, *attach),
            Event::Credit {
                link,
                credit,
                drain,
            } => {
                let id = self.consumer_id(link);
                let cap = self.broker.config().link_credit.max(1);
                if let Some(c) = self.consumers.get_mut(&link) {
                    // §2.6.7 available: what the queue holds, reported in our flows.
                    let ready = c.queue.stats().ready;
                    engine.set_available(link, u32::try_from(ready).unwrap_or(u32::MAX));
                    let round = drain.then(|| {
                        self.drain_rounds += 1;
                        self.drain_rounds
                    });
                    c.drain_round = round.map(|r| (credit, credit.min(cap), r));
                    c.queue.set_credit(id, credit.min(cap), round);
                }
            }
            Event::Delivery(d) => self.on_delivery(engine, *d),
            Event::Disposition {
                link,
                delivery_id,
                state,
                settled,
            } => {
                let terminal = state.as_ref().is_none_or(DeliveryState::is_outcome);
                if !(settled || terminal && state.is_some()) {
                    return;
                }
                if let Some((queue, entry)) = self.inflight.remove(&(link, delivery_id.0)) {
                    queue.settle(entry, settlement(state.as_ref()), Instant::now());
                    self.broker.check_lifetime(&queue, false);
                    self.touched.insert(link);
                }
            }
            Event::Detached { link, closed, .. } => self.on_detached(link, closed),
            Event::Opened(open) => self.container = Arc::from(open.container_id.as_str()),
            Event::SenderState { .. }
            | Event::SessionBegun(_)
            | Event::SessionEnded { .. }
            | Event::Attached { .. }
            | Event::SaslInit { .. }
            | Event::SaslOutcome { .. }
            | Event::Closed { .. } => {}
        }
    }

    fn refuse(engine: &mut Connection, link: LinkId, condition: ErrorCondition, why: String) {
        tracing::debug!(%condition, why, "attach refused");
        let _ = engine.refuse_attach(link, Error::new(condition, why));
    }

    fn on_attach(&mut self, engine: &mut Connection, link: LinkId, attach: Attach) {
        match attach.role {
            // The peer sends: we receive into a queue.
            Role::Sender => {
                let target = match &attach.target {
                    Some(TargetKind::Coordinator(_)) => {
                        return Self::refuse(
                            engine,
                            link,
                            ErrorCondition::NotImplemented,
                            "transactions are not supported yet".into(),
                        );
                    }
                    Some(TargetKind::Target(t)) => Some(t.clone()),
                    None => None,
                };
                let mut exchange = None;
                let (queue, creator, reply_target) = match target {
                    Some(t) if t.dynamic => match self
                        .broker
                        .create_dynamic(lifetime_of(t.dynamic_node_properties.as_ref()))
                    {
                        Ok(q) => {
                            let mut echo = t.clone();
                            echo.address = Some(Str::from(q.name()));
                            (Some(q), true, Some(echo))
                        }
                        Err(e) => return Self::refuse(engine, link, e.condition(), e.to_string()),
                    },
                    Some(Target {
                        address: Some(ref address),
                        ref capabilities,
                        ..
                    }) => match self.broker.resolve_link(
                        Some(address),
                        Direction::Publish,
                        capabilities,
                    ) {
                        Ok(LinkNode::Queue(q)) => (Some(q), false, target.clone()),
                        Ok(LinkNode::Exchange(ex, key)) => {
                            exchange = Some((ex, key));
                            (None, false, target.clone())
                        }
                        Ok(LinkNode::Anonymous) => (None, false, target.clone()),
                        Err((condition, why)) => return Self::refuse(engine, link, condition, why),
                    },
                    // A null target or null address: the anonymous relay, routing on `to`.
                    other => (None, false, other.or_else(|| Some(Target::default()))),
                };
                if let Some(q) = &queue {
                    q.add_producer(self.consumer_id(link), self.tx.clone());
                }
                let max = queue
                    .as_ref()
                    .map(|q| q.limits().max_message_size)
                    .filter(|m| *m > 0)
                    .map_or(self.max_message_size, |m| m.min(self.max_message_size));
                let reply = AttachReply {
                    source: attach.source.clone(),
                    target: reply_target.map(TargetKind::Target),
                    max_message_size: Some(max),
                    ..Default::default()
                };
                if engine.accept_attach(link, reply).is_ok() {
                    self.producers.insert(
                        link,
                        Producer {
                            queue,
                            exchange,
                            avg_size: None,
                            creator,
                        },
                    );
                    self.refill(engine, link);
                }
            }
            // The peer receives: a queue sends to it.
            Role::Receiver => self.attach_receiver(engine, link, attach),
        }
    }

    /// A receiver's attach: its source names a queue (consumed, or browsed with
    /// distribution-mode copy), an exchange (a subscription queue of its own, named when
    /// durable or shared), or asks for a dynamic node.
    fn attach_receiver(&mut self, engine: &mut Connection, link: LinkId, attach: Attach) {
        let source = match attach.source.clone() {
            Some(source) => source,
            // No source: a receiver looking up its named subscription (as JMS clients do
            // to unsubscribe) gets it back as it was attached; otherwise refused.
            None => {
                let found = self.broker.subscription_source(&SubscriptionId::lookup(
                    &self.container,
                    attach.name.as_str(),
                ));
                match found {
                    Some(source) => source,
                    None => {
                        return Self::refuse(
                            engine,
                            link,
                            ErrorCondition::NotFound,
                            "a receiver needs a source".into(),
                        );
                    }
                }
            }
        };
        // A selector that does not parse refuses the link before any node is made. These are
        // the filters a queue applies; an exchange's are read again for its type.
        let queue_filters = match filter::parse(source.filter.as_ref(), On::Queue) {
            Ok(f) => f,
            Err(why) => return Self::refuse(engine, link, ErrorCondition::InvalidField, why),
        };
        let mut subscription = None;
        let (queue, creator, mut echo, filters) = if source.dynamic {
            match self
                .broker
                .create_dynamic(lifetime_of(source.dynamic_node_properties.as_ref()))
            {
                Ok(q) => {
                    let mut echo = source.clone();
                    echo.address = Some(Str::from(q.name()));
                    (q, true, echo, queue_filters)
                }
                Err(e) => return Self::refuse(engine, link, e.condition(), e.to_string()),
            }
        } else {
            let Some(address) = source.address.as_deref() else {
                return Self::refuse(
                    engine,
                    link,
                    ErrorCondition::NotFound,
                    "a receiver needs a source address".into(),
                );
            };
            match self
                .broker
                .resolve_link(Some(address), Direction::Consume, &source.capabilities)
            {
                Ok(LinkNode::Queue(q)) => (q, false, source.clone(), queue_filters),
                // A receiver on an exchange gets a subscription queue; its filters apply at
                // routing.
                Ok(LinkNode::Exchange(ex, key)) => {
                    let filters =
                        match filter::parse(source.filter.as_ref(), On::Exchange(ex.spec().ty)) {
                            Ok(f) => f,
                            Err(why) => {
                                return Self::refuse(
                                    engine,
                                    link,
                                    ErrorCondition::InvalidField,
                                    why,
                                );
                            }
                        };
                    let (shared, global) = subscription::sharing(&source.capabilities);
                    let durable =
                        source.durable != ferry_codec::messaging::TerminusDurability::None;
                    let named = (durable || shared).then(|| Named {
                        id: SubscriptionId::of(
                            &self.container,
                            attach.name.as_str(),
                            shared,
                            global,
                            durable,
                        ),
                        durable,
                        shared,
                        source: source.clone(),
                    });
                    subscription = named.as_ref().map(|n| n.id.clone());
                    let request = SubscribeRequest {
                        exchange: ex,
                        key,
                        filters: filters.clone(),
                        container: Arc::clone(&self.container),
                        named,
                    };
                    match self.broker.subscribe(request) {
                        // The selector was applied at routing: the consumer takes everything
                        // its queue holds (a re-attached subscription's earlier messages
                        // included).
                        Ok(q) => (
                            q,
                            subscription.is_none(),
                            source.clone(),
                            filter::Requested {
                                selector: None,
                                ..filters
                            },
                        ),
                        Err((condition, why)) => {
                            return Self::refuse(engine, link, condition, why);
                        }
                    }
                }
                Ok(LinkNode::Anonymous) => {
                    return Self::refuse(
                        engine,
                        link,
                        ErrorCondition::InvalidField,
                        "a receiver needs a source address".into(),
                    );
                }
                Err((condition, why)) => return Self::refuse(engine, link, condition, why),
            }
        };
        // §3.5.7 distribution-mode copy: a browser, reading without consuming.
        let browse = source
            .distribution_mode
            .as_ref()
            .is_some_and(|m| m.as_str() == ferry_codec::messaging::distribution_mode::COPY);
        // §3.5.3: the reply carries the filters applied, and leaves out the others.
        echo.filter = (!filters.applied.0.is_empty()).then(|| filters.applied.clone());
        let reply = AttachReply {
            source: Some(echo),
            target: attach.target.clone(),
            max_message_size: Some(self.max_message_size),
            ..Default::default()
        };
        if engine.accept_attach(link, reply).is_ok() {
            let presettled = attach.snd_settle_mode == SenderSettleMode::Settled;
            queue.add_consumer(
                self.consumer_id(link),
                self.tx.clone(),
                presettled,
                attach.max_message_size.filter(|m| *m > 0),
                filters.selector,
                browse,
            );
            self.consumers.insert(
                link,
                Consumer {
                    queue,
                    creator,
                    subscription,
                    drain_round: None,
                },
            );
        } else if let Some(id) = subscription {
            self.broker.receiver_gone(&id, false);
        } else {
            self.broker.check_lifetime(&queue, creator);
        }
    }

    /// Tops a producer's credit up to the cap, within the room its queue has.
    fn refill(&mut self, engine: &mut Connection, link: LinkId) {
        let Some(p) = self.producers.get(&link) else {
            return;
        };
        let cfg = self.broker.config();
        // Until the first message shows how big they are, assume the byte cap is shared by
        // `INITIAL_CREDIT` messages: a conservative start that never overshoots the budget.
        let avg = p
            .avg_size
            .unwrap_or(cfg.link_credit_bytes / INITIAL_CREDIT as usize)
            .max(1);
        let by_bytes = u32::try_from(cfg.link_credit_bytes / avg).unwrap_or(u32::MAX);
        let cap = match p.avg_size {
            Some(_) => cfg.link_credit.min(by_bytes),
            None => cfg.link_credit.min(INITIAL_CREDIT),
        }
        .max(1);
        let current = engine.credit(link).unwrap_or(0);
        if current > refill_threshold(cap) {
            return;
        }
        let room = match &p.queue {
            Some(q) => q.room(avg),
            None => self.broker.memory().available() / avg,
        };
        let grant = u32::try_from(room).unwrap_or(u32::MAX).min(cap);
        if grant == 0 {
            self.starved.insert(link);
            return;
        }
        self.starved.remove(&link);
        if grant > current {
            let _ = engine.grant_credit(link, grant, false);
        }
    }

    /// The queues a producer's message goes to: its queue, the queues its exchange routes it
    /// to (an empty list: unroutable, with the exchange's outcome), or for the anonymous
    /// relay what its `to` names (never created).
    fn targets(
        &self,
        p: &Producer,
        message: &Message,
    ) -> Result<Targets, (ErrorCondition, String)> {
        let route = |ex: &Arc<Exchange>, key: Option<&str>| {
            let props = match key {
                Some(_) => None,
                None => message.properties().ok().flatten(),
            };
            let key = key
                .or_else(|| props.as_ref().and_then(|p| p.subject))
                .unwrap_or("");
            (
                ex.route(message, key, Some(&self.container)),
                ex.unroutable(),
            )
        };
        if let Some(q) = &p.queue {
            return Ok((Route::One(Arc::clone(q)), Unroutable::Release));
        }
        if let Some((ex, key)) = &p.exchange {
            return Ok(route(ex, key.as_deref()));
        }
        // Anonymous relay: the message's `to` names the node.
        let to = message
            .properties()
            .ok()
            .flatten()
            .and_then(|p| p.to.map(str::to_string))
            .ok_or_else(|| {
                (
                    ErrorCondition::NotFound,
                    "message has no `to` address".to_string(),
                )
            })?;
        match address::parse(&to) {
            Ok(Parsed::Exchange { name, key }) => match self.broker.exchange(&name) {
                Some(ex) => Ok(route(&ex, key.as_deref())),
                None => Err((ErrorCondition::NotFound, format!("no exchange {name:?}"))),
            },
            Ok(Parsed::Queue(name)) => self
                .broker
                .resolve(&name, false)
                .map(|q| (Route::One(q), Unroutable::Release))
                .map_err(|e| (e.condition(), e.to_string())),
            Ok(Parsed::Bare(name)) => match self.broker.get(name) {
                Some(q) => Ok((Route::One(q), Unroutable::Release)),
                None => match self.broker.exchange(name) {
                    Some(ex) => Ok(route(&ex, None)),
                    None => Err((
                        ErrorCondition::NotFound,
                        format!("no node at address {name:?}"),
                    )),
                },
            },
            Ok(Parsed::Anonymous) => Err((ErrorCondition::NotFound, "empty `to` address".into())),
            Err(e) => Err((e.condition(), e.to_string())),
        }
    }

    fn on_delivery(&mut self, engine: &mut Connection, d: IncomingDelivery) {
        let link = d.link;
        let Some(p) = self.producers.get_mut(&link) else {
            return;
        };
        let size = d.message.len();
        p.avg_size = Some(p.avg_size.map_or(size, |avg| (avg * 7 + size) / 8));
        let Some(p) = self.producers.get(&link) else {
            return;
        };
        let settle = |engine: &mut Connection, state: DeliveryState| {
            if !d.settled {
                let _ = engine.settle_incoming(link, d.delivery_id, state);
            }
        };
        let reject = |condition: ErrorCondition, why: String| {
            DeliveryState::Rejected(Rejected {
                error: Some(Error::new(condition, why)),
            })
        };
        let (route, unroutable) = match self.targets(p, &d.message) {
            Ok(t) => t,
            Err((condition, why)) => {
                settle(engine, reject(condition, why));
                self.refill(engine, link);
                return;
            }
        };
        let queues = route.as_slice();
        if queues.is_empty() {
            // Nothing took it: the exchange says what the publisher hears.
            let state = match unroutable {
                Unroutable::Release => DeliveryState::Released(Released {}),
                Unroutable::Accept => DeliveryState::Accepted(Accepted {}),
            };
            settle(engine, state);
            self.refill(engine, link);
            return;
        }
        let durable = d.message.header().is_ok_and(|h| h.durable);
        // With the disk full a durable message for a durable queue is refused: the producer
        // got its credit before the disk filled.
        if durable
            && queues
                .iter()
                .any(|q| q.durability().is_some_and(|x| x.journal.disk_full()))
        {
            settle(
                engine,
                reject(
                    ErrorCondition::ResourceLimitExceeded,
                    "the broker's disk is full".into(),
                ),
            );
            self.refill(engine, link);
            return;
        }
        let stores = durable && queues.iter().any(|q| q.durability().is_some());
        // Queues copy a message out of the read buffers it arrived in; one routed to several
        // is copied once here and shared by all of them.
        let shared = queues.len() > 1;
        let message = if shared {
            d.message.compacted(usize::MAX)
        } else {
            d.message
        };
        if stores || !self.staged.is_empty() {
            // Through the store (or behind something that is, to keep the order): staged
            // until the end of the turn. One entry answers the producer: a stored one if
            // any, so `accepted` waits for the disk.
            let answering = queues
                .iter()
                .position(|q| durable && q.durability().is_some())
                .unwrap_or(queues.len() - 1);
            for (i, q) in queues.iter().enumerate() {
                let stored = match q.durability() {
                    Some(x) if durable && q.check_size(size).is_ok() => {
                        Some(x.journal.next_message_id())
                    }
                    _ => None,
                };
                self.staged.push(Staged {
                    queue: Arc::clone(q),
                    message: message.clone(),
                    copied: shared,
                    stored,
                    link,
                    delivery_id: d.delivery_id,
                    settled: d.settled,
                    answers: i == answering,
                });
            }
            self.refill(engine, link);
            return;
        }
        // In memory only: accepted once every queue took it.
        let mut outcome = Ok(());
        if shared {
            for q in queues {
                if let Err(c) = q.enqueue_copied(message.clone(), None) {
                    outcome = Err((c.clone(), format!("not stored: {c}")));
                }
            }
        } else if let Some(q) = queues.first()
            && let Err(c) = q.enqueue(message)
        {
            outcome = Err((c.clone(), format!("not stored: {c}")));
        }
        let state = match outcome {
            Ok(()) => DeliveryState::Accepted(Accepted {}),
            Err((condition, why)) => reject(condition, why),
        };
        settle(engine, state);
        self.refill(engine, link);
    }

    /// A link went away; `closed`: the peer closed it (a durable subscription then ends).
    fn on_detached(&mut self, link: LinkId, closed: bool) {
        let now = Instant::now();
        if let Some(p) = self.producers.remove(&link) {
            self.starved.remove(&link);
            if let Some(q) = p.queue {
                q.remove_producer(self.consumer_id(link), now);
                self.broker.check_lifetime(&q, p.creator);
            }
        }
        if let Some(c) = self.consumers.remove(&link) {
            self.inflight.retain(|(l, _), _| *l != link);
            self.touched.remove(&link);
            c.queue.remove_consumer(self.consumer_id(link), now);
            self.broker.check_lifetime(&c.queue, c.creator);
            if let Some(id) = &c.subscription {
                self.broker.receiver_gone(id, closed);
            }
        }
    }

    pub(super) fn on_outbound(&mut self, engine: &mut Connection, out: Outbound) {
        match out {
            Outbound::Deliver(d) => {
                let Delivery {
                    link,
                    queue,
                    entry,
                    message,
                    settled,
                    copy,
                } = *d;
                if !self.consumers.contains_key(&link) {
                    // Detached meanwhile: the queue already took its unsettled messages back.
                    if settled && !copy {
                        queue.give_back(entry, message, None);
                    }
                    return;
                }
                match engine.send(link, &message, settled, None) {
                    Ok(id) => {
                        if !settled {
                            self.inflight.insert((link, id.0), (queue, entry));
                        }
                    }
                    Err(_) => {
                        let credit = engine.credit(link).unwrap_or(0);
                        if copy {
                            // The message is still queued; the browser sees it next time.
                            queue.rewind(self.consumer_id(link), entry, credit);
                        } else if settled {
                            queue.give_back(entry, message, Some((self.consumer_id(link), credit)));
                        } else {
                            queue.undeliverable(entry, self.consumer_id(link), credit);
                        }
                    }
                }
                self.touched.insert(link);
            }
            Outbound::Drained { link, round } => {
                // §2.6.7: a drain sends everything available first. If the queue used up the
                // capped credit it was given (rather than running out of messages) and the
                // peer's credit is not used up, go another round before answering.
                let id = self.consumer_id(link);
                let cap = self.broker.config().link_credit.max(1);
                let credit = engine.credit(link).unwrap_or(0);
                let Some(c) = self.consumers.get_mut(&link) else {
                    return;
                };
                // An answer to a drain the peer has since replaced or cancelled (a later flow
                // without drain) is stale: answering it would use up credit given since.
                let Some((granted, offered, r)) = c.drain_round else {
                    return;
                };
                if r != round {
                    return;
                }
                c.drain_round = None;
                if credit > 0 && granted.saturating_sub(credit) >= offered {
                    self.drain_rounds += 1;
                    let next = self.drain_rounds;
                    c.drain_round = Some((credit, credit.min(cap), next));
                    c.queue.set_credit(id, credit.min(cap), Some(next));
                    return;
                }
                let _ = engine.drained(link);
            }
            Outbound::LockExpired { link, entry } => {
                // §3.4: we settle the delivery ourselves (released); whatever the consumer
                // says about it later finds nothing and is ignored.
                let found = self
                    .inflight
                    .iter()
                    .find(|((l, _), (_, e))| *l == link && *e == entry)
                    .map(|(k, _)| *k);
                if let Some(key) = found {
                    self.inflight.remove(&key);
                    let _ = engine.settle_outgoing(
                        link,
                        SequenceNo(key.1),
                        Some(DeliveryState::Released(Released {})),
                    );
                }
            }
            Outbound::Detach { link, error } => {
                let _ = engine.detach(link, true, Some(*error));
                self.on_detached(link, true);
            }
        }
    }

    /// Submits this turn's store records, then enqueues the staged messages in order. A
    /// stored message's producer hears `accepted` only when the store says it is durable
    /// ([`Links::apply_acks`]); the others are settled now.
    fn flush_staged(&mut self, engine: &mut Connection) {
        if self.staged.is_empty() {
            return;
        }
        let staged = std::mem::take(&mut self.staged);
        let mut waiting = Vec::new();
        let mut journal = None;
        // Queues that paged messages out this turn: told when the store has them.
        let mut paged: Vec<Arc<Queue>> = Vec::new();
        for s in staged {
            // The queue submits the store's enqueue record itself (under its lock).
            let result = if s.copied {
                s.queue.enqueue_copied(s.message, s.stored)
            } else {
                s.queue.enqueue_stored(s.message, s.stored)
            };
            if let (Some(_), Some(d)) = (s.stored, s.queue.durability()) {
                journal.get_or_insert_with(|| Arc::clone(&d.journal));
            }
            if result == Ok(true) && !paged.iter().any(|q| Arc::ptr_eq(q, &s.queue)) {
                paged.push(Arc::clone(&s.queue));
            }
            if s.settled {
                continue;
            }
            match result {
                Ok(_) if !s.answers => {}
                // The store will answer for it.
                Ok(_) if s.stored.is_some() => waiting.push((s.link, s.delivery_id)),
                Ok(_) => {
                    let _ = engine.settle_incoming(
                        s.link,
                        s.delivery_id,
                        DeliveryState::Accepted(Accepted {}),
                    );
                }
                Err(c) => {
                    let why = format!("not stored: {c}");
                    let _ = engine.settle_incoming(
                        s.link,
                        s.delivery_id,
                        DeliveryState::Rejected(Rejected {
                            error: Some(Error::new(c, why)),
                        }),
                    );
                }
            }
        }
        let Some(journal) = journal else {
            return;
        };
        if waiting.is_empty() && paged.is_empty() {
            return;
        }
        let acks = Arc::clone(&self.acks);
        journal.submit(vec![Op::Done(Box::new(move |result| {
            for q in paged {
                q.on_stored();
            }
            if !waiting.is_empty() {
                acks.push(waiting, result);
            }
        }))]);
    }

    /// Settles the deliveries the store has answered for: `accepted` once durable, and
    /// `rejected` if the log failed (the producer may send them again elsewhere).
    pub(super) fn apply_acks(&mut self, engine: &mut Connection) {
        for (deliveries, result) in self.acks.take() {
            let state = match &result {
                Ok(()) => DeliveryState::Accepted(Accepted {}),
                Err(why) if why == crate::store::DISK_FULL => DeliveryState::Rejected(Rejected {
                    error: Some(Error::new(
                        ErrorCondition::ResourceLimitExceeded,
                        "the broker's disk is full",
                    )),
                }),
                Err(why) => DeliveryState::Rejected(Rejected {
                    error: Some(Error::new(
                        ErrorCondition::InternalError,
                        format!("the message could not be made durable: {why}"),
                    )),
                }),
            };
            for (link, id) in deliveries {
                // A link detached meanwhile has no delivery to settle: ignored.
                let _ = engine.settle_incoming(link, id, state.clone());
            }
        }
    }

    /// End of a loop turn: queue-side credit of consumers that sent meets the engine's again,
    /// and producers starved for room get credit once room is back.
    pub(super) fn after_turn(&mut self, engine: &mut Connection) {
        self.flush_staged(engine);
        let cap = self.broker.config().link_credit.max(1);
        for link in std::mem::take(&mut self.touched) {
            if let (Some(c), Some(credit)) = (self.consumers.get(&link), engine.credit(link)) {
                c.queue
                    .set_credit(self.consumer_id(link), credit.min(cap), None);
            }
        }
        if !self.starved.is_empty() {
            let starved: Vec<LinkId> = self.starved.iter().copied().collect();
            for link in starved {
                self.refill(engine, link);
            }
        }
    }

    /// Whether this connection only produces. Such a connection stops being read while the
    /// memory budget is exhausted; one that also consumes keeps being read, because its
    /// settlements are what frees memory (credit alone holds its producers back).
    pub(super) fn only_produces(&self) -> bool {
        !self.producers.is_empty() && self.consumers.is_empty()
    }

    /// Whether some producer waits for room: the task then wakes periodically to retry, since
    /// room in a queue (unlike in the memory budget) is not signalled.
    pub(super) fn has_starved(&self) -> bool {
        !self.starved.is_empty()
    }

    /// The connection is gone: every link is released.
    pub(super) fn shutdown(&mut self, engine: &mut Connection) {
        while let Some(event) = engine.poll_event() {
            self.on_event(engine, event);
        }
        self.flush_staged(engine);
        let links: Vec<LinkId> = self
            .producers
            .keys()
            .chain(self.consumers.keys())
            .copied()
            .collect();
        for link in links {
            self.on_detached(link, false);
        }
    }
}

/// The queue-side effect of a consumer's outcome (§3.4). Settled without an outcome counts as
/// accepted, as the common brokers treat it.
fn settlement(state: Option<&DeliveryState>) -> Settlement {
    match state {
        None | Some(DeliveryState::Accepted(_)) => Settlement::Accepted,
        Some(DeliveryState::Released(_)) => Settlement::Released,
        Some(DeliveryState::Rejected(r)) => Settlement::Rejected {
            description: r
                .error
                .as_ref()
                .and_then(|e| e.description.as_ref())
                .map(|d| d.to_string()),
        },
        Some(DeliveryState::Modified(m)) => Settlement::Modified {
            delivery_failed: m.delivery_failed.unwrap_or(false),
            undeliverable_here: m.undeliverable_here.unwrap_or(false),
            annotations: m.message_annotations.clone(),
        },
        Some(_) => Settlement::Released,
    }
}

/// The lifetime policy asked for in dynamic-node-properties; delete-on-close by default.
fn lifetime_of(props: Option<&ferry_codec::definitions::Fields>) -> Lifetime {
    let Some(Value::Described(d)) = props.and_then(|p| p.get(node_properties::LIFETIME_POLICY))
    else {
        return Lifetime::DeleteOnClose;
    };
    let encoded = ferry_codec::Encode::to_bytes(&Value::Described(d.clone()));
    match ferry_codec::Decoder::decode_exact::<LifetimePolicy>(
        &encoded,
        ferry_codec::DecodeLimits::DEFAULT,
    ) {
        Ok(LifetimePolicy::DeleteOnNoLinks(_)) => Lifetime::DeleteOnNoLinks,
        Ok(LifetimePolicy::DeleteOnNoMessages(_)) => Lifetime::DeleteOnNoMessages,
        Ok(LifetimePolicy::DeleteOnNoLinksOrMessages(_)) => Lifetime::DeleteOnNoLinksOrMessages,
        _ => Lifetime::DeleteOnClose,
    }
}
