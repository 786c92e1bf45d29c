//! The global message memory budget: what every queue's messages may occupy together.
//!
//! Queues charge it on enqueue and refund on removal. Connections stop granting credit, and
//! then stop reading their sockets, while it is exhausted; they wait on [`Memory::wait_room`].

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Bytes of message data held by the broker, against a limit.
#[derive(Debug)]
pub struct Memory {
    used: AtomicUsize,
    limit: usize,
    room: Notify,
}

impl Memory {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit,
            room: Notify::new(),
        }
    }

    /// Bytes in use.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether the budget is used up.
    pub fn exhausted(&self) -> bool {
        self.used() >= self.limit
    }

    /// Bytes left before the limit.
    pub fn available(&self) -> usize {
        self.limit.saturating_sub(self.used())
    }

    pub(crate) fn charge(&self, n: usize) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn refund(&self, n: usize) {
        let before = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(n))
            })
            .unwrap_or(0);
        if before >= self.limit && before.saturating_sub(n) < self.limit {
            self.room.notify_waiters();
        }
    }

    /// Resolves once the budget has room (at once if it has).
    pub async fn wait_room(&self) {
        loop {
            let notified = self.room.notified();
            if !self.exhausted() {
                return;
            }
            notified.await;
        }
    }
}
