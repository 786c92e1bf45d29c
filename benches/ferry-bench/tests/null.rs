//! The null acceptor over TCP: the harness runs against it like against a broker, and broken
//! input only ever costs the connection that sent it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use ferry_bench::scenario::{self, Scenario};
use ferry_bench::wire::Target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn null(size: usize) -> SocketAddr {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    tokio::spawn(ferry_bench::null::serve(any, size, tx));
    rx.await.unwrap()
}

fn scenario(producers: usize, consumers: usize, presettled: bool) -> Scenario {
    Scenario {
        producers,
        consumers,
        queues: 2,
        address: "null".into(),
        size: 256,
        count: 20_000,
        duration: Duration::from_secs(20),
        presettled,
        durable: false,
        credit: 100,
        window: 50,
        rate: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_sends_to_and_receives_from_the_null_acceptor() {
    let addr = null(256).await;
    for userinfo in ["", "bench:secret@"] {
        let target = Target::parse(&format!("amqp://{userinfo}{addr}")).unwrap();
        for presettled in [false, true] {
            // Producers and consumers apart: with both, the consumers (fed by the null
            // acceptor, not by the producers) reach the count first and stop the run.
            let r = scenario::run(&target, &scenario(2, 0, presettled), None).await;
            assert_eq!(r.error, None, "{r:?}");
            assert_eq!((r.sent, r.refused), (20_000, 0), "{r:?}");
            let r = scenario::run(&target, &scenario(0, 2, presettled), None).await;
            assert_eq!(r.error, None, "{r:?}");
            assert!(r.received >= 20_000, "{r:?}");
            assert!(r.p50_us > 0.0, "{r:?}");
        }
    }
}

/// Writes `input`, then expects the socket to be closed on us within 2 s.
async fn refused(addr: SocketAddr, input: &[u8]) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(input).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "not closed after {input:02x?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_input_closes_the_connection_and_nothing_else() {
    let addr = null(64).await;
    let amqp = b"AMQP\x00\x01\x00\x00";
    let cat = |a: &[u8], b: &[u8]| [a, b].concat();
    refused(addr, b"GET / HTTP/1.1\r\n\r\n").await;
    refused(addr, b"AMQP\x00\x00\x09\x01").await; // AMQP 0-9-1
    refused(addr, b"AMQP\x02\x01\x00\x00").await; // TLS
    refused(addr, &cat(amqp, &[0, 0, 0, 4, 2, 0, 0, 0])).await; // size below 8
    refused(addr, &cat(amqp, &[0, 0x20, 0, 0, 2, 0, 0, 0])).await; // 2 MiB frame
    refused(addr, &cat(amqp, &[0, 0, 0, 8, 1, 0, 0, 0])).await; // doff below 2
    refused(
        addr,
        &cat(amqp, &[0, 0, 0, 12, 2, 1, 0, 0, 0, 0x53, 0x41, 0x45]),
    )
    .await; // SASL
    // A transfer before open, and garbage where the open should be.
    refused(
        addr,
        &cat(amqp, &[0, 0, 0, 14, 2, 0, 0, 0, 0, 0x53, 0x14, 0xc0, 1, 0]),
    )
    .await;
    refused(
        addr,
        &cat(amqp, &[0, 0, 0, 12, 2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
    )
    .await;
    // Still serving.
    let target = Target::parse(&format!("amqp://{addr}")).unwrap();
    let r = scenario::run(&target, &scenario(1, 1, false), None).await;
    assert_eq!(r.error, None, "{r:?}");
}
