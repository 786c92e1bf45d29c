//! Hostile and malformed input: every fault is reported with the condition the spec names,
//! at the earliest byte that shows it, and nothing panics or allocates without bound.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::{BufMut, Bytes, BytesMut};
use ferry_codec::definitions::{ErrorCondition, Role};
use ferry_codec::frames::{
    AmqpFrame, FrameDecoder, FrameType, ProtocolHeader, ProtocolId, encode_frame,
    max_transfer_payload,
};
use ferry_codec::performatives::{Attach, Begin, Flow, Performative, Transfer};
use ferry_codec::{
    DecodeError, DecodeLimits, Decoder, Encode, EncodeError, FramingError, Str, Symbol, Value,
};

fn frame_bytes(p: &Performative, payload: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    encode_frame(&mut buf, FrameType::Amqp, 3, p, payload, u32::MAX).unwrap();
    buf
}

#[test]
fn frame_size_below_header_is_refused_after_four_bytes() {
    let mut buf = BytesMut::from(&[0u8, 0, 0, 7][..]);
    assert_eq!(
        FrameDecoder::new(512).decode(&mut buf),
        Err(FramingError::SizeTooSmall(7))
    );
    assert_eq!(
        FramingError::SizeTooSmall(7).condition(),
        ErrorCondition::FramingError
    );
}

#[test]
fn oversized_frame_is_refused_before_buffering() {
    let mut buf = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
    let cap = buf.capacity();
    assert_eq!(
        FrameDecoder::new(512).decode(&mut buf),
        Err(FramingError::TooLarge {
            size: u32::MAX,
            max: 512
        })
    );
    assert_eq!(buf.capacity(), cap, "nothing reserved for a refused frame");
}

#[test]
fn bad_data_offsets_are_refused() {
    let mut buf = BytesMut::from(&[0u8, 0, 0, 8, 1][..]);
    assert_eq!(
        FrameDecoder::new(512).decode(&mut buf),
        Err(FramingError::DataOffsetTooSmall(1))
    );
    let mut buf = BytesMut::from(&[0u8, 0, 0, 16, 5][..]);
    assert_eq!(
        FrameDecoder::new(512).decode(&mut buf),
        Err(FramingError::DataOffsetBeyondFrame { doff: 5, size: 16 })
    );
    let mut buf = BytesMut::from(&[0u8, 0, 0, 8, 2, 7][..]);
    assert_eq!(
        FrameDecoder::new(512).decode(&mut buf),
        Err(FramingError::UnknownFrameType(7))
    );
}

#[test]
fn partial_frames_wait_and_whole_frames_come_out_one_at_a_time() {
    let flow = Performative::Flow(Flow {
        incoming_window: 10,
        outgoing_window: 10,
        ..Default::default()
    });
    let one = frame_bytes(&flow, &[]);
    let mut stream = BytesMut::new();
    stream.extend_from_slice(&one);
    stream.extend_from_slice(&one);
    let mut dec = FrameDecoder::new(512);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for b in stream {
        buf.put_u8(b);
        while let Some(f) = dec.decode(&mut buf).unwrap() {
            frames.push(f);
        }
    }
    assert_eq!(frames.len(), 2);
    assert!(buf.is_empty());
    let decoded = AmqpFrame::decode(&frames[1], DecodeLimits::DEFAULT).unwrap();
    assert_eq!(decoded.channel, 3);
    assert_eq!(decoded.performative, Some(flow));
}

#[test]
fn extended_header_is_skipped() {
    let begin = Performative::Begin(Begin {
        next_outgoing_id: 1.into(),
        incoming_window: 2,
        outgoing_window: 3,
        ..Default::default()
    });
    let body = begin.to_bytes();
    let mut buf = BytesMut::new();
    buf.put_u32((12 + body.len()) as u32);
    buf.put_u8(3); // DOFF 3: 4 bytes of extended header
    buf.put_u8(0);
    buf.put_u16(0);
    buf.put_u32(0xdead_beef);
    buf.extend_from_slice(&body);
    let raw = FrameDecoder::new(512).decode(&mut buf).unwrap().unwrap();
    let frame = AmqpFrame::decode(&raw, DecodeLimits::DEFAULT).unwrap();
    assert_eq!(frame.performative, Some(begin));
}

#[test]
fn empty_frame_is_a_heartbeat() {
    let mut buf = BytesMut::new();
    ferry_codec::frames::encode_heartbeat(&mut buf);
    let raw = FrameDecoder::new(512).decode(&mut buf).unwrap().unwrap();
    let frame = AmqpFrame::decode(&raw, DecodeLimits::DEFAULT).unwrap();
    assert_eq!(frame.performative, None);
}

