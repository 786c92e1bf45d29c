//! The broker end to end over loopback sockets, with Ferry's client-role engine as the peer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;
use ferry::broker::BrokerConfig;
use ferry::proto::Event;
use ferry_codec::definitions::ErrorCondition;
use ferry_codec::delivery_state::{Accepted, DeliveryState, Modified, Released};
use ferry_codec::messaging::Source;
use ferry_codec::types::Str;

fn src(address: &str) -> Source {
    Source {
        address: Some(Str::from(address)),
        ..Default::default()
    }
}

#[tokio::test]
async fn messages_go_through_a_queue_in_order_and_are_accepted() {
    let server = start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let mut producer = TestClient::connect(addr).await;
    let tx = producer.sender(Some("orders")).await;
    producer
        .send_many(tx, 200, |i| text_message(None, &format!("m{i}")))
        .await;
    let mut accepted = 0;
    while accepted < 200 {
        let e = producer
            .wait_for(|e| matches!(e, Event::Disposition { .. }))
            .await;
        if let Event::Disposition {
            settled: true,
            state: Some(DeliveryState::Accepted(_)),
            ..
        } = e
        {
            accepted += 1;
        }
    }
    let mut consumer = TestClient::connect(addr).await;
    let rx = consumer.receiver(src("orders")).await;
    consumer.engine.grant_credit(rx, 500, false).unwrap();
    let mut got = Vec::new();
    while got.len() < 200 {
        consumer.pump(Duration::from_millis(10)).await;
        for d in consumer.deliveries() {
            got.push(body_of(&d.message));
            consumer
                .engine
                .settle_incoming(rx, d.delivery_id, DeliveryState::Accepted(Accepted {}))
                .unwrap();
        }
    }
    let expected: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    assert_eq!(got, expected);
    consumer.settle_for(Duration::from_millis(100)).await;
    let q = server.broker.get("orders").unwrap();
    assert_eq!(q.stats().ready + q.stats().unacked, 0);
    server.stop().await;
}

