//! The broker core: the registry of queues, address resolution and node lifetimes.
//!
//! Connections (in `transport`) resolve link addresses here and then talk to the [`Queue`]s
//! directly; the registry lock is taken only on attach, detach and housekeeping, never per
//! message.

pub mod address;
pub mod exchange;
pub mod filter;
mod memory;
mod queue;
pub mod selector;
pub mod subscription;
pub mod timers;
pub mod topic;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferry_codec::definitions::ErrorCondition;

pub use memory::Memory;
pub use queue::{
    ConsumerId, DEADLETTER_DESCRIPTION, DEADLETTER_REASON, DEADLETTER_SOURCE, DELIVERY_DELAY,
    DELIVERY_TIME, Delivery, Durability, Lifetime, Outbound, Overflow, Queue, QueueKind,
    QueueLimits, QueuePolicy, QueueStats, SCHEDULED_ENQUEUE_TIME, Settlement,
};

use crate::store::{Journal, Op, Recovery};

use address::{Direction, ExchangeSpec, Plan, Rules};
use exchange::Exchange;
use ferry_codec::types::Symbol;

/// Addresses of dynamic nodes start with this; attaching to a missing one never creates it.
pub const DYNAMIC_PREFIX: &str = "$ferry.tmp.";

/// The broker's settings (mapped from the `[broker]` and `[queues]` config sections).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Create queues on attach.
    pub auto_create: bool,
    /// Most queues.
    pub max_queues: usize,
    /// Delete auto-created queues idle (no links, no messages) this long.
    pub auto_delete_after: Duration,
    /// Bytes all messages may occupy together.
    pub memory_budget: usize,
    /// Limits of queues not declared with their own.
    pub default_limits: QueueLimits,
    /// Expiry and dead-letter policy of queues not declared with their own.
    pub default_policy: QueuePolicy,
    /// Queues that exist from the start.
    pub declared: Vec<DeclaredQueue>,
    /// Whether queues created by an attach are durable (when there is a store).
    pub auto_create_durable: bool,
    /// Exchanges that exist from the start: (name, type and unroutable outcome).
    pub exchanges: Vec<(String, ExchangeSpec)>,
    /// Bindings that exist from the start: (exchange, queue, binding).
    pub bindings: Vec<(String, String, exchange::BindSpec)>,
    /// Address rules: which names mean which kind of node (the OpenStack set by default).
    pub rules: Rules,
    /// Bytes of a durable queue's stored messages kept in memory; the rest waits on disk.
    pub page_above: usize,
    /// Most credit granted to one producer link, in messages.
    pub link_credit: u32,
    /// Most credit granted to one producer link, in bytes (with the running average size).
    pub link_credit_bytes: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            auto_create: true,
            max_queues: 10_000,
            auto_delete_after: Duration::from_secs(300),
            memory_budget: 1 << 30,
            default_limits: QueueLimits {
                max_length: 0,
                max_bytes: 0,
                max_message_size: 16 << 20,
            },
            default_policy: QueuePolicy::default(),
            declared: Vec::new(),
            auto_create_durable: true,
            exchanges: Vec::new(),
            bindings: Vec::new(),
            rules: address::default_rules(),
            page_above: 64 << 20,
            link_credit: 256,
            link_credit_bytes: 1 << 20,
        }
    }
}

/// A queue declared in config.
#[derive(Debug, Clone, Default)]
pub struct DeclaredQueue {
    /// Its address.
    pub name: String,
    /// Its limits.
    pub limits: QueueLimits,
    /// Whether its durable messages are stored (when there is a store).
    pub durable: bool,
    /// Its expiry and dead-letter policy.
    pub policy: QueuePolicy,
}

/// What a queue's declaration record says besides its name (`props` in the store).
const PROPS_DECLARED: &[u8] = b"declared";
const PROPS_AUTO: &[u8] = b"auto";
/// A durable subscription's queue (its binding is a separate object record).
const PROPS_SUB: &[u8] = b"sub";

/// Why an address could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No such node, and it may not be created.
    #[error("no node at address {0:?}")]
    NotFound(String),
    /// The queue limit is reached.
    #[error("queue limit of {0} reached")]
    TooManyQueues(usize),
}

