//! What the engine tells the application (the broker, or a client), via
//! [`Connection::poll_event`](crate::proto::Connection::poll_event).

use bytes::Bytes;
use ferry_codec::definitions::{DeliveryTag, Error, SequenceNo};
use ferry_codec::delivery_state::DeliveryState;
use ferry_codec::messaging::Message;
use ferry_codec::performatives::{Attach, Open};
use ferry_codec::types::{Str, Symbol};

use crate::proto::{LinkId, SessionId};

/// A complete message received on a link where we are the receiver.
#[derive(Debug, Clone)]
pub struct IncomingDelivery {
    /// The link it arrived on.
    pub link: LinkId,
    /// Its session-scoped delivery-id: settle it with this.
    pub delivery_id: SequenceNo,
    /// The sender's tag.
    pub tag: DeliveryTag,
    /// The message-format code (0 for standard AMQP messages).
    pub message_format: u32,
    /// Whether the sender already settled it (pre-settled: no disposition is expected).
    pub settled: bool,
    /// The sender's delivery state, e.g. a transactional state.
    pub state: Option<DeliveryState>,
    /// The message, as the frames' payload slices.
    pub message: Message,
}

/// An event from the engine.
#[derive(Debug, Clone)]
pub enum Event {
    /// Server: the client chose a SASL mechanism. Answer with
    /// [`Connection::sasl_outcome`](crate::proto::Connection::sasl_outcome).
    SaslInit {
        /// The mechanism.
        mechanism: Symbol,
        /// Its initial response (PLAIN: `authzid\0authcid\0password`).
        initial_response: Option<Bytes>,
        /// The host the client asked for.
        hostname: Option<Str>,
    },
    /// Client: the server's SASL verdict arrived.
    SaslOutcome {
        /// Whether authentication succeeded.
        ok: bool,
    },
    /// The peer's open arrived (a server has already answered it).
    Opened(Box<Open>),
    /// The peer began a session (a server has already answered it), or answered ours.
    SessionBegun(SessionId),
    /// A session ended; all its links are gone (each reported by [`Event::Detached`] first).
    SessionEnded {
        /// The session.
        session: SessionId,
        /// The peer's error, if any.
        error: Option<Error>,
    },
    /// The peer attached a link. Answer with `accept_attach` or `refuse_attach`.
    AttachRequested {
        /// The new link.
        link: LinkId,
        /// The peer's attach.
        attach: Box<Attach>,
    },
    /// Client: the peer answered our attach.
    Attached {
        /// The link.
        link: LinkId,
        /// The peer's attach.
        attach: Box<Attach>,
    },
    /// The peer changed the credit of a link where we send.
    Credit {
        /// The link.
        link: LinkId,
        /// Deliveries we may send now.
        credit: u32,
        /// The peer asks us to use the credit up or give it back: answer with
        /// [`Connection::drained`](crate::proto::Connection::drained) once nothing more is available.
        drain: bool,
    },
    /// The peer's sender reported its delivery-count and available on a link where we receive.
    SenderState {
        /// The link.
        link: LinkId,
        /// Messages the peer has available.
        available: Option<u32>,
    },
    /// A complete message arrived.
    Delivery(Box<IncomingDelivery>),
    /// The peer updated the state of one of our outgoing deliveries, or (as sender) settled
    /// one it sent us that we had not settled yet.
    Disposition {
        /// The link it was sent on.
        link: LinkId,
        /// Its delivery-id.
        delivery_id: SequenceNo,
        /// The new state.
        state: Option<DeliveryState>,
        /// Whether it is now settled (also true when the engine settled it because the link
        /// uses rcv-settle-mode second and it echoed the outcome).
        settled: bool,
    },
    /// A link is gone: the peer detached it, or it failed. Unsettled outgoing deliveries on it
    /// will get no disposition.
    Detached {
        /// The link.
        link: LinkId,
        /// Whether it was closed (not merely detached).
        closed: bool,
        /// Why.
        error: Option<Error>,
    },
    /// The connection is over. Flush the output, then close the socket.
    Closed {
        /// The peer's error, or ours.
        error: Option<Error>,
    },
}
