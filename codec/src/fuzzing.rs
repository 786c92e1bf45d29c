//! The checks run by the cargo-fuzz targets in `codec/fuzz`, kept in the library so that
//! `tests/fuzz_corpus.rs` replays the committed corpora with exactly the same logic.
//!
//! Each check decodes whatever it can from arbitrary bytes. For everything that decodes it
//! asserts that decode → encode → decode gives back an equal value, that re-encoding that value
//! gives the same bytes (the encoding is canonical), and that `encoded_len` is exact.
//! Performatives are written with every field present, so decoded *values* are compared, never
//! the peer's bytes with ours.
//!
//! Input layouts:
//! - [`frame`]: one control byte, then a byte stream as read from a socket: protocol headers
//!   and frames. The control byte picks the max-frame-size (bit 7: 512, else 64 KiB) and seeds
//!   the chunk sizes the stream is fed in (bit 6: chunks of 1-8 bytes, else 1-700).
//! - [`value`]: encoded values back to back; the first is also decoded as each typed
//!   composite (performatives, delivery states, sections, ...).
//! - [`message`]: the bytes of a message (its sections, as carried in transfer payloads).

// A failed assertion is how a fuzzer reports a bug, so this module, unlike the rest of the
// crate, panics on purpose; none of it runs on a broker's data path.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use bytes::{Buf, Bytes, BytesMut};

use crate::decode::{Decoder, SymbolRef};
use crate::definitions::{DeliveryTag, Error, ErrorCondition, Fields, MIN_MAX_FRAME_SIZE, Role};
use crate::delivery_state::DeliveryState;
use crate::encode::Encode;
use crate::error::FramingError;
use crate::frames::{
    AmqpFrame, FrameDecoder, FrameType, HEADER_LEN, ProtocolHeader, RawFrame, encode_frame,
    frame_len, max_transfer_payload, take_protocol_header,
};
use crate::limits::DecodeLimits;
use crate::messaging::{
    ApplicationProperties, DeliveryAnnotations, Footer, Header, LifetimePolicy, Message,
    MessageAnnotations, MessageId, Properties, Section, Source, TargetKind, TerminusDurability,
    TerminusExpiryPolicy,
};
use crate::performatives::Performative;
use crate::sasl::{SaslCode, SaslFrameBody};
use crate::transaction::{Declare, Discharge};
use crate::types::{Array, Described, Descriptor, Map, Str, Symbol, Timestamp, Uuid, Value};

/// Small limits for the value target, so that the fuzzer reaches them with short inputs.
const VALUE_LIMITS: DecodeLimits = DecodeLimits {
    max_depth: 8,
    max_elements: 512,
};

/// Limits for decoding our own re-encoding of something decoded under `limits`.
///
/// Canonical re-encoding may cost a little more than the peer's form: a `multiple` field
/// sent as a single symbol comes back as an array, one element and one level deeper.
fn relaxed(limits: DecodeLimits) -> DecodeLimits {
    DecodeLimits {
        max_depth: limits.max_depth + 1,
        max_elements: usize::MAX,
    }
}

/// Encodes `v`, checking that `encoded_len` predicted the size exactly.
fn encode_checked<T: Encode + ?Sized>(v: &T) -> Bytes {
    let mut buf = BytesMut::new();
    v.encode(&mut buf);
    assert_eq!(buf.len(), v.encoded_len(), "encoded_len is not exact");
    buf.freeze()
}

/// Asserts that `$v` (a decoded `$t`) survives encode → decode, and that its encoding is
/// canonical (re-encoding the result gives the same bytes). A macro rather than a generic
/// function so that it also covers types borrowing from their buffer (`Properties<'a>`).
macro_rules! roundtrip {
    ($t:ty, $v:expr, $limits:expr) => {{
        let v = &$v;
        let bytes = encode_checked(v);
        let again = Decoder::decode_exact::<$t>(&bytes, relaxed($limits)).unwrap_or_else(|e| {
            panic!(
                "{} does not decode from its own encoding: {e:?}\nvalue: {v:?}\nbytes: {bytes:02x?}",
                stringify!($t)
            )
        });
        assert_eq!(&again, v, "{} changed in encode -> decode", stringify!($t));
        assert_eq!(
            encode_checked(&again),
            bytes,
            "{} re-encodes differently",
            stringify!($t)
        );
    }};
}

