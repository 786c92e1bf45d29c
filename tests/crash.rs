//! Crash test: the broker binary runs as a child process and is killed with SIGKILL at random
//! moments while producers publish durable messages unsettled and a consumer settles some.
//!
//! Each cycle:
//! 1. **Crash phase.** Start the broker on the shared data directory; two producer connections
//!    send durable messages (unique ulong message-ids) to `crash` as fast as credit and a rate
//!    cap allow, recording every id that came back `accepted`. One of them also consumes from
//!    `crash` at a limited rate, settling (`accepted`) all but the newest few deliveries. After
//!    a random 50–1500 ms the broker gets SIGKILL.
//! 2. **Recovery phase.** `ferry wal check` must pass on the killed broker's log. Restart on
//!    the same data directory, drain the queue (accepting every message), check what came back against the ledger, close cleanly, stop the broker with
//!    SIGTERM (a graceful stop syncs the log) and require exit status 0. What was drained is
//!    then settled durably, as is everything that did not come back.
//!
//! After the last cycle a final start must find the queue empty.
//!
//! The rules checked:
//! - Zero accepted messages may be missing: each one not settled by us comes back.
//! - Settled messages must not reappear. A consumer's settle has no acknowledgement, so it
//!   counts as durable only when known to be: drained and followed by a clean shutdown, or
//!   followed on the same connection by a transfer that came back `accepted`. The broker
//!   handles one connection's frames in order and submits the settle record before that
//!   transfer's enqueue record, and the store reports a record durable only once every record
//!   before it is; so by then the settle is on disk. Other settles were in flight at the kill:
//!   their messages may come back, and are counted as duplicates.
//! - Messages sent but not accepted at the kill (in flight) may or may not come back (a
//!   producer that retries would duplicate those that did); counted, not failed.
//! - Nothing comes back twice in one recovery, nothing unknown comes back, and each producer's
//!   messages come back in the order it sent them.
//!
//! Environment: `FERRY_BIN` (the broker binary; default the debug build of this crate),
//! `FERRY_CRASH_CYCLES` (default 5), `FERRY_CRASH_SEED` (to repeat the random choices; the
//! kill still lands wherever the broker happens to be at that moment).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferry::proto::{Connection, ConnectionConfig, EndpointRole, Event, LinkId, LinkSpec};
use ferry_codec::definitions::{ReceiverSettleMode, Role, SenderSettleMode, SequenceNo};
use ferry_codec::delivery_state::{Accepted, DeliveryState};
use ferry_codec::messaging::{
    Data, Header, Message, MessageId, Properties, Section, Source, Target, TargetKind,
};
use ferry_codec::types::Str;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The queue every message goes to (auto-created, durable by the built-in defaults).
const ADDRESS: &str = "crash";
/// Producer connections per crash phase; the first also consumes.
const PRODUCERS: u64 = 2;
/// When in the crash phase the broker is killed, in ms after the producers start.
const KILL_MS: (u64, u64) = (50, 1500);
/// Producer pace cap, messages per ms per producer: bounds what one cycle must drain, so a
/// release broker cannot make the (debug-built) test client the bottleneck.
const SEND_PER_MS: u64 = 25;
/// Sent but not yet settled by the broker, per producer, at most.
const MAX_OUTSTANDING: usize = 2000;
/// The crash-phase consumer's credit, topped up at most every [`CONSUMER_TICK`]: it takes
/// only part of what is published, so the queue holds accepted messages at the kill.
const CONSUMER_CREDIT: u32 = 20;
const CONSUMER_TICK: Duration = Duration::from_millis(20);
/// Deliveries the crash-phase consumer keeps unsettled: not settled at the kill, so those the
/// broker had accepted must come back.
const CONSUMER_HOLD: usize = 3;
/// Credit per drain round.
const DRAIN_CREDIT: u32 = 1000;
/// Bounds on a whole cycle and on each phase, so that a hung broker fails the test rather
/// than stalling it.
const CYCLE_LIMIT: Duration = Duration::from_secs(20);
const START_LIMIT: Duration = Duration::from_secs(10);
const PHASE_LIMIT: Duration = Duration::from_secs(20);
const STOP_LIMIT: Duration = Duration::from_secs(15);
/// Any single wait for the broker.
const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_accepted_message() {
    let bin = broker_binary();
    let cycles: u32 = std::env::var("FERRY_CRASH_CYCLES")
        .ok()
        .map(|v| v.parse().expect("FERRY_CRASH_CYCLES is a number"))
        .unwrap_or(5)
        .max(1);
    let seed: u64 = std::env::var("FERRY_CRASH_SEED")
        .ok()
        .map(|v| v.parse().expect("FERRY_CRASH_SEED is a number"))
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            t ^ u64::from(std::process::id()).rotate_left(32)
        });
    let mut rng = Rng(seed);
    let root = std::env::temp_dir().join(format!("ferry-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let log = root.join("broker.log");
    println!("crash test: broker {}", bin.display());
    println!(
        "crash test: {cycles} cycles, seed {seed} (FERRY_CRASH_SEED={seed} repeats the choices)"
    );
    println!(
        "crash test: data dir {}, broker log {} (kept if the test fails)",
        data.display(),
        log.display()
    );

    let mut ledger = Ledger::default();
    let mut totals = Figures::default();
    let mut starts = 0u32;
    let test_started = Instant::now();
    for cycle in 0..u64::from(cycles) {
        let cycle_started = Instant::now();

        // Crash phase.
        starts += 1;
        let mut broker = Broker::start(&bin, &data, &log, starts).await;
        let killed = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let stream = cycle * PRODUCERS + p + 1;
                tokio::spawn(publish(broker.addr, stream, p == 0, Arc::clone(&killed)))
            })
            .collect();
        let delay = Duration::from_millis(rng.range(KILL_MS.0, KILL_MS.1));
        tokio::time::sleep(delay).await;
        killed.store(true, Ordering::SeqCst);
        broker.kill9();
        let mut results = Vec::new();
        for t in tasks {
            let r = tokio::time::timeout(WAIT, t)
                .await
                .expect("a producer did not notice the kill")
                .expect("a producer task panicked");
            if let Some(e) = &r.error {
                panic!("cycle {cycle}: before the kill: {e}");
            }
            results.push(r);
        }
        let mut figures = ledger.after_kill(cycle, &results);
        let wal = wal_check(&bin, &data);

        // Recovery phase.
        starts += 1;
        let mut broker = Broker::start(&bin, &data, &log, starts).await;
        let drained = drain(broker.addr, &format!("drain-{cycle}"))
            .await
            .unwrap_or_else(|e| panic!("cycle {cycle}: recovery drain: {e}"));
        broker.terminate().await;
        ledger.after_recovery(cycle, &drained, &mut figures);
        println!(
            "cycle {cycle}: kill after {} ms | {} | wal: {} | {:.1} s",
            delay.as_millis(),
            figures,
            wal,
            cycle_started.elapsed().as_secs_f64()
        );
        assert!(
            figures.violations.is_empty(),
            "cycle {cycle}: {}",
            report(&figures.violations)
        );
        totals.add(&figures);
        assert!(
            cycle_started.elapsed() < CYCLE_LIMIT,
            "cycle {cycle} took {:.1} s, more than {CYCLE_LIMIT:?}",
            cycle_started.elapsed().as_secs_f64()
        );
    }

    // The last recovery settled everything durably: a fresh start finds nothing.
    starts += 1;
    let mut broker = Broker::start(&bin, &data, &log, starts).await;
    let left = drain(broker.addr, "final")
        .await
        .unwrap_or_else(|e| panic!("final drain: {e}"));
    broker.terminate().await;
    let mut last = Figures::default();
    ledger.after_recovery(u64::from(cycles), &left, &mut last);
    totals.add(&last);

    println!(
        "crash test TOTAL over {cycles} kills: {totals} | {:.1} s",
        test_started.elapsed().as_secs_f64()
    );
    assert!(
        left.ids.is_empty(),
        "after a clean shutdown {} settled message(s) came back: {:?}",
        left.ids.len(),
        &left.ids[..left.ids.len().min(10)]
    );
    assert!(
        totals.violations.is_empty(),
        "{}",
        report(&totals.violations)
    );
    assert_eq!(totals.missing, 0, "accepted messages were lost");
    assert!(
        totals.accepted > 0,
        "no message was accepted in any cycle: the test proved nothing"
    );
    // What the broker logged at warn and above (it logs nothing at that level when all is
    // well): printed, for whoever reads the run.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let logged: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("--- crash test"))
        .collect();
    println!("broker log: {} line(s) over {starts} starts", logged.len());
    for l in logged.iter().take(20) {
        println!("  {l}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// `FERRY_BIN` if set (CI points it at the release build), else this crate's own binary.
fn broker_binary() -> PathBuf {
    match std::env::var_os("FERRY_BIN") {
        Some(v) => {
            let p = PathBuf::from(v);
            // Relative to the package root, where `cargo test` runs and CI scripts live.
            let p = if p.is_relative() {
                Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
            } else {
                p
            };
            assert!(p.is_file(), "FERRY_BIN={} is not a file", p.display());
            p
        }
        None => PathBuf::from(env!("CARGO_BIN_EXE_ferry")),
    }
}

// ----- the ledger ------------------------------------------------------------------------------

/// What the test knows about every id, across cycles.
#[derive(Debug, Default)]
struct Ledger {
    /// Every id ever sent.
    sent: HashSet<u64>,
    /// Every id ever delivered to us.
    seen: HashSet<u64>,
    /// Accepted by the broker and not settled by us: the next recovery must return each.
    owed: HashSet<u64>,
    /// Sent, never accepted (in flight at the kill): may come back.
    in_flight: HashSet<u64>,
    /// Settled by the crash-phase consumer, not known durable (in flight at the kill): may
    /// come back, as a duplicate.
    settle_in_flight: HashSet<u64>,
    /// Done with for good, and why. Never to be seen again.
    closed: HashMap<u64, Closed>,
}

/// Why an id must never be delivered again.
#[derive(Debug, Clone, Copy)]
enum Closed {
    /// The crash-phase consumer settled it, and a transfer sent after the settle on the same
    /// connection came back accepted (so the settle record was on disk before the kill).
    ConfirmedSettle(u64),
    /// A recovery drain settled it, and the broker then stopped cleanly.
    Drained(u64),
    /// A recovery did not return it (in flight at the kill, or its settle took effect).
    Absent(u64),
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::ConfirmedSettle(c) => write!(
                f,
                "settled in cycle {c} before a later transfer on the same connection was accepted"
            ),
            Closed::Drained(c) => write!(
                f,
                "drained in cycle {c}'s recovery, followed by a clean shutdown"
            ),
            Closed::Absent(c) => write!(f, "absent from cycle {c}'s recovery"),
        }
    }
}

