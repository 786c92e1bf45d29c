//! Transport definitions (§2.8): roles, settle modes, sequence numbers, delivery tags, fields,
//! and the error type with its full condition catalogue (§2.8.14-§2.8.18, §4.5.7).

use bytes::{Bytes, BytesMut};
use std::cmp::Ordering;

use crate::composite::composite;
use crate::decode::{Decode, Decoder, Result};
use crate::encode::Encode;
use crate::error::DecodeError;
use crate::types::{Str, Symbol, Value};

/// Lowest max-frame-size a peer may advertise, and the limit before `open` (§2.4.1, §5.3.1).
pub const MIN_MAX_FRAME_SIZE: u32 = 512;
/// The IANA port for AMQP (§2.2).
pub const PORT: u16 = 5672;
/// The IANA port for AMQP over TLS (§5.2).
pub const SECURE_PORT: u16 = 5671;

/// A link endpoint's role (§2.8.1), encoded as a boolean: `false` is sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Role {
    /// The endpoint sends messages.
    #[default]
    Sender,
    /// The endpoint receives messages.
    Receiver,
}

impl<'a> Decode<'a> for Role {
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        Ok(if bool::decode(d)? {
            Role::Receiver
        } else {
            Role::Sender
        })
    }
}

impl Encode for Role {
    fn encoded_len(&self) -> usize {
        1
    }
    fn encode(&self, buf: &mut BytesMut) {
        (*self == Role::Receiver).encode(buf)
    }
}

/// An enum carried as a `ubyte` (settle modes, SASL codes).
macro_rules! ubyte_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vm:meta])* $variant:ident = $v:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum $name {
            $($(#[$vm])* $variant,)*
        }

        impl $name {
            /// The wire value.
            pub fn as_u8(self) -> u8 {
                match self {
                    $($name::$variant => $v,)*
                }
            }
        }

        impl TryFrom<u8> for $name {
            type Error = $crate::DecodeError;
            fn try_from(v: u8) -> ::std::result::Result<Self, $crate::DecodeError> {
                match v {
                    $($v => Ok($name::$variant),)*
                    _ => Err($crate::DecodeError::InvalidValue($what)),
                }
            }
        }

        impl<'a> $crate::decode::Decode<'a> for $name {
            fn decode(d: &mut $crate::decode::Decoder<'a>) -> $crate::decode::Result<Self> {
                <u8 as $crate::decode::Decode>::decode(d)?.try_into()
            }
        }

        impl $crate::encode::Encode for $name {
            fn encoded_len(&self) -> usize {
                2
            }
            fn encode(&self, buf: &mut ::bytes::BytesMut) {
                $crate::encode::Encode::encode(&self.as_u8(), buf)
            }
        }
    };
}

pub(crate) use ubyte_enum;

ubyte_enum!(
    /// Settlement policy for a sender (§2.8.2).
    SenderSettleMode, "sender-settle-mode", {
        /// Deliveries are sent unsettled.
        Unsettled = 0,
        /// Deliveries are sent settled.
        Settled = 1,
        /// Either, per delivery.
        #[default]
        Mixed = 2,
    }
);

ubyte_enum!(
    /// Settlement policy for a receiver (§2.8.3).
    ReceiverSettleMode, "receiver-settle-mode", {
        /// The receiver settles first.
        #[default]
        First = 0,
        /// The receiver settles only after the sender has.
        Second = 1,
    }
);

/// A link handle (§2.8.4).
pub type Handle = u32;

/// Milliseconds (§2.8.8).
pub type Milliseconds = u32;

/// A 32-bit sequence number compared with RFC-1982 serial number arithmetic (§2.8.9).
///
/// Ordering is partial: two numbers exactly 2^31 apart are incomparable, and `partial_cmp`
/// says so with `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SequenceNo(pub u32);

impl SequenceNo {
    /// `self + n`, wrapping.
    pub fn wrapping_add(self, n: u32) -> Self {
        SequenceNo(self.0.wrapping_add(n))
    }

    /// The next number.
    pub fn next(self) -> Self {
        self.wrapping_add(1)
    }

    /// How far `self` is ahead of `earlier` (wrapping); meaningful when `earlier <= self`.
    pub fn distance_from(self, earlier: SequenceNo) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }
}

