//! Encoding values in their canonical form (§1.6), into `BytesMut`.
//!
//! Every [`Encode`] type can tell its exact encoded size before writing
//! ([`Encode::encoded_len`]), so a sender can decide how much transfer payload fits under the
//! peer's max-frame-size without encoding twice.
//!
//! # Canonical form
//! The smallest encoding of each value: `true`/`false`, `uint0`/`smalluint`, `ulong0`/
//! `smallulong`, `smallint`/`smalllong` where the value fits, 8-bit sizes for `vbin`, `str`,
//! `sym`, lists, maps and arrays whose contents fit, and `list0` for an empty list. Inside an
//! array all items share one constructor, so the array uses the smallest constructor that
//! fits every item and carries data (`smalluint` rather than `uint0`, `boolean` 0x56 rather
//! than `true`/`false`): zero-width item constructors are legal but some peers mishandle them.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codes as c;
use crate::decode::SymbolRef;
use crate::types::{
    Array, Described, Descriptor, ElemType, Map, Str, Symbol, Timestamp, Uuid, Value,
};

/// A type that can be written in its AMQP encoding.
pub trait Encode {
    /// Exact number of bytes [`Encode::encode`] will write.
    fn encoded_len(&self) -> usize;

    /// Appends the encoding to `buf`.
    fn encode(&self, buf: &mut BytesMut);

    /// The encoding as a new buffer.
    fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        buf.freeze()
    }
}

impl<T: Encode + ?Sized> Encode for &T {
    fn encoded_len(&self) -> usize {
        (**self).encoded_len()
    }
    fn encode(&self, buf: &mut BytesMut) {
        (**self).encode(buf)
    }
}

/// `None` is `null`.
impl<T: Encode> Encode for Option<T> {
    #[inline]
    fn encoded_len(&self) -> usize {
        self.as_ref().map_or(1, Encode::encoded_len)
    }
    #[inline]
    fn encode(&self, buf: &mut BytesMut) {
        match self {
            Some(v) => v.encode(buf),
            None => buf.put_u8(c::NULL),
        }
    }
}

/// Whether a compound body of `body` bytes and `count` elements fits the 8-bit form.
#[inline]
pub(crate) fn fits8(body: usize, count: usize) -> bool {
    body < 255 && count <= 255
}

/// Bytes of a list/map header (size and count, not the format code).
#[inline]
pub(crate) fn compound_header_len(body: usize, count: usize) -> usize {
    if fits8(body, count) { 2 } else { 8 }
}

/// Writes a list or map constructor, size and count; `codes` is (8-bit, 32-bit).
#[inline]
pub(crate) fn put_compound_header(buf: &mut BytesMut, codes: (u8, u8), body: usize, count: usize) {
    if fits8(body, count) {
        // One capacity check for the three bytes, not three.
        buf.put_slice(&[codes.0, (body + 1) as u8, count as u8]);
    } else {
        buf.put_u8(codes.1);
        buf.put_u32((body + 4) as u32);
        buf.put_u32(count as u32);
    }
}

/// Length of a described constructor for `code` (`0x00` plus the descriptor).
#[inline]
pub(crate) fn descriptor_len(code: u64) -> usize {
    match code {
        0 => 2,
        1..=255 => 3,
        _ => 10,
    }
}

/// Writes `0x00` and a numeric descriptor in its smallest form.
#[inline]
pub(crate) fn put_descriptor(buf: &mut BytesMut, code: u64) {
    match code {
        // Every descriptor the spec defines is a smallulong: one capacity check.
        1..=255 => buf.put_slice(&[c::DESCRIBED, c::SMALLULONG, code as u8]),
        _ => {
            buf.put_u8(c::DESCRIBED);
            put_ulong(buf, code);
        }
    }
}

#[inline]
fn put_ulong(buf: &mut BytesMut, v: u64) {
    match v {
        0 => buf.put_u8(c::ULONG0),
        1..=255 => buf.put_slice(&[c::SMALLULONG, v as u8]),
        _ => {
            buf.put_u8(c::ULONG);
            buf.put_u64(v);
        }
    }
}

#[inline]
fn pick<T>(small: bool, a: T, b: T) -> T {
    if small { a } else { b }
}

fn list_body_len(items: &[Value]) -> usize {
    items.iter().map(Encode::encoded_len).sum()
}