impl Ledger {
    /// Takes in what the crash phase's connections did; returns the cycle's figures so far.
    fn after_kill(&mut self, cycle: u64, results: &[Publish]) -> Figures {
        let mut f = Figures::default();
        // The consumer takes any producer's messages: merge every connection's view first.
        let mut acked = HashSet::new();
        let mut settled = HashMap::new();
        for r in results {
            acked.extend(r.acked.iter().copied());
            settled.extend(r.settled.iter().copied());
            for &id in &r.received {
                if let Some(why) = self.closed.get(&id) {
                    f.violations.push(format!(
                        "id {} delivered again in cycle {cycle}'s crash phase; it was {why}",
                        show(id)
                    ));
                }
                self.seen.insert(id);
            }
        }
        f.accepted = acked.len() as u64;
        f.consumed = settled.len() as u64;
        let mut sent = HashSet::new();
        for id in results.iter().flat_map(|r| r.sent.iter().copied()) {
            sent.insert(id);
            self.sent.insert(id);
            match (settled.get(&id), acked.contains(&id)) {
                (Some(true), _) => {
                    self.closed.insert(id, Closed::ConfirmedSettle(cycle));
                }
                (Some(false), _) => {
                    f.settles_in_flight += 1;
                    self.settle_in_flight.insert(id);
                }
                (None, true) => {
                    self.owed.insert(id);
                }
                (None, false) => {
                    f.sends_in_flight += 1;
                    self.in_flight.insert(id);
                }
            }
        }
        for id in acked.iter().chain(settled.keys()) {
            if !sent.contains(id) {
                f.violations.push(format!(
                    "id {} accepted or consumed but not sent in this cycle",
                    show(*id)
                ));
            }
        }
        f
    }

