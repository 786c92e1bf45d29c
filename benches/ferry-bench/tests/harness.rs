//! The harness against a real Ferry broker in this process: every message sent is counted,
//! received once, timed, and the broker's own CPU and memory are read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry::broker::BrokerConfig;
use ferry::proto::{ConnectionConfig, EndpointRole, SaslConfig};
use ferry::server::{ListenerSpec, Running, ServerSpec};
use ferry::transport::Authenticator;
use ferry_bench::scenario::{self, Scenario};
use ferry_bench::wire::Target;
use ferry_codec::types::Symbol;

/// Accepts one user: `bench` / `secret`.
#[derive(Debug)]
struct OneUser;

impl Authenticator for OneUser {
    fn verify_plain(&self, response: &[u8]) -> bool {
        response == b"\0bench\0secret"
    }
}

async fn broker() -> Running {
    let engine = ConnectionConfig {
        role: EndpointRole::Server,
        sasl: SaslConfig {
            mechanisms: vec![
                Symbol::from_static("ANONYMOUS"),
                Symbol::from_static("PLAIN"),
            ],
            allow_plain_header: true,
            client: None,
        },
        ..Default::default()
    };
    let spec = ServerSpec {
        listeners: vec![ListenerSpec {
            address: "127.0.0.1:0".parse().unwrap(),
            max_connections: 100,
            engine,
        }],
        broker: BrokerConfig::default(),
        shutdown_grace: Duration::from_secs(1),
        store: None,
    };
    ferry::server::start(spec, Arc::new(OneUser)).await.unwrap()
}

fn scenario(count: u64, presettled: bool) -> Scenario {
    Scenario {
        producers: 2,
        consumers: 2,
        queues: 2,
        address: "harness".into(),
        size: 256,
        count,
        duration: Duration::from_secs(20),
        presettled,
        durable: false,
        credit: 100,
        window: 50,
        rate: 0,
    }
}

fn url(addr: SocketAddr, userinfo: &str) -> Target {
    Target::parse(&format!("amqp://{userinfo}{addr}")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_counted_once_and_timed() {
    let server = broker().await;
    let target = url(server.addresses[0], "");
    for presettled in [false, true] {
        let s = scenario(4_000, presettled);
        let r = scenario::run(&target, &s, Some(std::process::id())).await;
        assert_eq!(r.error, None, "{r:?}");
        assert_eq!(r.sent, 4_000, "{r:?}");
        assert_eq!(r.received, 4_000, "{r:?}");
        assert_eq!(r.refused, 0);
        assert!(
            r.p50_us > 0.0 && r.p50_us <= r.p99_us && r.p99_us <= r.max_us,
            "{r:?}"
        );
        assert!(r.send_rate > 0.0 && r.recv_rate > 0.0);
        // The "broker" here is this test process: it has a resident set.
        assert!(r.broker_peak_rss_mib.unwrap() > 1.0, "{r:?}");
        // Every queue was drained.
        for q in 0..2 {
            let queue = server.broker.get(&s.queue_address(q)).unwrap();
            assert_eq!(queue.stats().ready, 0);
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_run_keeps_its_rate_and_plain_credentials_work() {
    let server = broker().await;
    let target = url(server.addresses[0], "bench:secret@");
    let mut s = scenario(1_000, false);
    s.producers = 1;
    s.consumers = 1;
    s.queues = 1;
    s.rate = 2_000;
    let r = scenario::run(&target, &s, None).await;
    assert_eq!(r.error, None, "{r:?}");
    assert_eq!(r.received, 1_000);
    // 1,000 messages at 2,000/s take about half a second: not much less.
    assert!(r.elapsed_secs >= 0.45, "{r:?}");

    let wrong = url(server.addresses[0], "bench:wrong@");
    let r = scenario::run(&wrong, &scenario(10, false), None).await;
    assert!(r.error.unwrap().contains("authentication"));
    server.stop().await;
}
