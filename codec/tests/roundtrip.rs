//! Property tests: every type the codec writes reads back equal, reports its exact size, and
//! reads back equal from any legal non-canonical spelling a peer may use; messages keep their
//! sections and share their body bytes; sequence numbers follow RFC-1982.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use ferry_codec::definitions::{Error, SequenceNo};
use ferry_codec::delivery_state::DeliveryState;
use ferry_codec::messaging::{
    AmqpSequence, AmqpValue, ApplicationProperties, BodyKind, Data, DeliveryAnnotations, Footer,
    Header, LifetimePolicy, Message, MessageAnnotations, Properties, Section, SectionIndex, Source,
    Span, Target, TargetKind,
};
use ferry_codec::performatives::{
    Attach, Begin, Close, Detach, Disposition, End, Flow, Open, Performative, Transfer,
};
use ferry_codec::sasl::{
    SaslChallenge, SaslFrameBody, SaslInit, SaslMechanisms, SaslOutcome, SaslResponse,
};
use ferry_codec::transaction::{Coordinator, Declare, Declared, Discharge, TransactionalState};
use ferry_codec::{
    Array, Decode, DecodeError, DecodeLimits, Decoder, ElemType, Encode, Map, Str, Symbol, Value,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::Index;
use std::cmp::Ordering;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Nothing is written next to the sources; a failure prints its minimal case instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn fail(e: DecodeError) -> TestCaseError {
    TestCaseError::fail(format!("decode error: {e}"))
}

/// Decodes a `T` that must fill `bytes` exactly.
fn decode_all<'a, T: Decode<'a>>(bytes: &'a Bytes) -> Result<T, TestCaseError> {
    Decoder::decode_exact(bytes, DecodeLimits::DEFAULT)
        .map_err(|e| TestCaseError::fail(format!("decode error: {e}\nbytes: {bytes:02x?}")))
}

/// For `$x` of type `$ty`: the size is exact, the canonical bytes and a random re-spelling of
/// them (seeded by `$seed`) both decode to `$x`, and re-encoding is stable. Evaluates to the
/// canonical bytes.
macro_rules! check {
    ($x:expr, $ty:ty, $seed:expr) => {{
        let x = &$x;
        let bytes = Encode::to_bytes(x);
        prop_assert_eq!(
            Encode::encoded_len(x),
            bytes.len(),
            "encoded_len of {:?}",
            x
        );
        let back: $ty = decode_all(&bytes)?;
        prop_assert_eq!(&back, x);
        prop_assert_eq!(Encode::to_bytes(&back), bytes.clone());
        let alt = respell_bytes(&bytes, $seed);
        let back: $ty = decode_all(&alt)?;
        prop_assert_eq!(&back, x, "re-spelled as {:02x?}", alt);
        prop_assert_eq!(Encode::to_bytes(&back), bytes.clone());
        bytes
    }};
}

/// Checks a composite written whole: a numeric descriptor `code` and a list8/list32 (never
/// list0) with exactly `fields` entries, however many of them are null.
fn assert_full(bytes: &[u8], code: u64, fields: u32) -> Result<(), TestCaseError> {
    prop_assert_eq!(&bytes[..3], &[0x00, 0x53, code as u8][..]);
    let count = match bytes[3] {
        0xc0 => u32::from(bytes[5]),
        0xd0 => u32::from_be_bytes(bytes[8..12].try_into().unwrap()),
        other => return Err(TestCaseError::fail(format!("list code 0x{other:02x}"))),
    };
    prop_assert_eq!(count, fields, "field count of descriptor 0x{:02x}", code);
    Ok(())
}

/// Round trips of a performative on its own and as a [`Performative`], plus the full-field rule.
macro_rules! performative {
    ($x:expr, $ty:ty, $variant:expr, $fields:expr, $seed:expr) => {{
        let x: $ty = $x;
        let bytes = check!(x, $ty, $seed);
        assert_full(&bytes, <$ty>::DESCRIPTOR_CODE, $fields)?;
        let p = check!($variant(x), Performative, $seed);
        prop_assert_eq!(p, bytes);
    }};
}

// ---------------------------------------------------------------------------------------------
// Values.
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn values_round_trip(v in value(), seed in any::<u64>()) {
        let canonical = check!(v, Value, seed);
        // The hand-rolled encoder's random spelling of the bare value.
        let alt = Bytes::from(write_any(&v, seed));
        let back: Value = decode_all(&alt)?;
        prop_assert_eq!(&back, &v, "spelled as {:02x?}", alt);
        prop_assert_eq!(back.to_bytes(), canonical);
    }

    #[test]
    fn every_primitive_type_round_trips(
        values in primitive_types().iter().map(typed).collect::<Vec<_>>(),
        seed in any::<u64>(),
    ) {
        for v in values {
            check!(v, Value, seed);
        }
    }

    #[test]
    fn arrays_round_trip(
        a in prop_oneof![primitive_array(12), nested_array()],
        seed in any::<u64>(),
    ) {
        check!(a, Array, seed);
        check!(Value::Array(a), Value, seed);
    }

    #[test]
    fn maps_and_lists_round_trip(m in map(), l in vec(value(), 0..6), seed in any::<u64>()) {
        check!(m, Map, seed);
        check!(l, Vec<Value>, seed);
    }

    #[test]
    fn described_values_round_trip(d in descriptor(), v in value(), seed in any::<u64>()) {
        let described = ferry_codec::Described { descriptor: d, value: v };
        check!(described, ferry_codec::Described, seed);
    }
}

