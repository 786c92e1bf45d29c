//! Hot-path benchmarks: the frames a broker decodes and encodes for every message.
//!
//! `decode/transfer_1k` is the whole receive path up to routing: cut the frame, decode the
//! transfer, index the message sections, decode header and properties. The encode benchmarks
//! write into one reused buffer, as a connection's write buffer is reused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferry_codec::decode::SymbolRef;
use ferry_codec::definitions::{DeliveryTag, Role, SequenceNo};
use ferry_codec::delivery_state::{Accepted, DeliveryState};
use ferry_codec::frames::{AmqpFrame, FrameDecoder, FrameType, encode_frame_head};
use ferry_codec::messaging::{ApplicationProperties, Data, Header, MessageId, Properties};
use ferry_codec::performatives::{Disposition, Flow, Performative, Transfer};
use ferry_codec::{DecodeError, DecodeLimits, Encode, Map, Message, Timestamp, Value};

/// Size of the whole encoded message (all sections), in bytes.
const MESSAGE_LEN: usize = 1024;
const MAX_FRAME: u32 = 64 * 1024;

fn transfer() -> Transfer {
    Transfer {
        handle: 1,
        delivery_id: Some(SequenceNo(70_312)),
        delivery_tag: DeliveryTag::new(Bytes::from_static(b"\x8a\x1f\x04\x92tag-00070312")),
        message_format: Some(0),
        settled: Some(false),
        ..Transfer::default()
    }
}

fn header() -> Header {
    Header {
        durable: true,
        ttl: Some(30_000),
        ..Header::default()
    }
}

fn properties() -> Properties<'static> {
    Properties {
        message_id: Some(MessageId::String("ID:5f3a9c2e-7b1d-4c8a:1:1:1-42")),
        to: Some("orders.eu-west"),
        subject: Some("order.created"),
        reply_to: Some("replies.client-42"),
        correlation_id: Some(MessageId::String("corr-0001234567")),
        content_type: Some(SymbolRef("application/json")),
        creation_time: Some(Timestamp(1_700_000_000_123)),
        ..Properties::default()
    }
}

fn application_properties() -> ApplicationProperties {
    ApplicationProperties(Map(vec![
        (Value::string("tenant"), Value::string("acme")),
        (Value::string("region"), Value::string("eu-west-1")),
        (Value::string("priority-class"), Value::Int(3)),
        (Value::string("retries"), Value::Uint(0)),
        (
            Value::string("trace-id"),
            Value::string("4bf92f3577b34da6a3ce929d0e0e4736"),
        ),
    ]))
}

/// The message sections, with a `data` body sized so the whole message is `MESSAGE_LEN`.
fn sections() -> (Header, Properties<'static>, ApplicationProperties, Data) {
    let (h, p, a) = (header(), properties(), application_properties());
    let prefix = h.encoded_len() + p.encoded_len() + a.encoded_len();
    // A data section over 255 bytes is descriptor (3) + vbin32 header (5) + body.
    let body_len = MESSAGE_LEN - prefix - 8;
    let body = Data(Bytes::from(vec![0x5a; body_len]));
    (h, p, a, body)
}

/// A complete transfer frame carrying the 1 KiB message.
fn transfer_frame() -> Bytes {
    let (h, p, a, body) = sections();
    let mut msg = BytesMut::new();
    h.encode(&mut msg);
    p.encode(&mut msg);
    a.encode(&mut msg);
    body.encode(&mut msg);
    assert_eq!(msg.len(), MESSAGE_LEN);
    let mut buf = BytesMut::new();
    encode_frame_head(
        &mut buf,
        FrameType::Amqp,
        3,
        &transfer(),
        msg.len(),
        MAX_FRAME,
    )
    .unwrap();
    buf.extend_from_slice(&msg);
    buf.freeze()
}

fn flow() -> Flow {
    Flow {
        next_incoming_id: Some(SequenceNo(70_313)),
        incoming_window: 2048,
        next_outgoing_id: SequenceNo(12),
        outgoing_window: 2048,
        handle: Some(1),
        delivery_count: Some(SequenceNo(70_313)),
        link_credit: Some(500),
        available: Some(0),
        ..Flow::default()
    }
}

fn disposition() -> Disposition {
    Disposition {
        role: Role::Receiver,
        first: SequenceNo(70_312),
        last: Some(SequenceNo(70_319)),
        settled: true,
        state: Some(DeliveryState::Accepted(Accepted {})),
        ..Disposition::default()
    }
}