impl ResolveError {
    /// The AMQP condition for the refusal.
    pub fn condition(&self) -> ErrorCondition {
        match self {
            ResolveError::NotFound(_) => ErrorCondition::NotFound,
            ResolveError::TooManyQueues(_) => ErrorCondition::ResourceLimitExceeded,
        }
    }
}

/// The broker: shared by every connection task.
#[derive(Debug)]
pub struct Broker {
    cfg: BrokerConfig,
    memory: Arc<Memory>,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    next_connection: AtomicU64,
    next_dynamic: AtomicU64,
    /// Makes dynamic addresses unguessable across restarts.
    instance: u64,
    journal: Option<Arc<dyn Journal>>,
    exchanges: Mutex<HashMap<String, Arc<Exchange>>>,
    subscriptions: Mutex<HashMap<subscription::SubscriptionId, subscription::Subscription>>,
    /// Deadlines of locks and scheduled messages, fired by housekeeping every [`timers::TICK`].
    timers: Arc<timers::Timers>,
}

/// What a link's address resolved to.
#[derive(Debug, Clone)]
pub enum LinkNode {
    /// A queue.
    Queue(Arc<Queue>),
    /// An exchange, with the address's routing key (`None`: each message's `subject`).
    Exchange(Arc<Exchange>, Option<String>),
    /// A null target: each message is routed by its `to`.
    Anonymous,
}

/// The most exchanges at once.
pub const MAX_EXCHANGES: usize = 10_000;

impl address::Nodes for Broker {
    fn has_queue(&self, name: &str) -> bool {
        self.registry().contains_key(name)
    }
    fn exchange(&self, name: &str) -> Option<ExchangeSpec> {
        self.exchange_table().get(name).map(|e| e.spec())
    }
}

impl Broker {
    /// A broker with `cfg`, its declared queues created, and no store: every queue is
    /// transient.
    pub fn new(cfg: BrokerConfig) -> Arc<Self> {
        Self::with_store(cfg, None)
    }

