//! Described lists (§1.3 composite types), generated from one declaration each.
//!
//! Every performative, terminus, delivery state, section header and SASL frame is a list of
//! fields under a descriptor. The [`composite!`] macro turns a field table into the struct, its
//! decoder and its encoder, so the ~40 composite types of the spec share one implementation.
//!
//! Field kinds:
//! - `req name: T`: mandatory; null or absent is [`DecodeError::MissingField`].
//! - `opt name: T`: optional; the struct holds `Option<T>`.
//! - `def name: T = expr`: null or absent means `expr` (or `T::default()` without `= expr`).
//!
//! Encoding modes:
//! - `full`: every field is written, with no trailing-null elision and never `list0`. Used for
//!   performatives and the composites inside them, because some clients read fields by
//!   position (the pyamqp copy in azure-eventhub indexes `attach[13]` and `error[2]`).
//! - `compact`: the canonical smallest form: a field equal to its default is written as null,
//!   trailing nulls are dropped, and an all-null list is `list0`. Used for message sections and
//!   delivery states.
//!
//! [`DecodeError::MissingField`]: crate::DecodeError::MissingField

use crate::decode::{Decoder, Result};

/// A composite's fields, read after its descriptor. Lets a caller that has already read the
/// descriptor (to dispatch among several types) decode the rest.
pub trait DescribedBody<'a>: Sized {
    /// The numeric descriptor.
    const CODE: u64;
    /// The symbolic descriptor.
    const NAME: &'static str;
    /// Reads the fields list.
    fn decode_body(d: &mut Decoder<'a>) -> Result<Self>;

    /// Reads the fields list and hands the value to `wrap`, whose result is returned.
    ///
    /// Composites build themselves inside `wrap`'s argument, so an enclosing enum or frame can
    /// be built in one place instead of each layer copying a ~200-byte value out of a
    /// `Result` and into the next.
    #[doc(hidden)]
    #[inline(always)]
    fn decode_body_with<U>(d: &mut Decoder<'a>, wrap: impl FnOnce(Self) -> U) -> Result<U> {
        Self::decode_body(d).map(wrap)
    }
}

