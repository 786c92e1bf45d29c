//! The sans-IO AMQP 1.0 protocol engine: connection, session and link state machines.
//!
//! Nothing here does I/O, spawns tasks or reads the clock. A [`Connection`] is driven by its
//! owner (the tokio transport in the broker, or an in-memory peer in tests):
//!
//! - bytes in: [`Connection::handle_input`]; time in: [`Connection::handle_timeout`];
//! - bytes out: [`Connection::take_output`]; the next deadline: [`Connection::poll_timeout`];
//! - what happened: [`Connection::poll_event`]; what to do: `accept_attach`, `send`,
//!   `settle_incoming`, `grant_credit`, `detach`, `close` and the rest.
//!
//! Both roles are implemented: the broker is a server; the client role drives tests, fuzzing
//! and the load harness, and lets two engines be run against each other in memory.

// Everything here handles peer input: no panicking paths.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod connection;
mod error;
mod events;
#[doc(hidden)]
pub mod fuzzing;
mod link;
mod session;

pub use connection::{
    ClientSasl, Connection, ConnectionConfig, ConnectionState, EndpointRole, SaslConfig,
};
pub use error::{ProtocolError, Scope, UsageError};
pub use events::{Event, IncomingDelivery};
pub use link::{AttachReply, LinkSpec};

/// A session, named by its local channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u16);

/// A link, unique for the life of its connection (never reused, unlike handles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

#[cfg(test)]
mod tests;
