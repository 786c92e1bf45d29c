//! Idle connections: how much broker memory each one costs once it is open, has one session
//! and one receiver link with credit, and has nothing to do.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::procstat;
use crate::scenario::attach_receiver;
use crate::wire::{Conn, Target};

/// What holding the connections cost.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IdleReport {
    /// Connections asked for.
    pub connections: usize,
    /// Connections that opened and attached.
    pub opened: usize,
    /// Broker RSS before the first connection, KiB.
    pub rss_before_kib: u64,
    /// Broker RSS with all of them open and idle, KiB.
    pub rss_after_kib: u64,
    /// (after − before) / opened.
    pub kib_per_connection: f64,
    /// Why fewer opened, if they did.
    pub error: Option<String>,
}

/// Opens `connections` connections, each with one session and one receiver link on
/// `address` (suffixed with the connection number when it contains `{}`), waits for the
/// broker to settle, samples its RSS, and closes them all. Bounded: 180 s to open.
pub async fn run(
    target: &Target,
    connections: usize,
    address: &str,
    broker_pid: Option<u32>,
) -> IdleReport {
    let pid = broker_pid.map(|p| p.to_string());
    let rss = |pid: &Option<String>| {
        pid.as_ref()
            .and_then(|p| procstat::status_kib(p, "VmRSS:"))
            .unwrap_or(0)
    };
    let mut report = IdleReport {
        connections,
        rss_before_kib: rss(&pid),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut open = Vec::with_capacity(connections);
    // Open in small concurrent batches: fast, without a thundering herd on the listener.
    const BATCH: usize = 256;
    while open.len() < connections && Instant::now() < deadline {
        let first = open.len();
        let batch = BATCH.min(connections - first);
        let mut tasks = Vec::with_capacity(batch);
        for i in first..first + batch {
            let t = target.clone();
            let addr = address.replace("{}", &i.to_string());
            tasks.push(tokio::spawn(async move {
                let mut c = Conn::connect(&t, &format!("ferry-bench-idle-{i}")).await?;
                attach_receiver(&mut c, format!("idle-{i}"), &addr, 10).await?;
                Ok::<_, String>(c)
            }));
        }
        for t in tasks {
            match t.await {
                Ok(Ok(c)) => open.push(c),
                Ok(Err(e)) => report.error = Some(e),
                Err(e) => report.error = Some(e.to_string()),
            }
        }
        if report.error.is_some() {
            break;
        }
    }
    report.opened = open.len();
    // Let the broker finish what the handshakes started, keeping heartbeats going.
    let settle_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle_until {
        for c in open.iter_mut() {
            let _ = c.turn(Duration::ZERO).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    report.rss_after_kib = rss(&pid);
    report.kib_per_connection = report.rss_after_kib.saturating_sub(report.rss_before_kib) as f64
        / report.opened.max(1) as f64;
    // Dropped without the close handshake: the sockets just close.
    drop(open);
    report
}
