//! Exchanges over loopback: fan-out, topic wildcards, direct keys and config bindings,
//! unroutable outcomes, subscriptions with selectors filtered at routing, bare names, and
//! the OpenStack (oslo.messaging) address shapes.

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
use ferry::broker::DeclaredQueue;
use ferry::broker::address::{ExchangeSpec, ExchangeType, Unroutable};
use ferry::broker::exchange::BindSpec;
use ferry::broker::selector::FILTER_NAME;
use ferry::proto::{Event, LinkId};
use ferry_codec::definitions::Fields;
use ferry_codec::delivery_state::DeliveryState;
use ferry_codec::messaging::{
    ApplicationProperties, Data, Header, Message, Properties, Section, Source,
};
use ferry_codec::types::{Described, Map, Str, Symbol, Value};

fn config() -> BrokerConfig {
    let ex = |name: &str, ty, unroutable| (name.to_string(), ExchangeSpec { ty, unroutable });
    BrokerConfig {
        exchanges: vec![
            ex("news", ExchangeType::Fanout, Unroutable::Accept),
            ex("stocks", ExchangeType::Topic, Unroutable::Release),
            ex("orders", ExchangeType::Direct, Unroutable::Release),
        ],
        declared: vec![DeclaredQueue {
            name: "eu-orders".into(),
            ..Default::default()
        }],
        bindings: vec![("orders".into(), "eu-orders".into(), BindSpec::key("eu"))],
        ..Default::default()
    }
}

fn message(tag: &str, subject: Option<&str>, level: i64) -> Message {
    let mut props = Map::new();
    props.push(Value::String(Str::from("level")), Value::Long(level));
    Message::from_sections(&[
        Section::Header(Header::default()),
        Section::Properties(Properties {
            subject,
            ..Default::default()
        }),
        Section::ApplicationProperties(ApplicationProperties(props)),
        Section::Data(Data(Bytes::copy_from_slice(tag.as_bytes()))),
    ])
    .unwrap()
}

async fn subscribe(c: &mut TestClient, address: &str, selector: Option<&str>) -> LinkId {
    let filter = selector.map(|s| {
        let mut f = Fields::new();
        f.push(
            Symbol::from_static("jms-selector"),
            Value::Described(Box::new(Described {
                descriptor: Value::Symbol(Symbol::from_static(FILTER_NAME)),
                value: Value::String(Str::from(s)),
            })),
        );
        f
    });
    let link = c
        .receiver(Source {
            address: Some(Str::from(address)),
            filter,
            ..Default::default()
        })
        .await;
    c.engine.grant_credit(link, 500, false).unwrap();
    link
}

/// Sends each (tag, subject) to `address` and returns the outcomes, in order.
async fn publish(
    c: &mut TestClient,
    address: &str,
    msgs: &[(&str, Option<&str>)],
) -> Vec<DeliveryState> {
    let tx = c.sender(Some(address)).await;
    c.send_many(tx, msgs.len(), |i| message(msgs[i].0, msgs[i].1, i as i64))
        .await;
    let mut out = Vec::new();
    while out.len() < msgs.len() {
        if let Event::Disposition {
            state: Some(state), ..
        } = c.wait_for(|e| matches!(e, Event::Disposition { .. })).await
        {
            out.push(state);
        }
    }
    out
}

/// Everything each link of `c` received by now, by link.
async fn bodies_by_link(c: &mut TestClient) -> std::collections::HashMap<LinkId, Vec<String>> {
    c.settle_for(Duration::from_millis(300)).await;
    let mut out: std::collections::HashMap<LinkId, Vec<String>> = Default::default();
    for d in c.deliveries() {
        out.entry(d.link).or_default().push(body_of(&d.message));
    }
    out
}

async fn bodies(c: &mut TestClient, link: LinkId) -> Vec<String> {
    bodies_by_link(c).await.remove(&link).unwrap_or_default()
}

#[tokio::test]
async fn fan_out_gives_every_subscriber_every_message_and_subscriptions_go_with_their_links() {
    let server = start_broker(config()).await;
    let addr = server.addresses[0];
    let before = server.broker.queue_count();
    let mut subs = Vec::new();
    for _ in 0..3 {
        let mut c = TestClient::connect(addr).await;
        let l = subscribe(&mut c, "/exchanges/news", None).await;
        subs.push((c, l));
    }
    assert_eq!(server.broker.queue_count(), before + 3);
    let mut p = TestClient::connect(addr).await;
    let msgs: Vec<(String, Option<&str>)> = (0..100).map(|i| (format!("n{i}"), None)).collect();
    let refs: Vec<(&str, Option<&str>)> = msgs.iter().map(|(t, s)| (t.as_str(), *s)).collect();
    let outcomes = publish(&mut p, "/exchanges/news", &refs).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, DeliveryState::Accepted(_)))
    );
    let want: Vec<String> = msgs.iter().map(|(t, _)| t.clone()).collect();
    for (c, l) in &mut subs {
        assert_eq!(bodies(c, *l).await, want);
    }
    drop(subs);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.broker.queue_count() > before && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        server.broker.queue_count(),
        before,
        "subscription queues left behind"
    );
    assert_eq!(server.broker.exchange("news").unwrap().binding_count(), 0);
    // No subscriber: the fanout accepts (its unroutable outcome) and drops.
    let outcomes = publish(&mut p, "news", &[("lost", None)]).await;
    assert!(matches!(outcomes[0], DeliveryState::Accepted(_)));
    server.stop().await;
}

