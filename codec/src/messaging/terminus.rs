//! Sources, targets and node lifetimes (§3.5).

use crate::composite::{composite, described_enum};
use crate::decode::{Decode, Decoder, Result};
use crate::definitions::Fields;
use crate::delivery_state::DeliveryState;
use crate::encode::Encode;
use crate::error::DecodeError;
use crate::transaction::Coordinator;
use crate::types::{Str, Symbol};

/// What terminus state is kept across detach (§3.5.5), carried as a `uint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TerminusDurability {
    /// Nothing is kept.
    #[default]
    None,
    /// The terminus configuration is kept.
    Configuration,
    /// Configuration and unsettled state are kept.
    UnsettledState,
}

impl<'a> Decode<'a> for TerminusDurability {
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        Ok(match u32::decode(d)? {
            0 => TerminusDurability::None,
            1 => TerminusDurability::Configuration,
            2 => TerminusDurability::UnsettledState,
            _ => return Err(DecodeError::InvalidValue("terminus-durability")),
        })
    }
}

impl Encode for TerminusDurability {
    fn encoded_len(&self) -> usize {
        (*self as u32).encoded_len()
    }
    fn encode(&self, buf: &mut bytes::BytesMut) {
        (*self as u32).encode(buf)
    }
}

/// When the expiry timer of a terminus starts (§3.5.6), carried as a `symbol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TerminusExpiryPolicy {
    /// When the link detaches.
    LinkDetach,
    /// When the session ends.
    #[default]
    SessionEnd,
    /// When the connection closes.
    ConnectionClose,
    /// Never.
    Never,
}

impl TerminusExpiryPolicy {
    /// The policy's symbol.
    pub fn as_str(self) -> &'static str {
        match self {
            TerminusExpiryPolicy::LinkDetach => "link-detach",
            TerminusExpiryPolicy::SessionEnd => "session-end",
            TerminusExpiryPolicy::ConnectionClose => "connection-close",
            TerminusExpiryPolicy::Never => "never",
        }
    }
}

impl<'a> Decode<'a> for TerminusExpiryPolicy {
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        Ok(match Symbol::decode(d)?.as_str() {
            "link-detach" => TerminusExpiryPolicy::LinkDetach,
            "session-end" => TerminusExpiryPolicy::SessionEnd,
            "connection-close" => TerminusExpiryPolicy::ConnectionClose,
            "never" => TerminusExpiryPolicy::Never,
            _ => return Err(DecodeError::InvalidValue("terminus-expiry-policy")),
        })
    }
}

impl Encode for TerminusExpiryPolicy {
    fn encoded_len(&self) -> usize {
        crate::decode::SymbolRef(self.as_str()).encoded_len()
    }
    fn encode(&self, buf: &mut bytes::BytesMut) {
        crate::decode::SymbolRef(self.as_str()).encode(buf)
    }
}

/// Standard distribution modes (§3.5.7).
pub mod distribution_mode {
    /// Each message goes to one link, and is removed from the node.
    pub const MOVE: &str = "move";
    /// Each link gets a copy; the node keeps the message.
    pub const COPY: &str = "copy";
}

/// Keys of `dynamic-node-properties` defined by the spec (§3.5.9).
pub mod node_properties {
    /// The lifetime policy of a dynamic node.
    pub const LIFETIME_POLICY: &str = "lifetime-policy";
    /// The distribution modes a dynamic node supports.
    pub const SUPPORTED_DIST_MODES: &str = "supported-dist-modes";
}

composite! {
    /// The source of a link (§3.5.3). Written whole, because clients read it by position.
    full struct Source = 0x28, "amqp:source:list" {
        /// The node's address.
        opt address: Str,
        /// What is kept across detach.
        def durable: TerminusDurability,
        /// When the expiry timer starts.
        def expiry_policy: TerminusExpiryPolicy,
        /// Seconds until expiry once the timer starts.
        def timeout: u32,
        /// Ask the peer to create the node.
        def dynamic: bool,
        /// Properties of a dynamically created node.
        opt dynamic_node_properties: Fields,
        /// `move` or `copy`.
        opt distribution_mode: Symbol,
        /// Filters, by name; each value is an opaque described filter (or null).
        opt filter: Fields,
        /// The outcome applied to deliveries settled without one.
        opt default_outcome: DeliveryState,
        /// The outcomes the source supports.
        def outcomes: Vec<Symbol>,
        /// Extension capabilities.
        def capabilities: Vec<Symbol>,
    }
}

composite! {
    /// The target of a link (§3.5.4). Written whole, because clients read it by position.
    full struct Target = 0x29, "amqp:target:list" {
        /// The node's address.
        opt address: Str,
        /// What is kept across detach.
        def durable: TerminusDurability,
        /// When the expiry timer starts.
        def expiry_policy: TerminusExpiryPolicy,
        /// Seconds until expiry once the timer starts.
        def timeout: u32,
        /// Ask the peer to create the node.
        def dynamic: bool,
        /// Properties of a dynamically created node.
        opt dynamic_node_properties: Fields,
        /// Extension capabilities.
        def capabilities: Vec<Symbol>,
    }
}

described_enum! {
    /// What an attach's target field may hold: a node, or a transaction coordinator (§4.5.1).
    enum TargetKind : "target" {
        /// §3.5.4
        Target(Target),
        /// §4.5.1
        Coordinator(Coordinator),
    }
}

composite! {
    /// Delete the node when the link that created it closes (§3.5.10).
    compact struct DeleteOnClose = 0x2b, "amqp:delete-on-close:list" {}
}

composite! {
    /// Delete the node when it has no links (§3.5.11).
    compact struct DeleteOnNoLinks = 0x2c, "amqp:delete-on-no-links:list" {}
}

composite! {
    /// Delete the node when it holds no messages (§3.5.12).
    compact struct DeleteOnNoMessages = 0x2d, "amqp:delete-on-no-messages:list" {}
}

composite! {
    /// Delete the node when it has neither links nor messages (§3.5.13).
    compact struct DeleteOnNoLinksOrMessages = 0x2e, "amqp:delete-on-no-links-or-messages:list" {}
}

described_enum! {
    /// A node lifetime policy (§3.5.9), the value of `lifetime-policy` in
    /// dynamic-node-properties.
    enum LifetimePolicy : "lifetime-policy" {
        /// §3.5.10
        DeleteOnClose(DeleteOnClose),
        /// §3.5.11
        DeleteOnNoLinks(DeleteOnNoLinks),
        /// §3.5.12
        DeleteOnNoMessages(DeleteOnNoMessages),
        /// §3.5.13
        DeleteOnNoLinksOrMessages(DeleteOnNoLinksOrMessages),
    }
}
