//! Protocol headers (§2.2, §5.2.1, §5.3.1) and frames (§2.3).
//!
//! This is the only layer that can say "need more bytes". It checks each header field as soon
//! as the bytes for it have arrived, so a hostile SIZE is refused before anything is buffered
//! for it: SIZE ≥ 8, SIZE ≤ the max-frame-size *we* advertised, DOFF ≥ 2, 4·DOFF ≤ SIZE.
//! Everything inside a frame is then decoded with complete parsers.
//!
//! ```text
//!              +0       +1       +2       +3
//!          +-----------------------------------+  -.
//!        0 |                SIZE               |   |
//!          +-----------------------------------+   |-- frame header (8 bytes)
//!        4 |  DOFF  |  TYPE  | <TYPE-SPECIFIC> |   |
//!          +-----------------------------------+  -'
//!          |          extended header          |  skipped
//!   4*DOFF +-----------------------------------+
//!          |            frame body             |
//!          +-----------------------------------+
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::composite::{DescribedBody, DescribedEnum};
use crate::decode::{Decoder, DescriptorRef};
use crate::encode::Encode;
use crate::error::{DecodeError, EncodeError, FramingError};
use crate::limits::DecodeLimits;
use crate::performatives::{Performative, Transfer};
use crate::sasl::SaslFrameBody;

/// Size of a protocol header and of a frame header.
pub const HEADER_LEN: usize = 8;

/// Protocol id of a protocol header: which layer follows (§2.2, §5.2.1, §5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolId(pub u8);

impl ProtocolId {
    /// Plain AMQP.
    pub const AMQP: ProtocolId = ProtocolId(0);
    /// TLS, negotiated in band (§5.2.1).
    pub const TLS: ProtocolId = ProtocolId(2);
    /// SASL (§5.3.1).
    pub const SASL: ProtocolId = ProtocolId(3);
}

/// An 8-byte protocol header: `AMQP`, protocol id, major, minor, revision (§2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolHeader {
    /// Which layer follows.
    pub id: ProtocolId,
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Revision.
    pub revision: u8,
}

impl ProtocolHeader {
    /// `AMQP 0 1.0.0`
    pub const AMQP: ProtocolHeader = ProtocolHeader::v1_0(ProtocolId::AMQP);
    /// `AMQP 2 1.0.0`
    pub const TLS: ProtocolHeader = ProtocolHeader::v1_0(ProtocolId::TLS);
    /// `AMQP 3 1.0.0`
    pub const SASL: ProtocolHeader = ProtocolHeader::v1_0(ProtocolId::SASL);

    const fn v1_0(id: ProtocolId) -> Self {
        ProtocolHeader {
            id,
            major: 1,
            minor: 0,
            revision: 0,
        }
    }

    /// Whether this is version 1.0.0, the only version this codec speaks.
    pub fn is_v1_0(&self) -> bool {
        (self.major, self.minor, self.revision) == (1, 0, 0)
    }

    /// The 8 bytes.
    pub fn to_bytes(&self) -> [u8; 8] {
        [
            b'A',
            b'M',
            b'Q',
            b'P',
            self.id.0,
            self.major,
            self.minor,
            self.revision,
        ]
    }

    /// Reads a protocol header from the start of `bytes`.
    ///
    /// `Ok(None)` means fewer than 8 bytes so far. A mismatch in the `AMQP` prefix is
    /// reported as soon as the first wrong byte is there, so a peer speaking something else
    /// (HTTP, AMQP 0-9-1 sends `AMQP\0\0\9\1`, which does parse) is answered at once.
    pub fn parse(bytes: &[u8]) -> Result<Option<ProtocolHeader>, FramingError> {
        let prefix_len = bytes.len().min(4);
        if bytes.get(..prefix_len) != b"AMQP".get(..prefix_len) {
            return Err(FramingError::NotProtocolHeader);
        }
        match bytes.get(..HEADER_LEN) {
            Some(&[_, _, _, _, id, major, minor, revision]) => Ok(Some(ProtocolHeader {
                id: ProtocolId(id),
                major,
                minor,
                revision,
            })),
            _ => Ok(None),
        }
    }
}

/// Frame type (§2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// 0x00: an AMQP frame; the type-specific field is the channel.
    Amqp,
    /// 0x01: a SASL frame; the type-specific field is ignored.
    Sasl,
}

impl FrameType {
    fn from_byte(b: u8) -> Result<Self, FramingError> {
        match b {
            0 => Ok(FrameType::Amqp),
            1 => Ok(FrameType::Sasl),
            other => Err(FramingError::UnknownFrameType(other)),
        }
    }

