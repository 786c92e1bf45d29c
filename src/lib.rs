//! Ferry: an AMQP 1.0 message broker.
//!
//! # Layout
//! - [`proto`]: the sans-IO protocol engine (connection, session and link state machines).
//! - [`transport`]: one tokio task per connection, driving an engine over a socket.
//! - [`broker`]: queues, address resolution, node lifetimes, the memory budget.
//! - [`server`]: listeners, connection limits, housekeeping, graceful shutdown.
//!
//! The transport, broker core and store are built on top of it (see `ARCHITECTURE.md`).

pub mod broker;
pub mod proto;
pub mod server;
pub mod transport;
