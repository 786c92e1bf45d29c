//! Decoding values from a complete buffer (§1.6), with complete nom parsers.
//!
//! A [`Decoder`] reads from a `&Bytes` that already holds the whole frame or section: running
//! out of input is [`DecodeError::Truncated`], never "need more bytes" (only the frame layer
//! says that). Variable-width values come back as slices of that `Bytes` (see
//! [`Decoder::share`]); borrowed types such as `&str` come back as slices of its memory.

use bytes::Bytes;
use nom::IResult;
use nom::number::complete as num;

use crate::codes as c;
use crate::error::DecodeError;
use crate::limits::DecodeLimits;
use crate::types::{
    Array, Decimal32, Decimal64, Decimal128, Described, Descriptor, ElemType, Map, Str, Symbol,
    Timestamp, Uuid, Value,
};

/// Result of every decode.
pub type Result<T> = std::result::Result<T, DecodeError>;

/// A type that can be read from its AMQP encoding.
///
/// `'a` is the lifetime of the buffer: owned types (`Str`, `Bytes`, `Value`) ignore it and
/// share the buffer's memory by reference count; borrowed types (`&'a str`) point into it.
pub trait Decode<'a>: Sized {
    /// Reads one value, constructor included.
    fn decode(d: &mut Decoder<'a>) -> Result<Self>;
}

/// Cursor over one complete buffer, carrying the nesting depth and element budget.
#[derive(Debug)]
pub struct Decoder<'a> {
    base: &'a Bytes,
    input: &'a [u8],
    depth: u32,
    elements_left: usize,
    limits: DecodeLimits,
}

/// A descriptor as read, before deciding which type it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescriptorRef<'a> {
    /// A numeric descriptor.
    Code(u64),
    /// A symbolic descriptor's bytes (ASCII not yet checked: it is only compared).
    Name(&'a [u8]),
}

impl DescriptorRef<'_> {
    /// Whether this names the type with numeric `code` or symbolic `name`.
    pub fn is(&self, code: u64, name: &str) -> bool {
        match *self {
            DescriptorRef::Code(c) => c == code,
            DescriptorRef::Name(n) => n == name.as_bytes(),
        }
    }
}

impl<'a> Decoder<'a> {
    /// A decoder over all of `base`, with default limits.
    pub fn new(base: &'a Bytes) -> Self {
        Self::with_limits(base, DecodeLimits::DEFAULT)
    }

    /// A decoder over all of `base`.
    pub fn with_limits(base: &'a Bytes, limits: DecodeLimits) -> Self {
        Self {
            base,
            input: base.as_ref(),
            depth: 0,
            elements_left: limits.max_elements,
            limits,
        }
    }