fn map_body_len(m: &Map) -> usize {
    m.iter()
        .map(|(k, v)| k.encoded_len() + v.encoded_len())
        .sum()
}

/// The shared item constructor of an array: the smallest that fits every item and carries data.
fn item_code(elem: &ElemType, items: &[Value]) -> u8 {
    let all = |f: fn(&Value) -> bool| items.iter().all(f);
    match elem {
        ElemType::Null => c::NULL,
        ElemType::Bool => c::BOOLEAN,
        ElemType::Ubyte => c::UBYTE,
        ElemType::Ushort => c::USHORT,
        ElemType::Uint => pick(
            all(|v| matches!(v, Value::Uint(x) if *x <= 255)),
            c::SMALLUINT,
            c::UINT,
        ),
        ElemType::Ulong => pick(
            all(|v| matches!(v, Value::Ulong(x) if *x <= 255)),
            c::SMALLULONG,
            c::ULONG,
        ),
        ElemType::Byte => c::BYTE,
        ElemType::Short => c::SHORT,
        ElemType::Int => pick(
            all(|v| matches!(v, Value::Int(x) if i8::try_from(*x).is_ok())),
            c::SMALLINT,
            c::INT,
        ),
        ElemType::Long => pick(
            all(|v| matches!(v, Value::Long(x) if i8::try_from(*x).is_ok())),
            c::SMALLLONG,
            c::LONG,
        ),
        ElemType::Float => c::FLOAT,
        ElemType::Double => c::DOUBLE,
        ElemType::Decimal32 => c::DECIMAL32,
        ElemType::Decimal64 => c::DECIMAL64,
        ElemType::Decimal128 => c::DECIMAL128,
        ElemType::Char => c::CHAR,
        ElemType::Timestamp => c::TIMESTAMP,
        ElemType::Uuid => c::UUID,
        ElemType::Binary => pick(
            all(|v| matches!(v, Value::Binary(b) if b.len() <= 255)),
            c::VBIN8,
            c::VBIN32,
        ),
        ElemType::String => pick(
            all(|v| matches!(v, Value::String(s) if s.len() <= 255)),
            c::STR8,
            c::STR32,
        ),
        ElemType::Symbol => pick(
            all(|v| matches!(v, Value::Symbol(s) if s.len() <= 255)),
            c::SYM8,
            c::SYM32,
        ),
        ElemType::List => pick(
            all(|v| matches!(v, Value::List(l) if fits8(list_body_len(l), l.len()))),
            c::LIST8,
            c::LIST32,
        ),
        ElemType::Map => pick(
            all(|v| matches!(v, Value::Map(m) if fits8(map_body_len(m), m.len() * 2))),
            c::MAP8,
            c::MAP32,
        ),
        ElemType::Array => pick(
            all(|v| matches!(v, Value::Array(a) if array_fits8(a))),
            c::ARRAY8,
            c::ARRAY32,
        ),
        ElemType::Described { inner, .. } => item_code(inner, items),
    }
}

fn ctor_len(elem: &ElemType) -> usize {
    match elem {
        ElemType::Described { descriptor, .. } => 2 + descriptor.encoded_len(),
        _ => 1,
    }
}

/// Bytes of an array after its size field: count, constructor and items, at the given width.
fn array_content_len(a: &Array, wide: bool) -> usize {
    let code = item_code(a.elem(), a.items());
    let items: usize = a.items().iter().map(|v| data_len(code, v)).sum();
    pick(wide, 4usize, 1) + ctor_len(a.elem()) + items
}

fn array_fits8(a: &Array) -> bool {
    array_content_len(a, false) <= 255 && a.items().len() <= 255
}

