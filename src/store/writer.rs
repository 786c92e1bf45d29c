//! Group commit: one thread owns the log and makes the records of every connection durable
//! together, with one `fdatasync` per batch.
//!
//! Connections hand [`Request`]s to a bounded channel. The writer takes the first, then every
//! request already waiting (up to [`MAX_BATCH_BYTES`]), appends them all, commits, and only
//! then answers each request. Under the `always` policy the answer means "on disk", and the
//! next batch starts the moment the previous sync returns, so the batch grows with the load
//! and syncs per second stay bounded by the disk, not by the number of producers.

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::log::{Log, LogError, Recovered};
use super::record::Kind;

/// When written records become durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Sync every batch before answering: nothing answered is ever lost (the default).
    Always,
    /// Answer once written; sync at least this often. A crash (power loss, not `kill -9`:
    /// the page cache survives that) can lose what was answered within the last interval.
    Interval(Duration),
    /// Answer once written and never sync: for tests and benchmarks only; a power loss can
    /// lose anything not yet written back by the kernel.
    Never,
}

/// What the writer calls once a request's records are as durable as the policy makes them:
/// with the first record's sequence number, or why they are not. A callback rather than a
/// channel, so the store stays free of any async runtime (the transport passes one that
/// completes its own future).
pub type Done = Box<dyn FnOnce(Result<u64, String>) + Send>;

/// Records to append atomically (they share a commit), and who to tell.
pub struct Request {
    /// The records.
    pub records: Vec<(Kind, Vec<u8>)>,
    /// Called when done; `None` for writes nobody waits for (pre-settled messages).
    pub done: Option<Done>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("records", &self.records.len())
            .field("waited_for", &self.done.is_some())
            .finish()
    }
}

/// Most bytes appended per batch: bounds how long one batch's callers wait for another's.
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Requests that may wait for the writer; senders block (or fail `try_send`) beyond this.
pub const QUEUE_DEPTH: usize = 4096;

/// The writer thread and its queue.
#[derive(Debug)]
pub struct Writer {
    tx: Option<SyncSender<Request>>,
    thread: Option<JoinHandle<Log>>,
}

