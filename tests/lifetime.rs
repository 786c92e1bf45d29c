//! Message lifetime over loopback: expiry (message and queue TTL, the ttl a consumer sees),
//! dead-lettering with its reasons (rejected, expired, max-delivery-count), no loops, and a
//! dead-letter move that survives a restart.

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
    BrokerConfig, DEADLETTER_DESCRIPTION, DEADLETTER_REASON, DEADLETTER_SOURCE, DeclaredQueue,
    QueuePolicy,
};
use ferry::proto::{Event, LinkId};
use ferry_codec::definitions::{Error, ErrorCondition};
use ferry_codec::delivery_state::{Accepted, DeliveryState, Modified, Rejected};
use ferry_codec::messaging::{Data, Header, Message, Section, Source};
use ferry_codec::types::{Str, Value};

fn message(tag: &str, header: Header) -> Message {
    Message::from_sections(&[
        Section::Header(header),
        Section::Data(Data(Bytes::copy_from_slice(tag.as_bytes()))),
    ])
    .unwrap()
}

fn annotation(m: &Message, key: &str) -> Option<String> {
    let map = m.message_annotations().unwrap()?;
    map.0.iter().find_map(|(k, v)| match (k, v) {
        (Value::Symbol(s), Value::String(v)) if s.as_str() == key => Some(v.to_string()),
        _ => None,
    })
}

fn src(address: &str) -> Source {
    Source {
        address: Some(Str::from(address)),
        ..Default::default()
    }
}

fn declared(name: &str, policy: QueuePolicy) -> DeclaredQueue {
    DeclaredQueue {
        name: name.into(),
        durable: true,
        policy,
        ..Default::default()
    }
}

/// Waits for `n` deliveries on `link` and returns them, unsettled.
async fn take(c: &mut TestClient, link: LinkId, n: usize) -> Vec<ferry::proto::IncomingDelivery> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "got {} of {n} on {link:?}; events {:?}",
            got.len(),
            c.events
        );
        c.pump(Duration::from_millis(10)).await;
        got.extend(c.deliveries().into_iter().filter(|d| d.link == link));
    }
    got
}

async fn send(c: &mut TestClient, tx: LinkId, messages: Vec<Message>) {
    let n = messages.len();
    c.send_many(tx, n, |i| messages[i].clone()).await;
    for _ in 0..n {
        c.wait_for(|e| matches!(e, Event::Disposition { settled: true, .. }))
            .await;
    }
}

#[tokio::test]
async fn rejected_messages_go_to_the_dead_letter_queue_with_their_reason() {
    let cfg = BrokerConfig {
        declared: vec![declared(
            "work",
            QueuePolicy {
                dead_letter_queue: Some("work.dead".into()),
                ..Default::default()
            },
        )],
        ..Default::default()
    };
    let server = start_broker(cfg).await;
    let mut c = TestClient::connect(server.addresses[0]).await;
    let tx = c.sender(Some("work")).await;
    send(&mut c, tx, vec![message("a", Header::default())]).await;
    let rx = c.receiver(src("work")).await;
    c.engine.grant_credit(rx, 10, false).unwrap();
    let d = take(&mut c, rx, 1).await.remove(0);
    c.engine
        .settle_incoming(
            rx,
            d.delivery_id,
            DeliveryState::Rejected(Rejected {
                error: Some(Error::new(ErrorCondition::InternalError, "cannot parse it")),
            }),
        )
        .unwrap();
    let dead = c.receiver(src("work.dead")).await;
    c.engine.grant_credit(dead, 10, false).unwrap();
    let d = take(&mut c, dead, 1).await.remove(0);
    assert_eq!(body_of(&d.message), "a");
    assert_eq!(
        annotation(&d.message, DEADLETTER_REASON).as_deref(),
        Some("rejected")
    );
    assert_eq!(
        annotation(&d.message, DEADLETTER_DESCRIPTION).as_deref(),
        Some("cannot parse it")
    );
    assert_eq!(
        annotation(&d.message, DEADLETTER_SOURCE).as_deref(),
        Some("work")
    );
    assert_eq!(
        server.broker.get("work").unwrap().dead_letter_counts(),
        (1, 0)
    );
    server.stop().await;
}

