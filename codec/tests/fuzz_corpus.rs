//! Replays the committed fuzz corpora (`codec/fuzz/corpus/<target>/`, plus any local
//! `codec/fuzz/artifacts/<target>/`) through the same checks the fuzz targets run, so a
//! regression input found once keeps being tested by `cargo test` without a fuzzer.
//!
//! `FERRY_WRITE_SEEDS=1 cargo test -p ferry-codec --test fuzz_corpus seeds` (re)writes the
//! hand-built `seed-*` files: valid frames, values of every type and messages with every
//! section, the starting points a fuzzer needs to get past the first format code.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use ferry_codec::definitions::{
    DeliveryTag, Error, ErrorCondition, Fields, ReceiverSettleMode, Role, SenderSettleMode,
    SequenceNo,
};
use ferry_codec::delivery_state::{
    Accepted, DeliveryState, Modified, Received, Rejected, Released,
};
use ferry_codec::frames::{
    AmqpFrame, FrameDecoder, FrameType, ProtocolHeader, encode_frame, take_protocol_header,
};
use ferry_codec::messaging::{
    AmqpSequence, AmqpValue, ApplicationProperties, Data, DeleteOnClose, DeliveryAnnotations,
    Footer, Header, LifetimePolicy, MessageAnnotations, MessageId, Properties, Section, Source,
    Target, TargetKind, TerminusDurability, TerminusExpiryPolicy,
};
use ferry_codec::performatives::{
    Attach, Begin, Close, Detach, Disposition, End, Flow, Open, Performative, Transfer,
};
use ferry_codec::sasl::{
    SaslChallenge, SaslCode, SaslFrameBody, SaslInit, SaslMechanisms, SaslOutcome, SaslResponse,
};
use ferry_codec::transaction::{Coordinator, Declare, Declared, Discharge, TransactionalState};
use ferry_codec::types::{Decimal32, Decimal64, Decimal128};
use ferry_codec::{
    Array, DecodeLimits, Decoder, Described, ElemType, Encode, Map, Message, Str, Symbol,
    Timestamp, Uuid, Value, fuzzing,
};

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 3] = [
    ("frame", fuzzing::frame),
    ("value", fuzzing::value),
    ("message", fuzzing::message),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files directly inside `dir`, sorted; none if it does not exist.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `check` on every file, returning the failures (file and panic message).
fn replay(files: &[PathBuf], check: Check) -> Vec<String> {
    let mut failures = Vec::new();
    for file in files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{}: {msg}", file.display()));
        }
    }
    failures
}