impl PartialOrd for SequenceNo {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        let diff = other.0.wrapping_sub(self.0);
        match diff {
            0 => Some(Ordering::Equal),
            0x8000_0000 => None,
            d if d < 0x8000_0000 => Some(Ordering::Less),
            _ => Some(Ordering::Greater),
        }
    }
}

impl From<u32> for SequenceNo {
    fn from(v: u32) -> Self {
        SequenceNo(v)
    }
}

impl<'a> Decode<'a> for SequenceNo {
    #[inline]
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        u32::decode(d).map(SequenceNo)
    }
}

impl Encode for SequenceNo {
    #[inline]
    fn encoded_len(&self) -> usize {
        self.0.encoded_len()
    }
    #[inline]
    fn encode(&self, buf: &mut BytesMut) {
        self.0.encode(buf)
    }
}

/// Delivery-id (§2.8.10).
pub type DeliveryNumber = SequenceNo;
/// Transfer-id (§2.8.11).
pub type TransferNumber = SequenceNo;

/// Longest delivery tag a peer may send (§2.8.7).
pub const MAX_DELIVERY_TAG_LEN: usize = 32;

/// A delivery tag (§2.8.7): up to 32 bytes, a slice of the frame it arrived in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DeliveryTag(Bytes);

impl DeliveryTag {
    /// A tag from `bytes`; `None` if longer than 32 bytes.
    pub fn new(bytes: Bytes) -> Option<Self> {
        (bytes.len() <= MAX_DELIVERY_TAG_LEN).then_some(Self(bytes))
    }

    /// The tag bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl<'a> Decode<'a> for DeliveryTag {
    #[inline]
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        DeliveryTag::new(Bytes::decode(d)?).ok_or(DecodeError::InvalidValue("delivery-tag"))
    }
}

impl Encode for DeliveryTag {
    #[inline]
    fn encoded_len(&self) -> usize {
        self.0.encoded_len()
    }
    #[inline]
    fn encode(&self, buf: &mut BytesMut) {
        self.0.encode(buf)
    }
}

/// A `fields` map (§2.8.12): symbol keys, any values, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(pub Vec<(Symbol, Value)>);

impl Fields {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }

    /// Appends a pair.
    pub fn push(&mut self, key: Symbol, value: Value) {
        self.0.push((key, value));
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn body_len(&self) -> usize {
        self.0
            .iter()
            .map(|(k, v)| k.encoded_len() + v.encoded_len())
            .sum()
    }
}

/// Keys must be symbols; ASCII string keys are read as symbols too, because rhea writes the
/// `info` of every error it sends with string keys (see `tests/vectors/quirks.vectors`).
impl<'a> Decode<'a> for Fields {
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        let map = crate::types::Map::decode(d)?;
        map.0
            .into_iter()
            .map(|(k, v)| match k {
                Value::Symbol(s) => Ok((s, v)),
                Value::String(s) => Symbol::try_from_bytes(s.into_bytes())
                    .map(|s| (s, v))
                    .map_err(|_| DecodeError::InvalidValue("fields key (must be a symbol)")),
                _ => Err(DecodeError::InvalidValue("fields key (must be a symbol)")),
            })
            .collect::<Result<Vec<_>>>()
            .map(Fields)
    }
}

impl Encode for Fields {
    fn encoded_len(&self) -> usize {
        let body = self.body_len();
        1 + crate::encode::compound_header_len(body, self.len() * 2) + body
    }
    fn encode(&self, buf: &mut BytesMut) {
        let body = self.body_len();
        crate::encode::put_compound_header(
            buf,
            (crate::codes::MAP8, crate::codes::MAP32),
            body,
            self.len() * 2,
        );
        for (k, v) in &self.0 {
            k.encode(buf);
            v.encode(buf);
        }
    }
}

