//! Durable storage for messages (issue 5, in progress): a write-ahead log of opaque records.
//!
//! The store knows nothing of AMQP: it keeps message bytes and small metadata, framed as
//! [`record`]s. What is here so far is the record format, the one piece every other part
//! (segments, group commit, recovery, compaction) is built on; nothing in the broker uses it
//! yet.

pub mod record;
