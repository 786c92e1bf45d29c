//! `ferry-bench durable`: durable messaging against Ferry and RabbitMQ in one run.
//!
//! 1 KiB messages with `header.durable = true`, sent unsettled with 256 in flight per
//! producer, 1→1 over one queue and 16→16 over sixteen, with Ferry's `[store] sync = "always"`
//! (a message is on disk before its `accepted`). Every figure comes from the same run:
//!
//! 1. The disk's synced write bandwidth (`storebench::disk_bandwidth`, 256 MiB in 1 MiB
//!    writes with `fdatasync` after each) in the output directory, before the cells and again
//!    after them.
//! 2. Ferry, per topology, a transient cell (`durable = false`: the reference rate) and a
//!    durable cell. Each cell runs on its own broker process with a fresh data directory,
//!    stopped with SIGTERM afterwards: at shutdown the broker logs the write-ahead log's
//!    counters (`write-ahead log closed batches=… syncs=… enqueued=…`), which are then the
//!    cell's own. fsyncs/s = syncs / the cell's wall time; messages per fsync = enqueued /
//!    syncs.
//! 3. RabbitMQ (3.10, AMQP 1.0 plugin) through `benches/peers/rabbitmq.sh`, the same durable
//!    cells on `/queue/NAME` (a durable classic queue; a durable message's disposition follows
//!    the publisher confirm, i.e. the message store's fsync). Each cell is bounded by a count
//!    and a few tens of seconds, whichever comes first; its rate is what it moved.
//!
//! Throughout, the flush requests the block device under the output directory completed
//! (`/proc/diskstats`) are counted per cell: a device-wide figure (anything else writing to
//! the same disk counts too), the only fsync figure there is for RabbitMQ.
//!
//! Writes `durable.md` and `durable.json` in the output directory and prints the Markdown.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde::Serialize;

use crate::compare::{self, Goal, Machine, Paths};
use crate::scenario::{self, Report, Scenario};
use crate::storebench;
use crate::wire::{self, Target};

/// Bytes of log per 1 KiB message the bandwidth-scaled goal assumes (body, header, record
/// framing and the dequeue record).
pub const RECORD_BYTES: f64 = 1100.0;

/// Below this synced write bandwidth (MB/s) the throughput goal is scaled by the disk.
pub const SLOW_DISK_MB_PER_SEC: f64 = 200.0;

/// The absolute throughput goal (messages/s).
pub const GOAL_MSGS_PER_SEC: f64 = 150_000.0;

/// The share of the transient rate durable messaging should reach.
pub const GOAL_SHARE_OF_TRANSIENT: f64 = 0.5;

/// Options of `ferry-bench durable`.
#[derive(Debug, Args)]
pub struct DurableArgs {
    /// Where the report goes (the brokers' data and logs too).
    #[arg(long, default_value = "target/durable-report")]
    pub out: PathBuf,
    /// Messages per Ferry cell, split over its producers [default: 300000; --quick: 20000].
    #[arg(long)]
    pub count: Option<u64>,
    /// Cap on a Ferry cell, in seconds [default: 120; --quick: 30].
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// Messages per RabbitMQ cell [default: 100000; --quick: 5000].
    #[arg(long)]
    pub rabbitmq_count: Option<u64>,
    /// Cap on a RabbitMQ cell, in seconds: the cell sends for at most this long
    /// [default: 20; --quick: 10].
    #[arg(long)]
    pub rabbitmq_secs: Option<u64>,
    /// Smoke-test sizes: 20,000 messages per Ferry cell, 5,000 per RabbitMQ cell.
    #[arg(long)]
    pub quick: bool,
    /// Leave RabbitMQ out.
    #[arg(long)]
    pub skip_rabbitmq: bool,
    /// Topologies: N stands for N producers and N consumers over N queues.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16])]
    pub topologies: Vec<usize>,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Unsettled messages each producer keeps in flight.
    #[arg(long, default_value_t = 256)]
    pub window: u32,
    /// Credit each consumer keeps granted.
    #[arg(long, default_value_t = 1000)]
    pub credit: u32,
    /// Worker threads of the in-process client (1: a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Runs of every cell (Ferry's transient and durable cells alternate); the report shows
    /// the median run and lists them all.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Ferry's binary [default: target/release/ferry under the workspace].
    #[arg(long)]
    pub ferry: Option<PathBuf>,
    /// Ferry's config, run with `[store] sync = "always"` whatever it says
    /// [default: benches/ferry-bench.toml under the workspace].
    #[arg(long)]
    pub ferry_config: Option<PathBuf>,
    /// The RabbitMQ node script [default: benches/peers/rabbitmq.sh under the workspace].
    #[arg(long)]
    pub rabbitmq_script: Option<PathBuf>,
}

/// The run's settings.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Messages per Ferry cell.
    pub ferry_count: u64,
    /// Cap per Ferry cell, seconds.
    pub ferry_duration_secs: u64,
    /// Messages per RabbitMQ cell.
    pub rabbitmq_count: u64,
    /// Cap per RabbitMQ cell, seconds.
    pub rabbitmq_secs: u64,
    /// Body size.
    pub size: usize,
    /// Producer window.
    pub window: u32,
    /// Consumer credit.
    pub credit: u32,
    /// In-process client threads.
    pub threads: usize,
    /// Runs per cell.
    pub repeat: usize,
    /// --quick.
    pub quick: bool,
    /// The command line.
    pub command: String,
}

