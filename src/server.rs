//! The daemon: listeners, connection limits, housekeeping and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::broker::{Broker, BrokerConfig, timers};
use crate::proto::ConnectionConfig;
use crate::store::file::FsStorage;
use crate::store::{Journal, Store, StoreConfig};
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
    /// Where durable queues are kept; `None`: every queue is transient.
    pub store: Option<StoreSpec>,
}

/// The write-ahead log's directory and settings.
#[derive(Debug, Clone)]
pub struct StoreSpec {
    /// The log's directory.
    pub dir: std::path::PathBuf,
    /// Its settings.
    pub config: StoreConfig,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    /// The write-ahead log could not be opened or is damaged.
    #[error("cannot open the write-ahead log: {0}")]
    Store(#[from] crate::store::log::LogError),
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
    store: Option<Arc<Store>>,
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
        if let Some(store) = self.store {
            // Whatever the connections queued is written (and synced) before we return.
            let store = tokio::task::spawn_blocking(move || {
                store.close();
                store
            })
            .await;
            if let Ok(store) = store {
                let s = store.stats();
                tracing::info!(
                    batches = s.batches,
                    syncs = s.syncs,
                    records = s.records,
                    enqueued = s.enqueued,
                    bytes = s.bytes,
                    relocated = s.relocated,
                    retired = s.retired,
                    segments = s.segments,
                    live_messages = s.live_messages,
                    "write-ahead log closed"
                );
            }
        }
    }
}

/// Binds every listener and starts serving.
pub async fn start(spec: ServerSpec, auth: Arc<dyn Authenticator>) -> Result<Running, StartError> {
    let store = match &spec.store {
        Some(s) => {
            let dir = s.dir.clone();
            let cfg = s.config;
            let opened = tokio::task::spawn_blocking(move || {
                let storage =
                    FsStorage::new(&dir).map_err(|source| crate::store::log::LogError::Io {
                        path: dir.clone(),
                        source,
                    })?;
                Store::open(storage, cfg)
            })
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
            let (store, recovery) = opened;
            tracing::info!(
                dir = %s.dir.display(),
                queues = recovery.queues.len(),
                messages = recovery.queues.iter().map(|q| q.messages.len()).sum::<usize>(),
                records = recovery.records,
                segments = recovery.segments,
                mib = recovery.bytes >> 20,
                ms = recovery.elapsed.as_millis() as u64,
                "write-ahead log recovered"
            );
            Some((store, recovery))
        }
        None => None,
    };
    let handle = store.as_ref().map(|(s, _)| Arc::clone(s));
    let broker = Broker::with_store(
        spec.broker.clone(),
        store.map(|(s, r)| (s as Arc<dyn Journal>, r)),
    );
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
        store: handle,
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

/// Fires lock and schedule deadlines every [`timers::TICK`], and sweeps (expiry, idle
/// queues) every second.
async fn housekeeping(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(timers::TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sweep_every = (Duration::from_secs(1).as_millis() / timers::TICK.as_millis()).max(1);
    let mut n: u128 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                broker.fire_timers();
                n += 1;
                if n % sweep_every == 0 {
                    broker.sweep(std::time::Instant::now());
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