/// Length of `v`'s data when written after format code `code` (the code itself excluded).
fn data_len(code: u8, v: &Value) -> usize {
    if let Some(n) = crate::decode::fixed_width(code) {
        return n;
    }
    match (code, v) {
        (c::VBIN8, Value::Binary(b)) => 1 + b.len(),
        (c::VBIN32, Value::Binary(b)) => 4 + b.len(),
        (c::STR8, Value::String(s)) => 1 + s.len(),
        (c::STR32, Value::String(s)) => 4 + s.len(),
        (c::SYM8, Value::Symbol(s)) => 1 + s.len(),
        (c::SYM32, Value::Symbol(s)) => 4 + s.len(),
        (c::LIST8, Value::List(l)) => 2 + list_body_len(l),
        (c::LIST32, Value::List(l)) => 8 + list_body_len(l),
        (c::MAP8, Value::Map(m)) => 2 + map_body_len(m),
        (c::MAP32, Value::Map(m)) => 8 + map_body_len(m),
        (c::ARRAY8, Value::Array(a)) => 1 + array_content_len(a, false),
        (c::ARRAY32, Value::Array(a)) => 4 + array_content_len(a, true),
        _ => 0,
    }
}

/// Writes `v`'s data after format code `code`. `code` always comes from [`item_code`] for
/// this very value, so the pairs below are exhaustive in practice.
fn put_data(buf: &mut BytesMut, code: u8, v: &Value) {
    match (code, v) {
        (c::BOOLEAN, Value::Bool(b)) => buf.put_u8(u8::from(*b)),
        (c::UBYTE, Value::Ubyte(x)) => buf.put_u8(*x),
        (c::USHORT, Value::Ushort(x)) => buf.put_u16(*x),
        (c::UINT, Value::Uint(x)) => buf.put_u32(*x),
        (c::SMALLUINT, Value::Uint(x)) => buf.put_u8(*x as u8),
        (c::ULONG, Value::Ulong(x)) => buf.put_u64(*x),
        (c::SMALLULONG, Value::Ulong(x)) => buf.put_u8(*x as u8),
        (c::BYTE, Value::Byte(x)) => buf.put_i8(*x),
        (c::SHORT, Value::Short(x)) => buf.put_i16(*x),
        (c::INT, Value::Int(x)) => buf.put_i32(*x),
        (c::SMALLINT, Value::Int(x)) => buf.put_i8(*x as i8),
        (c::LONG, Value::Long(x)) => buf.put_i64(*x),
        (c::SMALLLONG, Value::Long(x)) => buf.put_i8(*x as i8),
        (c::FLOAT, Value::Float(x)) => buf.put_u32(x.to_bits()),
        (c::DOUBLE, Value::Double(x)) => buf.put_u64(x.to_bits()),
        (c::DECIMAL32, Value::Decimal32(x)) => buf.put_slice(&x.0),
        (c::DECIMAL64, Value::Decimal64(x)) => buf.put_slice(&x.0),
        (c::DECIMAL128, Value::Decimal128(x)) => buf.put_slice(&x.0),
        (c::CHAR, Value::Char(x)) => buf.put_u32(u32::from(*x)),
        (c::TIMESTAMP, Value::Timestamp(t)) => buf.put_i64(t.0),
        (c::UUID, Value::Uuid(u)) => buf.put_slice(&u.0),
        (c::VBIN8 | c::VBIN32, Value::Binary(b)) => put_variable(buf, code == c::VBIN32, b),
        (c::STR8 | c::STR32, Value::String(s)) => put_variable(buf, code == c::STR32, s.as_bytes()),
        (c::SYM8 | c::SYM32, Value::Symbol(s)) => put_variable(buf, code == c::SYM32, s.as_bytes()),
        (c::LIST8 | c::LIST32, Value::List(l)) => {
            put_sized(buf, code == c::LIST32, list_body_len(l), l.len());
            l.iter().for_each(|v| v.encode(buf));
        }
        (c::MAP8 | c::MAP32, Value::Map(m)) => {
            put_sized(buf, code == c::MAP32, map_body_len(m), m.len() * 2);
            for (k, v) in m.iter() {
                k.encode(buf);
                v.encode(buf);
            }
        }
        (c::ARRAY8 | c::ARRAY32, Value::Array(a)) => put_array_data(buf, code == c::ARRAY32, a),
        _ => {}
    }
}

#[inline]
fn put_variable(buf: &mut BytesMut, wide: bool, data: &[u8]) {
    if wide {
        buf.put_u32(data.len() as u32);
    } else {
        buf.put_u8(data.len() as u8);
    }
    buf.put_slice(data);
}

/// Size and count fields of a list or map whose format code is already written.
fn put_sized(buf: &mut BytesMut, wide: bool, body: usize, count: usize) {
    if wide {
        buf.put_u32((body + 4) as u32);
        buf.put_u32(count as u32);
    } else {
        buf.put_u8((body + 1) as u8);
        buf.put_u8(count as u8);
    }
}