#[tokio::test]
async fn expired_messages_are_never_delivered_and_are_dead_lettered() {
    let cfg = BrokerConfig {
        declared: vec![
            declared(
                "short",
                QueuePolicy {
                    dead_letter_queue: Some("short.dead".into()),
                    ..Default::default()
                },
            ),
            declared(
                "default-ttl",
                QueuePolicy {
                    message_ttl: Some(Duration::from_millis(100)),
                    ..Default::default()
                },
            ),
        ],
        ..Default::default()
    };
    let server = start_broker(cfg).await;
    let mut c = TestClient::connect(server.addresses[0]).await;
    let tx = c.sender(Some("short")).await;
    let ttl = |ms| Header {
        ttl: Some(ms),
        ..Default::default()
    };
    send(
        &mut c,
        tx,
        vec![message("gone", ttl(100)), message("kept", ttl(600_000))],
    )
    .await;
    let tx2 = c.sender(Some("default-ttl")).await;
    send(&mut c, tx2, vec![message("also gone", Header::default())]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let rx = c.receiver(src("short")).await;
    c.engine.grant_credit(rx, 10, false).unwrap();
    let d = take(&mut c, rx, 1).await.remove(0);
    assert_eq!(body_of(&d.message), "kept");
    // The ttl the consumer sees is what was left of it.
    let left = d.message.header().unwrap().ttl.unwrap();
    assert!(left > 0 && left < 600_000, "ttl {left}");
    c.settle_for(Duration::from_millis(200)).await;
    assert!(
        c.deliveries().is_empty(),
        "an expired message was delivered"
    );

    let dead = c.receiver(src("short.dead")).await;
    c.engine.grant_credit(dead, 10, false).unwrap();
    let d = take(&mut c, dead, 1).await.remove(0);
    assert_eq!(body_of(&d.message), "gone");
    assert_eq!(
        annotation(&d.message, DEADLETTER_REASON).as_deref(),
        Some("expired")
    );

    // Expired without any consumer (housekeeping), and with no dead-letter queue: dropped.
    let q = server.broker.get("default-ttl").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while q.stats().ready > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(q.stats().ready, 0);
    assert_eq!(q.dead_letter_counts(), (0, 1));
    server.stop().await;
}

#[tokio::test]
async fn max_delivery_count_dead_letters_and_dead_letters_never_loop() {
    let cfg = BrokerConfig {
        declared: vec![
            declared(
                "a",
                QueuePolicy {
                    max_delivery_count: Some(3),
                    dead_letter_queue: Some("b".into()),
                    ..Default::default()
                },
            ),
            // b dead-letters back into a: a dead letter from b must be dropped, not looped.
            declared(
                "b",
                QueuePolicy {
                    dead_letter_queue: Some("a".into()),
                    ..Default::default()
                },
            ),
        ],
        ..Default::default()
    };
    let server = start_broker(cfg).await;
    let mut c = TestClient::connect(server.addresses[0]).await;
    let tx = c.sender(Some("a")).await;
    send(&mut c, tx, vec![message("poison", Header::default())]).await;
    let rx = c.receiver(src("a")).await;
    for attempt in 1..=3u32 {
        c.engine.grant_credit(rx, 1, false).unwrap();
        let d = take(&mut c, rx, 1).await.remove(0);
        assert_eq!(d.message.header().unwrap().delivery_count, attempt - 1);
        c.engine
            .settle_incoming(
                rx,
                d.delivery_id,
                DeliveryState::Modified(Modified {
                    delivery_failed: Some(true),
                    ..Default::default()
                }),
            )
            .unwrap();
    }
    let rb = c.receiver(src("b")).await;
    c.engine.grant_credit(rb, 10, false).unwrap();
    let d = take(&mut c, rb, 1).await.remove(0);
    assert_eq!(
        annotation(&d.message, DEADLETTER_REASON).as_deref(),
        Some("max-delivery-count")
    );
    assert_eq!(d.message.header().unwrap().delivery_count, 3);
    c.engine
        .settle_incoming(
            rb,
            d.delivery_id,
            DeliveryState::Rejected(Rejected { error: None }),
        )
        .unwrap();
    c.settle_for(Duration::from_millis(300)).await;
    let (a, b) = (
        server.broker.get("a").unwrap(),
        server.broker.get("b").unwrap(),
    );
    assert_eq!(a.dead_letter_counts(), (1, 0));
    assert_eq!(b.dead_letter_counts(), (0, 1));
    assert_eq!(a.stats().ready + b.stats().ready, 0);
    c.engine.grant_credit(rx, 10, false).unwrap();
    c.settle_for(Duration::from_millis(200)).await;
    assert!(c.deliveries().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_dead_letter_move_survives_a_restart() {
    let dir: PathBuf = std::env::temp_dir().join(format!("ferry-lifetime-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = BrokerConfig {
        declared: vec![declared(
            "jobs",
            QueuePolicy {
                dead_letter_queue: Some("jobs.dead".into()),
                ..Default::default()
            },
        )],
        ..Default::default()
    };
    let server = start_durable(&dir, cfg.clone()).await;
    let mut c = TestClient::connect(server.addresses[0]).await;
    let tx = c.sender(Some("jobs")).await;
    let durable = Header {
        durable: true,
        ..Default::default()
    };
    // "bad" would expire 1.5 s after it was sent; as a dead letter it must not, restart or
    // not.
    let sent = std::time::Instant::now();
    let expiring = Header {
        ttl: Some(1500),
        ..durable.clone()
    };
    send(
        &mut c,
        tx,
        vec![message("bad", expiring), message("good", durable)],
    )
    .await;
    let rx = c.receiver(src("jobs")).await;
    c.engine.grant_credit(rx, 1, false).unwrap();
    let d = take(&mut c, rx, 1).await.remove(0);
    assert_eq!(body_of(&d.message), "bad");
    c.engine
        .settle_incoming(
            rx,
            d.delivery_id,
            DeliveryState::Rejected(Rejected {
                error: Some(Error::new(ErrorCondition::DecodeError, "no schema")),
            }),
        )
        .unwrap();
    c.settle_for(Duration::from_millis(200)).await;
    drop(c);
    server.stop().await;

    let server = start_durable(&dir, cfg).await;
    let past = Duration::from_millis(1600).saturating_sub(sent.elapsed());
    tokio::time::sleep(past).await;
    server.broker.sweep(std::time::Instant::now());
    let mut c = TestClient::connect(server.addresses[0]).await;
    let dead = c.receiver(src("jobs.dead")).await;
    c.engine.grant_credit(dead, 10, false).unwrap();
    let d = take(&mut c, dead, 1).await.remove(0);
    assert_eq!(body_of(&d.message), "bad");
    assert_eq!(
        d.message.header().unwrap().ttl,
        None,
        "a dead letter has no ttl"
    );
    assert_eq!(
        annotation(&d.message, DEADLETTER_REASON).as_deref(),
        Some("rejected")
    );
    assert_eq!(
        annotation(&d.message, DEADLETTER_DESCRIPTION).as_deref(),
        Some("no schema")
    );
    c.engine
        .settle_incoming(dead, d.delivery_id, DeliveryState::Accepted(Accepted {}))
        .unwrap();
    let rx = c.receiver(src("jobs")).await;
    c.engine.grant_credit(rx, 10, false).unwrap();
    let d = take(&mut c, rx, 1).await.remove(0);
    assert_eq!(body_of(&d.message), "good");
    c.settle_for(Duration::from_millis(200)).await;
    assert!(c.deliveries().is_empty());
    drop(c);
    server.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Delivery is by priority level, FIFO within a level; 4 when absent, above 9 counts as 9.
#[tokio::test]
async fn higher_priorities_are_delivered_first_and_fifo_within_a_level() {
    let server = start_broker(BrokerConfig::default()).await;
    let mut c = TestClient::connect(server.addresses[0]).await;
    let tx = c.sender(Some("prio")).await;
    let p = |n: u8| Header {
        priority: n,
        ..Default::default()
    };
    let sent = vec![
        message("a4", p(4)),
        message("b9", p(9)),
        message("c0", p(0)),
        message("d200", p(200)),
        message("e4", p(4)),
        message("f7", p(7)),
    ];
    send(&mut c, tx, sent).await;
    let rx = c.receiver(src("prio")).await;
    c.engine.grant_credit(rx, 10, false).unwrap();
    let got: Vec<String> = take(&mut c, rx, 6)
        .await
        .iter()
        .map(|d| body_of(&d.message))
        .collect();
    assert_eq!(got, ["b9", "d200", "f7", "a4", "e4", "c0"]);
    server.stop().await;
}

/// At its limit, `reject-publish` refuses each message that does not fit, and `drop-head`
/// dead-letters the oldest to make room (reason `maxlen`).
#[tokio::test]
async fn overflow_rejects_publish_or_drops_the_head() {
    use ferry::broker::{Overflow, QueueLimits};
    let limited = |name: &str, overflow, dlq: Option<&str>| DeclaredQueue {
        name: name.into(),
        limits: QueueLimits {
            max_length: 3,
            ..Default::default()
        },
        policy: QueuePolicy {
            overflow,
            dead_letter_queue: dlq.map(str::to_string),
            ..Default::default()
        },
        ..Default::default()
    };
    let cfg = BrokerConfig {
        declared: vec![
            limited("strict", Overflow::RejectPublish, None),
            limited("latest", Overflow::DropHead, Some("latest.dead")),
        ],
        ..Default::default()
    };
    let server = start_broker(cfg).await;
    let mut c = TestClient::connect(server.addresses[0]).await;
    let tx = c.sender(Some("strict")).await;
    c.send_many(tx, 5, |i| message(&format!("s{i}"), Header::default()))
        .await;
    let mut outcomes = Vec::new();
    while outcomes.len() < 5 {
        if let Event::Disposition {
            state: Some(state), ..
        } = c.wait_for(|e| matches!(e, Event::Disposition { .. })).await
        {
            outcomes.push(state);
        }
    }
    let accepted = outcomes
        .iter()
        .filter(|o| matches!(o, DeliveryState::Accepted(_)))
        .count();
    assert_eq!(accepted, 3, "{outcomes:?}");
    assert!(outcomes.iter().any(|o| matches!(
        o,
        DeliveryState::Rejected(Rejected { error: Some(e) })
            if e.condition == ErrorCondition::ResourceLimitExceeded
    )));

    let tx = c.sender(Some("latest")).await;
    send(
        &mut c,
        tx,
        (0..5)
            .map(|i| message(&format!("l{i}"), Header::default()))
            .collect(),
    )
    .await;
    let rx = c.receiver(src("latest")).await;
    c.engine.grant_credit(rx, 10, false).unwrap();
    let got: Vec<String> = take(&mut c, rx, 3)
        .await
        .iter()
        .map(|d| body_of(&d.message))
        .collect();
    assert_eq!(got, ["l2", "l3", "l4"]);
    let dead = c.receiver(src("latest.dead")).await;
    c.engine.grant_credit(dead, 10, false).unwrap();
    let d = take(&mut c, dead, 2).await;
    assert_eq!(body_of(&d[0].message), "l0");
    assert_eq!(
        annotation(&d[0].message, DEADLETTER_REASON).as_deref(),
        Some("maxlen")
    );
    server.stop().await;
}