/// The write-ahead log's counters, from the broker's shutdown line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WalStats {
    /// Write batches.
    pub batches: u64,
    /// fsyncs (fdatasync) of the log.
    pub syncs: u64,
    /// Records written.
    pub records: u64,
    /// Messages enqueued on disk.
    pub enqueued: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// One cell: a broker, a topology, durable or transient.
#[derive(Debug, Clone, Serialize)]
pub struct CellResult {
    /// "Ferry" or "RabbitMQ".
    pub broker: String,
    /// Producers = consumers = queues.
    pub links: usize,
    /// Durable messages (else the transient reference).
    pub durable: bool,
    /// What ran.
    pub scenario: Scenario,
    /// What was measured (a default report when the cell could not run).
    pub report: Report,
    /// The log's counters for this cell (Ferry).
    pub wal: Option<WalStats>,
    /// Log fsyncs per second of the cell's wall time (Ferry).
    pub fsyncs_per_sec: Option<f64>,
    /// Messages enqueued on disk per log fsync (Ferry).
    pub msgs_per_fsync: Option<f64>,
    /// Log bytes per enqueued message (Ferry).
    pub log_bytes_per_msg: Option<f64>,
    /// Flush requests the block device completed during the cell (device-wide).
    pub device_flushes: Option<u64>,
    /// The same per second of the cell's wall time.
    pub device_flushes_per_sec: Option<f64>,
    /// Durable rate over the same topology's transient rate (Ferry's durable cells).
    pub pct_of_transient: Option<f64>,
    /// Stopped by the time cap before the count.
    pub capped: bool,
    /// Why the cell failed, if it did.
    pub error: Option<String>,
    /// The received rate of every run of this cell, in order (0 for a failed run); the rest
    /// of the fields are the median run's.
    pub runs: Vec<f64>,
    /// The broker's log.
    pub log: Option<String>,
}

impl CellResult {
    fn new(broker: &str, s: &Scenario) -> Self {
        Self {
            broker: broker.to_string(),
            links: s.producers,
            durable: s.durable,
            scenario: s.clone(),
            report: Report::default(),
            wal: None,
            fsyncs_per_sec: None,
            msgs_per_fsync: None,
            log_bytes_per_msg: None,
            device_flushes: None,
            device_flushes_per_sec: None,
            pct_of_transient: None,
            capped: false,
            error: None,
            runs: Vec::new(),
            log: None,
        }
    }

    fn ok(&self) -> bool {
        self.error.is_none() && self.report.error.is_none() && self.report.received > 0
    }

    /// The received rate when the cell ran.
    fn rate(&self) -> Option<f64> {
        self.ok().then_some(self.report.recv_rate)
    }
}

/// Everything, as written to durable.json.
#[derive(Debug, Clone, Serialize)]
pub struct DurableResults {
    /// UTC, when the run started.
    pub date: String,
    /// The machine.
    pub machine: Machine,
    /// The output directory.
    pub out: String,
    /// RabbitMQ's version (from its installed directory), if installed.
    pub rabbitmq_version: Option<String>,
    /// /proc/loadavg when the run started.
    pub load_before: String,
    /// /proc/loadavg when it ended.
    pub load_after: String,
    /// Settings.
    pub settings: Settings,
    /// Synced write bandwidth before the cells, MB/s.
    pub disk_mb_per_sec_before: Option<f64>,
    /// The same after them.
    pub disk_mb_per_sec_after: Option<f64>,
    /// The bandwidth the goal is scaled by: the mean of the two.
    pub disk_mb_per_sec: Option<f64>,
    /// The block device whose flushes are counted (major:minor name).
    pub device: Option<String>,
    /// The cells, in the order they ran.
    pub cells: Vec<CellResult>,
    /// The goals.
    pub goals: Vec<Goal>,
    /// Things to know.
    pub notes: Vec<String>,
    /// Wall time of the whole run.
    pub elapsed_secs: f64,
}

// ---- helpers ------------------------------------------------------------------------------

/// `config` with `[store] sync = "always"` and no `sync_interval` (any `[store]` table is
/// kept otherwise), and without `auto_create_durable` (so auto-created queues are durable,
/// the default).
pub fn with_sync_always(config: &str) -> String {
    let mut out = String::new();
    let mut section = String::new();
    let mut has_store = false;
    for line in config.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            section = t
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            out.push_str(line);
            out.push('\n');
            if section == "store" {
                has_store = true;
                out.push_str("sync = \"always\"\n");
            }
            continue;
        }
        let key = t.split('=').next().unwrap_or_default().trim();
        if section == "store" && (key == "sync" || key == "sync_interval") {
            continue;
        }
        if section == "queues" && key == "auto_create_durable" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !has_store {
        out.push_str("\n# Added by ferry-bench durable: every durable message is synced before its accepted.\n[store]\nsync = \"always\"\n");
    }
    out
}

