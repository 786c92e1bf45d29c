//! `string` and `symbol` values that share the read buffer (§1.6.20, §1.6.21).
//!
//! Both are `Bytes` slices whose contents were validated once, on decode or construction, so
//! that reading them later costs nothing and never copies.

use bytes::Bytes;
use std::fmt;

macro_rules! text_type {
    ($(#[$meta:meta])* $name:ident, $check:path, $err:ty) => {
        $(#[$meta])*
        #[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Bytes);

        impl $name {
            /// Wraps bytes after checking them; the check is the only cost.
            pub fn try_from_bytes(bytes: Bytes) -> Result<Self, $err> {
                $check(&bytes)?;
                Ok(Self(bytes))
            }

            /// A value that points at static text; no allocation.
            ///
            /// # Panics
            /// Never for [`Str`]; for [`Symbol`] a non-ASCII literal is a programming error
            /// caught in debug builds, and is replaced by an empty symbol in release builds.
            pub fn from_static(text: &'static str) -> Self {
                match $check(text.as_bytes()) {
                    Ok(()) => Self(Bytes::from_static(text.as_bytes())),
                    Err(_) => {
                        debug_assert!(false, "invalid static text {text:?}");
                        Self::default()
                    }
                }
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                // SAFETY: every constructor validated the bytes ($check accepts only UTF-8,
                // and ASCII is UTF-8), and `Bytes` is immutable.
                #[allow(unsafe_code)]
                unsafe {
                    std::str::from_utf8_unchecked(&self.0)
                }
            }

            /// The encoded bytes (UTF-8 or ASCII).
            pub fn as_bytes(&self) -> &Bytes {
                &self.0
            }

            /// The underlying buffer slice.
            pub fn into_bytes(self) -> Bytes {
                self.0
            }

            /// Length in bytes.
            pub fn len(&self) -> usize {
                self.0.len()
            }

            /// Whether the text is empty.
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                self.as_str()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self.as_str(), f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

fn check_utf8(bytes: &[u8]) -> Result<(), std::str::Utf8Error> {
    std::str::from_utf8(bytes).map(|_| ())
}

/// Error for a symbol that is not ASCII (§1.6.21: symbols are ASCII).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("symbol is not ASCII")]
pub struct NotAscii;

fn check_ascii(bytes: &[u8]) -> Result<(), NotAscii> {
    if bytes.is_ascii() {
        Ok(())
    } else {
        Err(NotAscii)
    }
}

text_type!(
    /// An AMQP `string`: UTF-8 text sharing the buffer it was decoded from.
    Str,
    check_utf8,
    std::str::Utf8Error
);

text_type!(
    /// An AMQP `symbol`: ASCII text used for names, conditions and capabilities.
    Symbol,
    check_ascii,
    NotAscii
);

impl From<String> for Str {
    fn from(s: String) -> Self {
        Self(Bytes::from(s))
    }
}

impl From<&str> for Str {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl TryFrom<String> for Symbol {
    type Error = NotAscii;
    fn try_from(s: String) -> Result<Self, NotAscii> {
        Self::try_from_bytes(Bytes::from(s))
    }
}

impl TryFrom<&str> for Symbol {
    type Error = NotAscii;
    fn try_from(s: &str) -> Result<Self, NotAscii> {
        Self::try_from_bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<Symbol> for Str {
    fn from(s: Symbol) -> Self {
        Self(s.0)
    }
}
