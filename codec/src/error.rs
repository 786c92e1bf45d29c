//! The codec's errors, each mapped to the AMQP error condition a broker sends for it.
//!
//! Three layers, three types:
//! - [`FramingError`]: the 8-byte frame header or protocol header is wrong. The byte stream
//!   can no longer be trusted, so the connection closes with `amqp:connection:framing-error`.
//! - [`DecodeError`]: a frame arrived whole but its body does not decode. Reported as
//!   `amqp:decode-error` (or `amqp:invalid-field` for a missing mandatory field).
//! - [`EncodeError`]: we cannot write what was asked within the peer's limits
//!   (`amqp:frame-size-too-small`).

use crate::definitions::ErrorCondition;

/// A frame or protocol header that breaks §2.2/§2.3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// SIZE is below the 8-byte frame header.
    #[error("frame size {0} is smaller than the 8-byte frame header")]
    SizeTooSmall(u32),
    /// SIZE exceeds the max-frame-size we advertised.
    #[error("frame size {size} exceeds the negotiated max-frame-size {max}")]
    TooLarge {
        /// SIZE from the header.
        size: u32,
        /// Our advertised limit.
        max: u32,
    },
    /// DOFF is below 2 (the frame header is 2 words).
    #[error("data offset {0} is below the minimum of 2")]
    DataOffsetTooSmall(u8),
    /// 4·DOFF points past the end of the frame.
    #[error("data offset {doff} (x4) exceeds frame size {size}")]
    DataOffsetBeyondFrame {
        /// DOFF from the header.
        doff: u8,
        /// SIZE from the header.
        size: u32,
    },
    /// A frame TYPE other than AMQP (0) or SASL (1).
    #[error("unknown frame type 0x{0:02x}")]
    UnknownFrameType(u8),
    /// The 8 bytes are not an `AMQP` protocol header.
    #[error("not an AMQP protocol header")]
    NotProtocolHeader,
}

/// A frame body (or a value inside one) that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The encoded value ends before its declared or implied length.
    #[error("value is truncated")]
    Truncated,
    /// A byte that is no format code (§1.6).
    #[error("invalid format code 0x{0:02x}")]
    InvalidFormatCode(u8),
    /// A valid format code where another type was required.
    #[error("expected {expected}, found format code 0x{found:02x}")]
    UnexpectedType {
        /// What the field or context requires.
        expected: &'static str,
        /// The format code found.
        found: u8,
    },
    /// A `boolean` (0x56) byte other than 0 or 1.
    #[error("invalid boolean byte 0x{0:02x}")]
    InvalidBoolean(u8),
    /// A `char` that is no Unicode scalar value.
    #[error("invalid char U+{0:X}")]
    InvalidChar(u32),
    /// A `string` that is not UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A `symbol` that is not ASCII.
    #[error("symbol is not ASCII")]
    InvalidSymbol,
    /// A compound whose declared size disagrees with its contents.
    #[error("compound size does not match its contents")]
    SizeMismatch,
    /// A map with an odd number of elements.
    #[error("map has an odd element count {0}")]
    OddMapCount(u32),
    /// An array element constructor that is itself a described constructor, or a format
    /// code that cannot be an array element.
    #[error("invalid array element constructor 0x{0:02x}")]
    InvalidArrayConstructor(u8),
    /// Lists, maps, arrays and described values nest deeper than [`DecodeLimits`] allows.
    ///
    /// [`DecodeLimits`]: crate::DecodeLimits
    #[error("values nest deeper than the limit of {0}")]
    TooDeep(u32),
    /// More elements than [`DecodeLimits`] allows.
    ///
    /// [`DecodeLimits`]: crate::DecodeLimits
    #[error("more than {0} elements")]
    TooManyElements(usize),
    /// A described value whose descriptor is not the one required here.
    #[error("unexpected descriptor for {expected}")]
    UnexpectedDescriptor {
        /// What the context requires.
        expected: &'static str,
    },
    /// A mandatory field is absent or null.
    #[error("{composite}.{field} is mandatory")]
    MissingField {
        /// The composite type.
        composite: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A field holds a value its type forbids (an unknown role, settle mode, section order).
    #[error("invalid {0}")]
    InvalidValue(&'static str),
    /// Bytes left over after a complete value where none may follow.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
}

impl DecodeError {
    /// The condition to report to the peer.
    pub fn condition(&self) -> ErrorCondition {
        match self {
            DecodeError::MissingField { .. } | DecodeError::InvalidValue(_) => {
                ErrorCondition::InvalidField
            }
            _ => ErrorCondition::DecodeError,
        }
    }
}

impl FramingError {
    /// The condition to report to the peer.
    pub fn condition(&self) -> ErrorCondition {
        ErrorCondition::FramingError
    }
}

impl<'a> nom::error::ParseError<&'a [u8]> for DecodeError {
    fn from_error_kind(_input: &'a [u8], _kind: nom::error::ErrorKind) -> Self {
        // Inside a frame every parser is a complete parser: running out of input means the
        // value is truncated, never "wait for more".
        DecodeError::Truncated
    }

    fn append(_input: &'a [u8], _kind: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

/// Something that cannot be written within the peer's limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The frame would exceed the peer's max-frame-size.
    #[error("frame needs {needed} bytes but the peer's max-frame-size is {max}")]
    FrameSizeTooSmall {
        /// Bytes the frame needs.
        needed: usize,
        /// The peer's limit.
        max: u32,
    },
    /// An array item whose type differs from the array's element type.
    #[error("array item does not match the array's element type")]
    ArrayTypeMismatch,
    /// A length that does not fit its 32-bit size field.
    #[error("value too large to encode")]
    TooLarge,
}

impl EncodeError {
    /// The condition to report.
    pub fn condition(&self) -> ErrorCondition {
        match self {
            EncodeError::FrameSizeTooSmall { .. } => ErrorCondition::FrameSizeTooSmall,
            _ => ErrorCondition::InternalError,
        }
    }
}
