//! `ferry-bench store`: the write-ahead log alone, without the network.
//!
//! - Fills a fresh log with N messages of S bytes through the store's own writer (so the
//!   batching is the broker's), reporting messages/s, MB/s and syncs.
//! - Reopens it and times recovery with a warm page cache, then drops the files from the
//!   page cache (`posix_fadvise(DONTNEED)` after a sync, which needs no privileges) and times
//!   a cold recovery.
//! - Measures the disk's sequential write bandwidth with fdatasync (the figure the durable
//!   throughput goal is scaled by when the disk is slow).

use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use bytes::Bytes;
use ferry::store::file::FsStorage;
use ferry::store::{Journal, Meta, Op, Ref, Store, StoreConfig, SyncPolicy};
use serde::Serialize;

/// What one `store` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct StoreReport {
    /// Messages written.
    pub messages: u64,
    /// Body size.
    pub size: usize,
    /// Write rate through the store (messages/s).
    pub write_msgs_per_sec: f64,
    /// Write rate (MB/s of records).
    pub write_mb_per_sec: f64,
    /// Syncs during the write.
    pub syncs: u64,
    /// Segments in the log.
    pub segments: u64,
    /// Recovery with a warm page cache (seconds).
    pub recover_warm_secs: f64,
    /// Recovery after dropping the files from the page cache (seconds).
    pub recover_cold_secs: f64,
    /// Messages recovered.
    pub recovered: usize,
    /// Sequential write bandwidth with fdatasync every 1 MiB (MB/s).
    pub disk_mb_per_sec: f64,
}

/// Runs the store benchmark in `dir` (removed first and after).
pub fn run(
    dir: &Path,
    messages: u64,
    size: usize,
    sync: SyncPolicy,
) -> Result<StoreReport, String> {
    let _ = std::fs::remove_dir_all(dir);
    let wal = dir.join("wal");
    let cfg = StoreConfig {
        segment_size: 64 << 20,
        sync,
    };
    let open = |cfg: StoreConfig| {
        let storage = FsStorage::new(&wal).map_err(|e| e.to_string())?;
        Store::open(storage, cfg).map_err(|e| e.to_string())
    };
    let (store, _) = open(cfg)?;
    let queue = store.next_queue_id();
    store.submit(vec![Op::DeclareQueue {
        queue,
        name: "bench".into(),
        props: Vec::new(),
    }]);
    let body = Bytes::from(vec![0x5a; size]);
    let started = Instant::now();
    // 64 batches in flight of 256 messages each, as many producers would keep the writer.
    let (tx, rx) = mpsc::channel::<()>();
    let mut in_flight = 0;
    let mut sent = 0;
    while sent < messages {
        while in_flight < 64 && sent < messages {
            let n = 256.min(messages - sent);
            let mut ops: Vec<Op> = (0..n)
                .map(|_| Op::Enqueue {
                    msg: store.next_message_id(),
                    meta: Meta::default(),
                    refs: vec![Ref {
                        queue,
                        ..Default::default()
                    }],
                    body: body.clone(),
                    cold: false,
                })
                .collect();
            let tx = tx.clone();
            ops.push(Op::Done(Box::new(move |_| {
                let _ = tx.send(());
            })));
            store.submit(ops);
            sent += n;
            in_flight += 1;
        }
        rx.recv().map_err(|e| e.to_string())?;
        in_flight -= 1;
    }
    while in_flight > 0 {
        rx.recv().map_err(|e| e.to_string())?;
        in_flight -= 1;
    }
    let write_secs = started.elapsed().as_secs_f64();
    let stats = store.stats();
    store.close();
    drop(store);

    let t = Instant::now();
    let (store, recovery) = open(cfg)?;
    let recover_warm_secs = t.elapsed().as_secs_f64();
    let recovered = recovery.queues.iter().map(|q| q.messages.len()).sum();
    store.close();
    drop(store);

    drop_cache(&wal)?;
    let t = Instant::now();
    let (store, _) = open(cfg)?;
    let recover_cold_secs = t.elapsed().as_secs_f64();
    store.close();
    drop(store);
    let _ = std::fs::remove_dir_all(dir);

    let disk_mb_per_sec = disk_bandwidth(&dir.with_extension("probe"))?;
    Ok(StoreReport {
        messages,
        size,
        write_msgs_per_sec: messages as f64 / write_secs,
        write_mb_per_sec: stats.bytes as f64 / write_secs / 1e6,
        syncs: stats.syncs,
        segments: stats.segments,
        recover_warm_secs,
        recover_cold_secs,
        recovered,
        disk_mb_per_sec,
    })
}

/// Evicts every file in `dir` from the page cache.
#[allow(unsafe_code)]
fn drop_cache(dir: &Path) -> Result<(), String> {
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let f = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        f.sync_all().map_err(|e| e.to_string())?;
        // SAFETY: a valid open descriptor; the call only advises the kernel.
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
        }
    }
    Ok(())
}

/// Writes 256 MiB in 1 MiB chunks with `fdatasync` after each: the disk's sustained rate
/// for the writes a synced log makes.
pub fn disk_bandwidth(path: &PathBuf) -> Result<f64, String> {
    let mut f = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let chunk = vec![0xa5u8; 1 << 20];
    let t = Instant::now();
    for _ in 0..256 {
        f.write_all(&chunk).map_err(|e| e.to_string())?;
        f.sync_data().map_err(|e| e.to_string())?;
    }
    let secs = t.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(path);
    Ok(256.0 * (1 << 20) as f64 / secs / 1e6)
}