macro_rules! conditions {
    ($($(#[$m:meta])* $variant:ident = $sym:literal,)*) => {
        /// An error condition (§2.8.15-§2.8.18, §4.5.7); unknown symbols are kept as `Other`.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
        pub enum ErrorCondition {
            #[default]
            $($(#[$m])* $variant,)*
            /// A condition outside the spec's catalogue (vendor conditions included).
            Other(Symbol),
        }

        impl ErrorCondition {
            /// Every condition the spec defines.
            pub const ALL: &'static [ErrorCondition] = &[$(ErrorCondition::$variant,)*];

            /// The condition's symbol.
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCondition::$variant => $sym,)*
                    ErrorCondition::Other(s) => s.as_str(),
                }
            }

            /// The condition named `name`.
            pub fn from_symbol(name: Symbol) -> Self {
                match name.as_str() {
                    $($sym => ErrorCondition::$variant,)*
                    _ => ErrorCondition::Other(name),
                }
            }
        }
    };
}

conditions! {
    /// amqp:internal-error
    InternalError = "amqp:internal-error",
    /// amqp:not-found
    NotFound = "amqp:not-found",
    /// amqp:unauthorized-access
    UnauthorizedAccess = "amqp:unauthorized-access",
    /// amqp:decode-error
    DecodeError = "amqp:decode-error",
    /// amqp:resource-limit-exceeded
    ResourceLimitExceeded = "amqp:resource-limit-exceeded",
    /// amqp:not-allowed
    NotAllowed = "amqp:not-allowed",
    /// amqp:invalid-field
    InvalidField = "amqp:invalid-field",
    /// amqp:not-implemented
    NotImplemented = "amqp:not-implemented",
    /// amqp:resource-locked
    ResourceLocked = "amqp:resource-locked",
    /// amqp:precondition-failed
    PreconditionFailed = "amqp:precondition-failed",
    /// amqp:resource-deleted
    ResourceDeleted = "amqp:resource-deleted",
    /// amqp:illegal-state
    IllegalState = "amqp:illegal-state",
    /// amqp:frame-size-too-small
    FrameSizeTooSmall = "amqp:frame-size-too-small",
    /// amqp:connection:forced
    ConnectionForced = "amqp:connection:forced",
    /// amqp:connection:framing-error
    FramingError = "amqp:connection:framing-error",
    /// amqp:connection:redirect
    ConnectionRedirect = "amqp:connection:redirect",
    /// amqp:session:window-violation
    WindowViolation = "amqp:session:window-violation",
    /// amqp:session:errant-link
    ErrantLink = "amqp:session:errant-link",
    /// amqp:session:handle-in-use
    HandleInUse = "amqp:session:handle-in-use",
    /// amqp:session:unattached-handle
    UnattachedHandle = "amqp:session:unattached-handle",
    /// amqp:link:detach-forced
    DetachForced = "amqp:link:detach-forced",
    /// amqp:link:transfer-limit-exceeded
    TransferLimitExceeded = "amqp:link:transfer-limit-exceeded",
    /// amqp:link:message-size-exceeded
    MessageSizeExceeded = "amqp:link:message-size-exceeded",
    /// amqp:link:redirect
    LinkRedirect = "amqp:link:redirect",
    /// amqp:link:stolen
    Stolen = "amqp:link:stolen",
    /// amqp:transaction:unknown-id
    TransactionUnknownId = "amqp:transaction:unknown-id",
    /// amqp:transaction:rollback
    TransactionRollback = "amqp:transaction:rollback",
    /// amqp:transaction:timeout
    TransactionTimeout = "amqp:transaction:timeout",
}

impl std::fmt::Display for ErrorCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'a> Decode<'a> for ErrorCondition {
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        Symbol::decode(d).map(ErrorCondition::from_symbol)
    }
}

impl Encode for ErrorCondition {
    fn encoded_len(&self) -> usize {
        crate::decode::SymbolRef(self.as_str()).encoded_len()
    }
    fn encode(&self, buf: &mut BytesMut) {
        crate::decode::SymbolRef(self.as_str()).encode(buf)
    }
}

composite! {
    /// Details of an error (§2.8.14).
    full struct Error = 0x1d, "amqp:error:list" {
        /// What went wrong.
        req condition: ErrorCondition,
        /// Text for people.
        opt description: Str,
        /// Machine-readable detail.
        opt info: Fields,
    }
}

impl Error {
    /// An error with a condition and a description.
    pub fn new(condition: ErrorCondition, description: impl Into<Str>) -> Self {
        Error {
            condition,
            description: Some(description.into()),
            info: None,
        }
    }
}