fn put_array_data(buf: &mut BytesMut, wide: bool, a: &Array) {
    let size = array_content_len(a, wide);
    let count = a.items().len();
    if wide {
        buf.put_u32(size as u32);
        buf.put_u32(count as u32);
    } else {
        buf.put_u8(size as u8);
        buf.put_u8(count as u8);
    }
    let code = item_code(a.elem(), a.items());
    if let ElemType::Described { descriptor, .. } = a.elem() {
        buf.put_u8(c::DESCRIBED);
        descriptor.encode(buf);
    }
    buf.put_u8(code);
    a.items().iter().for_each(|v| put_data(buf, code, v));
}

/// Each variant is written by its typed encoder, which picks the canonical constructor itself:
/// one dispatch per value instead of picking a format code and then matching on it again.
///
/// Strings and symbols, most keys and values of the maps that carry properties and
/// annotations, are tested first with plain branches; the other variants go through one
/// out-of-line `match`, whose indirect jump predicts badly when value types alternate.
impl Encode for Value {
    #[inline]
    fn encoded_len(&self) -> usize {
        match self {
            Value::String(v) => v.encoded_len(),
            Value::Symbol(v) => v.encoded_len(),
            other => other_encoded_len(other),
        }
    }

    #[inline]
    fn encode(&self, buf: &mut BytesMut) {
        match self {
            Value::String(v) => v.encode(buf),
            Value::Symbol(v) => v.encode(buf),
            other => encode_other(other, buf),
        }
    }
}

/// [`Value::encoded_len`] for every variant but strings and symbols.
#[inline(never)]
fn other_encoded_len(v: &Value) -> usize {
    match v {
        Value::Null => 1,
        Value::Bool(v) => v.encoded_len(),
        Value::Ubyte(v) => v.encoded_len(),
        Value::Ushort(v) => v.encoded_len(),
        Value::Uint(v) => v.encoded_len(),
        Value::Ulong(v) => v.encoded_len(),
        Value::Byte(_) => 2,
        Value::Short(_) => 3,
        Value::Int(v) => v.encoded_len(),
        Value::Long(v) => v.encoded_len(),
        Value::Float(_) | Value::Decimal32(_) | Value::Char(_) => 5,
        Value::Double(_) | Value::Decimal64(_) => 9,
        Value::Decimal128(_) => 17,
        Value::Timestamp(v) => v.encoded_len(),
        Value::Uuid(v) => v.encoded_len(),
        Value::Binary(v) => v.encoded_len(),
        Value::String(v) => v.encoded_len(),
        Value::Symbol(v) => v.encoded_len(),
        Value::List(v) => v.encoded_len(),
        Value::Map(v) => v.encoded_len(),
        Value::Array(v) => v.encoded_len(),
        Value::Described(v) => v.encoded_len(),
    }
}

/// [`Value::encode`] for every variant but strings and symbols.
#[inline(never)]
fn encode_other(v: &Value, buf: &mut BytesMut) {
    match v {
        Value::Null => buf.put_u8(c::NULL),
        Value::Bool(v) => v.encode(buf),
        Value::Ubyte(v) => v.encode(buf),
        Value::Ushort(v) => v.encode(buf),
        Value::Uint(v) => v.encode(buf),
        Value::Ulong(v) => v.encode(buf),
        Value::Byte(v) => {
            buf.put_u8(c::BYTE);
            buf.put_i8(*v);
        }
        Value::Short(v) => {
            buf.put_u8(c::SHORT);
            buf.put_i16(*v);
        }
        Value::Int(v) => v.encode(buf),
        Value::Long(v) => v.encode(buf),
        Value::Float(v) => {
            buf.put_u8(c::FLOAT);
            buf.put_u32(v.to_bits());
        }
        Value::Double(v) => {
            buf.put_u8(c::DOUBLE);
            buf.put_u64(v.to_bits());
        }
        Value::Decimal32(v) => {
            buf.put_u8(c::DECIMAL32);
            buf.put_slice(&v.0);
        }
        Value::Decimal64(v) => {
            buf.put_u8(c::DECIMAL64);
            buf.put_slice(&v.0);
        }
        Value::Decimal128(v) => {
            buf.put_u8(c::DECIMAL128);
            buf.put_slice(&v.0);
        }
        Value::Char(v) => {
            buf.put_u8(c::CHAR);
            buf.put_u32(u32::from(*v));
        }
        Value::Timestamp(v) => v.encode(buf),
        Value::Uuid(v) => v.encode(buf),
        Value::Binary(v) => v.encode(buf),
        Value::String(v) => v.encode(buf),
        Value::Symbol(v) => v.encode(buf),
        Value::List(v) => v.encode(buf),
        Value::Map(v) => v.encode(buf),
        Value::Array(v) => v.encode(buf),
        Value::Described(v) => v.encode(buf),
    }
}