fn frame_of(body: &impl Encode) -> Bytes {
    let mut buf = BytesMut::new();
    encode_frame_head(&mut buf, FrameType::Amqp, 3, body, 0, MAX_FRAME).unwrap();
    buf.freeze()
}

/// Cuts one frame off `wire` and decodes its performative.
///
/// The results are used where they lie (`as_ref`, `as_mut`) rather than unwrapped into new
/// variables, as a broker's read loop would: moving a ~240-byte frame out of its `Result` is
/// a copy the codec cannot avoid for the caller.
#[inline(always)]
fn decode_frame(decoder: &mut FrameDecoder, wire: &Bytes) -> Result<AmqpFrame, DecodeError> {
    let mut wire = wire.clone();
    let raw = decoder.decode_bytes(&mut wire).unwrap().unwrap();
    AmqpFrame::decode(&raw, DecodeLimits::DEFAULT)
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));

    let wire = transfer_frame();
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    // Check once that the frame is what the benchmark claims before timing it.
    {
        let frame = decode_frame(&mut decoder, &wire).unwrap();
        assert!(matches!(
            frame.performative,
            Some(Performative::Transfer(_))
        ));
        let msg = Message::decode(frame.payload).unwrap();
        assert_eq!(msg.header().unwrap(), header());
        assert_eq!(msg.properties().unwrap().unwrap(), properties());
        assert_eq!(
            msg.application_properties().unwrap().unwrap(),
            application_properties().0
        );
        assert_eq!(msg.index().body_sections, 1);
    }
    g.bench_function("transfer_1k", |b| {
        b.iter(|| {
            let mut frame = decode_frame(&mut decoder, black_box(&wire));
            let frame = frame.as_mut().unwrap();
            let msg = Message::decode(std::mem::take(&mut frame.payload));
            let msg = msg.as_ref().unwrap();
            let header = msg.header();
            let props = msg.properties();
            black_box((
                &frame.performative,
                header.as_ref().unwrap(),
                props.as_ref().unwrap(),
            ));
        })
    });

    for (name, wire) in [
        ("flow", frame_of(&flow())),
        ("disposition", frame_of(&disposition())),
    ] {
        let expected: Performative = match name {
            "flow" => flow().into(),
            _ => disposition().into(),
        };
        let frame = decode_frame(&mut decoder, &wire).unwrap();
        assert_eq!(frame.performative, Some(expected));
        g.bench_function(name, |b| {
            b.iter(|| {
                let frame = decode_frame(&mut decoder, black_box(&wire));
                black_box(frame.as_ref().unwrap());
            })
        });
    }
    g.finish();
}

/// Writes a transfer frame carrying the message made of `h`, `p`, `a` and `body`.
#[inline(always)]
fn encode_transfer(
    buf: &mut BytesMut,
    t: &Transfer,
    h: &Header,
    p: &Properties<'_>,
    a: &ApplicationProperties,
    body: &Data,
) {
    let len = h.encoded_len() + p.encoded_len() + a.encoded_len() + body.encoded_len();
    encode_frame_head(buf, FrameType::Amqp, 3, t, len, MAX_FRAME).unwrap();
    h.encode(buf);
    p.encode(buf);
    a.encode(buf);
    body.encode(buf);
}

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(1));

    let transfer = transfer();
    let (h, p, a, body) = sections();
    let mut buf = BytesMut::with_capacity(4096);
    encode_transfer(&mut buf, &transfer, &h, &p, &a, &body);
    assert_eq!(buf.as_ref(), transfer_frame().as_ref());
    g.bench_function("transfer_1k", |b| {
        b.iter(|| {
            buf.clear();
            let (t, h, p, a, body) = black_box((&transfer, &h, &p, &a, &body));
            encode_transfer(&mut buf, t, h, p, a, body);
            black_box(buf.len());
        })
    });

    let (flow, disposition) = (flow(), disposition());
    g.bench_function("flow", |b| {
        b.iter(|| {
            buf.clear();
            encode_frame_head(&mut buf, FrameType::Amqp, 3, black_box(&flow), 0, MAX_FRAME)
                .unwrap();
            black_box(buf.len());
        })
    });
    g.bench_function("disposition", |b| {
        b.iter(|| {
            buf.clear();
            encode_frame_head(
                &mut buf,
                FrameType::Amqp,
                3,
                black_box(&disposition),
                0,
                MAX_FRAME,
            )
            .unwrap();
            black_box(buf.len());
        })
    });
    g.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
