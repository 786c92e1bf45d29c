//! Ferry: an AMQP 1.0 message broker.
//!
//! # Layout
//! - [`proto`]: the sans-IO protocol engine (connection, session and link state machines).
//! - [`config`]: the typed TOML configuration; `etc/ferry.toml` is its built-in default.
//! - [`cli`]: the command line, which loads the config and overrides parts of it.
//! - [`auth`]: argon2 password hashes and SASL PLAIN, checked against the configured users.
//! - [`transport`]: one tokio task per connection, driving an engine over a socket.
//! - [`broker`]: queues, address resolution, node lifetimes, the memory budget.
//! - [`idhash`]: a fast hasher for maps keyed by Ferry's own ids.
//! - [`store`]: the write-ahead log for durable messages (being built: its record format).
//! - [`server`]: listeners, connection limits, housekeeping, graceful shutdown.
//!
//! The transport, broker core and store are built on top of it (see `ARCHITECTURE.md`).

pub mod auth;
pub mod broker;
pub mod cli;
pub mod config;
pub mod idhash;
pub mod proto;
pub mod server;
pub mod store;
pub mod transport;