impl Encode for Described {
    fn encoded_len(&self) -> usize {
        1 + self.descriptor.encoded_len() + self.value.encoded_len()
    }
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u8(c::DESCRIBED);
        self.descriptor.encode(buf);
        self.value.encode(buf);
    }
}

impl Encode for Descriptor {
    fn encoded_len(&self) -> usize {
        match self {
            Descriptor::Code(code) => descriptor_len(*code) - 1,
            Descriptor::Name(name) => name.encoded_len(),
        }
    }
    fn encode(&self, buf: &mut BytesMut) {
        match self {
            Descriptor::Code(code) => put_ulong(buf, *code),
            Descriptor::Name(name) => name.encode(buf),
        }
    }
}

impl Encode for Map {
    fn encoded_len(&self) -> usize {
        let body = map_body_len(self);
        1 + compound_header_len(body, self.len() * 2) + body
    }
    fn encode(&self, buf: &mut BytesMut) {
        let body = map_body_len(self);
        put_compound_header(buf, (c::MAP8, c::MAP32), body, self.len() * 2);
        for (k, v) in self.iter() {
            k.encode(buf);
            v.encode(buf);
        }
    }
}

impl Encode for Array {
    fn encoded_len(&self) -> usize {
        let wide = !array_fits8(self);
        1 + pick(wide, 4usize, 1) + array_content_len(self, wide)
    }
    fn encode(&self, buf: &mut BytesMut) {
        let wide = !array_fits8(self);
        buf.put_u8(pick(wide, c::ARRAY32, c::ARRAY8));
        put_array_data(buf, wide, self);
    }
}

macro_rules! encode_fixed {
    ($($t:ty => |$v:ident, $buf:ident| $code:expr, $len:expr, $write:expr;)*) => {
        $(impl Encode for $t {
            #[inline]
            fn encoded_len(&self) -> usize {
                let $v = *self;
                let _ = $v;
                $len
            }
            #[inline]
            fn encode(&self, $buf: &mut BytesMut) {
                let $v = *self;
                $buf.put_u8($code);
                $write
            }
        })*
    };
}

encode_fixed! {
    bool => |v, buf| pick(v, c::TRUE, c::FALSE), 1, {};
    u8 => |v, buf| c::UBYTE, 2, buf.put_u8(v);
    u16 => |v, buf| c::USHORT, 3, buf.put_u16(v);
    i32 => |v, buf| pick(i8::try_from(v).is_ok(), c::SMALLINT, c::INT),
        if i8::try_from(v).is_ok() { 2 } else { 5 },
        if i8::try_from(v).is_ok() { buf.put_i8(v as i8) } else { buf.put_i32(v) };
    i64 => |v, buf| pick(i8::try_from(v).is_ok(), c::SMALLLONG, c::LONG),
        if i8::try_from(v).is_ok() { 2 } else { 9 },
        if i8::try_from(v).is_ok() { buf.put_i8(v as i8) } else { buf.put_i64(v) };
    Timestamp => |v, buf| c::TIMESTAMP, 9, buf.put_i64(v.0);
    Uuid => |v, buf| c::UUID, 17, buf.put_slice(&v.0);
}

impl Encode for u32 {
    #[inline]
    fn encoded_len(&self) -> usize {
        match *self {
            0 => 1,
            1..=255 => 2,
            _ => 5,
        }
    }
    #[inline]
    fn encode(&self, buf: &mut BytesMut) {
        match *self {
            0 => buf.put_u8(c::UINT0),
            v @ 1..=255 => buf.put_slice(&[c::SMALLUINT, v as u8]),
            v => {
                buf.put_u8(c::UINT);
                buf.put_u32(v);
            }
        }
    }
}

