//! Transactions (§4): the coordinator target and the control messages sent to it.

use bytes::Bytes;

use crate::composite::composite;
use crate::delivery_state::DeliveryState;
use crate::types::{Symbol, Value};

/// Capabilities a coordinator may offer or a client may ask for (§4.5.8).
pub mod capabilities {
    /// Local transactions.
    pub const LOCAL_TRANSACTIONS: &str = "amqp:local-transactions";
    /// Distributed transactions.
    pub const DISTRIBUTED_TRANSACTIONS: &str = "amqp:distributed-transactions";
    /// Promotable transactions.
    pub const PROMOTABLE_TRANSACTIONS: &str = "amqp:promotable-transactions";
    /// Several active transactions per session.
    pub const MULTI_TXNS_PER_SSN: &str = "amqp:multi-txns-per-ssn";
    /// Transactions spanning sessions.
    pub const MULTI_SSNS_PER_TXN: &str = "amqp:multi-ssns-per-txn";
}

composite! {
    /// The target of a transaction controller link (§4.5.1).
    full struct Coordinator = 0x30, "amqp:coordinator:list" {
        /// Transaction capabilities asked for.
        def capabilities: Vec<Symbol>,
    }
}

composite! {
    /// Start a transaction (§4.5.2).
    compact struct Declare = 0x31, "amqp:declare:list" {
        /// Global id for a distributed transaction (unsupported by local-only coordinators).
        opt global_id: Value,
    }
}

composite! {
    /// End a transaction, committing unless `fail` (§4.5.3).
    compact struct Discharge = 0x32, "amqp:discharge:list" {
        /// The transaction.
        req txn_id: Bytes,
        /// Roll back instead of committing.
        opt fail: bool,
    }
}

composite! {
    /// The outcome of a successful declare (§4.5.4).
    compact struct Declared = 0x33, "amqp:declared:list" {
        /// The new transaction's id.
        req txn_id: Bytes,
    }
}

composite! {
    /// A delivery's state within a transaction (§4.5.5).
    compact struct TransactionalState = 0x34, "amqp:transactional-state:list" {
        /// The transaction.
        req txn_id: Bytes,
        /// The outcome applied when the transaction commits.
        opt outcome: Box<DeliveryState>,
    }
}