    /// A broker with `cfg` over a store and what it recovered: the durable queues come back
    /// with their messages, then the declared queues not already among them are created.
    pub fn with_store(cfg: BrokerConfig, store: Option<(Arc<dyn Journal>, Recovery)>) -> Arc<Self> {
        let memory = Arc::new(Memory::new(cfg.memory_budget));
        let timers = Arc::new(timers::Timers::default());
        let mut queues = HashMap::new();
        let journal = store.as_ref().map(|(j, _)| Arc::clone(j));
        // Durable subscriptions' queues by store id, and their binding records: bound again
        // once the exchanges exist.
        let mut sub_queues = HashMap::new();
        let mut objects = Vec::new();
        if let Some((journal, recovery)) = store {
            objects = recovery.objects;
            // The store queues of priority levels (paged-out messages by level) go back to
            // the queue they belong to.
            let mut levels: HashMap<u32, Vec<(u8, u32, Vec<crate::store::RecoveredMessage>)>> =
                HashMap::new();
            let mut own = Vec::new();
            for rq in recovery.queues {
                match queue::parse_level_props(&rq.props) {
                    Some((level, parent)) => {
                        levels
                            .entry(parent)
                            .or_default()
                            .push((level, rq.id, rq.messages));
                    }
                    None => own.push(rq),
                }
            }
            for rq in own {
                let declared = cfg.declared.iter().find(|d| d.name == rq.name);
                // A queue no longer declared (or auto-created) keeps its messages, and goes
                // away like an auto-created one once idle and empty.
                let (kind, limits, policy) = match declared {
                    Some(d) => (QueueKind::Declared, d.limits, d.policy.clone()),
                    None if rq.props == PROPS_SUB => (
                        QueueKind::Subscription,
                        cfg.default_limits,
                        cfg.default_policy.clone(),
                    ),
                    None => (
                        QueueKind::AutoCreated,
                        cfg.default_limits,
                        cfg.default_policy.clone(),
                    ),
                };
                let dlq =
                    dead_letter_queue(&cfg, &memory, &timers, Some(&journal), &mut queues, &policy);
                let q = Queue::with_durability(
                    rq.name.clone(),
                    kind,
                    limits,
                    Arc::clone(&memory),
                    Some(Durability {
                        journal: Arc::clone(&journal),
                        id: rq.id,
                        page_above: cfg.page_above,
                    }),
                )
                .with_policy(policy, dlq)
                .with_timers(Arc::clone(&timers));
                tracing::info!(queue = %rq.name, messages = rq.messages.len(), "durable queue recovered");
                q.restore(rq.messages, levels.remove(&rq.id).unwrap_or_default());
                if kind == QueueKind::AutoCreated {
                    q.mark_idle_now(Instant::now());
                }
                let q = Arc::new(q);
                q.start_timers();
                if kind == QueueKind::Subscription {
                    sub_queues.insert(rq.id, Arc::clone(&q));
                }
                queues.insert(rq.name, q);
            }
            // Levels whose queue is gone (a delete interrupted by a crash): gone too.
            for id in levels.into_values().flatten().map(|(_, id, _)| id) {
                journal.submit(vec![Op::DeleteQueue { queue: id }]);
            }
        }
        for d in &cfg.declared {
            if queues.contains_key(&d.name) {
                continue;
            }
            let durability = journal
                .as_ref()
                .filter(|_| d.durable)
                .map(|j| declare(j, &d.name, PROPS_DECLARED, cfg.page_above));
            let dlq = dead_letter_queue(
                &cfg,
                &memory,
                &timers,
                journal.as_ref(),
                &mut queues,
                &d.policy,
            );
            queues.insert(
                d.name.clone(),
                Arc::new(
                    Queue::with_durability(
                        d.name.clone(),
                        QueueKind::Declared,
                        d.limits,
                        Arc::clone(&memory),
                        durability,
                    )
                    .with_policy(d.policy.clone(), dlq)
                    .with_timers(Arc::clone(&timers)),
                ),
            );
        }
        let instance = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()).rotate_left(32);
        let mut exchanges = HashMap::new();
        for (name, spec) in &cfg.exchanges {
            exchanges.insert(name.clone(), Arc::new(Exchange::new(name.clone(), *spec)));
        }
        for (ex, queue, spec) in &cfg.bindings {
            let (Some(e), Some(q)) = (exchanges.get(ex), queues.get(queue)) else {
                tracing::warn!(exchange = %ex, queue = %queue, "binding to an unknown exchange or queue ignored");
                continue;
            };
            if let Err(e) = e.bind(Arc::clone(q), spec.clone()) {
                tracing::warn!(exchange = %ex, queue = %queue, error = %e, "binding refused");
            }
        }
        let broker = Arc::new(Self {
            cfg,
            memory,
            queues: Mutex::new(queues),
            next_connection: AtomicU64::new(1),
            next_dynamic: AtomicU64::new(1),
            instance,
            journal,
            exchanges: Mutex::new(exchanges),
            subscriptions: Mutex::new(HashMap::new()),
            timers,
        });
        broker.restore_subscriptions(sub_queues, objects);
        broker
    }

    fn exchange_table(&self) -> MutexGuard<'_, HashMap<String, Arc<Exchange>>> {
        self.exchanges.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The exchange `name`, if any.
    pub fn exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        self.exchange_table().get(name).cloned()
    }

    /// Resolves a link's address (§3.5.3 source/target) to a node, following the address
    /// forms and rules of [`address`]: creating the queue or exchange when allowed.
    pub fn resolve_link(
        &self,
        address: Option<&str>,
        direction: Direction,
        capabilities: &[Symbol],
    ) -> Result<LinkNode, (ErrorCondition, String)> {
        let parsed =
            address::parse_terminus(address).map_err(|e| (e.condition(), e.to_string()))?;
        let caps: Vec<&str> = capabilities.iter().map(|s| s.as_str()).collect();
        let plan = address::plan(
            parsed,
            direction,
            address::capability(&caps),
            &self.cfg.rules,
            self,
        )
        .map_err(|e| (e.condition(), e.to_string()))?;
        match plan {
            Plan::Anonymous => Ok(LinkNode::Anonymous),
            Plan::Queue { name, create } => self
                .resolve(&name, create)
                .map(LinkNode::Queue)
                .map_err(|e| (e.condition(), e.to_string())),
            Plan::Exchange {
                name,
                spec,
                key,
                create,
            } => {
                let mut table = self.exchange_table();
                let ex = match table.get(name.as_ref()) {
                    Some(e) => Arc::clone(e),
                    None if create && table.len() < MAX_EXCHANGES => {
                        let e = Arc::new(Exchange::new(name.to_string(), spec));
                        table.insert(name.to_string(), Arc::clone(&e));
                        tracing::debug!(exchange = %name, kind = %spec.ty, "exchange created");
                        e
                    }
                    None if create => {
                        return Err((
                            ErrorCondition::ResourceLimitExceeded,
                            format!("exchange limit of {MAX_EXCHANGES} reached"),
                        ));
                    }
                    None => {
                        return Err((ErrorCondition::NotFound, format!("no exchange {name:?}")));
                    }
                };
                Ok(LinkNode::Exchange(ex, key.map(|k| k.into_owned())))
            }
        }
    }

    /// The store, if durable queues are kept.
    pub fn journal(&self) -> Option<&Arc<dyn Journal>> {
        self.journal.as_ref()
    }

    fn registry(&self) -> MutexGuard<'_, HashMap<String, Arc<Queue>>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The settings.
    pub fn config(&self) -> &BrokerConfig {
        &self.cfg
    }

    /// The memory budget.
    pub fn memory(&self) -> &Arc<Memory> {
        &self.memory
    }

    /// A fresh connection number.
    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// The queue at `address`, creating it if allowed and `create` is set.
    pub fn resolve(&self, address: &str, create: bool) -> Result<Arc<Queue>, ResolveError> {
        let mut queues = self.registry();
        if let Some(q) = queues.get(address) {
            return Ok(Arc::clone(q));
        }
        if !create
            || !self.cfg.auto_create
            || address.is_empty()
            || address.starts_with(DYNAMIC_PREFIX)
            || address.starts_with(subscription::SUBSCRIPTION_PREFIX)
        {
            return Err(ResolveError::NotFound(address.to_string()));
        }
        if queues.len() >= self.cfg.max_queues {
            return Err(ResolveError::TooManyQueues(self.cfg.max_queues));
        }
        let q = self.create_queue(
            &mut queues,
            address,
            QueueKind::AutoCreated,
            self.cfg.auto_create_durable,
            PROPS_AUTO,
        );
        tracing::debug!(queue = address, "queue auto-created");
        Ok(q)
    }

    /// A new queue `name` of `kind` with the default limits and policy (its dead-letter queue
    /// created if need be), durable in the store with `props` if `durable` and there is a
    /// store; registered in `queues`.
    fn create_queue(
        &self,
        queues: &mut HashMap<String, Arc<Queue>>,
        name: &str,
        kind: QueueKind,
        durable: bool,
        props: &[u8],
    ) -> Arc<Queue> {
        let durability = self
            .journal
            .as_ref()
            .filter(|_| durable)
            .map(|j| declare(j, name, props, self.cfg.page_above));
        let policy = self.cfg.default_policy.clone();
        let dlq = dead_letter_queue(
            &self.cfg,
            &self.memory,
            &self.timers,
            self.journal.as_ref(),
            queues,
            &policy,
        );
        let q = Arc::new(
            Queue::with_durability(
                name.to_string(),
                kind,
                self.cfg.default_limits,
                Arc::clone(&self.memory),
                durability,
            )
            .with_policy(policy, dlq)
            .with_timers(Arc::clone(&self.timers)),
        );
        queues.insert(name.to_string(), Arc::clone(&q));
        q
    }

    /// Creates a dynamic node (§3.5.9) with a unique address in the reserved namespace.
    pub fn create_dynamic(&self, lifetime: Lifetime) -> Result<Arc<Queue>, ResolveError> {
        let mut queues = self.registry();
        if queues.len() >= self.cfg.max_queues {
            return Err(ResolveError::TooManyQueues(self.cfg.max_queues));
        }
        let n = self.next_dynamic.fetch_add(1, Ordering::Relaxed);
        let address = format!("{DYNAMIC_PREFIX}{:016x}.{n}", self.instance);
        let q = Arc::new(
            Queue::new(
                address.clone(),
                QueueKind::Dynamic(lifetime),
                self.cfg.default_limits,
                Arc::clone(&self.memory),
            )
            .with_timers(Arc::clone(&self.timers)),
        );
        queues.insert(address, Arc::clone(&q));
        Ok(q)
    }

    /// The queue at `address`, if any.
    pub fn get(&self, address: &str) -> Option<Arc<Queue>> {
        self.registry().get(address).cloned()
    }

    /// Deletes the queue at `address`, detaching its links with `amqp:resource-deleted`.
    pub fn delete(&self, address: &str) -> bool {
        let q = self.registry().remove(address);
        match q {
            Some(q) => {
                let exchanges: Vec<Arc<Exchange>> =
                    self.exchange_table().values().cloned().collect();
                for e in exchanges {
                    e.unbind_queue(&q);
                }
                q.delete();
                if let Some(d) = q.durability() {
                    d.journal.submit(vec![Op::DeleteQueue { queue: d.id }]);
                }
                tracing::debug!(queue = address, "queue deleted");
                true
            }
            None => false,
        }
    }

    /// Applies a dynamic node's lifetime policy after one of its links went away, or after a
    /// settlement emptied it. `closed_link_created_it`: the link that created it detached.
    pub fn check_lifetime(&self, q: &Arc<Queue>, creator_gone: bool) {
        let QueueKind::Dynamic(lifetime) = q.kind() else {
            return;
        };
        let delete = match lifetime {
            Lifetime::DeleteOnClose => creator_gone,
            Lifetime::DeleteOnNoLinks => !q.has_links(),
            Lifetime::DeleteOnNoMessages => q.is_empty(),
            Lifetime::DeleteOnNoLinksOrMessages => !q.has_links() && q.is_empty(),
        };
        if delete {
            self.delete(q.name());
        }
    }

    /// Housekeeping: dead-letters expired messages, and deletes auto-created queues idle
    /// for `auto_delete_after`.
    pub fn sweep(&self, now: Instant) {
        let all: Vec<Arc<Queue>> = self.registry().values().cloned().collect();
        let now_ms = queue::now_ms();
        for q in &all {
            q.expire(now_ms);
        }
        let idle: Vec<String> = self
            .registry()
            .values()
            .filter(|q| {
                q.kind() == QueueKind::AutoCreated
                    && q.idle_since().is_some_and(|t| {
                        now.saturating_duration_since(t) >= self.cfg.auto_delete_after
                    })
            })
            .map(|q| q.name().to_string())
            .collect();
        for name in idle {
            // Re-check under no lock race: a link may have attached since.
            if let Some(q) = self.get(&name)
                && q.idle_since().is_some()
            {
                self.delete(&name);
            }
        }
    }

    /// Fires due lock and schedule deadlines (housekeeping calls this every
    /// [`timers::TICK`]).
    pub fn fire_timers(&self) -> usize {
        self.timers.fire(queue::now_ms())
    }

    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        self.registry().len()
    }
}

