//! Under load the broker slows producers down instead of failing: four producers send ten
//! times the memory budget to a queue whose consumer is paused. The broker's RSS grows by at
//! most the budget plus 32 MiB over its footprint before the first message, no link gets an
//! error, and every message arrives once the consumer resumes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::TestClient;
use ferry::proto::Event;
use ferry_codec::delivery_state::{Accepted, DeliveryState};
use ferry_codec::messaging::{Data, Header, Message, Section, Source};
use ferry_codec::types::Str;

const BUDGET: usize = 16 << 20;
const MESSAGE: usize = 64 << 10;
const PER_PRODUCER: usize = (BUDGET * 10 / 4) / MESSAGE;

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss_bytes(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

// The child is killed and waited for by `Broker`'s Drop.
#[allow(clippy::zombie_processes)]
async fn start() -> (Broker, std::net::SocketAddr) {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("ferry-bp-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[broker]\nmemory_budget = {BUDGET}\ndata_dir = {:?}\n\n[[listeners]]\naddress = \"127.0.0.1:{port}\"\n",
            dir.display().to_string()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--config")
        .arg(&config)
        .arg("--log-level")
        .arg("warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return (Broker(child), addr);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("broker did not start");
}

fn payload(producer: usize, i: usize) -> Message {
    let mut body = vec![0u8; MESSAGE];
    body[..16].copy_from_slice(&(producer as u64).to_be_bytes().repeat(2));
    body[16..24].copy_from_slice(&(i as u64).to_be_bytes());
    Message::from_sections(&[
        Section::Header(Header::default()),
        Section::Data(Data(Bytes::from(body))),
    ])
    .unwrap()
}

fn id_of(m: &Message) -> (u64, u64) {
    let Some(Section::Data(d)) = m.body_sections().unwrap().into_iter().next() else {
        panic!("no body")
    };
    (
        u64::from_be_bytes(d.0[..8].try_into().unwrap()),
        u64::from_be_bytes(d.0[16..24].try_into().unwrap()),
    )
}

/// One producer in its own task: sends whenever it has credit, reports progress, and fails
/// the test if its link is ever detached or its connection closed.
fn spawn_producer(
    mut p: TestClient,
    tx: ferry::proto::LinkId,
    k: usize,
    sent_total: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            while sent < PER_PRODUCER && p.engine.credit(tx).unwrap_or(0) > 0 {
                p.engine.send(tx, &payload(k, sent), false, None).unwrap();
                sent += 1;
                sent_total.fetch_add(1, Ordering::Relaxed);
            }
            p.pump(Duration::from_millis(5)).await;
            assert!(
                !p.events
                    .iter()
                    .any(|e| matches!(e, Event::Detached { .. } | Event::Closed { .. })),
                "a producer link failed: {:?}",
                p.events.iter().rev().take(3).collect::<Vec<_>>()
            );
            p.events
                .retain(|e| !matches!(e, Event::Disposition { .. } | Event::Credit { .. }));
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_slow_down_and_nothing_is_lost() {
    let (broker, addr) = start().await;
    let pid = broker.0.id();
    let baseline = rss_bytes(pid);

    let mut consumer = TestClient::connect(addr).await;
    let rx = consumer
        .receiver(Source {
            address: Some(Str::from("bp")),
            ..Default::default()
        })
        .await;

    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for k in 0..4 {
        let mut p = TestClient::connect(addr).await;
        let tx = p.sender(Some("bp")).await;
        tasks.push(spawn_producer(
            p,
            tx,
            k,
            Arc::clone(&sent),
            Arc::clone(&stop),
        ));
    }

    // Phase 1: the consumer is paused (no credit). Producers push until the broker stops
    // granting credit; the broker's memory stays bounded.
    let mut peak = 0usize;
    let mut last = 0;
    let mut stalled_since = tokio::time::Instant::now();
    let phase1_deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while stalled_since.elapsed() < Duration::from_secs(2) {
        assert!(
            tokio::time::Instant::now() < phase1_deadline,
            "producers never stalled"
        );
        consumer.pump(Duration::from_millis(20)).await;
        peak = peak.max(rss_bytes(pid));
        let now_sent = sent.load(Ordering::Relaxed);
        if now_sent != last {
            last = now_sent;
            stalled_since = tokio::time::Instant::now();
        }
    }
    eprintln!(
        "phase 1: {last} messages sent before the producers stalled; RSS baseline {} MiB, peak {} MiB",
        baseline >> 20,
        peak >> 20
    );
    assert!(
        last < PER_PRODUCER * 4,
        "the budget must have stopped the producers"
    );
    assert!(
        // Each producer may overshoot by the credit it holds: at most 1 MiB (link_credit_bytes).
        last * MESSAGE <= BUDGET + 4 * ((1 << 20) + MESSAGE),
        "held {} MiB: more than the budget plus the credit in flight",
        (last * MESSAGE) >> 20
    );
    // Measured above the process's own footprint before any message (code, runtime, the
    // allocator's first segments), which depends on the allocator, not on the budget.
    assert!(
        peak - baseline <= BUDGET + (32 << 20),
        "broker RSS peaked at {} MiB over a baseline of {} MiB with a {} MiB budget",
        peak >> 20,
        baseline >> 20,
        BUDGET >> 20
    );

    // Phase 2: the consumer resumes; everything arrives, no link ever failed.
    consumer.engine.grant_credit(rx, 200, false).unwrap();
    let mut received = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while received.len() < PER_PRODUCER * 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "received {}",
            received.len()
        );
        consumer.pump(Duration::from_millis(5)).await;
        for d in consumer.deliveries() {
            let id = id_of(&d.message);
            assert!(received.insert(id), "{id:?} delivered twice");
            assert!(d.message.len() > MESSAGE);
            consumer
                .engine
                .settle_incoming(rx, d.delivery_id, DeliveryState::Accepted(Accepted {}))
                .unwrap();
        }
        if consumer.engine.credit(rx).unwrap_or(0) < 100 {
            consumer.engine.grant_credit(rx, 200, false).unwrap();
        }
        peak = peak.max(rss_bytes(pid));
        if tasks.iter().any(|t| t.is_finished()) {
            stop.store(true, Ordering::Relaxed);
            for t in tasks.drain(..) {
                t.await.unwrap(); // surfaces a producer's failure
            }
            panic!("a producer stopped early");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(received.len(), PER_PRODUCER * 4);
    assert!(
        peak - baseline <= BUDGET + (32 << 20),
        "RSS peaked at {} MiB over a baseline of {} MiB",
        peak >> 20,
        baseline >> 20
    );
    eprintln!(
        "sent {} MiB through a {} MiB budget; broker RSS peak {} MiB",
        (PER_PRODUCER * 4 * MESSAGE) >> 20,
        BUDGET >> 20,
        peak >> 20
    );
}