/// Removes ANSI escape sequences (`ESC [ … letter`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The counters of the last `write-ahead log closed` line in a Ferry log.
pub fn parse_wal_closed(log: &str) -> Option<WalStats> {
    let clean = strip_ansi(log);
    let line = clean
        .lines()
        .rev()
        .find(|l| l.contains("write-ahead log closed"))?;
    let mut stats = WalStats::default();
    let (mut syncs, mut enqueued) = (false, false);
    for token in line.split_whitespace() {
        let Some((key, value)) = token.split_once('=') else {
            continue;
        };
        let Ok(v) = value.trim_matches('"').parse::<u64>() else {
            continue;
        };
        match key {
            "batches" => stats.batches = v,
            "syncs" => {
                stats.syncs = v;
                syncs = true;
            }
            "records" => stats.records = v,
            "enqueued" => {
                stats.enqueued = v;
                enqueued = true;
            }
            "bytes" => stats.bytes = v,
            _ => {}
        }
    }
    (syncs && enqueued).then_some(stats)
}

/// major:minor of the device holding `path`.
fn device_of(path: &Path) -> Option<(u64, u64)> {
    let dev = std::fs::metadata(path).ok()?.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xffff_f000);
    let minor = (dev & 0xff) | ((dev >> 12) & 0xffff_ff00);
    Some((major, minor))
}

/// The device's name and completed flush requests from `/proc/diskstats` (kernel 5.5+).
fn device_flushes(dev: (u64, u64)) -> Option<(String, u64)> {
    let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
    stats.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let major = f.first()?.parse::<u64>().ok()?;
        let minor = f.get(1)?.parse::<u64>().ok()?;
        if (major, minor) != dev {
            return None;
        }
        Some((f.get(2)?.to_string(), f.get(18)?.parse().ok()?))
    })
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The version in the name of RabbitMQ's installed directory (`rabbitmq_server-X.Y.Z`).
fn rabbitmq_version() -> Option<String> {
    std::fs::read_dir("/usr/lib/rabbitmq/lib")
        .ok()?
        .filter_map(Result::ok)
        .find_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("rabbitmq_server-"))
                .map(str::to_string)
        })
}

fn topology(links: usize) -> String {
    format!("{links}→{links}")
}

fn met_str(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    }
}

fn scenario_for(address: String, links: usize, size: usize, durable: bool, load: Load) -> Scenario {
    Scenario {
        producers: links,
        consumers: links,
        queues: links,
        address,
        size: size.max(wire::STAMP_LEN),
        count: load.count,
        duration: load.duration,
        presettled: false,
        durable,
        credit: load.credit,
        window: load.window,
        rate: 0,
    }
}

fn address(prefix: &str, name: &str, links: usize) -> String {
    if links > 1 {
        format!("{prefix}{name}-{{}}")
    } else {
        format!("{prefix}{name}")
    }
}

#[derive(Debug, Clone, Copy)]
struct Load {
    count: u64,
    duration: Duration,
    credit: u32,
    window: u32,
}

/// A lock file (`durable.lock`, `routing.lock`) in the output directory, holding this
/// process's PID while it lives.
#[derive(Debug)]
pub(crate) struct OutLock(PathBuf);

impl OutLock {
    pub(crate) fn take(out: &Path, name: &str) -> Result<Self, String> {
        use std::io::Write as _;
        let path = out.join(name);
        for _ in 0..3 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    let _ = write!(f, "{}", std::process::id());
                    return Ok(Self(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    let alive = match holder {
                        Some(pid) => Path::new(&format!("/proc/{pid}")).exists(),
                        // Just created by another run that has not written its PID yet, or
                        // left empty by one that died at that moment.
                        None => std::fs::metadata(&path)
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| t.elapsed().ok())
                            .is_none_or(|age| age < Duration::from_secs(60)),
                    };
                    if alive {
                        return Err(format!(
                            "{} is in use by another run{} (remove {} if that is wrong)",
                            out.display(),
                            holder.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                            path.display()
                        ));
                    }
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        Err(format!("{}: cannot take the lock", path.display()))
    }
}

impl Drop for OutLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

// ---- Ferry, one process per cell ------------------------------------------------------------

/// A Ferry process of one cell; stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub(crate) struct Ferry {
    child: Option<Child>,
    pub(crate) pid: u32,
    pub(crate) target: Target,
    pub(crate) log: PathBuf,
}

impl Ferry {
    pub(crate) fn start(
        paths: &Paths,
        config: &Path,
        data: &Path,
        log: &Path,
    ) -> Result<Self, String> {
        if !paths.ferry.is_file() {
            return Err(format!(
                "not built: {} (cargo build --release -p ferry)",
                paths.ferry.display()
            ));
        }
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::create_dir_all(data).map_err(|e| format!("{}: {e}", data.display()))?;
        let f = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let f2 = f.try_clone().map_err(|e| e.to_string())?;
        let port = compare::free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(&paths.ferry)
            .arg("--config")
            .arg(config)
            .args(["--listen", &addr, "--log-level", "info", "--data-dir"])
            .arg(data)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .map_err(|e| format!("cannot start ferry: {e}"))?;
        let mut ferry = Self {
            pid: child.id(),
            child: Some(child),
            target: Target {
                addr: addr.clone(),
                credentials: None,
            },
            log: log.to_path_buf(),
        };
        ferry
            .wait_listening(&addr, Duration::from_secs(15))
            .map_err(|e| compare::with_log_tail(e, log))?;
        Ok(ferry)
    }

