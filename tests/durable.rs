//! Durable queues end to end, in process, over loopback: restarts keep exactly the unsettled
//! durable messages in order, and a backlog beyond a queue's memory share waits on disk and
//! comes back in order.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use ferry::broker::BrokerConfig;
use ferry::proto::{Event, LinkId};
use ferry_codec::delivery_state::{Accepted, DeliveryState};
use ferry_codec::messaging::{Data, Header, Message, Section, Source};
use ferry_codec::types::Str;

fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferry-durable-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A message with `durable` set as asked and a body of `size` bytes starting with `tag`.
fn message(tag: &str, durable: bool, size: usize) -> Message {
    let mut body = tag.as_bytes().to_vec();
    body.push(b'|');
    body.resize(size.max(body.len()), b'.');
    Message::from_sections(&[
        Section::Header(Header {
            durable,
            ..Default::default()
        }),
        Section::Data(Data(Bytes::from(body))),
    ])
    .unwrap()
}

fn tag_of(m: &Message) -> String {
    let body = body_of(m);
    body.split('|').next().unwrap().to_string()
}

/// Sends `n` messages made by `make` and waits until every one is accepted.
async fn send_accepted(
    c: &mut TestClient,
    link: LinkId,
    n: usize,
    make: impl Fn(usize) -> Message,
) {
    c.send_many(link, n, make).await;
    let mut accepted = 0;
    while accepted < n {
        let e = c.wait_for(|e| matches!(e, Event::Disposition { .. })).await;
        match e {
            Event::Disposition {
                settled: true,
                state: Some(DeliveryState::Accepted(_)),
                ..
            } => accepted += 1,
            other => panic!("not accepted: {other:?}"),
        }
    }
}