/// Decodes one `$t` from the front of `$bytes` and, if that works, round-trips it.
macro_rules! try_type {
    ($bytes:expr, $limits:expr, $($t:ty),* $(,)?) => {
        $(
            if let Ok(v) = Decoder::with_limits($bytes, $limits).read::<$t>() {
                roundtrip!($t, v, $limits);
            }
        )*
    };
}

/// What a protocol stream was cut into.
#[derive(Debug, PartialEq)]
enum Unit {
    Header(ProtocolHeader),
    Frame(RawFrame),
}

/// Everything read from a stream: the units, the error that stopped it (if any), and how
/// many bytes were left unread.
#[derive(Debug, PartialEq)]
struct Read {
    units: Vec<Unit>,
    error: Option<FramingError>,
    leftover: usize,
}

/// Checks a frame's total size against the limit it was read under.
fn check_frame_size(frame: &RawFrame, size: usize, max: u32) {
    assert!(
        size <= max as usize,
        "frame of {size} bytes passed a max-frame-size of {max}"
    );
    assert!(
        size >= HEADER_LEN,
        "frame of {size} bytes is below the header"
    );
    assert!(
        frame.body.len() <= size - HEADER_LEN,
        "body longer than the frame"
    );
    if frame.frame_type == FrameType::Sasl {
        assert_eq!(frame.channel, 0, "SASL frames carry no channel");
    }
}

/// Takes the next protocol header or frame off a growing read buffer.
///
/// A frame's SIZE never starts with `A` (0x41) under the limits used here (that would be over
/// 1 GiB), so a leading `A` can only be a protocol header.
fn next_unit(dec: &mut FrameDecoder, buf: &mut BytesMut) -> Result<Option<Unit>, FramingError> {
    if buf.first() == Some(&b'A') {
        return take_protocol_header(buf).map(|h| h.map(Unit::Header));
    }
    let before = buf.len();
    let frame = dec.decode(buf)?;
    if let Some(f) = &frame {
        check_frame_size(f, before - buf.len(), dec.max_frame_size());
    }
    Ok(frame.map(Unit::Frame))
}

/// Reads `stream` fed in chunks of the sizes `chunks` yields (the rest at once when it ends).
fn read_chunked(stream: &[u8], max: u32, mut chunks: impl Iterator<Item = usize>) -> Read {
    let mut dec = FrameDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut units = Vec::new();
    let mut rest = stream;
    loop {
        loop {
            match next_unit(&mut dec, &mut buf) {
                Ok(Some(unit)) => units.push(unit),
                Ok(None) => break,
                Err(e) => {
                    return Read {
                        units,
                        error: Some(e),
                        leftover: buf.len() + rest.len(),
                    };
                }
            }
        }
        if rest.is_empty() {
            return Read {
                units,
                error: None,
                leftover: buf.len(),
            };
        }
        let n = chunks.next().unwrap_or(rest.len()).clamp(1, rest.len());
        let (now, later) = rest.split_at(n);
        buf.extend_from_slice(now);
        rest = later;
    }
}

/// Reads all of `stream` at once through [`FrameDecoder::decode_bytes`] (the immutable path).
fn read_bytes(stream: &[u8], max: u32) -> Read {
    let mut dec = FrameDecoder::new(max);
    let mut buf = Bytes::copy_from_slice(stream);
    let mut units = Vec::new();
    loop {
        let next = if buf.first() == Some(&b'A') {
            ProtocolHeader::parse(&buf).map(|h| {
                h.map(|h| {
                    buf.advance(HEADER_LEN);
                    Unit::Header(h)
                })
            })
        } else {
            let before = buf.len();
            dec.decode_bytes(&mut buf).map(|f| {
                f.map(|f| {
                    check_frame_size(&f, before - buf.len(), max);
                    Unit::Frame(f)
                })
            })
        };
        match next {
            Ok(Some(unit)) => units.push(unit),
            Ok(None) => {
                return Read {
                    units,
                    error: None,
                    leftover: buf.len(),
                };
            }
            Err(e) => {
                return Read {
                    units,
                    error: Some(e),
                    leftover: buf.len(),
                };
            }
        }
    }
}

