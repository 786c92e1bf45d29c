//! Generators and a hand-rolled non-canonical encoder for the property tests in `roundtrip.rs`.
//!
//! The encoder here is deliberately independent of the library's: it picks, at random, any
//! legal encoding of each value (wide sizes, full-width integers, `boolean` 0x56, zero-width
//! array constructors, symbolic descriptors, elided trailing composite fields), so the tests
//! can check that the decoder accepts every spelling a peer may use.

use bytes::Bytes;
use ferry_codec::definitions::{
    DeliveryTag, Error, ErrorCondition, Fields, ReceiverSettleMode, Role, SenderSettleMode,
    SequenceNo,
};
use ferry_codec::delivery_state::{
    Accepted, DeliveryState, Modified, Received, Rejected, Released,
};
use ferry_codec::messaging::{
    AmqpSequence, AmqpValue, ApplicationProperties, Data, DeleteOnClose, DeleteOnNoLinks,
    DeleteOnNoLinksOrMessages, DeleteOnNoMessages, DeliveryAnnotations, Footer, Header,
    LifetimePolicy, MessageAnnotations, MessageId, Properties, Section, Source, Target, TargetKind,
    TerminusDurability, TerminusExpiryPolicy,
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
    Array, DecodeLimits, Decoder, Described, ElemType, Map, Str, Symbol, Timestamp, Uuid, Value,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

// ---------------------------------------------------------------------------------------------
// Descriptors the spec defines.
// ---------------------------------------------------------------------------------------------

/// (code, name, is a composite list) for every descriptor the codec knows.
pub(crate) fn known_descriptors() -> Vec<(u64, &'static str, bool)> {
    macro_rules! table {
        ($($list:literal: $($t:ty),*;)*) => {
            vec![$($((<$t>::DESCRIPTOR_CODE, <$t>::DESCRIPTOR_NAME, $list)),*),*]
        };
    }
    table! {
        true: Open, Begin, Attach, Flow, Transfer, Disposition, Detach, End, Close, Error,
            Received, Accepted, Rejected, Released, Modified, Source, Target, DeleteOnClose,
            DeleteOnNoLinks, DeleteOnNoMessages, DeleteOnNoLinksOrMessages, Coordinator,
            Declare, Discharge, Declared, TransactionalState, SaslMechanisms, SaslInit,
            SaslChallenge, SaslResponse, SaslOutcome, Header, Properties<'static>;
        false: DeliveryAnnotations, MessageAnnotations, ApplicationProperties, Data,
            AmqpSequence, AmqpValue, Footer;
    }
}

fn is_known_code(code: u64) -> bool {
    known_descriptors().iter().any(|(c, _, _)| *c == code)
}

fn is_known_name(name: &str) -> bool {
    known_descriptors().iter().any(|(_, n, _)| *n == name)
}

// ---------------------------------------------------------------------------------------------
// A tiny deterministic random source for the encoding choices.
// ---------------------------------------------------------------------------------------------

/// splitmix64: the choices must be reproducible from the proptest-generated seed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick(&mut self, options: &[u8]) -> u8 {
        options[self.below(options.len())]
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-rolled encoder that picks any legal encoding.
// ---------------------------------------------------------------------------------------------

/// Format codes (§1.6), spelled out here so the test does not trust the library's table.
pub(crate) mod code {
    pub(crate) const NULL: u8 = 0x40;
    pub(crate) const TRUE: u8 = 0x41;
    pub(crate) const FALSE: u8 = 0x42;
    pub(crate) const BOOLEAN: u8 = 0x56;
    pub(crate) const UBYTE: u8 = 0x50;
    pub(crate) const USHORT: u8 = 0x60;
    pub(crate) const UINT: u8 = 0x70;
    pub(crate) const SMALLUINT: u8 = 0x52;
    pub(crate) const UINT0: u8 = 0x43;
    pub(crate) const ULONG: u8 = 0x80;
    pub(crate) const SMALLULONG: u8 = 0x53;
    pub(crate) const ULONG0: u8 = 0x44;
    pub(crate) const BYTE: u8 = 0x51;
    pub(crate) const SHORT: u8 = 0x61;
    pub(crate) const INT: u8 = 0x71;
    pub(crate) const SMALLINT: u8 = 0x54;
    pub(crate) const LONG: u8 = 0x81;
    pub(crate) const SMALLLONG: u8 = 0x55;
    pub(crate) const FLOAT: u8 = 0x72;
    pub(crate) const DOUBLE: u8 = 0x82;
    pub(crate) const DECIMAL32: u8 = 0x74;
    pub(crate) const DECIMAL64: u8 = 0x84;
    pub(crate) const DECIMAL128: u8 = 0x94;
    pub(crate) const CHAR: u8 = 0x73;
    pub(crate) const TIMESTAMP: u8 = 0x83;
    pub(crate) const UUID: u8 = 0x98;
    pub(crate) const VBIN8: u8 = 0xa0;
    pub(crate) const VBIN32: u8 = 0xb0;
    pub(crate) const STR8: u8 = 0xa1;
    pub(crate) const STR32: u8 = 0xb1;
    pub(crate) const SYM8: u8 = 0xa3;
    pub(crate) const SYM32: u8 = 0xb3;
    pub(crate) const LIST0: u8 = 0x45;
    pub(crate) const LIST8: u8 = 0xc0;
    pub(crate) const LIST32: u8 = 0xd0;
    pub(crate) const MAP8: u8 = 0xc1;
    pub(crate) const MAP32: u8 = 0xd1;
    pub(crate) const ARRAY8: u8 = 0xe0;
    pub(crate) const ARRAY32: u8 = 0xf0;
}

use code as c;

/// A compound's encoded insides: a list's or map's items, or an array's constructor and
/// items; plus its element count.
struct Prep {
    body: Vec<u8>,
    count: usize,
}

impl Prep {
    /// Whether the one-byte size and count fields can hold it.
    fn fits8(&self) -> bool {
        self.body.len() < 255 && self.count <= 255
    }
}

/// Writes `v` with an encoding chosen by `r` among all legal ones.
pub(crate) fn write(v: &Value, r: &mut Rng, out: &mut Vec<u8>) {
    if let Value::Described(d) = v {
        out.push(0x00);
        write(&d.descriptor, r, out);
        write(&d.value, r, out);
        return;
    }
    let prep = prepare(v, r);
    let code = r.pick(&codes_for(v, prep.as_ref()));
    out.push(code);
    write_data(code, v, prep.as_ref(), out);
}

/// `v` encoded with encodings chosen by a generator seeded with `seed`.
pub(crate) fn write_any(v: &Value, seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    write(v, &mut Rng(seed), &mut out);
    out
}

fn prepare(v: &Value, r: &mut Rng) -> Option<Prep> {
    match v {
        Value::List(items) => {
            let mut body = Vec::new();
            items.iter().for_each(|i| write(i, r, &mut body));
            Some(Prep {
                body,
                count: items.len(),
            })
        }
        Value::Map(m) => {
            let mut body = Vec::new();
            for (k, v) in m.iter() {
                write(k, r, &mut body);
                write(v, r, &mut body);
            }
            Some(Prep {
                body,
                count: m.len() * 2,
            })
        }
        Value::Array(a) => Some(array_content(a, r)),
        _ => None,
    }
}

fn array_content(a: &Array, r: &mut Rng) -> Prep {
    let (descriptor, inner) = match a.elem() {
        ElemType::Described { descriptor, inner } => (Some(&**descriptor), &**inner),
        e => (None, e),
    };
    let preps: Vec<Option<Prep>> = a.items().iter().map(|v| prepare(v, r)).collect();
    let mut options = all_codes(inner);
    for (v, p) in a.items().iter().zip(&preps) {
        let ok = codes_for(v, p.as_ref());
        options.retain(|code| ok.contains(code));
    }
    let code = r.pick(&options);
    let mut body = Vec::new();
    if let Some(d) = descriptor {
        body.push(0x00);
        write(d, r, &mut body);
    }
    body.push(code);
    for (v, p) in a.items().iter().zip(&preps) {
        write_data(code, v, p.as_ref(), &mut body);
    }
    Prep {
        body,
        count: a.items().len(),
    }
}

/// Every format code that can carry a value of type `elem`.
fn all_codes(elem: &ElemType) -> Vec<u8> {
    match elem {
        ElemType::Null => vec![c::NULL],
        ElemType::Bool => vec![c::BOOLEAN, c::TRUE, c::FALSE],
        ElemType::Ubyte => vec![c::UBYTE],
        ElemType::Ushort => vec![c::USHORT],
        ElemType::Uint => vec![c::UINT, c::SMALLUINT, c::UINT0],
        ElemType::Ulong => vec![c::ULONG, c::SMALLULONG, c::ULONG0],
        ElemType::Byte => vec![c::BYTE],
        ElemType::Short => vec![c::SHORT],
        ElemType::Int => vec![c::INT, c::SMALLINT],
        ElemType::Long => vec![c::LONG, c::SMALLLONG],
        ElemType::Float => vec![c::FLOAT],
        ElemType::Double => vec![c::DOUBLE],
        ElemType::Decimal32 => vec![c::DECIMAL32],
        ElemType::Decimal64 => vec![c::DECIMAL64],
        ElemType::Decimal128 => vec![c::DECIMAL128],
        ElemType::Char => vec![c::CHAR],
        ElemType::Timestamp => vec![c::TIMESTAMP],
        ElemType::Uuid => vec![c::UUID],
        ElemType::Binary => vec![c::VBIN32, c::VBIN8],
        ElemType::String => vec![c::STR32, c::STR8],
        ElemType::Symbol => vec![c::SYM32, c::SYM8],
        ElemType::List => vec![c::LIST32, c::LIST8, c::LIST0],
        ElemType::Map => vec![c::MAP32, c::MAP8],
        ElemType::Array => vec![c::ARRAY32, c::ARRAY8],
        ElemType::Described { .. } => panic!("nested described element type"),
    }
}

/// Every format code that can carry this particular value (widest first).
fn codes_for(v: &Value, prep: Option<&Prep>) -> Vec<u8> {
    let fits8 = prep.is_some_and(Prep::fits8);
    let mut out = match v {
        Value::Null => vec![c::NULL],
        Value::Bool(true) => vec![c::BOOLEAN, c::TRUE],
        Value::Bool(false) => vec![c::BOOLEAN, c::FALSE],
        Value::Ubyte(_) => vec![c::UBYTE],
        Value::Ushort(_) => vec![c::USHORT],
        Value::Uint(x) => {
            let mut o = vec![c::UINT];
            if *x <= 255 {
                o.push(c::SMALLUINT);
            }
            if *x == 0 {
                o.push(c::UINT0);
            }
            o
        }
        Value::Ulong(x) => {
            let mut o = vec![c::ULONG];
            if *x <= 255 {
                o.push(c::SMALLULONG);
            }
            if *x == 0 {
                o.push(c::ULONG0);
            }
            o
        }
        Value::Byte(_) => vec![c::BYTE],
        Value::Short(_) => vec![c::SHORT],
        Value::Int(x) => {
            vec![c::INT, c::SMALLINT][..if i8::try_from(*x).is_ok() { 2 } else { 1 }].to_vec()
        }
        Value::Long(x) => {
            vec![c::LONG, c::SMALLLONG][..if i8::try_from(*x).is_ok() { 2 } else { 1 }].to_vec()
        }
        Value::Float(_) => vec![c::FLOAT],
        Value::Double(_) => vec![c::DOUBLE],
        Value::Decimal32(_) => vec![c::DECIMAL32],
        Value::Decimal64(_) => vec![c::DECIMAL64],
        Value::Decimal128(_) => vec![c::DECIMAL128],
        Value::Char(_) => vec![c::CHAR],
        Value::Timestamp(_) => vec![c::TIMESTAMP],
        Value::Uuid(_) => vec![c::UUID],
        Value::Binary(b) => {
            vec![c::VBIN32, c::VBIN8][..if b.len() <= 255 { 2 } else { 1 }].to_vec()
        }
        Value::String(s) => vec![c::STR32, c::STR8][..if s.len() <= 255 { 2 } else { 1 }].to_vec(),
        Value::Symbol(s) => vec![c::SYM32, c::SYM8][..if s.len() <= 255 { 2 } else { 1 }].to_vec(),
        Value::List(items) => {
            let mut o = vec![c::LIST32];
            if fits8 {
                o.push(c::LIST8);
            }
            if items.is_empty() {
                o.push(c::LIST0);
            }
            o
        }
        Value::Map(_) => vec![c::MAP32],
        Value::Array(_) => vec![c::ARRAY32],
        Value::Described(_) => panic!("described values have no format code"),
    };
    match v {
        Value::Map(_) if fits8 => out.push(c::MAP8),
        Value::Array(_) if fits8 => out.push(c::ARRAY8),
        _ => {}
    }
    out
}

fn put_len(out: &mut Vec<u8>, wide: bool, n: usize) {
    if wide {
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(u8::try_from(n).expect("8-bit length"));
    }
}

/// Writes `v`'s data (everything after the format code) for `code`.
fn write_data(code: u8, v: &Value, prep: Option<&Prep>, out: &mut Vec<u8>) {
    match (code, v) {
        (c::NULL | c::TRUE | c::FALSE | c::UINT0 | c::ULONG0 | c::LIST0, _) => {}
        (c::BOOLEAN, Value::Bool(b)) => out.push(u8::from(*b)),
        (c::UBYTE, Value::Ubyte(x)) => out.push(*x),
        (c::USHORT, Value::Ushort(x)) => out.extend_from_slice(&x.to_be_bytes()),
        (c::UINT, Value::Uint(x)) => out.extend_from_slice(&x.to_be_bytes()),
        (c::SMALLUINT, Value::Uint(x)) => out.push(u8::try_from(*x).expect("small")),
        (c::ULONG, Value::Ulong(x)) => out.extend_from_slice(&x.to_be_bytes()),
        (c::SMALLULONG, Value::Ulong(x)) => out.push(u8::try_from(*x).expect("small")),
        (c::BYTE, Value::Byte(x)) => out.extend_from_slice(&x.to_be_bytes()),
        (c::SHORT, Value::Short(x)) => out.extend_from_slice(&x.to_be_bytes()),
        (c::INT, Value::Int(x)) => out.extend_from_slice(&x.to_be_bytes()),
        (c::SMALLINT, Value::Int(x)) => out.push(i8::try_from(*x).expect("small") as u8),
        (c::LONG, Value::Long(x)) => out.extend_from_slice(&x.to_be_bytes()),
        (c::SMALLLONG, Value::Long(x)) => out.push(i8::try_from(*x).expect("small") as u8),
        (c::FLOAT, Value::Float(x)) => out.extend_from_slice(&x.to_bits().to_be_bytes()),
        (c::DOUBLE, Value::Double(x)) => out.extend_from_slice(&x.to_bits().to_be_bytes()),
        (c::DECIMAL32, Value::Decimal32(x)) => out.extend_from_slice(&x.0),
        (c::DECIMAL64, Value::Decimal64(x)) => out.extend_from_slice(&x.0),
        (c::DECIMAL128, Value::Decimal128(x)) => out.extend_from_slice(&x.0),
        (c::CHAR, Value::Char(x)) => out.extend_from_slice(&u32::from(*x).to_be_bytes()),
        (c::TIMESTAMP, Value::Timestamp(t)) => out.extend_from_slice(&t.0.to_be_bytes()),
        (c::UUID, Value::Uuid(u)) => out.extend_from_slice(&u.0),
        (c::VBIN8 | c::VBIN32, Value::Binary(b)) => {
            put_len(out, code == c::VBIN32, b.len());
            out.extend_from_slice(b);
        }
        (c::STR8 | c::STR32, Value::String(s)) => {
            put_len(out, code == c::STR32, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        (c::SYM8 | c::SYM32, Value::Symbol(s)) => {
            put_len(out, code == c::SYM32, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        (c::LIST8 | c::MAP8 | c::ARRAY8 | c::LIST32 | c::MAP32 | c::ARRAY32, _) => {
            let p = prep.expect("compound value prepared");
            let wide = matches!(code, c::LIST32 | c::MAP32 | c::ARRAY32);
            let width = if wide { 4 } else { 1 };
            put_len(out, wide, p.body.len() + width);
            put_len(out, wide, p.count);
            out.extend_from_slice(&p.body);
        }
        (code, v) => panic!("format code 0x{code:02x} cannot carry {v:?}"),
    }
}

/// Re-spells an encoded value as a peer might: every descriptor the spec defines may become
/// its symbolic name, trailing null fields of composites may be dropped, and every value gets
/// a random legal encoding.
pub(crate) fn respell_bytes(bytes: &Bytes, seed: u64) -> Bytes {
    let v: Value = Decoder::decode_exact(bytes, DecodeLimits::DEFAULT).expect("canonical bytes");
    let mut r = Rng(seed);
    let v = respell(v, &mut r);
    let mut out = Vec::new();
    write(&v, &mut r, &mut out);
    Bytes::from(out)
}

fn respell(v: Value, r: &mut Rng) -> Value {
    match v {
        Value::Described(d) => {
            let Described { descriptor, value } = *d;
            let known = match descriptor {
                Value::Ulong(code) => known_descriptors().into_iter().find(|(c, _, _)| *c == code),
                _ => None,
            };
            let value = match (respell(value, r), known) {
                (Value::List(mut items), Some((_, _, true))) => {
                    let trailing = items.iter().rev().take_while(|v| v.is_null()).count();
                    let drop = r.below(trailing + 1);
                    items.truncate(items.len() - drop);
                    Value::List(items)
                }
                (value, _) => value,
            };
            let descriptor = match known {
                Some((_, name, _)) if r.coin() => Value::Symbol(Symbol::from_static(name)),
                _ => descriptor,
            };
            Value::Described(Box::new(Described { descriptor, value }))
        }
        Value::List(items) => Value::List(items.into_iter().map(|v| respell(v, r)).collect()),
        Value::Map(m) => Value::Map(Map(m
            .0
            .into_iter()
            .map(|(k, v)| (respell(k, r), respell(v, r)))
            .collect())),
        v => v,
    }
}

// ---------------------------------------------------------------------------------------------
// Value generators.
// ---------------------------------------------------------------------------------------------

/// Floats by bit pattern: any bits, plus quiet, signalling and negative NaNs, infinities and
/// signed zeros.
pub(crate) fn f32s() -> BoxedStrategy<f32> {
    prop_oneof![
        3 => any::<u32>(),
        1 => select(vec![
            0x7fc0_0000u32, 0xffc0_0000, 0x7f80_0001, 0x7fbf_ffff, 0xffff_ffff, 0x7fc0_1234,
            0x7f80_0000, 0xff80_0000, 0x8000_0000, 0,
        ]),
    ]
    .prop_map(f32::from_bits)
    .boxed()
}

/// Doubles by bit pattern, as [`f32s`].
pub(crate) fn f64s() -> BoxedStrategy<f64> {
    prop_oneof![
        3 => any::<u64>(),
        1 => select(vec![
            0x7ff8_0000_0000_0000u64, 0xfff8_0000_0000_0000, 0x7ff0_0000_0000_0001,
            0x7ff7_ffff_ffff_ffff, 0xffff_ffff_ffff_ffff, 0x7ff0_0000_0000_0000,
            0xfff0_0000_0000_0000, 0x8000_0000_0000_0000, 0,
        ]),
    ]
    .prop_map(f64::from_bits)
    .boxed()
}

/// uints biased towards the three encodings: 0, one byte, four bytes.
pub(crate) fn u32s() -> BoxedStrategy<u32> {
    prop_oneof![Just(0u32), 0u32..=255, any::<u32>()].boxed()
}

/// ulongs biased towards the three encodings.
pub(crate) fn u64s() -> BoxedStrategy<u64> {
    prop_oneof![Just(0u64), 0u64..=255, any::<u64>()].boxed()
}

/// Bytes, sometimes longer than 255 (vbin32).
pub(crate) fn binary() -> BoxedStrategy<Bytes> {
    prop_oneof![
        6 => vec(any::<u8>(), 0..24),
        1 => vec(any::<u8>(), 256..320),
    ]
    .prop_map(Bytes::from)
    .boxed()
}

/// Unicode text, mostly short, sometimes longer than 255 bytes (str32).
pub(crate) fn text() -> BoxedStrategy<String> {
    prop_oneof![
        6 => vec(any::<char>(), 0..12),
        1 => vec(any::<char>(), 256..300),
    ]
    .prop_map(|cs| cs.into_iter().collect())
    .boxed()
}

/// `text` as a [`Str`].
pub(crate) fn string() -> BoxedStrategy<Str> {
    text().prop_map(Str::from).boxed()
}

/// ASCII text (any of the 128 code points).
pub(crate) fn ascii(len: std::ops::Range<usize>) -> BoxedStrategy<String> {
    vec(0u8..0x80, len)
        .prop_map(|b| String::from_utf8(b).expect("ascii"))
        .boxed()
}

/// A symbol, mostly short, sometimes longer than 255 bytes (sym32).
pub(crate) fn symbol() -> BoxedStrategy<Symbol> {
    prop_oneof![6 => ascii(0..16), 1 => ascii(256..300)]
        .prop_map(|s| Symbol::try_from(s).expect("ascii"))
        .boxed()
}

/// A descriptor for a free-standing described value: a `ulong` (all three encodings) or a
/// `symbol` (sym8 and sym32), but never one the spec defines, so that re-spelling composites
/// cannot touch it.
pub(crate) fn descriptor() -> BoxedStrategy<Value> {
    prop_oneof![
        2 => u64s().prop_filter("spec descriptor", |c| !is_known_code(*c)).prop_map(Value::Ulong),
        1 => (1u64..=0xffff).prop_map(|id| Value::Ulong(0x0000_468c_0000_0000 | id)),
        2 => symbol()
            .prop_filter("spec descriptor", |s| !is_known_name(s.as_str()))
            .prop_map(Value::Symbol),
    ]
    .boxed()
}

/// Undescribed values of a primitive element type.
pub(crate) fn typed(elem: &ElemType) -> BoxedStrategy<Value> {
    match elem {
        ElemType::Null => Just(Value::Null).boxed(),
        ElemType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        ElemType::Ubyte => any::<u8>().prop_map(Value::Ubyte).boxed(),
        ElemType::Ushort => any::<u16>().prop_map(Value::Ushort).boxed(),
        ElemType::Uint => u32s().prop_map(Value::Uint).boxed(),
        ElemType::Ulong => u64s().prop_map(Value::Ulong).boxed(),
        ElemType::Byte => any::<i8>().prop_map(Value::Byte).boxed(),
        ElemType::Short => any::<i16>().prop_map(Value::Short).boxed(),
        ElemType::Int => prop_oneof![-128i32..=127, any::<i32>()]
            .prop_map(Value::Int)
            .boxed(),
        ElemType::Long => prop_oneof![-128i64..=127, any::<i64>()]
            .prop_map(Value::Long)
            .boxed(),
        ElemType::Float => f32s().prop_map(Value::Float).boxed(),
        ElemType::Double => f64s().prop_map(Value::Double).boxed(),
        ElemType::Decimal32 => any::<[u8; 4]>()
            .prop_map(|b| Value::Decimal32(Decimal32(b)))
            .boxed(),
        ElemType::Decimal64 => any::<[u8; 8]>()
            .prop_map(|b| Value::Decimal64(Decimal64(b)))
            .boxed(),
        ElemType::Decimal128 => any::<[u8; 16]>()
            .prop_map(|b| Value::Decimal128(Decimal128(b)))
            .boxed(),
        ElemType::Char => any::<char>().prop_map(Value::Char).boxed(),
        ElemType::Timestamp => any::<i64>()
            .prop_map(|t| Value::Timestamp(Timestamp(t)))
            .boxed(),
        ElemType::Uuid => any::<[u8; 16]>().prop_map(|u| Value::Uuid(Uuid(u))).boxed(),
        ElemType::Binary => binary().prop_map(Value::Binary).boxed(),
        ElemType::String => string().prop_map(Value::String).boxed(),
        ElemType::Symbol => symbol().prop_map(Value::Symbol).boxed(),
        other => panic!("not a primitive element type: {other:?}"),
    }
}

/// Every primitive element type.
pub(crate) fn primitive_types() -> Vec<ElemType> {
    use ElemType as E;
    vec![
        E::Null,
        E::Bool,
        E::Ubyte,
        E::Ushort,
        E::Uint,
        E::Ulong,
        E::Byte,
        E::Short,
        E::Int,
        E::Long,
        E::Float,
        E::Double,
        E::Decimal32,
        E::Decimal64,
        E::Decimal128,
        E::Char,
        E::Timestamp,
        E::Uuid,
        E::Binary,
        E::String,
        E::Symbol,
    ]
}

/// Any primitive value.
pub(crate) fn leaf() -> BoxedStrategy<Value> {
    select(primitive_types())
        .prop_flat_map(|e| typed(&e))
        .boxed()
}

fn described(descriptor: Value, value: Value) -> Value {
    Value::Described(Box::new(Described { descriptor, value }))
}

fn array_or_panic(elem: ElemType, items: Vec<Value>) -> Array {
    Array::new(elem, items).expect("items match the element type")
}

fn described_elem(descriptor: Value, inner: ElemType) -> ElemType {
    ElemType::Described {
        descriptor: Box::new(descriptor),
        inner: Box::new(inner),
    }
}

/// Arrays of a primitive element type, plain or described, with up to `max` items.
pub(crate) fn primitive_array(max: usize) -> BoxedStrategy<Array> {
    (option::of(descriptor()), select(primitive_types()))
        .prop_flat_map(move |(d, e)| {
            let elem = match d {
                Some(d) => described_elem(d, e.clone()),
                None => e.clone(),
            };
            vec(typed(&e), 0..max).prop_map(move |items| array_or_panic(elem.clone(), items))
        })
        .boxed()
}

/// Arrays of arrays (of arrays) of primitives.
pub(crate) fn nested_array() -> BoxedStrategy<Array> {
    let two = vec(primitive_array(6).prop_map(Value::Array), 0..4)
        .prop_map(|items| array_or_panic(ElemType::Array, items))
        .boxed();
    let three = vec(two.clone().prop_map(Value::Array), 0..3)
        .prop_map(|items| array_or_panic(ElemType::Array, items));
    prop_oneof![2 => two, 1 => three].boxed()
}

/// Arrays whose items are lists, maps or arrays built from `inner`, possibly described.
fn compound_array(inner: BoxedStrategy<Value>) -> BoxedStrategy<Array> {
    let lists = vec(vec(inner.clone(), 0..4).prop_map(Value::List), 0..4)
        .prop_map(|items| (ElemType::List, items));
    let maps = vec(
        vec((inner.clone(), inner), 0..3).prop_map(|p| Value::Map(Map(p))),
        0..4,
    )
    .prop_map(|items| (ElemType::Map, items));
    let arrays = vec(primitive_array(6).prop_map(Value::Array), 0..4)
        .prop_map(|items| (ElemType::Array, items));
    (option::of(descriptor()), prop_oneof![lists, maps, arrays])
        .prop_map(|(d, (e, items))| {
            let elem = match d {
                Some(d) => described_elem(d, e),
                None => e,
            };
            array_or_panic(elem, items)
        })
        .boxed()
}

/// Any value, compounds nested a few levels deep.
pub(crate) fn value() -> BoxedStrategy<Value> {
    leaf()
        .prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                3 => vec(inner.clone(), 0..6).prop_map(Value::List),
                2 => vec((inner.clone(), inner.clone()), 0..4).prop_map(|p| Value::Map(Map(p))),
                2 => primitive_array(10).prop_map(Value::Array),
                1 => nested_array().prop_map(Value::Array),
                1 => compound_array(inner.clone()).prop_map(Value::Array),
                2 => (descriptor(), inner).prop_map(|(d, v)| described(d, v)),
            ]
        })
        .boxed()
}

/// A value other than null (an `opt` field holding null reads back as absent).
pub(crate) fn non_null_value() -> BoxedStrategy<Value> {
    value().prop_filter("null", |v| !v.is_null()).boxed()
}

/// A map with keys and values of any type.
pub(crate) fn map() -> BoxedStrategy<Map> {
    vec((value(), value()), 0..4).prop_map(Map).boxed()
}

// ---------------------------------------------------------------------------------------------
// Definitions.
// ---------------------------------------------------------------------------------------------

/// A `fields` map.
pub(crate) fn fields() -> BoxedStrategy<Fields> {
    vec((symbol(), value()), 0..3).prop_map(Fields).boxed()
}

/// A `multiple` symbol field: empty (null) or an array.
pub(crate) fn symbols() -> BoxedStrategy<Vec<Symbol>> {
    vec(symbol(), 0..4).boxed()
}

/// A sequence number.
pub(crate) fn seq() -> BoxedStrategy<SequenceNo> {
    u32s().prop_map(SequenceNo).boxed()
}

/// A spec condition, or a vendor one.
pub(crate) fn condition() -> BoxedStrategy<ErrorCondition> {
    prop_oneof![
        select(ErrorCondition::ALL.to_vec()),
        symbol().prop_map(ErrorCondition::from_symbol),
    ]
    .boxed()
}

prop_compose! {
    /// An error with every field arbitrary.
    pub(crate) fn error()(
        condition in condition(),
        description in option::of(string()),
        info in option::of(fields()),
    ) -> Error {
        Error { condition, description, info }
    }
}

/// A role.
pub(crate) fn role() -> BoxedStrategy<Role> {
    select(vec![Role::Sender, Role::Receiver]).boxed()
}

/// A sender settle mode.
pub(crate) fn snd_settle_mode() -> BoxedStrategy<SenderSettleMode> {
    select(vec![
        SenderSettleMode::Unsettled,
        SenderSettleMode::Settled,
        SenderSettleMode::Mixed,
    ])
    .boxed()
}

/// A receiver settle mode.
pub(crate) fn rcv_settle_mode() -> BoxedStrategy<ReceiverSettleMode> {
    select(vec![ReceiverSettleMode::First, ReceiverSettleMode::Second]).boxed()
}

/// A delivery tag of up to 32 bytes.
pub(crate) fn delivery_tag() -> BoxedStrategy<DeliveryTag> {
    vec(any::<u8>(), 0..=32)
        .prop_map(|b| DeliveryTag::new(Bytes::from(b)).expect("short tag"))
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Delivery states and transactions.
// ---------------------------------------------------------------------------------------------

prop_compose! {
    /// `modified` with every field arbitrary.
    pub(crate) fn modified()(
        delivery_failed in option::of(any::<bool>()),
        undeliverable_here in option::of(any::<bool>()),
        message_annotations in option::of(fields()),
    ) -> Modified {
        Modified { delivery_failed, undeliverable_here, message_annotations }
    }
}

/// Any delivery state except the transactional one (an outcome, or `received`).
pub(crate) fn plain_state() -> BoxedStrategy<DeliveryState> {
    prop_oneof![
        (any::<u32>(), u64s()).prop_map(|(section_number, section_offset)| {
            DeliveryState::Received(Received {
                section_number,
                section_offset,
            })
        }),
        Just(DeliveryState::Accepted(Accepted {})),
        option::of(error()).prop_map(|error| DeliveryState::Rejected(Rejected { error })),
        Just(DeliveryState::Released(Released {})),
        modified().prop_map(DeliveryState::Modified),
        binary().prop_map(|txn_id| DeliveryState::Declared(Declared { txn_id })),
    ]
    .boxed()
}

prop_compose! {
    /// `transactional-state` with any outcome (or none).
    pub(crate) fn transactional_state()(
        txn_id in binary(),
        outcome in option::of(plain_state().prop_map(Box::new)),
    ) -> TransactionalState {
        TransactionalState { txn_id, outcome }
    }
}

/// Any delivery state.
pub(crate) fn delivery_state() -> BoxedStrategy<DeliveryState> {
    prop_oneof![
        6 => plain_state(),
        1 => transactional_state().prop_map(DeliveryState::Transactional),
    ]
    .boxed()
}

/// `declare`; a null global id is absent, so it is never generated as `Some(Null)`.
pub(crate) fn declare() -> BoxedStrategy<Declare> {
    option::of(non_null_value())
        .prop_map(|global_id| Declare { global_id })
        .boxed()
}

prop_compose! {
    /// `discharge` with every field arbitrary.
    pub(crate) fn discharge()(txn_id in binary(), fail in option::of(any::<bool>())) -> Discharge {
        Discharge { txn_id, fail }
    }
}

/// `coordinator` with arbitrary capabilities.
pub(crate) fn coordinator() -> BoxedStrategy<Coordinator> {
    symbols()
        .prop_map(|capabilities| Coordinator { capabilities })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Termini.
// ---------------------------------------------------------------------------------------------

/// A terminus durability.
pub(crate) fn durability() -> BoxedStrategy<TerminusDurability> {
    select(vec![
        TerminusDurability::None,
        TerminusDurability::Configuration,
        TerminusDurability::UnsettledState,
    ])
    .boxed()
}

/// A terminus expiry policy.
pub(crate) fn expiry_policy() -> BoxedStrategy<TerminusExpiryPolicy> {
    select(vec![
        TerminusExpiryPolicy::LinkDetach,
        TerminusExpiryPolicy::SessionEnd,
        TerminusExpiryPolicy::ConnectionClose,
        TerminusExpiryPolicy::Never,
    ])
    .boxed()
}

prop_compose! {
    /// A source with every field arbitrary.
    pub(crate) fn source()(
        (address, durable, expiry_policy, timeout, dynamic) in (
            option::of(string()), durability(), expiry_policy(), u32s(), any::<bool>(),
        ),
        (dynamic_node_properties, distribution_mode, filter, default_outcome) in (
            option::of(fields()), option::of(symbol()), option::of(fields()),
            option::of(delivery_state()),
        ),
        outcomes in symbols(),
        capabilities in symbols(),
    ) -> Source {
        Source {
            address, durable, expiry_policy, timeout, dynamic, dynamic_node_properties,
            distribution_mode, filter, default_outcome, outcomes, capabilities,
        }
    }
}

prop_compose! {
    /// A target with every field arbitrary.
    pub(crate) fn target()(
        address in option::of(string()),
        durable in durability(),
        expiry_policy in expiry_policy(),
        timeout in u32s(),
        dynamic in any::<bool>(),
        dynamic_node_properties in option::of(fields()),
        capabilities in symbols(),
    ) -> Target {
        Target {
            address, durable, expiry_policy, timeout, dynamic, dynamic_node_properties,
            capabilities,
        }
    }
}

/// An attach target: a node or a coordinator.
pub(crate) fn target_kind() -> BoxedStrategy<TargetKind> {
    prop_oneof![
        target().prop_map(TargetKind::Target),
        coordinator().prop_map(TargetKind::Coordinator),
    ]
    .boxed()
}

/// A lifetime policy.
pub(crate) fn lifetime_policy() -> BoxedStrategy<LifetimePolicy> {
    select(vec![
        LifetimePolicy::DeleteOnClose(DeleteOnClose {}),
        LifetimePolicy::DeleteOnNoLinks(DeleteOnNoLinks {}),
        LifetimePolicy::DeleteOnNoMessages(DeleteOnNoMessages {}),
        LifetimePolicy::DeleteOnNoLinksOrMessages(DeleteOnNoLinksOrMessages {}),
    ])
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// Performatives.
// ---------------------------------------------------------------------------------------------

prop_compose! {
    /// `open` with every field arbitrary.
    pub(crate) fn open()(
        (container_id, hostname, max_frame_size, channel_max, idle_time_out) in (
            string(), option::of(string()), u32s(), any::<u16>(), option::of(u32s()),
        ),
        (outgoing_locales, incoming_locales, offered_capabilities, desired_capabilities) in (
            symbols(), symbols(), symbols(), symbols(),
        ),
        properties in option::of(fields()),
    ) -> Open {
        Open {
            container_id, hostname, max_frame_size, channel_max, idle_time_out,
            outgoing_locales, incoming_locales, offered_capabilities, desired_capabilities,
            properties,
        }
    }
}

prop_compose! {
    /// `begin` with every field arbitrary.
    pub(crate) fn begin()(
        remote_channel in option::of(any::<u16>()),
        next_outgoing_id in seq(),
        incoming_window in u32s(),
        outgoing_window in u32s(),
        handle_max in u32s(),
        offered_capabilities in symbols(),
        desired_capabilities in symbols(),
        properties in option::of(fields()),
    ) -> Begin {
        Begin {
            remote_channel, next_outgoing_id, incoming_window, outgoing_window, handle_max,
            offered_capabilities, desired_capabilities, properties,
        }
    }
}

prop_compose! {
    /// `attach` with every field arbitrary.
    pub(crate) fn attach()(
        (name, handle, role, snd_settle_mode, rcv_settle_mode) in (
            string(), u32s(), role(), snd_settle_mode(), rcv_settle_mode(),
        ),
        (source, target, unsettled, incomplete_unsettled) in (
            option::of(source()), option::of(target_kind()), option::of(map()), any::<bool>(),
        ),
        (initial_delivery_count, max_message_size) in (option::of(seq()), option::of(u64s())),
        (offered_capabilities, desired_capabilities, properties) in (
            symbols(), symbols(), option::of(fields()),
        ),
    ) -> Attach {
        Attach {
            name, handle, role, snd_settle_mode, rcv_settle_mode, source, target, unsettled,
            incomplete_unsettled, initial_delivery_count, max_message_size,
            offered_capabilities, desired_capabilities, properties,
        }
    }
}

prop_compose! {
    /// `flow` with every field arbitrary.
    pub(crate) fn flow()(
        (next_incoming_id, incoming_window, next_outgoing_id, outgoing_window) in (
            option::of(seq()), u32s(), seq(), u32s(),
        ),
        (handle, delivery_count, link_credit, available) in (
            option::of(u32s()), option::of(seq()), option::of(u32s()), option::of(u32s()),
        ),
        (drain, echo, properties) in (any::<bool>(), any::<bool>(), option::of(fields())),
    ) -> Flow {
        Flow {
            next_incoming_id, incoming_window, next_outgoing_id, outgoing_window, handle,
            delivery_count, link_credit, available, drain, echo, properties,
        }
    }
}

prop_compose! {
    /// `transfer` with every field arbitrary.
    pub(crate) fn transfer()(
        (handle, delivery_id, delivery_tag, message_format, settled, more) in (
            u32s(), option::of(seq()), option::of(delivery_tag()), option::of(u32s()),
            option::of(any::<bool>()), any::<bool>(),
        ),
        (rcv_settle_mode, state, resume, aborted, batchable) in (
            option::of(rcv_settle_mode()), option::of(delivery_state()), any::<bool>(),
            any::<bool>(), any::<bool>(),
        ),
    ) -> Transfer {
        Transfer {
            handle, delivery_id, delivery_tag, message_format, settled, more, rcv_settle_mode,
            state, resume, aborted, batchable,
        }
    }
}

prop_compose! {
    /// `disposition` with every field arbitrary.
    pub(crate) fn disposition()(
        role in role(),
        first in seq(),
        last in option::of(seq()),
        settled in any::<bool>(),
        state in option::of(delivery_state()),
        batchable in any::<bool>(),
    ) -> Disposition {
        Disposition { role, first, last, settled, state, batchable }
    }
}

prop_compose! {
    /// `detach` with every field arbitrary.
    pub(crate) fn detach()(handle in u32s(), closed in any::<bool>(), error in option::of(error()))
        -> Detach {
        Detach { handle, closed, error }
    }
}

/// Any performative.
pub(crate) fn performative() -> BoxedStrategy<Performative> {
    prop_oneof![
        open().prop_map(Performative::Open),
        begin().prop_map(Performative::Begin),
        attach().prop_map(|a| Performative::Attach(Box::new(a))),
        flow().prop_map(Performative::Flow),
        transfer().prop_map(Performative::Transfer),
        disposition().prop_map(Performative::Disposition),
        detach().prop_map(Performative::Detach),
        option::of(error()).prop_map(|error| Performative::End(End { error })),
        option::of(error()).prop_map(|error| Performative::Close(Close { error })),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// SASL.
// ---------------------------------------------------------------------------------------------

/// A SASL outcome code.
pub(crate) fn sasl_code() -> BoxedStrategy<SaslCode> {
    select(vec![
        SaslCode::Ok,
        SaslCode::Auth,
        SaslCode::Sys,
        SaslCode::SysPerm,
        SaslCode::SysTemp,
    ])
    .boxed()
}

/// Any SASL frame body; mechanisms are mandatory and multiple, so never empty (§1.4).
pub(crate) fn sasl_body() -> BoxedStrategy<SaslFrameBody> {
    prop_oneof![
        vec(symbol(), 1..4).prop_map(|sasl_server_mechanisms| {
            SaslFrameBody::Mechanisms(SaslMechanisms {
                sasl_server_mechanisms,
            })
        }),
        (symbol(), option::of(binary()), option::of(string())).prop_map(
            |(mechanism, initial_response, hostname)| {
                SaslFrameBody::Init(SaslInit {
                    mechanism,
                    initial_response,
                    hostname,
                })
            }
        ),
        binary().prop_map(|challenge| SaslFrameBody::Challenge(SaslChallenge { challenge })),
        binary().prop_map(|response| SaslFrameBody::Response(SaslResponse { response })),
        (sasl_code(), option::of(binary())).prop_map(|(code, additional_data)| {
            SaslFrameBody::Outcome(SaslOutcome {
                code,
                additional_data,
            })
        }),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// Message sections.
// ---------------------------------------------------------------------------------------------

prop_compose! {
    /// A header with every field arbitrary.
    pub(crate) fn header()(
        durable in any::<bool>(),
        priority in any::<u8>(),
        ttl in option::of(u32s()),
        first_acquirer in any::<bool>(),
        delivery_count in u32s(),
    ) -> Header {
        Header { durable, priority, ttl, first_acquirer, delivery_count }
    }
}

/// An owned message-id, borrowed by [`OwnedProperties::borrow`].
#[derive(Debug, Clone)]
pub(crate) enum OwnedId {
    /// ulong id
    Ulong(u64),
    /// uuid id
    Uuid([u8; 16]),
    /// binary id
    Binary(Vec<u8>),
    /// string id
    String(String),
}

impl OwnedId {
    fn borrow(&self) -> MessageId<'_> {
        match self {
            OwnedId::Ulong(v) => MessageId::Ulong(*v),
            OwnedId::Uuid(u) => MessageId::Uuid(Uuid(*u)),
            OwnedId::Binary(b) => MessageId::Binary(b),
            OwnedId::String(s) => MessageId::String(s),
        }
    }
}

/// The owned data behind a [`Properties`] section, which only borrows.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub(crate) struct OwnedProperties {
    pub(crate) message_id: Option<OwnedId>,
    pub(crate) user_id: Option<Vec<u8>>,
    pub(crate) to: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) reply_to: Option<String>,
    pub(crate) correlation_id: Option<OwnedId>,
    pub(crate) content_type: Option<String>,
    pub(crate) content_encoding: Option<String>,
    pub(crate) absolute_expiry_time: Option<i64>,
    pub(crate) creation_time: Option<i64>,
    pub(crate) group_id: Option<String>,
    pub(crate) group_sequence: Option<u32>,
    pub(crate) reply_to_group_id: Option<String>,
}

impl OwnedProperties {
    /// The section, pointing into `self`.
    pub(crate) fn borrow(&self) -> Properties<'_> {
        use ferry_codec::decode::SymbolRef;
        Properties {
            message_id: self.message_id.as_ref().map(OwnedId::borrow),
            user_id: self.user_id.as_deref(),
            to: self.to.as_deref(),
            subject: self.subject.as_deref(),
            reply_to: self.reply_to.as_deref(),
            correlation_id: self.correlation_id.as_ref().map(OwnedId::borrow),
            content_type: self.content_type.as_deref().map(SymbolRef),
            content_encoding: self.content_encoding.as_deref().map(SymbolRef),
            absolute_expiry_time: self.absolute_expiry_time.map(Timestamp),
            creation_time: self.creation_time.map(Timestamp),
            group_id: self.group_id.as_deref(),
            group_sequence: self.group_sequence,
            reply_to_group_id: self.reply_to_group_id.as_deref(),
        }
    }
}

/// A message-id of any of the four types.
pub(crate) fn message_id() -> BoxedStrategy<OwnedId> {
    prop_oneof![
        u64s().prop_map(OwnedId::Ulong),
        any::<[u8; 16]>().prop_map(OwnedId::Uuid),
        binary().prop_map(|b| OwnedId::Binary(b.to_vec())),
        text().prop_map(OwnedId::String),
    ]
    .boxed()
}

prop_compose! {
    /// Properties with every field arbitrary.
    pub(crate) fn properties()(
        (message_id, user_id, to, subject, reply_to, correlation_id) in (
            option::of(message_id()), option::of(binary().prop_map(|b| b.to_vec())),
            option::of(text()), option::of(text()), option::of(text()),
            option::of(message_id()),
        ),
        (content_type, content_encoding, absolute_expiry_time, creation_time) in (
            option::of(ascii(0..20)), option::of(ascii(0..20)), option::of(any::<i64>()),
            option::of(any::<i64>()),
        ),
        (group_id, group_sequence, reply_to_group_id) in (
            option::of(text()), option::of(u32s()), option::of(text()),
        ),
    ) -> OwnedProperties {
        OwnedProperties {
            message_id, user_id, to, subject, reply_to, correlation_id, content_type,
            content_encoding, absolute_expiry_time, creation_time, group_id, group_sequence,
            reply_to_group_id,
        }
    }
}

/// Application properties: string keys, simple values (§3.2.5).
pub(crate) fn application_properties() -> BoxedStrategy<ApplicationProperties> {
    vec((string().prop_map(Value::String), leaf()), 0..5)
        .prop_map(|p| ApplicationProperties(Map(p)))
        .boxed()
}

/// Annotation maps: symbol keys (ulong keys are reserved but legal), any values.
pub(crate) fn annotations() -> BoxedStrategy<Map> {
    vec(
        (
            prop_oneof![
                4 => symbol().prop_map(Value::Symbol),
                1 => u64s().prop_map(Value::Ulong),
            ],
            value(),
        ),
        0..4,
    )
    .prop_map(Map)
    .boxed()
}

/// The body of a message: none, data sections, sequence sections, or one value.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// No body section.
    None,
    /// One or more `data` sections.
    Data(Vec<Data>),
    /// One or more `amqp-sequence` sections.
    Sequence(Vec<AmqpSequence>),
    /// One `amqp-value` section.
    Value(AmqpValue),
}

/// Any message body.
pub(crate) fn body() -> BoxedStrategy<Body> {
    prop_oneof![
        1 => Just(Body::None),
        3 => vec(binary().prop_map(Data), 1..4).prop_map(Body::Data),
        2 => vec(vec(value(), 0..4).prop_map(AmqpSequence), 1..3).prop_map(Body::Sequence),
        2 => value().prop_map(|v| Body::Value(AmqpValue(v))),
    ]
    .boxed()
}

/// The sections of one message, each present or not, in the §3.2 order.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub(crate) struct MessageParts {
    pub(crate) header: Option<Header>,
    pub(crate) delivery_annotations: Option<DeliveryAnnotations>,
    pub(crate) message_annotations: Option<MessageAnnotations>,
    pub(crate) properties: Option<OwnedProperties>,
    pub(crate) application_properties: Option<ApplicationProperties>,
    pub(crate) body: Body,
    pub(crate) footer: Option<Footer>,
}

impl MessageParts {
    /// The body sections, in order.
    pub(crate) fn body_sections(&self) -> Vec<Section<'static>> {
        match &self.body {
            Body::None => Vec::new(),
            Body::Data(d) => d.iter().cloned().map(Section::Data).collect(),
            Body::Sequence(s) => s.iter().cloned().map(Section::AmqpSequence).collect(),
            Body::Value(v) => vec![Section::AmqpValue(v.clone())],
        }
    }

    /// Every section, in order.
    pub(crate) fn sections(&self) -> Vec<Section<'_>> {
        let mut out = Vec::new();
        out.extend(self.header.clone().map(Section::Header));
        out.extend(
            self.delivery_annotations
                .clone()
                .map(Section::DeliveryAnnotations),
        );
        out.extend(
            self.message_annotations
                .clone()
                .map(Section::MessageAnnotations),
        );
        out.extend(
            self.properties
                .as_ref()
                .map(|p| Section::Properties(p.borrow())),
        );
        out.extend(
            self.application_properties
                .clone()
                .map(Section::ApplicationProperties),
        );
        out.extend(self.body_sections());
        out.extend(self.footer.clone().map(Section::Footer));
        out
    }
}

prop_compose! {
    /// A message's sections, each present or not.
    pub(crate) fn message_parts()(
        header in option::of(header()),
        delivery_annotations in option::of(annotations().prop_map(DeliveryAnnotations)),
        message_annotations in option::of(annotations().prop_map(MessageAnnotations)),
        properties in option::of(properties()),
        application_properties in option::of(application_properties()),
        body in body(),
        footer in option::of(annotations().prop_map(Footer)),
    ) -> MessageParts {
        MessageParts {
            header, delivery_annotations, message_annotations, properties,
            application_properties, body, footer,
        }
    }
}