    fn wait_listening(&mut self, addr: &str, limit: Duration) -> Result<(), String> {
        let sock: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
        let until = Instant::now() + limit;
        loop {
            if TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            let exited = match &mut self.child {
                Some(c) => !matches!(c.try_wait(), Ok(None)),
                None => true,
            };
            if exited {
                return Err("ferry exited during start".into());
            }
            if Instant::now() >= until {
                return Err(format!(
                    "ferry did not listen on {addr} within {} s",
                    limit.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then up to `limit` for the broker to close its log and exit; SIGKILL past it.
    pub(crate) fn stop(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        let Some(mut child) = self.child.take() else {
            return Err("already stopped".into());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let until = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() >= until => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "ferry did not exit within {} s of SIGTERM; killed",
                        limit.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e.to_string());
                }
            }
        }
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop(Duration::from_secs(5));
        }
    }
}

/// Runs `s` in-process against `target`, bounded by its duration plus a minute and by an
/// interruption.
fn run_scenario(rt: &tokio::runtime::Runtime, target: &Target, s: &Scenario, pid: u32) -> Report {
    let limit = s.duration + Duration::from_secs(60);
    compare::block_on_bounded(rt, scenario::run(target, s, Some(pid)), limit).unwrap_or_else(|e| {
        Report {
            error: Some(e),
            ..Default::default()
        }
    })
}

/// The median run of a cell by received rate, among the runs that succeeded (the last run
/// when none did), with every run's rate in `runs`.
fn median_run(runs: Vec<CellResult>) -> Option<CellResult> {
    let (mut cell, rates) = compare::median_run(runs, |c| c.rate().unwrap_or(0.0), CellResult::ok)?;
    cell.runs = rates;
    Some(cell)
}

/// Fills in what the cell's report implies.
fn finish_cell(cell: &mut CellResult, flushes: Option<u64>) {
    let r = &cell.report;
    let secs = r.elapsed_secs.max(1e-9);
    cell.capped = cell.scenario.count > 0 && r.received < cell.scenario.count;
    cell.device_flushes = flushes;
    cell.device_flushes_per_sec = flushes
        .filter(|_| r.elapsed_secs > 0.0)
        .map(|f| f as f64 / secs);
    if let Some(w) = cell.wal {
        if r.elapsed_secs > 0.0 {
            cell.fsyncs_per_sec = Some(w.syncs as f64 / secs);
        }
        if w.syncs > 0 {
            cell.msgs_per_fsync = Some(w.enqueued as f64 / w.syncs as f64);
        }
        if w.enqueued > 0 {
            cell.log_bytes_per_msg = Some(w.bytes as f64 / w.enqueued as f64);
        }
    }
}

struct FerryCell<'a> {
    rt: &'a tokio::runtime::Runtime,
    paths: &'a Paths,
    config: &'a Path,
    device: Option<(u64, u64)>,
    run_id: u64,
}

impl FerryCell<'_> {
    fn run(
        &self,
        links: usize,
        durable: bool,
        size: usize,
        load: Load,
        round: usize,
    ) -> CellResult {
        let mode = if durable { "durable" } else { "transient" };
        let slug = format!("ferry-{links}x{links}-{mode}-{round}");
        let name = format!("dur{}-{slug}", self.run_id);
        let s = scenario_for(address("", &name, links), links, size, durable, load);
        let mut cell = CellResult::new("Ferry", &s);
        let data = self.paths.out.join("ferry-data").join(&slug);
        let _ = std::fs::remove_dir_all(&data);
        let log = self.paths.out.join("logs").join(format!("{slug}.log"));
        cell.log = Some(log.display().to_string());
        eprintln!(
            "durable: Ferry {} {mode}, {} messages…",
            topology(links),
            s.count
        );
        let mut ferry = match Ferry::start(self.paths, self.config, &data, &log) {
            Ok(f) => f,
            Err(e) => {
                cell.error = Some(e);
                return cell;
            }
        };
        let flush0 = self.device.and_then(device_flushes);
        cell.report = run_scenario(self.rt, &ferry.target, &s, ferry.pid);
        let flush1 = self.device.and_then(device_flushes);
        let stopped = ferry.stop(Duration::from_secs(30));
        let text = std::fs::read_to_string(&ferry.log).unwrap_or_default();
        cell.wal = parse_wal_closed(&text);
        match stopped {
            Ok(status) if !status.success() => {
                cell.error = Some(compare::with_log_tail(
                    format!("ferry exited with {status}"),
                    &ferry.log,
                ));
            }
            Err(e) => cell.error = Some(e),
            Ok(_) if cell.wal.is_none() => {
                cell.error = Some("no `write-ahead log closed` line in the broker's log".into());
            }
            Ok(_) => {}
        }
        let flushes = match (flush0, flush1) {
            (Some((_, a)), Some((_, b))) => Some(b.saturating_sub(a)),
            _ => None,
        };
        finish_cell(&mut cell, flushes);
        // 300,000 × 1 KiB is 300 MB of log: keep the disk for the next cell.
        let _ = std::fs::remove_dir_all(&data);
        report_progress(&cell);
        cell
    }
}