    /// Decodes one `T` that must fill `base` exactly.
    pub fn decode_exact<T: Decode<'a>>(base: &'a Bytes, limits: DecodeLimits) -> Result<T> {
        let mut d = Self::with_limits(base, limits);
        let v = T::decode(&mut d)?;
        d.finish()?;
        Ok(v)
    }

    /// The bytes not yet read.
    pub fn remaining(&self) -> &'a [u8] {
        self.input
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// Checks that nothing is left over.
    pub fn finish(&self) -> Result<()> {
        match self.input.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    /// Reads one `T`.
    #[inline]
    pub fn read<T: Decode<'a>>(&mut self) -> Result<T> {
        T::decode(self)
    }

    /// A `Bytes` handle on `part`, which must lie within this decoder's buffer; no copy.
    #[inline]
    pub fn share(&self, part: &'a [u8]) -> Bytes {
        if part.is_empty() {
            Bytes::new()
        } else {
            self.base.slice_ref(part)
        }
    }

    /// How far into the buffer the cursor is.
    pub fn position(&self) -> usize {
        self.base.len() - self.input.len()
    }

    /// Applies a primitive parser's result: advances past what it read.
    #[inline(always)]
    fn step<T>(&mut self, r: IResult<Input<'a>, T, Eof>) -> Result<T> {
        match r {
            Ok((rest, v)) => {
                self.input = rest.0;
                Ok(v)
            }
            // Complete parsers fail only by running out of input.
            Err(_) => Err(DecodeError::Truncated),
        }
    }

    /// The next byte, not consumed.
    #[inline(always)]
    pub fn peek_u8(&self) -> Result<u8> {
        self.input.first().copied().ok_or(DecodeError::Truncated)
    }

    #[inline(always)]
    pub(crate) fn u8(&mut self) -> Result<u8> {
        self.step(num::u8(Input(self.input)))
    }

    #[inline(always)]
    pub(crate) fn be_u16(&mut self) -> Result<u16> {
        self.step(num::be_u16(Input(self.input)))
    }

    #[inline(always)]
    pub(crate) fn be_u32(&mut self) -> Result<u32> {
        self.step(num::be_u32(Input(self.input)))
    }

    #[inline(always)]
    pub(crate) fn be_u64(&mut self) -> Result<u64> {
        self.step(num::be_u64(Input(self.input)))
    }

    #[inline(always)]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let r = nom::bytes::complete::take(n)(Input(self.input));
        self.step(r).map(|part| part.0)
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let part = self.take(N)?;
        part.try_into().map_err(|_| DecodeError::Truncated)
    }

    /// Length prefix of a variable-width value: one byte for `*8` codes, four for `*32`.
    #[inline(always)]
    fn len(&mut self, wide: bool) -> Result<usize> {
        if wide {
            Ok(self.be_u32()? as usize)
        } else {
            Ok(usize::from(self.u8()?))
        }
    }

    /// Reads a variable-width payload: `vbin`, `str` or `sym` after its format code.
    #[inline(always)]
    pub(crate) fn variable(&mut self, wide: bool) -> Result<&'a [u8]> {
        let n = self.len(wide)?;
        self.take(n)
    }

    #[inline(always)]
    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(DecodeError::TooDeep(self.limits.max_depth));
        }
        Ok(())
    }

    #[inline(always)]
    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    #[inline]
    fn charge(&mut self, n: usize) -> Result<()> {
        self.elements_left = self
            .elements_left
            .checked_sub(n)
            .ok_or(DecodeError::TooManyElements(self.limits.max_elements))?;
        Ok(())
    }

    /// Runs `f` over exactly the next `len` bytes, which it must consume completely.
    fn nested<T>(&mut self, len: usize, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let body = self.take(len)?;
        let rest = std::mem::replace(&mut self.input, body);
        let out = self.enter().and_then(|()| f(self));
        self.leave();
        let leftover = self.input.len();
        self.input = rest;
        let out = out?;
        if leftover != 0 {
            return Err(DecodeError::SizeMismatch);
        }
        Ok(out)
    }

    /// Reads a compound header (list, map) after its format code: the body length and count.
    #[inline(always)]
    fn compound_header(&mut self, wide: bool) -> Result<(usize, u32)> {
        let size = self.len(wide)?;
        let count_width = if wide { 4 } else { 1 };
        let body = size
            .checked_sub(count_width)
            .ok_or(DecodeError::SizeMismatch)?;
        let count = if wide {
            self.be_u32()?
        } else {
            u32::from(self.u8()?)
        };
        // Every list or map element takes at least one byte.
        if count as usize > body {
            return Err(DecodeError::SizeMismatch);
        }
        Ok((body, count))
    }

    /// Reads any value.
    pub fn value(&mut self) -> Result<Value> {
        let code = self.u8()?;
        self.value_after(code)
    }

    /// Reads the rest of a value whose format code has been consumed.
    fn value_after(&mut self, code: u8) -> Result<Value> {
        Ok(match code {
            c::DESCRIBED => {
                self.enter()?;
                let descriptor = self.value();
                let described = match descriptor {
                    Ok(descriptor) => self.value().map(|value| Described { descriptor, value }),
                    Err(e) => Err(e),
                };
                self.leave();
                Value::Described(Box::new(described?))
            }
            c::LIST0 => Value::List(Vec::new()),
            c::LIST8 | c::LIST32 => Value::List(self.list_items(code == c::LIST32)?),
            c::MAP8 | c::MAP32 => Value::Map(self.map_pairs(code == c::MAP32)?),
            c::ARRAY8 | c::ARRAY32 => Value::Array(self.array_body(code == c::ARRAY32)?),
            _ => self.primitive(code)?,
        })
    }

    /// Reads a primitive (non-compound, non-described) value after its format code.
    #[inline]
    fn primitive(&mut self, code: u8) -> Result<Value> {
        Ok(match code {
            c::NULL => Value::Null,
            c::TRUE => Value::Bool(true),
            c::FALSE => Value::Bool(false),
            c::BOOLEAN => Value::Bool(self.bool_byte()?),
            c::UBYTE => Value::Ubyte(self.u8()?),
            c::USHORT => Value::Ushort(self.be_u16()?),
            c::UINT => Value::Uint(self.be_u32()?),
            c::SMALLUINT => Value::Uint(u32::from(self.u8()?)),
            c::UINT0 => Value::Uint(0),
            c::ULONG => Value::Ulong(self.be_u64()?),
            c::SMALLULONG => Value::Ulong(u64::from(self.u8()?)),
            c::ULONG0 => Value::Ulong(0),
            c::BYTE => Value::Byte(self.u8()? as i8),
            c::SHORT => Value::Short(self.be_u16()? as i16),
            c::INT => Value::Int(self.be_u32()? as i32),
            c::SMALLINT => Value::Int(i32::from(self.u8()? as i8)),
            c::LONG => Value::Long(self.be_u64()? as i64),
            c::SMALLLONG => Value::Long(i64::from(self.u8()? as i8)),
            c::FLOAT => Value::Float(f32::from_bits(self.be_u32()?)),
            c::DOUBLE => Value::Double(f64::from_bits(self.be_u64()?)),
            c::DECIMAL32 => Value::Decimal32(Decimal32(self.array()?)),
            c::DECIMAL64 => Value::Decimal64(Decimal64(self.array()?)),
            c::DECIMAL128 => Value::Decimal128(Decimal128(self.array()?)),
            c::CHAR => Value::Char(self.char_body()?),
            c::TIMESTAMP => Value::Timestamp(Timestamp(self.be_u64()? as i64)),
            c::UUID => Value::Uuid(Uuid(self.array()?)),
            c::VBIN8 | c::VBIN32 => {
                let part = self.variable(code == c::VBIN32)?;
                Value::Binary(self.share(part))
            }
            c::STR8 | c::STR32 => Value::String(self.str_body(code == c::STR32)?),
            c::SYM8 | c::SYM32 => Value::Symbol(self.sym_body(code == c::SYM32)?),
            other => return Err(DecodeError::InvalidFormatCode(other)),
        })
    }

    #[inline]
    fn bool_byte(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DecodeError::InvalidBoolean(b)),
        }
    }

    fn char_body(&mut self) -> Result<char> {
        let v = self.be_u32()?;
        char::from_u32(v).ok_or(DecodeError::InvalidChar(v))
    }

    pub(crate) fn str_body(&mut self, wide: bool) -> Result<Str> {
        let part = self.variable(wide)?;
        Str::try_from_bytes(self.share(part)).map_err(|_| DecodeError::InvalidUtf8)
    }

    pub(crate) fn sym_body(&mut self, wide: bool) -> Result<Symbol> {
        let part = self.variable(wide)?;
        Symbol::try_from_bytes(self.share(part)).map_err(|_| DecodeError::InvalidSymbol)
    }

    fn list_items(&mut self, wide: bool) -> Result<Vec<Value>> {
        let (body, count) = self.compound_header(wide)?;
        self.charge(count as usize)?;
        self.nested(body, |d| {
            let mut items = Vec::with_capacity(count as usize);
            for _ in 0..count {
                items.push(d.value()?);
            }
            Ok(items)
        })
    }

    fn map_pairs(&mut self, wide: bool) -> Result<Map> {
        let (body, count) = self.compound_header(wide)?;
        if count % 2 != 0 {
            return Err(DecodeError::OddMapCount(count));
        }
        self.charge(count as usize)?;
        self.nested(body, |d| {
            let mut pairs = Vec::with_capacity(count as usize / 2);
            for _ in 0..count / 2 {
                let k = d.value()?;
                let v = d.value()?;
                pairs.push((k, v));
            }
            Ok(Map(pairs))
        })
    }

    fn array_body(&mut self, wide: bool) -> Result<Array> {
        let size = self.len(wide)?;
        self.nested(size, |d| {
            let count = if wide {
                d.be_u32()?
            } else {
                u32::from(d.u8()?)
            } as usize;
            d.charge(count)?;
            let (elem, code) = d.element_constructor()?;
            // Zero-width elements are bounded by the element budget just charged; everything
            // else must fit in the bytes that remain.
            let cap = count.min(d.input.len().max(1));
            let mut items = Vec::with_capacity(cap);
            for _ in 0..count {
                let item = match code {
                    c::LIST0
                    | c::LIST8
                    | c::LIST32
                    | c::MAP8
                    | c::MAP32
                    | c::ARRAY8
                    | c::ARRAY32 => d.value_after(code)?,
                    _ => d.primitive(code)?,
                };
                items.push(item);
            }
            Ok(Array::from_decoded(elem, items))
        })
    }

    /// Reads an array's element constructor: a format code, or a descriptor and a code.
    fn element_constructor(&mut self) -> Result<(ElemType, u8)> {
        let code = self.u8()?;
        if code != c::DESCRIBED {
            return Ok((elem_type(code)?, code));
        }
        let descriptor = self.value()?;
        let code = self.u8()?;
        if code == c::DESCRIBED {
            return Err(DecodeError::InvalidArrayConstructor(code));
        }
        let inner = elem_type(code)?;
        Ok((
            ElemType::Described {
                descriptor: Box::new(descriptor),
                inner: Box::new(inner),
            },
            code,
        ))
    }

    /// Length of the next value, found by skipping it with a copy of the cursor: O(1) for a
    /// list or map, whose size field says it.
    pub(crate) fn next_value_len(&self) -> Result<usize> {
        let mut probe = Decoder { ..*self };
        probe.skip_value()?;
        Ok(self.input.len() - probe.input.len())
    }

    /// Skips one value without building it; only its framing is checked.
    pub fn skip_value(&mut self) -> Result<()> {
        let (depth, max) = (self.depth, self.limits.max_depth);
        skip_value_in(self, depth, max)
    }

    /// Moves the cursor to `part`, a slice of the buffer (used to decode one known section).
    pub(crate) fn seek_to(&mut self, part: &'a [u8]) {
        self.input = part;
    }

    /// Reads a described constructor (`0x00` and the descriptor).
    #[inline]
    pub fn descriptor(&mut self) -> Result<DescriptorRef<'a>> {
        let code = self.u8()?;
        if code != c::DESCRIBED {
            return Err(DecodeError::UnexpectedType {
                expected: "described value",
                found: code,
            });
        }
        match self.u8()? {
            c::SMALLULONG => Ok(DescriptorRef::Code(u64::from(self.u8()?))),
            c::ULONG => Ok(DescriptorRef::Code(self.be_u64()?)),
            c::ULONG0 => Ok(DescriptorRef::Code(0)),
            c::SYM8 => Ok(DescriptorRef::Name(self.variable(false)?)),
            c::SYM32 => Ok(DescriptorRef::Name(self.variable(true)?)),
            found => Err(DecodeError::UnexpectedType {
                expected: "ulong or symbol descriptor",
                found,
            }),
        }
    }

    /// Reads a descriptor and checks it names `code` / `name`.
    #[inline]
    pub(crate) fn expect_descriptor(
        &mut self,
        code: u64,
        name: &str,
        expected: &'static str,
    ) -> Result<()> {
        if self.descriptor()?.is(code, name) {
            Ok(())
        } else {
            Err(DecodeError::UnexpectedDescriptor { expected })
        }
    }

    /// Reads a list (any of its three encodings) field by field.
    ///
    /// `f` reads the fields it knows, then must call [`Fields::skip_rest`], which skips the
    /// rest and checks the list's size.
    #[inline(always)]
    pub(crate) fn fields<T>(
        &mut self,
        f: impl FnOnce(&mut Fields<'a, '_>) -> Result<T>,
    ) -> Result<T> {
        let code = self.u8()?;
        let (len, count) = match code {
            c::LIST0 => (0, 0),
            c::LIST8 | c::LIST32 => self.compound_header(code == c::LIST32)?,
            found => {
                return Err(DecodeError::UnexpectedType {
                    expected: "list",
                    found,
                });
            }
        };
        let body = self.take(len)?;
        let rest = std::mem::replace(&mut self.input, body);
        // A list0 has no body to nest into. Depth and input are restored even on a depth
        // error, as in `nested`.
        let deeper = code != c::LIST0;
        let entered = if deeper { self.enter() } else { Ok(()) };
        // `f`'s result is returned untouched (`Fields::skip_rest` did the checks), so a
        // composite is built once, in the caller's slot, rather than copied out layer by layer.
        let out = match entered {
            Ok(()) => f(&mut Fields {
                d: self,
                left: count,
            }),
            Err(e) => Err(e),
        };
        if deeper {
            self.leave();
        }
        self.input = rest;
        out
    }
}