/// Receives `n` messages from `address`, accepting each, and returns their tags in order.
async fn receive(c: &mut TestClient, address: &str, n: usize) -> Vec<String> {
    let rx = c
        .receiver(Source {
            address: Some(Str::from(address)),
            ..Default::default()
        })
        .await;
    // Never more credit than messages wanted, so any extra one would be a failure.
    let window = n.min(500) as u32;
    c.engine.grant_credit(rx, window, false).unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "got {} of {n}",
            got.len()
        );
        c.pump(Duration::from_millis(10)).await;
        for d in c.deliveries() {
            got.push(tag_of(&d.message));
            c.engine
                .settle_incoming(rx, d.delivery_id, DeliveryState::Accepted(Accepted {}))
                .unwrap();
        }
        let left = (n - got.len()) as u32;
        if c.engine.credit(rx).unwrap_or(0) < window / 2 && left > 0 {
            c.engine.grant_credit(rx, left.min(window), false).unwrap();
        }
    }
    // Nothing more than that.
    c.settle_for(Duration::from_millis(300)).await;
    assert!(c.deliveries().is_empty(), "more than {n} messages");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_exactly_the_unsettled_durable_messages_in_order() {
    let dir = data_dir("restart");
    let server = start_durable(&dir, BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let mut p = TestClient::connect(addr).await;
    let tx = p.sender(Some("orders")).await;
    // Durable and transient messages interleaved: only the durable ones are kept.
    send_accepted(&mut p, tx, 300, |i| {
        message(&format!("m{i}"), i % 3 != 2, 200)
    })
    .await;
    let mut c = TestClient::connect(addr).await;
    let first = receive(&mut c, "orders", 50).await;
    let want_first: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    assert_eq!(first, want_first);
    drop(c);
    drop(p);
    server.stop().await;

    let server = start_durable(&dir, BrokerConfig::default()).await;
    let q = server
        .broker
        .get("orders")
        .expect("the durable queue came back");
    let want: Vec<String> = (50..300)
        .filter(|i| i % 3 != 2)
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(q.stats().ready, want.len());
    let mut c = TestClient::connect(server.addresses[0]).await;
    assert_eq!(receive(&mut c, "orders", want.len()).await, want);
    drop(c);
    server.stop().await;

    // Settled before the stop: gone for good.
    let server = start_durable(&dir, BrokerConfig::default()).await;
    assert!(
        server
            .broker
            .get("orders")
            .is_none_or(|q| q.stats().ready == 0)
    );
    server.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_beyond_the_memory_share_waits_on_disk_and_comes_back_in_order() {
    let dir = data_dir("paging");
    let cfg = BrokerConfig {
        page_above: 256 << 10,
        ..Default::default()
    };
    let server = start_durable(&dir, cfg.clone()).await;
    let addr = server.addresses[0];
    let mut p = TestClient::connect(addr).await;
    let tx = p.sender(Some("backlog")).await;
    // 8 MiB of durable messages: 32 times the queue's memory share.
    let n = 8_000;
    send_accepted(&mut p, tx, n, |i| message(&format!("m{i}"), true, 1024)).await;
    let q = server.broker.get("backlog").unwrap();
    let stats = q.stats();
    assert_eq!(stats.ready, n);
    let held = server.broker.memory().used();
    assert!(
        held <= (256 << 10) + (64 << 10),
        "{held} bytes held in memory for a 256 KiB share"
    );
    eprintln!("paging: {n} × 1 KiB queued, {held} bytes in memory");
    let mut c = TestClient::connect(addr).await;
    let got = receive(&mut c, "backlog", n).await;
    let want: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
    drop(c);
    drop(p);
    server.stop().await;

    // Paged, then read back while a restart happens in the middle.
    let server = start_durable(&dir, cfg.clone()).await;
    let mut p = TestClient::connect(server.addresses[0]).await;
    let tx = p.sender(Some("backlog")).await;
    send_accepted(&mut p, tx, 3_000, |i| message(&format!("r{i}"), true, 1024)).await;
    let mut c = TestClient::connect(server.addresses[0]).await;
    let first = receive(&mut c, "backlog", 1_000).await;
    assert_eq!(
        first,
        (0..1_000).map(|i| format!("r{i}")).collect::<Vec<_>>()
    );
    drop(c);
    drop(p);
    server.stop().await;
    let server = start_durable(&dir, cfg).await;
    let mut c = TestClient::connect(server.addresses[0]).await;
    let rest = receive(&mut c, "backlog", 2_000).await;
    assert_eq!(
        rest,
        (1_000..3_000).map(|i| format!("r{i}")).collect::<Vec<_>>()
    );
    drop(c);
    server.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A message with `priority` (and durable), body `tag|` padded to 1 KiB.
fn prioritised(tag: &str, priority: u8) -> Message {
    let mut body = tag.as_bytes().to_vec();
    body.push(b'|');
    body.resize(1024, b'.');
    Message::from_sections(&[
        Section::Header(Header {
            durable: true,
            priority,
            ..Default::default()
        }),
        Section::Data(Data(Bytes::from(body))),
    ])
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paged_out_messages_come_back_by_priority_level_also_after_a_restart() {
    let dir = data_dir("priority-paging");
    let cfg = BrokerConfig {
        page_above: 64 << 10,
        ..Default::default()
    };
    let server = start_durable(&dir, cfg.clone()).await;
    let addr = server.addresses[0];
    let mut p = TestClient::connect(addr).await;
    let tx = p.sender(Some("prio")).await;
    // 2,000 low ones (most of them paged out), then high and default ones, all paged out
    // behind the low ones; then more low ones.
    send_accepted(&mut p, tx, 2_000, |i| prioritised(&format!("low{i}"), 1)).await;
    send_accepted(&mut p, tx, 300, |i| {
        if i % 3 == 0 {
            prioritised(&format!("high{}", i / 3), 9)
        } else {
            prioritised(&format!("mid{i}"), 4)
        }
    })
    .await;
    send_accepted(&mut p, tx, 200, |i| prioritised(&format!("late{i}"), 1)).await;
    let expect = |high: std::ops::Range<usize>| -> Vec<String> {
        let mut v: Vec<String> = high.map(|i| format!("high{i}")).collect();
        v.extend((0..300).filter(|i| i % 3 != 0).map(|i| format!("mid{i}")));
        v.extend((0..2_000).map(|i| format!("low{i}")));
        v.extend((0..200).map(|i| format!("late{i}")));
        v
    };
    let mut c = TestClient::connect(addr).await;
    // By level (9, then 4, then 1), FIFO within each, whatever was on disk.
    let first = receive(&mut c, "prio", 50).await;
    assert_eq!(first, expect(0..100)[..50].to_vec());
    drop(c);
    drop(p);
    server.stop().await;

    // After a restart the rest comes back the same way.
    let server = start_durable(&dir, cfg).await;
    let mut c = TestClient::connect(server.addresses[0]).await;
    let rest = receive(&mut c, "prio", 2_450).await;
    assert_eq!(rest, expect(0..100)[50..].to_vec());
    drop(c);
    server.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
