//! Selector filters on queue consumers over loopback: only selected messages reach a
//! consumer, the rest wait for others; both descriptors are accepted and echoed; a selector
//! that does not parse refuses the link with `amqp:invalid-field` and creates nothing. Also
//! browsing (distribution-mode copy), the other way a receiver sees only part of a queue.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use ferry::broker::BrokerConfig;
use ferry::broker::selector::{FILTER_CODE, FILTER_NAME};
use ferry::proto::{Event, LinkId, LinkSpec};
use ferry_codec::definitions::{ErrorCondition, Fields, Role};
use ferry_codec::messaging::{
    ApplicationProperties, Data, Header, Message, Section, Source, Target, TargetKind,
};
use ferry_codec::types::{Described, Map, Str, Symbol, Value};

fn message(tag: &str, color: &str, size: i64) -> Message {
    let mut props = Map::new();
    props.push(
        Value::String(Str::from("color")),
        Value::String(Str::from(color)),
    );
    props.push(Value::String(Str::from("size")), Value::Long(size));
    Message::from_sections(&[
        Section::Header(Header::default()),
        Section::ApplicationProperties(ApplicationProperties(props)),
        Section::Data(Data(Bytes::copy_from_slice(tag.as_bytes()))),
    ])
    .unwrap()
}

fn selector_source(address: &str, selector: &str, numeric: bool) -> Source {
    let descriptor = if numeric {
        Value::Ulong(FILTER_CODE)
    } else {
        Value::Symbol(Symbol::from_static(FILTER_NAME))
    };
    let mut filter = Fields::new();
    filter.push(
        Symbol::from_static("jms-selector"),
        Value::Described(Box::new(Described {
            descriptor,
            value: Value::String(Str::from(selector)),
        })),
    );
    Source {
        address: Some(Str::from(address)),
        filter: Some(filter),
        ..Default::default()
    }
}

/// Attaches a receiver with `source` and returns the link and the broker's attach reply.
async fn attach(c: &mut TestClient, name: &str, source: Source) -> (LinkId, Event) {
    let spec = LinkSpec {
        name: Str::from(name.to_string()),
        role: Role::Receiver,
        source: Some(source),
        target: Some(TargetKind::Target(Target::default())),
        ..Default::default()
    };
    let link = c.engine.attach(c.session.unwrap(), spec).unwrap();
    let reply = c
        .wait_for(|e| matches!(e, Event::Attached { link: l, .. } if *l == link))
        .await;
    (link, reply)
}

async fn receive(c: &mut TestClient, link: LinkId, wait: Duration) -> Vec<String> {
    c.settle_for(wait).await;
    c.deliveries()
        .into_iter()
        .filter(|d| d.link == link)
        .map(|d| body_of(&d.message))
        .collect()
}