fn report_progress(cell: &CellResult) {
    let r = &cell.report;
    eprintln!(
        "durable:   {} msgs in {:.1} s, {} msgs/s; accepted p50 {:.0} µs p99 {:.0} µs{}{}",
        r.received,
        r.elapsed_secs,
        compare::rate_str(r.recv_rate),
        r.accept_p50_us,
        r.accept_p99_us,
        cell.wal
            .map(|w| format!("; {} syncs, {} enqueued", w.syncs, w.enqueued))
            .unwrap_or_default(),
        cell.error
            .as_ref()
            .or(r.error.as_ref())
            .map(|e| format!("; error: {e}"))
            .unwrap_or_default()
    );
}

// ---- the run ------------------------------------------------------------------------------

/// Runs everything; returns the exit code: 0 when the report is written and every Ferry cell
/// ran, 1 otherwise, 130 when interrupted (the partial report is still written). Goals that
/// are not met do not fail the run; the report says so.
pub fn main(args: DurableArgs) -> i32 {
    compare::watch_signals();
    let started = Instant::now();
    let root = compare::workspace_root();
    let at_root =
        |p: &Option<PathBuf>, default: &str| p.clone().unwrap_or_else(|| root.join(default));
    let paths = Paths {
        ferry: at_root(&args.ferry, "target/release/ferry"),
        ferry_config: at_root(&args.ferry_config, "benches/ferry-bench.toml"),
        peers: root.join("target/bench-peers"),
        rabbitmq_script: at_root(&args.rabbitmq_script, "benches/peers/rabbitmq.sh"),
        out: args.out.clone(),
    };
    if let Err(e) = std::fs::create_dir_all(&paths.out) {
        eprintln!("durable: {}: {e}", paths.out.display());
        return 1;
    }
    // Two runs in one directory would wipe each other's brokers' data (RabbitMQ's node
    // directory in particular) and mix their reports.
    let _lock = match OutLock::take(&paths.out, "durable.lock") {
        Ok(l) => l,
        Err(e) => {
            eprintln!("durable: {e}");
            return 1;
        }
    };
    let settings = Settings {
        ferry_count: args
            .count
            .unwrap_or(if args.quick { 20_000 } else { 300_000 })
            .max(1),
        ferry_duration_secs: args
            .duration_secs
            .unwrap_or(if args.quick { 30 } else { 120 })
            .clamp(1, 3600),
        rabbitmq_count: args
            .rabbitmq_count
            .unwrap_or(if args.quick { 5_000 } else { 100_000 })
            .max(1),
        rabbitmq_secs: args
            .rabbitmq_secs
            .unwrap_or(if args.quick { 10 } else { 20 })
            .clamp(1, 3600),
        size: args.size.max(wire::STAMP_LEN),
        window: args.window.max(1),
        credit: args.credit.max(1),
        threads: args.threads.max(1),
        repeat: args.repeat.clamp(1, 100),
        quick: args.quick,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut results = DurableResults {
        date: compare::utc_string(now_secs),
        machine: compare::machine(),
        out: paths.out.display().to_string(),
        rabbitmq_version: rabbitmq_version(),
        load_before: loadavg(),
        load_after: String::new(),
        settings: settings.clone(),
        disk_mb_per_sec_before: None,
        disk_mb_per_sec_after: None,
        disk_mb_per_sec: None,
        device: None,
        cells: Vec::new(),
        goals: Vec::new(),
        notes: Vec::new(),
        elapsed_secs: 0.0,
    };
    let mut code = 0;

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
                eprintln!("durable: cannot start the runtime: {e}");
                return 1;
            }
        }
    };

    // Ferry's config: the benchmark's, with every durable message synced before `accepted`.
    let config = paths.out.join("ferry-durable.toml");
    let written = std::fs::read_to_string(&paths.ferry_config)
        .map_err(|e| format!("{}: {e}", paths.ferry_config.display()))
        .and_then(|text| {
            std::fs::write(&config, with_sync_always(&text))
                .map_err(|e| format!("{}: {e}", config.display()))
        });
    if let Err(e) = written {
        eprintln!("durable: {e}");
        return 1;
    }

    let probe = paths.out.join("disk-probe.bin");
    let device = device_of(&paths.out);
    results.device =
        device.and_then(|d| device_flushes(d).map(|(name, _)| format!("{}:{} {name}", d.0, d.1)));
    if results.device.is_none() {
        results.notes.push(
            "Device flushes are not counted: the output directory's device is not in \
             /proc/diskstats (or the kernel has no flush counters)."
                .into(),
        );
    }
    eprintln!("durable: disk bandwidth (256 MiB, fdatasync per MiB)…");
    match storebench::disk_bandwidth(&probe) {
        Ok(bw) => {
            eprintln!("durable:   {bw:.0} MB/s");
            results.disk_mb_per_sec_before = Some(bw);
        }
        Err(e) => results
            .notes
            .push(format!("Disk bandwidth before the cells: {e}")),
    }

    // Ferry: per topology, transient (the reference), then durable.
    let ferry_load = Load {
        count: settings.ferry_count,
        duration: Duration::from_secs(settings.ferry_duration_secs),
        credit: settings.credit,
        window: settings.window,
    };
    let ferry = FerryCell {
        rt: &rt,
        paths: &paths,
        config: &config,
        device,
        run_id: now_secs,
    };
    let mut topologies = args.topologies.clone();
    topologies.retain(|&n| n > 0);
    topologies.dedup();
    for &links in &topologies {
        let (mut transient, mut durable) = (Vec::new(), Vec::new());
        'rounds: for round in 0..settings.repeat {
            for is_durable in [false, true] {
                if compare::stopping() {
                    break 'rounds;
                }
                let cell = ferry.run(links, is_durable, settings.size, ferry_load, round);
                if !cell.ok() {
                    code = 1;
                }
                if is_durable {
                    durable.push(cell);
                } else {
                    transient.push(cell);
                }
            }
        }
        let transient = median_run(transient);
        let durable = median_run(durable).map(|mut d| {
            if let (Some(dr), Some(tr)) = (d.rate(), transient.as_ref().and_then(CellResult::rate))
            {
                d.pct_of_transient = Some(100.0 * dr / tr);
            }
            d
        });
        results.cells.extend(transient);
        results.cells.extend(durable);
    }

    // RabbitMQ: the same durable cells, one node for both.
    let rabbit_load = Load {
        count: settings.rabbitmq_count,
        duration: Duration::from_secs(settings.rabbitmq_secs),
        credit: settings.credit,
        window: settings.window,
    };
    if args.skip_rabbitmq {
        results
            .notes
            .push("RabbitMQ was left out (--skip-rabbitmq).".into());
    } else if !compare::stopping() {
        eprintln!("durable: starting RabbitMQ…");
        match compare::start_rabbitmq(&paths, "durable") {
            Err(e) => {
                eprintln!("durable:   {e}");
                results.notes.push(format!("RabbitMQ did not run: {e}"));
            }
            Ok(ep) => {
                for &links in &topologies {
                    let mut runs = Vec::new();
                    for round in 0..settings.repeat {
                        if compare::stopping() {
                            break;
                        }
                        let name =
                            format!("dur{now_secs}-rabbitmq-{links}x{links}-durable-{round}");
                        let s = scenario_for(
                            address(ep.prefix, &name, links),
                            links,
                            settings.size,
                            true,
                            rabbit_load,
                        );
                        eprintln!(
                            "durable: RabbitMQ {} durable, {} messages or {} s…",
                            topology(links),
                            s.count,
                            settings.rabbitmq_secs
                        );
                        let mut cell = CellResult::new("RabbitMQ", &s);
                        cell.log =
                            Some(paths.out.join("rabbitmq-durable/log").display().to_string());
                        let flush0 = device.and_then(device_flushes);
                        cell.report = run_scenario(&rt, &ep.target, &s, ep.pid());
                        let flush1 = device.and_then(device_flushes);
                        let flushes = match (flush0, flush1) {
                            (Some((_, a)), Some((_, b))) => Some(b.saturating_sub(a)),
                            _ => None,
                        };
                        finish_cell(&mut cell, flushes);
                        report_progress(&cell);
                        runs.push(cell);
                    }
                    results.cells.extend(median_run(runs));
                }
                eprintln!("durable: stopping RabbitMQ…");
                drop(ep);
                results.notes.push(
                    "RabbitMQ confirms a persistent message once its message store has written \
                     and synced it, or once the message has been consumed and acknowledged on \
                     every queue it went to, whichever comes first: with consumers that keep up, \
                     not every message waits for an fsync. Its only fsync figure here is the \
                     device-wide flush count. Ferry syncs every durable message before its \
                     `accepted`."
                        .into(),
                );
            }
        }
    }

    if !compare::stopping() {
        eprintln!("durable: disk bandwidth again…");
        match storebench::disk_bandwidth(&probe) {
            Ok(bw) => {
                eprintln!("durable:   {bw:.0} MB/s");
                results.disk_mb_per_sec_after = Some(bw);
            }
            Err(e) => results
                .notes
                .push(format!("Disk bandwidth after the cells: {e}")),
        }
    }
    results.disk_mb_per_sec = match (
        results.disk_mb_per_sec_before,
        results.disk_mb_per_sec_after,
    ) {
        (Some(a), Some(b)) => Some((a + b) / 2.0),
        (a, b) => a.or(b),
    };
    results.goals = goals(&results);
    results.load_after = loadavg();
    results.elapsed_secs = started.elapsed().as_secs_f64();
    if compare::stopping() {
        results
            .notes
            .push("Interrupted: the report is partial.".into());
        code = 130;
    }

    let md = render_markdown(&results);
    if !compare::save_report(&paths.out, "durable", &md, &results) {
        code = 1;
    }
    code
}