    fn as_byte(self) -> u8 {
        match self {
            FrameType::Amqp => 0,
            FrameType::Sasl => 1,
        }
    }
}

/// One frame, its extended header dropped and its body a slice of the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// AMQP or SASL.
    pub frame_type: FrameType,
    /// The channel (AMQP frames; 0 for SASL).
    pub channel: u16,
    /// The frame body; empty for a heartbeat.
    pub body: Bytes,
}

/// Checks the frame header at the start of `bytes`, as far as it has arrived.
///
/// Returns the frame's (SIZE, DOFF) once all 8 header bytes are there; `None` before.
fn check_header(bytes: &[u8], max_frame_size: u32) -> Result<Option<(usize, usize)>, FramingError> {
    let Some(&[a, b, c, d]) = bytes.get(..4) else {
        return Ok(None);
    };
    let size = u32::from_be_bytes([a, b, c, d]);
    if size < HEADER_LEN as u32 {
        return Err(FramingError::SizeTooSmall(size));
    }
    if size > max_frame_size {
        return Err(FramingError::TooLarge {
            size,
            max: max_frame_size,
        });
    }
    let Some(&doff) = bytes.get(4) else {
        return Ok(None);
    };
    if doff < 2 {
        return Err(FramingError::DataOffsetTooSmall(doff));
    }
    if u32::from(doff) * 4 > size {
        return Err(FramingError::DataOffsetBeyondFrame { doff, size });
    }
    let Some(&ftype) = bytes.get(5) else {
        return Ok(None);
    };
    FrameType::from_byte(ftype)?;
    if bytes.len() < HEADER_LEN {
        return Ok(None);
    }
    Ok(Some((size as usize, usize::from(doff) * 4)))
}

/// Splits a complete frame of `size` bytes (header checked) into a [`RawFrame`].
fn split_frame(mut frame: Bytes, doff_bytes: usize) -> Result<RawFrame, FramingError> {
    let header = frame
        .get(..HEADER_LEN)
        .ok_or(FramingError::SizeTooSmall(0))?;
    let (ftype, channel) = match *header {
        [_, _, _, _, _, t, c0, c1] => (FrameType::from_byte(t)?, u16::from_be_bytes([c0, c1])),
        _ => return Err(FramingError::SizeTooSmall(0)),
    };
    // Advancing the handle we own costs no reference count, unlike taking a slice of it.
    frame.advance(doff_bytes.min(frame.len()));
    Ok(RawFrame {
        frame_type: ftype,
        channel: if ftype == FrameType::Amqp { channel } else { 0 },
        body: frame,
    })
}

/// Cuts frames off a growing read buffer.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_frame_size: u32,
}

impl FrameDecoder {
    /// A decoder that refuses frames larger than `max_frame_size` (what we advertised; 512
    /// before the open exchange and for SASL, §2.4.1, §5.3.1).
    pub fn new(max_frame_size: u32) -> Self {
        Self { max_frame_size }
    }

    /// The limit in force.
    pub fn max_frame_size(&self) -> u32 {
        self.max_frame_size
    }

    /// Changes the limit (after the open exchange).
    pub fn set_max_frame_size(&mut self, max_frame_size: u32) {
        self.max_frame_size = max_frame_size;
    }

    /// Takes the next complete frame off the front of `buf`.
    ///
    /// `Ok(None)`: the frame is not complete yet; `buf` is reserved to hold it.
    /// `Err`: the stream is broken; close with `amqp:connection:framing-error`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RawFrame>, FramingError> {
        let Some((size, doff)) = check_header(buf, self.max_frame_size)? else {
            return Ok(None);
        };
        if buf.len() < size {
            buf.reserve(size - buf.len());
            return Ok(None);
        }
        split_frame(buf.split_to(size).freeze(), doff).map(Some)
    }

    /// Takes the next complete frame off the front of an immutable buffer, advancing it.
    pub fn decode_bytes(&mut self, buf: &mut Bytes) -> Result<Option<RawFrame>, FramingError> {
        let Some((size, doff)) = check_header(buf, self.max_frame_size)? else {
            return Ok(None);
        };
        if buf.len() < size {
            return Ok(None);
        }
        split_frame(buf.split_to(size), doff).map(Some)
    }
}

/// A decoded AMQP frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpFrame {
    /// The channel.
    pub channel: u16,
    /// The performative; `None` for an empty frame (a heartbeat, §2.4.5).
    pub performative: Option<Performative>,
    /// The transfer payload: the bytes after the performative (empty for all others).
    pub payload: Bytes,
}

