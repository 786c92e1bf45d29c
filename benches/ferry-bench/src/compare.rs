//! `ferry-bench compare`: the same scenario matrix against Ferry and its peers (RabbitMQ with
//! its AMQP 1.0 plugin, the Qpid Proton C example broker), driven by this tool in-process and
//! by the Proton C load client, with the null acceptor as the bound on what the tool can
//! measure. Writes `report.md`, `results.json`, `throughput.svg` and `broker-cpu.svg`.
//!
//! # How a run goes
//! 1. The idle cell, per broker: N connections with one session and one receiver link each.
//! 2. The memory cell: Ferry, 1 KiB unsettled 1→1, 1,000,000 messages, peak RSS.
//!
//!    Both measure memory, which is only honest on a fresh process (an allocator keeps what
//!    earlier load freed), so each runs on a broker instance started for it and stopped
//!    after it.
//! 3. The matrix: every broker asked for is started once, on a free loopback port, and kept
//!    for the whole matrix; one that is not installed or does not start is skipped with a
//!    note. A null acceptor (this binary, `null` subcommand) is started per message size.
//!    Per client, per cell, every broker runs once (and the null acceptor, for the
//!    in-process client), in an order that rotates from cell to cell so that drift of the
//!    machine hits every broker alike; `--repeat R` runs R rounds and keeps the median.
//! 4. Latency at half of Ferry's maximum rate measured in the matrix (1 KiB unsettled 1→1).
//!
//! # Bounds
//! A cell sends `--count` messages in all (split over its producers) under a cap of
//! `--duration-secs`. A broker that cannot move the count in time is stopped at the cap and
//! its rate is computed from what it did move (received messages over the time to the last
//! one); the report marks such cells with †. Receivers of the C client get 3 s more than the
//! senders to drain. Every child process (brokers, null acceptors, C clients) is tracked by
//! PID and killed when it is no longer needed, on errors and panics too (Drop guards), and on
//! the first SIGINT/SIGTERM after the run in progress.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::idle::{self, IdleReport};
use crate::procstat::{self, Sampler};
use crate::scenario::{self, Report, Scenario};
use crate::wire::Target;

/// Options of `ferry-bench compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Brokers to compare; one that is not installed is skipped with a note.
    #[arg(long, value_enum, value_delimiter = ',',
          default_values_t = [BrokerKind::Ferry, BrokerKind::Rabbitmq, BrokerKind::Proton])]
    pub brokers: Vec<BrokerKind>,
    /// Clients to drive them with.
    #[arg(long, value_enum, value_delimiter = ',',
          default_values_t = [ClientKind::FerryBench, ClientKind::Proton])]
    pub clients: Vec<ClientKind>,
    /// Message body sizes in bytes.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize, 1024])]
    pub sizes: Vec<usize>,
    /// Topologies: N stands for N producers and N consumers over N queues.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 4, 16])]
    pub topologies: Vec<usize>,
    /// Messages per cell, split over its producers [default: 200000; --quick: 20000].
    #[arg(long)]
    pub count: Option<u64>,
    /// Cap on every run, in seconds [default: 30; --quick: 10].
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// Rounds of the matrix; each figure is the median round.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Smoke-test sizes: 20,000 messages per cell, 1,000 idle connections, 200,000 messages
    /// in the memory cell, 10 s cap.
    #[arg(long)]
    pub quick: bool,
    /// Idle connections per broker [default: 10000; --quick: 1000].
    #[arg(long)]
    pub idle_connections: Option<usize>,
    /// Messages of the memory cell [default: 1000000; --quick: 200000].
    #[arg(long)]
    pub memory_count: Option<u64>,
    /// Parts to leave out.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub skip: Vec<Skip>,
    /// Where the report goes.
    #[arg(long, default_value = "target/bench-report")]
    pub out: PathBuf,
    /// Ferry's binary [default: target/release/ferry under the workspace].
    #[arg(long)]
    pub ferry: Option<PathBuf>,
    /// Ferry's config [default: benches/ferry-bench.toml under the workspace].
    #[arg(long)]
    pub ferry_config: Option<PathBuf>,
    /// Where benches/peers/install.sh put proton-broker and proton-load
    /// [default: target/bench-peers under the workspace].
    #[arg(long)]
    pub peers_dir: Option<PathBuf>,
    /// The RabbitMQ node script [default: benches/peers/rabbitmq.sh under the workspace].
    #[arg(long)]
    pub rabbitmq_script: Option<PathBuf>,
    /// Credit each consumer keeps granted.
    #[arg(long, default_value_t = 1000)]
    pub credit: u32,
    /// Unsettled messages each producer keeps in flight.
    #[arg(long, default_value_t = 1000)]
    pub window: u32,
    /// Worker threads of the in-process client (1: a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// A broker under comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BrokerKind {
    /// Ferry (this repository).
    Ferry,
    /// RabbitMQ 3.10 with the amqp1_0 plugin.
    Rabbitmq,
    /// The Qpid Proton C example broker.
    Proton,
}

impl BrokerKind {
    /// Its name in the report.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ferry => "Ferry",
            Self::Rabbitmq => "RabbitMQ",
            Self::Proton => "Proton broker",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Self::Ferry => "ferry",
            Self::Rabbitmq => "rabbit",
            Self::Proton => "proton",
        }
    }
}

/// A load client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientKind {
    /// This tool, in-process.
    FerryBench,
    /// The Qpid Proton C load client, one process per connection.
    Proton,
}

impl ClientKind {
    /// Its name in the report.
    pub fn label(self) -> &'static str {
        match self {
            Self::FerryBench => "ferry-bench",
            Self::Proton => "Proton C",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Self::FerryBench => "fb",
            Self::Proton => "pc",
        }
    }
}

/// Parts of the run that can be left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Skip {
    /// The idle-connection cell.
    Idle,
    /// The 1,000,000-message memory cell.
    Memory,
    /// Latency at half the maximum rate.
    Latency,
    /// The null acceptor.
    Null,
    /// The matrix itself.
    Matrix,
}

// ---- cells, rotation, medians -------------------------------------------------------------

/// One cell of the matrix: N producers → N consumers over N queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cell {
    /// Body bytes.
    pub size: usize,
    /// Pre-settled (at-most-once) rather than unsettled.
    pub presettled: bool,
    /// N.
    pub links: usize,
}

impl Cell {
    /// For people: "1 KiB unsettled 4→4".
    pub fn label(&self) -> String {
        format!(
            "{} {} {n}→{n}",
            size_label(self.size),
            if self.presettled {
                "pre-settled"
            } else {
                "unsettled"
            },
            n = self.links
        )
    }

    /// For queue names: "1k-uns-4".
    fn slug(&self) -> String {
        let size = if self.size % 1024 == 0 {
            format!("{}k", self.size / 1024)
        } else {
            self.size.to_string()
        };
        let mode = if self.presettled { "pre" } else { "uns" };
        format!("{size}-{mode}-{}", self.links)
    }

    /// The headline cell of the issue's goals.
    fn is_headline(&self) -> bool {
        self.size == 1024 && !self.presettled && self.links == 1
    }
}

fn size_label(size: usize) -> String {
    if size >= 1024 && size % 1024 == 0 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

/// The matrix: per size, pre-settled then unsettled, per topology.
pub fn cells(sizes: &[usize], topologies: &[usize]) -> Vec<Cell> {
    let mut out = Vec::new();
    for &size in sizes {
        for presettled in [true, false] {
            for &links in topologies {
                out.push(Cell {
                    size: size.max(crate::wire::STAMP_LEN),
                    presettled,
                    links: links.max(1),
                });
            }
        }
    }
    out
}

/// The order in which `n` peers run in round `round`: a rotation, so that over `n`
/// consecutive rounds every peer goes first once and last once.
pub fn rotation(n: usize, round: usize) -> Vec<usize> {
    (0..n).map(|i| (i + round) % n.max(1)).collect()
}

/// The index of the median of `values` (the lower median for an even count), so that the
/// median is a run that happened rather than an average of two.
pub fn median_index(values: &[f64]) -> Option<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    idx.get(values.len().saturating_sub(1) / 2).copied()
}

/// The median run by `rate` among the runs that are `ok` (the last run when none is), with
/// every run's rate in order.
pub fn median_run<T>(
    runs: Vec<T>,
    rate: impl Fn(&T) -> f64,
    ok: impl Fn(&T) -> bool,
) -> Option<(T, Vec<f64>)> {
    let rates: Vec<f64> = runs.iter().map(&rate).collect();
    let good: Vec<usize> = (0..runs.len())
        .filter(|&i| runs.get(i).is_some_and(&ok))
        .collect();
    let good_rates: Vec<f64> = good.iter().filter_map(|&i| rates.get(i).copied()).collect();
    let pick = median_index(&good_rates)
        .and_then(|m| good.get(m).copied())
        .or_else(|| runs.len().checked_sub(1))?;
    let run = runs.into_iter().nth(pick)?;
    Some((run, rates))
}

/// A figure with `prec` decimals, or a dash when there is none.
pub fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.prec$}"))
}

/// Writes `NAME.md` and `NAME.json` (of `results`) under `out` and prints the markdown;
/// false if a file could not be written (said on stderr).
pub fn save_report(out: &Path, name: &str, md: &str, results: &impl Serialize) -> bool {
    let json = match serde_json::to_string_pretty(results) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("{name}: {e}");
            return false;
        }
    };
    let mut ok = true;
    for (file, text) in [(format!("{name}.md"), md), (format!("{name}.json"), &json)] {
        let path = out.join(file);
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("{name}: {}: {e}", path.display());
            ok = false;
        }
    }
    print!("{md}");
    eprintln!(
        "{name}: wrote {} and {name}.json",
        out.join(format!("{name}.md")).display()
    );
    ok
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

// ---- the Proton C client's output ---------------------------------------------------------

/// The JSON line one `proton-load` process prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientLine {
    /// "send" or "receive".
    pub role: String,
    /// Messages sent (settled as accepted, or written when pre-settled) or received.
    pub count: u64,
    /// Sender: from attach to the last count; receiver: first to last delivery.
    pub elapsed_secs: f64,
    /// count / elapsed_secs.
    pub rate: f64,
    /// The process's CPU, user + system.
    pub cpu_secs: f64,
    /// Receiver latency percentiles (µs); null for senders.
    pub p50_us: Option<f64>,
    /// 99th percentile.
    pub p99_us: Option<f64>,
    /// 99.9th percentile.
    pub p999_us: Option<f64>,
    /// Largest.
    pub max_us: Option<f64>,
    /// Sender: deliveries settled with another outcome than accepted.
    #[serde(default)]
    pub rejected: u64,
    /// The duration ran out before the count.
    #[serde(default)]
    pub timed_out: bool,
}