#[tokio::test]
async fn competing_consumers_each_get_every_message_once() {
    let server = start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let mut consumers = Vec::new();
    for _ in 0..3 {
        let mut c = TestClient::connect(addr).await;
        let rx = c.receiver(src("work")).await;
        c.engine.grant_credit(rx, 20, false).unwrap();
        c.pump(Duration::from_millis(10)).await;
        consumers.push((c, rx));
    }
    let mut producer = TestClient::connect(addr).await;
    let tx = producer.sender(Some("work")).await;
    producer
        .send_many(tx, 300, |i| text_message(None, &format!("job{i}")))
        .await;
    let mut seen = std::collections::BTreeSet::new();
    let mut per = vec![0usize; 3];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < 300 {
        assert!(tokio::time::Instant::now() < deadline, "got {}", seen.len());
        producer.pump(Duration::from_millis(1)).await;
        for (i, (c, rx)) in consumers.iter_mut().enumerate() {
            c.pump(Duration::from_millis(5)).await;
            for d in c.deliveries() {
                assert!(seen.insert(body_of(&d.message)), "delivered twice");
                per[i] += 1;
                c.engine
                    .settle_incoming(*rx, d.delivery_id, DeliveryState::Accepted(Accepted {}))
                    .unwrap();
            }
            let credit = c.engine.credit(*rx).unwrap();
            if credit < 10 {
                c.engine.grant_credit(*rx, 20, false).unwrap();
            }
        }
    }
    assert_eq!(seen.len(), 300);
    assert!(
        per.iter().all(|n| *n > 0),
        "round-robin reached every consumer: {per:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn request_reply_through_a_dynamic_queue_and_anonymous_relay() {
    let server = start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let mut requester = TestClient::connect(addr).await;
    let reply_link = requester
        .engine
        .attach(
            requester.session.unwrap(),
            ferry::proto::LinkSpec {
                name: Str::from("replies"),
                role: ferry_codec::definitions::Role::Receiver,
                source: Some(Source {
                    dynamic: true,
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .unwrap();
    let Event::Attached { attach, .. } = requester
        .wait_for(|e| matches!(e, Event::Attached { link, .. } if *link == reply_link))
        .await
    else {
        panic!()
    };
    let reply_to = attach.source.unwrap().address.unwrap().to_string();
    assert!(reply_to.starts_with(ferry::broker::DYNAMIC_PREFIX));
    requester
        .engine
        .grant_credit(reply_link, 10, false)
        .unwrap();

    // The responder answers through an anonymous-relay sender, routing on `to`.
    let mut responder = TestClient::connect(addr).await;
    let anon = responder.sender(None).await;
    responder
        .send_many(anon, 1, |_| text_message(Some(&reply_to), "pong"))
        .await;
    let e = responder
        .wait_for(|e| matches!(e, Event::Disposition { .. }))
        .await;
    assert!(matches!(
        e,
        Event::Disposition {
            state: Some(DeliveryState::Accepted(_)),
            ..
        }
    ));

    requester
        .wait_for(|e| matches!(e, Event::Delivery(_)))
        .await;
    // A `to` that resolves nowhere is rejected with not-found; the link stays.
    responder
        .send_many(anon, 1, |_| text_message(Some("no-such-queue"), "lost"))
        .await;
    let e = responder
        .wait_for(|e| matches!(e, Event::Disposition { .. }))
        .await;
    let Event::Disposition {
        state: Some(DeliveryState::Rejected(r)),
        ..
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!(r.error.unwrap().condition, ErrorCondition::NotFound);
    responder
        .send_many(anon, 1, |_| text_message(Some(&reply_to), "again"))
        .await;
    requester
        .wait_for(|e| matches!(e, Event::Delivery(_)))
        .await;

    // The reply queue goes away with its link (delete-on-close).
    requester.engine.detach(reply_link, true, None).unwrap();
    requester.settle_for(Duration::from_millis(200)).await;
    assert!(server.broker.get(&reply_to).is_none());
    server.stop().await;
}

#[tokio::test]
async fn released_and_modified_messages_come_back_with_the_right_delivery_count() {
    let server = start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let mut c = TestClient::connect(addr).await;
    let tx = c.sender(Some("retry")).await;
    c.send_many(tx, 1, |_| text_message(None, "x")).await;
    let rx = c.receiver(src("retry")).await;
    c.engine.grant_credit(rx, 1, false).unwrap();
    let Event::Delivery(d) = c.wait_for(|e| matches!(e, Event::Delivery(_))).await else {
        panic!()
    };
    assert_eq!(d.message.header().unwrap().delivery_count, 0);
    c.engine
        .settle_incoming(rx, d.delivery_id, DeliveryState::Released(Released {}))
        .unwrap();
    c.engine.grant_credit(rx, 1, false).unwrap();
    let Event::Delivery(d) = c.wait_for(|e| matches!(e, Event::Delivery(_))).await else {
        panic!()
    };
    assert_eq!(
        d.message.header().unwrap().delivery_count,
        0,
        "released: unchanged"
    );
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
    c.engine.grant_credit(rx, 1, false).unwrap();
    let Event::Delivery(d) = c.wait_for(|e| matches!(e, Event::Delivery(_))).await else {
        panic!()
    };
    assert_eq!(
        d.message.header().unwrap().delivery_count,
        1,
        "modified: one failed attempt"
    );
    assert_eq!(body_of(&d.message), "x", "the bare message is untouched");
    server.stop().await;
}

#[tokio::test]
async fn unsettled_messages_of_a_lost_consumer_go_to_another() {
    let server = start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let mut p = TestClient::connect(addr).await;
    let tx = p.sender(Some("handover")).await;
    p.send_many(tx, 5, |i| text_message(None, &format!("h{i}")))
        .await;
    p.settle_for(Duration::from_millis(50)).await;

    let mut first = TestClient::connect(addr).await;
    let rx = first.receiver(src("handover")).await;
    first.engine.grant_credit(rx, 5, false).unwrap();
    while first.deliveries().len() < 5 {
        first.pump(Duration::from_millis(10)).await;
        if first
            .events
            .iter()
            .filter(|e| matches!(e, Event::Delivery(_)))
            .count()
            == 5
        {
            break;
        }
    }
    drop(first); // the socket closes without settling anything

    let mut second = TestClient::connect(addr).await;
    let rx2 = second.receiver(src("handover")).await;
    second.engine.grant_credit(rx2, 10, false).unwrap();
    let mut got = Vec::new();
    while got.len() < 5 {
        second.pump(Duration::from_millis(10)).await;
        for d in second.deliveries() {
            assert_eq!(d.message.header().unwrap().delivery_count, 1);
            got.push(body_of(&d.message));
        }
    }
    got.sort();
    assert_eq!(got, vec!["h0", "h1", "h2", "h3", "h4"]);
    server.stop().await;
}

#[tokio::test]
async fn coordinator_attach_is_refused_with_not_implemented() {
    let server = start_broker(BrokerConfig::default()).await;
    let mut c = TestClient::connect(server.addresses[0]).await;
    let link = c
        .engine
        .attach(
            c.session.unwrap(),
            ferry::proto::LinkSpec {
                name: Str::from("txn-ctrl"),
                role: ferry_codec::definitions::Role::Sender,
                target: Some(ferry_codec::messaging::TargetKind::Coordinator(
                    Default::default(),
                )),
                ..Default::default()
            },
        )
        .unwrap();
    let e = c
        .wait_for(|e| matches!(e, Event::Detached { link: l, .. } if *l == link))
        .await;
    let Event::Detached { closed, error, .. } = e else {
        panic!()
    };
    assert!(closed);
    assert_eq!(error.unwrap().condition, ErrorCondition::NotImplemented);
    server.stop().await;
}

#[tokio::test]
async fn a_message_undeliverable_here_does_not_hold_back_the_messages_behind_it() {
    let server = start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let mut c = TestClient::connect(addr).await;
    let tx = c.sender(Some("skip")).await;
    c.send_many(tx, 2, |i| text_message(None, ["u", "r"][i]))
        .await;
    let rx = c.receiver(src("skip")).await;
    c.engine.grant_credit(rx, 2, false).unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let Event::Delivery(d) = c.wait_for(|e| matches!(e, Event::Delivery(_))).await else {
            panic!()
        };
        got.push(d);
    }
    // The head of the queue may never come back to this link; the one behind it must.
    let undeliverable = DeliveryState::Modified(Modified {
        undeliverable_here: Some(true),
        ..Default::default()
    });
    c.engine
        .settle_incoming(rx, got[0].delivery_id, undeliverable)
        .unwrap();
    c.engine
        .settle_incoming(rx, got[1].delivery_id, DeliveryState::Released(Released {}))
        .unwrap();
    c.engine.grant_credit(rx, 2, false).unwrap();
    let Event::Delivery(d) = c.wait_for(|e| matches!(e, Event::Delivery(_))).await else {
        panic!()
    };
    assert_eq!(body_of(&d.message), "r");
    c.settle_for(Duration::from_millis(100)).await;
    assert!(
        c.deliveries().is_empty(),
        "u is not offered to this link again"
    );
    server.stop().await;
}
