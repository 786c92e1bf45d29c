//! The routing cells of `ferry-bench routing` against a Ferry broker in this process, declared
//! as the benchmark declares it: each cell moves exactly the messages it should. Behaviour
//! only; the figures are the benchmark's business.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::sync::Arc;
use std::time::Duration;

use ferry::broker::address::{ExchangeSpec, ExchangeType, Unroutable};
use ferry::broker::exchange::BindSpec;
use ferry::broker::{BrokerConfig, DeclaredQueue};
use ferry::proto::{ConnectionConfig, EndpointRole, SaslConfig};
use ferry::server::{ListenerSpec, Running, ServerSpec};
use ferry::transport::Authenticator;
use ferry_bench::routing::{
    self, CellSpec, Declarations, Kind, Load, SUBSCRIBERS, TOPIC_BINDINGS, TOPIC_QUEUES,
};
use ferry_bench::scenario::{self, Report};
use ferry_bench::wire::Target;
use ferry_codec::types::Symbol;

#[derive(Debug)]
struct AnonymousOnly;

impl Authenticator for AnonymousOnly {
    fn verify_plain(&self, _response: &[u8]) -> bool {
        false
    }
}

/// The in-process broker with the benchmark's exchanges, topic queues and bindings.
async fn broker(decl: &Declarations) -> Running {
    let engine = ConnectionConfig {
        role: EndpointRole::Server,
        sasl: SaslConfig {
            mechanisms: vec![Symbol::from_static("ANONYMOUS")],
            allow_plain_header: true,
            client: None,
        },
        ..Default::default()
    };
    let exchanges = Declarations::exchanges()
        .into_iter()
        .map(|(name, ty, unroutable)| {
            let spec = ExchangeSpec {
                ty: ty.parse::<ExchangeType>().unwrap(),
                unroutable: match unroutable {
                    "accept" => Unroutable::Accept,
                    _ => Unroutable::Release,
                },
            };
            (name.to_string(), spec)
        })
        .collect();
    let declared = (0..decl.topic_queues)
        .map(|k| DeclaredQueue {
            name: Declarations::topic_queue(k),
            ..Default::default()
        })
        .collect();
    let bindings = decl
        .topic_bindings()
        .map(|(queue, pattern)| {
            (
                routing::TOPIC_EXCHANGE.to_string(),
                queue,
                BindSpec::key(pattern),
            )
        })
        .collect();
    let spec = ServerSpec {
        listeners: vec![ListenerSpec {
            address: "127.0.0.1:0".parse().unwrap(),
            max_connections: 100,
            engine,
        }],
        broker: BrokerConfig {
            exchanges,
            declared,
            bindings,
            ..Default::default()
        },
        shutdown_grace: Duration::from_secs(1),
        store: None,
    };
    ferry::server::start(spec, Arc::new(AnonymousOnly))
        .await
        .unwrap()
}

fn load(count: u64) -> Load {
    Load {
        count,
        duration: Duration::from_secs(60),
        credit: 200,
        window: 100,
    }
}

async fn run(server: &Running, decl: &Declarations, spec: CellSpec, count: u64) -> Report {
    let target = Target::parse(&format!("amqp://{}", server.addresses[0])).unwrap();
    let name = format!("t-{}-{}", spec.size, spec.presettled);
    let plan = decl.plan(spec, load(count), &name);
    let r = scenario::run_routed(&target, &plan.scenario, &plan.routing, None).await;
    if let Err(e) = routing::verify(&plan, &r) {
        panic!("{spec}: {e}: {r:?}");
    }
    r
}