/// The last JSON object line of a process's stdout.
pub fn parse_client_line(stdout: &str) -> Result<ClientLine, String> {
    let line = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| "no JSON line on stdout".to_string())?;
    serde_json::from_str(line).map_err(|e| format!("bad JSON line {line:?}: {e}"))
}

/// Several processes' lines as one report: counts are sums, a rate is the total over the
/// longest elapsed time of that role, latency p50 is the median of the receivers' p50s and
/// the higher percentiles the maximum over receivers, and the clients' CPU per message is
/// the sum of every process's CPU over the messages received (sent, with no receivers).
pub fn aggregate(lines: &[ClientLine]) -> Report {
    let (senders, receivers): (Vec<&ClientLine>, Vec<&ClientLine>) =
        lines.iter().partition(|l| l.role == "send");
    let sum = |v: &[&ClientLine]| v.iter().map(|l| l.count).sum::<u64>();
    let longest = |v: &[&ClientLine]| v.iter().map(|l| l.elapsed_secs).fold(0.0, f64::max);
    let rate = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let sent = sum(&senders);
    let received = sum(&receivers);
    let top = |f: fn(&ClientLine) -> Option<f64>| {
        receivers.iter().filter_map(|l| f(l)).fold(0.0, f64::max)
    };
    let mut p50s: Vec<f64> = receivers.iter().filter_map(|l| l.p50_us).collect();
    let cpu: f64 = lines.iter().map(|l| l.cpu_secs).sum();
    let per_msg = if receivers.is_empty() { sent } else { received }.max(1) as f64;
    Report {
        sent,
        received,
        refused: senders.iter().map(|l| l.rejected).sum(),
        send_rate: rate(sent, longest(&senders)),
        recv_rate: rate(received, longest(&receivers)),
        p50_us: median(&mut p50s).unwrap_or(0.0),
        p99_us: top(|l| l.p99_us),
        p999_us: top(|l| l.p999_us),
        max_us: top(|l| l.max_us),
        client_cpu_us_per_msg: cpu * 1e6 / per_msg,
        elapsed_secs: lines.iter().map(|l| l.elapsed_secs).fold(0.0, f64::max),
        ..Default::default()
    }
}

// ---- results ------------------------------------------------------------------------------

/// One run of one cell against one peer.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Round (0-based).
    pub round: usize,
    /// Place in the round's order (0 = first).
    pub position: usize,
    /// Queue name (or the pattern, with several queues).
    pub address: String,
    /// Fewer messages than the count arrived before the cap.
    pub capped: bool,
    /// The figures.
    pub report: Report,
    /// Proton C client: every process.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessResult>,
}

impl Outcome {
    fn failed(&self) -> bool {
        self.report.error.is_some()
    }
}

/// One `proton-load` process.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessResult {
    /// "send" or "receive".
    pub role: String,
    /// Its address.
    pub address: String,
    /// Exit code (None: killed or a signal).
    pub exit_code: Option<i32>,
    /// Its JSON line.
    pub line: Option<ClientLine>,
    /// The end of its stderr.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stderr: String,
}

/// One peer's runs of a cell.
#[derive(Debug, Clone, Serialize)]
pub struct PeerCell {
    /// The median round (by received rate, among runs that did not fail).
    pub median: Outcome,
    /// Every round.
    pub runs: Vec<Outcome>,
}

impl PeerCell {
    fn from_runs(runs: Vec<Outcome>) -> Option<Self> {
        let ok: Vec<&Outcome> = runs.iter().filter(|o| !o.failed()).collect();
        let median = if ok.is_empty() {
            runs.first()?.clone()
        } else {
            let rates: Vec<f64> = ok.iter().map(|o| o.report.recv_rate).collect();
            ok[median_index(&rates)?].clone()
        };
        Some(Self { median, runs })
    }

    fn ok(&self) -> Option<&Report> {
        (!self.median.failed()).then_some(&self.median.report)
    }
}

/// A cell for one client.
#[derive(Debug, Clone, Serialize)]
pub struct CellResult {
    /// The client.
    pub client: ClientKind,
    /// The cell.
    pub cell: Cell,
    /// Messages asked for.
    pub count: u64,
    /// Per broker.
    pub brokers: BTreeMap<BrokerKind, PeerCell>,
    /// The null acceptor (in-process client only).
    pub null: Option<PeerCell>,
}

impl CellResult {
    fn best_broker_rate(&self) -> Option<f64> {
        self.brokers
            .values()
            .filter_map(|p| p.ok().map(|r| r.recv_rate))
            .filter(|r| *r > 0.0)
            .reduce(f64::max)
    }

    /// Null acceptor rate over the best broker's.
    fn null_ratio(&self) -> Option<f64> {
        let null = self.null.as_ref()?.ok()?.recv_rate;
        Some(null / self.best_broker_rate()?)
    }
}

/// How a broker fared at start.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerStatus {
    /// Which.
    pub broker: BrokerKind,
    /// Listening address, when it ran.
    pub address: Option<String>,
    /// Its PID, when it ran.
    pub pid: Option<u32>,
    /// Why it was skipped, or where it came from.
    pub note: String,
}

/// The idle cell of one broker.
#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    /// Which.
    pub broker: BrokerKind,
    /// What idle::run measured; None when skipped.
    pub report: Option<IdleReport>,
    /// Why skipped, or what to know.
    pub note: Option<String>,
}

/// Latency at half of the maximum rate.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyResult {
    /// The maximum rate it is half of (msgs/s).
    pub max_rate: f64,
    /// The rate asked for.
    pub rate: u64,
    /// Messages sent.
    pub count: u64,
    /// The run.
    pub report: Report,
}

/// The memory cell.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryResult {
    /// Messages.
    pub count: u64,
    /// Ferry's RSS just before, MiB.
    pub rss_before_mib: f64,
    /// The run (its broker_peak_rss_mib is the figure).
    pub report: Report,
}

/// One goal of the issue.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// What.
    pub goal: String,
    /// The bound.
    pub target: String,
    /// What was measured.
    pub measured: String,
    /// None: not measured.
    pub met: Option<bool>,
}

/// Where and what.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    /// CPUs available.
    pub nproc: usize,
    /// /proc/cpuinfo's model name.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// MemTotal, MiB.
    pub memory_mib: u64,
    /// Soft open-file limit of this process.
    pub open_files_limit: Option<u64>,
}

/// The run's settings.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Messages per cell.
    pub count: u64,
    /// Cap per run, seconds.
    pub duration_secs: u64,
    /// Rounds.
    pub repeat: usize,
    /// --quick.
    pub quick: bool,
    /// Idle connections per broker.
    pub idle_connections: usize,
    /// Messages of the memory cell.
    pub memory_count: u64,
    /// Consumer credit.
    pub credit: u32,
    /// Producer window.
    pub window: u32,
    /// In-process client threads.
    pub threads: usize,
    /// The command line.
    pub command: String,
}

/// Everything, as written to results.json.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// UTC, when the run started.
    pub date: String,
    /// The machine.
    pub machine: Machine,
    /// Name → version.
    pub versions: BTreeMap<String, String>,
    /// Settings.
    pub settings: Settings,
    /// Brokers and how they started.
    pub brokers: Vec<BrokerStatus>,
    /// The matrix.
    pub cells: Vec<CellResult>,
    /// Idle connections.
    pub idle: Vec<IdleResult>,
    /// Latency at half the maximum rate.
    pub latency: Option<LatencyResult>,
    /// The memory cell.
    pub memory: Option<MemoryResult>,
    /// The issue's goals.
    pub goals: Vec<Goal>,
    /// Things to know.
    pub notes: Vec<String>,
    /// Wall time of the whole run.
    pub elapsed_secs: f64,
}

// ---- child processes ----------------------------------------------------------------------

/// Set by SIGINT/SIGTERM: finish the run in progress, then stop.
static STOP: AtomicBool = AtomicBool::new(false);

pub(crate) fn stopping() -> bool {
    STOP.load(Ordering::Relaxed)
}

pub(crate) fn watch_signals() {
    let spawned = std::thread::Builder::new()
        .name("compare-signals".into())
        .spawn(|| {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut int), Ok(mut term)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    return;
                };
                tokio::select! {
                    _ = int.recv() => {},
                    _ = term.recv() => {},
                }
                eprintln!("compare: interrupted; stopping after the run in progress");
                STOP.store(true, Ordering::Relaxed);
            });
        });
    if let Err(e) = spawned {
        eprintln!("compare: cannot watch signals: {e}");
    }
}

/// A process this run started; stopped when dropped.
#[derive(Debug)]
struct ProcGuard {
    name: String,
    pid: u32,
    child: Option<Child>,
    /// A command that stops it (RabbitMQ's script), run before anything else.
    stop: Option<Command>,
}

impl ProcGuard {
    fn alive(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => pid_alive(self.pid),
        }
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        if let Some(mut cmd) = self.stop.take() {
            match run_bounded(&mut cmd, Duration::from_secs(90)) {
                Ok((status, _, err)) if !status.success() => {
                    eprintln!("compare: stopping {}: {}", self.name, last_lines(&err, 3));
                }
                Err(e) => eprintln!("compare: stopping {}: {e}", self.name),
                Ok(_) => {}
            }
        }
        if let Some(mut child) = self.child.take() {
            // SIGTERM first, so the broker can close its connections; then SIGKILL.
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid.to_string()])
                .stderr(Stdio::null())
                .status();
            let until = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        } else if pid_alive(self.pid) {
            // Started through a script that should have stopped it: the PID is ours.
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s.rsplit_once(')').map(|(_, r)| r.trim_start());
        !matches!(state.and_then(|r| r.chars().next()), Some('Z' | 'X') | None)
    })
}

/// Runs `cmd` to completion within `limit` (killed past it); returns status, stdout, stderr.
pub(crate) fn run_bounded(
    cmd: &mut Command,
    limit: Duration,
) -> Result<(ExitStatus, String, String), String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    // Read both pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let until = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= until => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish within {} s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.to_string()),
        }
    };
    // A grandchild holding the pipes open must not hang us.
    let join = |t: std::thread::JoinHandle<String>| {
        let until = Instant::now() + Duration::from_secs(2);
        while !t.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if t.is_finished() {
            t.join().unwrap_or_default()
        } else {
            String::new()
        }
    };
    Ok((status, join(out_t), join(err_t)))
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

