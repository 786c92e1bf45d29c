//! The nine AMQP frame bodies (§2.7).
//!
//! All are written with every field present (`full` mode, see the `composite` module): real
//! clients read performative fields by position.

use bytes::Bytes;

use crate::composite::{composite, described_enum};
use crate::definitions::{
    DeliveryTag, Error, Fields, Handle, Milliseconds, ReceiverSettleMode, Role, SenderSettleMode,
    SequenceNo,
};
use crate::delivery_state::DeliveryState;
use crate::messaging::{Source, TargetKind};
use crate::types::{Map, Str, Symbol};

composite! {
    /// Negotiate connection parameters (§2.7.1).
    full struct Open = 0x10, "amqp:open:list" {
        /// The sender's container id.
        req container_id: Str,
        /// The name of the target host.
        opt hostname: Str,
        /// Largest frame the sender will accept.
        def max_frame_size: u32 = u32::MAX,
        /// Highest channel number the sender will accept.
        def channel_max: u16 = u16::MAX,
        /// The sender's idle timeout (§2.4.5).
        opt idle_time_out: Milliseconds,
        /// Locales available for outgoing text.
        def outgoing_locales: Vec<Symbol>,
        /// Desired locales for incoming text.
        def incoming_locales: Vec<Symbol>,
        /// Extensions the sender supports.
        def offered_capabilities: Vec<Symbol>,
        /// Extensions the sender may use if the receiver supports them.
        def desired_capabilities: Vec<Symbol>,
        /// Connection properties.
        opt properties: Fields,
    }
}

composite! {
    /// Begin a session on a channel (§2.7.2).
    full struct Begin = 0x11, "amqp:begin:list" {
        /// The remote channel for a session begun by the peer.
        opt remote_channel: u16,
        /// The transfer-id of the first transfer the sender will send.
        req next_outgoing_id: SequenceNo,
        /// The initial incoming window of the sender.
        req incoming_window: u32,
        /// The initial outgoing window of the sender.
        req outgoing_window: u32,
        /// The highest handle value that may be used on the session.
        def handle_max: Handle = u32::MAX,
        /// Extensions the sender supports.
        def offered_capabilities: Vec<Symbol>,
        /// Extensions the sender may use if the receiver supports them.
        def desired_capabilities: Vec<Symbol>,
        /// Session properties.
        opt properties: Fields,
    }
}

composite! {
    /// Attach a link to a session (§2.7.3).
    full struct Attach = 0x12, "amqp:attach:list" {
        /// The link name.
        req name: Str,
        /// The handle the sender uses for the link.
        req handle: Handle,
        /// The sender's role on the link.
        req role: Role,
        /// Settlement policy for the sender.
        def snd_settle_mode: SenderSettleMode,
        /// Settlement policy for the receiver.
        def rcv_settle_mode: ReceiverSettleMode,
        /// The source for messages.
        opt source: Source,
        /// The target for messages.
        opt target: TargetKind,
        /// Unsettled delivery state: delivery-tag to delivery-state.
        opt unsettled: Map,
        /// Whether `unsettled` is incomplete.
        def incomplete_unsettled: bool,
        /// The sender's initial delivery-count (senders only).
        opt initial_delivery_count: SequenceNo,
        /// The largest message the sender will accept (null: unlimited).
        opt max_message_size: u64,
        /// Extensions the sender supports.
        def offered_capabilities: Vec<Symbol>,
        /// Extensions the sender may use if the receiver supports them.
        def desired_capabilities: Vec<Symbol>,
        /// Link properties.
        opt properties: Fields,
    }
}