#[test]
fn truncated_body_inside_a_whole_frame_is_a_decode_error() {
    let flow = Performative::Flow(Flow::default());
    let body = flow.to_bytes();
    let short = &body[..body.len() - 3];
    let mut buf = BytesMut::new();
    buf.put_u32((8 + short.len()) as u32);
    buf.put_slice(&[2, 0, 0, 0]);
    buf.put_slice(short);
    let raw = FrameDecoder::new(512).decode(&mut buf).unwrap().unwrap();
    let err = AmqpFrame::decode(&raw, DecodeLimits::DEFAULT).unwrap_err();
    assert_eq!(err.condition(), ErrorCondition::DecodeError, "{err}");
}

#[test]
fn missing_mandatory_field_is_invalid_field() {
    // attach with only `name`: handle and role are mandatory.
    let bytes = Bytes::from_static(&[0x00, 0x53, 0x12, 0xc0, 0x04, 0x01, 0xa1, 0x01, b'x']);
    let err = Decoder::decode_exact::<Performative>(&bytes, DecodeLimits::DEFAULT).unwrap_err();
    assert_eq!(
        err,
        DecodeError::MissingField {
            composite: "amqp:attach:list",
            field: "handle"
        }
    );
    assert_eq!(err.condition(), ErrorCondition::InvalidField);
}

#[test]
fn non_transfer_with_trailing_payload_is_refused() {
    let flow = Performative::Flow(Flow::default());
    let buf = frame_bytes(&flow, b"junk");
    let raw = FrameDecoder::new(512)
        .decode(&mut buf.clone())
        .unwrap()
        .unwrap();
    assert_eq!(
        AmqpFrame::decode(&raw, DecodeLimits::DEFAULT),
        Err(DecodeError::TrailingBytes(4))
    );
}

#[test]
fn deep_nesting_stops_at_the_limit() {
    // 100 nested list8s, each holding the next.
    let depth = 100;
    let mut bytes = vec![0x45u8];
    for _ in 0..depth {
        let mut outer = vec![0xc0, (bytes.len() + 1) as u8, 1];
        outer.extend_from_slice(&bytes);
        if outer.len() > 250 {
            break;
        }
        bytes = outer;
    }
    let mut deep = vec![0x00u8; 0];
    for _ in 0..depth {
        deep.extend_from_slice(&[0x00, 0x53, 0x01]); // 100 nested described values
    }
    deep.push(0x40);
    let limits = DecodeLimits {
        max_depth: 16,
        ..DecodeLimits::DEFAULT
    };
    let b = Bytes::from(deep);
    assert_eq!(
        Decoder::decode_exact::<Value>(&b, limits),
        Err(DecodeError::TooDeep(16))
    );
    let b = Bytes::from(bytes);
    assert!(matches!(
        Decoder::decode_exact::<Value>(&b, limits),
        Err(DecodeError::TooDeep(16))
    ));
}

#[test]
fn huge_zero_width_array_is_refused_without_allocating() {
    // array32 claiming u32::MAX null elements in 10 bytes.
    let bytes = Bytes::from_static(&[0xf0, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x40]);
    assert_eq!(
        Decoder::decode_exact::<Value>(&bytes, DecodeLimits::DEFAULT),
        Err(DecodeError::TooManyElements(
            DecodeLimits::DEFAULT.max_elements
        ))
    );
}

#[test]
fn element_counts_larger_than_their_bytes_are_refused() {
    let bytes = Bytes::from_static(&[0xc0, 0x02, 0xff, 0x40]);
    assert_eq!(
        Decoder::decode_exact::<Value>(&bytes, DecodeLimits::DEFAULT),
        Err(DecodeError::SizeMismatch)
    );
    let odd_map = Bytes::from_static(&[0xc1, 0x02, 0x01, 0x40]);
    assert_eq!(
        Decoder::decode_exact::<Value>(&odd_map, DecodeLimits::DEFAULT),
        Err(DecodeError::OddMapCount(1))
    );
}

#[test]
fn bad_text_is_refused() {
    let bad_utf8 = Bytes::from_static(&[0xa1, 0x02, 0xc3, 0x28]);
    assert_eq!(
        Decoder::decode_exact::<Value>(&bad_utf8, DecodeLimits::DEFAULT),
        Err(DecodeError::InvalidUtf8)
    );
    let non_ascii_symbol = Bytes::from_static(&[0xa3, 0x02, 0xc3, 0xa9]);
    assert_eq!(
        Decoder::decode_exact::<Value>(&non_ascii_symbol, DecodeLimits::DEFAULT),
        Err(DecodeError::InvalidSymbol)
    );
    let bad_char = Bytes::from_static(&[0x73, 0x00, 0x11, 0x00, 0x00]);
    assert_eq!(
        Decoder::decode_exact::<Value>(&bad_char, DecodeLimits::DEFAULT),
        Err(DecodeError::InvalidChar(0x11_0000))
    );
    let bad_bool = Bytes::from_static(&[0x56, 0x02]);
    assert_eq!(
        Decoder::decode_exact::<Value>(&bad_bool, DecodeLimits::DEFAULT),
        Err(DecodeError::InvalidBoolean(2))
    );
}