pub(crate) fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Starts a fresh instance of `kind`; `phase` names its log (and RabbitMQ's directory).
fn start_broker(kind: BrokerKind, paths: &Paths, phase: &str) -> Result<Endpoint, String> {
    match kind {
        BrokerKind::Ferry => start_ferry(paths, phase),
        BrokerKind::Rabbitmq => start_rabbitmq(paths, phase),
        BrokerKind::Proton => start_proton_broker(paths, phase),
    }
}

/// Waits until `addr` accepts connections, while `guard`'s process lives.
fn wait_listening(addr: &str, guard: &mut ProcGuard, limit: Duration) -> Result<(), String> {
    let sock: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let until = Instant::now() + limit;
    loop {
        if TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if !guard.alive() {
            return Err(format!("{} exited during start", guard.name));
        }
        if Instant::now() >= until {
            return Err(format!(
                "{} did not listen on {addr} within {} s",
                guard.name,
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A broker (or null acceptor) the matrix runs against.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// None: the null acceptor.
    kind: Option<BrokerKind>,
    pub(crate) target: Target,
    /// Prefix of queue addresses ("/queue/" for RabbitMQ).
    pub(crate) prefix: &'static str,
    guard: ProcGuard,
}

impl Endpoint {
    pub(crate) fn pid(&self) -> u32 {
        self.guard.pid
    }

    fn name(&self) -> &'static str {
        self.kind.map_or("null acceptor", BrokerKind::label)
    }

    fn slug(&self) -> &'static str {
        self.kind.map_or("null", BrokerKind::slug)
    }
}

#[derive(Debug)]
pub(crate) struct Paths {
    pub(crate) ferry: PathBuf,
    pub(crate) ferry_config: PathBuf,
    pub(crate) peers: PathBuf,
    pub(crate) rabbitmq_script: PathBuf,
    pub(crate) out: PathBuf,
}

/// The workspace root: the first directory, from the current one and then from this
/// executable's, that holds benches/ferry-bench/Cargo.toml.
pub(crate) fn workspace_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let exe = std::env::current_exe().ok();
    let starts = [
        Some(cwd.clone()),
        exe.and_then(|e| e.parent().map(Path::to_path_buf)),
    ];
    for start in starts.into_iter().flatten() {
        for dir in start.ancestors() {
            if dir.join("benches/ferry-bench/Cargo.toml").is_file() {
                return dir.to_path_buf();
            }
        }
    }
    cwd
}

fn log_file(paths: &Paths, name: &str) -> Result<(std::fs::File, PathBuf), String> {
    let dir = paths.out.join("logs");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(name);
    let f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((f, path))
}

fn spawn_logged(
    name: &str,
    cmd: &mut Command,
    paths: &Paths,
    log: &str,
) -> Result<(ProcGuard, PathBuf), String> {
    let (f, path) = log_file(paths, log)?;
    let f2 = f.try_clone().map_err(|e| e.to_string())?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(f)
        .stderr(f2)
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    Ok((
        ProcGuard {
            name: name.to_string(),
            pid: child.id(),
            child: Some(child),
            stop: None,
        },
        path,
    ))
}

pub(crate) fn with_log_tail(e: String, log: &Path) -> String {
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    let tail = last_lines(&tail, 3);
    if tail.is_empty() {
        e
    } else {
        format!("{e}: {tail}")
    }
}

fn start_ferry(paths: &Paths, phase: &str) -> Result<Endpoint, String> {
    if !paths.ferry.is_file() {
        return Err(format!(
            "not built: {} (cargo build --release -p ferry)",
            paths.ferry.display()
        ));
    }
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let data = paths.out.join("ferry-data");
    let _ = std::fs::create_dir_all(&data);
    let mut cmd = Command::new(&paths.ferry);
    cmd.arg("--config")
        .arg(&paths.ferry_config)
        .args(["--listen", &addr, "--log-level", "warn", "--data-dir"])
        .arg(&data);
    let (mut guard, log) = spawn_logged("ferry", &mut cmd, paths, &format!("ferry-{phase}.log"))?;
    wait_listening(&addr, &mut guard, Duration::from_secs(15))
        .map_err(|e| with_log_tail(e, &log))?;
    Ok(Endpoint {
        kind: Some(BrokerKind::Ferry),
        target: Target {
            addr,
            credentials: None,
        },
        prefix: "",
        guard,
    })
}

fn start_proton_broker(paths: &Paths, phase: &str) -> Result<Endpoint, String> {
    let bin = paths.peers.join("proton-broker");
    if !bin.is_file() {
        return Err(format!(
            "not installed: {} (bash benches/peers/install.sh)",
            bin.display()
        ));
    }
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(&bin);
    cmd.args(["127.0.0.1", &port.to_string()]);
    let (mut guard, log) = spawn_logged(
        "proton-broker",
        &mut cmd,
        paths,
        &format!("proton-broker-{phase}.log"),
    )?;
    wait_listening(&addr, &mut guard, Duration::from_secs(15))
        .map_err(|e| with_log_tail(e, &log))?;
    Ok(Endpoint {
        kind: Some(BrokerKind::Proton),
        target: Target {
            addr,
            credentials: None,
        },
        prefix: "",
        guard,
    })
}

pub(crate) fn start_rabbitmq(paths: &Paths, phase: &str) -> Result<Endpoint, String> {
    let script = &paths.rabbitmq_script;
    if !script.is_file() {
        return Err(format!("no {}", script.display()));
    }
    if !Path::new("/usr/lib/rabbitmq/bin/rabbitmq-server").exists() {
        return Err("not installed: rabbitmq-server (bash benches/peers/install.sh)".into());
    }
    let port = free_port()?;
    let dir = paths.out.join(format!("rabbitmq-{phase}"));
    let _ = std::fs::create_dir_all(&dir);
    let script_cmd = |verb: &str| {
        let mut c = Command::new("bash");
        c.arg(script).arg(verb).arg(port.to_string()).arg(&dir);
        c
    };
    let started = run_bounded(&mut script_cmd("start"), Duration::from_secs(120));
    let (status, out, err) = match started {
        Ok(x) => x,
        Err(e) => {
            // Whatever it got to, stop it.
            let _ = run_bounded(&mut script_cmd("stop"), Duration::from_secs(60));
            return Err(format!("rabbitmq.sh start: {e}"));
        }
    };
    let pid = out.lines().rev().find_map(|l| l.trim().parse::<u32>().ok());
    let (true, Some(pid)) = (status.success(), pid) else {
        let _ = run_bounded(&mut script_cmd("stop"), Duration::from_secs(60));
        return Err(format!("rabbitmq.sh start failed: {}", last_lines(&err, 3)));
    };
    Ok(Endpoint {
        kind: Some(BrokerKind::Rabbitmq),
        target: Target {
            addr: format!("127.0.0.1:{port}"),
            credentials: Some(("guest".into(), "guest".into())),
        },
        prefix: "/queue/",
        guard: ProcGuard {
            name: "rabbitmq".into(),
            pid,
            child: None,
            stop: Some(script_cmd("stop")),
        },
    })
}

fn start_null(paths: &Paths, size: usize) -> Result<Endpoint, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(exe);
    cmd.args(["null", "--listen", &addr, "--size", &size.to_string()]);
    let (mut guard, log) = spawn_logged(
        &format!("null acceptor ({size} B)"),
        &mut cmd,
        paths,
        &format!("null-{size}.log"),
    )?;
    wait_listening(&addr, &mut guard, Duration::from_secs(10))
        .map_err(|e| with_log_tail(e, &log))?;
    Ok(Endpoint {
        kind: None,
        target: Target {
            addr,
            credentials: None,
        },
        prefix: "",
        guard,
    })
}

// ---- running one cell ---------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Load {
    count: u64,
    duration: Duration,
    credit: u32,
    window: u32,
}

fn queue_pattern(prefix: &str, name: &str, links: usize) -> String {
    if links > 1 {
        format!("{prefix}{name}-{{}}")
    } else {
        format!("{prefix}{name}")
    }
}

fn scenario_for(cell: Cell, address: String, load: &Load, rate: u64) -> Scenario {
    Scenario {
        producers: cell.links,
        consumers: cell.links,
        queues: cell.links,
        address,
        size: cell.size,
        count: load.count,
        duration: load.duration,
        presettled: cell.presettled,
        durable: false,
        credit: load.credit,
        window: load.window,
        rate,
    }
}

/// Drives `fut` on `rt`, giving up when the run is interrupted or past `limit`.
pub(crate) fn block_on_bounded<T>(
    rt: &tokio::runtime::Runtime,
    fut: impl std::future::Future<Output = T>,
    limit: Duration,
) -> Result<T, String> {
    rt.block_on(async {
        let stop = async {
            while !stopping() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            r = tokio::time::timeout(limit, fut) => r.map_err(|_| format!("no result within {} s", limit.as_secs())),
            _ = stop => Err("interrupted".to_string()),
        }
    })
}

fn run_in_process(rt: &tokio::runtime::Runtime, ep: &Endpoint, s: &Scenario) -> Report {
    let limit = s.duration + Duration::from_secs(60);
    block_on_bounded(rt, scenario::run(&ep.target, s, Some(ep.pid())), limit).unwrap_or_else(|e| {
        Report {
            error: Some(e),
            ..Default::default()
        }
    })
}

/// A `proton-load` process being waited for.
#[derive(Debug)]
struct ClientProc {
    role: &'static str,
    address: String,
    child: Child,
}

/// The C client processes of one cell; any still running when dropped are killed.
#[derive(Debug, Default)]
struct ClientSet(Vec<ClientProc>);

impl Drop for ClientSet {
    fn drop(&mut self) {
        for p in &mut self.0 {
            if matches!(p.child.try_wait(), Ok(None)) {
                let _ = p.child.kill();
            }
            let _ = p.child.wait();
        }
    }
}

/// Messages for producer `i` of `n` when `count` are split over them.
fn quota(count: u64, n: usize, i: usize) -> u64 {
    let n = n.max(1) as u64;
    count / n + u64::from((i as u64) < count % n)
}

