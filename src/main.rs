//! `ferry`: the AMQP 1.0 broker daemon. Argument parsing, configuration and the helper
//! subcommands live in the library (`ferry::cli`, `ferry::config`); this file only wires them
//! to the process: exit codes, standard streams and logging.

use std::process::ExitCode;

use std::sync::Arc;

use clap::Parser;
use ferry::auth::Users;
use ferry::broker::address::{ExchangeSpec, Unroutable, default_rules};
use ferry::broker::exchange::BindSpec;
use ferry::broker::{BrokerConfig, DeclaredQueue, Overflow, QueueLimits, QueuePolicy};
use ferry::cli::{self, Cli, Command, WalCommand};
use ferry::config::Config;
use ferry::config::SyncMode;
use ferry::server::{self, ListenerSpec, ServerSpec, StoreSpec};
use ferry::store::{StoreConfig, SyncPolicy};
use ferry::transport::Authenticator;

/// mimalloc instead of glibc's malloc: with several threads, glibc grows and trims its
/// per-thread heaps with an `mprotect` call at a time, and under a steady stream of messages
/// (each allocated on one thread, freed on another) that was 0.08 system calls per message,
/// each one flushing TLBs on every core (measured with strace at 100,000 msgs/s).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Cli::parse();
    match args.command {
        Some(Command::PrintDefaultConfig) => {
            print!("{}", Config::default_toml());
            ExitCode::SUCCESS
        }
        Some(Command::CheckConfig) => match args.load_config() {
            Ok(_) => {
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Some(Command::Passwd { password_stdin }) => match cli::passwd(password_stdin) {
            Ok(phc) => {
                println!("{phc}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Some(Command::Wal(WalCommand::Check)) => match args.load_config() {
            Ok(config) => match cli::wal_check(&config.broker.data_dir) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => fail(&e),
            },
            Err(e) => fail(&e),
        },
        None => run(&args),
    }
}

fn run(args: &Cli) -> ExitCode {
    let config = match args.load_config() {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&args.log_level) {
        Ok(filter) => filter,
        Err(e) => return fail(&format!("invalid --log-level {:?}: {e}", args.log_level)),
    };
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.broker.worker_threads > 0 {
        builder.worker_threads(usize::from(config.broker.worker_threads));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let users: Arc<dyn Authenticator> = Arc::new(Users::new(&config.users));
    runtime.block_on(async move {
        let running = match server::start(server_spec(&config), users).await {
            Ok(r) => r,
            Err(e) => return fail(&e),
        };
        tracing::info!(version = env!("CARGO_PKG_VERSION"), "ferry started");
        wait_for_signal().await;
        tracing::info!("shutting down");
        running.stop().await;
        ExitCode::SUCCESS
    })
}

/// Maps the configuration onto what the server runs.
fn server_spec(config: &Config) -> ServerSpec {
    let b = &config.broker;
    let defaults = &config.queues.defaults;
    let limits = |l: &ferry::config::QueueLimits, max_message_size: u64| QueueLimits {
        max_length: usize::try_from(l.max_length).unwrap_or(usize::MAX),
        max_bytes: usize::try_from(l.max_bytes).unwrap_or(usize::MAX),
        max_message_size,
    };
    ServerSpec {
        listeners: config
            .listeners
            .iter()
            .map(|l| ListenerSpec {
                address: l.address,
                max_connections: l.max_connections as usize,
                engine: config.connection_config(l),
            })
            .collect(),
        broker: BrokerConfig {
            auto_create: b.auto_create,
            max_queues: b.max_queues as usize,
            auto_delete_after: b.auto_delete_after,
            memory_budget: usize::try_from(b.memory_budget).unwrap_or(usize::MAX),
            default_limits: limits(defaults, b.max_message_size),
            declared: config
                .queues
                .declare
                .iter()
                .map(|q| {
                    let l = q.limits(defaults);
                    DeclaredQueue {
                        name: q.name.clone(),
                        limits: limits(&l, q.max_message_size.unwrap_or(b.max_message_size)),
                        durable: q.durable,
                        policy: policy(&l),
                    }
                })
                .collect(),
            default_policy: policy(defaults),
            exchanges: config
                .exchanges
                .iter()
                .filter_map(|e| {
                    let ty = e.kind.parse().ok()?;
                    let unroutable = if e.unroutable == "accept" {
                        Unroutable::Accept
                    } else {
                        Unroutable::Release
                    };
                    Some((e.name.clone(), ExchangeSpec { ty, unroutable }))
                })
                .collect(),
            bindings: config
                .bindings
                .iter()
                .map(|b| {
                    let spec = BindSpec {
                        key: b.key.clone(),
                        // Validated with the config.
                        headers: b.headers_match().ok().flatten(),
                        ..BindSpec::default()
                    };
                    (b.exchange.clone(), b.queue.clone(), spec)
                })
                .collect(),
            // Validated with the config.
            rules: config.rules().unwrap_or_else(|_| default_rules()),
            auto_create_durable: config.queues.auto_create_durable,
            page_above: usize::try_from(config.queues.page_above).unwrap_or(usize::MAX),
            link_credit: b.link_credit,
            link_credit_bytes: usize::try_from(b.link_credit_bytes).unwrap_or(usize::MAX),
        },
        shutdown_grace: b.shutdown_grace,
        store: Some(StoreSpec {
            dir: b.data_dir.join("wal"),
            config: StoreConfig {
                segment_size: config.store.segment_size,
                sync: match config.store.sync {
                    SyncMode::Always => SyncPolicy::Always,
                    SyncMode::Interval => SyncPolicy::Interval(config.store.sync_interval),
                    SyncMode::Never => SyncPolicy::Never,
                },
            },
        }),
    }
}

/// A queue's expiry and dead-letter settings, 0 and "" meaning none.
fn policy(l: &ferry::config::QueueLimits) -> QueuePolicy {
    QueuePolicy {
        message_ttl: (!l.message_ttl.is_zero()).then_some(l.message_ttl),
        max_delivery_count: (l.max_delivery_count > 0).then_some(l.max_delivery_count),
        dead_letter_queue: (!l.dead_letter_queue.is_empty()).then(|| l.dead_letter_queue.clone()),
        overflow: match l.overflow.as_str() {
            "reject-publish" => Overflow::RejectPublish,
            "drop-head" => Overflow::DropHead,
            _ => Overflow::Block,
        },
        lock_duration: (!l.lock_duration.is_zero()).then_some(l.lock_duration),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("ferry: {error}");
    ExitCode::FAILURE
}