#[tokio::test]
async fn each_consumer_gets_only_what_its_selector_selects() {
    let server = start_broker(BrokerConfig::default()).await;
    let mut p = TestClient::connect(server.addresses[0]).await;
    let tx = p.sender(Some("paint")).await;
    let sent = [
        ("m0", "red", 20),
        ("m1", "blue", 20),
        ("m2", "red", 5),
        ("m3", "red", 11),
        ("m4", "green", 99),
    ];
    p.send_many(tx, sent.len(), |i| message(sent[i].0, sent[i].1, sent[i].2))
        .await;
    p.settle_for(Duration::from_millis(100)).await;

    let mut c = TestClient::connect(server.addresses[0]).await;
    let (red, reply) = attach(
        &mut c,
        "red",
        selector_source("paint", "color = 'red' AND size > 10", false),
    )
    .await;
    // The applied filter is echoed.
    let Event::Attached { attach: a, .. } = reply else {
        unreachable!()
    };
    let echoed = a.source.unwrap().filter.unwrap();
    assert!(echoed.get("jms-selector").is_some(), "{echoed:?}");
    c.engine.grant_credit(red, 10, false).unwrap();
    assert_eq!(
        receive(&mut c, red, Duration::from_millis(300)).await,
        ["m0", "m3"]
    );

    // The numeric descriptor works the same; what nobody selects stays queued.
    let (blue, _) = attach(
        &mut c,
        "blue",
        selector_source("paint", "color IN ('blue')", true),
    )
    .await;
    c.engine.grant_credit(blue, 10, false).unwrap();
    assert_eq!(
        receive(&mut c, blue, Duration::from_millis(300)).await,
        ["m1"]
    );
    assert_eq!(server.broker.get("paint").unwrap().stats().ready, 2);

    // An unfiltered consumer gets the rest, in order.
    let all = c
        .receiver(Source {
            address: Some(Str::from("paint")),
            ..Default::default()
        })
        .await;
    c.engine.grant_credit(all, 10, false).unwrap();
    assert_eq!(
        receive(&mut c, all, Duration::from_millis(300)).await,
        ["m2", "m4"]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_selector_that_does_not_parse_refuses_the_link_with_invalid_field() {
    let server = start_broker(BrokerConfig::default()).await;
    let mut c = TestClient::connect(server.addresses[0]).await;
    let (link, reply) = attach(
        &mut c,
        "bad",
        selector_source("never-made", "color = = 'red'", false),
    )
    .await;
    let Event::Attached { attach: a, .. } = reply else {
        unreachable!()
    };
    assert!(a.source.is_none(), "a refused link's source is null");
    let detached = c
        .wait_for(|e| matches!(e, Event::Detached { link: l, .. } if *l == link))
        .await;
    let Event::Detached { error, .. } = detached else {
        unreachable!()
    };
    assert_eq!(error.unwrap().condition, ErrorCondition::InvalidField);
    assert!(server.broker.get("never-made").is_none());
    server.stop().await;
}

/// Distribution-mode copy (§3.5.7): browsers read every message, each at its own pace,
/// without taking any; then a consumer takes them all.
#[tokio::test]
async fn browsers_see_every_message_and_leave_it_for_consumers() {
    let server = start_broker(BrokerConfig::default()).await;
    let mut p = TestClient::connect(server.addresses[0]).await;
    let tx = p.sender(Some("shelf")).await;
    p.send_many(tx, 5, |i| message(&format!("b{i}"), "red", i as i64))
        .await;
    p.settle_for(Duration::from_millis(100)).await;
    let browse = || Source {
        address: Some(Str::from("shelf")),
        distribution_mode: Some(Symbol::from_static("copy")),
        ..Default::default()
    };
    let mut c = TestClient::connect(server.addresses[0]).await;
    let (one, reply) = attach(&mut c, "browser-1", browse()).await;
    let Event::Attached { attach: a, .. } = reply else {
        unreachable!()
    };
    assert_eq!(
        a.source.unwrap().distribution_mode.map(|m| m.to_string()),
        Some("copy".to_string())
    );
    c.engine.grant_credit(one, 3, false).unwrap();
    assert_eq!(
        receive(&mut c, one, Duration::from_millis(300)).await,
        ["b0", "b1", "b2"]
    );
    let (two, _) = attach(&mut c, "browser-2", browse()).await;
    c.engine.grant_credit(two, 10, false).unwrap();
    let all: Vec<String> = (0..5).map(|i| format!("b{i}")).collect();
    assert_eq!(receive(&mut c, two, Duration::from_millis(300)).await, all);
    // The first browser goes on from where it was.
    c.engine.grant_credit(one, 10, false).unwrap();
    assert_eq!(
        receive(&mut c, one, Duration::from_millis(300)).await,
        ["b3", "b4"]
    );
    assert_eq!(server.broker.get("shelf").unwrap().stats().ready, 5);
    // A new message reaches both browsers, and a consumer takes all six.
    p.send_many(tx, 1, |_| message("b5", "red", 5)).await;
    let mut got = std::collections::HashMap::new();
    c.settle_for(Duration::from_millis(300)).await;
    for d in c.deliveries() {
        got.entry(d.link)
            .or_insert_with(Vec::new)
            .push(body_of(&d.message));
    }
    assert_eq!(got.remove(&one).unwrap_or_default(), ["b5"]);
    assert_eq!(got.remove(&two).unwrap_or_default(), ["b5"]);
    let consumer = c
        .receiver(Source {
            address: Some(Str::from("shelf")),
            ..Default::default()
        })
        .await;
    c.engine.grant_credit(consumer, 10, false).unwrap();
    assert_eq!(
        receive(&mut c, consumer, Duration::from_millis(300))
            .await
            .len(),
        6
    );
    server.stop().await;
}

/// A selector consumer finds its messages however deep behind ones it does not select, and
/// each message is judged once: a backlog of messages nobody selects does not hold it back.
#[tokio::test]
async fn a_selector_finds_its_messages_behind_a_long_unselected_backlog() {
    let server = start_broker(BrokerConfig::default()).await;
    let mut p = TestClient::connect(server.addresses[0]).await;
    let tx = p.sender(Some("deep")).await;
    // 3,000 blue, then 10 red, then 1,000 blue, then 10 red.
    let plan: Vec<(String, &str)> = (0..4_020)
        .map(|i| {
            let red = (3_000..3_010).contains(&i) || i >= 4_010;
            (format!("m{i}"), if red { "red" } else { "blue" })
        })
        .collect();
    p.send_many(tx, plan.len(), |i| message(&plan[i].0, plan[i].1, 20))
        .await;
    p.settle_for(Duration::from_millis(200)).await;
    let mut c = TestClient::connect(server.addresses[0]).await;
    let (red, _) = attach(
        &mut c,
        "red",
        selector_source("deep", "color = 'red'", false),
    )
    .await;
    c.engine.grant_credit(red, 100, false).unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < 20 && tokio::time::Instant::now() < deadline {
        got.extend(receive(&mut c, red, Duration::from_millis(50)).await);
    }
    let want: Vec<String> = (3_000..3_010)
        .chain(4_010..4_020)
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(got, want);
    // Messages arriving later are found too, and the blue ones are all still there.
    p.send_many(tx, 2, |i| message(&format!("late{i}"), "red", 20))
        .await;
    let late = receive(&mut c, red, Duration::from_millis(300)).await;
    assert_eq!(late, ["late0", "late1"]);
    assert_eq!(server.broker.get("deep").unwrap().stats().ready, 4_000);
    server.stop().await;
}
