//! One load scenario: N producer and M consumer connections over K queues, bounded in count
//! and time, measured from the client side and (given its PID) from the broker's side.
//!
//! [`run`] is the plain form: producer and consumer i use queue i mod K, and every message is
//! the same stamped body. [`run_routed`] adds what the routing benchmarks need ([`Routing`]):
//! producers that publish to an exchange, consumers with a selector, a set of messages that
//! differ in subject and application properties, the receipts to expect when that is not one
//! per message, and a check of which consumer may receive which message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferry::proto::{Event, LinkId, LinkSpec};
use ferry_codec::definitions::Fields;
use ferry_codec::definitions::{ReceiverSettleMode, Role, SenderSettleMode};
use ferry_codec::delivery_state::DeliveryState;
use ferry_codec::messaging::{Source, Target as AmqpTarget, TargetKind};
use ferry_codec::types::{Described, Str, Symbol, Value};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Barrier;

use crate::procstat::{self, Sampler};
use crate::wire::{Conn, Target, Template, Turn, read_stamp, wall_nanos};

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// Producer connections.
    pub producers: usize,
    /// Consumer connections.
    pub consumers: usize,
    /// Queues; producer i and consumer i use queue i mod K.
    pub queues: usize,
    /// Address of queue i: this with `{}` replaced by i (or suffixed with i when K > 1).
    pub address: String,
    /// Body bytes per message.
    pub size: usize,
    /// Messages in all (split over producers). 0: run for `duration`.
    pub count: u64,
    /// Hard limit on the run (and the length of a duration run).
    pub duration: Duration,
    /// Send settled (at-most-once) instead of unsettled (at-least-once).
    pub presettled: bool,
    /// Set the header's durable flag.
    pub durable: bool,
    /// Credit each consumer keeps granted.
    pub credit: u32,
    /// Unsettled messages each producer allows in flight.
    pub window: u32,
    /// Messages per second over all producers; 0 = as fast as possible.
    pub rate: u64,
}

impl Scenario {
    /// The address of queue `i`.
    pub fn queue_address(&self, i: usize) -> String {
        if self.address.contains("{}") {
            self.address.replace("{}", &i.to_string())
        } else if self.queues > 1 {
            format!("{}-{i}", self.address)
        } else {
            self.address.clone()
        }
    }
}

/// Whether consumer `i` may receive a message made from template `j` (see [`Routing::check`]).
pub type Check = Arc<dyn Fn(usize, usize) -> bool + Send + Sync>;

/// What a routed run does beyond [`Scenario`]: see [`run_routed`]. The default is a plain run.
#[derive(Clone, Default)]
pub struct Routing {
    /// Where every producer publishes (an exchange, say), instead of queue i mod K.
    pub producer_address: Option<String>,
    /// Consumer i's JMS selector (`apache.org:selector-filter:string` on its source); a
    /// consumer past the end of the list, or with `None`, has none.
    pub selectors: Vec<Option<String>>,
    /// The messages. With more than one, producer i's n-th message carries
    /// [`Routing::sequence`] as its stamp's sequence number and is the template of that number
    /// mod len, so a consumer knows which template it received (with one, the sequence number
    /// is n). Empty: one plain template of the scenario's size.
    pub templates: Arc<Vec<Template>>,
    /// How the producers share the templates: with `false`, producer i of P starts at
    /// template i·len/P and goes on in order (so that a few producers together soon use them
    /// all); with `true`, producer i sends templates i, i + P, i + 2P, … (with len a multiple
    /// of P, each producer keeps to its own residue class: a topic cell whose pattern j is
    /// bound to queue j mod P then sends every message of producer i to queue i).
    pub stride: bool,
    /// Receipts the run waits for, over all consumers (default: the scenario's count, one per
    /// message). A fan-out to C subscribers expects C per message, a selector fewer.
    pub expected: Option<u64>,
    /// Whether consumer i may receive template j; receipts it says no to are counted as
    /// [`Report::misrouted`].
    pub check: Option<Check>,
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routing")
            .field("producer_address", &self.producer_address)
            .field("selectors", &self.selectors)
            .field("templates", &self.templates.len())
            .field("stride", &self.stride)
            .field("expected", &self.expected)
            .field("check", &self.check.is_some())
            .finish()
    }
}

