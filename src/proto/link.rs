//! Link endpoints (§2.6): attach state, credit (§2.6.7) and delivery assembly (§2.6.14).
//!
//! The link state is ours (the spec describes links by their attach/detach exchange only):
//!
//! ```text
//!   peer attaches:  AttachRcvd --accept--> Attached --detach--> (gone)
//!                             \--refuse--> (attach reply with null terminus, detach closed)
//!   we attach:      AttachSent --peer's attach--> Attached
//!   either side:    Attached --we detach--> DetachSent --peer's detach--> (gone)
//!                   Attached --peer detaches--> we answer --> (gone)
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use ferry_codec::definitions::{
    DeliveryTag, Fields, ReceiverSettleMode, Role, SenderSettleMode, SequenceNo,
};
use ferry_codec::delivery_state::DeliveryState;
use ferry_codec::messaging::{Source, TargetKind};
use ferry_codec::types::{Str, Symbol};

use crate::proto::LinkId;

/// Where a link is in its attach/detach exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkState {
    /// The peer attached; the application has not answered yet.
    AttachRcvd,
    /// We attached; the peer has not answered yet.
    AttachSent,
    /// Both attaches exchanged.
    Attached,
    /// We sent detach and wait for the peer's.
    DetachSent,
}

/// How the application answers a peer's attach.
#[derive(Debug, Clone, Default)]
pub struct AttachReply {
    /// The source to echo (with a dynamic address filled in, filters that were applied).
    pub source: Option<Source>,
    /// The target to echo.
    pub target: Option<TargetKind>,
    /// Our max-message-size for this link (receiving links: enforced on input).
    pub max_message_size: Option<u64>,
    /// Link properties.
    pub properties: Option<Fields>,
    /// Capabilities we offer on this link.
    pub offered_capabilities: Vec<Symbol>,
}

/// What the application attaches (client role, or a server-initiated link).
#[derive(Debug, Clone, Default)]
pub struct LinkSpec {
    /// The link name.
    pub name: Str,
    /// Our role on the link.
    pub role: Role,
    /// The source.
    pub source: Option<Source>,
    /// The target.
    pub target: Option<TargetKind>,
    /// Sender settle mode we ask for.
    pub snd_settle_mode: SenderSettleMode,
    /// Receiver settle mode we ask for.
    pub rcv_settle_mode: ReceiverSettleMode,
    /// Our max-message-size.
    pub max_message_size: Option<u64>,
    /// Link properties.
    pub properties: Option<Fields>,
}

/// A delivery being received frame by frame.
#[derive(Debug)]
pub(crate) struct Partial {
    pub(crate) delivery_id: SequenceNo,
    pub(crate) tag: DeliveryTag,
    pub(crate) message_format: u32,
    pub(crate) settled: bool,
    pub(crate) state: Option<DeliveryState>,
    /// The first frame's payload: most deliveries are one frame and need no list.
    pub(crate) first: Bytes,
    /// Later frames' payloads.
    pub(crate) segments: Vec<Bytes>,
    pub(crate) size: u64,
}

/// One link endpoint.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) id: LinkId,
    /// Local channel of the session.
    pub(crate) channel: u16,
    pub(crate) name: Str,
    /// Our role.
    pub(crate) role: Role,
    pub(crate) state: LinkState,
    pub(crate) local_handle: u32,
    pub(crate) remote_handle: Option<u32>,
    pub(crate) snd_settle_mode: SenderSettleMode,
    pub(crate) rcv_settle_mode: ReceiverSettleMode,
    /// The peer's limit on what we send.
    pub(crate) remote_max_message_size: Option<u64>,
    /// Our limit on what we receive.
    pub(crate) local_max_message_size: u64,
    /// §2.6.7: the sender's delivery-count as we know it.
    pub(crate) delivery_count: SequenceNo,
    /// Credit: for a sender, what the peer granted; for a receiver, what we granted.
    pub(crate) link_credit: u32,
    /// Receiver: transfers accepted beyond granted credit (see `over_credit_allowance`).
    pub(crate) over_credit: u32,
    /// Sender: messages we have available (reported in flows).
    pub(crate) available: u32,
    /// Sender: the peer asked to drain.
    pub(crate) drain: bool,
    /// Receiver: the delivery in progress.
    pub(crate) partial: Option<Partial>,
    /// Receiver: an aborted or refused delivery whose remaining frames are being skipped.
    pub(crate) skipping: bool,
    /// Sender: counter behind our 16-byte delivery tags.
    pub(crate) next_tag: u64,
    /// Prepared tags not handed out yet.
    pub(crate) tag_pool: Bytes,
}

/// Delivery tags prepared per allocation.
const TAG_BATCH: u64 = 256;

impl Link {
    /// An 8-byte delivery tag unique on this link (tags are link-scoped, §2.6.12): a counter.
    /// Tags are cut from a buffer prepared for [`TAG_BATCH`] of them, so a message costs no
    /// allocation for its tag.
    pub(crate) fn next_delivery_tag(&mut self) -> DeliveryTag {
        if self.tag_pool.is_empty() {
            let mut buf = BytesMut::with_capacity(8 * TAG_BATCH as usize);
            for i in 0..TAG_BATCH {
                buf.put_u64(self.next_tag.wrapping_add(i));
            }
            self.tag_pool = buf.freeze();
        }
        let tag = self.tag_pool.split_to(8.min(self.tag_pool.len()));
        self.next_tag = self.next_tag.wrapping_add(1);
        DeliveryTag::new(tag).unwrap_or_default()
    }
}