#[test]
fn every_truncation_of_a_value_is_an_error_not_a_panic() {
    let v = Value::List(vec![
        Value::string("hello"),
        Value::Ulong(1 << 40),
        Value::Map(
            [(Value::symbol("k"), Value::Binary(Bytes::from_static(b"v")))]
                .into_iter()
                .collect(),
        ),
    ]);
    let full = v.to_bytes();
    for cut in 0..full.len() {
        let part = full.slice(..cut);
        assert!(Decoder::decode_exact::<Value>(&part, DecodeLimits::DEFAULT).is_err());
    }
}

#[test]
fn long_delivery_tag_is_refused() {
    // transfer(handle 0, delivery-id 0, delivery-tag of 33 bytes), written by hand.
    let mut raw = vec![0x00, 0x53, 0x14, 0xc0, 0, 3, 0x43, 0x43, 0xa0, 33];
    raw.extend_from_slice(&[7u8; 33]);
    raw[4] = (raw.len() - 5) as u8;
    let b = Bytes::from(raw);
    assert_eq!(
        Decoder::decode_exact::<Transfer>(&b, DecodeLimits::DEFAULT),
        Err(DecodeError::InvalidValue("delivery-tag"))
    );
}

#[test]
fn protocol_headers_are_sniffed_early() {
    assert_eq!(ProtocolHeader::parse(b"AM"), Ok(None));
    assert_eq!(
        ProtocolHeader::parse(b"HT"),
        Err(FramingError::NotProtocolHeader)
    );
    assert_eq!(
        ProtocolHeader::parse(b"AMQP\x03\x01\x00\x00"),
        Ok(Some(ProtocolHeader::SASL))
    );
    let h = ProtocolHeader::parse(b"AMQP\x00\x00\x09\x01")
        .unwrap()
        .unwrap();
    assert!(!h.is_v1_0(), "AMQP 0-9-1 is recognised as another version");
    assert_eq!(ProtocolHeader::TLS.to_bytes(), *b"AMQP\x02\x01\x00\x00");
    assert_eq!(ProtocolHeader::AMQP.id, ProtocolId::AMQP);
}

#[test]
fn frames_too_big_for_the_peer_are_refused_when_encoding() {
    let attach = Performative::Attach(Box::new(Attach {
        name: Str::from("x".repeat(600)),
        role: Role::Sender,
        ..Default::default()
    }));
    let mut buf = BytesMut::new();
    let err = encode_frame(&mut buf, FrameType::Amqp, 0, &attach, &[], 512).unwrap_err();
    assert!(matches!(
        err,
        EncodeError::FrameSizeTooSmall { max: 512, .. }
    ));
    assert_eq!(err.condition(), ErrorCondition::FrameSizeTooSmall);

    let t = Transfer::default();
    let room = max_transfer_payload(&t, 512).unwrap();
    let mut buf = BytesMut::new();
    encode_frame(
        &mut buf,
        FrameType::Amqp,
        0,
        &Performative::Transfer(t.clone()),
        &vec![0; room],
        512,
    )
    .unwrap();
    assert_eq!(buf.len(), 512);
    assert!(max_transfer_payload(&t, 20).is_err());
}

#[test]
fn condition_catalogue_round_trips() {
    assert_eq!(ErrorCondition::ALL.len(), 28);
    for c in ErrorCondition::ALL {
        let sym = Symbol::try_from(c.as_str()).unwrap();
        assert_eq!(&ErrorCondition::from_symbol(sym), c);
    }
    let vendor = ErrorCondition::from_symbol(Symbol::from_static("com.microsoft:dead-letter"));
    assert_eq!(vendor.as_str(), "com.microsoft:dead-letter");
}

#[test]
fn decoded_text_and_payload_share_the_frame_buffer() {
    let t = Performative::Transfer(Transfer {
        handle: 1,
        delivery_id: Some(7.into()),
        delivery_tag: ferry_codec::definitions::DeliveryTag::new(Bytes::from_static(b"tag-1")),
        ..Default::default()
    });
    let frame = frame_bytes(&t, b"payload bytes").freeze();
    let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    let raw = FrameDecoder::new(u32::MAX)
        .decode_bytes(&mut frame.clone())
        .unwrap()
        .unwrap();
    let decoded = AmqpFrame::decode(&raw, DecodeLimits::DEFAULT).unwrap();
    assert!(range.contains(&(decoded.payload.as_ptr() as usize)));
    let Some(Performative::Transfer(t)) = decoded.performative else {
        panic!()
    };
    let tag = t.delivery_tag.unwrap();
    assert!(range.contains(&(tag.as_bytes().as_ptr() as usize)));
    assert_eq!(&tag.as_bytes()[..], b"tag-1");
}
