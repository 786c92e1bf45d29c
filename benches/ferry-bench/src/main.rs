//! `ferry-bench`'s command line; see the library's docs for the layout.

use ferry_bench::{compare, durable, null, routing, scenario, wire};

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use ferry_bench::scenario::Scenario;
use ferry_bench::wire::Target;

/// The same allocator as the broker: glibc's trims and regrows its heaps with a system call
/// at a time under a steady message stream, which would make the client, not the broker, the
/// limit.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "ferry-bench",
    version,
    about = "Load generator for AMQP 1.0 brokers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one scenario against one broker.
    Run(RunArgs),
    /// Holds idle connections (one session and one receiver link each) and reports the
    /// broker's RSS per connection.
    Idle {
        /// Broker URL.
        #[arg(long, default_value = "amqp://127.0.0.1:5672")]
        url: String,
        /// Queue address; `{}` is replaced by the connection number.
        #[arg(long, default_value = "idle")]
        address: String,
        /// Connections to hold.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Broker process to measure.
        #[arg(long)]
        broker_pid: Option<u32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serves the null acceptor (accepts everything, feeds every receiver).
    Null {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:5699")]
        listen: SocketAddr,
        /// Body size of the messages fed to receivers.
        #[arg(long, default_value_t = 1024)]
        size: usize,
    },
    /// Runs the scenario matrix against Ferry and its peers; writes target/bench-report/.
    Compare(compare::CompareArgs),
    /// Durable messaging (1 KiB, unsettled, window 256, sync "always") against Ferry and
    /// RabbitMQ, with the disk's bandwidth; writes target/durable-report/.
    Durable(durable::DurableArgs),
    /// Routing against Ferry's own 1→1 rate in the same run: fan-out to 10 subscribers, a
    /// topic exchange with 10,000 bindings, a JMS selector; writes target/routing-report/.
    Routing(routing::RoutingArgs),
    /// The write-ahead log alone: write rate, recovery time (warm and cold cache), and the
    /// disk's synced write bandwidth.
    Store {
        /// Scratch directory (removed before and after).
        #[arg(long, default_value = "target/store-bench")]
        dir: std::path::PathBuf,
        /// Messages to write.
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        /// Body size.
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Sync each batch (`always`) or never.
        #[arg(long)]
        no_sync: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Broker URL: amqp://[user:pass@]127.0.0.1:PORT (loopback only).
    #[arg(long, default_value = "amqp://127.0.0.1:5672")]
    url: String,
    /// Queue address; with several queues, `{}` is replaced by the queue number (otherwise
    /// `-N` is appended).
    #[arg(long, default_value = "bench")]
    address: String,
    #[command(flatten)]
    load: LoadArgs,
    /// Broker process to measure (CPU per message, peak RSS).
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// The shape of the load, shared by `run` and `compare`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Producer connections.
    #[arg(long, short = 'p', default_value_t = 1)]
    producers: usize,
    /// Consumer connections.
    #[arg(long, short = 'c', default_value_t = 1)]
    consumers: usize,
    /// Queues (producer and consumer i use queue i mod K).
    #[arg(long, short = 'q', default_value_t = 1)]
    queues: usize,
    /// Body size in bytes (at least 16: the stamp).
    #[arg(long, short = 's', default_value_t = 1024)]
    size: usize,
    /// Messages in all; 0 runs for --duration-secs.
    #[arg(long, short = 'n', default_value_t = 100_000)]
    count: u64,
    /// Upper bound on the run, in seconds (the length of a --count 0 run).
    #[arg(long, default_value_t = 30)]
    duration_secs: u64,
    /// Send pre-settled (at-most-once).
    #[arg(long)]
    presettled: bool,
    /// Set header.durable.
    #[arg(long)]
    durable: bool,
    /// Credit each consumer keeps granted.
    #[arg(long, default_value_t = 1000)]
    credit: u32,
    /// Unsettled messages each producer keeps in flight.
    #[arg(long, default_value_t = 1000)]
    window: u32,
    /// Total messages per second (0: as fast as possible); latency is then measured from each
    /// message's scheduled send time.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Worker threads for the client.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

impl LoadArgs {
    fn scenario(&self, address: &str) -> Scenario {
        Scenario {
            producers: self.producers,
            consumers: self.consumers,
            queues: self.queues.max(1),
            address: address.to_string(),
            size: self.size.max(wire::STAMP_LEN),
            count: self.count,
            duration: Duration::from_secs(self.duration_secs.clamp(1, 3600)),
            presettled: self.presettled,
            durable: self.durable,
            credit: self.credit,
            window: self.window,
            rate: self.rate,
        }
    }
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    let built = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    built.unwrap_or_else(|e| {
        eprintln!("ferry-bench: cannot start the runtime: {e}");
        std::process::exit(2)
    })
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let target = Target::parse(&args.url).unwrap_or_else(|e| {
                eprintln!("ferry-bench: {e}");
                std::process::exit(2)
            });
            let s = args.load.scenario(&args.address);
            let report =
                runtime(args.load.threads).block_on(scenario::run(&target, &s, args.broker_pid));
            if args.json {
                let doc = serde_json::json!({ "scenario": s, "report": report });
                println!("{doc}");
            } else {
                print!("{}", scenario::table(&s, &report));
            }
            if report.error.is_some() {
                std::process::exit(1);
            }
        }
        Command::Idle {
            url,
            address,
            connections,
            broker_pid,
            json,
        } => {
            let target = Target::parse(&url).unwrap_or_else(|e| {
                eprintln!("ferry-bench: {e}");
                std::process::exit(2)
            });
            let r = runtime(1).block_on(ferry_bench::idle::run(
                &target,
                connections,
                &address,
                broker_pid,
            ));
            if json {
                println!("{}", serde_json::json!(r));
            } else {
                println!(
                    "idle       {}/{} connections; broker RSS {} → {} KiB; {:.1} KiB per connection",
                    r.opened,
                    r.connections,
                    r.rss_before_kib,
                    r.rss_after_kib,
                    r.kib_per_connection
                );
                if let Some(e) = &r.error {
                    println!("error      {e}");
                }
            }
            if r.error.is_some() {
                std::process::exit(1);
            }
        }
        Command::Null { listen, size } => {
            let rt = runtime(1);
            let (tx, rx) = tokio::sync::oneshot::channel();
            rt.block_on(async move {
                let server = tokio::spawn(null::serve(listen, size, tx));
                if let Ok(addr) = rx.await {
                    println!("null acceptor listening on {addr}");
                }
                match server.await {
                    Ok(Err(e)) => eprintln!("ferry-bench null: {e}"),
                    Err(e) => eprintln!("ferry-bench null: {e}"),
                    Ok(Ok(())) => {}
                }
            });
        }
        Command::Compare(args) => std::process::exit(compare::main(args)),
        Command::Durable(args) => std::process::exit(durable::main(args)),
        Command::Routing(args) => std::process::exit(routing::main(args)),
        Command::Store {
            dir,
            messages,
            size,
            no_sync,
            json,
        } => {
            let sync = if no_sync {
                ferry::store::SyncPolicy::Never
            } else {
                ferry::store::SyncPolicy::Always
            };
            match ferry_bench::storebench::run(&dir, messages, size, sync) {
                Ok(r) if json => println!("{}", serde_json::json!(r)),
                Ok(r) => println!(
                    "store      {} × {} B: {:.0} msgs/s, {:.0} MB/s, {} syncs, {} segments\n\
                     recovery   {} messages: {:.2} s warm, {:.2} s cold\n\
                     disk       {:.0} MB/s sequential with fdatasync per MiB",
                    r.messages,
                    r.size,
                    r.write_msgs_per_sec,
                    r.write_mb_per_sec,
                    r.syncs,
                    r.segments,
                    r.recovered,
                    r.recover_warm_secs,
                    r.recover_cold_secs,
                    r.disk_mb_per_sec
                ),
                Err(e) => {
                    eprintln!("ferry-bench store: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
}