/// The decoder's nom input: a byte slice whose [`nom::Input`] methods all inline.
///
/// nom's own impl for `&[u8]` leaves `take_from` out of line, which put a call (and a panic
/// branch) on every primitive read. The parsers only call these after checking the length, so
/// the out-of-range fallbacks below are unreachable; they exist because nothing here may panic.
#[derive(Debug, Clone, Copy)]
struct Input<'a>(&'a [u8]);

impl<'a> nom::Input for Input<'a> {
    type Item = u8;
    type Iter = std::iter::Copied<std::slice::Iter<'a, u8>>;
    type IterIndices = std::iter::Enumerate<Self::Iter>;

    #[inline(always)]
    fn input_len(&self) -> usize {
        self.0.len()
    }

    #[inline(always)]
    fn take(&self, index: usize) -> Self {
        Input(self.0.get(..index).unwrap_or(self.0))
    }

    #[inline(always)]
    fn take_from(&self, index: usize) -> Self {
        Input(self.0.get(index..).unwrap_or_default())
    }

    #[inline(always)]
    fn take_split(&self, index: usize) -> (Self, Self) {
        let (prefix, suffix) = self.0.split_at_checked(index).unwrap_or((self.0, &[]));
        (Input(suffix), Input(prefix))
    }

    #[inline]
    fn position<P>(&self, predicate: P) -> Option<usize>
    where
        P: Fn(u8) -> bool,
    {
        self.0.iter().position(|b| predicate(*b))
    }