    /// Checks a recovery's drained ids, then closes every id: what came back was settled and
    /// the broker stopped cleanly; what did not come back must never come back.
    fn after_recovery(&mut self, cycle: u64, drained: &Drained, f: &mut Figures) {
        f.early_answers += drained.early_answers;
        f.longest_wait = f.longest_wait.max(drained.longest_wait);
        let mut here = HashSet::new();
        let mut last_seq: BTreeMap<u64, u64> = BTreeMap::new();
        for &id in &drained.ids {
            f.recovered += 1;
            let again = self.seen.contains(&id);
            if !here.insert(id) {
                f.violations
                    .push(format!("id {} delivered twice in one recovery", show(id)));
                continue;
            }
            if let Some(why) = self.closed.get(&id) {
                f.violations.push(format!(
                    "id {} came back after cycle {cycle}'s kill; it was {why}",
                    show(id)
                ));
            } else if !self.sent.contains(&id) {
                f.violations
                    .push(format!("id {} came back but was never sent", show(id)));
            } else if self.settle_in_flight.contains(&id) {
                f.dup_after_settle += 1;
            } else if again {
                // Delivered before the kill and still unsettled then: an ordinary redelivery.
                f.dup_unsettled += 1;
            }
            if self.in_flight.contains(&id) {
                f.sends_stored += 1;
            }
            let (stream, seq) = (id >> 32, id & 0xffff_ffff);
            if let Some(prev) = last_seq.insert(stream, seq)
                && prev >= seq
            {
                f.violations.push(format!(
                    "out of order: producer {stream} message {seq} came back after its message {prev}"
                ));
            }
            self.seen.insert(id);
        }
        let mut missing: Vec<u64> = self
            .owed
            .iter()
            .copied()
            .filter(|id| !here.contains(id))
            .collect();
        missing.sort_unstable();
        f.missing += missing.len() as u64;
        if !missing.is_empty() {
            f.violations.push(format!(
                "{} accepted message(s) missing after the restart: {}",
                missing.len(),
                runs(&missing)
            ));
        }
        for id in here {
            self.closed.insert(id, Closed::Drained(cycle));
        }
        let gone = self
            .owed
            .drain()
            .chain(self.in_flight.drain())
            .chain(self.settle_in_flight.drain());
        for id in gone {
            self.closed.entry(id).or_insert(Closed::Absent(cycle));
        }
    }
}

