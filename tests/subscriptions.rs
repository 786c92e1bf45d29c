//! Named subscriptions and subscription filters over loopback: durable subscriptions that
//! keep messages while their receiver is away (and across a restart), `close` ending them,
//! a new selector on re-attach, shared and global sharing, one receiver at a time on a
//! private one, the no-source lookup JMS clients use, no-local, and the legacy binding filters
//! with the headers exchange.

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
use ferry::broker::address::{ExchangeSpec, ExchangeType, Unroutable};
use ferry::broker::filter::{HEADERS_BINDING, NO_LOCAL, TOPIC_BINDING};
use ferry::broker::selector::FILTER_NAME;
use ferry::proto::{ConnectionConfig, EndpointRole, Event, LinkId, LinkSpec};
use ferry_codec::definitions::{ErrorCondition, Fields, Role};
use ferry_codec::delivery_state::{DeliveryState, Modified};
use ferry_codec::messaging::{
    ApplicationProperties, Data, Header, Message, Properties, Section, Source, Target, TargetKind,
    TerminusDurability, TerminusExpiryPolicy,
};
use ferry_codec::types::{Described, Map, Str, Symbol, Value};

fn config() -> BrokerConfig {
    let ex = |name: &str, ty| {
        (
            name.to_string(),
            ExchangeSpec {
                ty,
                unroutable: Unroutable::Accept,
            },
        )
    };
    BrokerConfig {
        exchanges: vec![
            ex("news", ExchangeType::Fanout),
            ex("stocks", ExchangeType::Topic),
            ex("attrs", ExchangeType::Headers),
        ],
        ..Default::default()
    }
}

fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferry-subs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn message(tag: &str, subject: Option<&str>, color: &str, durable: bool) -> Message {
    let mut props = Map::new();
    props.push(
        Value::String(Str::from("color")),
        Value::String(Str::from(color)),
    );
    Message::from_sections(&[
        Section::Header(Header {
            durable,
            ..Default::default()
        }),
        Section::Properties(Properties {
            subject,
            ..Default::default()
        }),
        Section::ApplicationProperties(ApplicationProperties(props)),
        Section::Data(Data(Bytes::copy_from_slice(tag.as_bytes()))),
    ])
    .unwrap()
}

async fn client(addr: std::net::SocketAddr, container: &str) -> TestClient {
    TestClient::connect_with(
        addr,
        ConnectionConfig {
            role: EndpointRole::Client,
            container_id: container.into(),
            ..Default::default()
        },
    )
    .await
}

fn described(descriptor: Value, value: Value) -> Value {
    Value::Described(Box::new(Described { descriptor, value }))
}

fn selector(text: &str) -> (&'static str, Value) {
    (
        "jms-selector",
        described(
            Value::Symbol(Symbol::from_static(FILTER_NAME)),
            Value::String(Str::from(text)),
        ),
    )
}