    #[inline(always)]
    fn iter_elements(&self) -> Self::Iter {
        self.0.iter().copied()
    }

    #[inline(always)]
    fn iter_indices(&self) -> Self::IterIndices {
        self.iter_elements().enumerate()
    }

    #[inline(always)]
    fn slice_index(&self, count: usize) -> std::result::Result<usize, nom::Needed> {
        if self.0.len() >= count {
            Ok(count)
        } else {
            Err(nom::Needed::new(count - self.0.len()))
        }
    }
}

/// The error of the primitive parsers: zero-sized, so their results stay in registers. A
/// complete parser fails only by running out of input, which [`Decoder`] reports as
/// [`DecodeError::Truncated`].
#[derive(Debug)]
struct Eof;

impl<I> nom::error::ParseError<I> for Eof {
    #[inline(always)]
    fn from_error_kind(_input: I, _kind: nom::error::ErrorKind) -> Self {
        Eof
    }

    #[inline(always)]
    fn append(_input: I, _kind: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

/// The little a section scanner or value skipper needs from a byte source.
pub(crate) trait ByteCursor {
    fn u8(&mut self) -> Result<u8>;
    fn skip(&mut self, n: usize) -> Result<()>;

    fn be_u32(&mut self) -> Result<u32> {
        let mut v = 0u32;
        for _ in 0..4 {
            v = v << 8 | u32::from(self.u8()?);
        }
        Ok(v)
    }

    fn be_u64(&mut self) -> Result<u64> {
        Ok(u64::from(self.be_u32()?) << 32 | u64::from(self.be_u32()?))
    }
}

impl ByteCursor for Decoder<'_> {
    fn u8(&mut self) -> Result<u8> {
        Decoder::u8(self)
    }
    fn skip(&mut self, n: usize) -> Result<()> {
        self.take(n).map(|_| ())
    }
    fn be_u32(&mut self) -> Result<u32> {
        Decoder::be_u32(self)
    }
}

/// Skips one value, checking only its framing (format codes and sizes) and nesting depth.
///
/// Inlined, with the (rare, recursive) described case out of line, so that skipping a plain
/// value costs no call.
#[inline]
pub(crate) fn skip_value_in<C: ByteCursor>(cur: &mut C, depth: u32, max_depth: u32) -> Result<()> {
    if depth > max_depth {
        return Err(DecodeError::TooDeep(max_depth));
    }
    let code = cur.u8()?;
    if code == c::DESCRIBED {
        return skip_described_in(cur, depth, max_depth);
    }
    let n = match fixed_width(code) {
        Some(n) => n,
        None => match code {
            c::VBIN8 | c::STR8 | c::SYM8 | c::LIST8 | c::MAP8 | c::ARRAY8 => usize::from(cur.u8()?),
            c::VBIN32 | c::STR32 | c::SYM32 | c::LIST32 | c::MAP32 | c::ARRAY32 => {
                cur.be_u32()? as usize
            }
            other => return Err(DecodeError::InvalidFormatCode(other)),
        },
    };
    cur.skip(n)
}

/// Skips the descriptor and value of a described value whose `0x00` has been read.
#[inline(never)]
fn skip_described_in<C: ByteCursor>(cur: &mut C, depth: u32, max_depth: u32) -> Result<()> {
    skip_value_in(cur, depth + 1, max_depth)?;
    skip_value_in(cur, depth + 1, max_depth)
}

/// The fields of one composite list, read in order (see [`Decoder::fields`]).
#[derive(Debug)]
pub(crate) struct Fields<'a, 'd> {
    pub(crate) d: &'d mut Decoder<'a>,
    left: u32,
}

impl<'a> Fields<'a, '_> {
    /// Whether the next field holds a value. A `null` is consumed, and so is nothing at all
    /// when the list ended early (trailing fields may be omitted: §1.4).
    #[inline(always)]
    pub(crate) fn present(&mut self) -> Result<bool> {
        if self.left == 0 {
            return Ok(false);
        }
        self.left -= 1;
        if self.d.peek_u8()? == c::NULL {
            self.d.input = self.d.input.get(1..).unwrap_or_default();
            Ok(false)
        } else {
            Ok(true)
        }
    }

