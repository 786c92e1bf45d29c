//! Deadlines of queues: message locks running out and scheduled messages coming due.
//!
//! A queue arms a deadline only when it is earlier than the one it already has armed, so
//! there are about as many entries as queues with something timed. Housekeeping fires the
//! due ones every [`TICK`]; each fired queue does its own work and arms its next deadline.
//! An entry whose queue has gone or whose work was already done fires harmlessly.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::queue::Queue;

/// How often housekeeping fires due deadlines: a lock or a schedule is late by at most this.
pub const TICK: Duration = Duration::from_millis(50);

/// The armed deadlines of every queue.
#[derive(Debug, Default)]
pub struct Timers {
    due: Mutex<BTreeMap<(u64, u64), Weak<Queue>>>,
    seq: AtomicU64,
}

impl Timers {
    /// Calls `queue.on_timer` once `at_ms` (ms since the epoch) has passed.
    pub fn arm(&self, at_ms: u64, queue: &Arc<Queue>) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.lock().insert((at_ms, seq), Arc::downgrade(queue));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(u64, u64), Weak<Queue>>> {
        self.due.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fires every deadline up to `now_ms`; returns how many fired.
    pub fn fire(&self, now_ms: u64) -> usize {
        let mut fired = Vec::new();
        {
            let mut due = self.lock();
            while let Some(entry) = due.first_entry() {
                if entry.key().0 > now_ms {
                    break;
                }
                fired.push(entry.remove());
            }
        }
        let n = fired.len();
        for q in fired.into_iter().filter_map(|w| w.upgrade()) {
            q.on_timer(now_ms);
        }
        n
    }

    /// Deadlines armed.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is armed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