/// Chunk sizes from a seed: a small linear congruential generator, so that the fuzzer can
/// explore how a stream is split by flipping bits of one byte.
fn chunk_sizes(ctrl: u8) -> impl Iterator<Item = usize> {
    let span = if ctrl & 0x40 != 0 { 8 } else { 700 };
    let mut state = u32::from(ctrl) | 0x100;
    std::iter::from_fn(move || {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        Some(1 + (state >> 16) as usize % span)
    })
}

/// Fuzz check for the frame layer: see the module docs for the input layout.
///
/// The stream is read once whole, once in chunks and once through the immutable-buffer path;
/// all three must agree. Every frame must respect the max-frame-size. Frames are then decoded
/// (AMQP or SASL) and round-tripped, and transfer payloads go through [`message`].
pub fn frame(data: &[u8]) {
    let Some((&ctrl, stream)) = data.split_first() else {
        return;
    };
    let max = if ctrl & 0x80 != 0 {
        MIN_MAX_FRAME_SIZE
    } else {
        1 << 16
    };
    let whole = read_chunked(stream, max, std::iter::empty());
    let chunked = read_chunked(stream, max, chunk_sizes(ctrl));
    assert_eq!(whole, chunked, "chunked feeding read a different stream");
    let immutable = read_bytes(stream, max);
    assert_eq!(whole, immutable, "decode_bytes read a different stream");
    for unit in &whole.units {
        match unit {
            Unit::Header(h) => assert_eq!(ProtocolHeader::parse(&h.to_bytes()), Ok(Some(*h))),
            Unit::Frame(raw) => check_raw_frame(raw, max),
        }
    }
}

/// Decodes one frame's body and round-trips whatever decodes.
fn check_raw_frame(raw: &RawFrame, max: u32) {
    let limits = DecodeLimits::DEFAULT;
    match raw.frame_type {
        FrameType::Amqp => {
            if let Ok(frame) = AmqpFrame::decode(raw, limits) {
                check_amqp_frame(&frame, max);
            }
        }
        FrameType::Sasl => {
            if let Ok(body) = SaslFrameBody::decode_frame(raw, limits) {
                roundtrip!(SaslFrameBody, body, limits);
                let mut buf = BytesMut::new();
                encode_frame(&mut buf, FrameType::Sasl, 0, &body, &[], u32::MAX).unwrap();
                let again = FrameDecoder::new(u32::MAX)
                    .decode(&mut buf)
                    .unwrap()
                    .expect("a whole frame");
                assert!(buf.is_empty());
                assert_eq!(
                    SaslFrameBody::decode_frame(&again, relaxed(limits)).as_ref(),
                    Ok(&body)
                );
            }
        }
    }
}

fn check_amqp_frame(frame: &AmqpFrame, max: u32) {
    let limits = DecodeLimits::DEFAULT;
    let Some(performative) = &frame.performative else {
        assert!(frame.payload.is_empty(), "a heartbeat with a payload");
        return;
    };
    roundtrip!(Performative, *performative, limits);
    if !matches!(performative, Performative::Transfer(_)) {
        assert!(frame.payload.is_empty(), "payload after a non-transfer");
    }

    // The whole frame again: header, performative and payload.
    let mut buf = BytesMut::new();
    encode_frame(
        &mut buf,
        FrameType::Amqp,
        frame.channel,
        performative,
        &frame.payload,
        u32::MAX,
    )
    .unwrap();
    assert_eq!(buf.len(), frame_len(performative, frame.payload.len()));
    let raw = FrameDecoder::new(u32::MAX)
        .decode(&mut buf)
        .unwrap()
        .expect("a whole frame");
    assert!(buf.is_empty());
    assert_eq!(
        AmqpFrame::decode(&raw, relaxed(limits)).as_ref(),
        Ok(frame),
        "frame changed in encode -> decode"
    );

    if let Performative::Transfer(transfer) = performative {
        if let Ok(room) = max_transfer_payload(transfer, max) {
            assert_eq!(frame_len(transfer, room), max as usize);
        }
        if !frame.payload.is_empty() {
            message(&frame.payload);
        }
    }
}