    /// Skips the fields after those the caller knows (§1.3 lets composite types grow), and
    /// checks that the list's size covered its fields exactly.
    #[inline(always)]
    pub(crate) fn skip_rest(&mut self) -> Result<()> {
        for _ in 0..self.left {
            self.d.skip_value()?;
        }
        self.left = 0;
        if self.d.input.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::SizeMismatch)
        }
    }

    /// Reads the field just found present.
    #[inline(always)]
    pub(crate) fn read<T: Decode<'a>>(&mut self) -> Result<T> {
        T::decode(self.d)
    }
}

/// Data width of a fixed-width format code; `None` for variable, compound and invalid codes.
#[inline]
pub(crate) fn fixed_width(code: u8) -> Option<usize> {
    Some(match code {
        c::NULL | c::TRUE | c::FALSE | c::UINT0 | c::ULONG0 | c::LIST0 => 0,
        c::UBYTE
        | c::BYTE
        | c::SMALLUINT
        | c::SMALLULONG
        | c::SMALLINT
        | c::SMALLLONG
        | c::BOOLEAN => 1,
        c::USHORT | c::SHORT => 2,
        c::UINT | c::INT | c::FLOAT | c::CHAR | c::DECIMAL32 => 4,
        c::ULONG | c::LONG | c::DOUBLE | c::TIMESTAMP | c::DECIMAL64 => 8,
        c::DECIMAL128 | c::UUID => 16,
        _ => return None,
    })
}