fn spec(kind: Kind, presettled: bool) -> CellSpec {
    CellSpec {
        kind,
        size: 64,
        presettled,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_gives_each_of_ten_subscribers_every_message() {
    let decl = Declarations::new(SUBSCRIBERS, TOPIC_QUEUES, 100);
    let server = broker(&decl).await;
    let queues = server.broker.queue_count();
    for presettled in [true, false] {
        // 3,000 deliveries: 300 messages to each of 10 subscribers.
        let r = run(&server, &decl, spec(Kind::Fanout, presettled), 3_000).await;
        assert_eq!(r.sent, 300);
        assert_eq!(r.per_consumer, vec![300; 10]);
        assert_eq!(r.received, 3_000);
        // The baseline it is compared with: 1→1, every message once.
        let r = run(&server, &decl, spec(Kind::Baseline, presettled), 3_000).await;
        assert_eq!((r.sent, r.received), (3_000, 3_000));
    }
    // The subscriptions went with their links.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(server.broker.queue_count() <= queues + 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_delivers_each_message_once_to_the_queue_its_pattern_is_bound_to() {
    let decl = Declarations::new(SUBSCRIBERS, TOPIC_QUEUES, TOPIC_BINDINGS);
    let server = broker(&decl).await;
    assert_eq!(
        server
            .broker
            .exchange(routing::TOPIC_EXCHANGE)
            .unwrap()
            .binding_count(),
        10_000
    );
    for presettled in [false, true] {
        // Every one of the 10,000 subjects, and 2,000 of them again; the consumers check that
        // each message came to the queue its pattern is bound to (subject j → queue j mod 4).
        let r = run(&server, &decl, spec(Kind::Topic, presettled), 12_000).await;
        assert_eq!(r.sent, 12_000);
        assert_eq!(r.received, 12_000);
        assert_eq!(r.misrouted, 0);
        assert_eq!(r.per_consumer, vec![3_000; 4]);
        for k in 0..TOPIC_QUEUES {
            let q = server.broker.get(&Declarations::topic_queue(k)).unwrap();
            assert_eq!(q.stats().ready, 0, "queue {k}");
        }
        // The reference: the same links on queues addressed directly.
        let r = run(&server, &decl, spec(Kind::TopicDirect, presettled), 4_000).await;
        assert_eq!(r.per_consumer, vec![1_000; 4]);
    }
    // The consumers' check is what the counts rest on: with a wrong map of subjects to
    // queues, every message is reported where it should not be.
    let target = Target::parse(&format!("amqp://{}", server.addresses[0])).unwrap();
    let mut plan = decl.plan(spec(Kind::Topic, true), load(400), "wrong");
    plan.routing.check = Some(Arc::new(|i, j| j % TOPIC_QUEUES == (i + 1) % TOPIC_QUEUES));
    let r = scenario::run_routed(&target, &plan.scenario, &plan.routing, None).await;
    assert_eq!((r.received, r.misrouted), (400, 400));
    let e = routing::verify(&plan, &r).unwrap_err();
    assert!(e.contains("should not have"), "{e}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_delivers_exactly_the_matching_half() {
    let decl = Declarations::new(SUBSCRIBERS, TOPIC_QUEUES, 100);
    let server = broker(&decl).await;
    for presettled in [false, true] {
        // On a subscription: the matching half arrives, the rest is accepted and dropped at
        // routing (no refusals, checked by verify).
        let r = run(&server, &decl, spec(Kind::Selector, presettled), 4_002).await;
        assert_eq!(r.sent, 4_002);
        assert_eq!(r.received, 2_001);
        assert_eq!(r.misrouted, 0);
        let r = run(
            &server,
            &decl,
            spec(Kind::SelectorUnfiltered, presettled),
            4_000,
        )
        .await;
        assert_eq!(r.received, 4_000);
        // On a queue: the selector consumer gets the matching half, its complement the rest.
        let r = run(&server, &decl, spec(Kind::SelectorQueue, presettled), 4_000).await;
        assert_eq!(r.per_consumer, vec![2_000, 2_000]);
        assert_eq!(r.misrouted, 0);
        let r = run(
            &server,
            &decl,
            spec(Kind::SelectorQueueUnfiltered, presettled),
            4_000,
        )
        .await;
        assert_eq!(r.received, 4_000);
    }
    server.stop().await;
}
