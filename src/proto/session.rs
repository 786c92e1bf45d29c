//! Session endpoints (§2.5): channels, transfer windows (§2.5.6) and delivery-ids.
//!
//! Session states (§2.5.5), as far as a peer can observe them here:
//!
//! ```text
//!   UNMAPPED --begin rcvd / begin sent--> BEGIN_RCVD / BEGIN_SENT --other begin--> MAPPED
//!   MAPPED --end sent--> END_SENT --end rcvd--> UNMAPPED
//!   MAPPED --end rcvd--> END_RCVD --end sent--> UNMAPPED
//!   MAPPED --error: end sent--> DISCARDING (ignore all but end) --end rcvd--> UNMAPPED
//! ```

use std::collections::{BTreeMap, VecDeque};

use crate::idhash::IdMap;

use ferry_codec::definitions::{DeliveryTag, SequenceNo};
use ferry_codec::messaging::Message;

use crate::proto::LinkId;

/// §2.5.5 session states (UNMAPPED sessions are simply absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionState {
    /// We sent begin and wait for the peer's.
    BeginSent,
    /// Both begins exchanged.
    Mapped,
    /// We sent end and wait for the peer's.
    EndSent,
    /// We ended with an error: ignore all input but end.
    Discarding,
}

/// A message waiting for window to be framed and written.
#[derive(Debug)]
pub(crate) struct PendingTransfer {
    pub(crate) link: LinkId,
    pub(crate) handle: u32,
    /// The number `send` returned (the wire delivery-id is given at the first frame).
    pub(crate) delivery_id: SequenceNo,
    pub(crate) tag: DeliveryTag,
    pub(crate) settled: bool,
    pub(crate) message: Message,
    /// Bytes of the message already written.
    pub(crate) offset: usize,
}

/// One session endpoint.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) remote_channel: Option<u16>,
    pub(crate) state: SessionState,
    /// §2.5.6: the transfer-id we expect next from the peer.
    pub(crate) next_incoming_id: SequenceNo,
    /// Our incoming window: transfers the peer may still send.
    pub(crate) incoming_window: u32,
    /// Our next outgoing transfer-id.
    pub(crate) next_outgoing_id: SequenceNo,
    /// How many more transfers the peer will take from us.
    pub(crate) remote_incoming_window: u32,
    /// The peer's outgoing window (informational).
    pub(crate) remote_outgoing_window: u32,
    /// The highest handle the peer accepts.
    pub(crate) remote_handle_max: u32,
    /// Our next outgoing delivery number, as `send` returns it (one per delivery).
    pub(crate) next_delivery_id: SequenceNo,
    /// Our next delivery-id on the wire, given when a delivery's first frame is written: a
    /// delivery dropped before that (its link detached) leaves no gap, as peers require
    /// consecutive ids (Proton ends the session on a "sequencing error"). It equals the
    /// number `send` returned until such a drop.
    pub(crate) next_wire_delivery_id: SequenceNo,
    /// The delivery-id the peer should use next (gaps are tolerated; order is not checked).
    pub(crate) expected_delivery_id: Option<SequenceNo>,
    /// Links by the peer's handle.
    /// Keys are the peer's handles, bounded by our handle-max (enforced on attach), so the
    /// fast hasher's worst case stays bounded.
    pub(crate) remote_handles: IdMap<u32, LinkId>,
    /// Links by our handle.
    pub(crate) local_handles: BTreeMap<u32, LinkId>,
    /// Our unsettled outgoing deliveries on the wire: delivery-id to link and the number
    /// `send` returned.
    pub(crate) unsettled_out: BTreeMap<u32, (LinkId, SequenceNo)>,
    /// Incoming deliveries we have not settled: delivery-id to link.
    pub(crate) unsettled_in: BTreeMap<u32, LinkId>,
    /// Deliveries framed but not yet written for lack of window, in order.
    pub(crate) pending: VecDeque<PendingTransfer>,
}

impl Session {
    pub(crate) fn new(incoming_window: u32) -> Self {
        Self {
            remote_channel: None,
            state: SessionState::BeginSent,
            next_incoming_id: SequenceNo(0),
            incoming_window,
            next_outgoing_id: SequenceNo(0),
            remote_incoming_window: 0,
            remote_outgoing_window: 0,
            // Unknown until the peer's begin: until then only handle 0 is safe to use.
            remote_handle_max: 0,
            next_delivery_id: SequenceNo(0),
            next_wire_delivery_id: SequenceNo(0),
            expected_delivery_id: None,
            remote_handles: IdMap::default(),
            local_handles: BTreeMap::new(),
            unsettled_out: BTreeMap::new(),
            unsettled_in: BTreeMap::new(),
            pending: VecDeque::new(),
        }
    }

    /// The lowest handle not in use, up to `max`.
    pub(crate) fn free_local_handle(&self, max: u32) -> Option<u32> {
        let mut candidate = 0u32;
        for &h in self.local_handles.keys() {
            if h != candidate {
                break;
            }
            candidate = candidate.checked_add(1)?;
        }
        (candidate <= max).then_some(candidate)
    }

    /// Delivery-ids in `first..=last` (serial arithmetic) present in `map`.
    pub(crate) fn ids_in_range<V: Copy>(
        map: &BTreeMap<u32, V>,
        first: SequenceNo,
        last: SequenceNo,
    ) -> Vec<(u32, V)> {
        let span = last.distance_from(first);
        if span > 0x7fff_ffff {
            // `last` before `first`: an empty range.
            return Vec::new();
        }
        let (lo, hi) = (first.0, first.0.wrapping_add(span));
        if lo <= hi {
            map.range(lo..=hi).map(|(k, v)| (*k, *v)).collect()
        } else {
            map.range(lo..)
                .chain(map.range(..=hi))
                .map(|(k, v)| (*k, *v))
                .collect()
        }
    }
}
