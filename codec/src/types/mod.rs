//! The AMQP type system (§1.6): a self-describing [`Value`] plus the fixed-width newtypes.
//!
//! Variable-width values ([`Value::Binary`], [`Str`], [`Symbol`]) are `Bytes` slices of the
//! buffer they were decoded from. A `Value` says *what* was encoded, not *how*: `uint 7`
//! decodes to the same value whether it was written as `uint0`, `smalluint` or `uint`, and is
//! written back in the canonical (smallest) form.

mod text;

pub use text::{NotAscii, Str, Symbol};

use bytes::Bytes;

/// A complete AMQP value of any type.
///
/// Equality compares floats by their bits, so that every value (NaN included) equals itself
/// after a round trip through the codec.
#[derive(Debug, Clone, Default)]
pub enum Value {
    /// §1.6.1
    #[default]
    Null,
    /// §1.6.2
    Bool(bool),
    /// §1.6.3
    Ubyte(u8),
    /// §1.6.4
    Ushort(u16),
    /// §1.6.5
    Uint(u32),
    /// §1.6.6
    Ulong(u64),
    /// §1.6.7
    Byte(i8),
    /// §1.6.8
    Short(i16),
    /// §1.6.9
    Int(i32),
    /// §1.6.10
    Long(i64),
    /// §1.6.11
    Float(f32),
    /// §1.6.12
    Double(f64),
    /// §1.6.13
    Decimal32(Decimal32),
    /// §1.6.14
    Decimal64(Decimal64),
    /// §1.6.15
    Decimal128(Decimal128),
    /// §1.6.16: a UTF-32 code point.
    Char(char),
    /// §1.6.17
    Timestamp(Timestamp),
    /// §1.6.18
    Uuid(Uuid),
    /// §1.6.19
    Binary(Bytes),
    /// §1.6.20
    String(Str),
    /// §1.6.21
    Symbol(Symbol),
    /// §1.6.22
    List(Vec<Value>),
    /// §1.6.23
    Map(Map),
    /// §1.6.24
    Array(Array),
    /// §1.2: a value with a descriptor.
    Described(Box<Described>),
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        use Value::*;
        match (self, other) {
            (Null, Null) => true,
            (Bool(a), Bool(b)) => a == b,
            (Ubyte(a), Ubyte(b)) => a == b,
            (Ushort(a), Ushort(b)) => a == b,
            (Uint(a), Uint(b)) => a == b,
            (Ulong(a), Ulong(b)) => a == b,
            (Byte(a), Byte(b)) => a == b,
            (Short(a), Short(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (Long(a), Long(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Double(a), Double(b)) => a.to_bits() == b.to_bits(),
            (Decimal32(a), Decimal32(b)) => a == b,
            (Decimal64(a), Decimal64(b)) => a == b,
            (Decimal128(a), Decimal128(b)) => a == b,
            (Char(a), Char(b)) => a == b,
            (Timestamp(a), Timestamp(b)) => a == b,
            (Uuid(a), Uuid(b)) => a == b,
            (Binary(a), Binary(b)) => a == b,
            (String(a), String(b)) => a == b,
            (Symbol(a), Symbol(b)) => a == b,
            (List(a), List(b)) => a == b,
            (Map(a), Map(b)) => a == b,
            (Array(a), Array(b)) => a == b,
            (Described(a), Described(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

impl Value {
    /// A string value copied from `s`.
    pub fn string(s: &str) -> Self {
        Value::String(Str::from(s))
    }

    /// A symbol value from static ASCII text.
    pub fn symbol(s: &'static str) -> Self {
        Value::Symbol(Symbol::from_static(s))
    }

    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The text of a `string` or `symbol`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s.as_str()),
            Value::Symbol(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// Any unsigned or non-negative signed integer, widened.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Ubyte(v) => Some(u64::from(v)),
            Value::Ushort(v) => Some(u64::from(v)),
            Value::Uint(v) => Some(u64::from(v)),
            Value::Ulong(v) => Some(v),
            Value::Byte(v) => u64::try_from(v).ok(),
            Value::Short(v) => u64::try_from(v).ok(),
            Value::Int(v) => u64::try_from(v).ok(),
            Value::Long(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

/// A described value (§1.2): the descriptor says how to interpret the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// Usually a `symbol` name or a `ulong` code; any value is legal.
    pub descriptor: Value,
    /// The value being described.
    pub value: Value,
}

/// A descriptor as most descriptors are written: a numeric code or a symbolic name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Descriptor {
    /// A `ulong` code, by convention `domain-id << 32 | descriptor-id`.
    Code(u64),
    /// A `symbol` name such as `amqp:open:list`.
    Name(Symbol),
}

/// A map as the spec defines it (§1.6.23): ordered key/value pairs.
///
/// Pairs keep the order they were decoded or inserted in, and are written back in that order,
/// so re-encoding never reorders a peer's map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Map(pub Vec<(Value, Value)>);

impl Map {
    /// An empty map.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// The value of the first pair whose key is `key`.
    pub fn get(&self, key: &Value) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of the first pair whose key is a `symbol` or `string` equal to `key`.
    pub fn get_str(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Appends a pair.
    pub fn push(&mut self, key: Value, value: Value) {
        self.0.push((key, value));
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, (Value, Value)> {
        self.0.iter()
    }
}

impl FromIterator<(Value, Value)> for Map {
    fn from_iter<I: IntoIterator<Item = (Value, Value)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// An array (§1.6.24): a sequence of values of one type, written with one shared constructor.
///
/// For an array of described values the descriptor lives in [`ElemType::Described`] and
/// `items` hold the undescribed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Array {
    elem: ElemType,
    items: Vec<Value>,
}

impl Array {
    /// An array of `items`, all of type `elem`; `None` if any item is of another type, or if
    /// `elem` is described twice: an array carries one descriptor, so the encoder could not
    /// write the inner one (and the decoder refuses such a constructor).
    pub fn new(elem: ElemType, items: Vec<Value>) -> Option<Self> {
        let described_twice = matches!(
            &elem,
            ElemType::Described { inner, .. } if matches!(**inner, ElemType::Described { .. })
        );
        (!described_twice && items.iter().all(|v| elem.admits_undescribed(v)))
            .then_some(Self { elem, items })
    }

    /// An array of symbols.
    pub fn of_symbols(items: impl IntoIterator<Item = Symbol>) -> Self {
        Self {
            elem: ElemType::Symbol,
            items: items.into_iter().map(Value::Symbol).collect(),
        }
    }

    /// Built by the decoder, which has already checked every item.
    pub(crate) fn from_decoded(elem: ElemType, items: Vec<Value>) -> Self {
        Self { elem, items }
    }

    /// The type shared by every item.
    pub fn elem(&self) -> &ElemType {
        &self.elem
    }

    /// The items (for a described element type, the undescribed values).
    pub fn items(&self) -> &[Value] {
        &self.items
    }

    /// The items, by value.
    pub fn into_items(self) -> Vec<Value> {
        self.items
    }
}

/// The element type of an [`Array`]: a type, not an encoding; the encoder picks the encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ElemType {
    Null,
    Bool,
    Ubyte,
    Ushort,
    Uint,
    Ulong,
    Byte,
    Short,
    Int,
    Long,
    Float,
    Double,
    Decimal32,
    Decimal64,
    Decimal128,
    Char,
    Timestamp,
    Uuid,
    Binary,
    String,
    Symbol,
    List,
    Map,
    Array,
    /// Items are `inner` values; each is written with the shared descriptor.
    Described {
        descriptor: Box<Value>,
        inner: Box<ElemType>,
    },
}

impl ElemType {
    /// Whether `value` (an undescribed item) belongs in an array of this type.
    pub fn admits_undescribed(&self, value: &Value) -> bool {
        use ElemType as E;
        matches!(
            (self, value),
            (E::Null, Value::Null)
                | (E::Bool, Value::Bool(_))
                | (E::Ubyte, Value::Ubyte(_))
                | (E::Ushort, Value::Ushort(_))
                | (E::Uint, Value::Uint(_))
                | (E::Ulong, Value::Ulong(_))
                | (E::Byte, Value::Byte(_))
                | (E::Short, Value::Short(_))
                | (E::Int, Value::Int(_))
                | (E::Long, Value::Long(_))
                | (E::Float, Value::Float(_))
                | (E::Double, Value::Double(_))
                | (E::Decimal32, Value::Decimal32(_))
                | (E::Decimal64, Value::Decimal64(_))
                | (E::Decimal128, Value::Decimal128(_))
                | (E::Char, Value::Char(_))
                | (E::Timestamp, Value::Timestamp(_))
                | (E::Uuid, Value::Uuid(_))
                | (E::Binary, Value::Binary(_))
                | (E::String, Value::String(_))
                | (E::Symbol, Value::Symbol(_))
                | (E::List, Value::List(_))
                | (E::Map, Value::Map(_))
                | (E::Array, Value::Array(_))
        ) || matches!(self, E::Described { inner, .. } if inner.admits_undescribed(value))
    }
}

/// Milliseconds since the Unix epoch (§1.6.17).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

/// A UUID in its RFC-4122 byte order (§1.6.18).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(pub [u8; 16]);

/// IEEE 754-2008 decimal32, kept as its encoded bits (§1.6.13).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Decimal32(pub [u8; 4]);

/// IEEE 754-2008 decimal64, kept as its encoded bits (§1.6.14).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Decimal64(pub [u8; 8]);

/// IEEE 754-2008 decimal128, kept as its encoded bits (§1.6.15).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Decimal128(pub [u8; 16]);

macro_rules! value_from {
    ($($t:ty => $v:ident),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::$v(v)
            }
        })*
    };
}

value_from!(
    bool => Bool, u8 => Ubyte, u16 => Ushort, u32 => Uint, u64 => Ulong, i8 => Byte,
    i16 => Short, i32 => Int, i64 => Long, f32 => Float, f64 => Double, char => Char,
    Timestamp => Timestamp, Uuid => Uuid, Bytes => Binary, Str => String, Symbol => Symbol,
    Vec<Value> => List, Map => Map, Array => Array, Decimal32 => Decimal32,
    Decimal64 => Decimal64, Decimal128 => Decimal128,
);

impl From<Described> for Value {
    fn from(d: Described) -> Self {
        Value::Described(Box::new(d))
    }
}
