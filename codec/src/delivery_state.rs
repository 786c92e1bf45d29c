//! Delivery states and outcomes (§3.4), plus the transactional states of §4.5.
//!
//! Written in the canonical smallest form (`compact`), except [`Error`], which is always
//! written whole.

use crate::composite::{composite, described_enum};
use crate::definitions::{Error, Fields};
use crate::transaction::{Declared, TransactionalState};

composite! {
    /// Partial progress of a delivery, for resumption (§3.4.1).
    compact struct Received = 0x23, "amqp:received:list" {
        /// The section the receiver has reached.
        req section_number: u32,
        /// Bytes into that section.
        req section_offset: u64,
    }
}

composite! {
    /// The message was processed (§3.4.2).
    compact struct Accepted = 0x24, "amqp:accepted:list" {}
}

composite! {
    /// The message is invalid and will not be processed (§3.4.3).
    compact struct Rejected = 0x25, "amqp:rejected:list" {
        /// Why.
        opt error: Error,
    }
}

composite! {
    /// The message was not and will not be processed; it may be redelivered (§3.4.4).
    compact struct Released = 0x26, "amqp:released:list" {}
}

composite! {
    /// The message was modified but not processed (§3.4.5).
    compact struct Modified = 0x27, "amqp:modified:list" {
        /// Count this as a failed delivery attempt.
        opt delivery_failed: bool,
        /// Do not redeliver to this link.
        opt undeliverable_here: bool,
        /// Annotations to merge into the message.
        opt message_annotations: Fields,
    }
}

described_enum! {
    /// The state of a delivery at one end of a link (§2.6.12, §3.4, §4.5).
    enum DeliveryState : "delivery-state" {
        /// §3.4.1 (not an outcome)
        Received(Received),
        /// §3.4.2
        Accepted(Accepted),
        /// §3.4.3
        Rejected(Rejected),
        /// §3.4.4
        Released(Released),
        /// §3.4.5
        Modified(Modified),
        /// §4.5.3: the outcome of a declare.
        Declared(Declared),
        /// §4.5.5 (not an outcome)
        Transactional(TransactionalState),
    }
}

impl DeliveryState {
    /// Whether this is an outcome (a terminal state), not a partial one (§3.4).
    pub fn is_outcome(&self) -> bool {
        !matches!(
            self,
            DeliveryState::Received(_) | DeliveryState::Transactional(_)
        )
    }

    /// The outcome's descriptor name, as outcome lists in a source carry it (§3.5.3).
    pub fn name(&self) -> &'static str {
        use crate::composite::DescribedBody;
        match self {
            DeliveryState::Received(_) => Received::NAME,
            DeliveryState::Accepted(_) => Accepted::NAME,
            DeliveryState::Rejected(_) => Rejected::NAME,
            DeliveryState::Released(_) => Released::NAME,
            DeliveryState::Modified(_) => Modified::NAME,
            DeliveryState::Declared(_) => Declared::NAME,
            DeliveryState::Transactional(_) => TransactionalState::NAME,
        }
    }
}