fn filters(pairs: Vec<(&'static str, Value)>) -> Option<Fields> {
    if pairs.is_empty() {
        return None;
    }
    let mut f = Fields::new();
    for (k, v) in pairs {
        f.push(Symbol::from_static(k), v);
    }
    Some(f)
}

#[derive(Default)]
struct Sub {
    durable: bool,
    capabilities: Vec<&'static str>,
    filters: Vec<(&'static str, Value)>,
}

fn source(address: &str, sub: &Sub) -> Source {
    Source {
        address: Some(Str::from(address)),
        durable: if sub.durable {
            TerminusDurability::UnsettledState
        } else {
            TerminusDurability::None
        },
        expiry_policy: if sub.durable {
            TerminusExpiryPolicy::Never
        } else {
            TerminusExpiryPolicy::SessionEnd
        },
        capabilities: sub
            .capabilities
            .iter()
            .map(|c| Symbol::from_static(c))
            .collect(),
        filter: filters(sub.filters.clone()),
        ..Default::default()
    }
}

/// Attaches receiver `name` to `address`; returns the link and the attach reply's source,
/// or the refusal's condition.
async fn attach(
    c: &mut TestClient,
    name: &str,
    source: Option<Source>,
    credit: u32,
) -> Result<(LinkId, Option<Source>), ErrorCondition> {
    let spec = LinkSpec {
        name: Str::from(name.to_string()),
        role: Role::Receiver,
        source,
        target: Some(TargetKind::Target(Target::default())),
        ..Default::default()
    };
    let link = c.engine.attach(c.session.unwrap(), spec).unwrap();
    let e = c
        .wait_for(|e| matches!(e, Event::Attached { link: l, .. } if *l == link))
        .await;
    let Event::Attached { attach, .. } = e else {
        unreachable!()
    };
    let reply = attach.source.clone();
    if reply.is_none() {
        let e = c
            .wait_for(|e| matches!(e, Event::Detached { link: l, .. } if *l == link))
            .await;
        let Event::Detached { error, .. } = e else {
            unreachable!()
        };
        return Err(error.map(|e| e.condition).unwrap());
    }
    if credit > 0 {
        c.engine.grant_credit(link, credit, false).unwrap();
    }
    Ok((link, reply))
}

/// Attaches receiver `name` to `address` as `sub` asks, which must succeed.
async fn join(
    c: &mut TestClient,
    name: &str,
    address: &str,
    sub: &Sub,
    credit: u32,
) -> (LinkId, Option<Source>) {
    attach(c, name, Some(source(address, sub)), credit)
        .await
        .unwrap()
}

async fn publish(c: &mut TestClient, address: &str, msgs: &[Message]) {
    let tx = c.sender(Some(address)).await;
    c.send_many(tx, msgs.len(), |i| msgs[i].clone()).await;
    let mut settled = 0;
    while settled < msgs.len() {
        if let Event::Disposition { state, .. } =
            c.wait_for(|e| matches!(e, Event::Disposition { .. })).await
        {
            assert!(
                matches!(state, Some(DeliveryState::Accepted(_))),
                "{state:?}"
            );
            settled += 1;
        }
    }
}

/// Receives until `n` messages arrived on `link` (10 s at most), accepting each; bodies in
/// order.
async fn take(c: &mut TestClient, link: LinkId, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "got {out:?}, wanted {n}"
        );
        c.pump(Duration::from_millis(10)).await;
        for d in c.deliveries() {
            assert_eq!(d.link, link, "a delivery on another link");
            let _ = c.engine.settle_incoming(
                d.link,
                d.delivery_id,
                DeliveryState::Accepted(Default::default()),
            );
            out.push(body_of(&d.message));
        }
    }
    // Nothing more than asked for.
    c.settle_for(Duration::from_millis(150)).await;
    let extra: Vec<String> = c.deliveries().iter().map(|d| body_of(&d.message)).collect();
    assert!(extra.is_empty(), "more than {n}: {extra:?}");
    out
}

fn tags(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn msgs(prefix: &str, n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| message(&format!("{prefix}{i}"), None, "red", true))
        .collect()
}

