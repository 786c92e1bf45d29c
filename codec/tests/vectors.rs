//! Byte vectors recorded from two real AMQP 1.0 implementations (Debian's python3-qpid-proton
//! and rhea), see `vectors/README.md`. Every vector must decode; values, sections, delivery
//! states and messages must re-encode byte for byte unless `vectors/noncanonical.txt` names
//! them with the reason; performatives and SASL bodies are compared after decoding, because
//! Ferry always writes every field and the recorded peers elide trailing nulls.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use bytes::{Bytes, BytesMut};
use ferry_codec::delivery_state::DeliveryState;
use ferry_codec::frames::{AmqpFrame, FrameDecoder, FrameType, ProtocolHeader, encode_frame};
use ferry_codec::messaging::{Message, Section};
use ferry_codec::sasl::SaslFrameBody;
use ferry_codec::{Decode, DecodeLimits, Decoder, Encode, Value};

struct Vector {
    file: &'static str,
    kind: String,
    name: String,
    bytes: Bytes,
}

fn load(file: &'static str) -> Vec<Vector> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "{file}:{}: expected KIND NAME HEX", n + 1);
        out.push(Vector {
            file,
            kind: fields[0].to_string(),
            name: fields[1].to_string(),
            bytes: Bytes::from(hex(fields[2])),
        });
    }
    out
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `file:name` of every vector allowed not to re-encode identically, with the reason.
fn noncanonical() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/noncanonical.txt");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (key, reason) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            assert!(!reason.trim().is_empty(), "{key}: a reason is required");
            (key.to_string(), reason.trim().to_string())
        })
        .collect()
}

fn all_vectors() -> Vec<Vector> {
    let mut v = load("proton.vectors");
    v.extend(load("rhea.vectors"));
    v
}

fn reencode_sections(bytes: &Bytes) -> Bytes {
    let mut d = Decoder::new(bytes);
    let mut out = BytesMut::new();
    while !d.is_empty() {
        Section::decode(&mut d).unwrap().encode(&mut out);
    }
    out.freeze()
}

