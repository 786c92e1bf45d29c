//! `ferry-codec`: a zero-copy AMQP 1.0 codec (OASIS AMQP 1.0, Parts 1-5).
//!
//! Nothing here does I/O or depends on an async runtime: bytes in, typed frames out, and back.
//!
//! # Layout
//! - [`types`]: the type system (§1.6): [`Value`], [`Str`], [`Symbol`], [`Map`], [`Array`].
//! - [`decode`] / [`encode`]: the [`Decode`] and [`Encode`] traits and the value codec.
//! - [`frames`]: protocol headers (§2.2, §5.2.1, §5.3.1) and framing (§2.3), the only layer
//!   that may answer "need more bytes".
//! - [`definitions`]: §2.8 (roles, settle modes, sequence numbers, delivery tags, errors).
//! - [`performatives`]: the nine AMQP frame bodies (§2.7).
//! - [`messaging`]: message sections, terminus types, delivery states (§3), and [`Message`],
//!   a message kept as its raw bytes plus section offsets.
//! - [`transaction`]: coordinator, declare, discharge, declared, transactional state (§4).
//! - [`sasl`]: the SASL frame bodies (§5.3.3).
//! - [`limits`], [`error`]: what decoding may cost, and what goes wrong.
//!
//! # Zero copy
//! Decoding takes a `&Bytes` holding a whole frame. Binaries, strings, symbols and transfer
//! payloads come back as slices of it (a reference count, no copy); borrowed section views
//! such as [`messaging::Properties`] point straight into it. Encoding writes into `BytesMut`,
//! and a re-annotated [`Message`] reuses the original body slices.

pub mod codes;
mod composite;
pub mod decode;
pub mod definitions;
pub mod delivery_state;
pub mod encode;
pub mod error;
pub mod frames;
#[doc(hidden)]
pub mod fuzzing;
pub mod limits;
pub mod messaging;
pub mod performatives;
pub mod sasl;
pub mod transaction;
pub mod types;

pub use composite::DescribedBody;
pub use decode::{Decode, Decoder};
pub use encode::Encode;
pub use error::{DecodeError, EncodeError, FramingError};
pub use limits::DecodeLimits;
pub use messaging::Message;
pub use types::{Array, Described, Descriptor, ElemType, Map, Str, Symbol, Timestamp, Uuid, Value};