proptest! {
    #![proptest_config(config(32))]

    /// More than 255 elements forces the 32-bit forms whatever the byte size.
    #[test]
    fn compounds_with_many_elements(
        items in vec(leaf(), 256..300),
        bytes in vec(any::<u8>(), 256..300),
        seed in any::<u64>(),
    ) {
        let list = Value::List(items.clone());
        let encoded = check!(list, Value, seed);
        prop_assert_eq!(encoded[0], 0xd0);
        let map = Value::Map(Map(items.chunks(2).map(|p| (p[0].clone(), p[p.len() - 1].clone())).collect()));
        check!(map, Value, seed);
        let ubytes = Array::new(ElemType::Ubyte, bytes.into_iter().map(Value::Ubyte).collect()).unwrap();
        let encoded = check!(Value::Array(ubytes), Value, seed);
        prop_assert_eq!(encoded[0], 0xf0);
        let nulls = Array::new(ElemType::Null, vec![Value::Null; 300]).unwrap();
        check!(Value::Array(nulls), Value, seed);
    }
}

/// Every size from empty to well past the 8-bit forms, one byte at a time, for each kind of
/// size field the encoder chooses: variable-width values, lists, maps, arrays (by bytes and
/// by count), nested arrays, `multiple` symbol fields, composites and sections.
#[test]
fn sizes_across_the_8_bit_limits() {
    fn at(n: usize) -> Result<(), TestCaseError> {
        let seed = n as u64;
        let bin = Bytes::from(vec![0xa5u8; n]);
        let text: String = "x".repeat(n);
        let sym = Symbol::try_from(text.as_str()).unwrap();
        check!(Value::Binary(bin.clone()), Value, seed);
        check!(Value::string(&text), Value, seed);
        check!(Value::Symbol(sym.clone()), Value, seed);
        check!(Value::List(vec![Value::Binary(bin.clone())]), Value, seed);
        check!(Value::List(vec![Value::Ubyte(1); n]), Value, seed);
        check!(
            Value::Map(Map(vec![(Value::Ubyte(1), Value::Binary(bin.clone()))])),
            Value,
            seed
        );
        let ubytes = Array::new(ElemType::Ubyte, vec![Value::Ubyte(2); n]).unwrap();
        check!(Value::Array(ubytes.clone()), Value, seed);
        let bins = Array::new(ElemType::Binary, vec![Value::Binary(bin.clone())]).unwrap();
        check!(Value::Array(bins.clone()), Value, seed);
        let nested = Array::new(ElemType::Array, vec![Value::Array(ubytes.clone()); 2]).unwrap();
        check!(Value::Array(nested), Value, seed);
        let lists = Array::new(
            ElemType::List,
            vec![Value::List(vec![Value::Binary(bin.clone())])],
        )
        .unwrap();
        check!(Value::Array(lists), Value, seed);
        let described = Array::new(
            ElemType::Described {
                descriptor: Box::new(Value::Ulong(0x1234_5678)),
                inner: Box::new(ElemType::Binary),
            },
            vec![Value::Binary(bin.clone())],
        )
        .unwrap();
        check!(Value::Array(described), Value, seed);
        let open = Open {
            container_id: Str::from(text.as_str()),
            offered_capabilities: vec![sym.clone()],
            desired_capabilities: vec![Symbol::from_static("a"); n],
            ..Open::default()
        };
        let bytes = check!(open, Open, seed);
        assert_full(&bytes, Open::DESCRIPTOR_CODE, 10)?;
        let attach = Attach {
            name: Str::from(text.as_str()),
            source: Some(Source {
                address: Some(Str::from(text.as_str())),
                ..Source::default()
            }),
            ..Attach::default()
        };
        check!(attach, Attach, seed);
        let data = Data(bin.clone());
        check!(data, Data, seed);
        check!(
            ApplicationProperties(Map(vec![(Value::string("k"), Value::Binary(bin))])),
            ApplicationProperties,
            seed
        );
        let props = Properties {
            to: Some(&text),
            ..Properties::default()
        };
        check!(props, Properties<'_>, seed);
        Ok(())
    }
    for n in 0..600 {
        at(n).unwrap_or_else(|e| panic!("size {n}: {e}"));
    }
}

/// An array carries one descriptor: an element type described twice could not be written
/// (the encoder used to drop the inner descriptor silently), so it is refused up front.
#[test]
fn arrays_described_twice_are_refused() {
    let twice = ElemType::Described {
        descriptor: Box::new(Value::Ulong(0x98)),
        inner: Box::new(ElemType::Described {
            descriptor: Box::new(Value::Ulong(0x99)),
            inner: Box::new(ElemType::Uint),
        }),
    };
    assert_eq!(Array::new(twice.clone(), vec![Value::Uint(1)]), None);
    assert_eq!(Array::new(twice, vec![]), None);
}

// ---------------------------------------------------------------------------------------------
// Performatives, definitions, termini.
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn open_round_trips(x in open(), seed in any::<u64>()) {
        performative!(x, Open, Performative::Open, 10, seed);
    }

    #[test]
    fn begin_round_trips(x in begin(), seed in any::<u64>()) {
        performative!(x, Begin, Performative::Begin, 8, seed);
    }

    #[test]
    fn attach_round_trips(x in attach(), seed in any::<u64>()) {
        performative!(x, Attach, |a| Performative::Attach(Box::new(a)), 14, seed);
    }

    #[test]
    fn flow_round_trips(x in flow(), seed in any::<u64>()) {
        performative!(x, Flow, Performative::Flow, 11, seed);
    }

    #[test]
    fn transfer_round_trips(x in transfer(), seed in any::<u64>()) {
        performative!(x, Transfer, Performative::Transfer, 11, seed);
    }

    #[test]
    fn disposition_round_trips(x in disposition(), seed in any::<u64>()) {
        performative!(x, Disposition, Performative::Disposition, 6, seed);
    }

    #[test]
    fn detach_round_trips(x in detach(), seed in any::<u64>()) {
        performative!(x, Detach, Performative::Detach, 3, seed);
    }

    #[test]
    fn end_and_close_round_trip(e in option::of(error()), seed in any::<u64>()) {
        performative!(End { error: e.clone() }, End, Performative::End, 1, seed);
        performative!(Close { error: e }, Close, Performative::Close, 1, seed);
    }

    #[test]
    fn any_performative_round_trips(p in performative(), seed in any::<u64>()) {
        check!(p, Performative, seed);
    }

    #[test]
    fn errors_round_trip(x in error(), seed in any::<u64>()) {
        let bytes = check!(x, Error, seed);
        assert_full(&bytes, Error::DESCRIPTOR_CODE, 3)?;
    }

    #[test]
    fn sources_round_trip(x in source(), seed in any::<u64>()) {
        let bytes = check!(x, Source, seed);
        assert_full(&bytes, Source::DESCRIPTOR_CODE, 11)?;
    }

    #[test]
    fn targets_round_trip(x in target_kind(), seed in any::<u64>()) {
        let bytes = check!(x, TargetKind, seed);
        match x {
            TargetKind::Target(t) => {
                prop_assert_eq!(check!(t, Target, seed), bytes.clone());
                assert_full(&bytes, Target::DESCRIPTOR_CODE, 7)?;
            }
            TargetKind::Coordinator(c) => {
                prop_assert_eq!(check!(c, Coordinator, seed), bytes.clone());
                assert_full(&bytes, Coordinator::DESCRIPTOR_CODE, 1)?;
            }
        }
    }

    #[test]
    fn lifetime_policies_round_trip(x in lifetime_policy(), seed in any::<u64>()) {
        check!(x, LifetimePolicy, seed);
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery states, transactions, SASL.
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn delivery_states_round_trip(s in delivery_state(), seed in any::<u64>()) {
        let bytes = check!(s, DeliveryState, seed);
        let own = match s {
            DeliveryState::Received(x) => check!(x, ferry_codec::delivery_state::Received, seed),
            DeliveryState::Accepted(x) => check!(x, ferry_codec::delivery_state::Accepted, seed),
            DeliveryState::Rejected(x) => check!(x, ferry_codec::delivery_state::Rejected, seed),
            DeliveryState::Released(x) => check!(x, ferry_codec::delivery_state::Released, seed),
            DeliveryState::Modified(x) => check!(x, ferry_codec::delivery_state::Modified, seed),
            DeliveryState::Declared(x) => check!(x, Declared, seed),
            DeliveryState::Transactional(x) => check!(x, TransactionalState, seed),
        };
        prop_assert_eq!(own, bytes);
    }

    #[test]
    fn transaction_bodies_round_trip(
        d in declare(),
        x in discharge(),
        t in transactional_state(),
        seed in any::<u64>(),
    ) {
        check!(d, Declare, seed);
        check!(x, Discharge, seed);
        check!(t, TransactionalState, seed);
    }

    #[test]
    fn sasl_bodies_round_trip(b in sasl_body(), seed in any::<u64>()) {
        let bytes = check!(b, SaslFrameBody, seed);
        let (own, code, fields) = match b {
            SaslFrameBody::Mechanisms(x) => (check!(x, SaslMechanisms, seed), SaslMechanisms::DESCRIPTOR_CODE, 1),
            SaslFrameBody::Init(x) => (check!(x, SaslInit, seed), SaslInit::DESCRIPTOR_CODE, 3),
            SaslFrameBody::Challenge(x) => (check!(x, SaslChallenge, seed), SaslChallenge::DESCRIPTOR_CODE, 1),
            SaslFrameBody::Response(x) => (check!(x, SaslResponse, seed), SaslResponse::DESCRIPTOR_CODE, 1),
            SaslFrameBody::Outcome(x) => (check!(x, SaslOutcome, seed), SaslOutcome::DESCRIPTOR_CODE, 2),
        };
        prop_assert_eq!(&own, &bytes);
        assert_full(&bytes, code, fields)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Sections.
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn headers_round_trip(h in header(), seed in any::<u64>()) {
        check!(h, Header, seed);
        check!(Section::Header(h), Section<'_>, seed);
    }

    #[test]
    fn properties_round_trip(owned in properties(), seed in any::<u64>()) {
        let p = owned.borrow();
        let bytes = check!(p, Properties<'_>, seed);
        let s = check!(Section::Properties(p), Section<'_>, seed);
        prop_assert_eq!(s, bytes);
    }

    #[test]
    fn map_sections_round_trip(
        da in annotations(),
        ma in annotations(),
        ap in application_properties(),
        footer in annotations(),
        seed in any::<u64>(),
    ) {
        let da = DeliveryAnnotations(da);
        let ma = MessageAnnotations(ma);
        let footer = Footer(footer);
        check!(da, DeliveryAnnotations, seed);
        check!(ma, MessageAnnotations, seed);
        check!(ap, ApplicationProperties, seed);
        check!(footer, Footer, seed);
        check!(Section::DeliveryAnnotations(da), Section<'_>, seed);
        check!(Section::MessageAnnotations(ma), Section<'_>, seed);
        check!(Section::ApplicationProperties(ap), Section<'_>, seed);
        check!(Section::Footer(footer), Section<'_>, seed);
    }

    #[test]
    fn body_sections_round_trip(
        data in binary(),
        seq in vec(value(), 0..5),
        v in value(),
        seed in any::<u64>(),
    ) {
        let data = Data(data);
        let seq = AmqpSequence(seq);
        let v = AmqpValue(v);
        check!(data, Data, seed);
        check!(seq, AmqpSequence, seed);
        check!(v, AmqpValue, seed);
        check!(Section::Data(data), Section<'_>, seed);
        check!(Section::AmqpSequence(seq), Section<'_>, seed);
        check!(Section::AmqpValue(v), Section<'_>, seed);
    }
}

// ---------------------------------------------------------------------------------------------
// The full-field rule for defaults, and hand-written non-canonical encodings.
// ---------------------------------------------------------------------------------------------

#[test]
fn composites_written_whole_even_when_empty() {
    let cases: Vec<(Bytes, u64, u32)> = vec![
        (Open::default().to_bytes(), Open::DESCRIPTOR_CODE, 10),
        (Begin::default().to_bytes(), Begin::DESCRIPTOR_CODE, 8),
        (Attach::default().to_bytes(), Attach::DESCRIPTOR_CODE, 14),
        (Flow::default().to_bytes(), Flow::DESCRIPTOR_CODE, 11),
        (
            Transfer::default().to_bytes(),
            Transfer::DESCRIPTOR_CODE,
            11,
        ),
        (
            Disposition::default().to_bytes(),
            Disposition::DESCRIPTOR_CODE,
            6,
        ),
        (Detach::default().to_bytes(), Detach::DESCRIPTOR_CODE, 3),
        (End::default().to_bytes(), End::DESCRIPTOR_CODE, 1),
        (Close::default().to_bytes(), Close::DESCRIPTOR_CODE, 1),
        (Error::default().to_bytes(), Error::DESCRIPTOR_CODE, 3),
        (Source::default().to_bytes(), Source::DESCRIPTOR_CODE, 11),
        (Target::default().to_bytes(), Target::DESCRIPTOR_CODE, 7),
        (
            Coordinator::default().to_bytes(),
            Coordinator::DESCRIPTOR_CODE,
            1,
        ),
        (SaslInit::default().to_bytes(), SaslInit::DESCRIPTOR_CODE, 3),
        (
            SaslOutcome::default().to_bytes(),
            SaslOutcome::DESCRIPTOR_CODE,
            2,
        ),
    ];
    for (bytes, code, fields) in cases {
        assert_full(&bytes, code, fields).unwrap();
    }
    // Every optional field null: the closing performatives are still a one-field list8.
    assert_eq!(
        &End::default().to_bytes()[..],
        &[0x00, 0x53, 0x17, 0xc0, 0x02, 0x01, 0x40]
    );
}

/// `c0`/`d0`-style compound: `code`, size and count at the given width, then `body`.
fn compound(code: u8, wide: bool, count: usize, body: &[u8]) -> Vec<u8> {
    let mut out = vec![code];
    if wide {
        out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        out.extend_from_slice(&(count as u32).to_be_bytes());
    } else {
        out.push((body.len() + 1) as u8);
        out.push(count as u8);
    }
    out.extend_from_slice(body);
    out
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Decodes `bytes`, expects `expected`, and checks that re-encoding gives the canonical form.
fn assert_spelling(bytes: Vec<u8>, expected: &Value) {
    let bytes = Bytes::from(bytes);
    let v: Value = Decoder::decode_exact(&bytes, DecodeLimits::DEFAULT)
        .unwrap_or_else(|e| panic!("{bytes:02x?}: {e}"));
    assert_eq!(&v, expected, "{bytes:02x?}");
    assert_eq!(v.to_bytes(), expected.to_bytes(), "{bytes:02x?}");
    assert_ne!(
        &bytes[..],
        &expected.to_bytes()[..],
        "not a non-canonical spelling"
    );
}

#[test]
fn non_canonical_value_spellings() {
    use code as c;
    let sym = |s: &'static str| Value::symbol(s);
    let ubyte7 = [c::UBYTE, 7];
    // list32 and list8 for short and empty lists
    assert_spelling(
        compound(c::LIST32, true, 1, &ubyte7),
        &Value::List(vec![Value::Ubyte(7)]),
    );
    assert_spelling(compound(c::LIST8, false, 0, &[]), &Value::List(vec![]));
    assert_spelling(compound(c::LIST32, true, 0, &[]), &Value::List(vec![]));
    // map32 for a small map
    let map = Value::Map(Map(vec![(sym("k"), Value::Uint(5))]));
    assert_spelling(
        compound(
            c::MAP32,
            true,
            2,
            &cat(&[&[c::SYM8, 1, b'k'], &[c::UINT, 0, 0, 0, 5]]),
        ),
        &map,
    );
    // 32-bit variable widths for short values
    assert_spelling(vec![c::STR32, 0, 0, 0, 2, b'h', b'i'], &Value::string("hi"));
    assert_spelling(vec![c::SYM32, 0, 0, 0, 2, b'h', b'i'], &sym("hi"));
    assert_spelling(
        vec![c::VBIN32, 0, 0, 0, 1, 9],
        &Value::Binary(Bytes::from_static(&[9])),
    );
    assert_spelling(vec![c::STR32, 0, 0, 0, 0], &Value::string(""));
    // full-width and one-byte integers where a shorter form exists
    assert_spelling(vec![c::UINT, 0, 0, 0, 7], &Value::Uint(7));
    assert_spelling(vec![c::UINT, 0, 0, 0, 0], &Value::Uint(0));
    assert_spelling(vec![c::SMALLUINT, 0], &Value::Uint(0));
    assert_spelling(vec![c::ULONG, 0, 0, 0, 0, 0, 0, 0, 200], &Value::Ulong(200));
    assert_spelling(vec![c::ULONG, 0, 0, 0, 0, 0, 0, 0, 0], &Value::Ulong(0));
    assert_spelling(vec![c::SMALLULONG, 0], &Value::Ulong(0));
    assert_spelling(vec![c::INT, 0, 0, 0, 5], &Value::Int(5));
    assert_spelling(vec![c::INT, 0xff, 0xff, 0xff, 0x80], &Value::Int(-128));
    assert_spelling(
        vec![c::LONG, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd],
        &Value::Long(-3),
    );
    // boolean 0x56
    assert_spelling(vec![c::BOOLEAN, 1], &Value::Bool(true));
    assert_spelling(vec![c::BOOLEAN, 0], &Value::Bool(false));
    // array32 for a short array, and constructors wider or narrower than the canonical one
    let uints = |xs: &[u32]| {
        Value::Array(
            Array::new(
                ElemType::Uint,
                xs.iter().copied().map(Value::Uint).collect(),
            )
            .unwrap(),
        )
    };
    assert_spelling(
        compound(c::ARRAY32, true, 2, &[c::SMALLUINT, 1, 2]),
        &uints(&[1, 2]),
    );
    assert_spelling(
        compound(c::ARRAY8, false, 2, &[c::UINT, 0, 0, 0, 1, 0, 0, 0, 2]),
        &uints(&[1, 2]),
    );
    assert_spelling(
        compound(c::ARRAY8, false, 3, &[c::UINT0]),
        &uints(&[0, 0, 0]),
    );
    let bools = Value::Array(Array::new(ElemType::Bool, vec![Value::Bool(true); 2]).unwrap());
    assert_spelling(compound(c::ARRAY8, false, 2, &[c::TRUE]), &bools);
    let lists = Value::Array(Array::new(ElemType::List, vec![Value::List(vec![]); 2]).unwrap());
    assert_spelling(compound(c::ARRAY8, false, 2, &[c::LIST0]), &lists);
    // arrays of described types, the descriptor itself written wide
    let described = Value::Array(
        Array::new(
            ElemType::Described {
                descriptor: Box::new(Value::Ulong(0x99)),
                inner: Box::new(ElemType::String),
            },
            vec![Value::string("a"), Value::string("bc")],
        )
        .unwrap(),
    );
    assert_spelling(
        compound(
            c::ARRAY32,
            true,
            2,
            &cat(&[
                &[0x00, c::ULONG, 0, 0, 0, 0, 0, 0, 0, 0x99],
                &[c::STR32, 0, 0, 0, 1, b'a', 0, 0, 0, 2, b'b', b'c'],
            ]),
        ),
        &described,
    );
    // a described value with a wide ulong descriptor, and a sym32 one
    let d = |descriptor: Value| {
        Value::Described(Box::new(ferry_codec::Described {
            descriptor,
            value: Value::Null,
        }))
    };
    assert_spelling(
        vec![0x00, c::ULONG, 0, 0, 0, 0, 0, 0, 0, 0x99, c::NULL],
        &d(Value::Ulong(0x99)),
    );
    assert_spelling(
        vec![0x00, c::SYM32, 0, 0, 0, 1, b'x', c::NULL],
        &d(sym("x")),
    );
}

/// `amqp:open:list` as its numeric or symbolic descriptor, then `list`.
fn open_with(symbolic: bool, list: Vec<u8>) -> Bytes {
    let mut out = vec![0x00];
    if symbolic {
        out.extend_from_slice(&[code::SYM8, 14]);
        out.extend_from_slice(b"amqp:open:list");
    } else {
        out.extend_from_slice(&[code::SMALLULONG, 0x10]);
    }
    out.extend_from_slice(&list);
    Bytes::from(out)
}

#[test]
fn performatives_with_elided_fields_and_symbolic_descriptors() {
    use code as c;
    let full = Open {
        container_id: Str::from("c"),
        ..Open::default()
    };
    let container = [c::STR8, 1, b'c'];
    for symbolic in [false, true] {
        for wide in [false, true] {
            let code = if wide { c::LIST32 } else { c::LIST8 };
            // Only the mandatory first field.
            let bytes = open_with(symbolic, compound(code, wide, 1, &container));
            assert_eq!(
                Decoder::decode_exact::<Open>(&bytes, DecodeLimits::DEFAULT),
                Ok(full.clone())
            );
            let p = Decoder::decode_exact::<Performative>(&bytes, DecodeLimits::DEFAULT);
            assert_eq!(p, Ok(Performative::Open(full.clone())));
            // Some fields, explicit nulls, then elided.
            let body = cat(&[&container, &[c::NULL, c::UINT, 0, 0, 2, 0]]);
            let bytes = open_with(symbolic, compound(code, wide, 3, &body));
            let expected = Open {
                max_frame_size: 512,
                ..full.clone()
            };
            assert_eq!(
                Decoder::decode_exact::<Open>(&bytes, DecodeLimits::DEFAULT),
                Ok(expected)
            );
        }
    }
    // A `multiple` field may be a single symbol rather than an array (§1.4).
    let body = cat(&[&container, &[c::NULL; 6], &[c::SYM8, 3, b'f', b'o', b'o']]);
    let bytes = open_with(true, compound(c::LIST8, false, 8, &body));
    let expected = Open {
        offered_capabilities: vec![Symbol::from_static("foo")],
        ..full.clone()
    };
    assert_eq!(
        Decoder::decode_exact::<Open>(&bytes, DecodeLimits::DEFAULT),
        Ok(expected)
    );
    // list0 for a performative whose fields are all optional.
    let close = Bytes::from_static(&[0x00, c::SMALLULONG, 0x18, c::LIST0]);
    assert_eq!(
        Decoder::decode_exact::<Close>(&close, DecodeLimits::DEFAULT),
        Ok(Close::default())
    );
    let mut close = vec![0x00, c::SYM32, 0, 0, 0, 15];
    close.extend_from_slice(b"amqp:close:list");
    close.push(c::LIST0);
    let close = Bytes::from(close);
    assert_eq!(
        Decoder::decode_exact::<Performative>(&close, DecodeLimits::DEFAULT),
        Ok(Performative::Close(Close::default()))
    );
}

// ---------------------------------------------------------------------------------------------
// Messages.
// ---------------------------------------------------------------------------------------------

/// The index [`Message`] should build for `sections` written back to back, each taking the
/// matching number of bytes in `lens`.
fn expected_index(sections: &[Section<'_>], lens: &[usize]) -> SectionIndex {
    let mut idx = SectionIndex::default();
    let mut pos = 0;
    for (s, len) in sections.iter().zip(lens) {
        let span = Span {
            start: pos,
            end: pos + len,
        };
        pos = span.end;
        let body_kind = match s {
            Section::Header(_) => {
                idx.header = Some(span);
                continue;
            }
            Section::DeliveryAnnotations(_) => {
                idx.delivery_annotations = Some(span);
                continue;
            }
            Section::MessageAnnotations(_) => {
                idx.message_annotations = Some(span);
                continue;
            }
            Section::Properties(_) => {
                idx.properties = Some(span);
                continue;
            }
            Section::ApplicationProperties(_) => {
                idx.application_properties = Some(span);
                continue;
            }
            Section::Footer(_) => {
                idx.footer = Some(span);
                continue;
            }
            Section::Data(_) => BodyKind::Data,
            Section::AmqpSequence(_) => BodyKind::AmqpSequence,
            Section::AmqpValue(_) => BodyKind::AmqpValue,
        };
        idx.body_kind = body_kind;
        idx.body_sections += 1;
        idx.body.get_or_insert(span).end = span.end;
    }
    idx
}

/// The routing sections and the body decode to what `parts` holds.
fn check_contents(
    m: &Message,
    parts: &MessageParts,
    header: Option<&Header>,
    da: Option<&DeliveryAnnotations>,
    ma: Option<&MessageAnnotations>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        m.header().map_err(fail)?,
        header.cloned().unwrap_or_default()
    );
    prop_assert_eq!(
        m.delivery_annotations().map_err(fail)?,
        da.map(|a| a.0.clone())
    );
    prop_assert_eq!(
        m.message_annotations().map_err(fail)?,
        ma.map(|a| a.0.clone())
    );
    prop_assert_eq!(
        m.properties().map_err(fail)?,
        parts.properties.as_ref().map(OwnedProperties::borrow)
    );
    prop_assert_eq!(
        m.application_properties().map_err(fail)?,
        parts.application_properties.as_ref().map(|a| a.0.clone())
    );
    prop_assert_eq!(m.body_sections().map_err(fail)?, parts.body_sections());
    prop_assert_eq!(
        m.footer().map_err(fail)?,
        parts.footer.as_ref().map(|f| f.0.clone())
    );
    Ok(())
}

/// Whether `part` lies inside one of `bufs` (shares its memory rather than copying it).
fn points_into(part: &[u8], bufs: &[Bytes]) -> bool {
    let start = part.as_ptr() as usize;
    let end = start + part.len();
    bufs.iter().any(|b| {
        let b_start = b.as_ptr() as usize;
        start >= b_start && end <= b_start + b.len()
    })
}

/// The body of `m` is slices of `bufs`, not a copy.
fn check_body_shared(m: &Message, bufs: &[Bytes]) -> Result<(), TestCaseError> {
    if let Some(span) = m.index().body {
        let parts = m.slices(span);
        prop_assert_eq!(parts.iter().map(Bytes::len).sum::<usize>(), span.len());
        for part in parts {
            prop_assert!(points_into(&part, bufs), "body slice was copied");
        }
    }
    Ok(())
}

fn concat(parts: &[Bytes]) -> Vec<u8> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn messages_index_split_and_reannotate(
        parts in message_parts(),
        cuts in vec(any::<Index>(), 0..6),
        new_header in option::of(header()),
        new_da in option::of(annotations().prop_map(DeliveryAnnotations)),
        new_ma in option::of(annotations().prop_map(MessageAnnotations)),
        seed in any::<u64>(),
    ) {
        let sections = parts.sections();
        let lens: Vec<usize> = sections.iter().map(Encode::encoded_len).collect();
        let msg = Message::from_sections(&sections).map_err(fail)?;
        let whole = msg.to_contiguous();
        let mut expected = BytesMut::new();
        sections.iter().for_each(|s| s.encode(&mut expected));
        prop_assert_eq!(&whole[..], &expected[..]);
        prop_assert_eq!(msg.len(), whole.len());
        prop_assert_eq!(msg.index(), &expected_index(&sections, &lens));
        check_contents(
            &msg,
            &parts,
            parts.header.as_ref(),
            parts.delivery_annotations.as_ref(),
            parts.message_annotations.as_ref(),
        )?;

        // The same bytes in separately allocated segments, cut anywhere.
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(whole.len() + 1)).collect();
        points.sort_unstable();
        points.push(whole.len());
        let mut segments = Vec::new();
        let mut prev = 0;
        for p in points {
            segments.push(Bytes::copy_from_slice(&whole[prev..p]));
            prev = p;
        }
        let split = Message::from_segments(segments.clone()).map_err(fail)?;
        prop_assert_eq!(split.to_contiguous(), whole.clone());
        prop_assert_eq!(split.len(), whole.len());
        prop_assert_eq!(split.index(), msg.index());
        check_contents(
            &split,
            &parts,
            parts.header.as_ref(),
            parts.delivery_annotations.as_ref(),
            parts.message_annotations.as_ref(),
        )?;
        check_body_shared(&msg, std::slice::from_ref(&whole))?;
        check_body_shared(&split, &segments)?;
        prop_assert_eq!(concat(&split.bare()), concat(&msg.bare()));

        // New header and annotations; the bare message and footer are kept as they were.
        let bare_start = msg.index().bare_start(whole.len());
        let mut prefix = BytesMut::new();
        new_header.iter().for_each(|h| h.encode(&mut prefix));
        new_da.iter().for_each(|a| a.encode(&mut prefix));
        new_ma.iter().for_each(|a| a.encode(&mut prefix));
        let rewritten = [&prefix[..], &whole[bare_start..]].concat();
        for (m, bufs) in [(&msg, vec![whole.clone()]), (&split, segments.clone())] {
            let re = m
                .reannotate(new_header.as_ref(), new_da.as_ref(), new_ma.as_ref())
                .map_err(fail)?;
            prop_assert_eq!(concat(&re.bare()), concat(&m.bare()));
            prop_assert_eq!(&re.to_contiguous()[..], &rewritten[..]);
            prop_assert_eq!(re.index().body_kind, m.index().body_kind);
            prop_assert_eq!(re.index().body_sections, m.index().body_sections);
            check_contents(&re, &parts, new_header.as_ref(), new_da.as_ref(), new_ma.as_ref())?;
            check_body_shared(&re, &bufs)?;
        }

        // The same sections as a peer might spell them (symbolic descriptors, wide encodings,
        // elided fields): the index follows the new sizes and the contents are unchanged.
        let respelled: Vec<Bytes> = sections
            .iter()
            .enumerate()
            .map(|(i, s)| respell_bytes(&s.to_bytes(), seed ^ i as u64))
            .collect();
        let lens: Vec<usize> = respelled.iter().map(Bytes::len).collect();
        let peer = Message::decode(Bytes::from(respelled.concat())).map_err(fail)?;
        prop_assert_eq!(peer.index(), &expected_index(&sections, &lens));
        check_contents(
            &peer,
            &parts,
            parts.header.as_ref(),
            parts.delivery_annotations.as_ref(),
            parts.message_annotations.as_ref(),
        )?;
        let split = Message::from_segments(respelled).map_err(fail)?;
        prop_assert_eq!(split.index(), peer.index());
        prop_assert_eq!(split.body_sections().map_err(fail)?, parts.body_sections());
    }
}

// ---------------------------------------------------------------------------------------------
// Sequence numbers (RFC-1982, §2.8.9).
// ---------------------------------------------------------------------------------------------

const HALF: u32 = 0x8000_0000;

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn sequence_numbers_ahead_are_greater(a in any::<u32>(), n in 1u32..HALF) {
        let a = SequenceNo(a);
        let b = a.wrapping_add(n);
        prop_assert_eq!(a.partial_cmp(&b), Some(Ordering::Less));
        prop_assert_eq!(b.partial_cmp(&a), Some(Ordering::Greater));
        prop_assert!(a < b);
        prop_assert!(b > a);
        prop_assert_ne!(a, b);
        prop_assert_eq!(b.distance_from(a), n);
    }

    #[test]
    fn sequence_numbers_half_apart_are_incomparable(a in any::<u32>()) {
        let a = SequenceNo(a);
        let b = a.wrapping_add(HALF);
        prop_assert_eq!(a.partial_cmp(&b), None);
        prop_assert_eq!(b.partial_cmp(&a), None);
        // Every comparison operator is false for incomparable numbers.
        prop_assert_eq!([a < b, a > b, a <= b, a >= b], [false; 4]);
    }

    #[test]
    fn sequence_numbers_more_than_half_ahead_are_behind(a in any::<u32>(), n in (HALF + 1)..=u32::MAX) {
        let a = SequenceNo(a);
        prop_assert_eq!(a.partial_cmp(&a.wrapping_add(n)), Some(Ordering::Greater));
    }

    #[test]
    fn sequence_number_order_is_antisymmetric(a in any::<u32>(), b in any::<u32>()) {
        let (a, b) = (SequenceNo(a), SequenceNo(b));
        prop_assert_eq!(a.partial_cmp(&b), b.partial_cmp(&a).map(Ordering::reverse));
        prop_assert_eq!(a.partial_cmp(&a), Some(Ordering::Equal));
        prop_assert_eq!(a.next(), a.wrapping_add(1));
    }
}

#[test]
fn sequence_numbers_wrap() {
    assert!(SequenceNo(u32::MAX) < SequenceNo(0));
    assert!(SequenceNo(u32::MAX).next() == SequenceNo(0));
    assert!(SequenceNo(HALF - 2) > SequenceNo(u32::MAX));
    assert_eq!(
        SequenceNo(HALF - 1).partial_cmp(&SequenceNo(u32::MAX)),
        None
    );
    assert_eq!(SequenceNo(0).partial_cmp(&SequenceNo(HALF)), None);
    assert_eq!(SequenceNo(5).distance_from(SequenceNo(u32::MAX - 4)), 10);
}