#[test]
fn corpora_replay_without_failures() {
    let mut failures = Vec::new();
    for (target, check) in TARGETS {
        let corpus = files_in(&fuzz_dir().join("corpus").join(target));
        assert!(
            !corpus.is_empty(),
            "no corpus files for fuzz target {target}: the replay would prove nothing"
        );
        failures.extend(replay(&corpus, check));
        let artifacts = files_in(&fuzz_dir().join("artifacts").join(target));
        failures.extend(replay(&artifacts, check));
        eprintln!(
            "{target}: replayed {} corpus and {} artifact files",
            corpus.len(),
            artifacts.len()
        );
    }
    assert!(
        failures.is_empty(),
        "fuzz inputs failing:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Seed generation (only with FERRY_WRITE_SEEDS=1).

/// Writes the seeds when asked to; otherwise only checks they are all accepted.
#[test]
fn seeds() {
    let write = std::env::var("FERRY_WRITE_SEEDS").is_ok_and(|v| v == "1");
    for (target, seeds) in [
        ("frame", frame_seeds()),
        ("value", value_seeds()),
        ("message", message_seeds()),
    ] {
        assert!(seeds.len() <= 40, "{target}: keep the seed set small");
        let check = TARGETS.iter().find(|(t, _)| *t == target).unwrap().1;
        for (name, bytes) in &seeds {
            eprintln!("seed {target}/{name}");
            check(bytes);
            assert_seed_decodes(target, bytes);
            if write {
                let dir = fuzz_dir().join("corpus").join(target);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
            }
        }
    }
}

/// A seed that fails to decode only teaches the fuzzer an early error path: every seed must
/// decode completely.
fn assert_seed_decodes(target: &str, bytes: &[u8]) {
    let limits = DecodeLimits::DEFAULT;
    match target {
        "frame" => {
            let mut buf = BytesMut::from(&bytes[1..]);
            let mut frames = FrameDecoder::new(u32::MAX);
            while !buf.is_empty() {
                if buf[0] == b'A' {
                    take_protocol_header(&mut buf).unwrap().unwrap();
                    continue;
                }
                let raw = frames.decode(&mut buf).unwrap().unwrap();
                match raw.frame_type {
                    FrameType::Amqp => drop(AmqpFrame::decode(&raw, limits).unwrap()),
                    FrameType::Sasl => drop(SaslFrameBody::decode_frame(&raw, limits).unwrap()),
                }
            }
        }
        "value" => {
            let bytes = Bytes::copy_from_slice(bytes);
            let mut d = Decoder::with_limits(&bytes, limits);
            while !d.is_empty() {
                d.value().unwrap();
            }
        }
        _ => {
            let m = Message::decode(Bytes::copy_from_slice(bytes)).unwrap();
            m.header().unwrap();
            m.properties().unwrap();
            m.delivery_annotations().unwrap();
            m.message_annotations().unwrap();
            m.application_properties().unwrap();
            m.body_sections().unwrap();
            m.footer().unwrap();
        }
    }
}

fn sym(s: &'static str) -> Symbol {
    Symbol::from_static(s)
}

fn map(pairs: Vec<(Value, Value)>) -> Map {
    Map(pairs)
}

fn props() -> Fields {
    Fields(vec![
        (sym("product"), Value::string("ferry-fuzz")),
        (sym("version"), Value::string("0.1.0")),
    ])
}

fn error() -> Error {
    Error {
        condition: ErrorCondition::ResourceLimitExceeded,
        description: Some(Str::from("too many links")),
        info: Some(Fields(vec![(sym("limit"), Value::Uint(64))])),
    }
}

/// An AMQP frame on `channel` carrying `p` and `payload`.
fn amqp(buf: &mut BytesMut, channel: u16, p: impl Into<Performative>, payload: &[u8]) {
    encode_frame(buf, FrameType::Amqp, channel, &p.into(), payload, u32::MAX).unwrap();
}

fn sasl(buf: &mut BytesMut, body: impl Into<SaslFrameBody>) {
    encode_frame(buf, FrameType::Sasl, 0, &body.into(), &[], u32::MAX).unwrap();
}

/// A frame seed: the control byte, then the stream.
fn frame_seed(ctrl: u8, stream: BytesMut) -> Vec<u8> {
    let mut out = vec![ctrl];
    out.extend_from_slice(&stream);
    out
}

fn open() -> Open {
    Open {
        container_id: Str::from("fuzz-client"),
        hostname: Some(Str::from("localhost")),
        max_frame_size: 65_536,
        channel_max: 255,
        idle_time_out: Some(30_000),
        outgoing_locales: vec![sym("en-US")],
        offered_capabilities: vec![sym("ANONYMOUS-RELAY"), sym("DELAYED_DELIVERY")],
        properties: Some(props()),
        ..Default::default()
    }
}

fn begin() -> Begin {
    Begin {
        remote_channel: Some(0),
        next_outgoing_id: SequenceNo(1),
        incoming_window: 2048,
        outgoing_window: 2048,
        handle_max: 1023,
        ..Default::default()
    }
}

fn source() -> Source {
    Source {
        address: Some(Str::from("queue/orders")),
        durable: TerminusDurability::UnsettledState,
        expiry_policy: TerminusExpiryPolicy::Never,
        timeout: 60,
        dynamic: false,
        distribution_mode: Some(sym("move")),
        filter: Some(Fields(vec![(
            sym("selector"),
            Value::from(Described {
                descriptor: Value::Ulong(0x0000_468c_0000_0004),
                value: Value::string("priority > 3"),
            }),
        )])),
        default_outcome: Some(DeliveryState::Modified(Modified {
            delivery_failed: Some(true),
            ..Default::default()
        })),
        outcomes: vec![sym("amqp:accepted:list"), sym("amqp:rejected:list")],
        capabilities: vec![sym("queue")],
        ..Default::default()
    }
}

fn attach() -> Attach {
    Attach {
        name: Str::from("orders-sender"),
        handle: 0,
        role: Role::Sender,
        snd_settle_mode: SenderSettleMode::Unsettled,
        rcv_settle_mode: ReceiverSettleMode::Second,
        source: Some(source()),
        target: Some(TargetKind::Target(Target {
            address: Some(Str::from("queue/orders")),
            durable: TerminusDurability::Configuration,
            dynamic_node_properties: Some(Fields(vec![(
                sym("lifetime-policy"),
                Value::from(Described {
                    descriptor: Value::Ulong(0x2b),
                    value: Value::List(Vec::new()),
                }),
            )])),
            capabilities: vec![sym("topic")],
            ..Default::default()
        })),
        unsettled: Some(map(vec![(
            Value::Binary(Bytes::from_static(b"tag-1")),
            Value::from(Described {
                descriptor: Value::Ulong(0x24),
                value: Value::List(Vec::new()),
            }),
        )])),
        incomplete_unsettled: true,
        initial_delivery_count: Some(SequenceNo(0)),
        max_message_size: Some(1 << 20),
        desired_capabilities: vec![sym("SHARED-SUBS")],
        properties: Some(props()),
        ..Default::default()
    }
}

fn flow() -> Flow {
    Flow {
        next_incoming_id: Some(SequenceNo(1)),
        incoming_window: 2048,
        next_outgoing_id: SequenceNo(1),
        outgoing_window: 2048,
        handle: Some(0),
        delivery_count: Some(SequenceNo(0)),
        link_credit: Some(100),
        available: Some(0),
        drain: true,
        echo: true,
        properties: Some(props()),
    }
}

fn transfer(id: u32, more: bool) -> Transfer {
    Transfer {
        handle: 0,
        delivery_id: Some(SequenceNo(id)),
        delivery_tag: DeliveryTag::new(Bytes::from(id.to_be_bytes().to_vec())),
        message_format: Some(0),
        settled: Some(false),
        more,
        rcv_settle_mode: Some(ReceiverSettleMode::First),
        batchable: true,
        ..Default::default()
    }
}

fn disposition(state: DeliveryState) -> Disposition {
    Disposition {
        role: Role::Receiver,
        first: SequenceNo(1),
        last: Some(SequenceNo(4)),
        settled: true,
        state: Some(state),
        batchable: false,
    }
}

fn frame_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let msg = full_message();
    let mut session = BytesMut::new();
    session.put_slice(&ProtocolHeader::AMQP.to_bytes());
    amqp(&mut session, 0, open(), &[]);
    amqp(&mut session, 0, begin(), &[]);
    amqp(&mut session, 0, Box::new(attach()), &[]);
    amqp(&mut session, 0, flow(), &[]);
    amqp(&mut session, 0, transfer(1, false), &msg);
    amqp(
        &mut session,
        0,
        disposition(DeliveryState::Accepted(Accepted {})),
        &[],
    );
    amqp(
        &mut session,
        0,
        Detach {
            handle: 0,
            closed: true,
            error: None,
        },
        &[],
    );
    amqp(&mut session, 0, End { error: None }, &[]);
    amqp(&mut session, 0, Close { error: None }, &[]);

    let mut sasl_stream = BytesMut::new();
    sasl_stream.put_slice(&ProtocolHeader::SASL.to_bytes());
    sasl(
        &mut sasl_stream,
        SaslMechanisms {
            sasl_server_mechanisms: vec![sym("PLAIN"), sym("ANONYMOUS"), sym("EXTERNAL")],
        },
    );
    sasl(
        &mut sasl_stream,
        SaslInit {
            mechanism: sym("PLAIN"),
            initial_response: Some(Bytes::from_static(b"\0guest\0guest")),
            hostname: Some(Str::from("localhost")),
        },
    );
    sasl(
        &mut sasl_stream,
        SaslOutcome {
            code: SaslCode::Ok,
            additional_data: Some(Bytes::from_static(b"welcome")),
        },
    );
    sasl_stream.put_slice(&ProtocolHeader::AMQP.to_bytes());
    amqp(
        &mut sasl_stream,
        0,
        Open {
            container_id: Str::from("c"),
            ..Default::default()
        },
        &[],
    );

    let mut challenge = BytesMut::new();
    sasl(
        &mut challenge,
        SaslChallenge {
            challenge: Bytes::from_static(b"r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096"),
        },
    );
    sasl(
        &mut challenge,
        SaslResponse {
            response: Bytes::from_static(b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL,p=v0X8v3Bz2T0CJGbJQ"),
        },
    );
    sasl(
        &mut challenge,
        SaslOutcome {
            code: SaslCode::Auth,
            additional_data: None,
        },
    );

    // One message split over three transfer frames.
    let mut multi = BytesMut::new();
    let (p1, rest) = msg.split_at(msg.len() / 3);
    let (p2, p3) = rest.split_at(rest.len() / 2);
    amqp(&mut multi, 1, transfer(7, true), p1);
    let cont = Transfer {
        handle: 0,
        more: true,
        ..Default::default()
    };
    amqp(&mut multi, 1, cont.clone(), p2);
    amqp(
        &mut multi,
        1,
        Transfer {
            more: false,
            ..cont
        },
        p3,
    );

    // Transactions: a coordinator link, a declare, its outcome, a transactional transfer.
    let mut txn = BytesMut::new();
    amqp(
        &mut txn,
        2,
        Box::new(Attach {
            name: Str::from("txn-ctl"),
            handle: 1,
            role: Role::Sender,
            source: Some(Source::default()),
            target: Some(TargetKind::Coordinator(Coordinator {
                capabilities: vec![sym("amqp:local-transactions")],
            })),
            initial_delivery_count: Some(SequenceNo(0)),
            ..Default::default()
        }),
        &[],
    );
    let declare = Section::AmqpValue(AmqpValue(Value::from(Described {
        descriptor: Value::Ulong(0x31),
        value: Value::List(Vec::new()),
    })))
    .to_bytes();
    amqp(&mut txn, 2, transfer(9, false), &declare);
    amqp(
        &mut txn,
        2,
        disposition(DeliveryState::Declared(Declared {
            txn_id: Bytes::from_static(b"txn-1"),
        })),
        &[],
    );
    amqp(
        &mut txn,
        2,
        Transfer {
            state: Some(DeliveryState::Transactional(TransactionalState {
                txn_id: Bytes::from_static(b"txn-1"),
                outcome: Some(Box::new(DeliveryState::Accepted(Accepted {}))),
            })),
            ..transfer(10, false)
        },
        b"\x00\x53\x75\xa0\x02hi",
    );

    let mut states = BytesMut::new();
    for state in [
        DeliveryState::Received(Received {
            section_number: 3,
            section_offset: 1024,
        }),
        DeliveryState::Rejected(Rejected {
            error: Some(error()),
        }),
        DeliveryState::Released(Released {}),
        DeliveryState::Modified(Modified {
            delivery_failed: Some(true),
            undeliverable_here: Some(false),
            message_annotations: Some(Fields(vec![(sym("x-opt-reason"), Value::Int(-7))])),
        }),
    ] {
        amqp(&mut states, 5, disposition(state), &[]);
    }

    let mut errors = BytesMut::new();
    amqp(
        &mut errors,
        3,
        Detach {
            handle: 4,
            closed: false,
            error: Some(error()),
        },
        &[],
    );
    amqp(
        &mut errors,
        3,
        End {
            error: Some(Error::new(ErrorCondition::WindowViolation, "window")),
        },
        &[],
    );
    amqp(
        &mut errors,
        0,
        Close {
            error: Some(Error {
                condition: ErrorCondition::Other(sym("com.example:custom")),
                description: None,
                info: None,
            }),
        },
        &[],
    );

    // Heartbeats, and a frame with an extended header (DOFF 3) the decoder must skip.
    let mut odd = BytesMut::new();
    odd.put_slice(&[0, 0, 0, 8, 2, 0, 0, 0]);
    odd.put_slice(&[0, 0, 0, 8, 2, 0, 0, 9]);
    let close = Performative::from(Close { error: None }).to_bytes();
    odd.put_u32(12 + close.len() as u32);
    odd.put_slice(&[3, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
    odd.put_slice(&close);
    odd.put_slice(&[0, 0, 0, 8, 2, 0, 0xff, 0xff]);

    let mut one_open = BytesMut::new();
    amqp(&mut one_open, 0, open(), &[]);
    let mut one_attach = BytesMut::new();
    amqp(&mut one_attach, 1, Box::new(attach()), &[]);
    let mut one_transfer = BytesMut::new();
    amqp(&mut one_transfer, 1, transfer(1, false), &msg);
    let mut one_flow = BytesMut::new();
    amqp(&mut one_flow, 1, flow(), &[]);
    let mut one_disposition = BytesMut::new();
    amqp(
        &mut one_disposition,
        1,
        disposition(DeliveryState::Accepted(Accepted {})),
        &[],
    );
    let mut one_init = BytesMut::new();
    one_init.put_slice(&ProtocolHeader::SASL.to_bytes());
    sasl(
        &mut one_init,
        SaslInit {
            mechanism: sym("ANONYMOUS"),
            initial_response: None,
            hostname: None,
        },
    );

    vec![
        ("session", frame_seed(0x00, session.clone())),
        ("session-small-chunks", frame_seed(0x45, session)),
        ("sasl-then-amqp", frame_seed(0x80, sasl_stream.clone())),
        ("sasl-then-amqp-small-chunks", frame_seed(0xc3, sasl_stream)),
        ("sasl-challenge", frame_seed(0x91, challenge)),
        ("multi-frame-transfer", frame_seed(0x17, multi)),
        ("transactions", frame_seed(0x2a, txn)),
        ("delivery-states", frame_seed(0x33, states)),
        ("errors", frame_seed(0x5c, errors)),
        ("heartbeats-and-doff", frame_seed(0x41, odd)),
        ("open", frame_seed(0x01, one_open)),
        ("attach", frame_seed(0x02, one_attach)),
        ("transfer", frame_seed(0x03, one_transfer)),
        ("flow", frame_seed(0x04, one_flow)),
        ("disposition", frame_seed(0x05, one_disposition)),
        ("sasl-init", frame_seed(0x86, one_init)),
    ]
}

fn every_scalar() -> Vec<(&'static str, Value)> {
    vec![
        ("null", Value::Null),
        ("true", Value::Bool(true)),
        ("false", Value::Bool(false)),
        ("ubyte", Value::Ubyte(0xa5)),
        ("ushort", Value::Ushort(0xbeef)),
        ("uint0", Value::Uint(0)),
        ("smalluint", Value::Uint(200)),
        ("uint", Value::Uint(0xdead_beef)),
        ("ulong0", Value::Ulong(0)),
        ("smallulong", Value::Ulong(7)),
        ("ulong", Value::Ulong(u64::MAX - 1)),
        ("byte", Value::Byte(-3)),
        ("short", Value::Short(-12_345)),
        ("smallint", Value::Int(-100)),
        ("int", Value::Int(i32::MIN)),
        ("smalllong", Value::Long(127)),
        ("long", Value::Long(i64::MIN + 1)),
        ("float", Value::Float(f32::NAN)),
        ("double", Value::Double(-0.0)),
        ("decimal32", Value::Decimal32(Decimal32([0x22, 0x50, 0, 1]))),
        (
            "decimal64",
            Value::Decimal64(Decimal64([0x22, 0x38, 0, 0, 0, 0, 0, 5])),
        ),
        ("decimal128", Value::Decimal128(Decimal128([0x22; 16]))),
        ("char", Value::Char('\u{1F600}')),
        ("timestamp", Value::Timestamp(Timestamp(1_700_000_000_000))),
        ("uuid", Value::Uuid(Uuid(*b"0123456789abcdef"))),
        ("vbin8", Value::Binary(Bytes::from_static(b"\x00\x01\xff"))),
        ("vbin32", Value::Binary(Bytes::from(vec![0x5a; 300]))),
        ("str8", Value::string("héllo, wörld")),
        ("str32", Value::String(Str::from("ab".repeat(150)))),
        ("sym8", Value::symbol("amqp:accepted:list")),
        (
            "sym32",
            Value::Symbol(Symbol::try_from("x".repeat(260)).unwrap()),
        ),
    ]
}

fn value_seeds() -> Vec<(&'static str, Vec<u8>)> {
    // All scalars, one after another: the target decodes a sequence of values.
    let scalars: Vec<u8> = every_scalar()
        .iter()
        .flat_map(|(_, v)| v.to_bytes().to_vec())
        .collect();
    let mut out: Vec<(&'static str, Vec<u8>)> = vec![("all-scalars", scalars)];
    let pick = [
        "uint", "ulong", "double", "char", "uuid", "str8", "sym32", "vbin32",
    ];
    for (name, v) in every_scalar() {
        if pick.contains(&name) {
            out.push((name, v.to_bytes().to_vec()));
        }
    }

    let nested = Value::List(vec![
        Value::Null,
        Value::Map(map(vec![
            (
                Value::symbol("k"),
                Value::List(vec![Value::Int(1), Value::Bool(false)]),
            ),
            (
                Value::Ulong(9),
                Value::Array(Array::of_symbols([sym("a"), sym("b")])),
            ),
        ])),
        Value::from(Described {
            descriptor: Value::symbol("com.example:point"),
            value: Value::List(vec![Value::Double(1.5), Value::Double(-2.25)]),
        }),
    ]);
    let big_list = Value::List((0..100).map(Value::Uint).collect());
    let big_map = Value::Map(
        (0..60u8)
            .map(|i| (Value::Ubyte(i), Value::string("v")))
            .collect(),
    );
    let arrays = Value::List(vec![
        Value::Array(
            Array::new(ElemType::Bool, vec![Value::Bool(true), Value::Bool(false)]).unwrap(),
        ),
        Value::Array(
            Array::new(ElemType::Uint, vec![Value::Uint(0), Value::Uint(70_000)]).unwrap(),
        ),
        Value::Array(Array::new(ElemType::Long, vec![Value::Long(-1), Value::Long(5)]).unwrap()),
        Value::Array(Array::new(ElemType::Null, vec![Value::Null; 5]).unwrap()),
        Value::Array(
            Array::new(
                ElemType::String,
                vec![Value::string("x"), Value::string("yz")],
            )
            .unwrap(),
        ),
        Value::Array(
            Array::new(
                ElemType::List,
                vec![Value::List(vec![]), Value::List(vec![Value::Char('a')])],
            )
            .unwrap(),
        ),
        Value::Array(
            Array::new(
                ElemType::Map,
                vec![Value::Map(map(vec![(Value::Null, Value::Null)]))],
            )
            .unwrap(),
        ),
        Value::Array(
            Array::new(
                ElemType::Array,
                vec![Value::Array(Array::of_symbols([sym("q")]))],
            )
            .unwrap(),
        ),
    ]);
    let described_array = Value::Array(
        Array::new(
            ElemType::Described {
                descriptor: Box::new(Value::Ulong(0x77)),
                inner: Box::new(ElemType::Uuid),
            },
            vec![Value::Uuid(Uuid([1; 16])), Value::Uuid(Uuid([2; 16]))],
        )
        .unwrap(),
    );
    let wide_array = Value::Array(
        Array::new(
            ElemType::Binary,
            vec![
                Value::Binary(Bytes::from(vec![1; 270])),
                Value::Binary(Bytes::new()),
            ],
        )
        .unwrap(),
    );
    out.extend([
        ("nested", nested.to_bytes().to_vec()),
        ("list32", big_list.to_bytes().to_vec()),
        ("map32", big_map.to_bytes().to_vec()),
        ("arrays", arrays.to_bytes().to_vec()),
        ("described-array", described_array.to_bytes().to_vec()),
        ("array32", wide_array.to_bytes().to_vec()),
    ]);

    // Legal but non-canonical encodings, which must decode to the canonical value.
    out.extend([
        ("noncanonical-uint", vec![0x70, 0, 0, 0, 5]),
        ("noncanonical-boolean", vec![0x56, 0x01]),
        (
            "noncanonical-list32",
            vec![0xd0, 0, 0, 0, 6, 0, 0, 0, 2, 0x43, 0x44],
        ),
        (
            "noncanonical-map32",
            vec![0xd1, 0, 0, 0, 8, 0, 0, 0, 2, 0xa3, 1, b'k', 0x40],
        ),
        (
            "noncanonical-sym32",
            vec![0xb3, 0, 0, 0, 3, b'a', b'b', b'c'],
        ),
        ("noncanonical-array-uint0", vec![0xe0, 2, 2, 0x43]),
        (
            "symbolic-descriptor-open",
            [
                &[0x00, 0xa3, 14][..],
                b"amqp:open:list",
                &[0xc0, 3, 1, 0xa1, 0],
            ]
            .concat(),
        ),
    ]);

    // Composite types, written as the codec writes them.
    out.extend([
        ("open", Performative::from(open()).to_bytes().to_vec()),
        (
            "attach",
            Performative::from(Box::new(attach())).to_bytes().to_vec(),
        ),
        (
            "transfer",
            Performative::from(transfer(3, true)).to_bytes().to_vec(),
        ),
        (
            "rejected",
            DeliveryState::Rejected(Rejected {
                error: Some(error()),
            })
            .to_bytes()
            .to_vec(),
        ),
        (
            "transactional-state",
            DeliveryState::Transactional(TransactionalState {
                txn_id: Bytes::from_static(b"t"),
                outcome: Some(Box::new(DeliveryState::Released(Released {}))),
            })
            .to_bytes()
            .to_vec(),
        ),
        (
            "declare",
            Declare {
                global_id: Some(Value::Binary(Bytes::from_static(b"gtrid"))),
            }
            .to_bytes()
            .to_vec(),
        ),
        (
            "discharge",
            Discharge {
                txn_id: Bytes::from_static(b"txn-1"),
                fail: Some(true),
            }
            .to_bytes()
            .to_vec(),
        ),
        (
            "lifetime-policy",
            LifetimePolicy::DeleteOnClose(DeleteOnClose {})
                .to_bytes()
                .to_vec(),
        ),
        (
            "sasl-mechanisms",
            SaslFrameBody::from(SaslMechanisms {
                sasl_server_mechanisms: vec![sym("PLAIN")],
            })
            .to_bytes()
            .to_vec(),
        ),
        ("properties", properties_section().to_bytes().to_vec()),
    ]);
    out
}

fn properties_section() -> Properties<'static> {
    Properties {
        message_id: Some(MessageId::String("id-1")),
        user_id: Some(b"guest"),
        to: Some("queue/orders"),
        subject: Some("order.created"),
        reply_to: Some("reply/1"),
        correlation_id: Some(MessageId::Uuid(Uuid([7; 16]))),
        content_type: Some(ferry_codec::decode::SymbolRef("application/json")),
        content_encoding: Some(ferry_codec::decode::SymbolRef("gzip")),
        absolute_expiry_time: Some(Timestamp(1_800_000_000_000)),
        creation_time: Some(Timestamp(1_700_000_000_000)),
        group_id: Some("group-a"),
        group_sequence: Some(42),
        reply_to_group_id: Some("group-b"),
    }
}

fn encode_sections(sections: &[Section<'_>]) -> Vec<u8> {
    sections
        .iter()
        .flat_map(|s| s.to_bytes().to_vec())
        .collect()
}

fn annotations() -> Map {
    map(vec![
        (Value::symbol("x-opt-partition-key"), Value::string("p1")),
        (
            Value::symbol("x-opt-sequence-number"),
            Value::Long(1_234_567),
        ),
        (Value::Ulong(0x1234), Value::Null),
    ])
}

fn header() -> Header {
    Header {
        durable: true,
        priority: 7,
        ttl: Some(60_000),
        first_acquirer: true,
        delivery_count: 2,
    }
}

/// A message with every section and a two-part data body.
fn full_message() -> Vec<u8> {
    encode_sections(&[
        Section::Header(header()),
        Section::DeliveryAnnotations(DeliveryAnnotations(map(vec![(
            Value::symbol("x-opt-lock-token"),
            Value::Uuid(Uuid([9; 16])),
        )]))),
        Section::MessageAnnotations(MessageAnnotations(annotations())),
        Section::Properties(properties_section()),
        Section::ApplicationProperties(ApplicationProperties(map(vec![
            (Value::string("region"), Value::string("eu")),
            (Value::string("retries"), Value::Int(3)),
            (Value::string("ratio"), Value::Double(0.5)),
        ]))),
        Section::Data(Data(Bytes::from_static(b"{\"order\": 1}"))),
        Section::Data(Data(Bytes::from_static(b"second data section"))),
        Section::Footer(Footer(map(vec![(
            Value::symbol("x-opt-crc"),
            Value::Uint(0xcafe_f00d),
        )]))),
    ])
}

fn message_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let sequence_body = encode_sections(&[
        Section::Header(Header::default()),
        Section::Properties(Properties {
            message_id: Some(MessageId::Ulong(99)),
            correlation_id: Some(MessageId::Binary(b"corr")),
            ..Default::default()
        }),
        Section::AmqpSequence(AmqpSequence(vec![Value::Int(1), Value::string("two")])),
        Section::AmqpSequence(AmqpSequence(vec![Value::Null])),
    ]);
    let value_body = encode_sections(&[
        Section::MessageAnnotations(MessageAnnotations(annotations())),
        Section::AmqpValue(AmqpValue(Value::Map(map(vec![
            (Value::string("id"), Value::Long(-5)),
            (
                Value::string("tags"),
                Value::Array(Array::of_symbols([sym("a"), sym("b")])),
            ),
        ])))),
        Section::Footer(Footer(Map::new())),
    ]);
    let app_props_only = encode_sections(&[
        Section::ApplicationProperties(ApplicationProperties(map(vec![(
            Value::string("k"),
            Value::Bool(true),
        )]))),
        Section::Data(Data(Bytes::new())),
    ]);
    let header_only = encode_sections(&[Section::Header(header())]);
    let large_data = encode_sections(&[
        Section::Properties(properties_section()),
        Section::Data(Data(Bytes::from(vec![0x42; 600]))),
    ]);
    // Symbolic section descriptors, as a few clients send them.
    let symbolic = [
        &[0x00, 0xa3, 16][..],
        b"amqp:header:list",
        &[0xc0, 2, 1, 0x41],
        &[0x00, 0xa3, 16],
        b"amqp:data:binary",
        &[0xa0, 3],
        b"abc",
    ]
    .concat();
    let declare = encode_sections(&[Section::AmqpValue(AmqpValue(Value::from(Described {
        descriptor: Value::Ulong(0x32),
        value: Value::List(vec![
            Value::Binary(Bytes::from_static(b"txn-1")),
            Value::Bool(true),
        ]),
    })))]);
    vec![
        ("all-sections", full_message()),
        ("amqp-sequence", sequence_body),
        ("amqp-value", value_body),
        ("app-properties-empty-data", app_props_only),
        ("header-only", header_only),
        ("large-data", large_data),
        ("symbolic-descriptors", symbolic),
        ("discharge", declare),
        ("empty", Vec::new()),
    ]
}