#[tokio::test]
async fn topic_patterns_direct_keys_and_unroutable_messages() {
    let server = start_broker(config()).await;
    let addr = server.addresses[0];
    let mut c = TestClient::connect(addr).await;
    let nyse = subscribe(&mut c, "/exchanges/stocks/nyse.*", None).await;
    let ibm = subscribe(&mut c, "/exchanges/stocks/%23.ibm", None).await;
    let mut p = TestClient::connect(addr).await;
    let outcomes = publish(
        &mut p,
        "/exchanges/stocks",
        &[
            ("a", Some("nyse.ibm")),
            ("b", Some("nyse.msft")),
            ("c", Some("lse.x.ibm")),
            ("d", Some("lse.bp")),
        ],
    )
    .await;
    assert!(
        matches!(outcomes[3], DeliveryState::Released(_)),
        "{outcomes:?}"
    );
    let mut got = bodies_by_link(&mut c).await;
    assert_eq!(got.remove(&nyse).unwrap_or_default(), ["a", "b"]);
    assert_eq!(got.remove(&ibm).unwrap_or_default(), ["a", "c"]);

    // Direct: the key from the address reaches the queue bound in config.
    let outcomes = publish(&mut p, "/exchanges/orders/eu", &[("o1", None)]).await;
    assert!(matches!(outcomes[0], DeliveryState::Accepted(_)));
    let outcomes = publish(&mut p, "/exchanges/orders/us", &[("o2", None)]).await;
    assert!(matches!(outcomes[0], DeliveryState::Released(_)));
    let q = subscribe(&mut c, "/queues/eu-orders", None).await;
    assert_eq!(bodies(&mut c, q).await, ["o1"]);
    server.stop().await;
}

#[tokio::test]
async fn a_subscription_selector_filters_at_routing() {
    let server = start_broker(config()).await;
    let addr = server.addresses[0];
    let mut c = TestClient::connect(addr).await;
    let hi = subscribe(&mut c, "/exchanges/news", Some("level >= 8")).await;
    let all = subscribe(&mut c, "/exchanges/news", None).await;
    let mut p = TestClient::connect(addr).await;
    let msgs: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
    let refs: Vec<(&str, Option<&str>)> = msgs.iter().map(|t| (t.as_str(), None)).collect();
    publish(&mut p, "/exchanges/news", &refs).await;
    let mut got = bodies_by_link(&mut c).await;
    assert_eq!(got.remove(&hi).unwrap_or_default(), ["n8", "n9"]);
    assert_eq!(got.remove(&all).unwrap_or_default().len(), 10);
    server.stop().await;
}

#[tokio::test]
async fn openstack_broadcast_fans_out_and_unicast_is_shared() {
    let server = start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let mut a = TestClient::connect(addr).await;
    let mut b = TestClient::connect(addr).await;
    // Legacy addressing: a fanout cast to every server of a topic.
    let fa = subscribe(&mut a, "broadcast.openstack.compute.all", None).await;
    let fb = subscribe(&mut b, "broadcast.openstack.compute.all", None).await;
    // Routable addressing: an RPC call to any one server of the topic.
    let ra = subscribe(
        &mut a,
        "openstack.org/om/rpc/anycast/openstack/compute",
        None,
    )
    .await;
    let rb = subscribe(
        &mut b,
        "openstack.org/om/rpc/anycast/openstack/compute",
        None,
    )
    .await;
    // Both servers' credit reaches the broker before the calls are made.
    a.settle_for(Duration::from_millis(50)).await;
    b.settle_for(Duration::from_millis(50)).await;
    let mut p = TestClient::connect(addr).await;
    publish(&mut p, "broadcast.openstack.compute.all", &[("cast", None)]).await;
    let calls: Vec<String> = (0..10).map(|i| format!("call{i}")).collect();
    let refs: Vec<(&str, Option<&str>)> = calls.iter().map(|t| (t.as_str(), None)).collect();
    publish(
        &mut p,
        "openstack.org/om/rpc/anycast/openstack/compute",
        &refs,
    )
    .await;
    let (mut da, mut db) = (bodies_by_link(&mut a).await, bodies_by_link(&mut b).await);
    assert_eq!(da.remove(&fa).unwrap_or_default(), ["cast"]);
    assert_eq!(db.remove(&fb).unwrap_or_default(), ["cast"]);
    let (ga, gb) = (
        da.remove(&ra).unwrap_or_default(),
        db.remove(&rb).unwrap_or_default(),
    );
    assert_eq!(ga.len() + gb.len(), 10, "{ga:?} {gb:?}");
    assert!(
        !ga.is_empty() && !gb.is_empty(),
        "both servers take calls: {ga:?} {gb:?}"
    );
    server.stop().await;
}