/// Violations for a failure message: the count and the first 20.
fn report(violations: &[String]) -> String {
    let mut out = format!("{} violation(s):", violations.len());
    for v in violations.iter().take(20) {
        out.push_str("\n  ");
        out.push_str(v);
    }
    if violations.len() > 20 {
        out.push_str("\n  ...");
    }
    out
}

/// Sorted ids as runs of consecutive messages (`producer/first-last`), the first 20.
fn runs(ids: &[u64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() && out.len() < 20 {
        let mut j = i;
        while j + 1 < ids.len() && ids[j + 1] == ids[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            show(ids[i])
        } else {
            format!("{}-{}", show(ids[i]), ids[j] & 0xffff_ffff)
        });
        i = j + 1;
    }
    out.join(", ")
}

/// An id as producer/sequence, for messages.
fn show(id: u64) -> String {
    format!("{}/{}", id >> 32, id & 0xffff_ffff)
}

/// One cycle's figures (or the sum of all).
#[derive(Debug, Default)]
struct Figures {
    /// Producer deliveries that came back `accepted`.
    accepted: u64,
    /// Sent, not accepted at the kill.
    sends_in_flight: u64,
    /// Settled by the crash-phase consumer.
    consumed: u64,
    /// Of those, not known durable at the kill.
    settles_in_flight: u64,
    /// Delivered by the recovery drain.
    recovered: u64,
    /// Recovered although their settle was sent (in flight at the kill).
    dup_after_settle: u64,
    /// Recovered after being delivered unsettled before the kill.
    dup_unsettled: u64,
    /// Recovered although never accepted: a retrying producer would have duplicated them.
    sends_stored: u64,
    /// Accepted, not settled, not recovered. Must be 0.
    missing: u64,
    /// Drains the broker answered with nothing while messages remained (see [`Drained`]).
    early_answers: u64,
    /// The longest wait for a delivery or drain answer in a recovery.
    longest_wait: Duration,
    violations: Vec<String>,
}

impl Figures {
    fn add(&mut self, o: &Figures) {
        self.accepted += o.accepted;
        self.sends_in_flight += o.sends_in_flight;
        self.consumed += o.consumed;
        self.settles_in_flight += o.settles_in_flight;
        self.recovered += o.recovered;
        self.dup_after_settle += o.dup_after_settle;
        self.dup_unsettled += o.dup_unsettled;
        self.sends_stored += o.sends_stored;
        self.missing += o.missing;
        self.early_answers += o.early_answers;
        self.longest_wait = self.longest_wait.max(o.longest_wait);
        self.violations.extend(o.violations.iter().cloned());
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "accepted {}, in flight at kill {} sends + {} settles, consumed {}, recovered {}, \
             duplicates {} ({} after a settle in flight, {} redelivered unsettled), \
             in-flight sends stored {}, missing {}; longest drain wait {} ms",
            self.accepted,
            self.sends_in_flight,
            self.settles_in_flight,
            self.consumed,
            self.recovered,
            self.dup_after_settle + self.dup_unsettled,
            self.dup_after_settle,
            self.dup_unsettled,
            self.sends_stored,
            self.missing,
            self.longest_wait.as_millis()
        )?;
        if self.early_answers > 0 {
            write!(f, ", drains answered early {}", self.early_answers)?;
        }
        Ok(())
    }
}

