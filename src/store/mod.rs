//! Durable storage for messages (issue 5, in progress): a write-ahead log of opaque records.
//!
//! The store knows nothing of AMQP: it keeps message bytes and small metadata, framed as
//! [`record`]s in preallocated [`segment`] files, written through [`file::SegmentFile`] so
//! tests can inject disk faults. Built so far: records, segments with per-batch commits, the
//! scan that applies the recovery rule, the [`log`] of numbered segments over a directory,
//! and the group-commit [`writer`] with its sync policies. Not yet: the queue index,
//! compaction, paging, and wiring into the broker.

pub mod file;
pub mod log;
pub mod record;
pub mod segment;
pub mod writer;