impl Writer {
    /// Opens the log in `dir` and starts the writer; returns it with what the log held.
    pub fn start(
        dir: &Path,
        segment_size: u64,
        policy: SyncPolicy,
    ) -> Result<(Self, Recovered), LogError> {
        let (log, recovered) = Log::open(dir, segment_size)?;
        let (tx, rx) = sync_channel(QUEUE_DEPTH);
        let thread = std::thread::Builder::new()
            .name("ferry-wal".into())
            .spawn(move || run(log, rx, policy))
            .map_err(|source| LogError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok((
            Self {
                tx: Some(tx),
                thread: Some(thread),
            },
            recovered,
        ))
    }

    /// A handle to submit requests with (cheap to clone).
    pub fn sender(&self) -> Option<SyncSender<Request>> {
        self.tx.clone()
    }

    /// Stops taking requests, finishes the queued ones, syncs, and returns the log.
    pub fn stop(mut self) -> Option<Log> {
        self.tx.take();
        self.thread.take().and_then(|t| t.join().ok())
    }
}

fn run(mut log: Log, rx: Receiver<Request>, policy: SyncPolicy) -> Log {
    let mut last_sync = Instant::now();
    let mut failed: Option<String> = None;
    loop {
        let first = match policy {
            SyncPolicy::Interval(every) => {
                match rx.recv_timeout(every.saturating_sub(last_sync.elapsed())) {
                    Ok(r) => Some(r),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            _ => match rx.recv() {
                Ok(r) => Some(r),
                Err(_) => break,
            },
        };
        let mut batch: Vec<Request> = first.into_iter().collect();
        let mut bytes: usize = batch
            .iter()
            .flat_map(|r| &r.records)
            .map(|(_, p)| p.len())
            .sum();
        while bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(r) => {
                    bytes += r.records.iter().map(|(_, p)| p.len()).sum::<usize>();
                    batch.push(r);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let mut firsts = Vec::with_capacity(batch.len());
        if failed.is_none() {
            for r in &batch {
                let mut first = None;
                for (kind, payload) in &r.records {
                    match log.append(*kind, payload) {
                        Ok(seq) => {
                            first.get_or_insert(seq);
                        }
                        Err(e) => {
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                }
                firsts.push(first.unwrap_or(0));
            }
        }
        let sync_now = match policy {
            SyncPolicy::Always => true,
            SyncPolicy::Interval(every) => last_sync.elapsed() >= every,
            SyncPolicy::Never => false,
        };
        if failed.is_none() {
            if let Err(e) = log.commit_with(sync_now) {
                failed = Some(e.to_string());
            } else if sync_now {
                last_sync = Instant::now();
            }
        }
        for (i, r) in batch.into_iter().enumerate() {
            if let Some(done) = r.done {
                let answer = match &failed {
                    Some(e) => Err(e.clone()),
                    None => Ok(firsts.get(i).copied().unwrap_or(0)),
                };
                done(answer);
            }
        }
    }
    if failed.is_none() && policy != SyncPolicy::Never {
        let _ = log.sync();
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ferry-writer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn many_producers_share_syncs_and_every_answered_record_is_there() {
        let dir = temp_dir("group");
        let (writer, _) = Writer::start(&dir, 1 << 20, SyncPolicy::Always).unwrap();
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                let tx = writer.sender().unwrap();
                std::thread::spawn(move || {
                    for i in 0..200u32 {
                        let (done, wait) = std::sync::mpsc::channel();
                        let mut payload = vec![t];
                        payload.extend_from_slice(&i.to_le_bytes());
                        tx.send(Request {
                            records: vec![(Kind::Enqueue, payload)],
                            done: Some(Box::new(move |r| {
                                let _ = done.send(r);
                            })),
                        })
                        .unwrap();
                        wait.recv().unwrap().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let log = writer.stop().unwrap();
        // 1,600 answered writes; with 8 waiting at a time most batches hold several.
        assert!(log.syncs() < 1_600, "{} syncs", log.syncs());
        drop(log);
        let (_, recovered) = Log::open(&dir, 1 << 20).unwrap();
        assert_eq!(recovered.records.len(), 1_600);
        for t in 0..8u8 {
            let mine: Vec<u32> = recovered
                .records
                .iter()
                .filter(|r| r.payload[0] == t)
                .map(|r| u32::from_le_bytes(r.payload[1..5].try_into().unwrap()))
                .collect();
            assert_eq!(mine, (0..200).collect::<Vec<_>>(), "producer {t}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn records_of_one_request_share_a_commit_and_fire_and_forget_writes_land() {
        let dir = temp_dir("atomic");
        let (writer, _) = Writer::start(&dir, 1 << 20, SyncPolicy::Never).unwrap();
        let tx = writer.sender().unwrap();
        tx.send(Request {
            records: vec![
                (Kind::Settle, b"s".to_vec()),
                (Kind::Enqueue, b"e".to_vec()),
            ],
            done: None,
        })
        .unwrap();
        let (done, wait) = std::sync::mpsc::channel();
        tx.send(Request {
            records: vec![(Kind::DeadLetter, b"d".to_vec())],
            done: Some(Box::new(move |r| {
                let _ = done.send(r);
            })),
        })
        .unwrap();
        // After the first request's two records and a commit: 2 if both requests shared a
        // batch, 3 if the first was committed alone.
        let seq = wait.recv().unwrap().unwrap();
        assert!(seq == 2 || seq == 3, "{seq}");
        drop(tx);
        drop(writer.stop());
        let (_, recovered) = Log::open(&dir, 1 << 20).unwrap();
        let kinds: Vec<Kind> = recovered.records.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [Kind::Settle, Kind::Enqueue, Kind::DeadLetter]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
