//! Message sections (§3.2).
//!
//! [`Properties`] borrows its strings from the message buffer: decoding it validates UTF-8 and
//! allocates nothing, which is what routing on `to`, `subject` or `reply-to` needs. Sections
//! that are maps decode into owned [`Map`]s, on demand.

use bytes::Bytes;

use crate::composite::{composite, described_enum, described_newtype};
use crate::decode::{Decode, Decoder, Result, SymbolRef};
use crate::encode::Encode;
use crate::error::DecodeError;
use crate::types::{Map, Timestamp, Uuid, Value};

composite! {
    /// Transport headers (§3.2.1).
    compact struct Header = 0x70, "amqp:header:list" {
        /// Keep the message across broker restarts.
        def durable: bool,
        /// Relative priority; 4 is the default.
        def priority: u8 = 4,
        /// Time to live in milliseconds.
        opt ttl: u32,
        /// Whether no earlier acquirer has seen the message.
        def first_acquirer: bool,
        /// Failed delivery attempts so far.
        def delivery_count: u32,
    }
}

described_newtype! {
    /// Annotations for the next hop only (§3.2.2).
    struct DeliveryAnnotations(Map) = 0x71, "amqp:delivery-annotations:map";
}

described_newtype! {
    /// Annotations for intermediaries (§3.2.3); keys are symbols (or ulongs, reserved).
    struct MessageAnnotations(Map) = 0x72, "amqp:message-annotations:map";
}

/// A message-id or correlation-id (§3.2.4): one of four types, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageId<'a> {
    /// §3.2.8
    Ulong(u64),
    /// §3.2.9
    Uuid(Uuid),
    /// §3.2.10
    Binary(&'a [u8]),
    /// §3.2.11
    String(&'a str),
}

impl<'a> Decode<'a> for MessageId<'a> {
    // Always inlined: returned through memory, the `uuid` variant's byte alignment makes the
    // caller reload the value with loads that straddle the callee's stores (a forwarding stall).
    #[inline(always)]
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        use crate::codes as c;
        match d.peek_u8()? {
            c::ULONG | c::SMALLULONG | c::ULONG0 => u64::decode(d).map(MessageId::Ulong),
            c::UUID => Uuid::decode(d).map(MessageId::Uuid),
            c::VBIN8 | c::VBIN32 => <&[u8]>::decode(d).map(MessageId::Binary),
            c::STR8 | c::STR32 => <&str>::decode(d).map(MessageId::String),
            found => Err(DecodeError::UnexpectedType {
                expected: "message-id",
                found,
            }),
        }
    }
}

impl Encode for MessageId<'_> {
    #[inline]
    fn encoded_len(&self) -> usize {
        match self {
            MessageId::Ulong(v) => v.encoded_len(),
            MessageId::Uuid(v) => v.encoded_len(),
            MessageId::Binary(v) => v.encoded_len(),
            MessageId::String(v) => v.encoded_len(),
        }
    }
    #[inline]
    fn encode(&self, buf: &mut bytes::BytesMut) {
        match self {
            MessageId::Ulong(v) => v.encode(buf),
            MessageId::Uuid(v) => v.encode(buf),
            MessageId::Binary(v) => v.encode(buf),
            MessageId::String(v) => v.encode(buf),
        }
    }
}

impl MessageId<'_> {
    /// The id as an owned [`Value`] (binary and string ids are copied).
    pub fn to_value(&self) -> Value {
        match *self {
            MessageId::Ulong(v) => Value::Ulong(v),
            MessageId::Uuid(v) => Value::Uuid(v),
            MessageId::Binary(b) => Value::Binary(Bytes::copy_from_slice(b)),
            MessageId::String(s) => Value::string(s),
        }
    }
}

composite! {
    /// Immutable properties of the bare message (§3.2.4), borrowed from the message bytes.
    compact struct Properties<'a> = 0x73, "amqp:properties:list" {
        /// Application message identifier.
        opt message_id: MessageId<'a>,
        /// The producing user.
        opt user_id: &'a [u8],
        /// The destination address.
        opt to: &'a str,
        /// The subject (routing key for topic exchanges).
        opt subject: &'a str,
        /// The node to send replies to.
        opt reply_to: &'a str,
        /// The id of the message this one replies to.
        opt correlation_id: MessageId<'a>,
        /// MIME type of the body.
        opt content_type: SymbolRef<'a>,
        /// Content encoding of the body.
        opt content_encoding: SymbolRef<'a>,
        /// When the message expires.
        opt absolute_expiry_time: Timestamp,
        /// When the message was created.
        opt creation_time: Timestamp,
        /// The group the message belongs to.
        opt group_id: &'a str,
        /// Position in the group.
        opt group_sequence: u32,
        /// The group replies should go to.
        opt reply_to_group_id: &'a str,
    }
}

described_newtype! {
    /// Application properties (§3.2.5): string keys, simple values.
    struct ApplicationProperties(Map) = 0x74, "amqp:application-properties:map";
}

described_newtype! {
    /// One opaque binary body section (§3.2.6).
    struct Data(Bytes) = 0x75, "amqp:data:binary";
}

described_newtype! {
    /// One list body section (§3.2.7).
    struct AmqpSequence(Vec<Value>) = 0x76, "amqp:amqp-sequence:list";
}

described_newtype! {
    /// A single-value body (§3.2.8).
    struct AmqpValue(Value) = 0x77, "amqp:amqp-value:*";
}

described_newtype! {
    /// Delivery details computed over the message, such as hashes (§3.2.9).
    struct Footer(Map) = 0x78, "amqp:footer:map";
}

described_enum! {
    /// Any one section.
    enum Section<'a> : "message section" {
        /// §3.2.1
        Header(Header),
        /// §3.2.2
        DeliveryAnnotations(DeliveryAnnotations),
        /// §3.2.3
        MessageAnnotations(MessageAnnotations),
        /// §3.2.4
        Properties(Properties<'a>),
        /// §3.2.5
        ApplicationProperties(ApplicationProperties),
        /// §3.2.6
        Data(Data),
        /// §3.2.7
        AmqpSequence(AmqpSequence),
        /// §3.2.8
        AmqpValue(AmqpValue),
        /// §3.2.9
        Footer(Footer),
    }
}