fn elem_type(code: u8) -> Result<ElemType> {
    Ok(match code {
        c::NULL => ElemType::Null,
        c::TRUE | c::FALSE | c::BOOLEAN => ElemType::Bool,
        c::UBYTE => ElemType::Ubyte,
        c::USHORT => ElemType::Ushort,
        c::UINT | c::SMALLUINT | c::UINT0 => ElemType::Uint,
        c::ULONG | c::SMALLULONG | c::ULONG0 => ElemType::Ulong,
        c::BYTE => ElemType::Byte,
        c::SHORT => ElemType::Short,
        c::INT | c::SMALLINT => ElemType::Int,
        c::LONG | c::SMALLLONG => ElemType::Long,
        c::FLOAT => ElemType::Float,
        c::DOUBLE => ElemType::Double,
        c::DECIMAL32 => ElemType::Decimal32,
        c::DECIMAL64 => ElemType::Decimal64,
        c::DECIMAL128 => ElemType::Decimal128,
        c::CHAR => ElemType::Char,
        c::TIMESTAMP => ElemType::Timestamp,
        c::UUID => ElemType::Uuid,
        c::VBIN8 | c::VBIN32 => ElemType::Binary,
        c::STR8 | c::STR32 => ElemType::String,
        c::SYM8 | c::SYM32 => ElemType::Symbol,
        c::LIST0 | c::LIST8 | c::LIST32 => ElemType::List,
        c::MAP8 | c::MAP32 => ElemType::Map,
        c::ARRAY8 | c::ARRAY32 => ElemType::Array,
        other => return Err(DecodeError::InvalidArrayConstructor(other)),
    })
}