fn run_proton_clients(bin: &Path, ep: &Endpoint, cell: Cell, name: &str, load: &Load) -> Outcome {
    let n = cell.links;
    let address = |i: usize| {
        if n > 1 {
            format!("{}{name}-{i}", ep.prefix)
        } else {
            format!("{}{name}", ep.prefix)
        }
    };
    let spawn = |role: &'static str, i: usize, secs: f64| -> Result<ClientProc, String> {
        let addr = address(i);
        let mut cmd = Command::new(bin);
        cmd.args(["--url", &ep.target.addr, "--address", &addr, "--role", role])
            .args(["--count", &quota(load.count, n, i).to_string()])
            .args(["--duration-secs", &format!("{secs:.1}")])
            .args(["--size", &cell.size.to_string()]);
        if cell.presettled {
            cmd.arg("--presettled");
        }
        if role == "send" {
            cmd.args(["--window", &load.window.to_string()]);
        } else {
            cmd.args(["--credit", &load.credit.to_string()]);
        }
        if let Some((u, p)) = &ep.target.credentials {
            cmd.args(["--user", u, "--password", p]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        Ok(ClientProc {
            role,
            address: addr,
            child,
        })
    };
    let secs = load.duration.as_secs_f64();
    let mut set = ClientSet::default();
    let mut error = None;
    // Receivers first, so every queue has its consumer before the first message.
    for i in 0..n {
        match spawn("receive", i, secs + 3.0) {
            Ok(p) => set.0.push(p),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    if error.is_none()
        && let Some(addr) = set
            .0
            .iter_mut()
            .find_map(|p| (!matches!(p.child.try_wait(), Ok(None))).then(|| p.address.clone()))
    {
        error = Some(format!(
            "receiver on {addr} exited before the senders started"
        ));
    }
    let sampler = Sampler::start(ep.pid());
    if error.is_none() {
        for i in 0..n {
            match spawn("send", i, secs) {
                Ok(p) => set.0.push(p),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
    }
    // Wait for all (they bound themselves; this is the backstop).
    let until = Instant::now() + load.duration + Duration::from_secs(15);
    let mut processes = Vec::new();
    let mut lines = Vec::new();
    // Iterated in place: the set still owns every child, so a panic here kills them too.
    for p in &mut set.0 {
        while error.is_none()
            && !stopping()
            && Instant::now() < until
            && matches!(p.child.try_wait(), Ok(None))
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let killed = matches!(p.child.try_wait(), Ok(None));
        if killed {
            let _ = p.child.kill();
        }
        let status = p.child.wait().ok();
        let mut out = String::new();
        let mut err = String::new();
        if let Some(o) = p.child.stdout.as_mut() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(e) = p.child.stderr.as_mut() {
            let _ = e.read_to_string(&mut err);
        }
        let line = parse_client_line(&out).ok();
        if let Some(l) = &line {
            lines.push(l.clone());
        } else if error.is_none() {
            error = Some(if killed {
                format!("{} on {}: killed at the time limit", p.role, p.address)
            } else {
                format!(
                    "{} on {}: {}",
                    p.role,
                    p.address,
                    non_empty(last_lines(&err, 2), "exited without a result")
                )
            });
        }
        processes.push(ProcessResult {
            role: p.role.to_string(),
            address: p.address.clone(),
            exit_code: status.and_then(|s| s.code()),
            line,
            stderr: last_lines(&err, 5),
        });
    }
    let usage = sampler.finish();
    let mut report = aggregate(&lines);
    report.broker_cpu_secs = Some(usage.cpu_secs);
    report.broker_cpu_us_per_msg = Some(usage.cpu_secs * 1e6 / report.received.max(1) as f64);
    report.broker_peak_rss_mib = Some(usage.peak_rss_kib as f64 / 1024.0);
    if error.is_none() && stopping() {
        error = Some("interrupted".into());
    }
    report.error = error;
    let capped = lines.iter().any(|l| l.timed_out) || report.received < load.count;
    Outcome {
        round: 0,
        position: 0,
        address: queue_pattern(ep.prefix, name, n),
        capped,
        report,
        processes,
    }
}

fn non_empty(s: String, otherwise: &str) -> String {
    if s.is_empty() {
        otherwise.to_string()
    } else {
        s
    }
}

// ---- the whole run ------------------------------------------------------------------------

fn open_files_limit(pid: &str) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

pub(crate) fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        memory_mib: std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kib| kib / 1024),
        open_files_limit: open_files_limit("self"),
    }
}

pub(crate) fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let (status, out, _) = run_bounded(&mut cmd, Duration::from_secs(10)).ok()?;
    let out = out.trim();
    (status.success() && !out.is_empty()).then(|| out.to_string())
}

fn versions(paths: &Paths, root: &Path) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert("ferry-bench".into(), env!("CARGO_PKG_VERSION").to_string());
    if let Some(s) = paths
        .ferry
        .to_str()
        .and_then(|f| command_output(f, &["--version"]))
    {
        v.insert("ferry".into(), s);
    }
    if let Some(root) = root.to_str()
        && let Some(rev) = command_output("git", &["-C", root, "rev-parse", "--short", "HEAD"])
    {
        v.insert("git".into(), rev);
    }
    for (name, pkg) in [
        ("rabbitmq-server", "rabbitmq-server"),
        ("erlang", "erlang-base"),
        ("qpid-proton", "libqpid-proton11-dev"),
    ] {
        if let Some(s) = command_output("dpkg-query", &["-W", "-f=${Version}", pkg]) {
            v.insert(name.into(), s);
        }
    }
    if let Some(s) = command_output("rustc", &["--version"]) {
        v.insert("rustc".into(), s);
    }
    v
}