/// Fuzz check for the type system and composite types: see the module docs.
///
/// Decodes the input as a sequence of values under small limits, then as each typed
/// composite, and round-trips whatever decodes.
pub fn value(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let mut d = Decoder::with_limits(&bytes, VALUE_LIMITS);
    while !d.is_empty() {
        match d.value() {
            Ok(v) => roundtrip!(Value, v, VALUE_LIMITS),
            Err(_) => break,
        }
    }
    // Skipping checks only framing, so whatever decodes must also skip, to the same end.
    let mut decoded = Decoder::with_limits(&bytes, VALUE_LIMITS);
    if decoded.value().is_ok() {
        let mut skipped = Decoder::with_limits(&bytes, VALUE_LIMITS);
        assert_eq!(
            skipped.skip_value(),
            Ok(()),
            "a value that decodes does not skip"
        );
        assert_eq!(
            skipped.position(),
            decoded.position(),
            "skip ends elsewhere"
        );
    }
    try_type!(
        &bytes,
        VALUE_LIMITS,
        Performative,
        SaslFrameBody,
        DeliveryState,
        Source,
        TargetKind,
        Error,
        LifetimePolicy,
        Declare,
        Discharge,
        Section<'_>,
        Properties<'_>,
        Header,
        MessageId<'_>,
        Fields,
        Map,
        Array,
        Described,
        Descriptor,
        Vec<Symbol>,
        Vec<Value>,
        Str,
        Symbol,
        SymbolRef<'_>,
        &str,
        &[u8],
        Bytes,
        DeliveryTag,
        ErrorCondition,
        Role,
        SaslCode,
        TerminusDurability,
        TerminusExpiryPolicy,
        Timestamp,
        Uuid,
        bool,
        u8,
        u16,
        u32,
        u64,
        i32,
        i64,
    );
}

/// FNV-1a, to derive segment boundaries from the input itself.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `bytes` cut into up to three segments at points derived from its contents.
fn segments_of(bytes: &Bytes) -> Vec<Bytes> {
    let n = bytes.len();
    let h = fnv1a(bytes);
    let mut cuts = [
        (h % (n as u64 + 1)) as usize,
        ((h >> 32) % (n as u64 + 1)) as usize,
    ];
    cuts.sort_unstable();
    let [a, b] = cuts;
    vec![bytes.slice(..a), bytes.slice(a..b), bytes.slice(b..)]
}

/// Fuzz check for messages: see the module docs.
///
/// Indexes the message whole and in segments (the two must agree, down to the error), decodes
/// every section both ways and round-trips each, then rebuilds the message from its decoded
/// sections and re-annotates it, checking nothing in the bare message changes.
pub fn message(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let whole = Message::decode(bytes.clone());
    let split = Message::from_segments(segments_of(&bytes));
    match (whole, split) {
        (Err(a), Err(b)) => assert_eq!(a, b, "segmented indexing failed differently"),
        (Ok(a), Ok(b)) => check_message(&a, &b, &bytes),
        (a, b) => panic!("whole and segmented indexing disagree: {a:?} vs {b:?}"),
    }
}

fn concat(parts: &[Bytes]) -> Vec<u8> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