composite! {
    /// Update link and session flow state (§2.7.4).
    full struct Flow = 0x13, "amqp:flow:list" {
        /// The next incoming transfer-id expected (null before the peer's begin arrives).
        opt next_incoming_id: SequenceNo,
        /// The sender's incoming window.
        req incoming_window: u32,
        /// The sender's next outgoing transfer-id.
        req next_outgoing_id: SequenceNo,
        /// The sender's outgoing window.
        req outgoing_window: u32,
        /// The link this flow is about (absent: session flow only).
        opt handle: Handle,
        /// The link's delivery-count.
        opt delivery_count: SequenceNo,
        /// The link's credit.
        opt link_credit: u32,
        /// Messages available at the sender.
        opt available: u32,
        /// Drain the credit.
        def drain: bool,
        /// Ask the peer to answer with its own flow state.
        def echo: bool,
        /// Link-state properties.
        opt properties: Fields,
    }
}

composite! {
    /// Transfer a message, or one frame of it (§2.7.5). The payload follows the performative
    /// in the frame body and is carried beside it, see [`crate::frames::AmqpFrame`].
    full struct Transfer = 0x14, "amqp:transfer:list" {
        /// The link.
        req handle: Handle,
        /// The delivery-id (first frame of a delivery).
        opt delivery_id: SequenceNo,
        /// The delivery tag (first frame of a delivery).
        opt delivery_tag: DeliveryTag,
        /// The message format (first frame of a delivery).
        opt message_format: u32,
        /// Whether the sender has settled (null: not said in this frame).
        opt settled: bool,
        /// More frames follow for this delivery.
        def more: bool,
        /// Per-delivery receiver settle mode.
        opt rcv_settle_mode: ReceiverSettleMode,
        /// The delivery's state at the sender.
        opt state: DeliveryState,
        /// A resumed delivery.
        def resume: bool,
        /// The delivery is aborted.
        def aborted: bool,
        /// A hint that the sender is batching.
        def batchable: bool,
    }
}

composite! {
    /// Inform the peer of delivery state changes (§2.7.6).
    full struct Disposition = 0x15, "amqp:disposition:list" {
        /// Which side's deliveries this is about: the sender's own role.
        req role: Role,
        /// The first delivery-id of the range.
        req first: SequenceNo,
        /// The last delivery-id of the range (null: same as `first`).
        opt last: SequenceNo,
        /// The deliveries are settled.
        def settled: bool,
        /// The deliveries' new state.
        opt state: DeliveryState,
        /// A hint that the sender is batching.
        def batchable: bool,
    }
}

composite! {
    /// Detach a link (§2.7.7).
    full struct Detach = 0x16, "amqp:detach:list" {
        /// The link.
        req handle: Handle,
        /// Whether the link is closed, not merely detached.
        def closed: bool,
        /// Why.
        opt error: Error,
    }
}

composite! {
    /// End a session (§2.7.8).
    full struct End = 0x17, "amqp:end:list" {
        /// Why.
        opt error: Error,
    }
}

composite! {
    /// Close the connection (§2.7.9).
    full struct Close = 0x18, "amqp:close:list" {
        /// Why.
        opt error: Error,
    }
}

described_enum! {
    /// Any AMQP frame body.
    enum Performative : "performative" {
        /// §2.7.1
        Open(Open),
        /// §2.7.2
        Begin(Begin),
        /// §2.7.3
        Attach(Box<Attach>),
        /// §2.7.4
        Flow(Flow),
        /// §2.7.5
        Transfer(Transfer),
        /// §2.7.6
        Disposition(Disposition),
        /// §2.7.7
        Detach(Detach),
        /// §2.7.8
        End(End),
        /// §2.7.9
        Close(Close),
    }
}

impl Performative {
    /// The performative's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Performative::Open(_) => "open",
            Performative::Begin(_) => "begin",
            Performative::Attach(_) => "attach",
            Performative::Flow(_) => "flow",
            Performative::Transfer(_) => "transfer",
            Performative::Disposition(_) => "disposition",
            Performative::Detach(_) => "detach",
            Performative::End(_) => "end",
            Performative::Close(_) => "close",
        }
    }
}

/// The transfer payload type: a slice of the frame.
pub type Payload = Bytes;
