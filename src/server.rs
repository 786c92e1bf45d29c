//! The daemon: listeners, connection limits, housekeeping and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::broker::{Broker, BrokerConfig};
use crate::proto::ConnectionConfig;
use crate::transport::{self, Authenticator, ConnectionContext};

/// One listening socket and the engine settings of its connections.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    /// Where to listen.
    pub address: SocketAddr,
    /// Most concurrent connections; more wait in the accept backlog.
    pub max_connections: usize,
    /// Engine settings for its connections.
    pub engine: ConnectionConfig,
}

/// What the daemon runs.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// The listeners.
    pub listeners: Vec<ListenerSpec>,
    /// The broker's settings.
    pub broker: BrokerConfig,
    /// How long connections get to close on shutdown.
    pub shutdown_grace: Duration,
}

/// A running server (for tests and embedding): its bound addresses and a way to stop it.
#[derive(Debug)]
pub struct Running {
    /// The bound addresses, in listener order (port 0 resolved).
    pub addresses: Vec<SocketAddr>,
    /// The broker.
    pub broker: Arc<Broker>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    grace: Duration,
}

impl Running {
    /// Closes every connection with `amqp:connection:forced`, waits up to the grace period.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let wait = async {
            for t in self.tasks {
                let _ = t.await;
            }
        };
        let _ = tokio::time::timeout(self.grace, wait).await;
    }
}

/// Binds every listener and starts serving.
pub async fn start(spec: ServerSpec, auth: Arc<dyn Authenticator>) -> std::io::Result<Running> {
    let broker = Broker::new(spec.broker.clone());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut addresses = Vec::new();
    let mut tasks = Vec::new();
    for l in spec.listeners {
        let listener = TcpListener::bind(l.address).await?;
        let bound = listener.local_addr()?;
        tracing::info!(address = %bound, "listening");
        addresses.push(bound);
        let ctx = ConnectionContext {
            broker: Arc::clone(&broker),
            engine: l.engine.clone(),
            auth: Arc::clone(&auth),
            shutdown: shutdown_rx.clone(),
        };
        tasks.push(tokio::spawn(accept_loop(listener, ctx, l.max_connections)));
    }
    tasks.push(tokio::spawn(housekeeping(Arc::clone(&broker), shutdown_rx)));
    Ok(Running {
        addresses,
        broker,
        shutdown: shutdown_tx,
        tasks,
        grace: spec.shutdown_grace,
    })
}

async fn accept_loop(listener: TcpListener, ctx: ConnectionContext, max_connections: usize) {
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut shutdown = ctx.shutdown.clone();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        connections.spawn(async move {
            transport::serve(stream, ctx, peer.to_string()).await;
            drop(permit);
        });
        // Reap finished connection tasks so the set stays bounded by max_connections.
        while connections.try_join_next().is_some() {}
    }
    // Shutdown: connections saw the same signal and are closing; wait for them.
    while connections.join_next().await.is_some() {}
}

async fn housekeeping(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => broker.sweep(std::time::Instant::now()),
            _ = shutdown.changed() => return,
        }
    }
}