// ----- the broker process ----------------------------------------------------------------------

/// The broker as our child process. Dropping it kills it (only this child, by its handle).
#[derive(Debug)]
struct Broker {
    child: Child,
    addr: SocketAddr,
}

impl Broker {
    /// Starts the broker on a free loopback port and waits until it accepts TCP. A port taken
    /// between our probe and the broker's bind makes it exit: then another port is tried.
    async fn start(bin: &Path, data: &Path, log: &Path, n: u32) -> Broker {
        for _attempt in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut out = OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap();
            writeln!(out, "--- crash test: broker start {n} on {addr}").unwrap();
            // Small segments and a small in-memory share, so that kill -9 lands while segments
            // roll, get recycled and compacted, and while the queue pages messages out.
            let config = data.with_extension("toml");
            std::fs::write(
                &config,
                "[broker]\nmax_message_size = \"64KiB\"\n\n[queues]\npage_above = \"64KiB\"\n\n[store]\nsegment_size = \"2MiB\"\n",
            )
            .unwrap();
            let child = Command::new(bin)
                .arg("--config")
                .arg(&config)
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--data-dir")
                .arg(data)
                .args(["--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(out))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            let mut broker = Broker { child, addr };
            let deadline = Instant::now() + START_LIMIT;
            loop {
                if let Some(status) = broker.child.try_wait().unwrap() {
                    println!("broker start {n} on {addr} exited at once ({status}); retrying");
                    break;
                }
                if TcpStream::connect(addr).await.is_ok() {
                    return broker;
                }
                assert!(
                    Instant::now() < deadline,
                    "broker start {n} did not accept connections within {START_LIMIT:?}; log:\n{}",
                    tail(log)
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        panic!("the broker would not start; log:\n{}", tail(log));
    }

    /// SIGKILL, then reap it. It must still be running: dying on its own is a failure.
    fn kill9(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("the broker exited before the kill: {status}");
        }
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaping the broker");
    }

    /// SIGTERM, then wait for a clean exit: a graceful stop writes and syncs what the
    /// connections submitted.
    async fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + STOP_LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "the broker stopped with {status} on SIGTERM"
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the broker did not stop within {STOP_LIMIT:?} of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `ferry wal check` on a killed broker's log: it must find the broker could start on it (an
/// unsynced tail is not damage). Returns its verdict line.
fn wal_check(bin: &Path, data: &Path) -> String {
    let out = Command::new(bin)
        .args(["wal", "check", "--data-dir"])
        .arg(data)
        .output()
        .expect("running ferry wal check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ferry wal check after the kill: {}\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines().last().unwrap_or_default().to_string()
}

/// The end of the broker log, for failure messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

// ----- the phases ------------------------------------------------------------------------------

/// What one crash-phase connection did.
#[derive(Debug, Default)]
struct Publish {
    /// Ids sent, in order.
    sent: Vec<u64>,
    /// Ids the broker accepted.
    acked: Vec<u64>,
    /// Ids the consumer settled, each with whether the settle is known durable.
    settled: Vec<(u64, bool)>,
    /// Ids delivered to the consumer, settled or not.
    received: Vec<u64>,
    /// What went wrong before the kill, if anything.
    error: Option<String>,
}

impl Publish {
    /// Notes a failure, unless it is the kill itself.
    fn fail(&mut self, killed: &AtomicBool, why: String) {
        if !killed.load(Ordering::SeqCst) && self.error.is_none() {
            self.error = Some(why);
        }
    }
}

/// One crash-phase connection: publishes ids `stream << 32 | n` until the broker dies; with
/// `consume`, also consumes slowly on the same session.
async fn publish(addr: SocketAddr, stream: u64, consume: bool, killed: Arc<AtomicBool>) -> Publish {
    let mut out = Publish::default();
    let started = Instant::now();
    let deadline = started + PHASE_LIMIT;
    let mut c = match Client::connect(addr, &format!("crash-{stream}")).await {
        Ok(c) => c,
        Err(e) => {
            out.fail(&killed, format!("producer {stream}: connect: {e}"));
            return out;
        }
    };
    let tx = match c.attach(sender_spec(&format!("crash-tx-{stream}"))).await {
        Ok(l) => l,
        Err(e) => {
            out.fail(&killed, format!("producer {stream}: attach: {e}"));
            return out;
        }
    };
    let rx = if consume {
        match c.attach(receiver_spec(&format!("crash-rx-{stream}"))).await {
            Ok(l) => Some(l),
            Err(e) => {
                out.fail(&killed, format!("consumer {stream}: attach: {e}"));
                return out;
            }
        }
    } else {
        None
    };

    // Transfers are numbered in the order they enter the connection's output; a settle
    // carries the number of the first transfer written after it (the engine encodes a
    // disposition before any frame queued after it, so the wire order is the call order).
    let mut by_delivery: HashMap<u32, u64> = HashMap::new();
    let mut next: u64 = 0;
    let mut max_acked: Option<u64> = None;
    let mut settles: Vec<(u64, u64)> = Vec::new();
    let mut held: VecDeque<(SequenceNo, u64)> = VecDeque::new();
    let mut next_grant = Instant::now();
    let mut outstanding = 0usize;
    'run: loop {
        if Instant::now() >= deadline {
            out.fail(
                &killed,
                format!("producer {stream}: no kill within {PHASE_LIMIT:?}"),
            );
            break;
        }
        let budget = (started.elapsed().as_millis() as u64 + 1) * SEND_PER_MS;
        while next < budget && outstanding < MAX_OUTSTANDING && c.engine.credit(tx).unwrap_or(0) > 0
        {
            let id = stream << 32 | next;
            match c.engine.send(tx, &message(id), false, None) {
                Ok(d) => {
                    by_delivery.insert(d.0, next);
                    out.sent.push(id);
                    next += 1;
                    outstanding += 1;
                }
                Err(e) => {
                    out.fail(&killed, format!("producer {stream}: send: {e:?}"));
                    break 'run;
                }
            }
        }
        if let Some(rx) = rx {
            while held.len() > CONSUMER_HOLD {
                let (d, id) = held.pop_front().unwrap();
                let _ = c
                    .engine
                    .settle_incoming(rx, d, DeliveryState::Accepted(Accepted {}));
                settles.push((id, next));
            }
            if Instant::now() >= next_grant
                && c.engine.credit(rx).unwrap_or(0) < CONSUMER_CREDIT / 2
            {
                let _ = c.engine.grant_credit(rx, CONSUMER_CREDIT, false);
                next_grant = Instant::now() + CONSUMER_TICK;
            }
        }
        let alive = c.turn(Duration::from_millis(5)).await;
        while let Some(e) = c.events.pop_front() {
            match e {
                Event::Disposition {
                    link,
                    delivery_id,
                    state,
                    ..
                } if link == tx => {
                    let Some(n) = by_delivery.remove(&delivery_id.0) else {
                        continue;
                    };
                    outstanding -= 1;
                    if matches!(state, Some(DeliveryState::Accepted(_))) {
                        out.acked.push(stream << 32 | n);
                        max_acked = max_acked.max(Some(n));
                    } else {
                        out.fail(
                            &killed,
                            format!("producer {stream}: message {n} not accepted: {state:?}"),
                        );
                    }
                }
                Event::Delivery(d) if Some(d.link) == rx => match id_of(&d.message) {
                    Some(id) if !d.settled => {
                        out.received.push(id);
                        held.push_back((d.delivery_id, id));
                    }
                    _ => out.fail(
                        &killed,
                        format!("consumer {stream}: unexpected delivery {d:?}"),
                    ),
                },
                Event::Detached { .. } | Event::SessionEnded { .. } | Event::Closed { .. } => {
                    out.fail(&killed, format!("producer {stream}: {e:?}"));
                    break 'run;
                }
                _ => {}
            }
        }
        if !alive {
            out.fail(
                &killed,
                format!("producer {stream}: the broker closed the socket"),
            );
            break;
        }
    }
    out.settled = settles
        .into_iter()
        .map(|(id, after)| (id, max_acked.is_some_and(|m| m >= after)))
        .collect();
    out
}

/// What a recovery drain received.
#[derive(Debug, Default)]
struct Drained {
    /// Ids in the order they arrived (each accepted).
    ids: Vec<u64>,
    /// Times a fresh link found messages after the broker had answered a drain on the
    /// previous link with nothing: a drain answered early.
    early_answers: u64,
    /// The longest wait for the next delivery or drain answer.
    longest_wait: Duration,
}

/// Consumes and accepts everything on the queue, then closes cleanly (so the broker has
/// handled every settle before it is stopped).
///
/// Rounds of drain-mode credit run until the broker answers one with nothing. Only the
/// broker's answer ends a round, however long it takes (within [`PHASE_LIMIT`]): a quiet
/// spell proves nothing on a busy machine. An empty answer is confirmed on a fresh link, so
/// that no stale drain state of the old one can end the drain early.
async fn drain(addr: SocketAddr, name: &str) -> Result<Drained, String> {
    let deadline = Instant::now() + PHASE_LIMIT;
    let mut c = Client::connect(addr, name).await?;
    let mut out = Drained::default();
    for attempt in 0..10 {
        let rx = c
            .attach(receiver_spec(&format!("{name}-{attempt}")))
            .await?;
        let mut on_link = 0usize;
        loop {
            c.engine
                .grant_credit(rx, DRAIN_CREDIT, true)
                .map_err(|e| format!("grant: {e:?}"))?;
            let mut got = 0;
            let mut last = Instant::now();
            // The round ends when the credit is used up or handed back.
            while c.engine.credit(rx) != Some(0) {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "not drained within {PHASE_LIMIT:?}: {} received, then nothing for {:?} \
                         (neither a delivery nor the drain's answer)",
                        out.ids.len(),
                        last.elapsed()
                    ));
                }
                let alive = c.turn(Duration::from_millis(50)).await;
                while let Some(e) = c.events.pop_front() {
                    match e {
                        Event::Delivery(d) if d.link == rx => {
                            let id = id_of(&d.message)
                                .filter(|_| !d.settled)
                                .ok_or_else(|| format!("unexpected delivery {d:?}"))?;
                            c.engine
                                .settle_incoming(
                                    rx,
                                    d.delivery_id,
                                    DeliveryState::Accepted(Accepted {}),
                                )
                                .map_err(|e| format!("settle: {e:?}"))?;
                            out.ids.push(id);
                            got += 1;
                            out.longest_wait = out.longest_wait.max(last.elapsed());
                            last = Instant::now();
                        }
                        Event::Detached { .. }
                        | Event::SessionEnded { .. }
                        | Event::Closed { .. } => {
                            return Err(format!("{e:?}"));
                        }
                        _ => {}
                    }
                }
                if !alive {
                    return Err("the broker closed the socket".into());
                }
            }
            out.longest_wait = out.longest_wait.max(last.elapsed());
            on_link += got;
            if got == 0 {
                break;
            }
        }
        if on_link == 0 {
            c.close().await?;
            return Ok(out);
        }
        if attempt > 0 {
            out.early_answers += 1;
        }
        c.engine
            .detach(rx, true, None)
            .map_err(|e| format!("detach: {e:?}"))?;
        // The broker's detach reply removes the link (the engine reports no event for it).
        let until = Instant::now() + WAIT;
        while c.engine.credit(rx).is_some() {
            if Instant::now() >= until || !c.turn(Duration::from_millis(50)).await {
                return Err("no detach reply".into());
            }
        }
    }
    Err("a fresh link still found messages after 10 links".into())
}

// ----- messages and links ----------------------------------------------------------------------

/// A durable message whose message-id (and body) is `id`.
fn message(id: u64) -> Message {
    Message::from_sections(&[
        Section::Header(Header {
            durable: true,
            ..Default::default()
        }),
        Section::Properties(Properties {
            message_id: Some(MessageId::Ulong(id)),
            ..Default::default()
        }),
        Section::Data(Data(Bytes::copy_from_slice(&id.to_be_bytes()))),
    ])
    .unwrap()
}

fn id_of(m: &Message) -> Option<u64> {
    match m.properties().ok()??.message_id? {
        MessageId::Ulong(id) => Some(id),
        _ => None,
    }
}

/// A producer link to [`ADDRESS`]: unsettled sends, the broker settles first.
fn sender_spec(name: &str) -> LinkSpec {
    LinkSpec {
        name: Str::from(name),
        role: Role::Sender,
        source: Some(Source {
            address: Some(Str::from(name)),
            ..Default::default()
        }),
        target: Some(TargetKind::Target(Target {
            address: Some(Str::from(ADDRESS)),
            ..Default::default()
        })),
        snd_settle_mode: SenderSettleMode::Unsettled,
        rcv_settle_mode: ReceiverSettleMode::First,
        ..Default::default()
    }
}

/// A consumer link from [`ADDRESS`]: the broker sends unsettled, we settle.
fn receiver_spec(name: &str) -> LinkSpec {
    LinkSpec {
        name: Str::from(name),
        role: Role::Receiver,
        source: Some(Source {
            address: Some(Str::from(ADDRESS)),
            ..Default::default()
        }),
        target: Some(TargetKind::Target(Target {
            address: Some(Str::from(name)),
            ..Default::default()
        })),
        snd_settle_mode: SenderSettleMode::Unsettled,
        rcv_settle_mode: ReceiverSettleMode::First,
        ..Default::default()
    }
}

// ----- the client ------------------------------------------------------------------------------

/// One client connection on Ferry's engine in the client role (as `ferry-bench` drives it):
/// the engine does framing, session windows, credit and disposition ranges. Unlike the
/// shared test clients it treats a dead socket as an answer, not a panic.
struct Client {
    engine: Connection,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    buf: BytesMut,
    pending: Bytes,
    events: VecDeque<Event>,
    session: ferry::proto::SessionId,
    eof: bool,
}

impl Client {
    /// Connects (plain AMQP header: the daemon allows it on loopback), opens, begins.
    async fn connect(addr: SocketAddr, container: &str) -> Result<Client, String> {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        let cfg = ConnectionConfig {
            role: EndpointRole::Client,
            container_id: container.to_string(),
            ..Default::default()
        };
        let mut c = Client {
            engine: Connection::new(cfg, Instant::now()),
            reader,
            writer,
            buf: BytesMut::with_capacity(64 * 1024),
            pending: Bytes::new(),
            events: VecDeque::new(),
            session: ferry::proto::SessionId(0),
            eof: false,
        };
        c.wait(|e| matches!(e, Event::Opened(_))).await?;
        c.session = c.engine.begin().map_err(|e| format!("begin: {e:?}"))?;
        c.wait(|e| matches!(e, Event::SessionBegun(_))).await?;
        Ok(c)
    }

