//! Ferry: an AMQP 1.0 message broker.
//!
//! # Layout
//! - [`proto`]: the sans-IO protocol engine (connection, session and link state machines).
//!
//! The transport, broker core and store are built on top of it (see `ARCHITECTURE.md`).

pub mod proto;