/// The goal for Ferry's durable rate: 150,000 msgs/s, or 80 % of what the disk allows at
/// [`RECORD_BYTES`] per message when it writes less than 200 MB/s. Returns (msgs/s, why).
pub fn rate_goal(disk_mb_per_sec: Option<f64>) -> (f64, String) {
    match disk_mb_per_sec {
        Some(bw) if bw < SLOW_DISK_MB_PER_SEC => {
            let allowed = bw * 1e6 / RECORD_BYTES;
            (
                0.8 * allowed,
                format!(
                    "80 % of the {} msgs/s a {bw:.0} MB/s disk allows at {RECORD_BYTES:.0} B per message",
                    compare::rate_str(allowed)
                ),
            )
        }
        _ => (GOAL_MSGS_PER_SEC, "the disk writes ≥ 200 MB/s".into()),
    }
}

/// The goals, per topology.
pub fn goals(results: &DurableResults) -> Vec<Goal> {
    let (target, why) = rate_goal(results.disk_mb_per_sec);
    let mut out = Vec::new();
    let mut links: Vec<usize> = results
        .cells
        .iter()
        .filter(|c| c.broker == "Ferry" && c.durable)
        .map(|c| c.links)
        .collect();
    links.dedup();
    for n in links {
        let cell = results
            .cells
            .iter()
            .find(|c| c.broker == "Ferry" && c.durable && c.links == n);
        let rate = cell.and_then(CellResult::rate);
        out.push(Goal {
            goal: format!("Ferry durable {} msgs/s", topology(n)),
            target: format!("≥ {} ({why})", compare::rate_str(target)),
            measured: rate.map_or_else(|| "—".into(), compare::rate_str),
            met: rate.map(|r| r >= target),
        });
        let pct = cell.and_then(|c| c.pct_of_transient);
        out.push(Goal {
            goal: format!("Ferry durable {} vs transient", topology(n)),
            target: format!(
                "≥ {:.0} % of the transient rate",
                GOAL_SHARE_OF_TRANSIENT * 100.0
            ),
            measured: pct.map_or_else(|| "—".into(), |p| format!("{p:.0} %")),
            met: pct.map(|p| p >= GOAL_SHARE_OF_TRANSIENT * 100.0),
        });
    }
    out
}

