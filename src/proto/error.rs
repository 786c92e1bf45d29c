//! Protocol errors, each carrying the scope the spec closes at (§2.4.7, §2.5.7, §2.6.6).
//!
//! The scope decides the performative: a connection error is answered with `close`, a session
//! error with `end`, a link error with `detach(closed=true)`. Only that scope is torn down.

use ferry_codec::definitions::{Error, ErrorCondition};
use ferry_codec::types::Str;

/// Where a protocol error applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The whole connection: `close`.
    Connection,
    /// One session, by local channel: `end`.
    Session(u16),
    /// One link: `detach(closed=true)`.
    Link(crate::proto::LinkId),
}

/// A protocol violation by the peer (or a local limit), with its scope and condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{condition}: {description} ({scope:?})")]
pub struct ProtocolError {
    /// What is torn down.
    pub scope: Scope,
    /// The AMQP condition sent to the peer.
    pub condition: ErrorCondition,
    /// Text for the peer's logs.
    pub description: String,
}

impl ProtocolError {
    /// A connection-scope error.
    pub fn connection(condition: ErrorCondition, description: impl Into<String>) -> Self {
        Self {
            scope: Scope::Connection,
            condition,
            description: description.into(),
        }
    }

    /// A session-scope error.
    pub fn session(
        channel: u16,
        condition: ErrorCondition,
        description: impl Into<String>,
    ) -> Self {
        Self {
            scope: Scope::Session(channel),
            condition,
            description: description.into(),
        }
    }

    /// A link-scope error.
    pub fn link(
        link: crate::proto::LinkId,
        condition: ErrorCondition,
        description: impl Into<String>,
    ) -> Self {
        Self {
            scope: Scope::Link(link),
            condition,
            description: description.into(),
        }
    }

    /// The `error` to send.
    pub fn to_amqp(&self) -> Error {
        Error {
            condition: self.condition.clone(),
            description: Some(Str::from(self.description.as_str())),
            info: None,
        }
    }
}

/// Why an application call on the engine was refused (a local mistake, never the peer's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// The link does not exist (any more).
    #[error("no such link")]
    NoSuchLink,
    /// The session does not exist (any more).
    #[error("no such session")]
    NoSuchSession,
    /// The link is not in a state for this call.
    #[error("link is not attached")]
    NotAttached,
    /// Sending needs credit the peer has not granted.
    #[error("no link credit")]
    NoCredit,
    /// The link's role does not allow the call.
    #[error("wrong link role for this call")]
    WrongRole,
    /// The message exceeds the peer's max-message-size.
    #[error("message exceeds the peer's max-message-size")]
    MessageTooLarge,
    /// The connection is closing or closed.
    #[error("connection is closed")]
    Closed,
    /// No free channel or handle.
    #[error("no free channel or handle")]
    Exhausted,
}