impl AmqpFrame {
    /// Decodes an AMQP frame's body.
    pub fn decode(raw: &RawFrame, limits: DecodeLimits) -> Result<Self, DecodeError> {
        if raw.body.is_empty() {
            return Ok(AmqpFrame {
                channel: raw.channel,
                performative: None,
                payload: Bytes::new(),
            });
        }
        let mut d = Decoder::with_limits(&raw.body, limits);
        let descriptor = d.descriptor()?;
        // Where the performative ends, from its list's size field, settles the payload and
        // the trailing-bytes check before decoding, so the performative (up to ~200 bytes)
        // can be built straight into the returned frame instead of being copied into it.
        let is_transfer = descriptor.is(Transfer::CODE, Transfer::NAME);
        let end = match d.next_value_len() {
            Ok(n) if is_transfer || d.position() + n == raw.body.len() => d.position() + n,
            _ => return Self::decode_refused(raw, descriptor, &mut d),
        };
        let payload = if is_transfer {
            raw.body.slice(end..)
        } else {
            Bytes::new()
        };
        Performative::decode_after_with(descriptor, &mut d, |p| AmqpFrame {
            channel: raw.channel,
            performative: Some(p),
            payload,
        })
    }

    /// Decodes a frame body the fast path in [`AmqpFrame::decode`] refused (trailing bytes
    /// or a broken performative) step by step, so that it fails with the same error, and in
    /// the same order of checks, as a plain decode.
    #[cold]
    fn decode_refused(
        raw: &RawFrame,
        descriptor: DescriptorRef<'_>,
        d: &mut Decoder<'_>,
    ) -> Result<Self, DecodeError> {
        let performative = Performative::decode_after(descriptor, d)?;
        let consumed = d.position();
        if !matches!(performative, Performative::Transfer(_)) {
            d.finish()?;
        }
        Ok(AmqpFrame {
            channel: raw.channel,
            performative: Some(performative),
            payload: raw.body.slice(consumed..),
        })
    }
}

impl SaslFrameBody {
    /// Decodes a SASL frame's body, which must hold exactly one SASL performative.
    pub fn decode_frame(raw: &RawFrame, limits: DecodeLimits) -> Result<Self, DecodeError> {
        Decoder::decode_exact(&raw.body, limits)
    }
}

/// Bytes an AMQP frame takes: header, performative and payload.
pub fn frame_len(body: &impl Encode, payload_len: usize) -> usize {
    HEADER_LEN + body.encoded_len() + payload_len
}

/// How much transfer payload fits in one frame under `max_frame_size`.
pub fn max_transfer_payload(
    transfer: &Transfer,
    max_frame_size: u32,
) -> Result<usize, EncodeError> {
    let overhead = frame_len(transfer, 0);
    (max_frame_size as usize)
        .checked_sub(overhead)
        .filter(|room| *room > 0)
        .ok_or(EncodeError::FrameSizeTooSmall {
            needed: overhead + 1,
            max: max_frame_size,
        })
}

/// Writes a frame header and `body`, leaving `payload_len` bytes of payload for the caller to
/// append (from the original buffers, with no copy if the caller writes vectored).
pub fn encode_frame_head(
    buf: &mut BytesMut,
    frame_type: FrameType,
    channel: u16,
    body: &impl Encode,
    payload_len: usize,
    max_frame_size: u32,
) -> Result<(), EncodeError> {
    let size = frame_len(body, payload_len);
    if size > max_frame_size as usize {
        return Err(EncodeError::FrameSizeTooSmall {
            needed: size,
            max: max_frame_size,
        });
    }
    buf.reserve(size - payload_len);
    buf.put_u32(size as u32);
    buf.put_u8(2);
    buf.put_u8(frame_type.as_byte());
    buf.put_u16(channel);
    body.encode(buf);
    Ok(())
}

/// Writes a whole frame: header, `body`, and a copy of `payload`.
pub fn encode_frame(
    buf: &mut BytesMut,
    frame_type: FrameType,
    channel: u16,
    body: &impl Encode,
    payload: &[u8],
    max_frame_size: u32,
) -> Result<(), EncodeError> {
    encode_frame_head(
        buf,
        frame_type,
        channel,
        body,
        payload.len(),
        max_frame_size,
    )?;
    buf.put_slice(payload);
    Ok(())
}

/// Writes an empty AMQP frame on channel 0: a heartbeat (§2.4.5).
pub fn encode_heartbeat(buf: &mut BytesMut) {
    buf.put_slice(&[0, 0, 0, 8, 2, 0, 0, 0]);
}

/// Skips the protocol header at the front of `buf` once it is complete.
pub fn take_protocol_header(buf: &mut BytesMut) -> Result<Option<ProtocolHeader>, FramingError> {
    let header = ProtocolHeader::parse(buf)?;
    if header.is_some() {
        buf.advance(HEADER_LEN);
    }
    Ok(header)
}
