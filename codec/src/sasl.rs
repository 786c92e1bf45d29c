//! SASL frame bodies (§5.3.3).

use bytes::Bytes;

use crate::composite::{composite, described_enum};
use crate::definitions::ubyte_enum;
use crate::types::{Str, Symbol};

composite! {
    /// The server's mechanisms (§5.3.3.1).
    full struct SaslMechanisms = 0x40, "amqp:sasl-mechanisms:list" {
        /// Supported mechanisms, in order of preference.
        req sasl_server_mechanisms: Vec<Symbol>,
    }
}

composite! {
    /// The client's choice (§5.3.3.2).
    full struct SaslInit = 0x41, "amqp:sasl-init:list" {
        /// The chosen mechanism.
        req mechanism: Symbol,
        /// The mechanism's initial response.
        opt initial_response: Bytes,
        /// The host the client wants.
        opt hostname: Str,
    }
}

composite! {
    /// A challenge from the server (§5.3.3.3).
    full struct SaslChallenge = 0x42, "amqp:sasl-challenge:list" {
        /// Mechanism data.
        req challenge: Bytes,
    }
}

composite! {
    /// A response from the client (§5.3.3.4).
    full struct SaslResponse = 0x43, "amqp:sasl-response:list" {
        /// Mechanism data.
        req response: Bytes,
    }
}

composite! {
    /// The result of authentication (§5.3.3.5).
    full struct SaslOutcome = 0x44, "amqp:sasl-outcome:list" {
        /// The result.
        req code: SaslCode,
        /// Mechanism data for the client.
        opt additional_data: Bytes,
    }
}

ubyte_enum!(
    /// Result of a SASL exchange (§5.3.3.6).
    SaslCode, "sasl-code", {
        /// Authentication succeeded.
        #[default]
        Ok = 0,
        /// Bad credentials.
        Auth = 1,
        /// A system error.
        Sys = 2,
        /// A permanent system error.
        SysPerm = 3,
        /// A transient system error.
        SysTemp = 4,
    }
);

described_enum! {
    /// Any SASL frame body.
    enum SaslFrameBody : "SASL frame" {
        /// §5.3.3.1
        Mechanisms(SaslMechanisms),
        /// §5.3.3.2
        Init(SaslInit),
        /// §5.3.3.3
        Challenge(SaslChallenge),
        /// §5.3.3.4
        Response(SaslResponse),
        /// §5.3.3.5
        Outcome(SaslOutcome),
    }
}