/// UTC date and time from the UNIX clock (civil calendar from a day count).
pub(crate) fn utc_string(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

pub(crate) fn rate_str(r: f64) -> String {
    thousands(r.round() as u64)
}

pub(crate) fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Runs the matrix; returns the exit code: 0 when the report is written and every Ferry run
/// succeeded, 1 when Ferry could not be run, a Ferry run failed or the report could not be
/// written, 130 when interrupted (the partial report is still written).
pub fn main(args: CompareArgs) -> i32 {
    watch_signals();
    let started = Instant::now();
    let root = workspace_root();
    let at_root =
        |p: &Option<PathBuf>, default: &str| p.clone().unwrap_or_else(|| root.join(default));
    let paths = Paths {
        ferry: at_root(&args.ferry, "target/release/ferry"),
        ferry_config: at_root(&args.ferry_config, "benches/ferry-bench.toml"),
        peers: at_root(&args.peers_dir, "target/bench-peers"),
        rabbitmq_script: at_root(&args.rabbitmq_script, "benches/peers/rabbitmq.sh"),
        out: args.out.clone(),
    };
    if let Err(e) = std::fs::create_dir_all(&paths.out) {
        eprintln!("compare: {}: {e}", paths.out.display());
        return 1;
    }
    let settings = Settings {
        count: args
            .count
            .unwrap_or(if args.quick { 20_000 } else { 200_000 })
            .max(1),
        duration_secs: args
            .duration_secs
            .unwrap_or(if args.quick { 10 } else { 30 })
            .clamp(1, 3600),
        repeat: args.repeat.max(1),
        quick: args.quick,
        idle_connections: args
            .idle_connections
            .unwrap_or(if args.quick { 1_000 } else { 10_000 }),
        memory_count: args
            .memory_count
            .unwrap_or(if args.quick { 200_000 } else { 1_000_000 }),
        credit: args.credit.max(1),
        window: args.window.max(1),
        threads: args.threads.max(1),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let load = Load {
        count: settings.count,
        duration: Duration::from_secs(settings.duration_secs),
        credit: settings.credit,
        window: settings.window,
    };
    let rt = {
        let built = if settings.threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(settings.threads)
                .enable_all()
                .build()
        };
        match built {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("compare: cannot start the runtime: {e}");
                return 1;
            }
        }
    };
    let tag = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut results = Results {
        date: utc_string(tag),
        machine: machine(),
        versions: versions(&paths, &root),
        settings: settings.clone(),
        brokers: Vec::new(),
        cells: Vec::new(),
        idle: Vec::new(),
        latency: None,
        memory: None,
        goals: Vec::new(),
        notes: Vec::new(),
        elapsed_secs: 0.0,
    };
    // Queue names carry the run's tag, so nothing left over from an earlier run mixes in.
    let tag = format!("fb{}", tag % 1_000_000);

    let mut wanted = args.brokers.clone();
    wanted.sort();
    wanted.dedup();
    let in_process = args.clients.contains(&ClientKind::FerryBench);

    // The idle and memory cells measure memory, which is only honest on a fresh process: a
    // broker's allocator keeps what earlier load freed, and that would hide (idle) or add to
    // (memory) what the cell costs. So each runs on an instance of its own, started for it
    // and stopped after it; the matrix instances below are started once and kept throughout.

    // ---- idle connections (a fresh instance per broker) ----
    if !args.skip.contains(&Skip::Idle) && in_process {
        for &kind in &wanted {
            if stopping() {
                break;
            }
            eprintln!("compare: starting {} for the idle cell", kind.label());
            match start_broker(kind, &paths, "idle") {
                Ok(ep) => results.idle.push(run_idle(&rt, &ep, kind, &settings, &tag)),
                Err(e) => results.idle.push(IdleResult {
                    broker: kind,
                    report: None,
                    note: Some(format!("skipped: {e}")),
                }),
            }
        }
    }

    // ---- memory cell (a fresh Ferry) ----
    if !args.skip.contains(&Skip::Memory)
        && !stopping()
        && in_process
        && wanted.contains(&BrokerKind::Ferry)
    {
        eprintln!(
            "compare: memory cell: a fresh Ferry, {} messages of 1 KiB, unsettled 1→1",
            thousands(settings.memory_count)
        );
        match start_ferry(&paths, "memory") {
            Ok(ep) => {
                let cell = Cell {
                    size: 1024,
                    presettled: false,
                    links: 1,
                };
                let pid = ep.pid().to_string();
                let before = procstat::status_kib(&pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0;
                let mem_load = Load {
                    count: settings.memory_count,
                    duration: load.duration.max(Duration::from_secs(120)),
                    ..load.clone()
                };
                let s = scenario_for(cell, format!("{tag}-memory"), &mem_load, 0);
                let report = run_in_process(&rt, &ep, &s);
                eprintln!(
                    "compare:   peak RSS {:.1} MiB, {} msgs/s{}",
                    report.broker_peak_rss_mib.unwrap_or(0.0),
                    rate_str(report.recv_rate),
                    report
                        .error
                        .as_ref()
                        .map(|e| format!(", error: {e}"))
                        .unwrap_or_default()
                );
                results.memory = Some(MemoryResult {
                    count: settings.memory_count,
                    rss_before_mib: before,
                    report,
                });
            }
            Err(e) => results
                .notes
                .push(format!("Memory cell not run: Ferry did not start: {e}")),
        }
    }

    // ---- brokers ----
    let mut brokers: Vec<Endpoint> = Vec::new();
    for &kind in &wanted {
        if stopping() {
            break;
        }
        eprintln!("compare: starting {}", kind.label());
        match start_broker(kind, &paths, "matrix") {
            Ok(ep) => {
                results.brokers.push(BrokerStatus {
                    broker: kind,
                    address: Some(ep.target.addr.clone()),
                    pid: Some(ep.pid()),
                    note: match kind {
                        BrokerKind::Ferry => format!(
                            "{} --config {}",
                            paths.ferry.display(),
                            paths.ferry_config.display()
                        ),
                        BrokerKind::Rabbitmq => "benches/peers/rabbitmq.sh (AMQP 1.0 plugin; /queue/NAME; SASL PLAIN guest)".into(),
                        BrokerKind::Proton => "Qpid Proton C example broker (target/bench-peers/proton-broker)".into(),
                    },
                });
                brokers.push(ep);
            }
            Err(e) => {
                eprintln!("compare: skipping {}: {e}", kind.label());
                results.brokers.push(BrokerStatus {
                    broker: kind,
                    address: None,
                    pid: None,
                    note: format!("skipped: {e}"),
                });
            }
        }
    }
    let mut clients = args.clients.clone();
    clients.sort();
    clients.dedup();
    let proton_load = paths.peers.join("proton-load");
    if clients.contains(&ClientKind::Proton) && !proton_load.is_file() {
        results.notes.push(format!(
            "Proton C client skipped: {} is not built (bash benches/peers/install.sh).",
            proton_load.display()
        ));
        clients.retain(|c| *c != ClientKind::Proton);
    }
    let cells = cells(&args.sizes, &args.topologies);
    let mut nulls: BTreeMap<usize, Endpoint> = BTreeMap::new();
    if clients.contains(&ClientKind::FerryBench) && !args.skip.contains(&Skip::Null) {
        let mut sizes: Vec<usize> = cells.iter().map(|c| c.size).collect();
        sizes.dedup();
        for size in sizes {
            match start_null(&paths, size) {
                Ok(ep) => {
                    nulls.insert(size, ep);
                }
                Err(e) => results
                    .notes
                    .push(format!("null acceptor for {size} B did not start: {e}")),
            }
        }
    }
    let ferry_ix = brokers
        .iter()
        .position(|b| b.kind == Some(BrokerKind::Ferry));

    // ---- the matrix ----
    if !args.skip.contains(&Skip::Matrix) {
        let per_cell = brokers.len() * settings.repeat;
        let total: usize = clients
            .iter()
            .map(|c| {
                cells.len() * per_cell
                    + if *c == ClientKind::FerryBench {
                        cells
                            .iter()
                            .filter(|cl| nulls.contains_key(&cl.size))
                            .count()
                            * settings.repeat
                    } else {
                        0
                    }
            })
            .sum();
        let mut done = 0usize;
        let mut round_no = 0usize;
        'matrix: for &client in &clients {
            for cell in &cells {
                let mut peers: Vec<&Endpoint> = brokers.iter().collect();
                if client == ClientKind::FerryBench
                    && let Some(n) = nulls.get(&cell.size)
                {
                    peers.push(n);
                }
                let mut runs: Vec<Vec<Outcome>> = vec![Vec::new(); peers.len()];
                for round in 0..settings.repeat {
                    for (position, &pi) in rotation(peers.len(), round_no).iter().enumerate() {
                        if stopping() {
                            break 'matrix;
                        }
                        let ep = peers[pi];
                        let name = format!(
                            "{tag}-{}-{}-{}-r{round}",
                            client.slug(),
                            cell.slug(),
                            ep.slug()
                        );
                        let t = Instant::now();
                        let mut outcome = match client {
                            ClientKind::FerryBench => {
                                let address = queue_pattern(ep.prefix, &name, cell.links);
                                let s = scenario_for(*cell, address.clone(), &load, 0);
                                let report = run_in_process(&rt, ep, &s);
                                Outcome {
                                    round,
                                    position,
                                    address,
                                    capped: report.received < load.count,
                                    report,
                                    processes: Vec::new(),
                                }
                            }
                            ClientKind::Proton => {
                                run_proton_clients(&proton_load, ep, *cell, &name, &load)
                            }
                        };
                        outcome.round = round;
                        outcome.position = position;
                        done += 1;
                        let r = &outcome.report;
                        eprintln!(
                            "compare: [{done}/{total}] {} {} {}: {} msgs/s, broker {:.2} µs/msg, p99 {:.0} µs{}{} ({:.1} s)",
                            client.label(),
                            cell.label(),
                            ep.name(),
                            rate_str(r.recv_rate),
                            r.broker_cpu_us_per_msg.unwrap_or(0.0),
                            r.p99_us,
                            if outcome.capped { ", capped" } else { "" },
                            r.error
                                .as_ref()
                                .map(|e| format!(", FAILED: {e}"))
                                .unwrap_or_default(),
                            t.elapsed().as_secs_f64()
                        );
                        runs[pi].push(outcome);
                        if !peers[pi].guard_alive() {
                            eprintln!("compare: {} is no longer running", ep.name());
                        }
                    }
                    round_no += 1;
                }
                let mut result = CellResult {
                    client,
                    cell: *cell,
                    count: load.count,
                    brokers: BTreeMap::new(),
                    null: None,
                };
                for (ep, r) in peers.iter().zip(runs) {
                    let Some(pc) = PeerCell::from_runs(r) else {
                        continue;
                    };
                    match ep.kind {
                        Some(k) => {
                            result.brokers.insert(k, pc);
                        }
                        None => result.null = Some(pc),
                    }
                }
                results.cells.push(result);
            }
        }
    }

    // ---- latency at half the maximum rate ----
    if !args.skip.contains(&Skip::Latency)
        && !stopping()
        && clients.contains(&ClientKind::FerryBench)
        && let Some(ix) = ferry_ix
    {
        let ep = &brokers[ix];
        let cell = Cell {
            size: 1024,
            presettled: false,
            links: 1,
        };
        let measured = results
            .cells
            .iter()
            .find(|c| c.client == ClientKind::FerryBench && c.cell == cell)
            .and_then(|c| c.brokers.get(&BrokerKind::Ferry))
            .and_then(|p| p.ok().map(|r| r.recv_rate));
        let max_rate = measured.or_else(|| {
            eprintln!("compare: measuring Ferry's maximum rate (1 KiB unsettled 1→1)");
            let s = scenario_for(cell, format!("{tag}-maxrate"), &load, 0);
            let r = run_in_process(&rt, ep, &s);
            r.error.is_none().then_some(r.recv_rate)
        });
        match max_rate {
            Some(max) if max >= 2.0 => {
                let rate = (max / 2.0).round() as u64;
                // About 10 s of traffic in a full run (a stable p99.9), the cell count in --quick.
                let count = if settings.quick {
                    settings.count
                } else {
                    settings
                        .count
                        .max(rate * 10)
                        .min(rate * settings.duration_secs.saturating_sub(2).max(1))
                };
                let s = scenario_for(
                    cell,
                    format!("{tag}-latency"),
                    &Load {
                        count,
                        ..load.clone()
                    },
                    rate,
                );
                eprintln!(
                    "compare: latency at {} msgs/s (half of {})",
                    thousands(rate),
                    rate_str(max)
                );
                let report = run_in_process(&rt, ep, &s);
                eprintln!(
                    "compare:   p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs",
                    report.p50_us, report.p99_us, report.p999_us, report.max_us
                );
                results.latency = Some(LatencyResult {
                    max_rate: max,
                    rate,
                    count,
                    report,
                });
            }
            _ => results
                .notes
                .push("Latency at 50% of the maximum rate: not measured (no maximum rate).".into()),
        }
    }

    // ---- stop everything, then write ----
    let interrupted = stopping();
    if interrupted {
        results
            .notes
            .push("Interrupted: the run stopped early; the tables hold what finished.".into());
    }
    let ferry_missing = ferry_ix.is_none() && args.brokers.contains(&BrokerKind::Ferry);
    for b in &brokers {
        if !b.guard_alive() {
            results.notes.push(format!(
                "{} was no longer running at the end (see {}/logs/).",
                b.name(),
                paths.out.display()
            ));
        }
    }
    drop(nulls);
    drop(brokers);
    results.elapsed_secs = started.elapsed().as_secs_f64();
    results.goals = goals(&results);
    let code = match write_report(&results, &paths.out) {
        Ok(md) => {
            print!("{md}");
            let ferry_failed = results.cells.iter().any(|c| {
                c.brokers
                    .get(&BrokerKind::Ferry)
                    .is_some_and(|p| p.median.failed())
            });
            if interrupted {
                130
            } else if ferry_missing || ferry_failed {
                1
            } else {
                0
            }
        }
        Err(e) => {
            eprintln!("compare: writing the report: {e}");
            1
        }
    };
    eprintln!(
        "compare: done in {:.0} s; report in {}",
        results.elapsed_secs,
        paths.out.display()
    );
    code
}

impl Endpoint {
    fn guard_alive(&self) -> bool {
        pid_alive(self.guard.pid)
    }
}

fn run_idle(
    rt: &tokio::runtime::Runtime,
    ep: &Endpoint,
    kind: BrokerKind,
    settings: &Settings,
    tag: &str,
) -> IdleResult {
    let n = settings.idle_connections;
    // Our sockets plus the broker's: each side needs n descriptors and some to spare.
    let need = n as u64 + 256;
    let ours = open_files_limit("self").unwrap_or(0);
    let theirs = open_files_limit(&ep.pid().to_string());
    let short = if ours < need {
        Some(format!("this process's open-file limit is {ours}"))
    } else {
        theirs
            .filter(|&l| l < need)
            .map(|l| format!("{}'s open-file limit is {l}", kind.label()))
    };
    if let Some(why) = short {
        let note = format!(
            "skipped: {why}, {n} connections need about {need} (raise `ulimit -n`; benches/compare.sh does)"
        );
        eprintln!("compare: idle cell, {}: {note}", kind.label());
        return IdleResult {
            broker: kind,
            report: None,
            note: Some(note),
        };
    }
    eprintln!(
        "compare: idle cell: {} connections to {}",
        thousands(n as u64),
        kind.label()
    );
    let address = format!("{}{tag}-idle", ep.prefix);
    let t = Instant::now();
    let limit = Duration::from_secs(300);
    let report = block_on_bounded(
        rt,
        idle::run(&ep.target, n, &address, Some(ep.pid())),
        limit,
    );
    // Give the broker a moment to tear the connections down before the next cell.
    std::thread::sleep(Duration::from_secs(2));
    match report {
        Ok(r) => {
            let note = (r.error.is_none() && r.opened < r.connections).then(|| {
                format!(
                    "only {} opened within the opening bound of idle::run (180 s)",
                    thousands(r.opened as u64)
                )
            });
            eprintln!(
                "compare:   {}/{} opened, {:.1} KiB per connection ({:.0} s){}",
                r.opened,
                r.connections,
                r.kib_per_connection,
                t.elapsed().as_secs_f64(),
                r.error
                    .as_ref()
                    .map(|e| format!(", error: {e}"))
                    .unwrap_or_default()
            );
            IdleResult {
                broker: kind,
                report: Some(r),
                note,
            }
        }
        Err(e) => IdleResult {
            broker: kind,
            report: None,
            note: Some(format!("failed: {e}")),
        },
    }
}