impl Routing {
    /// Messages producer `i` sends when the scenario's count is split over its producers.
    pub fn quota(s: &Scenario, i: usize) -> u64 {
        let producers = s.producers.max(1) as u64;
        s.count / producers + u64::from((i as u64) < s.count % producers)
    }

    /// The sequence number of producer `i`'s `n`-th message (of `producers`); its template
    /// is this mod the number of templates.
    pub fn sequence(&self, producers: usize, i: usize, n: u64) -> u64 {
        let producers = producers.max(1) as u64;
        if self.stride {
            i as u64 + n * producers
        } else {
            (i * self.templates.len()) as u64 / producers + n
        }
    }
}

/// What was measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Messages sent (settled by the broker when unsettled).
    pub sent: u64,
    /// Messages received by consumers.
    pub received: u64,
    /// Messages received by each consumer, in consumer order (routed runs only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_consumer: Vec<u64>,
    /// Receipts the routed run's check said the consumer should not have had.
    #[serde(skip_serializing_if = "is_zero")]
    pub misrouted: u64,
    /// Messages the broker did not accept.
    pub refused: u64,
    /// Sent messages per second, first send to last settlement.
    pub send_rate: f64,
    /// Received messages per second, first send to last receipt.
    pub recv_rate: f64,
    /// End-to-end latency percentiles in microseconds (from each message's scheduled send
    /// time when a rate is set).
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Publish-to-accepted latency (unsettled sends): the time from writing a transfer to
    /// the broker's settlement of it, 50th percentile, in microseconds.
    pub accept_p50_us: f64,
    /// 99th percentile of the same.
    pub accept_p99_us: f64,
    /// Broker CPU seconds during the run.
    pub broker_cpu_secs: Option<f64>,
    /// Broker CPU microseconds per message received.
    pub broker_cpu_us_per_msg: Option<f64>,
    /// Broker peak RSS during the run, in MiB (sampled).
    pub broker_peak_rss_mib: Option<f64>,
    /// This process's CPU microseconds per message.
    pub client_cpu_us_per_msg: f64,
    /// Wall time of the run.
    pub elapsed_secs: f64,
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What one run's producer and consumer tasks share.
#[derive(Debug)]
struct Shared {
    target: Target,
    scenario: Scenario,
    routing: Routing,
    /// Everyone connected (or failed) before the clock starts.
    barrier: Barrier,
    start: std::sync::OnceLock<Instant>,
    sent: AtomicU64,
    received: AtomicU64,
    refused: AtomicU64,
    /// Producers still running.
    producing: AtomicU64,
    /// Nanoseconds since start of the last settlement / receipt.
    last_send: AtomicU64,
    last_recv: AtomicU64,
    stop: AtomicBool,
    error: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, e: String) {
        if let Ok(mut g) = self.error.lock() {
            g.get_or_insert(e);
        }
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Runs `s` against `target`; `broker_pid` adds the broker's CPU and memory.
pub async fn run(target: &Target, s: &Scenario, broker_pid: Option<u32>) -> Report {
    run_routed(target, s, &Routing::default(), broker_pid).await
}

/// [`run`] with `routing`'s addresses, selectors, messages, expected receipts and check; the
/// report then also has each consumer's count.
pub async fn run_routed(
    target: &Target,
    s: &Scenario,
    routing: &Routing,
    broker_pid: Option<u32>,
) -> Report {
    let routed = routing.producer_address.is_some()
        || !routing.selectors.is_empty()
        || !routing.templates.is_empty()
        || routing.expected.is_some()
        || routing.check.is_some();
    let shared = Arc::new(Shared {
        target: target.clone(),
        scenario: s.clone(),
        routing: routing.clone(),
        barrier: Barrier::new(s.producers + s.consumers + 1),
        start: std::sync::OnceLock::new(),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        producing: AtomicU64::new(s.producers as u64),
        last_send: AtomicU64::new(0),
        last_recv: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        error: std::sync::Mutex::new(None),
    });
    let consumers: Vec<_> = (0..s.consumers)
        .map(|i| tokio::spawn(consume(Arc::clone(&shared), i)))
        .collect();
    let producers: Vec<_> = (0..s.producers)
        .map(|i| tokio::spawn(produce(Arc::clone(&shared), i)))
        .collect();
    // Everyone is connected and attached (or failed) before the clock starts.
    let ready = tokio::time::timeout(Duration::from_secs(30), shared.barrier.wait()).await;
    if ready.is_err() {
        shared.fail("connections not ready within 30 s".into());
    }
    let client_cpu0 = procstat::self_cpu_secs();
    let sampler = broker_pid.map(Sampler::start);
    let t0 = Instant::now();
    let _ = shared.start.set(t0);

    let mut accept = new_histogram();
    for p in producers {
        if let Ok(h) = p.await {
            let _ = accept.add(&h);
        }
    }
    let mut hist = new_histogram();
    let (mut per_consumer, mut misrouted) = (Vec::new(), 0);
    for c in consumers {
        match c.await {
            Ok((h, got, wrong)) => {
                let _ = hist.add(&h);
                per_consumer.push(got);
                misrouted += wrong;
            }
            Err(_) => per_consumer.push(0),
        }
    }
    if !routed {
        per_consumer.clear();
    }
    let elapsed = t0.elapsed();
    let broker = sampler.map(Sampler::finish);
    let client_cpu = procstat::self_cpu_secs() - client_cpu0;

    let sent = shared.sent.load(Ordering::Relaxed);
    let received = shared.received.load(Ordering::Relaxed);
    let secs = |ns: u64| (ns as f64 / 1e9).max(1e-9);
    let per_msg = received.max(if s.consumers == 0 { sent } else { 0 }).max(1) as f64;
    let q = |p: f64| hist.value_at_quantile(p) as f64 / 1000.0;
    Report {
        sent,
        received,
        per_consumer,
        misrouted,
        refused: shared.refused.load(Ordering::Relaxed),
        send_rate: sent as f64 / secs(shared.last_send.load(Ordering::Relaxed)),
        recv_rate: received as f64 / secs(shared.last_recv.load(Ordering::Relaxed)),
        p50_us: q(0.5),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: hist.max() as f64 / 1000.0,
        accept_p50_us: accept.value_at_quantile(0.5) as f64 / 1000.0,
        accept_p99_us: accept.value_at_quantile(0.99) as f64 / 1000.0,
        broker_cpu_secs: broker.as_ref().map(|b| b.cpu_secs),
        broker_cpu_us_per_msg: broker.as_ref().map(|b| b.cpu_secs * 1e6 / per_msg),
        broker_peak_rss_mib: broker.as_ref().map(|b| b.peak_rss_kib as f64 / 1024.0),
        client_cpu_us_per_msg: client_cpu * 1e6 / per_msg,
        elapsed_secs: elapsed.as_secs_f64(),
        error: shared.error.lock().ok().and_then(|g| g.clone()),
    }
}

/// Nanoseconds, 1 µs to 100 s, 3 significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 100_000_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Opens a session and a receiver link on `address` with `credit`: what an idle consumer
/// holds.
pub async fn attach_receiver(
    conn: &mut Conn,
    name: String,
    address: &str,
    credit: u32,
) -> Result<LinkId, String> {
    let link = attach(conn, name, Role::Receiver, address, false, None).await?;
    conn.engine
        .grant_credit(link, credit, false)
        .map_err(|e| e.to_string())?;
    Ok(link)
}

async fn attach(
    conn: &mut Conn,
    name: String,
    role: Role,
    address: &str,
    presettled: bool,
    selector: Option<&str>,
) -> Result<LinkId, String> {
    let session = conn.engine.begin().map_err(|e| e.to_string())?;
    conn.wait(
        |e| matches!(e, Event::SessionBegun(s) if *s == session),
        Duration::from_secs(10),
    )
    .await?;
    let addressed = Some(Str::from(address.to_string()));
    let spec = LinkSpec {
        name: Str::from(name),
        role,
        source: Some(Source {
            address: if role == Role::Receiver {
                addressed.clone()
            } else {
                None
            },
            filter: selector.map(selector_filter),
            ..Default::default()
        }),
        target: Some(TargetKind::Target(AmqpTarget {
            address: if role == Role::Sender {
                addressed
            } else {
                None
            },
            ..Default::default()
        })),
        snd_settle_mode: if presettled {
            SenderSettleMode::Settled
        } else {
            SenderSettleMode::Unsettled
        },
        rcv_settle_mode: ReceiverSettleMode::First,
        ..Default::default()
    };
    let link = conn
        .engine
        .attach(session, spec)
        .map_err(|e| e.to_string())?;
    let reply = conn
        .wait(
            |e| matches!(e, Event::Attached { link: l, .. } if *l == link),
            Duration::from_secs(10),
        )
        .await?;
    // A refusal is an attach with no terminus, followed by a detach.
    if let Event::Attached { attach, .. } = reply {
        let missing = match role {
            Role::Sender => attach.target.is_none(),
            Role::Receiver => attach.source.is_none(),
        };
        if missing {
            return Err(format!("{address}: the broker refused the link"));
        }
        // A broker that ignores the filter would deliver everything: the attach must echo it.
        let echoed = attach
            .source
            .as_ref()
            .and_then(|s| s.filter.as_ref())
            .is_some_and(|f| !f.0.is_empty());
        if selector.is_some() && !echoed {
            return Err(format!(
                "{address}: the broker did not take the selector filter"
            ));
        }
    }
    Ok(link)
}

/// A source filter set holding `selector` as a JMS selector filter
/// (`apache.org:selector-filter:string`, the form Qpid JMS sends).
pub fn selector_filter(selector: &str) -> Fields {
    let mut filter = Fields::new();
    filter.push(
        Symbol::from_static("jms-selector"),
        Value::Described(Box::new(Described {
            descriptor: Value::Symbol(Symbol::from_static("apache.org:selector-filter:string")),
            value: Value::String(Str::from(selector)),
        })),
    );
    filter
}

async fn produce(shared: Arc<Shared>, i: usize) -> Histogram<u64> {
    let mut accepted = new_histogram();
    // When each unsettled delivery was written, by delivery-id (bounded by the window).
    let mut written_at: std::collections::HashMap<u32, Instant> = std::collections::HashMap::new();
    let (target, s, barrier, start) = (
        &shared.target,
        &shared.scenario,
        &shared.barrier,
        &shared.start,
    );
    let setup = async {
        let mut conn = Conn::connect(target, &format!("ferry-bench-p{i}")).await?;
        let address = match &shared.routing.producer_address {
            Some(a) => a.clone(),
            None => s.queue_address(i % s.queues.max(1)),
        };
        let link = attach(
            &mut conn,
            format!("p{i}"),
            Role::Sender,
            &address,
            s.presettled,
            None,
        )
        .await?;
        Ok::<_, String>((conn, link))
    };
    let ready = setup.await;
    barrier.wait().await;
    let (mut conn, link) = match ready {
        Ok(x) => x,
        Err(e) => {
            shared.fail(format!("producer {i}: {e}"));
            shared.producing.fetch_sub(1, Ordering::Relaxed);
            return accepted;
        }
    };
    let t0 = *start.get_or_init(Instant::now);
    let wall0 = wall_nanos();
    let plain = [Template::new(s.size, s.durable)];
    let templates: &[Template] = if shared.routing.templates.is_empty() {
        &plain
    } else {
        &shared.routing.templates
    };
    let producers = s.producers.max(1) as u64;
    let quota = if s.count == 0 {
        u64::MAX
    } else {
        Routing::quota(s, i)
    };
    // Seconds between this producer's messages at the requested rate.
    let interval = (s.rate > 0).then(|| Duration::from_secs_f64(producers as f64 / s.rate as f64));
    let pacer = interval.map(crate::wire::Pacer::start);
    let deadline = t0 + s.duration;
    let (mut written, mut settled, mut inflight) = (0u64, 0u64, 0u64);
    let window = u64::from(s.window.max(1));
    loop {
        while let Some(e) = conn.engine.poll_event() {
            match e {
                Event::Disposition {
                    settled: true,
                    state,
                    delivery_id,
                    ..
                } => {
                    if let Some(t) = written_at.remove(&delivery_id.0) {
                        let _ = accepted.record((t.elapsed().as_nanos() as u64).max(1_000));
                    }
                    inflight = inflight.saturating_sub(1);
                    settled += 1;
                    if matches!(state, Some(DeliveryState::Accepted(_))) {
                        shared.sent.fetch_add(1, Ordering::Relaxed);
                    } else {
                        shared.refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Event::Detached { error, .. } => {
                    shared.fail(format!("producer {i}: detached: {error:?}"))
                }
                Event::Closed { error } => shared.fail(format!("producer {i}: closed: {error:?}")),
                _ => {}
            }
        }
        let now = Instant::now();
        let stopping = shared.stop.load(Ordering::Relaxed) || now >= deadline;
        let all_written = written >= quota || stopping;
        if all_written && (s.presettled || inflight == 0) {
            break;
        }
        if now >= deadline + Duration::from_secs(5) {
            shared.fail(format!("producer {i}: {inflight} messages never settled"));
            break;
        }
        let mut next_due = None;
        let mut batch = 0;
        while !all_written
            && written < quota
            && batch < 512
            && (s.presettled || inflight < window)
            && conn.engine.credit(link).unwrap_or(0) > 0
            && !conn.backlogged()
        {
            let stamp = match interval {
                Some(iv) => {
                    let offset = iv.mul_f64(written as f64);
                    let due = t0 + offset;
                    if due > now {
                        next_due = Some(due);
                        break;
                    }
                    // The scheduled time, not the actual one: lateness counts as latency.
                    wall0 + offset.as_nanos() as u64
                }
                None => wall_nanos(),
            };
            let (seq, template) = if templates.len() == 1 {
                (written, templates.first())
            } else {
                let seq = shared.routing.sequence(s.producers, i, written);
                (seq, templates.get((seq % templates.len() as u64) as usize))
            };
            let Some(m) = template.and_then(|t| t.stamped(stamp, seq)) else {
                break;
            };
            let Ok(id) = conn.engine.send(link, &m, s.presettled, None) else {
                break;
            };
            if !s.presettled {
                written_at.insert(id.0, Instant::now());
            }
            written += 1;
            batch += 1;
            if s.presettled {
                shared.sent.fetch_add(1, Ordering::Relaxed);
            } else {
                inflight += 1;
            }
        }
        if s.presettled || settled > 0 {
            shared
                .last_send
                .fetch_max(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        let wait = match next_due {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None if batch == 512 => Duration::ZERO,
            None => Duration::from_millis(50),
        };
        if conn
            .turn_paced(wait, pacer.as_ref().map(|p| p.tick()))
            .await
            == Turn::Eof
        {
            shared.fail(format!("producer {i}: the broker closed the socket"));
            break;
        }
    }
    shared.producing.fetch_sub(1, Ordering::Relaxed);
    // Flush what is written before closing.
    let flush_until = Instant::now() + Duration::from_secs(2);
    while conn.engine.has_output() && Instant::now() < flush_until {
        if conn.turn(Duration::from_millis(10)).await == Turn::Eof {
            break;
        }
    }
    conn.close().await;
    accepted
}

/// Returns the latency histogram, the messages this consumer received, and how many of them
/// the routing check said it should not have.
async fn consume(shared: Arc<Shared>, i: usize) -> (Histogram<u64>, u64, u64) {
    let (target, s, barrier, start) = (
        &shared.target,
        &shared.scenario,
        &shared.barrier,
        &shared.start,
    );
    let mut hist = new_histogram();
    let setup = async {
        let mut conn = Conn::connect(target, &format!("ferry-bench-c{i}")).await?;
        let address = s.queue_address(i % s.queues.max(1));
        let selector = shared.routing.selectors.get(i).cloned().flatten();
        let link = attach(
            &mut conn,
            format!("c{i}"),
            Role::Receiver,
            &address,
            s.presettled,
            selector.as_deref(),
        )
        .await?;
        conn.engine
            .grant_credit(link, s.credit.max(1), false)
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((conn, link))
    };
    let ready = setup.await;
    barrier.wait().await;
    let (mut conn, link) = match ready {
        Ok(x) => x,
        Err(e) => {
            shared.fail(format!("consumer {i}: {e}"));
            return (hist, 0, 0);
        }
    };
    let t0 = *start.get_or_init(Instant::now);
    let credit = s.credit.max(1);
    let mut used = 0u32;
    let expected = shared.routing.expected.unwrap_or(s.count);
    let templates = shared.routing.templates.len().max(1) as u64;
    let check = shared.routing.check.as_ref();
    let (mut mine, mut misrouted) = (0u64, 0u64);
    let deadline = t0 + s.duration + Duration::from_secs(5);
    loop {
        let mut got = 0u64;
        while let Some(e) = conn.engine.poll_event() {
            match e {
                Event::Delivery(d) => {
                    match read_stamp(&d.message) {
                        Some((stamp, seq)) => {
                            let now = wall_nanos();
                            let _ = hist.record(now.saturating_sub(stamp).max(1_000));
                            if check.is_some_and(|f| !f(i, (seq % templates) as usize)) {
                                misrouted += 1;
                            }
                        }
                        None if check.is_some() => misrouted += 1,
                        None => {}
                    }
                    if !d.settled {
                        let _ = conn.engine.settle_incoming(
                            link,
                            d.delivery_id,
                            DeliveryState::Accepted(Default::default()),
                        );
                    }
                    got += 1;
                    used += 1;
                }
                Event::Detached { error, .. } => {
                    shared.fail(format!("consumer {i}: detached: {error:?}"))
                }
                Event::Closed { error } => shared.fail(format!("consumer {i}: closed: {error:?}")),
                _ => {}
            }
        }
        if used >= credit.div_ceil(2) {
            let _ = conn.engine.grant_credit(link, credit, false);
            used = 0;
        }
        if got > 0 {
            mine += got;
            let total = shared.received.fetch_add(got, Ordering::Relaxed) + got;
            shared
                .last_recv
                .fetch_max(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
            if expected > 0 && total >= expected {
                shared.stop.store(true, Ordering::Relaxed);
            }
        }
        let total = shared.received.load(Ordering::Relaxed);
        let producing = shared.producing.load(Ordering::Relaxed);
        // A routed run expects some other number of receipts than messages sent: once the
        // producers are done and the run has failed, nothing more is worth waiting for.
        let caught_up = if shared.routing.expected.is_none() {
            total >= shared.sent.load(Ordering::Relaxed)
        } else {
            shared.error.lock().map_or(true, |e| e.is_some())
        };
        let done = (expected > 0 && total >= expected)
            || (producing == 0
                && (s.count == 0 || shared.stop.load(Ordering::Relaxed))
                && caught_up)
            || Instant::now() >= deadline;
        if done {
            break;
        }
        if conn.turn(Duration::from_millis(20)).await == Turn::Eof {
            shared.fail(format!("consumer {i}: the broker closed the socket"));
            break;
        }
    }
    // Settlements of the last messages go out before the close.
    let _ = conn.turn(Duration::ZERO).await;
    conn.close().await;
    (hist, mine, misrouted)
}

/// One line per field, for people.
pub fn table(s: &Scenario, r: &Report) -> String {
    let mut out = String::new();
    let mode = if s.presettled {
        "pre-settled"
    } else {
        "unsettled"
    };
    out += &format!(
        "scenario   {}→{} over {} queue(s), {} B, {mode}{}{}\n",
        s.producers,
        s.consumers,
        s.queues,
        s.size,
        if s.durable { ", durable" } else { "" },
        if s.rate > 0 {
            format!(", rate {}/s", s.rate)
        } else {
            String::new()
        }
    );
    out += &format!(
        "sent       {:>12} msgs  {:>12.0} msgs/s\n",
        r.sent, r.send_rate
    );
    out += &format!(
        "received   {:>12} msgs  {:>12.0} msgs/s\n",
        r.received, r.recv_rate
    );
    if r.refused > 0 {
        out += &format!("refused    {:>12} msgs\n", r.refused);
    }
    if r.misrouted > 0 {
        out += &format!("misrouted  {:>12} msgs\n", r.misrouted);
    }
    out += &format!(
        "latency    p50 {:.0} µs  p99 {:.0} µs  p99.9 {:.0} µs  max {:.0} µs\n",
        r.p50_us, r.p99_us, r.p999_us, r.max_us
    );
    if !s.presettled {
        out += &format!(
            "accepted   p50 {:.0} µs  p99 {:.0} µs (publish to the broker's settlement)\n",
            r.accept_p50_us, r.accept_p99_us
        );
    }
    if let (Some(cpu), Some(per), Some(rss)) = (
        r.broker_cpu_secs,
        r.broker_cpu_us_per_msg,
        r.broker_peak_rss_mib,
    ) {
        out += &format!("broker     {cpu:.2} CPU s, {per:.2} µs/msg, peak RSS {rss:.1} MiB\n");
    }
    out += &format!(
        "client     {:.2} CPU µs/msg; run {:.2} s\n",
        r.client_cpu_us_per_msg, r.elapsed_secs
    );
    if let Some(e) = &r.error {
        out += &format!("error      {e}\n");
    }
    out
}
