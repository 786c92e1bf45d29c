//! Time-driven delivery over loopback: a lock (claim TTL) running out hands the message to
//! another worker with delivery-count + 1 and settles the first delivery as released, a late
//! outcome for it is ignored; scheduled messages are held until their time (absolute time
//! under either annotation, or a delay), also across a restart.
//!
//! These assert order and what arrives, and that nothing arrives before its time; never how
//! fast anything is.

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
use ferry::broker::{
    BrokerConfig, DELIVERY_DELAY, DELIVERY_TIME, DeclaredQueue, QueuePolicy, SCHEDULED_ENQUEUE_TIME,
};
use ferry::proto::{Event, LinkId};
use ferry_codec::delivery_state::{Accepted, DeliveryState};
use ferry_codec::messaging::{Data, Header, Message, MessageAnnotations, Section, Source};
use ferry_codec::types::{Map, Str, Symbol, Timestamp, Value};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn message(tag: &str, durable: bool, annotation: Option<(&'static str, Value)>) -> Message {
    let mut sections = vec![Section::Header(Header {
        durable,
        ..Default::default()
    })];
    if let Some((k, v)) = annotation {
        let mut m = Map::new();
        m.push(Value::Symbol(Symbol::from_static(k)), v);
        sections.push(Section::MessageAnnotations(MessageAnnotations(m)));
    }
    sections.push(Section::Data(Data(Bytes::copy_from_slice(tag.as_bytes()))));
    Message::from_sections(&sections).unwrap()
}

fn src(address: &str) -> Source {
    Source {
        address: Some(Str::from(address)),
        ..Default::default()
    }
}

fn locked(name: &str, lock: Duration, max_delivery_count: Option<u32>) -> BrokerConfig {
    BrokerConfig {
        declared: vec![DeclaredQueue {
            name: name.into(),
            durable: true,
            policy: QueuePolicy {
                lock_duration: Some(lock),
                max_delivery_count,
                dead_letter_queue: Some(format!("{name}.dead")),
                ..Default::default()
            },
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn send(c: &mut TestClient, address: &str, messages: Vec<Message>) {
    let tx = c.sender(Some(address)).await;
    let n = messages.len();
    c.send_many(tx, n, |i| messages[i].clone()).await;
    for _ in 0..n {
        c.wait_for(|e| matches!(e, Event::Disposition { settled: true, .. }))
            .await;
    }
}

/// Waits (up to `limit`) for `n` deliveries on `link`; each with the time it arrived (ms).
async fn take(
    c: &mut TestClient,
    link: LinkId,
    n: usize,
    limit: Duration,
) -> Vec<(ferry::proto::IncomingDelivery, i64)> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while got.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "got {} of {n} on {link:?}",
            got.len()
        );
        c.pump(Duration::from_millis(5)).await;
        let at = now_ms();
        got.extend(
            c.deliveries()
                .into_iter()
                .filter(|d| d.link == link)
                .map(|d| (d, at)),
        );
    }
    got
}

#[tokio::test]
async fn an_expired_lock_gives_the_message_to_another_worker_and_ignores_the_late_outcome() {
    let server = start_broker(locked("jobs", Duration::from_millis(400), None)).await;
    let addr = server.addresses[0];
    let mut producer = TestClient::connect(addr).await;
    send(&mut producer, "jobs", vec![message("job-1", false, None)]).await;

    let mut slow = TestClient::connect(addr).await;
    let s = slow.receiver(src("jobs")).await;
    slow.engine.grant_credit(s, 1, false).unwrap();
    let (first, _) = take(&mut slow, s, 1, Duration::from_secs(5))
        .await
        .remove(0);
    assert_eq!(first.message.header().unwrap().delivery_count, 0);
    // The second worker has credit but nothing to take while the first holds the lock.
    let mut fast = TestClient::connect(addr).await;
    let f = fast.receiver(src("jobs")).await;
    fast.engine.grant_credit(f, 5, false).unwrap();

    // The lock runs out: the broker settles the first delivery as released...
    let e = slow
        .wait_for(|e| matches!(e, Event::Disposition { link, .. } if *link == s))
        .await;
    let Event::Disposition {
        delivery_id,
        settled,
        state,
        ..
    } = e
    else {
        unreachable!()
    };
    assert_eq!(delivery_id, first.delivery_id);
    assert!(settled);
    assert!(
        matches!(state, Some(DeliveryState::Released(_))),
        "{state:?}"
    );
    // ...and the other worker gets the message, one failed delivery later.
    let (second, _) = take(&mut fast, f, 1, Duration::from_secs(5))
        .await
        .remove(0);
    assert_eq!(body_of(&second.message), "job-1");
    assert_eq!(second.message.header().unwrap().delivery_count, 1);

    // The first worker's late accept finds nothing: the message is still the second's.
    let _ = slow
        .engine
        .settle_incoming(s, first.delivery_id, DeliveryState::Accepted(Accepted {}));
    slow.settle_for(Duration::from_millis(100)).await;
    let q = server.broker.get("jobs").unwrap();
    assert_eq!(q.stats().unacked, 1);
    fast.engine
        .settle_incoming(f, second.delivery_id, DeliveryState::Accepted(Accepted {}))
        .unwrap();
    fast.settle_for(Duration::from_millis(100)).await;
    let stats = q.stats();
    assert_eq!((stats.ready, stats.unacked), (0, 0));
    server.stop().await;
}

#[tokio::test]
async fn a_message_whose_lock_keeps_running_out_is_dead_lettered_at_the_max() {
    let server = start_broker(locked("jobs", Duration::from_millis(200), Some(2))).await;
    let addr = server.addresses[0];
    let mut c = TestClient::connect(addr).await;
    send(&mut c, "jobs", vec![message("stuck", false, None)]).await;
    let rx = c.receiver(src("jobs")).await;
    c.engine.grant_credit(rx, 10, false).unwrap();
    // Delivered twice (counts 0 and 1), never settled; then it is dead-lettered.
    let got = take(&mut c, rx, 2, Duration::from_secs(10)).await;
    let counts: Vec<u32> = got
        .iter()
        .map(|(d, _)| d.message.header().unwrap().delivery_count)
        .collect();
    assert_eq!(counts, vec![0, 1]);
    let dead = c.receiver(src("jobs.dead")).await;
    c.engine.grant_credit(dead, 10, false).unwrap();
    let (d, _) = take(&mut c, dead, 1, Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!(body_of(&d.message), "stuck");
    server.stop().await;
}

#[tokio::test]
async fn scheduled_messages_wait_for_their_time_and_then_go_in_due_order() {
    let server = start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let t0 = now_ms();
    let mut p = TestClient::connect(addr).await;
    send(
        &mut p,
        "later",
        vec![
            message(
                "at-900",
                false,
                Some((
                    SCHEDULED_ENQUEUE_TIME,
                    Value::Timestamp(Timestamp(t0 + 900)),
                )),
            ),
            message("now", false, None),
            message(
                "at-500",
                false,
                Some((DELIVERY_TIME, Value::Long(t0 + 500))),
            ),
            message("delay-300", false, Some((DELIVERY_DELAY, Value::Long(300)))),
            // A time in the past is no hold at all.
            message(
                "past",
                false,
                Some((
                    SCHEDULED_ENQUEUE_TIME,
                    Value::Timestamp(Timestamp(t0 - 1000)),
                )),
            ),
        ],
    )
    .await;
    let mut c = TestClient::connect(addr).await;
    let rx = c.receiver(src("later")).await;
    c.engine.grant_credit(rx, 10, false).unwrap();
    let got = take(&mut c, rx, 5, Duration::from_secs(10)).await;
    let order: Vec<String> = got.iter().map(|(d, _)| body_of(&d.message)).collect();
    assert_eq!(order, vec!["now", "past", "delay-300", "at-500", "at-900"]);
    for (d, at) in &got {
        let due = match body_of(&d.message).as_str() {
            "delay-300" => t0 + 300,
            "at-500" => t0 + 500,
            "at-900" => t0 + 900,
            _ => continue,
        };
        assert!(
            *at >= due,
            "{} arrived {} ms early",
            body_of(&d.message),
            due - at
        );
    }
    server.stop().await;
}

fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferry-timing-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test]
async fn a_durable_scheduled_message_keeps_its_time_across_a_restart() {
    let dir = data_dir("restart");
    // Far enough ahead that the restart is over before it is due.
    let due = now_ms() + 3000;
    {
        let server = start_durable(&dir, BrokerConfig::default()).await;
        let mut p = TestClient::connect(server.addresses[0]).await;
        send(
            &mut p,
            "later",
            vec![
                message(
                    "scheduled",
                    true,
                    Some((SCHEDULED_ENQUEUE_TIME, Value::Timestamp(Timestamp(due)))),
                ),
                message("plain", true, None),
            ],
        )
        .await;
        drop(p);
        server.stop().await;
    }
    let server = start_durable(&dir, BrokerConfig::default()).await;
    assert!(now_ms() < due, "the restart took too long for this test");
    let mut c = TestClient::connect(server.addresses[0]).await;
    let rx = c.receiver(src("later")).await;
    c.engine.grant_credit(rx, 10, false).unwrap();
    let got = take(&mut c, rx, 2, Duration::from_secs(10)).await;
    assert_eq!(body_of(&got[0].0.message), "plain");
    assert_eq!(body_of(&got[1].0.message), "scheduled");
    assert!(got[1].1 >= due, "arrived {} ms early", due - got[1].1);
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