/// Declares a durable queue in the store; the declaration is queued ahead of anything that
/// could be enqueued on it.
fn declare(journal: &Arc<dyn Journal>, name: &str, props: &[u8], page_above: usize) -> Durability {
    let id = journal.next_queue_id();
    journal.submit(vec![Op::DeclareQueue {
        queue: id,
        name: name.to_string(),
        props: props.to_vec(),
    }]);
    Durability {
        journal: Arc::clone(journal),
        id,
        page_above,
    }
}

/// The dead-letter queue `policy` names, created (declared, so never auto-deleted; durable
/// when auto-created queues are) if it does not exist yet.
fn dead_letter_queue(
    cfg: &BrokerConfig,
    memory: &Arc<Memory>,
    timers: &Arc<timers::Timers>,
    journal: Option<&Arc<dyn Journal>>,
    queues: &mut HashMap<String, Arc<Queue>>,
    policy: &QueuePolicy,
) -> Option<Arc<Queue>> {
    let name = policy.dead_letter_queue.as_deref()?;
    if let Some(q) = queues.get(name) {
        return Some(Arc::clone(q));
    }
    let durability = journal
        .filter(|_| cfg.auto_create_durable)
        .map(|j| declare(j, name, PROPS_DECLARED, cfg.page_above));
    let q = Arc::new(
        Queue::with_durability(
            name.to_string(),
            QueueKind::Declared,
            cfg.default_limits,
            Arc::clone(memory),
            durability,
        )
        .with_timers(Arc::clone(timers)),
    );
    queues.insert(name.to_string(), Arc::clone(&q));
    Some(q)
}