/// Detaches `link` and waits for the broker's answering detach (the engine then forgets the
/// link), so the broker has handled it.
async fn detach(c: &mut TestClient, link: LinkId, closed: bool) {
    c.engine.detach(link, closed, None).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while c.engine.credit(link).is_some() {
        assert!(tokio::time::Instant::now() < deadline, "no detach answer");
        c.pump(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_durable_subscription_keeps_messages_while_away_and_close_ends_it() {
    let server = start_broker(config()).await;
    let addr = server.addresses[0];
    let durable = Sub {
        durable: true,
        ..Default::default()
    };
    let mut sub = client(addr, "app-1").await;
    let (rx, reply) = join(&mut sub, "orders-sub", "/exchanges/news", &durable, 100).await;
    let reply = reply.unwrap();
    assert_eq!(reply.durable, TerminusDurability::UnsettledState);
    assert_eq!(reply.expiry_policy, TerminusExpiryPolicy::Never);
    assert_eq!(server.broker.subscription_count(), 1);
    let mut p = client(addr, "publisher").await;
    publish(&mut p, "/exchanges/news", &msgs("a", 5)).await;
    assert_eq!(take(&mut sub, rx, 5).await, tags("a", 5));

    // Away (detach without closing): nothing is lost.
    detach(&mut sub, rx, false).await;
    assert_eq!(server.broker.subscription_count(), 1);
    publish(&mut p, "/exchanges/news", &msgs("b", 7)).await;
    // Even the connection going away keeps it.
    drop(sub);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.broker.subscription_count(), 1);
    let mut sub = client(addr, "app-1").await;
    let (rx, _) = join(&mut sub, "orders-sub", "/exchanges/news", &durable, 100).await;
    assert_eq!(take(&mut sub, rx, 7).await, tags("b", 7));

    // Another container's link of the same name is another subscription.
    let mut other = client(addr, "app-2").await;
    let (orx, _) = join(&mut other, "orders-sub", "/exchanges/news", &durable, 100).await;
    assert_eq!(server.broker.subscription_count(), 2);
    detach(&mut other, orx, true).await;

    // Closing ends it: messages published after are not kept for it.
    detach(&mut sub, rx, true).await;
    assert_eq!(server.broker.subscription_count(), 0);
    publish(&mut p, "/exchanges/news", &msgs("c", 3)).await;
    let (rx, _) = join(&mut sub, "orders-sub", "/exchanges/news", &durable, 100).await;
    publish(&mut p, "/exchanges/news", &msgs("d", 2)).await;
    assert_eq!(take(&mut sub, rx, 2).await, tags("d", 2));
    server.stop().await;
}

#[tokio::test]
async fn a_new_selector_keeps_the_queue_and_applies_to_later_messages() {
    let server = start_broker(config()).await;
    let addr = server.addresses[0];
    let mut sub = client(addr, "app").await;
    let red = Sub {
        durable: true,
        filters: vec![selector("color = 'red'")],
        ..Default::default()
    };
    let (rx, reply) = join(&mut sub, "s", "/exchanges/news", &red, 0).await;
    assert_eq!(reply.unwrap().filter.unwrap().0.len(), 1);
    detach(&mut sub, rx, false).await;
    let mut p = client(addr, "pub").await;
    let mixed = |prefix: &str| -> Vec<Message> {
        (0..6)
            .map(|i| {
                let color = if i % 2 == 0 { "red" } else { "blue" };
                message(&format!("{prefix}{i}-{color}"), None, color, false)
            })
            .collect()
    };
    publish(&mut p, "/exchanges/news", &mixed("x")).await;
    // Back with a different selector: the red ones already queued stay; from now on blue.
    let blue = Sub {
        durable: true,
        filters: vec![selector("color = 'blue'")],
        ..Default::default()
    };
    let (rx, _) = join(&mut sub, "s", "/exchanges/news", &blue, 100).await;
    publish(&mut p, "/exchanges/news", &mixed("y")).await;
    assert_eq!(
        take(&mut sub, rx, 6).await,
        vec![
            "x0-red", "x2-red", "x4-red", "y1-blue", "y3-blue", "y5-blue"
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn unsettled_messages_come_back_as_new_deliveries_with_a_higher_count() {
    let server = start_broker(config()).await;
    let addr = server.addresses[0];
    let durable = Sub {
        durable: true,
        ..Default::default()
    };
    let mut sub = client(addr, "app").await;
    let (rx, _) = join(&mut sub, "s", "/exchanges/news", &durable, 10).await;
    let mut p = client(addr, "pub").await;
    publish(&mut p, "/exchanges/news", &msgs("m", 3)).await;
    // Received, never settled, then away.
    let mut seen = 0;
    while seen < 3 {
        sub.pump(Duration::from_millis(10)).await;
        seen += sub.deliveries().len();
    }
    detach(&mut sub, rx, false).await;
    let (rx, _) = join(&mut sub, "s", "/exchanges/news", &durable, 10).await;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < 3 && tokio::time::Instant::now() < deadline {
        sub.pump(Duration::from_millis(10)).await;
        for d in sub.deliveries() {
            assert_eq!(d.link, rx);
            got.push((
                body_of(&d.message),
                d.message.header().unwrap().delivery_count,
            ));
        }
    }
    assert_eq!(
        got,
        vec![("m0".into(), 1), ("m1".into(), 1), ("m2".into(), 1)]
    );
    server.stop().await;
}

#[tokio::test]
async fn private_subscriptions_take_one_receiver_and_shared_ones_several() {
    let server = start_broker(config()).await;
    let addr = server.addresses[0];
    let durable = Sub {
        durable: true,
        ..Default::default()
    };
    let mut a = client(addr, "app").await;
    let (_rx, _) = join(&mut a, "one", "/exchanges/news", &durable, 10).await;
    let mut a2 = client(addr, "app").await;
    let refused = attach(
        &mut a2,
        "one",
        Some(source("/exchanges/news", &durable)),
        10,
    )
    .await;
    assert_eq!(refused.err(), Some(ErrorCondition::ResourceLocked));

    // Shared and global: receivers of two containers share one queue, each message to one.
    let shared = Sub {
        durable: false,
        capabilities: vec!["shared", "global"],
        ..Default::default()
    };
    let mut x = client(addr, "x").await;
    let mut y = client(addr, "y").await;
    let (xl, _) = join(&mut x, "workers", "/exchanges/news", &shared, 100).await;
    let (yl, _) = join(&mut y, "workers", "/exchanges/news", &shared, 100).await;
    assert_eq!(server.broker.subscription_count(), 2);
    let mut p = client(addr, "pub").await;
    publish(&mut p, "/exchanges/news", &msgs("w", 20)).await;
    x.settle_for(Duration::from_millis(200)).await;
    y.settle_for(Duration::from_millis(200)).await;
    let mut all: Vec<String> = x
        .deliveries()
        .iter()
        .chain(y.deliveries().iter())
        .map(|d| body_of(&d.message))
        .collect();
    all.sort_by_key(|t| t[1..].parse::<u32>().unwrap());
    assert_eq!(all, tags("w", 20));
    // A volatile shared subscription ends with its last receiver.
    detach(&mut x, xl, false).await;
    assert_eq!(server.broker.subscription_count(), 2);
    detach(&mut y, yl, false).await;
    assert_eq!(server.broker.subscription_count(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_receiver_without_a_source_finds_its_durable_subscription() {
    let server = start_broker(config()).await;
    let addr = server.addresses[0];
    let durable = Sub {
        durable: true,
        filters: vec![selector("color = 'red'")],
        ..Default::default()
    };
    let mut c = client(addr, "jms").await;
    let (rx, _) = join(&mut c, "sub1", "/exchanges/stocks/a.*", &durable, 0).await;
    detach(&mut c, rx, false).await;
    // The lookup JMS clients do to unsubscribe: no source; the reply carries the stored one.
    let (rx, reply) = attach(&mut c, "sub1", None, 0).await.unwrap();
    let reply = reply.unwrap();
    assert_eq!(reply.address.as_deref(), Some("/exchanges/stocks/a.*"));
    assert!(reply.filter.is_some());
    detach(&mut c, rx, true).await;
    assert_eq!(server.broker.subscription_count(), 0);
    // Nothing to find any more.
    assert_eq!(
        attach(&mut c, "sub1", None, 0).await.err(),
        Some(ErrorCondition::NotFound)
    );
    server.stop().await;
}

#[tokio::test]
async fn no_local_skips_what_the_subscribers_own_container_published() {
    let server = start_broker(config()).await;
    let addr = server.addresses[0];
    let no_local = Sub {
        filters: vec![(
            "no-local",
            described(
                Value::Symbol(Symbol::from_static(NO_LOCAL.0)),
                Value::List(vec![]),
            ),
        )],
        ..Default::default()
    };
    let mut me = client(addr, "chat-1").await;
    let (rx, reply) = join(&mut me, "r", "/exchanges/news", &no_local, 100).await;
    assert_eq!(reply.unwrap().filter.unwrap().0.len(), 1, "no-local echoed");
    publish(&mut me, "/exchanges/news", &msgs("mine", 3)).await;
    let mut other = client(addr, "chat-2").await;
    publish(&mut other, "/exchanges/news", &msgs("theirs", 3)).await;
    assert_eq!(take(&mut me, rx, 3).await, tags("theirs", 3));

    // On a queue no-local is not applied, so not echoed.
    let (_q, reply) = join(&mut me, "q", "/queues/plain", &no_local, 1).await;
    assert!(reply.unwrap().filter.is_none());
    server.stop().await;
}

#[tokio::test]
async fn legacy_binding_filters_and_the_headers_exchange_route_and_are_echoed() {
    let server = start_broker(config()).await;
    let addr = server.addresses[0];
    let mut c = client(addr, "app").await;
    // A topic binding filter gives the pattern (the address has none).
    let topic = Sub {
        filters: vec![(
            "b",
            described(
                Value::Ulong(TOPIC_BINDING.1),
                Value::String(Str::from("eu.*")),
            ),
        )],
        ..Default::default()
    };
    let (t, reply) = join(&mut c, "t", "/exchanges/stocks", &topic, 100).await;
    assert_eq!(reply.unwrap().filter.unwrap().0.len(), 1);
    // A headers binding: any of color=red, size present.
    let mut m = Map::new();
    m.push(
        Value::String(Str::from("x-match")),
        Value::String(Str::from("any")),
    );
    m.push(
        Value::String(Str::from("color")),
        Value::String(Str::from("green")),
    );
    let headers = Sub {
        filters: vec![
            (
                "h",
                described(
                    Value::Symbol(Symbol::from_static(HEADERS_BINDING.0)),
                    Value::Map(m),
                ),
            ),
            // Not for a headers exchange: ignored and left out of the reply.
            (
                "b",
                described(
                    Value::Ulong(TOPIC_BINDING.1),
                    Value::String(Str::from("eu.*")),
                ),
            ),
        ],
        ..Default::default()
    };
    let mut h = client(addr, "h").await;
    let (hl, reply) = join(&mut h, "h", "/exchanges/attrs", &headers, 100).await;
    let echoed = reply.unwrap().filter.unwrap();
    assert_eq!(echoed.0.len(), 1);
    assert_eq!(echoed.0[0].0.as_str(), "h");

    let mut p = client(addr, "pub").await;
    publish(
        &mut p,
        "/exchanges/stocks",
        &[
            message("eu-1", Some("eu.fr"), "red", false),
            message("us-1", Some("us.ny"), "red", false),
            message("eu-2", Some("eu.de.x"), "red", false),
            message("eu-3", Some("eu.de"), "red", false),
        ],
    )
    .await;
    assert_eq!(take(&mut c, t, 2).await, vec!["eu-1", "eu-3"]);
    publish(
        &mut p,
        "/exchanges/attrs",
        &[
            message("g1", None, "green", false),
            message("r1", None, "red", false),
            message("g2", None, "green", false),
        ],
    )
    .await;
    assert_eq!(take(&mut h, hl, 2).await, vec!["g1", "g2"]);
    server.stop().await;
}

#[tokio::test]
async fn config_headers_bindings_route_by_application_properties() {
    let toml = r#"
[[queues.declare]]
name = "reds"

[[exchanges]]
name = "attrs"
type = "headers"

[[bindings]]
exchange = "attrs"
queue = "reds"
headers = { x-match = "all", color = "red" }
"#;
    let parsed = ferry::config::Config::parse(toml, "test").unwrap();
    let spec = parsed.bindings[0].headers_match().unwrap();
    assert!(spec.is_some());
    let mut cfg = config();
    cfg.declared.push(ferry::broker::DeclaredQueue {
        name: "reds".into(),
        ..Default::default()
    });
    cfg.bindings.push((
        "attrs".into(),
        "reds".into(),
        ferry::broker::exchange::BindSpec {
            headers: spec,
            ..Default::default()
        },
    ));
    let server = start_broker(cfg).await;
    let addr = server.addresses[0];
    let mut p = client(addr, "pub").await;
    publish(
        &mut p,
        "/exchanges/attrs",
        &[
            message("r1", None, "red", false),
            message("b1", None, "blue", false),
            message("r2", None, "red", false),
        ],
    )
    .await;
    let mut c = client(addr, "c").await;
    let (rx, _) = join(&mut c, "c", "/queues/reds", &Sub::default(), 10).await;
    assert_eq!(take(&mut c, rx, 2).await, vec!["r1", "r2"]);
    // A headers table on a binding to another kind of exchange is refused.
    let bad = toml.replace("type = \"headers\"", "type = \"fanout\"");
    let bad = ferry::config::Config::parse(&bad, "test").unwrap();
    assert!(bad.validate("test").is_err());
    server.stop().await;
}

#[tokio::test]
async fn a_durable_subscription_and_its_messages_survive_a_restart() {
    let dir = data_dir("restart");
    let durable = Sub {
        durable: true,
        filters: vec![selector("color = 'red'")],
        ..Default::default()
    };
    let mixed: Vec<Message> = (0..10)
        .map(|i| {
            let color = if i % 2 == 0 { "red" } else { "blue" };
            message(&format!("m{i}"), Some("eu.fr"), color, true)
        })
        .collect();
    {
        let server = start_durable(&dir, config()).await;
        let addr = server.addresses[0];
        let mut sub = client(addr, "app").await;
        let (rx, _) = join(&mut sub, "s", "/exchanges/stocks/eu.*", &durable, 0).await;
        detach(&mut sub, rx, false).await;
        let mut p = client(addr, "pub").await;
        publish(&mut p, "/exchanges/stocks", &mixed).await;
        server.stop().await;
    }
    {
        let server = start_durable(&dir, config()).await;
        let addr = server.addresses[0];
        assert_eq!(server.broker.subscription_count(), 1);
        // The binding came back too: routing still filters by key and selector.
        let mut p = client(addr, "pub").await;
        publish(
            &mut p,
            "/exchanges/stocks",
            &[
                message("after-red", Some("eu.de"), "red", true),
                message("after-blue", Some("eu.de"), "blue", true),
                message("after-us", Some("us.ny"), "red", true),
            ],
        )
        .await;
        let mut sub = client(addr, "app").await;
        let (rx, _) = join(&mut sub, "s", "/exchanges/stocks/eu.*", &durable, 100).await;
        let got = take(&mut sub, rx, 6).await;
        assert_eq!(got, vec!["m0", "m2", "m4", "m6", "m8", "after-red"]);
        // Ended, and so gone after the next restart.
        detach(&mut sub, rx, true).await;
        server.stop().await;
    }
    {
        let server = start_durable(&dir, config()).await;
        assert_eq!(server.broker.subscription_count(), 0);
        server.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_redelivered_message_modified_on_a_subscription_counts_up() {
    // Outcomes on a subscription queue behave as on any queue.
    let server = start_broker(config()).await;
    let addr = server.addresses[0];
    let mut sub = client(addr, "app").await;
    let (rx, _) = join(&mut sub, "s", "/exchanges/news", &Sub::default(), 5).await;
    let mut p = client(addr, "pub").await;
    publish(&mut p, "/exchanges/news", &msgs("z", 1)).await;
    let d = sub
        .wait_for(|e| matches!(e, Event::Delivery(d) if d.link == rx))
        .await;
    let Event::Delivery(d) = d else {
        unreachable!()
    };
    sub.engine
        .settle_incoming(
            rx,
            d.delivery_id,
            DeliveryState::Modified(Modified {
                delivery_failed: Some(true),
                ..Default::default()
            }),
        )
        .unwrap();
    let again = sub
        .wait_for(|e| matches!(e, Event::Delivery(d) if d.link == rx))
        .await;
    let Event::Delivery(again) = again else {
        unreachable!()
    };
    assert_eq!(again.message.header().unwrap().delivery_count, 1);
    server.stop().await;
}
