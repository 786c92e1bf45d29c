//! Broker hot paths, without sockets: routing a message into a queue, and dispatching it to a
//! consumer that has credit (through the queue-to-connection channel, then settled).
//!
//! Both include the copy each stored message gets (see `ARCHITECTURE.md`), so they are what
//! one message costs the broker between the engine's delivery event and its transfer.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry::broker::{Broker, BrokerConfig, ConsumerId, Outbound, Settlement};
use ferry::proto::LinkId;
use ferry_codec::messaging::{Data, Header, Message, Section};
use tokio::sync::mpsc;

/// The broker binary's allocator, so the figures are the broker's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn message() -> Message {
    let body = Bytes::from(vec![7u8; 1000]);
    Message::from_sections(&[
        Section::Header(Header {
            durable: false,
            ..Default::default()
        }),
        Section::Data(Data(body)),
    ])
    .unwrap()
}

/// Enough room that neither the queue limits nor the memory budget refuse anything.
fn broker() -> std::sync::Arc<Broker> {
    let cfg = BrokerConfig {
        memory_budget: 1 << 40,
        ..Default::default()
    };
    Broker::new(cfg)
}

fn route(c: &mut Criterion) {
    let m = message();
    let mut g = c.benchmark_group("broker");
    g.throughput(Throughput::Elements(1));
    // Resolve the address and store the message; fresh queues every 10,000 messages keep
    // memory bounded (their teardown is not timed).
    g.bench_function("route_1k", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(10_000);
                let broker = broker();
                broker.resolve("bench", true).unwrap();
                let start = Instant::now();
                for _ in 0..n {
                    let q = broker.resolve(black_box("bench"), false).unwrap();
                    q.enqueue(m.clone()).unwrap();
                }
                total += start.elapsed();
                left -= n;
            }
            total
        })
    });
    // A consumer with credit: enqueue dispatches at once; the connection side takes the
    // delivery off the channel and settles it accepted.
    g.bench_function("dispatch_1k", |b| {
        let broker = broker();
        let q = broker.resolve("bench", true).unwrap();
        let (tx, mut rx) = mpsc::channel::<Outbound>(8192);
        let id = ConsumerId {
            connection: 1,
            link: LinkId(1),
        };
        q.add_consumer(id, tx, false, None, None, false);
        q.set_credit(id, u32::MAX, None);
        b.iter(|| {
            q.enqueue(m.clone()).unwrap();
            match rx.try_recv() {
                Ok(Outbound::Deliver(d)) => {
                    black_box(&d.message);
                    d.queue
                        .settle(d.entry, Settlement::Accepted, Instant::now());
                }
                other => panic!("expected a delivery, got {other:?}"),
            }
        })
    });
    g.finish();
}

criterion_group!(benches, route);
criterion_main!(benches);