// ---- goals --------------------------------------------------------------------------------

fn headline(results: &Results, client: ClientKind) -> Option<&CellResult> {
    results
        .cells
        .iter()
        .find(|c| c.client == client && c.cell.is_headline())
}

fn verdict(measured: Option<f64>, ok: impl Fn(f64) -> bool) -> Option<bool> {
    measured.map(ok)
}

/// The issue's goals against what was measured.
pub fn goals(results: &Results) -> Vec<Goal> {
    let mut out = Vec::new();
    let not_measured = || "not measured".to_string();
    let fb = headline(results, ClientKind::FerryBench);
    let ferry_fb = fb
        .and_then(|c| c.brokers.get(&BrokerKind::Ferry))
        .and_then(PeerCell::ok);

    let rate = ferry_fb.map(|r| r.recv_rate);
    out.push(Goal {
        goal: "Ferry throughput, 1 KiB unsettled 1→1, ferry-bench client".into(),
        target: "≥ 300,000 msgs/s".into(),
        measured: rate.map_or_else(not_measured, |r| format!("{} msgs/s", rate_str(r))),
        met: verdict(rate, |r| r >= 300_000.0),
    });

    let cpu = ferry_fb.and_then(|r| r.broker_cpu_us_per_msg);
    let kib_cells: Vec<f64> = results
        .cells
        .iter()
        .filter(|c| c.cell.size == 1024)
        .filter_map(|c| {
            c.brokers
                .get(&BrokerKind::Ferry)?
                .ok()?
                .broker_cpu_us_per_msg
        })
        .collect();
    let range = if kib_cells.len() > 1 {
        let lo = kib_cells.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = kib_cells.iter().copied().fold(0.0, f64::max);
        format!(" (all 1 KiB cells, both clients: {lo:.2}–{hi:.2})")
    } else {
        String::new()
    };
    out.push(Goal {
        goal: "Ferry broker CPU per 1 KiB message (1 KiB unsettled 1→1, ferry-bench client)".into(),
        target: "≤ 2 µs".into(),
        measured: cpu.map_or_else(not_measured, |c| format!("{c:.2} µs{range}")),
        met: verdict(cpu, |c| c <= 2.0),
    });

    let pc = headline(results, ClientKind::Proton);
    let pc_rate = |k: BrokerKind| pc.and_then(|c| c.brokers.get(&k)?.ok().cloned());
    let ferry_pc = pc_rate(BrokerKind::Ferry);
    for (peer, factor) in [(BrokerKind::Rabbitmq, 10.0), (BrokerKind::Proton, 2.0)] {
        let other = pc_rate(peer);
        let (measured, met) = match (&ferry_pc, &other) {
            (Some(f), Some(o)) if o.recv_rate > 0.0 => {
                let ratio = f.recv_rate / o.recv_rate;
                (
                    format!(
                        "{ratio:.1}× (Ferry {} vs {} msgs/s; clients' CPU {:.2} vs {:.2} µs/msg)",
                        rate_str(f.recv_rate),
                        rate_str(o.recv_rate),
                        f.client_cpu_us_per_msg,
                        o.client_cpu_us_per_msg
                    ),
                    Some(ratio >= factor),
                )
            }
            _ => (not_measured(), None),
        };
        out.push(Goal {
            goal: format!(
                "Proton C clients, 1 KiB unsettled 1→1: Ferry vs {} throughput",
                peer.label()
            ),
            target: format!("≥ {factor:.0}×"),
            measured,
            met,
        });
    }

    let lat = results
        .latency
        .as_ref()
        .filter(|l| l.report.error.is_none());
    out.push(Goal {
        goal: "Ferry p99 latency at 50% of the maximum rate (1 KiB unsettled 1→1)".into(),
        target: "≤ 1 ms".into(),
        measured: lat.map_or_else(not_measured, |l| {
            format!(
                "{:.0} µs at {} msgs/s (p99.9 {:.0} µs)",
                l.report.p99_us,
                thousands(l.rate),
                l.report.p999_us
            )
        }),
        met: verdict(lat.map(|l| l.report.p99_us), |p| p <= 1000.0),
    });

    let mem = results.memory.as_ref().filter(|m| m.report.error.is_none());
    let rss = mem.and_then(|m| m.report.broker_peak_rss_mib);
    out.push(Goal {
        goal: "Ferry peak RSS over 1,000,000 × 1 KiB messages (unsettled 1→1)".into(),
        target: "≤ 64 MiB".into(),
        measured: match (mem, rss) {
            (Some(m), Some(r)) => format!(
                "{r:.1} MiB{}",
                if m.count == 1_000_000 {
                    String::new()
                } else {
                    format!(" (over {} messages)", thousands(m.count))
                }
            ),
            _ => not_measured(),
        },
        met: verdict(rss, |r| r <= 64.0),
    });

    let idle = results
        .idle
        .iter()
        .find(|i| i.broker == BrokerKind::Ferry)
        .and_then(|i| i.report.as_ref())
        .filter(|r| r.opened > 0);
    out.push(Goal {
        goal: "Ferry memory per idle connection (one session, one receiver link)".into(),
        target: "≤ 20 KiB at 10,000".into(),
        measured: idle.map_or_else(not_measured, |r| {
            format!(
                "{:.1} KiB at {} connections{}",
                r.kib_per_connection,
                thousands(r.opened as u64),
                if r.opened < r.connections {
                    format!(" (of {} asked)", thousands(r.connections as u64))
                } else {
                    String::new()
                }
            )
        }),
        met: verdict(idle.map(|r| r.kib_per_connection), |k| k <= 20.0),
    });
    out
}

// ---- Markdown -----------------------------------------------------------------------------

fn met_str(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

fn opt_f(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.prec$}"))
}

fn escape_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn client_table(
    md: &mut String,
    results: &Results,
    client: ClientKind,
    failures: &mut Vec<String>,
) {
    let rows: Vec<&CellResult> = results
        .cells
        .iter()
        .filter(|c| c.client == client)
        .collect();
    if rows.is_empty() {
        return;
    }
    let brokers: Vec<BrokerKind> = results
        .brokers
        .iter()
        .filter(|b| b.pid.is_some())
        .map(|b| b.broker)
        .collect();
    let with_null = rows.iter().any(|c| c.null.is_some());
    let _ = writeln!(md, "\n## {} client\n", client.label());
    let mut head = String::from("| Cell |");
    let mut rule = String::from("|---|");
    for b in &brokers {
        let l = b.label();
        let _ = write!(
            head,
            " {l} msgs/s | {l} µs/msg | {l} p99 µs | {l} RSS MiB |"
        );
        rule.push_str("---:|---:|---:|---:|");
    }
    if with_null {
        head.push_str(" null msgs/s | null / best |");
        rule.push_str("---:|---:|");
    }
    let _ = writeln!(md, "{head}\n{rule}");
    let mut any_capped = false;
    let mut any_low = false;
    for c in rows {
        let mut line = format!("| {} |", c.cell.label());
        for b in &brokers {
            match c.brokers.get(b) {
                None => line.push_str(" – | – | – | – |"),
                Some(p) if p.median.failed() => {
                    failures.push(format!(
                        "{} client, {}, {}: {}",
                        client.label(),
                        c.cell.label(),
                        b.label(),
                        p.median.report.error.as_deref().unwrap_or("")
                    ));
                    line.push_str(&format!(" failed ({}) | – | – | – |", failures.len()));
                }
                Some(p) => {
                    let r = &p.median.report;
                    any_capped |= p.median.capped;
                    let _ = write!(
                        line,
                        " {}{} | {} | {:.0} | {} |",
                        rate_str(r.recv_rate),
                        if p.median.capped { " †" } else { "" },
                        opt_f(r.broker_cpu_us_per_msg, 2),
                        r.p99_us,
                        opt_f(r.broker_peak_rss_mib, 1)
                    );
                }
            }
        }
        if with_null {
            match &c.null {
                Some(p) if !p.median.failed() => {
                    let ratio = c.null_ratio();
                    let low = ratio.is_some_and(|r| r < 2.0);
                    any_low |= low;
                    let _ = write!(
                        line,
                        " {} | {}{} |",
                        rate_str(p.median.report.recv_rate),
                        ratio.map_or_else(|| "–".to_string(), |r| format!("{r:.1}×")),
                        if low { " ⚠" } else { "" }
                    );
                }
                Some(p) => {
                    failures.push(format!(
                        "{} client, {}, null acceptor: {}",
                        client.label(),
                        c.cell.label(),
                        p.median.report.error.as_deref().unwrap_or("")
                    ));
                    line.push_str(&format!(" failed ({}) | – |", failures.len()));
                }
                None => line.push_str(" – | – |"),
            }
        }
        let _ = writeln!(md, "{line}");
    }
    md.push('\n');
    md.push_str(
        "msgs/s: messages received per second (first send to last receipt); µs/msg: broker CPU \
         (user + system, all threads) per message received; p99: end-to-end latency; RSS: the \
         broker's peak resident set during the cell.",
    );
    // /proc counts CPU in 10 ms ticks, so a per-message figure is only this fine.
    let _ = write!(
        md,
        " Broker CPU is read from /proc in 10 ms ticks: ±{:.2} µs/msg at {} messages.",
        0.01 * 1e6 / results.settings.count.max(1) as f64,
        thousands(results.settings.count)
    );
    if client == ClientKind::Proton {
        md.push_str(
            " C client figures: one process per connection, sums of counts over the longest \
             elapsed time; p99 is the highest over receivers.",
        );
    }
    md.push('\n');
    if any_capped {
        md.push_str(
            "\n† the count was not reached within the cap; the rate is over what was moved.\n",
        );
    }
    if with_null {
        md.push_str(
            "\nnull: the null acceptor (accepts and feeds as fast as credit allows), i.e. the \
             most this client can measure; null / best is its rate over the best broker's.",
        );
        if any_low {
            md.push_str(
                " ⚠ marks cells where it is below 2×: there the client, not the broker, may be \
                 the limit.",
            );
        }
        md.push('\n');
    }
}

