//! CPU time and memory of a process, read from `/proc` (Linux).
//!
//! CPU comes from `utime + stime` in `/proc/PID/stat`, which covers every thread; Linux
//! reports it in USER_HZ ticks, fixed at 100 per second for user space. Peak RSS is sampled
//! from `VmRSS` every 10 ms, and also taken from `VmHWM` after resetting it with
//! `/proc/PID/clear_refs` (where permitted), so short spikes between samples count too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds (user + system) used so far by `pid`.
pub fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the full line are the 12th and 13th after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// CPU seconds used by this process.
pub fn self_cpu_secs() -> f64 {
    cpu_secs("self").unwrap_or(0.0)
}

/// A `Vm*:` line of `/proc/PID/status`, in KiB.
pub fn status_kib(pid: &str, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// What a [`Sampler`] saw.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// CPU seconds between start and finish.
    pub cpu_secs: f64,
    /// Largest resident set seen, KiB.
    pub peak_rss_kib: u64,
}

/// Watches a process from a background thread.
#[derive(Debug)]
pub struct Sampler {
    pid: String,
    cpu0: f64,
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts watching `pid`.
    pub fn start(pid: u32) -> Self {
        let pid = pid.to_string();
        // Reset the high-water mark so VmHWM covers this run only (needs permission).
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(status_kib(&pid, "VmRSS:").unwrap_or(0)));
        let thread = {
            let (pid, stop, peak) = (pid.clone(), Arc::clone(&stop), Arc::clone(&peak));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = status_kib(&pid, "VmRSS:") {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Self {
            cpu0: cpu_secs(&pid).unwrap_or(0.0),
            pid,
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Stops watching and reports.
    pub fn finish(mut self) -> Usage {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let hwm = status_kib(&self.pid, "VmHWM:").unwrap_or(0);
        Usage {
            cpu_secs: cpu_secs(&self.pid).unwrap_or(self.cpu0) - self.cpu0,
            peak_rss_kib: self.peak.load(Ordering::Relaxed).max(hwm),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_cpu_and_memory() {
        let before = self_cpu_secs();
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(self_cpu_secs() >= before);
        let rss = status_kib("self", "VmRSS:").unwrap();
        assert!(rss > 100, "RSS {rss} KiB");
        let s = Sampler::start(std::process::id());
        std::thread::sleep(Duration::from_millis(30));
        let u = s.finish();
        assert!(u.peak_rss_kib >= rss / 2);
        assert!(u.cpu_secs >= 0.0);
    }
}