    /// Attaches and waits for the broker's attach, which must carry a terminus (a refusal
    /// answers with a null one).
    async fn attach(&mut self, spec: LinkSpec) -> Result<LinkId, String> {
        let role = spec.role;
        let link = self
            .engine
            .attach(self.session, spec)
            .map_err(|e| format!("attach: {e:?}"))?;
        let reply = self
            .wait(|e| matches!(e, Event::Attached { link: l, .. } if *l == link))
            .await?;
        if let Event::Attached { attach, .. } = reply {
            let ok = match role {
                Role::Sender => attach.target.is_some(),
                Role::Receiver => attach.source.is_some(),
            };
            if !ok {
                return Err(format!("attach refused: {attach:?}"));
            }
        }
        Ok(link)
    }

    /// Closes and waits for the broker's close.
    async fn close(&mut self) -> Result<(), String> {
        self.engine.close(None);
        self.wait(|e| matches!(e, Event::Closed { error: None }))
            .await
            .map(drop)
    }

    /// Turns until an event matching `f` arrives ([`WAIT`] at most); other events stay
    /// queued, except those that end the connection.
    async fn wait(&mut self, f: impl Fn(&Event) -> bool) -> Result<Event, String> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.events.iter().position(&f) {
                return Ok(self.events.remove(i).unwrap());
            }
            if let Some(e) = self.events.iter().find(|e| {
                matches!(
                    e,
                    Event::Closed { .. } | Event::Detached { .. } | Event::SessionEnded { .. }
                )
            }) {
                return Err(format!("{e:?}"));
            }
            if self.eof {
                return Err("the broker closed the socket".into());
            }
            if Instant::now() >= deadline {
                return Err(format!("no answer within {WAIT:?}"));
            }
            self.turn(Duration::from_millis(50)).await;
        }
    }

    /// Writes what the engine has, reads what arrives, fires timers: one step, at most `wait`.
    /// `false` once the socket is closed.
    async fn turn(&mut self, wait: Duration) -> bool {
        if self.eof {
            return false;
        }
        let now = Instant::now();
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        if self.pending.is_empty() {
            self.pending = self.engine.take_output(now);
        }
        let mut until = now + wait;
        if let Some(t) = self.engine.poll_timeout() {
            until = until.min(t);
        }
        if self.buf.capacity() - self.buf.len() < 16 * 1024 {
            self.buf.reserve(64 * 1024);
        }
        tokio::select! {
            biased;
            r = self.reader.read_buf(&mut self.buf) => match r {
                Ok(0) | Err(_) => self.eof = true,
                Ok(_) => self.engine.handle_input(&mut self.buf, Instant::now()),
            },
            w = self.writer.write(&self.pending), if !self.pending.is_empty() => match w {
                Ok(0) | Err(_) => self.eof = true,
                Ok(n) => drop(self.pending.split_to(n.min(self.pending.len()))),
            },
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(until)) => {}
        }
        while let Some(e) = self.engine.poll_event() {
            self.events.push_back(e);
        }
        !self.eof
    }
}

// ----- randomness ------------------------------------------------------------------------------

/// SplitMix64: enough to pick kill moments, and repeatable from the printed seed.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}