fn check_message(a: &Message, b: &Message, data: &Bytes) {
    let limits = DecodeLimits::DEFAULT;
    let len = data.len();
    assert_eq!(a.len(), len);
    assert_eq!(b.len(), len);
    assert_eq!(a.index(), b.index(), "segmented index differs");
    assert_eq!(a.to_contiguous(), data);
    assert_eq!(b.to_contiguous(), data);
    let index = a.index();
    let spans = [
        index.header,
        index.delivery_annotations,
        index.message_annotations,
        index.properties,
        index.application_properties,
        index.body,
        index.footer,
    ];
    let mut last_end = 0;
    for span in spans.into_iter().flatten() {
        assert!(last_end <= span.start && span.start < span.end && span.end <= len);
        last_end = span.end;
    }
    let bare = &data[index.bare_start(len)..index.bare_end(len)];
    assert_eq!(concat(&a.bare()), bare);
    assert_eq!(concat(&b.bare()), bare);

    let header = a.header();
    let properties = a.properties();
    let delivery_annotations = a.delivery_annotations();
    let message_annotations = a.message_annotations();
    let application_properties = a.application_properties();
    let body = a.body_sections();
    let footer = a.footer();
    assert_eq!(header, b.header());
    assert_eq!(properties, b.properties());
    assert_eq!(delivery_annotations, b.delivery_annotations());
    assert_eq!(message_annotations, b.message_annotations());
    assert_eq!(application_properties, b.application_properties());
    assert_eq!(body, b.body_sections());
    assert_eq!(footer, b.footer());

    if let Ok(h) = &header {
        roundtrip!(Header, *h, limits);
    }
    if let Ok(Some(p)) = &properties {
        roundtrip!(Properties<'_>, *p, limits);
    }
    if let Ok(Some(m)) = &delivery_annotations {
        roundtrip!(DeliveryAnnotations, DeliveryAnnotations(m.clone()), limits);
    }
    if let Ok(Some(m)) = &message_annotations {
        roundtrip!(MessageAnnotations, MessageAnnotations(m.clone()), limits);
    }
    if let Ok(Some(m)) = &application_properties {
        roundtrip!(
            ApplicationProperties,
            ApplicationProperties(m.clone()),
            limits
        );
    }
    if let Ok(sections) = &body {
        assert_eq!(sections.len(), index.body_sections as usize);
        for s in sections {
            roundtrip!(Section<'_>, *s, limits);
        }
    }
    if let Ok(Some(m)) = &footer {
        roundtrip!(Footer, Footer(m.clone()), limits);
    }

    let (
        Ok(header),
        Ok(properties),
        Ok(delivery_annotations),
        Ok(message_annotations),
        Ok(application_properties),
        Ok(body),
        Ok(footer),
    ) = (
        header,
        properties,
        delivery_annotations,
        message_annotations,
        application_properties,
        body,
        footer,
    )
    else {
        return;
    };

    // Rebuilt from its decoded sections, the message must read back the same.
    let mut sections: Vec<Section<'_>> = Vec::new();
    if index.header.is_some() {
        sections.push(Section::Header(header.clone()));
    }
    let da = delivery_annotations.map(DeliveryAnnotations);
    let ma = message_annotations.map(MessageAnnotations);
    sections.extend(da.clone().map(Section::DeliveryAnnotations));
    sections.extend(ma.clone().map(Section::MessageAnnotations));
    sections.extend(properties.clone().map(Section::Properties));
    sections.extend(
        application_properties
            .clone()
            .map(|m| Section::ApplicationProperties(ApplicationProperties(m))),
    );
    sections.extend(body.iter().cloned());
    sections.extend(footer.clone().map(|m| Section::Footer(Footer(m))));
    let rebuilt = Message::from_sections(&sections)
        .unwrap_or_else(|e| panic!("rebuilt message does not index: {e:?}"));
    let ri = rebuilt.index();
    assert_eq!(ri.body_kind, index.body_kind);
    assert_eq!(ri.body_sections, index.body_sections);
    assert_eq!(rebuilt.header().as_ref(), Ok(&header));
    assert_eq!(rebuilt.properties(), Ok(properties.clone()));
    assert_eq!(rebuilt.delivery_annotations(), Ok(da.clone().map(|m| m.0)));
    assert_eq!(rebuilt.message_annotations(), Ok(ma.clone().map(|m| m.0)));
    assert_eq!(
        rebuilt.application_properties(),
        Ok(application_properties.clone())
    );
    assert_eq!(rebuilt.body_sections().as_ref(), Ok(&body));
    assert_eq!(rebuilt.footer(), Ok(footer.clone()));

    // Re-annotated, the bare message and footer are untouched.
    let re = a
        .reannotate(Some(&header), da.as_ref(), ma.as_ref())
        .unwrap_or_else(|e| panic!("re-annotated message does not index: {e:?}"));
    assert_eq!(concat(&re.bare()), bare);
    assert_eq!(re.header().as_ref(), Ok(&header));
    assert_eq!(re.properties(), Ok(properties));
    assert_eq!(re.delivery_annotations(), Ok(da.map(|m| m.0)));
    assert_eq!(re.message_annotations(), Ok(ma.map(|m| m.0)));
    assert_eq!(re.application_properties(), Ok(application_properties));
    assert_eq!(re.body_sections(), Ok(body));
    assert_eq!(re.footer(), Ok(footer));
}