impl Encode for u64 {
    #[inline]
    fn encoded_len(&self) -> usize {
        descriptor_len(*self) - 1
    }
    #[inline]
    fn encode(&self, buf: &mut BytesMut) {
        put_ulong(buf, *self)
    }
}

#[inline]
fn variable_len(len: usize) -> usize {
    if len <= 255 { 2 + len } else { 5 + len }
}

#[inline]
fn put_variable_value(buf: &mut BytesMut, codes: (u8, u8), data: &[u8]) {
    if data.len() <= 255 {
        // Reserve once, then write constructor and length together.
        buf.reserve(2 + data.len());
        buf.put_slice(&[codes.0, data.len() as u8]);
        buf.put_slice(data);
    } else {
        buf.put_u8(codes.1);
        put_variable(buf, true, data);
    }
}

macro_rules! encode_variable {
    ($($t:ty => $codes:expr, |$v:ident| $bytes:expr;)*) => {
        $(impl Encode for $t {
            #[inline]
            fn encoded_len(&self) -> usize {
                let $v = self;
                variable_len($bytes.len())
            }
            #[inline]
            fn encode(&self, buf: &mut BytesMut) {
                let $v = self;
                put_variable_value(buf, $codes, $bytes)
            }
        })*
    };
}

encode_variable! {
    Bytes => (c::VBIN8, c::VBIN32), |v| v.as_ref();
    [u8] => (c::VBIN8, c::VBIN32), |v| v;
    Str => (c::STR8, c::STR32), |v| v.as_bytes().as_ref();
    str => (c::STR8, c::STR32), |v| v.as_bytes();
    Symbol => (c::SYM8, c::SYM32), |v| v.as_bytes().as_ref();
    SymbolRef<'_> => (c::SYM8, c::SYM32), |v| v.0.as_bytes();
}

/// A `multiple` symbol field (§1.4): `null` when empty, otherwise an array of symbols.
impl Encode for Vec<Symbol> {
    fn encoded_len(&self) -> usize {
        if self.is_empty() {
            return 1;
        }
        let wide_items = self.iter().any(|s| s.len() > 255);
        let items: usize = self
            .iter()
            .map(|s| pick(wide_items, 4usize, 1) + s.len())
            .sum();
        let content = 1 + 1 + items;
        if content <= 255 && self.len() <= 255 {
            2 + content
        } else {
            5 + content + 3
        }
    }

    fn encode(&self, buf: &mut BytesMut) {
        if self.is_empty() {
            buf.put_u8(c::NULL);
            return;
        }
        let wide_items = self.iter().any(|s| s.len() > 255);
        let items: usize = self
            .iter()
            .map(|s| pick(wide_items, 4usize, 1) + s.len())
            .sum();
        let content8 = 1 + 1 + items;
        if content8 <= 255 && self.len() <= 255 {
            buf.put_u8(c::ARRAY8);
            buf.put_u8(content8 as u8);
            buf.put_u8(self.len() as u8);
        } else {
            buf.put_u8(c::ARRAY32);
            buf.put_u32((content8 + 3) as u32);
            buf.put_u32(self.len() as u32);
        }
        buf.put_u8(pick(wide_items, c::SYM32, c::SYM8));
        for s in self {
            put_variable(buf, wide_items, s.as_bytes());
        }
    }
}

impl<T: Encode + ?Sized> Encode for Box<T> {
    fn encoded_len(&self) -> usize {
        (**self).encoded_len()
    }
    fn encode(&self, buf: &mut BytesMut) {
        (**self).encode(buf)
    }
}

/// A `list` of values.
impl Encode for Vec<Value> {
    fn encoded_len(&self) -> usize {
        if self.is_empty() {
            return 1;
        }
        let body = list_body_len(self);
        1 + compound_header_len(body, self.len()) + body
    }
    fn encode(&self, buf: &mut BytesMut) {
        if self.is_empty() {
            buf.put_u8(c::LIST0);
            return;
        }
        put_compound_header(buf, (c::LIST8, c::LIST32), list_body_len(self), self.len());
        self.iter().for_each(|v| v.encode(buf));
    }
}