macro_rules! composite {
    (@ty opt $t:ty) => { Option<$t> };
    (@ty req $t:ty) => { $t };
    (@ty def $t:ty) => { $t };

    (@dflt opt $t:ty) => { None };
    (@dflt req $t:ty) => { <$t as Default>::default() };
    (@dflt def $t:ty) => { <$t as Default>::default() };
    (@dflt def $t:ty, $d:expr) => { $d };

    (@read $f:ident, $n:literal, $fl:ident, opt $t:ty) => {
        if $f.present()? { Some($f.read::<$t>()?) } else { None }
    };
    (@read $f:ident, $n:literal, $fl:ident, req $t:ty) => {
        if $f.present()? {
            $f.read::<$t>()?
        } else {
            return Err($crate::DecodeError::MissingField {
                composite: $n,
                field: stringify!($fl),
            });
        }
    };
    (@read $f:ident, $n:literal, $fl:ident, def $t:ty $(, $d:expr)?) => {
        if $f.present()? { $f.read::<$t>()? } else { composite!(@dflt def $t $(, $d)?) }
    };

    (@isnull $m:ident, $e:expr, opt $t:ty) => { $e.is_none() };
    (@isnull $m:ident, $e:expr, req $t:ty) => { false };
    (@isnull full, $e:expr, def $t:ty $(, $d:expr)?) => { false };
    (@isnull compact, $e:expr, def $t:ty $(, $d:expr)?) => {
        $e == composite!(@dflt def $t $(, $d)?)
    };

    // What `body_len` reports: every field in full mode; up to the last non-null in compact.
    (@written full, $last:expr, $all:expr) => { $all };
    (@written compact, $last:expr, $all:expr) => { $last };

    (
        $(#[$meta:meta])*
        $mode:ident struct $name:ident $(<$lt:lifetime>)? = $code:literal, $sym:literal {
            $( $(#[$fmeta:meta])* $kind:ident $field:ident : $fty:ty $(= $default:expr)? ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name $(<$lt>)? {
            $( $(#[$fmeta])* pub $field: composite!(@ty $kind $fty), )*
        }

        /// Every field at its spec default; mandatory fields at their type's default, to be
        /// set with struct update syntax: `Attach { name, handle, role, ..Default::default() }`.
        impl $(<$lt>)? Default for $name $(<$lt>)? {
            fn default() -> Self {
                Self {
                    $( $field: composite!(@dflt $kind $fty $(, $default)?), )*
                }
            }
        }

        impl $(<$lt>)? $name $(<$lt>)? {
            /// Numeric descriptor.
            pub const DESCRIPTOR_CODE: u64 = $code;
            /// Symbolic descriptor.
            pub const DESCRIPTOR_NAME: &'static str = $sym;

            /// (bytes of the written fields, number of fields written), in one pass: a null
            /// takes one byte, and compact mode drops the nulls after the last value.
            #[allow(unused_mut, unused_variables, unused_assignments)]
            #[inline]
            fn body_len(&self) -> (usize, usize) {
                let mut n = 0usize;
                let mut len = 0usize;
                let mut last = (0usize, 0usize);
                $(
                    n += 1;
                    if composite!(@isnull $mode, self.$field, $kind $fty $(, $default)?) {
                        len += 1;
                    } else {
                        len += $crate::encode::Encode::encoded_len(&self.$field);
                        last = (len, n);
                    }
                )*
                composite!(@written $mode, last, (len, n))
            }
        }

        impl<'a> $crate::composite::DescribedBody<'a> for $name $(<$lt>)? {
            const CODE: u64 = $code;
            const NAME: &'static str = $sym;

            #[inline(always)]
            fn decode_body(d: &mut $crate::decode::Decoder<'a>) -> $crate::decode::Result<Self> {
                Self::decode_body_with(d, |v| v)
            }

            #[allow(unused_mut, unused_variables)]
            #[inline(always)]
            fn decode_body_with<U>(
                d: &mut $crate::decode::Decoder<'a>,
                wrap: impl FnOnce(Self) -> U,
            ) -> $crate::decode::Result<U> {
                // Every field is read into a local and unknown trailing fields are skipped
                // before the struct is built, so it is built once, straight into its slot.
                d.fields(|f| {
                    $( let $field = composite!(@read f, $sym, $field, $kind $fty $(, $default)?); )*
                    f.skip_rest()?;
                    Ok(wrap(Self { $( $field, )* }))
                })
            }
        }

        impl<'a> $crate::decode::Decode<'a> for $name $(<$lt>)? {
            #[inline(always)]
            fn decode(d: &mut $crate::decode::Decoder<'a>) -> $crate::decode::Result<Self> {
                d.expect_descriptor($code, $sym, $sym)?;
                <Self as $crate::composite::DescribedBody<'a>>::decode_body(d)
            }
        }

        impl $(<$lt>)? $crate::encode::Encode for $name $(<$lt>)? {
            fn encoded_len(&self) -> usize {
                let (body, count) = self.body_len();
                let list = if count == 0 && stringify!($mode) == "compact" {
                    1
                } else {
                    1 + $crate::encode::compound_header_len(body, count) + body
                };
                $crate::encode::descriptor_len($code) + list
            }

            #[allow(unused_variables)]
            fn encode(&self, buf: &mut ::bytes::BytesMut) {
                use ::bytes::BufMut;
                $crate::encode::put_descriptor(buf, $code);
                let (body, count) = self.body_len();
                if count == 0 && stringify!($mode) == "compact" {
                    buf.put_u8($crate::codes::LIST0);
                    return;
                }
                $crate::encode::put_compound_header(
                    buf,
                    ($crate::codes::LIST8, $crate::codes::LIST32),
                    body,
                    count,
                );
                #[allow(unused_mut)]
                let mut i = 0usize;
                $(
                    if i < count {
                        if composite!(@isnull $mode, self.$field, $kind $fty $(, $default)?) {
                            buf.put_u8($crate::codes::NULL);
                        } else {
                            $crate::encode::Encode::encode(&self.$field, buf);
                        }
                    }
                    i += 1;
                )*
                let _ = i;
            }
        }
    };
}

pub(crate) use composite;

/// A described non-list value (a section such as `data` or `amqp-value`): a newtype over the
/// described value, with its decoder and encoder.
macro_rules! described_newtype {
    (
        $(#[$meta:meta])*
        struct $name:ident($inner:ty) = $code:literal, $sym:literal;
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name(pub $inner);

        impl $name {
            /// Numeric descriptor.
            pub const DESCRIPTOR_CODE: u64 = $code;
            /// Symbolic descriptor.
            pub const DESCRIPTOR_NAME: &'static str = $sym;
        }

        impl<'a> $crate::composite::DescribedBody<'a> for $name {
            const CODE: u64 = $code;
            const NAME: &'static str = $sym;
            fn decode_body(d: &mut $crate::decode::Decoder<'a>) -> $crate::decode::Result<Self> {
                d.read::<$inner>().map(Self)
            }
        }

        impl<'a> $crate::decode::Decode<'a> for $name {
            fn decode(d: &mut $crate::decode::Decoder<'a>) -> $crate::decode::Result<Self> {
                d.expect_descriptor($code, $sym, $sym)?;
                <Self as $crate::composite::DescribedBody<'a>>::decode_body(d)
            }
        }

        impl $crate::encode::Encode for $name {
            fn encoded_len(&self) -> usize {
                $crate::encode::descriptor_len($code) + self.0.encoded_len()
            }
            fn encode(&self, buf: &mut ::bytes::BytesMut) {
                $crate::encode::put_descriptor(buf, $code);
                self.0.encode(buf);
            }
        }
    };
}

pub(crate) use described_newtype;

/// An enum over several described types that may appear in one place (the performatives, the
/// delivery states, the sections): reads the descriptor once and dispatches on it.
macro_rules! described_enum {
    // Without a lifetime: also `From` each variant's type.
    (
        $(#[$meta:meta])*
        enum $name:ident : $what:literal {
            $( $(#[$vm:meta])* $variant:ident($ty:ty), )*
        }
    ) => {
        described_enum!(@common [$(#[$meta])*] $name [] $what { $( [$(#[$vm])*] $variant($ty), )* });
        $(
            impl From<$ty> for $name {
                fn from(v: $ty) -> Self {
                    $name::$variant(v)
                }
            }
        )*
    };
    (
        $(#[$meta:meta])*
        enum $name:ident <$lt:lifetime> : $what:literal {
            $( $(#[$vm:meta])* $variant:ident($ty:ty), )*
        }
    ) => {
        described_enum!(@common [$(#[$meta])*] $name [<$lt>] $what { $( [$(#[$vm])*] $variant($ty), )* });
    };
    (@common [$($meta:tt)*] $name:ident [$($gen:tt)*] $what:literal {
        $( [$($vm:tt)*] $variant:ident($ty:ty), )*
    }) => {
        $($meta)*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name $($gen)* {
            $( $($vm)* $variant($ty), )*
        }

        impl<'a> $crate::composite::DescribedEnum<'a> for $name $($gen)* {
            #[inline(always)]
            fn decode_after_with<U>(
                descriptor: $crate::decode::DescriptorRef<'_>,
                d: &mut $crate::decode::Decoder<'a>,
                wrap: impl FnOnce(Self) -> U,
            ) -> $crate::decode::Result<U> {
                use $crate::composite::DescribedBody;
                $(
                    if descriptor.is(<$ty>::CODE, <$ty>::NAME) {
                        return <$ty>::decode_body_with(d, |v| wrap($name::$variant(v)));
                    }
                )*
                Err($crate::DecodeError::UnexpectedDescriptor { expected: $what })
            }
        }

        impl<'a> $crate::decode::Decode<'a> for $name $($gen)* {
            #[inline(always)]
            fn decode(d: &mut $crate::decode::Decoder<'a>) -> $crate::decode::Result<Self> {
                let descriptor = d.descriptor()?;
                <Self as $crate::composite::DescribedEnum<'a>>::decode_after(descriptor, d)
            }
        }

        impl $($gen)* $crate::encode::Encode for $name $($gen)* {
            fn encoded_len(&self) -> usize {
                match self {
                    $( $name::$variant(v) => v.encoded_len(), )*
                }
            }
            fn encode(&self, buf: &mut ::bytes::BytesMut) {
                match self {
                    $( $name::$variant(v) => v.encode(buf), )*
                }
            }
        }
    };
}

pub(crate) use described_enum;

/// Decoding of a [`described_enum!`] once its descriptor has been read.
pub(crate) trait DescribedEnum<'a>: Sized {
    /// Decodes the variant `descriptor` names and hands it to `wrap` (see
    /// [`DescribedBody::decode_body_with`]).
    fn decode_after_with<U>(
        descriptor: crate::decode::DescriptorRef<'_>,
        d: &mut crate::decode::Decoder<'a>,
        wrap: impl FnOnce(Self) -> U,
    ) -> crate::decode::Result<U>;

    /// Decodes the variant `descriptor` names.
    #[inline(always)]
    fn decode_after(
        descriptor: crate::decode::DescriptorRef<'_>,
        d: &mut crate::decode::Decoder<'a>,
    ) -> crate::decode::Result<Self> {
        Self::decode_after_with(descriptor, d, |v| v)
    }
}

impl<'a, T: DescribedBody<'a>> DescribedBody<'a> for Box<T> {
    const CODE: u64 = T::CODE;
    const NAME: &'static str = T::NAME;
    fn decode_body(d: &mut Decoder<'a>) -> Result<Self> {
        T::decode_body_with(d, Box::new)
    }

    #[inline(always)]
    fn decode_body_with<U>(d: &mut Decoder<'a>, wrap: impl FnOnce(Self) -> U) -> Result<U> {
        T::decode_body_with(d, |v| wrap(Box::new(v)))
    }
}