/// The report.
pub fn render_markdown(r: &DurableResults) -> String {
    let s = &r.settings;
    let mut md = String::new();
    let _ = writeln!(md, "# Durable messaging: Ferry and RabbitMQ\n");
    let _ = writeln!(
        md,
        "{}; {} CPUs ({}), {} MiB, Linux {}. Load average (1/5/15 min) {} at the start, {} at the end.\n",
        r.date,
        r.machine.nproc,
        r.machine.cpu_model,
        r.machine.memory_mib,
        r.machine.kernel,
        r.load_before,
        r.load_after
    );
    let _ = writeln!(
        md,
        "{} B messages, unsettled, producer window {}, consumer credit {}; ferry-bench in-process \
         ({} client thread{}). Ferry: `benches/ferry-bench.toml` with `[store] sync = \"always\"`, \
         auto-created (durable) queues, a fresh process and data directory per cell, \
         {} messages per cell (cap {} s). RabbitMQ {}: durable queues through `/queue/NAME`, \
         {} messages or {} s per cell, whichever comes first.\n",
        s.size,
        s.window,
        s.credit,
        s.threads,
        if s.threads == 1 { "" } else { "s" },
        compare::thousands(s.ferry_count),
        s.ferry_duration_secs,
        r.rabbitmq_version.as_deref().unwrap_or("(not installed)"),
        compare::thousands(s.rabbitmq_count),
        s.rabbitmq_secs
    );
    let bw = |v: Option<f64>| v.map_or_else(|| "not measured".into(), |v| format!("{v:.0} MB/s"));
    let _ = writeln!(
        md,
        "**Disk:** {} synced sequential write bandwidth (256 MiB in 1 MiB writes, fdatasync after \
         each, under `{}`): {} before the cells, {} after{}.\n",
        bw(r.disk_mb_per_sec),
        r.out,
        bw(r.disk_mb_per_sec_before),
        bw(r.disk_mb_per_sec_after),
        r.device
            .as_ref()
            .map(|d| format!("; device {d}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        md,
        "| broker | topology | messages | received | msgs/s | % of transient | broker µs/msg | accept p50 / p99 µs | e2e p50 / p99 µs | fsyncs/s | msgs/fsync | device flushes/s |"
    );
    let _ = writeln!(
        md,
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for c in &r.cells {
        let rep = &c.report;
        let ran = c.ok();
        let dash = || "—".to_string();
        let rate = if ran {
            format!(
                "{}{}",
                compare::rate_str(rep.recv_rate),
                if c.capped { " †" } else { "" }
            )
        } else {
            "failed".into()
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.broker,
            topology(c.links),
            if c.durable { "durable" } else { "transient" },
            compare::thousands(rep.received),
            rate,
            compare::opt(c.pct_of_transient, 0).replace('—', if c.durable { "—" } else { "100" }),
            compare::opt(rep.broker_cpu_us_per_msg.filter(|_| ran), 2),
            if ran {
                format!("{:.0} / {:.0}", rep.accept_p50_us, rep.accept_p99_us)
            } else {
                dash()
            },
            if ran {
                format!("{:.0} / {:.0}", rep.p50_us, rep.p99_us)
            } else {
                dash()
            },
            compare::opt(c.fsyncs_per_sec, 0),
            compare::opt(c.msgs_per_fsync, 1),
            compare::opt(c.device_flushes_per_sec, 0),
        );
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "msgs/s: messages received over the time from the first send to the last receipt. \
         broker µs/msg: the broker process's CPU time (user + system) per message received. \
         accept: from writing a transfer to the broker's settlement of it (`accepted`); e2e: \
         from the send stamp to the consumer's receipt. fsyncs/s and msgs/fsync: Ferry's \
         write-ahead log counters (syncs, enqueued) from its shutdown line, over the cell's wall \
         time. device flushes/s: flush requests completed by the whole block device during the \
         cell (`/proc/diskstats`), whatever issued them. † stopped by the time cap before the \
         count; the rate is what it moved.\n"
    );
    if s.repeat > 1 {
        let runs: Vec<String> = r
            .cells
            .iter()
            .map(|c| {
                let rates: Vec<String> = c.runs.iter().map(|&v| compare::rate_str(v)).collect();
                format!(
                    "{} {} {}: {}",
                    c.broker,
                    topology(c.links),
                    if c.durable { "durable" } else { "transient" },
                    rates.join(", ")
                )
            })
            .collect();
        let _ = writeln!(
            md,
            "Each cell ran {} times (Ferry's transient and durable runs alternating); the table \
             shows the median run. Every run's msgs/s, in order: {}.\n",
            s.repeat,
            runs.join("; ")
        );
    }
    let bytes: Vec<String> = r
        .cells
        .iter()
        .filter(|c| c.durable)
        .filter_map(|c| {
            c.log_bytes_per_msg
                .map(|b| format!("{} {b:.0} B", topology(c.links)))
        })
        .collect();
    if !bytes.is_empty() {
        let _ = writeln!(
            md,
            "Ferry's log bytes per durable message: {}.\n",
            bytes.join(", ")
        );
    }
    let _ = writeln!(md, "## Goals\n");
    let _ = writeln!(md, "| goal | target | measured | |");
    let _ = writeln!(md, "| --- | --- | --- | --- |");
    for g in &r.goals {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            g.goal,
            g.target,
            g.measured,
            met_str(g.met)
        );
    }
    let _ = writeln!(md);
    let mut notes = r.notes.clone();
    for c in &r.cells {
        if let Some(e) = c.error.as_ref().or(c.report.error.as_ref()) {
            notes.push(format!(
                "{} {} {}: {e}",
                c.broker,
                topology(c.links),
                if c.durable { "durable" } else { "transient" }
            ));
        }
    }
    if !notes.is_empty() {
        let _ = writeln!(md, "## Notes\n");
        for n in notes {
            let _ = writeln!(md, "- {}", n.replace('\n', " "));
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(
        md,
        "Command: `{}`; {:.0} s in all. Logs under `logs/` (Ferry) and `rabbitmq-durable/log/`.",
        s.command, r.elapsed_secs
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_or_rewrites_the_store_section() {
        let plain = "[broker]\nmax_queues = 5\n\n[[listeners]]\naddress = \"x\"\n";
        let out = with_sync_always(plain);
        assert!(out.contains("[store]\nsync = \"always\"\n"));
        assert!(out.starts_with(plain));

        let existing = "[store]\nsync = \"never\"\nsync_interval = \"1s\"\nsegment_size = \"1MiB\"\n[queues]\nauto_create_durable = false\n";
        let out = with_sync_always(existing);
        assert_eq!(
            out,
            "[store]\nsync = \"always\"\nsegment_size = \"1MiB\"\n[queues]\n"
        );
    }

    #[test]
    fn parses_the_shutdown_line() {
        let plain = "2026-01-01T00:00:00.000000Z  INFO ferry::server: write-ahead log closed batches=12 syncs=10 records=2000 enqueued=1000 bytes=1100000 relocated=0 retired=1 segments=1 live_messages=0\n";
        let s = parse_wal_closed(plain);
        assert_eq!(
            s,
            Some(WalStats {
                batches: 12,
                syncs: 10,
                records: 2000,
                enqueued: 1000,
                bytes: 1_100_000
            })
        );
        let ansi = "\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \u{1b}[2mferry::server\u{1b}[0m\u{1b}[2m:\u{1b}[0m write-ahead log closed \u{1b}[3mbatches\u{1b}[0m\u{1b}[2m=\u{1b}[0m3 \u{1b}[3msyncs\u{1b}[0m\u{1b}[2m=\u{1b}[0m2 \u{1b}[3menqueued\u{1b}[0m\u{1b}[2m=\u{1b}[0m7\n";
        let s = parse_wal_closed(ansi);
        assert_eq!(s.map(|s| (s.batches, s.syncs, s.enqueued)), Some((3, 2, 7)));
        assert_eq!(parse_wal_closed("ferry started\n"), None);
    }

    #[test]
    fn keeps_the_median_run() {
        let s = scenario_for(
            "q".into(),
            1,
            1024,
            true,
            Load {
                count: 10,
                duration: Duration::from_secs(1),
                credit: 10,
                window: 10,
            },
        );
        let run = |rate: f64, failed: bool| {
            let mut c = CellResult::new("Ferry", &s);
            c.report.received = 10;
            c.report.recv_rate = rate;
            if failed {
                c.error = Some("boom".into());
            }
            c
        };
        let m = median_run(vec![
            run(3.0, false),
            run(9.0, true),
            run(1.0, false),
            run(2.0, false),
        ]);
        let m = m.map(|c| (c.report.recv_rate, c.runs));
        assert_eq!(m, Some((2.0, vec![3.0, 0.0, 1.0, 2.0])));
        let m = median_run(vec![run(5.0, true)]).map(|c| c.error.is_some());
        assert_eq!(m, Some(true));
        assert!(median_run(Vec::new()).is_none());
    }

    #[test]
    fn scales_the_goal_by_a_slow_disk() {
        assert_eq!(rate_goal(Some(500.0)).0, GOAL_MSGS_PER_SEC);
        assert_eq!(rate_goal(None).0, GOAL_MSGS_PER_SEC);
        let (g, _) = rate_goal(Some(110.0));
        assert!((g - 80_000.0).abs() < 1.0);
    }
}