#[test]
fn every_vector_decodes_and_reencodes() {
    let vectors = all_vectors();
    let allowed = noncanonical();
    let mut differing = BTreeSet::new();
    let mut identical = 0usize;
    let mut performatives = BTreeSet::new();
    let mut sasl = BTreeSet::new();
    let mut states = BTreeSet::new();
    let limits = DecodeLimits::DEFAULT;

    for v in &vectors {
        let key = format!("{}:{}", v.file, v.name);
        let reencoded: Option<Bytes> = match v.kind.as_str() {
            "value" => {
                let value: Value = Decoder::decode_exact(&v.bytes, limits)
                    .unwrap_or_else(|e| panic!("{key}: {e}"));
                Some(value.to_bytes())
            }
            "section" => {
                let section: Section<'_> = Decoder::decode_exact(&v.bytes, limits)
                    .unwrap_or_else(|e| panic!("{key}: {e}"));
                Some(section.to_bytes())
            }
            "state" => {
                let state: DeliveryState = Decoder::decode_exact(&v.bytes, limits)
                    .unwrap_or_else(|e| panic!("{key}: {e}"));
                states.insert(state.name());
                Some(state.to_bytes())
            }
            "message" => {
                let msg = Message::decode(v.bytes.clone()).unwrap_or_else(|e| panic!("{key}: {e}"));
                msg.header().unwrap();
                msg.properties().unwrap();
                msg.delivery_annotations().unwrap();
                msg.message_annotations().unwrap();
                msg.application_properties().unwrap();
                msg.footer().unwrap();
                msg.body_sections().unwrap();
                Some(reencode_sections(&v.bytes))
            }
            "protocol-header" => {
                let h = ProtocolHeader::parse(&v.bytes).unwrap().unwrap();
                assert!(h.is_v1_0(), "{key}");
                assert_eq!(&h.to_bytes()[..], &v.bytes[..], "{key}");
                None
            }
            "frame" | "sasl-frame" => {
                let mut input = v.bytes.clone();
                let raw = FrameDecoder::new(u32::MAX)
                    .decode_bytes(&mut input)
                    .unwrap_or_else(|e| panic!("{key}: {e}"))
                    .unwrap_or_else(|| panic!("{key}: incomplete frame"));
                assert!(input.is_empty(), "{key}: trailing bytes after the frame");
                if v.kind == "frame" {
                    assert_eq!(raw.frame_type, FrameType::Amqp, "{key}");
                    let frame =
                        AmqpFrame::decode(&raw, limits).unwrap_or_else(|e| panic!("{key}: {e}"));
                    let Some(p) = &frame.performative else {
                        continue;
                    };
                    performatives.insert(p.name());
                    // Re-encode (all fields), decode again: the same performative and payload.
                    let mut buf = BytesMut::new();
                    encode_frame(
                        &mut buf,
                        FrameType::Amqp,
                        frame.channel,
                        p,
                        &frame.payload,
                        u32::MAX,
                    )
                    .unwrap();
                    let mut again = buf.freeze();
                    let raw2 = FrameDecoder::new(u32::MAX)
                        .decode_bytes(&mut again)
                        .unwrap()
                        .unwrap();
                    assert_eq!(AmqpFrame::decode(&raw2, limits).unwrap(), frame, "{key}");
                } else {
                    assert_eq!(raw.frame_type, FrameType::Sasl, "{key}");
                    let body = SaslFrameBody::decode_frame(&raw, limits)
                        .unwrap_or_else(|e| panic!("{key}: {e}"));
                    sasl.insert(format!("{body:?}").split('(').next().unwrap().to_string());
                    let again = body.to_bytes();
                    assert_eq!(
                        Decoder::decode_exact::<SaslFrameBody>(&again, limits).unwrap(),
                        body,
                        "{key}"
                    );
                }
                None
            }
            other => panic!("{key}: unknown kind {other}"),
        };
        if let Some(re) = reencoded {
            if re == v.bytes {
                identical += 1;
            } else {
                differing.insert(key.clone());
                assert!(
                    allowed.contains_key(&key),
                    "{key} re-encodes differently and is not listed in noncanonical.txt\n  original {}\n  ours     {}",
                    hexs(&v.bytes),
                    hexs(&re)
                );
            }
        }
    }

    println!(
        "{identical} vectors re-encode byte for byte, {} differ (listed)",
        differing.len()
    );
    assert!(
        identical > differing.len(),
        "most recorded encodings are canonical"
    );

    // The list of exceptions must stay exact: nothing listed that now round-trips.
    for key in allowed.keys() {
        assert!(
            differing.contains(key),
            "{key} is listed in noncanonical.txt but re-encodes identically"
        );
    }

    for p in [
        "open",
        "begin",
        "attach",
        "flow",
        "transfer",
        "disposition",
        "detach",
        "end",
        "close",
    ] {
        assert!(performatives.contains(p), "no recorded {p} frame");
    }
    for s in ["Mechanisms", "Init", "Outcome"] {
        assert!(sasl.contains(s), "no recorded SASL {s} frame");
    }
    for s in [
        "amqp:accepted:list",
        "amqp:rejected:list",
        "amqp:released:list",
        "amqp:modified:list",
    ] {
        assert!(states.contains(s), "no recorded {s} state");
    }
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Bytes real clients send that break the spec (`vectors/quirks.vectors`). Each is either
/// tolerated on purpose (and then re-encodes to a spec-conformant form that decodes to the
/// same value) or refused on purpose.
#[test]
fn recorded_quirks_are_tolerated_or_refused_on_purpose() {
    let limits = DecodeLimits::DEFAULT;
    let quirks = load("quirks.vectors");
    assert!(quirks.len() >= 7, "quirk vectors missing");
    for v in &quirks {
        let name = v.name.as_str();
        match v.kind.as_str() {
            // rhea writes the footer before the body; §3.2 fixes the order (the footer is
            // outside the bare message), so such a message is refused.
            "message" => {
                assert!(name.contains("footer-before-body"), "{name}");
                let err = Message::decode(v.bytes.clone()).unwrap_err();
                assert_eq!(
                    err,
                    ferry_codec::DecodeError::InvalidValue("message section order")
                );
            }
            // rhea's error info with string keys: read as symbols.
            "value" => {
                let e: ferry_codec::definitions::Error =
                    Decoder::decode_exact(&v.bytes, limits).unwrap();
                let info = e.info.as_ref().expect("info decoded");
                assert!(!info.is_empty(), "{name}");
                let again: ferry_codec::definitions::Error =
                    Decoder::decode_exact(&e.to_bytes(), limits).unwrap();
                assert_eq!(again, e, "{name}");
            }
            "state" => {
                let s: DeliveryState = Decoder::decode_exact(&v.bytes, limits).unwrap();
                let again: DeliveryState = Decoder::decode_exact(&s.to_bytes(), limits).unwrap();
                assert_eq!(again, s, "{name}");
            }
            // proton's capabilities as a list, rhea's error info with string keys.
            "frame" => {
                let mut input = v.bytes.clone();
                let raw = FrameDecoder::new(u32::MAX)
                    .decode_bytes(&mut input)
                    .unwrap()
                    .unwrap();
                let frame =
                    AmqpFrame::decode(&raw, limits).unwrap_or_else(|e| panic!("{name}: {e}"));
                if name.contains("capabilities-list") {
                    let Some(ferry_codec::performatives::Performative::Open(open)) =
                        &frame.performative
                    else {
                        panic!("{name}: expected open")
                    };
                    assert!(!open.offered_capabilities.is_empty(), "{name}");
                    assert!(!open.desired_capabilities.is_empty(), "{name}");
                }
                let p = frame.performative.as_ref().unwrap();
                let mut buf = BytesMut::new();
                encode_frame(
                    &mut buf,
                    FrameType::Amqp,
                    frame.channel,
                    p,
                    &frame.payload,
                    u32::MAX,
                )
                .unwrap();
                let mut again = buf.freeze();
                let raw2 = FrameDecoder::new(u32::MAX)
                    .decode_bytes(&mut again)
                    .unwrap()
                    .unwrap();
                assert_eq!(AmqpFrame::decode(&raw2, limits).unwrap(), frame, "{name}");
            }
            other => panic!("{name}: unexpected quirk kind {other}"),
        }
    }
}