fn unexpected(expected: &'static str, found: u8) -> DecodeError {
    DecodeError::UnexpectedType { expected, found }
}

impl<'a> Decode<'a> for Value {
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        d.value()
    }
}

impl<'a> Decode<'a> for bool {
    #[inline(always)]
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        match d.u8()? {
            c::TRUE => Ok(true),
            c::FALSE => Ok(false),
            c::BOOLEAN => d.bool_byte(),
            found => Err(unexpected("boolean", found)),
        }
    }
}

impl<'a> Decode<'a> for u8 {
    #[inline(always)]
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        match d.u8()? {
            c::UBYTE => d.u8(),
            found => Err(unexpected("ubyte", found)),
        }
    }
}

impl<'a> Decode<'a> for u16 {
    #[inline(always)]
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        match d.u8()? {
            c::USHORT => d.be_u16(),
            found => Err(unexpected("ushort", found)),
        }
    }
}

impl<'a> Decode<'a> for u32 {
    #[inline(always)]
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        match d.u8()? {
            c::UINT => d.be_u32(),
            c::SMALLUINT => d.u8().map(u32::from),
            c::UINT0 => Ok(0),
            found => Err(unexpected("uint", found)),
        }
    }
}

impl<'a> Decode<'a> for u64 {
    #[inline(always)]
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        match d.u8()? {
            c::ULONG => d.be_u64(),
            c::SMALLULONG => d.u8().map(u64::from),
            c::ULONG0 => Ok(0),
            found => Err(unexpected("ulong", found)),
        }
    }
}

impl<'a> Decode<'a> for i32 {
    #[inline(always)]
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        match d.u8()? {
            c::INT => d.be_u32().map(|v| v as i32),
            c::SMALLINT => d.u8().map(|v| i32::from(v as i8)),
            found => Err(unexpected("int", found)),
        }
    }
}

impl<'a> Decode<'a> for i64 {
    #[inline(always)]
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        match d.u8()? {
            c::LONG => d.be_u64().map(|v| v as i64),
            c::SMALLLONG => d.u8().map(|v| i64::from(v as i8)),
            found => Err(unexpected("long", found)),
        }
    }
}

impl<'a> Decode<'a> for Timestamp {
    #[inline(always)]
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        match d.u8()? {
            c::TIMESTAMP => d.be_u64().map(|v| Timestamp(v as i64)),
            found => Err(unexpected("timestamp", found)),
        }
    }
}

impl<'a> Decode<'a> for Uuid {
    #[inline(always)]
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        match d.u8()? {
            c::UUID => d.array().map(Uuid),
            found => Err(unexpected("uuid", found)),
        }
    }
}

impl<'a> Decode<'a> for Bytes {
    #[inline(always)]
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        let part = <&'a [u8]>::decode(d)?;
        Ok(d.share(part))
    }
}

/// A borrowed `binary`.
impl<'a> Decode<'a> for &'a [u8] {
    #[inline(always)]
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        match d.u8()? {
            c::VBIN8 => d.variable(false),
            c::VBIN32 => d.variable(true),
            found => Err(unexpected("binary", found)),
        }
    }
}