/// The report, in Markdown.
pub fn render_markdown(results: &Results) -> String {
    let mut md = String::new();
    let m = &results.machine;
    let _ = writeln!(md, "# Ferry peer comparison\n");
    let _ = writeln!(md, "- Date: {}", results.date);
    let _ = writeln!(
        md,
        "- Machine: {} CPUs, {}, Linux {}, {} MiB RAM, open-file limit {}",
        m.nproc,
        m.cpu_model,
        m.kernel,
        thousands(m.memory_mib),
        m.open_files_limit
            .map_or_else(|| "unknown".into(), |l| l.to_string())
    );
    let versions: Vec<String> = results
        .versions
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(md, "- Versions: {}", versions.join("; "));
    let s = &results.settings;
    let _ = writeln!(
        md,
        "- Settings: {} messages per cell (split over its producers), cap {} s per run, {} round(s) (median shown), consumer credit {}, producer window {}, in-process client threads {}{}",
        thousands(s.count),
        s.duration_secs,
        s.repeat,
        s.credit,
        s.window,
        s.threads,
        if s.quick { "; --quick" } else { "" }
    );
    let _ = writeln!(md, "- Command: `{}`", s.command);
    let _ = writeln!(md, "- Run time: {:.0} s", results.elapsed_secs);
    let _ = writeln!(
        md,
        "\n## Brokers\n\nThe matrix instances below were started once and kept for the whole \
         matrix (runs alternate between them, in an order that rotates per cell). The idle and \
         memory cells ran on instances of their own, started for them and stopped after them: \
         memory is only measured honestly on a fresh process.\n"
    );
    for b in &results.brokers {
        match (&b.address, b.pid) {
            (Some(a), Some(pid)) => {
                let _ = writeln!(md, "- {}: {a} (pid {pid}); {}", b.broker.label(), b.note);
            }
            _ => {
                let _ = writeln!(md, "- {}: {}", b.broker.label(), b.note);
            }
        }
    }

    let _ = writeln!(
        md,
        "\n## Goals\n\n| Goal | Target | Measured | Status |\n|---|---|---|---|"
    );
    for g in &results.goals {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            escape_cell(&g.goal),
            escape_cell(&g.target),
            escape_cell(&g.measured),
            met_str(g.met)
        );
    }

    let mut failures = Vec::new();
    for client in [ClientKind::FerryBench, ClientKind::Proton] {
        client_table(&mut md, results, client, &mut failures);
    }

    if !results.idle.is_empty() {
        let _ = writeln!(
            md,
            "\n## Idle connections\n\nEach: one session and one receiver link; broker RSS before \
             opening and with all open (ferry-bench client, on a broker instance of its own).\n\n| Broker | Opened | RSS before MiB | RSS after MiB | KiB per connection | Note |\n|---|---:|---:|---:|---:|---|"
        );
        for i in &results.idle {
            match &i.report {
                Some(r) => {
                    let _ = writeln!(
                        md,
                        "| {} | {} / {} | {:.1} | {:.1} | {:.1} | {} |",
                        i.broker.label(),
                        thousands(r.opened as u64),
                        thousands(r.connections as u64),
                        r.rss_before_kib as f64 / 1024.0,
                        r.rss_after_kib as f64 / 1024.0,
                        r.kib_per_connection,
                        escape_cell(r.error.as_deref().or(i.note.as_deref()).unwrap_or(""))
                    );
                }
                None => {
                    let _ = writeln!(
                        md,
                        "| {} | – | – | – | – | {} |",
                        i.broker.label(),
                        escape_cell(i.note.as_deref().unwrap_or(""))
                    );
                }
            }
        }
    }

    let _ = writeln!(md, "\n## Latency at 50% of the maximum rate\n");
    match &results.latency {
        Some(l) => {
            let r = &l.report;
            let _ = writeln!(
                md,
                "Ferry, ferry-bench client, 1 KiB unsettled 1→1 at {} msgs/s (half of {} measured in the matrix), {} messages: p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs{}.",
                thousands(l.rate),
                rate_str(l.max_rate),
                thousands(r.received),
                r.p50_us,
                r.p99_us,
                r.p999_us,
                r.max_us,
                r.error
                    .as_ref()
                    .map(|e| format!("; error: {e}"))
                    .unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(md, "Not measured.");
        }
    }

    let _ = writeln!(md, "\n## Memory\n");
    match &results.memory {
        Some(mem) => {
            let r = &mem.report;
            let _ = writeln!(
                md,
                "Ferry, ferry-bench client, {} × 1 KiB unsettled 1→1 (on a Ferry instance of its own): peak RSS {} MiB (RSS before {:.1} MiB); {} received at {} msgs/s in {:.1} s{}.",
                thousands(mem.count),
                opt_f(r.broker_peak_rss_mib, 1),
                mem.rss_before_mib,
                thousands(r.received),
                rate_str(r.recv_rate),
                r.elapsed_secs,
                r.error
                    .as_ref()
                    .map(|e| format!("; error: {e}"))
                    .unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(md, "Not measured.");
        }
    }

    if !failures.is_empty() || !results.notes.is_empty() {
        let _ = writeln!(md, "\n## Failures and notes\n");
        for (i, f) in failures.iter().enumerate() {
            let _ = writeln!(md, "{}. {}", i + 1, escape_cell(f));
        }
        for n in &results.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    let _ = writeln!(
        md,
        "\nCharts: [throughput.svg](throughput.svg), [broker-cpu.svg](broker-cpu.svg); raw figures: [results.json](results.json)."
    );
    md
}

// ---- charts -------------------------------------------------------------------------------

#[derive(Debug)]
struct Panel {
    title: String,
    labels: Vec<String>,
    /// (name, color, one value per label)
    series: Vec<(String, plotters::style::RGBColor, Vec<Option<f64>>)>,
}

fn color(kind: Option<BrokerKind>) -> plotters::style::RGBColor {
    use plotters::style::RGBColor;
    match kind {
        Some(BrokerKind::Ferry) => RGBColor(0xd9, 0x5f, 0x02),
        Some(BrokerKind::Rabbitmq) => RGBColor(0x1b, 0x9e, 0x77),
        Some(BrokerKind::Proton) => RGBColor(0x75, 0x70, 0xb3),
        None => RGBColor(0xa0, 0xa0, 0xa0),
    }
}

fn panels(results: &Results, value: fn(&Report) -> Option<f64>, with_null: bool) -> Vec<Panel> {
    let mut out = Vec::new();
    for client in [ClientKind::FerryBench, ClientKind::Proton] {
        let rows: Vec<&CellResult> = results
            .cells
            .iter()
            .filter(|c| c.client == client)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let mut kinds: Vec<Option<BrokerKind>> = results
            .brokers
            .iter()
            .filter(|b| b.pid.is_some())
            .map(|b| Some(b.broker))
            .collect();
        if with_null && rows.iter().any(|c| c.null.is_some()) {
            kinds.push(None);
        }
        let series = kinds
            .iter()
            .map(|k| {
                let name = k.map_or("null acceptor", BrokerKind::label).to_string();
                let values = rows
                    .iter()
                    .map(|c| {
                        let p = match k {
                            Some(k) => c.brokers.get(k),
                            None => c.null.as_ref(),
                        };
                        p.and_then(PeerCell::ok)
                            .and_then(value)
                            .filter(|v| *v > 0.0)
                    })
                    .collect();
                (name, color(*k), values)
            })
            .collect();
        out.push(Panel {
            title: format!("{} client", client.label()),
            labels: rows
                .iter()
                .map(|c| {
                    format!(
                        "{} {}\n{n}→{n}",
                        size_label(c.cell.size),
                        if c.cell.presettled {
                            "pre"
                        } else {
                            "unsettled"
                        },
                        n = c.cell.links
                    )
                })
                .collect(),
            series,
        });
    }
    out
}

fn short_number(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim_float(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim_float(v / 1e3))
    } else {
        trim_float(v)
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn draw_chart(path: &Path, title: &str, y_desc: &str, panels: &[Panel]) -> Result<(), String> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    if panels.is_empty() {
        return Ok(());
    }
    let width = 1200u32;
    let panel_h = 440u32;
    let root =
        SVGBackend::new(path, (width, 40 + panel_h * panels.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (head, body) = root.split_vertically(40);
    head.titled(title, ("sans-serif", 22))
        .map_err(|e| err(&e))?;
    let areas = body.split_evenly((panels.len(), 1));
    for (area, panel) in areas.iter().zip(panels) {
        let values: Vec<f64> = panel
            .series
            .iter()
            .flat_map(|s| s.2.iter().flatten().copied())
            .collect();
        let lo_v = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi_v = values.iter().copied().fold(0.0, f64::max);
        let (lo, hi) = if values.is_empty() {
            (1.0, 10.0)
        } else {
            (
                10f64.powf(lo_v.log10().floor()).min(lo_v / 2.0).max(1e-3),
                // Room above the tallest bar for the legend.
                10f64.powf((hi_v * 4.0).log10().ceil()),
            )
        };
        let n = panel.labels.len().max(1);
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 18))
            .margin(12)
            .margin_right(24)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .build_cartesian_2d(0f64..n as f64, (lo..hi).log_scale())
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .x_labels(0)
            .x_label_formatter(&|_| String::new())
            .y_desc(y_desc)
            .y_label_formatter(&|v| short_number(*v))
            .draw()
            .map_err(|e| err(&e))?;
        let k = panel.series.len().max(1) as f64;
        let w = 0.8 / k;
        for (si, (name, c, vals)) in panel.series.iter().enumerate() {
            let c = *c;
            let bars = vals.iter().enumerate().filter_map(|(ci, v)| {
                let v = (*v)?;
                let x0 = ci as f64 + 0.1 + si as f64 * w;
                Some(Rectangle::new(
                    [(x0, lo), (x0 + w * 0.9, v.max(lo))],
                    c.filled(),
                ))
            });
            chart
                .draw_series(bars)
                .map_err(|e| err(&e))?
                .label(name.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(|e| err(&e))?;
        // Cell names under their groups, two lines each.
        let style =
            TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        for (ci, label) in panel.labels.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(ci as f64 + 0.5, lo));
            for (li, text) in label.lines().enumerate() {
                root.draw(&Text::new(
                    text.to_string(),
                    (px, py + 6 + 15 * li as i32),
                    style.clone(),
                ))
                .map_err(|e| err(&e))?;
            }
        }
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

fn write_report(results: &Results, out: &Path) -> Result<String, String> {
    let json = serde_json::to_string_pretty(results).map_err(|e| e.to_string())?;
    let path = out.join("results.json");
    std::fs::write(&path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    let mut results = results.clone();
    let throughput = panels(&results, |r| Some(r.recv_rate), true);
    if let Err(e) = draw_chart(
        &out.join("throughput.svg"),
        "Received messages per second (log scale; higher is better)",
        "msgs/s",
        &throughput,
    ) {
        results.notes.push(format!("throughput.svg: {e}"));
    }
    let cpu = panels(&results, |r| r.broker_cpu_us_per_msg, false);
    if let Err(e) = draw_chart(
        &out.join("broker-cpu.svg"),
        "Broker CPU per message (µs, log scale; lower is better)",
        "µs/msg",
        &cpu,
    ) {
        results.notes.push(format!("broker-cpu.svg: {e}"));
    }
    let md = render_markdown(&results);
    let path = out.join("report.md");
    std::fs::write(&path, &md).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(role: &str, count: u64, elapsed: f64, cpu: f64, p: Option<[f64; 4]>) -> ClientLine {
        ClientLine {
            role: role.into(),
            count,
            elapsed_secs: elapsed,
            rate: count as f64 / elapsed,
            cpu_secs: cpu,
            p50_us: p.map(|p| p[0]),
            p99_us: p.map(|p| p[1]),
            p999_us: p.map(|p| p[2]),
            max_us: p.map(|p| p[3]),
            rejected: 0,
            timed_out: false,
        }
    }

    #[test]
    fn parses_the_c_clients_line() {
        let out = "noise\n{\"role\":\"receive\",\"count\":2000,\"elapsed_secs\":0.5,\"rate\":4000.0,\"cpu_secs\":0.120,\"p50_us\":80.0,\"p99_us\":400.5,\"p999_us\":900.0,\"max_us\":1200.0,\"rejected\":0,\"timed_out\":false}\n";
        let l = parse_client_line(out).unwrap();
        assert_eq!(l.role, "receive");
        assert_eq!(l.count, 2000);
        assert_eq!(l.p99_us, Some(400.5));
        let s = parse_client_line(
            "{\"role\":\"send\",\"count\":5,\"elapsed_secs\":1,\"rate\":5,\"cpu_secs\":0.01,\"p50_us\":null,\"p99_us\":null,\"p999_us\":null,\"max_us\":null,\"rejected\":1,\"timed_out\":true}",
        )
        .unwrap();
        assert_eq!((s.p50_us, s.rejected, s.timed_out), (None, 1, true));
        // Older lines without the last two fields still parse.
        assert!(parse_client_line("{\"role\":\"send\",\"count\":5,\"elapsed_secs\":1,\"rate\":5,\"cpu_secs\":0,\"p50_us\":null,\"p99_us\":null,\"p999_us\":null,\"max_us\":null}").is_ok());
        assert!(parse_client_line("proton-load: connection refused\n").is_err());
    }

    #[test]
    fn aggregates_processes() {
        let lines = vec![
            line("send", 1000, 2.0, 0.5, None),
            line("send", 1000, 4.0, 0.5, None),
            line("receive", 900, 3.0, 0.25, Some([10.0, 100.0, 300.0, 500.0])),
            line("receive", 1000, 5.0, 0.25, Some([30.0, 80.0, 400.0, 450.0])),
            line("receive", 100, 1.0, 0.5, Some([20.0, 90.0, 200.0, 900.0])),
        ];
        let r = aggregate(&lines);
        assert_eq!((r.sent, r.received), (2000, 2000));
        assert_eq!(r.send_rate, 500.0);
        assert_eq!(r.recv_rate, 400.0);
        assert_eq!(r.p50_us, 20.0);
        assert_eq!((r.p99_us, r.p999_us, r.max_us), (100.0, 400.0, 900.0));
        assert!((r.client_cpu_us_per_msg - 1000.0).abs() < 1e-9);
        assert_eq!(r.elapsed_secs, 5.0);
        // An even number of receivers: the p50s' median is the mean of the middle two.
        let r = aggregate(&lines[2..4]);
        assert_eq!(r.p50_us, 20.0);
        assert_eq!(aggregate(&[]).recv_rate, 0.0);
    }

    #[test]
    fn rotation_puts_every_peer_first_once() {
        assert_eq!(rotation(3, 0), vec![0, 1, 2]);
        assert_eq!(rotation(3, 1), vec![1, 2, 0]);
        assert_eq!(rotation(3, 5), vec![2, 0, 1]);
        let firsts: Vec<usize> = (0..4).map(|r| rotation(4, r)[0]).collect();
        assert_eq!(firsts, vec![0, 1, 2, 3]);
        assert!(rotation(0, 3).is_empty());
        assert_eq!(median_index(&[5.0, 1.0, 3.0]), Some(2));
        assert_eq!(median_index(&[4.0, 1.0]), Some(1));
        assert_eq!(median_index(&[]), None);
    }

    #[test]
    fn matrix_and_helpers() {
        let c = cells(&[64, 1024], &[1, 4, 16]);
        assert_eq!(c.len(), 12);
        assert_eq!(c[0].label(), "64 B pre-settled 1→1");
        assert_eq!(c[11].label(), "1 KiB unsettled 16→16");
        assert!(c[9].is_headline());
        assert_eq!(c[11].slug(), "1k-uns-16");
        assert_eq!(quota(10, 4, 0), 3);
        assert_eq!(quota(10, 4, 3), 2);
        assert_eq!((0..4).map(|i| quota(10, 4, i)).sum::<u64>(), 10);
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(utc_string(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_string(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_string(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(short_number(250_000.0), "250k");
        assert_eq!(short_number(1.5), "1.5");
    }

    fn report(rate: f64, cpu: f64) -> Report {
        Report {
            sent: 1000,
            received: 1000,
            recv_rate: rate,
            send_rate: rate,
            p99_us: 250.0,
            broker_cpu_us_per_msg: Some(cpu),
            broker_peak_rss_mib: Some(12.5),
            ..Default::default()
        }
    }

    fn outcome(r: Report, capped: bool) -> PeerCell {
        PeerCell::from_runs(vec![Outcome {
            round: 0,
            position: 0,
            address: "q".into(),
            capped,
            report: r,
            processes: Vec::new(),
        }])
        .unwrap()
    }

    fn tiny() -> Results {
        let cell = Cell {
            size: 1024,
            presettled: false,
            links: 1,
        };
        let mut brokers = BTreeMap::new();
        brokers.insert(BrokerKind::Ferry, outcome(report(320_000.0, 1.5), false));
        brokers.insert(BrokerKind::Rabbitmq, outcome(report(8_000.0, 60.0), true));
        let failed = Report {
            error: Some("connect: refused".into()),
            ..Default::default()
        };
        let mut pc = BTreeMap::new();
        pc.insert(BrokerKind::Ferry, outcome(report(200_000.0, 1.2), false));
        pc.insert(BrokerKind::Rabbitmq, outcome(failed, false));
        Results {
            date: utc_string(0),
            machine: Machine {
                nproc: 2,
                cpu_model: "Test CPU".into(),
                kernel: "6.0".into(),
                memory_mib: 1024,
                open_files_limit: Some(1024),
            },
            versions: BTreeMap::from([("ferry".into(), "ferry 0.1.0".into())]),
            settings: Settings {
                count: 1000,
                duration_secs: 5,
                repeat: 1,
                quick: true,
                idle_connections: 10,
                memory_count: 1000,
                credit: 100,
                window: 100,
                threads: 1,
                command: "ferry-bench compare --quick".into(),
            },
            brokers: vec![
                BrokerStatus {
                    broker: BrokerKind::Ferry,
                    address: Some("127.0.0.1:1".into()),
                    pid: Some(1),
                    note: "built here".into(),
                },
                BrokerStatus {
                    broker: BrokerKind::Rabbitmq,
                    address: Some("127.0.0.1:2".into()),
                    pid: Some(2),
                    note: "script".into(),
                },
                BrokerStatus {
                    broker: BrokerKind::Proton,
                    address: None,
                    pid: None,
                    note: "skipped: not installed".into(),
                },
            ],
            cells: vec![
                CellResult {
                    client: ClientKind::FerryBench,
                    cell,
                    count: 1000,
                    brokers,
                    null: Some(outcome(report(500_000.0, 0.1), false)),
                },
                CellResult {
                    client: ClientKind::Proton,
                    cell,
                    count: 1000,
                    brokers: pc,
                    null: None,
                },
            ],
            idle: vec![IdleResult {
                broker: BrokerKind::Ferry,
                report: Some(IdleReport {
                    connections: 10,
                    opened: 10,
                    rss_before_kib: 10_000,
                    rss_after_kib: 10_100,
                    kib_per_connection: 10.0,
                    error: None,
                }),
                note: None,
            }],
            latency: None,
            memory: None,
            goals: Vec::new(),
            notes: vec!["a note".into()],
            elapsed_secs: 12.0,
        }
    }

    #[test]
    fn renders_a_tiny_result_set() {
        let mut r = tiny();
        r.goals = goals(&r);
        let md = render_markdown(&r);
        assert!(md.contains("| Cell | Ferry msgs/s | Ferry µs/msg | Ferry p99 µs | Ferry RSS MiB | RabbitMQ msgs/s |"), "{md}");
        assert!(md.contains("| 1 KiB unsettled 1→1 | 320,000 | 1.50 | 250 | 12.5 | 8,000 † | 60.00 | 250 | 12.5 | 500,000 | 1.6× ⚠ |"), "{md}");
        assert!(md.contains("failed (1)"), "{md}");
        assert!(
            md.contains("1. Proton C client, 1 KiB unsettled 1→1, RabbitMQ: connect: refused"),
            "{md}"
        );
        assert!(md.contains("Proton broker: skipped: not installed"), "{md}");
        assert!(
            md.contains("| Ferry | 10 / 10 | 9.8 | 9.9 | 10.0 |"),
            "{md}"
        );
        // Goals: throughput met, CPU met, RabbitMQ ratio not measured (its run failed).
        assert_eq!(r.goals[0].met, Some(true));
        assert_eq!(r.goals[1].met, Some(true));
        assert_eq!(r.goals[2].met, None);
        assert_eq!(r.goals[6].met, Some(true));
        assert!(md.contains("| Ferry throughput, 1 KiB unsettled 1→1, ferry-bench client | ≥ 300,000 msgs/s | 320,000 msgs/s | met |"), "{md}");
    }

    #[test]
    fn draws_the_charts() {
        let r = tiny();
        let dir = std::env::temp_dir().join(format!("ferry-bench-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.svg");
        draw_chart(
            &path,
            "t",
            "msgs/s",
            &panels(&r, |r| Some(r.recv_rate), true),
        )
        .unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("<svg"));
        assert!(svg.contains("null acceptor"));
        assert!(svg.contains("unsettled"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