impl<'a> Decode<'a> for Str {
    #[inline]
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        match d.u8()? {
            c::STR8 => d.str_body(false),
            c::STR32 => d.str_body(true),
            found => Err(unexpected("string", found)),
        }
    }
}

/// A borrowed `string`, validated as UTF-8.
impl<'a> Decode<'a> for &'a str {
    #[inline(always)]
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        let part = match d.u8()? {
            c::STR8 => d.variable(false)?,
            c::STR32 => d.variable(true)?,
            found => return Err(unexpected("string", found)),
        };
        std::str::from_utf8(part).map_err(|_| DecodeError::InvalidUtf8)
    }
}

impl<'a> Decode<'a> for Symbol {
    #[inline]
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        match d.u8()? {
            c::SYM8 => d.sym_body(false),
            c::SYM32 => d.sym_body(true),
            found => Err(unexpected("symbol", found)),
        }
    }
}

/// A borrowed `symbol`, validated as ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SymbolRef<'a>(pub &'a str);

impl<'a> Decode<'a> for SymbolRef<'a> {
    #[inline(always)]
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        let part = match d.u8()? {
            c::SYM8 => d.variable(false)?,
            c::SYM32 => d.variable(true)?,
            found => return Err(unexpected("symbol", found)),
        };
        if !part.is_ascii() {
            return Err(DecodeError::InvalidSymbol);
        }
        std::str::from_utf8(part)
            .map(SymbolRef)
            .map_err(|_| DecodeError::InvalidSymbol)
    }
}

impl<'a> Decode<'a> for Map {
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        match d.u8()? {
            c::MAP8 => d.map_pairs(false),
            c::MAP32 => d.map_pairs(true),
            found => Err(unexpected("map", found)),
        }
    }
}

impl<'a> Decode<'a> for Array {
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        match d.u8()? {
            c::ARRAY8 => d.array_body(false),
            c::ARRAY32 => d.array_body(true),
            found => Err(unexpected("array", found)),
        }
    }
}

impl<'a> Decode<'a> for Described {
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        match d.value()? {
            Value::Described(b) => Ok(*b),
            _ => Err(DecodeError::InvalidValue("described value")),
        }
    }
}

impl<'a> Decode<'a> for Descriptor {
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        match d.value()? {
            Value::Ulong(c) => Ok(Descriptor::Code(c)),
            Value::Symbol(s) => Ok(Descriptor::Name(s)),
            _ => Err(DecodeError::InvalidValue("descriptor")),
        }
    }
}

/// A `multiple` symbol field (§1.4): null, one symbol, or an array of symbols.
///
/// A list of symbols is accepted too: python3-qpid-proton 0.37 writes connection capabilities
/// given as a Python list that way (see `tests/vectors/quirks.vectors`).
impl<'a> Decode<'a> for Vec<Symbol> {
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        let items = match d.peek_u8()? {
            c::NULL => {
                d.u8()?;
                return Ok(Vec::new());
            }
            c::SYM8 | c::SYM32 => return Ok(vec![Symbol::decode(d)?]),
            c::LIST0 | c::LIST8 | c::LIST32 => Vec::<Value>::decode(d)?,
            _ => {
                let array = Array::decode(d)?;
                if *array.elem() != ElemType::Symbol {
                    return Err(DecodeError::InvalidValue("multiple symbol"));
                }
                array.into_items()
            }
        };
        items
            .into_iter()
            .map(|v| match v {
                Value::Symbol(s) => Ok(s),
                _ => Err(DecodeError::InvalidValue("multiple symbol")),
            })
            .collect()
    }
}

impl<'a, T: Decode<'a>> Decode<'a> for Box<T> {
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        T::decode(d).map(Box::new)
    }
}

/// A `list` of values.
impl<'a> Decode<'a> for Vec<Value> {
    fn decode(d: &mut Decoder<'a>) -> Result<Self> {
        match d.u8()? {
            c::LIST0 => Ok(Vec::new()),
            c::LIST8 => d.list_items(false),
            c::LIST32 => d.list_items(true),
            found => Err(unexpected("list", found)),
        }
    }
}
