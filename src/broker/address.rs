//! Link addresses: the forms a source or target address takes, which kind of node a name
//! stands for, and the configured rules that decide it where nothing else does.
//!
//! Everything here is pure. [`parse`] reads an address, [`capability`] reads the terminus
//! capabilities, [`Rules::lookup`] finds the rule for a name, and [`plan`] combines them with a
//! view of the existing nodes ([`Nodes`]) into a [`Plan`] for the broker to carry out.
//!
//! # Forms
//! | address          | node                                                                |
//! |------------------|---------------------------------------------------------------------|
//! | `/queues/Q`      | queue `Q`                                                           |
//! | `/exchanges/X/K` | exchange `X`; every message is routed with key `K`                  |
//! | `/exchanges/X`   | exchange `X`; each message is routed with its `subject`             |
//! | null             | targets only: each message goes where its `to` says (anonymous relay) |
//! | `NAME`           | a bare name: see [which node a name means](#which-node-a-name-means) |
//!
//! The path forms are RabbitMQ 4's "address v2". Ferry parses them as RabbitMQ does, so clients
//! written for it work unchanged:
//! - Segments are percent-encoded (RFC 3986 §2.1, hex digits in either case). Only unreserved
//!   characters, sub-delims, `:` and `@` may appear raw. Anything else must be encoded: a space,
//!   `/` inside a name, `?`, `#`, any non-ASCII character. `+` stays `+`. (RabbitMQ decodes with
//!   cowlib's `cow_uri:urldecode`, which refuses the same bytes.)
//! - Names may not be empty. `/exchanges/` takes a name and at most one key. The key may be
//!   empty (`/exchanges/X/`).
//! - The default exchange (`""` or `amq.default`) cannot be named: use `/queues/Q`.
//! - Any other address that starts with `/` is refused. It is not read as a name, because
//!   RabbitMQ 3's "v1" forms (`/queue/Q`, `/exchange/X/key/K`, `/topic/T`, `/amq/queue/Q`)
//!   look like that and mean something else. This also keeps `/` free for later forms.
//!
//! Ferry differs from RabbitMQ 4 in these ways, each on purpose:
//! - `/exchanges/X` routes with each message's `subject`, where RabbitMQ uses the empty key.
//!   This lets one link publish under many keys. The two agree for fanout and headers
//!   exchanges, and for messages without a subject.
//! - A receiver may attach to `/exchanges/X[/K]`. RabbitMQ sources must be `/queues/Q`.
//! - `/queues/Q` is created if missing, like any auto-created queue (RabbitMQ requires it to
//!   exist). A rule with `create = false` prevents this.
//! - Bare names are accepted. RabbitMQ 4 reads them only as deprecated v1 addresses.
//! - Decoded names and keys must be UTF-8, since they are compared with bare names and
//!   `subject`s, which are strings. RabbitMQ takes any bytes.
//! - Names may not contain control characters, raw or encoded. Names appear in logs and in
//!   management output, and a name must mean the same thing in either form.
//!
//! Sources: rabbitmq.com/docs/amqp ("Address v2"); in rabbitmq-server,
//! `deps/rabbit/src/rabbit_amqp_session.erl` (`parse_target_v2_string`, `ensure_source`),
//! `deps/rabbitmq_amqp_client/src/rabbitmq_amqp_address.erl` and
//! `deps/rabbit/test/amqp_address_SUITE.erl` (the tests below replay its `bad_v2_addresses`);
//! cowlib `src/cow_uri.erl`.
//!
//! # Which node a name means
//! [`plan`] applies these steps in order. The first that decides wins.
//! 1. **A path form.** `/queues/Q` is a queue. `/exchanges/X` is an exchange that must exist,
//!    unless a rule for `X` names an exchange type to create it with. Capabilities are ignored,
//!    because the address already says which kind.
//! 2. **A `queue` or `topic` capability on the terminus.** Qpid JMS sends one for every
//!    destination, and `temporary-queue` / `temporary-topic` for temporary ones. The client knows
//!    which kind it means, so that kind is used even when a node of the other kind has the name.
//!    A missing topic is created with the type of the exchange rule matching its name, else as a
//!    `topic` exchange. Receivers without a key bind to it with `#`, so every subscriber gets
//!    every message, and keyed subscribers (`/exchanges/T/K`) can still filter.
//! 3. **An existing node with that name.** If both kinds exist, the queue is used. Queues and
//!    exchanges have separate namespaces, as in RabbitMQ, and qpidd settles the same ambiguity
//!    the same way.
//! 4. **The most specific [rule](Rules) matching the name.**
//! 5. **A new queue.**
//!
//! Existing nodes come before rules because rules say what to *create*: a declared queue named
//! `broadcast.x` stays a queue. Whichever step decides, the rule matching the name (if any)
//! supplies `create`, so `create = false` stops attaches from creating anything under it, in
//! any form. Names under the dynamic-node prefix are never created here.
//!
//! # What the broker does with a plan
//! - [`Plan::Queue`]. A sender enqueues. A receiver consumes; receivers on one queue
//!   compete, and each message goes to one of them.
//! - [`Plan::Exchange`]. A sender's messages are routed with the address's key, else their
//!   `subject`, else the empty key; one that no queue takes is settled as [`Unroutable`] says.
//!   A receiver gets a new subscription queue for its link alone, bound with the address's
//!   key. Without a key, fanout binds everything, topic binds `#`, direct the empty key and
//!   headers the source's filter. The queue goes when the link detaches.
//! - [`Plan::Anonymous`] (senders only). Each message goes where its `to` says: [`parse`] it
//!   and [`plan`] it as a sender's address.
//!
//! A subscription queue per receiver is what fans out: every receiver has its own copy. One
//! exchange serves any number of them. Exchanges created on attach are removed like
//! auto-created queues once idle (no links and no bindings).
//!
//! # Rules
//! A rule's pattern is one of two kinds:
//! - **A literal prefix.** `openstack.org/om/rpc/multicast/` matches every name that starts
//!   with it.
//! - **A word pattern.** A pattern is one when some `.`-separated word is exactly `*` or `#`.
//!   It must match the whole name, using the topic exchange's rules: `*` is one word and `#` is
//!   zero or more (see [`super::topic`]). So `broadcast.#` matches `broadcast` and
//!   `broadcast.a.b`. A name of more than [`MAX_TOPIC_WORDS`](super::topic::MAX_TOPIC_WORDS)
//!   words matches no word pattern.
//!
//! `*` or `#` inside a word is refused rather than taken literally. Otherwise a typo would make
//! a prefix that never matches.
//!
//! **Precedence.** Among the rules matching a name, the one with the most literal bytes wins:
//! for a prefix that is its length, for a word pattern its length minus its wildcards. So a
//! narrower rule overrides a broader one whatever their order. On a tie, a literal prefix beats
//! a word pattern, and then the earlier rule wins.
//!
//! # OpenStack
//! oslo.messaging's `amqp1` driver (`oslo_messaging/_drivers/amqp1_driver/addressing.py`, last
//! shipped in 14.9.3) turns each target into an address. It sends no capabilities and expects
//! the broker to infer the delivery pattern from the address. It has two modes. The default,
//! `dynamic`, picks legacy when the broker's Open `product` is missing or is `qpid-cpp`, and
//! routable otherwise. With the default `control_exchange` (`openstack`; services set their
//! own, such as `nova`) and no virtual host, the addresses are:
//!
//! | traffic                          | legacy                                 |
//! |----------------------------------|----------------------------------------|
//! | RPC to topic `compute` (anycast) | `unicast.openstack.compute`            |
//! | RPC to server `host1` (unicast)  | `exclusive.openstack.compute.host1`    |
//! | fanout cast (multicast)          | `broadcast.openstack.compute.all`      |
//! | notification at `info` (anycast) | `unicast.openstack.notifications.info` |
//!
//! | traffic       | routable                                                       |
//! |---------------|----------------------------------------------------------------|
//! | RPC to topic  | `openstack.org/om/rpc/anycast/openstack/compute`               |
//! | RPC to server | `openstack.org/om/rpc/unicast/openstack/compute/host1`         |
//! | fanout cast   | `openstack.org/om/rpc/multicast/openstack/compute`             |
//! | notification  | `openstack.org/om/notify/anycast/openstack/notifications.info` |
//!
//! With `pseudo_vhost` (the default), a virtual host `v` in the transport URL goes after the
//! prefix: `unicast.v.openstack.compute`, `openstack.org/om/rpc/anycast/v/openstack/compute`.
//! An RPC server receives on all three of its addresses (unicast with its own name,
//! multicast and anycast). A notification listener receives on the anycast one. Replies go to
//! a dynamic source, which is an ordinary dynamic queue.
//!
//! [`default_rules`] makes both modes work. Multicast and broadcast become fanout exchanges,
//! so every server gets its own copy. Anycast, unicast and `exclusive.` become shared queues,
//! so one server takes each message. `exclusive.` is not an exclusive queue: several processes
//! may serve one server name, and a restarted server must find its queue again. Fanout rules
//! [`Accept`](Unroutable::Accept) messages that no one receives. Otherwise the driver would
//! resend a released cast (it resends on `released`) until its deadline. A fanout cast to no
//! servers is not an error in oslo, and the rabbit driver drops it too.
//!
//! # Limits
//! Addresses are at most [`MAX_ADDRESS_LEN`] bytes, the same as a routing key, because a key
//! can come from the address. The parser splits at most three segments and never allocates
//! more than the address's length. Rule sets are at most [`MAX_RULES`] rules, and a lookup is
//! one pass over them. Lookups happen only on attach.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use ferry_codec::definitions::ErrorCondition;

use super::DYNAMIC_PREFIX;
use super::topic::{MAX_TOPIC_BYTES, TopicError, check_topic, pattern_matches};

/// Longest address, in bytes. It equals the longest routing key, since `/exchanges/X/K` can
/// carry one.
pub const MAX_ADDRESS_LEN: usize = MAX_TOPIC_BYTES;

/// Most rules in a [`Rules`]. Each lookup scans them all.
pub const MAX_RULES: usize = 1024;

const QUEUES: &str = "/queues/";
const EXCHANGES: &str = "/exchanges/";
/// RabbitMQ's alias for the default exchange, which v2 addresses may not name.
const DEFAULT_EXCHANGE_ALIAS: &str = "amq.default";

/// A parsed address. Names are percent-decoded, and borrowed when nothing needed decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// `/queues/NAME`.
    Queue(Cow<'a, str>),
    /// `/exchanges/NAME[/KEY]`. Without a key, each message's `subject` is its routing key.
    Exchange {
        /// The exchange.
        name: Cow<'a, str>,
        /// The routing key (or binding key, for a receiver). May be empty.
        key: Option<Cow<'a, str>>,
    },
    /// A name with no path form: resolved by [`plan`].
    Bare(&'a str),
    /// The null address: a target that routes each message by its `to`.
    Anonymous,
}

impl Parsed<'_> {
    /// The address that parses back to this, or `None` for [`Parsed::Anonymous`], which is not
    /// a string.
    pub fn to_address(&self) -> Option<String> {
        match self {
            Parsed::Queue(name) => Some(queue_address(name)),
            Parsed::Exchange { name, key } => Some(exchange_address(name, key.as_deref())),
            Parsed::Bare(name) => Some((*name).to_string()),
            Parsed::Anonymous => None,
        }
    }
}

/// Which part of a path address an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The name in `/queues/NAME`.
    Queue,
    /// The name in `/exchanges/NAME`.
    Exchange,
    /// The key in `/exchanges/NAME/KEY`.
    Key,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Queue => "queue name",
            Part::Exchange => "exchange name",
            Part::Key => "routing key",
        })
    }
}

/// Why an address was refused. Each variant names what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The empty string. (A null address is [`Parsed::Anonymous`].)
    #[error("empty address")]
    Empty,
    /// Over [`MAX_ADDRESS_LEN`].
    #[error("address of {len} bytes is over the limit of {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A bare name with a control character.
    #[error("control character {ch:?} at byte {at}")]
    ControlChar {
        /// The character.
        ch: char,
        /// Its byte offset in the address.
        at: usize,
    },
    /// Starts with `/` but is not a v2 form.
    #[error(
        "an address starting with `/` must be /queues/NAME, /exchanges/NAME or \
         /exchanges/NAME/KEY (RabbitMQ 4 address v2)"
    )]
    UnknownPath,
    /// A name with nothing in it.
    #[error("empty {0}")]
    EmptyName(Part),
    /// A `/` past the segments the form has.
    #[error("extra `/` at byte {at}: a `/` inside a name or key must be encoded as %2F")]
    ExtraSegment {
        /// Its byte offset in the address.
        at: usize,
    },
    /// A `%` without two hex digits after it.
    #[error("`%` at byte {at} is not followed by two hex digits")]
    BadPercent {
        /// Its byte offset in the address.
        at: usize,
    },
    /// A character that must be percent-encoded, found raw.
    #[error("{ch:?} at byte {at} must be percent-encoded, as {}", encode_char(*.ch))]
    NotEncoded {
        /// The character.
        ch: char,
        /// Its byte offset in the address.
        at: usize,
    },
    /// Decoded bytes that are not UTF-8.
    #[error("{0} is not UTF-8 once percent-decoded")]
    NotUtf8(Part),
    /// A decoded name with a control character.
    #[error("{part} has control character {ch:?} once percent-decoded")]
    DecodedControl {
        /// Which name.
        part: Part,
        /// The character.
        ch: char,
    },
    /// `/exchanges/amq.default`.
    #[error("the default exchange cannot be addressed: use /queues/NAME")]
    DefaultExchange,
}

impl AddressError {
    /// The AMQP condition for refusing the attach. RabbitMQ 4 uses the same one.
    pub fn condition(&self) -> ErrorCondition {
        ErrorCondition::InvalidField
    }
}

/// Parses a terminus address. A null address is [`Parsed::Anonymous`].
pub fn parse_terminus(address: Option<&str>) -> Result<Parsed<'_>, AddressError> {
    address.map_or(Ok(Parsed::Anonymous), parse)
}

/// Parses a string address: a link's, or a message's `to`.
pub fn parse(address: &str) -> Result<Parsed<'_>, AddressError> {
    if address.is_empty() {
        return Err(AddressError::Empty);
    }
    if address.len() > MAX_ADDRESS_LEN {
        return Err(AddressError::TooLong {
            len: address.len(),
            max: MAX_ADDRESS_LEN,
        });
    }
    if let Some(raw) = address.strip_prefix(QUEUES) {
        return Ok(Parsed::Queue(decode_name(raw, QUEUES.len(), Part::Queue)?));
    }
    if let Some(rest) = address.strip_prefix(EXCHANGES) {
        // At most three pieces, so a long run of slashes costs nothing.
        let mut pieces = rest.splitn(3, '/');
        let raw_name = pieces.next().unwrap_or_default();
        let raw_key = pieces.next();
        if pieces.next().is_some() {
            let key_len = raw_key.map_or(0, str::len);
            return Err(AddressError::ExtraSegment {
                at: EXCHANGES.len() + raw_name.len() + 1 + key_len,
            });
        }
        let name = decode_name(raw_name, EXCHANGES.len(), Part::Exchange)?;
        if name == DEFAULT_EXCHANGE_ALIAS {
            return Err(AddressError::DefaultExchange);
        }
        let key_at = EXCHANGES.len() + raw_name.len() + 1;
        let key = raw_key.map(|k| decode(k, key_at, Part::Key)).transpose()?;
        return Ok(Parsed::Exchange { name, key });
    }
    if address.starts_with('/') {
        return Err(AddressError::UnknownPath);
    }
    if let Some((at, ch)) = address.char_indices().find(|(_, c)| c.is_control()) {
        return Err(AddressError::ControlChar { ch, at });
    }
    Ok(Parsed::Bare(address))
}

/// Decodes a name: not empty, and free of control characters once decoded.
fn decode_name(raw: &str, at: usize, part: Part) -> Result<Cow<'_, str>, AddressError> {
    if raw.is_empty() {
        return Err(AddressError::EmptyName(part));
    }
    let name = decode(raw, at, part)?;
    if let Some(ch) = name.chars().find(|c| c.is_control()) {
        return Err(AddressError::DecodedControl { part, ch });
    }
    Ok(name)
}

/// Percent-decodes one segment that starts at byte `at` of the address. Borrows when there is
/// no `%`.
fn decode(raw: &str, at: usize, part: Part) -> Result<Cow<'_, str>, AddressError> {
    let mut pieces = raw.split('%');
    let first = pieces.next().unwrap_or_default();
    check_plain(first, at)?;
    let mut out: Option<Vec<u8>> = None;
    // Offset of the `%` that starts the next piece.
    let mut percent_at = at + first.len();
    for piece in pieces {
        let buf = out.get_or_insert_with(|| {
            let mut v = Vec::with_capacity(raw.len());
            v.extend_from_slice(first.as_bytes());
            v
        });
        let mut digits = piece.bytes();
        match (digits.next().and_then(hex), digits.next().and_then(hex)) {
            (Some(high), Some(low)) => buf.push(high << 4 | low),
            _ => return Err(AddressError::BadPercent { at: percent_at }),
        }
        // The two digits are ASCII, so byte 2 is a character boundary.
        let rest = piece.get(2..).unwrap_or_default();
        check_plain(rest, percent_at + 3)?;
        buf.extend_from_slice(rest.as_bytes());
        percent_at += 1 + piece.len();
    }
    match out {
        None => Ok(Cow::Borrowed(raw)),
        Some(bytes) => String::from_utf8(bytes)
            .map(Cow::Owned)
            .map_err(|_| AddressError::NotUtf8(part)),
    }
}

/// Checks that `s` (at byte `at` of the address) has only characters allowed raw.
fn check_plain(s: &str, at: usize) -> Result<(), AddressError> {
    match s.char_indices().find(|&(_, c)| !is_plain(c)) {
        None => Ok(()),
        Some((i, '/')) => Err(AddressError::ExtraSegment { at: at + i }),
        Some((i, ch)) => Err(AddressError::NotEncoded { ch, at: at + i }),
    }
}

/// RFC 3986 `pchar` less `%`: what cowlib's decoder accepts raw.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@".contains(c)
}

/// RFC 3986 unreserved characters: the only ones [`encode`] leaves alone.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn hex_digit(n: u8) -> char {
    char::from_digit(u32::from(n & 0xf), 16).map_or('0', |c| c.to_ascii_uppercase())
}

/// Percent-encodes a name or key for a path address. Everything except RFC 3986 unreserved
/// characters is encoded, as RabbitMQ's client libraries do (`uri_string:quote`). This is more
/// than the parser requires, so the result is safe for any decoder.
pub fn encode(segment: &str) -> Cow<'_, str> {
    if segment.bytes().all(is_unreserved) {
        return Cow::Borrowed(segment);
    }
    let mut out = String::with_capacity(segment.len() * 3);
    for b in segment.bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b));
        }
    }
    Cow::Owned(out)
}

fn encode_char(c: char) -> String {
    let mut buf = [0u8; 4];
    encode(c.encode_utf8(&mut buf)).into_owned()
}

/// `/queues/NAME`, with `name` encoded.
pub fn queue_address(name: &str) -> String {
    format!("{QUEUES}{}", encode(name))
}

/// `/exchanges/NAME` or `/exchanges/NAME/KEY`, encoded.
pub fn exchange_address(name: &str, key: Option<&str>) -> String {
    match key {
        Some(key) => format!("{EXCHANGES}{}/{}", encode(name), encode(key)),
        None => format!("{EXCHANGES}{}", encode(name)),
    }
}

/// What the terminus capabilities say the client means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// `queue` or `temporary-queue`: point-to-point.
    Queue,
    /// `topic` or `temporary-topic`: publish-subscribe.
    Topic,
    /// Neither, or both (a contradiction, so the address decides).
    None,
}

/// The capability symbols Qpid JMS (`AmqpSupport`) and ActiveMQ Artemis use to type a
/// destination.
pub mod capabilities {
    /// A JMS `Queue`.
    pub const QUEUE: &str = "queue";
    /// A JMS `Topic`.
    pub const TOPIC: &str = "topic";
    /// A JMS `TemporaryQueue`: sent on the dynamic node that creates it and on later links to it.
    pub const TEMPORARY_QUEUE: &str = "temporary-queue";
    /// A JMS `TemporaryTopic`.
    pub const TEMPORARY_TOPIC: &str = "temporary-topic";
}

/// Reads a source's or target's capabilities. Takes `&[Symbol]` or `&[&str]`. Unknown symbols
/// are ignored.
pub fn capability<S: AsRef<str>>(caps: &[S]) -> Capability {
    let (mut queue, mut topic) = (false, false);
    for cap in caps {
        match cap.as_ref() {
            capabilities::QUEUE | capabilities::TEMPORARY_QUEUE => queue = true,
            capabilities::TOPIC | capabilities::TEMPORARY_TOPIC => topic = true,
            _ => {}
        }
    }
    match (queue, topic) {
        (true, false) => Capability::Queue,
        (false, true) => Capability::Topic,
        _ => Capability::None,
    }
}

/// The exchange types: AMQP 0-9-1's, with the routing key taken from the message `subject`
/// or from the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExchangeType {
    /// Every bound queue gets a copy. The key is ignored.
    Fanout,
    /// Queues bound with a key equal to the routing key.
    Direct,
    /// Queues bound with a matching pattern (see [`super::topic`]).
    Topic,
    /// Queues whose binding arguments match the application properties.
    Headers,
}

impl ExchangeType {
    /// The name used in config and management output.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeType::Fanout => "fanout",
            ExchangeType::Direct => "direct",
            ExchangeType::Topic => "topic",
            ExchangeType::Headers => "headers",
        }
    }
}

impl fmt::Display for ExchangeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node kind name that is none of `queue`, `fanout`, `direct`, `topic`, `headers`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown node kind {0:?}: expected queue, fanout, direct, topic or headers")]
pub struct UnknownKind(pub String);

impl FromStr for ExchangeType {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, UnknownKind> {
        match s {
            "fanout" => Ok(ExchangeType::Fanout),
            "direct" => Ok(ExchangeType::Direct),
            "topic" => Ok(ExchangeType::Topic),
            "headers" => Ok(ExchangeType::Headers),
            _ => Err(UnknownKind(s.to_string())),
        }
    }
}

/// What kind of node a rule makes of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// A queue shared by its receivers: each message goes to one of them.
    Queue,
    /// An exchange: each receiver gets its own subscription queue.
    Exchange(ExchangeType),
}

impl FromStr for NodeKind {
    type Err = UnknownKind;
    /// `queue`, or an exchange type.
    fn from_str(s: &str) -> Result<Self, UnknownKind> {
        match s {
            "queue" => Ok(NodeKind::Queue),
            _ => s.parse().map(NodeKind::Exchange),
        }
    }
}

/// How a publish to an exchange is settled when no queue takes the message. (A pre-settled
/// message is simply dropped.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Unroutable {
    /// `released`, as RabbitMQ 4 does. The sender learns that nothing stored the message and
    /// may send it again.
    #[default]
    Release,
    /// `accepted`, dropping the message. Use this for broadcast, where no listeners is normal
    /// and a resend would only repeat itself.
    Accept,
}

/// An exchange's type and settings: what the broker keeps for each exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExchangeSpec {
    /// Its type.
    pub ty: ExchangeType,
    /// Its outcome for unroutable messages.
    pub unroutable: Unroutable,
}

/// Why a rule or rule set was refused (a config error: each names the pattern).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The empty pattern. `#` matches every name, if that is what was meant.
    #[error("empty rule pattern (`#` matches every name)")]
    Empty,
    /// Over the length or word limits.
    #[error("rule pattern {pattern:?}: {source}")]
    Limit {
        /// The pattern.
        pattern: String,
        /// The limit it broke.
        source: TopicError,
    },
    /// A control character.
    #[error("rule pattern {pattern:?} has a control character")]
    ControlChar {
        /// The pattern.
        pattern: String,
    },
    /// `*` or `#` inside a word.
    #[error(
        "rule pattern {pattern:?}: `*` and `#` are wildcards only as whole `.`-separated \
         words, and may not appear inside one"
    )]
    StrayWildcard {
        /// The pattern.
        pattern: String,
    },
    /// Two rules with one pattern.
    #[error("rule pattern {pattern:?} is given twice")]
    Duplicate {
        /// The pattern.
        pattern: String,
    },
    /// Over [`MAX_RULES`].
    #[error("{count} rules are over the limit of {max}")]
    TooMany {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// How a rule's pattern matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Matcher {
    Prefix,
    Words,
}

/// One address rule: names matching `pattern` are nodes of `kind`, created with these
/// defaults. See [Rules](self#rules) for the pattern syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pattern: String,
    matcher: Matcher,
    /// Literal bytes in the pattern: the precedence.
    specificity: usize,
    /// The node kind.
    pub kind: NodeKind,
    /// Whether an attach may create a missing node under this rule (true by default).
    pub create: bool,
    /// For exchanges created under this rule: the outcome for unroutable messages.
    pub unroutable: Unroutable,
}

impl Rule {
    /// A rule that creates nodes on attach and releases unroutable messages.
    pub fn new(pattern: impl Into<String>, kind: NodeKind) -> Result<Self, RuleError> {
        let pattern = pattern.into();
        if pattern.is_empty() {
            return Err(RuleError::Empty);
        }
        if let Err(source) = check_topic(&pattern) {
            return Err(RuleError::Limit { pattern, source });
        }
        if pattern.chars().any(char::is_control) {
            return Err(RuleError::ControlChar { pattern });
        }
        let mut wildcards = 0;
        for word in pattern.split('.') {
            match word {
                "*" | "#" => wildcards += 1,
                w if w.contains(['*', '#']) => return Err(RuleError::StrayWildcard { pattern }),
                _ => {}
            }
        }
        let matcher = if wildcards == 0 {
            Matcher::Prefix
        } else {
            Matcher::Words
        };
        Ok(Self {
            specificity: pattern.len() - wildcards,
            pattern,
            matcher,
            kind,
            create: true,
            unroutable: Unroutable::default(),
        })
    }

    /// The same rule with `create` set.
    pub fn with_create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// The same rule with `unroutable` set.
    pub fn with_unroutable(mut self, unroutable: Unroutable) -> Self {
        self.unroutable = unroutable;
        self
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Whether the pattern is a literal prefix (rather than a word pattern).
    pub fn is_prefix(&self) -> bool {
        self.matcher == Matcher::Prefix
    }

    /// Whether the rule matches `name`.
    pub fn matches(&self, name: &str) -> bool {
        match self.matcher {
            Matcher::Prefix => name.starts_with(&self.pattern),
            Matcher::Words => pattern_matches(&self.pattern, name),
        }
    }

    /// What an exchange created under this rule is, if the rule makes exchanges.
    fn exchange_spec(&self) -> Option<ExchangeSpec> {
        match self.kind {
            NodeKind::Exchange(ty) => Some(ExchangeSpec {
                ty,
                unroutable: self.unroutable,
            }),
            NodeKind::Queue => None,
        }
    }
}

/// A set of address rules. [`lookup`](Self::lookup) gives the most specific match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// A rule set. Refuses duplicate patterns and more than [`MAX_RULES`] rules.
    pub fn new(rules: Vec<Rule>) -> Result<Self, RuleError> {
        if rules.len() > MAX_RULES {
            return Err(RuleError::TooMany {
                count: rules.len(),
                max: MAX_RULES,
            });
        }
        let mut seen = std::collections::HashSet::new();
        for r in &rules {
            if !seen.insert(r.pattern.as_str()) {
                return Err(RuleError::Duplicate {
                    pattern: r.pattern.clone(),
                });
            }
        }
        Ok(Self { rules })
    }

    /// The rule for `name`: the matching rule with the most literal bytes. On a tie a prefix
    /// beats a word pattern, and then the earlier rule wins.
    pub fn lookup(&self, name: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.matches(name))
            .max_by_key(|&(i, r)| (r.specificity, r.is_prefix(), std::cmp::Reverse(i)))
            .map(|(_, r)| r)
    }

    /// The rules, in the order given.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}

/// The built-in rules, which make OpenStack's oslo.messaging `amqp1` driver work in both its
/// addressing modes (see [OpenStack](self#openstack)).
///
/// Queue rules give the same kind as the default. They are listed so that the whole namespace
/// each mode uses is written down in one place.
pub fn default_rules() -> Rules {
    use ExchangeType::Fanout;
    use NodeKind::{Exchange, Queue};
    let built_in: [(&str, NodeKind); 9] = [
        // Legacy: qpidd's `topic-patterns=broadcast`, `queue-patterns=exclusive,unicast`.
        ("broadcast.#", Exchange(Fanout)),
        ("exclusive.#", Queue),
        ("unicast.#", Queue),
        // Routable: what Dispatch Router calls multicast, closest and balanced.
        ("openstack.org/om/rpc/multicast/", Exchange(Fanout)),
        ("openstack.org/om/rpc/unicast/", Queue),
        ("openstack.org/om/rpc/anycast/", Queue),
        ("openstack.org/om/notify/multicast/", Exchange(Fanout)),
        ("openstack.org/om/notify/unicast/", Queue),
        ("openstack.org/om/notify/anycast/", Queue),
    ];
    // Every pattern is valid and distinct; the tests check that none is lost here.
    let rules = built_in
        .into_iter()
        .filter_map(|(pattern, kind)| {
            let unroutable = match kind {
                Exchange(_) => Unroutable::Accept,
                Queue => Unroutable::Release,
            };
            Rule::new(pattern, kind)
                .ok()
                .map(|r| r.with_unroutable(unroutable))
        })
        .collect();
    Rules { rules }
}

/// Which way messages go on the link, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The client sends. The address is the link's target.
    Publish,
    /// The client receives. The address is the link's source.
    Consume,
}

/// What [`plan`] needs to know about the nodes that exist: a read-only view of the registry.
pub trait Nodes {
    /// Whether a queue `name` exists.
    fn has_queue(&self, name: &str) -> bool;
    /// The exchange `name`, if it exists.
    fn exchange(&self, name: &str) -> Option<ExchangeSpec>;
}

/// What the broker should attach the link to. See
/// [What the broker does with a plan](self#what-the-broker-does-with-a-plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan<'a> {
    /// The queue `name`.
    Queue {
        /// Its name.
        name: Cow<'a, str>,
        /// It does not exist yet. Create it, subject to the broker's own auto-create setting
        /// and limits.
        create: bool,
    },
    /// The exchange `name`. A sender publishes to it. A receiver gets a subscription queue.
    Exchange {
        /// Its name.
        name: Cow<'a, str>,
        /// Its type and settings: the existing exchange's, or those to create it with.
        spec: ExchangeSpec,
        /// The address's key. `None` means each message's `subject` for a sender, and a
        /// catch-all binding for a receiver.
        key: Option<Cow<'a, str>>,
        /// It does not exist yet. Create it, subject to the broker's settings and limits.
        create: bool,
    },
    /// A null target: route each message by its `to`.
    Anonymous,
}

/// Why an address names no node the link can attach to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A null source that is not dynamic: there is nothing to receive from.
    #[error("a null source address names no node (only a target may be null)")]
    NullSource,
    /// `/exchanges/X` for a missing exchange that no rule creates.
    #[error("no exchange {0:?}")]
    NoExchange(String),
    /// A missing node that may not be created here: a rule says `create = false`, or it is a
    /// dynamic node's name.
    #[error("no node at address {0:?}, and it may not be created on attach")]
    NotFound(String),
}

impl PlanError {
    /// The AMQP condition for refusing the attach.
    pub fn condition(&self) -> ErrorCondition {
        match self {
            PlanError::NullSource => ErrorCondition::InvalidField,
            PlanError::NoExchange(_) | PlanError::NotFound(_) => ErrorCondition::NotFound,
        }
    }
}

/// Decides which node a link attaches to, following
/// [Which node a name means](self#which-node-a-name-means).
pub fn plan<'a>(
    address: Parsed<'a>,
    direction: Direction,
    capability: Capability,
    rules: &Rules,
    nodes: &dyn Nodes,
) -> Result<Plan<'a>, PlanError> {
    match address {
        Parsed::Anonymous => match direction {
            Direction::Publish => Ok(Plan::Anonymous),
            Direction::Consume => Err(PlanError::NullSource),
        },
        Parsed::Queue(name) => {
            let rule = rules.lookup(&name);
            plan_queue(name, rule, nodes)
        }
        Parsed::Exchange { name, key } => {
            if let Some(spec) = nodes.exchange(&name) {
                return Ok(Plan::Exchange {
                    name,
                    spec,
                    key,
                    create: false,
                });
            }
            match rules.lookup(&name) {
                Some(rule) if rule.create => match rule.exchange_spec() {
                    Some(spec) => Ok(Plan::Exchange {
                        name,
                        spec,
                        key,
                        create: true,
                    }),
                    None => Err(PlanError::NoExchange(name.into_owned())),
                },
                _ => Err(PlanError::NoExchange(name.into_owned())),
            }
        }
        Parsed::Bare(name) => {
            let rule = rules.lookup(name);
            let spec = match capability {
                Capability::Queue => None,
                Capability::Topic => Some(rule.and_then(Rule::exchange_spec).unwrap_or(
                    // A JMS topic with no subscribers takes the message, as JMS expects.
                    ExchangeSpec {
                        ty: ExchangeType::Topic,
                        unroutable: Unroutable::Accept,
                    },
                )),
                Capability::None if nodes.has_queue(name) => None,
                Capability::None => nodes
                    .exchange(name)
                    .or_else(|| rule.and_then(Rule::exchange_spec)),
            };
            match spec {
                None => plan_queue(Cow::Borrowed(name), rule, nodes),
                Some(spec) => plan_exchange(name, spec, rule, nodes),
            }
        }
    }
}

fn plan_queue<'a>(
    name: Cow<'a, str>,
    rule: Option<&Rule>,
    nodes: &dyn Nodes,
) -> Result<Plan<'a>, PlanError> {
    if nodes.has_queue(&name) {
        return Ok(Plan::Queue {
            name,
            create: false,
        });
    }
    if name.starts_with(DYNAMIC_PREFIX) || !rule.is_none_or(|r| r.create) {
        return Err(PlanError::NotFound(name.into_owned()));
    }
    Ok(Plan::Queue { name, create: true })
}

/// An exchange named by a bare name: the existing one, else a new one with `spec`.
fn plan_exchange<'a>(
    name: &'a str,
    spec: ExchangeSpec,
    rule: Option<&Rule>,
    nodes: &dyn Nodes,
) -> Result<Plan<'a>, PlanError> {
    if let Some(existing) = nodes.exchange(name) {
        return Ok(Plan::Exchange {
            name: Cow::Borrowed(name),
            spec: existing,
            key: None,
            create: false,
        });
    }
    if name.starts_with(DYNAMIC_PREFIX) || !rule.is_none_or(|r| r.create) {
        return Err(PlanError::NotFound(name.to_string()));
    }
    Ok(Plan::Exchange {
        name: Cow::Borrowed(name),
        spec,
        key: None,
        create: true,
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use ferry_codec::types::Symbol;
    use proptest::prelude::*;

    use super::*;
    use crate::broker::topic::MAX_TOPIC_WORDS;

    fn queue(name: &str) -> Parsed<'_> {
        Parsed::Queue(Cow::Borrowed(name))
    }

    fn exchange<'a>(name: &'a str, key: Option<&'a str>) -> Parsed<'a> {
        Parsed::Exchange {
            name: Cow::Borrowed(name),
            key: key.map(Cow::Borrowed),
        }
    }

    #[test]
    fn v2_forms_parse() {
        let cases: &[(&str, Parsed<'_>)] = &[
            ("/queues/q", queue("q")),
            ("/queues/a%2Fb", queue("a/b")),
            ("/queues/a%2fb", queue("a/b")),
            ("/queues/my%20queue", queue("my queue")),
            ("/queues/a+b", queue("a+b")),
            ("/queues/%F0%9F%A5%95", queue("🥕")),
            ("/queues/%e2%9c%8b", queue("✋")),
            ("/queues/%25", queue("%")),
            ("/queues/-._~!$&'()*+,;=:@", queue("-._~!$&'()*+,;=:@")),
            ("/queues/amq.default", queue("amq.default")),
            ("/queues/$ferry.tmp.1", queue("$ferry.tmp.1")),
            ("/exchanges/amq.topic", exchange("amq.topic", None)),
            ("/exchanges/x/k", exchange("x", Some("k"))),
            ("/exchanges/x/", exchange("x", Some(""))),
            ("/exchanges/x/a%2Fb", exchange("x", Some("a/b"))),
            ("/exchanges/x/a.b.%2A", exchange("x", Some("a.b.*"))),
            ("/exchanges/x/%23", exchange("x", Some("#"))),
            ("/exchanges/x/%00", exchange("x", Some("\0"))),
            (
                "/exchanges/%F0%9F%A5%95/%F0%9F%8D%B0",
                exchange("🥕", Some("🍰")),
            ),
            ("/exchanges/a%2Fb/c", exchange("a/b", Some("c"))),
        ];
        for (address, want) in cases {
            assert_eq!(parse(address).as_ref(), Ok(want), "{address}");
        }
        // Nothing to decode: the name is borrowed from the address.
        assert!(matches!(
            parse("/queues/q"),
            Ok(Parsed::Queue(Cow::Borrowed("q")))
        ));
        assert!(matches!(
            parse("/queues/a%2Fb"),
            Ok(Parsed::Queue(Cow::Owned(_)))
        ));
    }

    /// RabbitMQ's `amqp_address_SUITE:bad_v2_addresses/0`. Every one is refused by Ferry too,
    /// except the bare `myqueue`, which Ferry reads as a name.
    #[test]
    fn rabbitmq_bad_v2_addresses_are_refused() {
        let bad = [
            "/topic/mytopic",
            "/amq/queue/myqueue",
            "/queue",
            "",
            "\0",
            "/",
            "//",
            "/queues",
            "/queues/",
            "/queue/",
            "/exchanges",
            "/exchanges/",
            "/exchanges//",
            "/exchanges//mykey",
            "/exchanges/amq.default",
            "/exchanges/amq.default/",
            "/exchanges/amq.default/mykey",
            "/ex/✋",
            "/exchange",
            "/exchange/",
            "/exchange/amq.default",
            "/exchange//key/",
            "/exchange//key/mykey",
            "/exchange/amq.default/key/",
            "/exchange/amq.default/key/mykey",
            "/queues/missing%encoding",
            "/queues/missing/encoding",
            "/queues/✋",
            "/exchanges/missing%encoding",
            "/exchanges/missing/encoding/routingkey",
            "/exchanges/exchange/missing%encoding",
            "/exchanges/✋",
            // rabbit's target_bad_address / source_bad_address
            "/qqq/🎈",
            "/exchange/myroutingkey",
        ];
        for address in bad {
            assert!(parse(address).is_err(), "{address:?} parsed");
        }
        assert_eq!(parse("myqueue"), Ok(Parsed::Bare("myqueue")));
    }

    #[test]
    fn errors_name_what_is_wrong() {
        use AddressError::*;
        let long = format!("/queues/{}", "a".repeat(MAX_ADDRESS_LEN));
        let cases: Vec<(&str, AddressError)> = vec![
            ("", Empty),
            (
                &long,
                TooLong {
                    len: long.len(),
                    max: MAX_ADDRESS_LEN,
                },
            ),
            ("a\nb", ControlChar { ch: '\n', at: 1 }),
            (
                "\u{7f}",
                ControlChar {
                    ch: '\u{7f}',
                    at: 0,
                },
            ),
            ("/queue/q", UnknownPath),
            ("/queues", UnknownPath),
            ("/x", UnknownPath),
            ("/queues/", EmptyName(Part::Queue)),
            ("/exchanges/", EmptyName(Part::Exchange)),
            ("/exchanges//k", EmptyName(Part::Exchange)),
            ("/queues/a/b", ExtraSegment { at: 9 }),
            ("/exchanges/x/k/z", ExtraSegment { at: 14 }),
            ("/exchanges/x//", ExtraSegment { at: 13 }),
            ("/queues/%", BadPercent { at: 8 }),
            ("/queues/%4", BadPercent { at: 8 }),
            ("/queues/%G0", BadPercent { at: 8 }),
            ("/queues/a%41%4", BadPercent { at: 12 }),
            ("/queues/%+1", BadPercent { at: 8 }),
            ("/queues/a b", NotEncoded { ch: ' ', at: 9 }),
            ("/queues/a?b", NotEncoded { ch: '?', at: 9 }),
            ("/queues/a#b", NotEncoded { ch: '#', at: 9 }),
            ("/queues/%41é", NotEncoded { ch: 'é', at: 11 }),
            ("/exchanges/x/a b", NotEncoded { ch: ' ', at: 14 }),
            ("/queues/%FF", NotUtf8(Part::Queue)),
            ("/queues/%C3", NotUtf8(Part::Queue)),
            ("/queues/%ED%A0%80", NotUtf8(Part::Queue)),
            ("/exchanges/x/%80", NotUtf8(Part::Key)),
            (
                "/queues/%00",
                DecodedControl {
                    part: Part::Queue,
                    ch: '\0',
                },
            ),
            (
                "/exchanges/a%0Ab",
                DecodedControl {
                    part: Part::Exchange,
                    ch: '\n',
                },
            ),
            ("/exchanges/%61mq.default/k", DefaultExchange),
        ];
        for (address, want) in cases {
            assert_eq!(parse(address), Err(want), "{address:?}");
        }
        let msg = parse("/queues/a b").unwrap_err().to_string();
        assert_eq!(msg, "' ' at byte 9 must be percent-encoded, as %20");
        let msg = parse("/queues/✋").unwrap_err().to_string();
        assert!(msg.contains("%E2%9C%8B"), "{msg}");
        assert_eq!(
            parse("/queues/").unwrap_err().condition(),
            ErrorCondition::InvalidField
        );
    }

    #[test]
    fn bare_names() {
        for name in [
            "orders",
            "a/b",
            "a%2Fb",
            "$ferry.tmp.0123456789abcdef.1",
            "unicast.openstack.compute",
            "openstack.org/om/rpc/anycast/openstack/compute",
            "topic://x",
            "🥕 q",
            "x/",
        ] {
            assert_eq!(parse(name), Ok(Parsed::Bare(name)));
            assert_eq!(parse(name).unwrap().to_address().as_deref(), Some(name));
        }
        let exactly = "a".repeat(MAX_ADDRESS_LEN);
        assert_eq!(parse(&exactly), Ok(Parsed::Bare(&exactly)));
    }

    #[test]
    fn null_address_is_anonymous() {
        assert_eq!(parse_terminus(None), Ok(Parsed::Anonymous));
        assert_eq!(parse_terminus(Some("/queues/q")), Ok(queue("q")));
        assert_eq!(parse_terminus(Some("")), Err(AddressError::Empty));
        assert_eq!(Parsed::Anonymous.to_address(), None);
    }

    #[test]
    fn encode_matches_rabbitmq_clients() {
        assert_eq!(encode("plain-._~09AZaz"), Cow::Borrowed("plain-._~09AZaz"));
        assert_eq!(encode("a/b"), "a%2Fb");
        assert_eq!(encode("my queue"), "my%20queue");
        assert_eq!(encode("🥕"), "%F0%9F%A5%95");
        assert_eq!(encode("+%"), "%2B%25");
        assert_eq!(queue_address("a/b"), "/queues/a%2Fb");
        assert_eq!(exchange_address("x", None), "/exchanges/x");
        assert_eq!(exchange_address("x", Some("")), "/exchanges/x/");
        assert_eq!(
            exchange_address("e x", Some("k/1")),
            "/exchanges/e%20x/k%2F1"
        );
    }

    #[test]
    fn capabilities() {
        let cases: &[(&[&str], Capability)] = &[
            (&[], Capability::None),
            (&["queue"], Capability::Queue),
            (&["topic"], Capability::Topic),
            (&["temporary-queue"], Capability::Queue),
            (&["temporary-topic"], Capability::Topic),
            (&["shared", "global", "topic"], Capability::Topic),
            (&["queue", "temporary-queue"], Capability::Queue),
            (&["queue", "topic"], Capability::None),
            (&["QUEUE"], Capability::None),
            (&["amqp:local-transactions"], Capability::None),
        ];
        for (caps, want) in cases {
            assert_eq!(capability(caps), *want, "{caps:?}");
        }
        let symbols = [Symbol::from_static("topic")];
        assert_eq!(capability(&symbols), Capability::Topic);
    }

    #[test]
    fn kinds_parse_from_config_names() {
        assert_eq!("queue".parse(), Ok(NodeKind::Queue));
        for ty in [
            ExchangeType::Fanout,
            ExchangeType::Direct,
            ExchangeType::Topic,
            ExchangeType::Headers,
        ] {
            assert_eq!(ty.as_str().parse(), Ok(NodeKind::Exchange(ty)));
            assert_eq!(ty.to_string().parse(), Ok(ty));
        }
        assert_eq!(
            "Fanout".parse::<NodeKind>(),
            Err(UnknownKind("Fanout".to_string()))
        );
    }

    fn rule(pattern: &str, kind: NodeKind) -> Rule {
        Rule::new(pattern, kind).unwrap()
    }

    const FANOUT: NodeKind = NodeKind::Exchange(ExchangeType::Fanout);
    const TOPIC: NodeKind = NodeKind::Exchange(ExchangeType::Topic);

    #[test]
    fn prefix_and_word_patterns() {
        let prefix = rule("orders/", NodeKind::Queue);
        assert!(prefix.is_prefix());
        assert!(prefix.matches("orders/"));
        assert!(prefix.matches("orders/eu.1"));
        assert!(!prefix.matches("orders"));
        assert!(!prefix.matches("x.orders/"));

        let words = rule("broadcast.#", FANOUT);
        assert!(!words.is_prefix());
        assert!(words.matches("broadcast"));
        assert!(words.matches("broadcast.a.b.all"));
        assert!(!words.matches("broadcasting.a"));
        assert!(!words.matches("x.broadcast.a"));

        let star = rule("a.*.all", FANOUT);
        assert!(star.matches("a.b.all"));
        assert!(star.matches("a..all"));
        assert!(!star.matches("a.b.c.all"));
        assert!(!star.matches("a.b.all.x"));

        let suffix = rule("#.all", FANOUT);
        assert!(suffix.matches("broadcast.x.all"));
        assert!(suffix.matches("all"));
        assert!(!suffix.matches("x.all.y"));

        // A name over the word limit matches no word pattern, but prefixes still work.
        let many = vec!["w"; MAX_TOPIC_WORDS + 1].join(".");
        assert!(!rule("#", FANOUT).matches(&many));
        assert!(rule("w.", NodeKind::Queue).matches(&many));
    }

    #[test]
    fn bad_rules_are_refused() {
        assert_eq!(Rule::new("", NodeKind::Queue), Err(RuleError::Empty));
        for stray in ["a*", "a.b#", "#a.b", "a.**", "x/#", "openstack.org/om/#"] {
            assert_eq!(
                Rule::new(stray, NodeKind::Queue),
                Err(RuleError::StrayWildcard {
                    pattern: stray.to_string()
                }),
                "{stray}"
            );
        }
        assert!(matches!(
            Rule::new("a\tb", NodeKind::Queue),
            Err(RuleError::ControlChar { .. })
        ));
        assert!(matches!(
            Rule::new("x".repeat(MAX_TOPIC_BYTES + 1), NodeKind::Queue),
            Err(RuleError::Limit { .. })
        ));
        assert!(matches!(
            Rule::new(vec!["#"; MAX_TOPIC_WORDS + 1].join("."), NodeKind::Queue),
            Err(RuleError::Limit { .. })
        ));
        assert_eq!(
            Rules::new(vec![rule("a.", NodeKind::Queue), rule("a.", FANOUT)]),
            Err(RuleError::Duplicate {
                pattern: "a.".to_string()
            })
        );
        let too_many = (0..=MAX_RULES)
            .map(|i| rule(&format!("r{i}."), NodeKind::Queue))
            .collect();
        assert_eq!(
            Rules::new(too_many),
            Err(RuleError::TooMany {
                count: MAX_RULES + 1,
                max: MAX_RULES
            })
        );
    }

    #[test]
    fn most_specific_rule_wins() {
        let rules = Rules::new(vec![
            rule("#", NodeKind::Queue),
            rule("events.", TOPIC),
            rule("events.audit.", NodeKind::Queue),
            rule("events.*.all", FANOUT),
            rule("events.#", NodeKind::Exchange(ExchangeType::Direct)),
            rule("x.#", FANOUT),
            rule("x.", NodeKind::Queue),
            rule("y.*", FANOUT),
            rule("y.a", NodeKind::Queue),
        ])
        .unwrap();
        let kind = |name: &str| rules.lookup(name).map(|r| r.pattern().to_string());
        // Catch-all only.
        assert_eq!(kind("other").as_deref(), Some("#"));
        // `events.` (7) beats `events.#` (7 literal bytes) on the tie: prefixes first.
        assert_eq!(kind("events.x").as_deref(), Some("events."));
        // A longer prefix beats a shorter one, whatever the order.
        assert_eq!(kind("events.audit.login").as_deref(), Some("events.audit."));
        // `events.*.all` has 11 literal bytes: more than `events.`.
        assert_eq!(kind("events.a.all").as_deref(), Some("events.*.all"));
        // `events.#` matches `events` alone, which the prefix `events.` does not.
        assert_eq!(kind("events").as_deref(), Some("events.#"));
        // A tie between a word pattern and a prefix of equal literal length goes to the prefix.
        assert_eq!(kind("x.1").as_deref(), Some("x."));
        assert_eq!(kind("x").as_deref(), Some("x.#"));
        // `y.a` (3 literal bytes) beats `y.*` (2), and only `y.*` matches `y.b`.
        assert_eq!(kind("y.a").as_deref(), Some("y.a"));
        assert_eq!(kind("y.b").as_deref(), Some("y.*"));

        // Among equals, the earlier rule wins.
        let tie = Rules::new(vec![rule("*.b", FANOUT), rule("a.*", NodeKind::Queue)]).unwrap();
        assert_eq!(tie.lookup("a.b").unwrap().pattern(), "*.b");
        let tie = Rules::new(vec![rule("a.*", NodeKind::Queue), rule("*.b", FANOUT)]).unwrap();
        assert_eq!(tie.lookup("a.b").unwrap().pattern(), "a.*");

        assert_eq!(Rules::default().lookup("anything"), None);
    }

    /// The nodes in a test registry.
    #[derive(Default)]
    struct Registry {
        queues: HashSet<String>,
        exchanges: HashMap<String, ExchangeSpec>,
    }

    impl Registry {
        fn with_queue(mut self, name: &str) -> Self {
            self.queues.insert(name.to_string());
            self
        }
        fn with_exchange(mut self, name: &str, ty: ExchangeType) -> Self {
            self.exchanges.insert(
                name.to_string(),
                ExchangeSpec {
                    ty,
                    unroutable: Unroutable::Release,
                },
            );
            self
        }
    }

    impl Nodes for Registry {
        fn has_queue(&self, name: &str) -> bool {
            self.queues.contains(name)
        }
        fn exchange(&self, name: &str) -> Option<ExchangeSpec> {
            self.exchanges.get(name).copied()
        }
    }

    fn plan_str<'a>(
        address: &'a str,
        direction: Direction,
        caps: &[&str],
        rules: &Rules,
        nodes: &Registry,
    ) -> Result<Plan<'a>, PlanError> {
        plan(
            parse(address).unwrap(),
            direction,
            capability(caps),
            rules,
            nodes,
        )
    }

    fn q(name: &str, create: bool) -> Plan<'_> {
        Plan::Queue {
            name: Cow::Borrowed(name),
            create,
        }
    }

    fn x<'a>(
        name: &'a str,
        ty: ExchangeType,
        unroutable: Unroutable,
        key: Option<&'a str>,
        create: bool,
    ) -> Plan<'a> {
        Plan::Exchange {
            name: Cow::Borrowed(name),
            spec: ExchangeSpec { ty, unroutable },
            key: key.map(Cow::Borrowed),
            create,
        }
    }

    #[test]
    fn bare_names_resolve_to_what_exists_else_a_queue() {
        use Direction::*;
        use ExchangeType::*;
        use Unroutable::*;
        let none = Rules::default();
        let nodes = Registry::default()
            .with_queue("orders")
            .with_exchange("news", Topic)
            .with_queue("both")
            .with_exchange("both", Fanout);
        for dir in [Publish, Consume] {
            assert_eq!(
                plan_str("orders", dir, &[], &none, &nodes),
                Ok(q("orders", false))
            );
            assert_eq!(
                plan_str("news", dir, &[], &none, &nodes),
                Ok(x("news", Topic, Release, None, false))
            );
            assert_eq!(
                plan_str("both", dir, &[], &none, &nodes),
                Ok(q("both", false))
            );
            assert_eq!(
                plan_str("fresh", dir, &[], &none, &nodes),
                Ok(q("fresh", true))
            );
        }
    }

    #[test]
    fn capabilities_override_the_choice() {
        use Direction::*;
        use ExchangeType::*;
        use Unroutable::*;
        let rules = Rules::new(vec![rule("bc.#", FANOUT).with_unroutable(Accept)]).unwrap();
        let nodes = Registry::default()
            .with_queue("orders")
            .with_exchange("news", Direct)
            .with_queue("both")
            .with_exchange("both", Fanout);
        let cases: &[(&str, &[&str], Plan<'_>)] = &[
            // `topic` on a name that is only a queue: a new topic exchange beside it.
            ("orders", &["topic"], x("orders", Topic, Accept, None, true)),
            ("both", &["topic"], x("both", Fanout, Release, None, false)),
            (
                "both",
                &["temporary-topic"],
                x("both", Fanout, Release, None, false),
            ),
            ("both", &["queue"], q("both", false)),
            // `queue` on a name that is only an exchange: a new queue beside it.
            ("news", &["queue"], q("news", true)),
            ("news", &["topic"], x("news", Direct, Release, None, false)),
            ("fresh", &["topic"], x("fresh", Topic, Accept, None, true)),
            ("fresh", &["queue"], q("fresh", true)),
            // A topic under an exchange rule takes the rule's type; `queue` beats the rule.
            ("bc.x", &["topic"], x("bc.x", Fanout, Accept, None, true)),
            ("bc.x", &["queue"], q("bc.x", true)),
            ("bc.x", &[], x("bc.x", Fanout, Accept, None, true)),
            // Contradictory capabilities are ignored.
            (
                "news",
                &["queue", "topic"],
                x("news", Direct, Release, None, false),
            ),
        ];
        for (name, caps, want) in cases {
            for dir in [Publish, Consume] {
                assert_eq!(
                    plan_str(name, dir, caps, &rules, &nodes).as_ref(),
                    Ok(want),
                    "{name} {caps:?} {dir:?}"
                );
            }
        }
    }

    #[test]
    fn path_forms_ignore_capabilities_and_existing_kinds() {
        use Direction::*;
        use ExchangeType::*;
        use Unroutable::*;
        let rules = Rules::new(vec![
            rule("auto.", TOPIC),
            rule("locked.", NodeKind::Queue).with_create(false),
            rule("lockedx.", FANOUT).with_create(false),
        ])
        .unwrap();
        let nodes = Registry::default()
            .with_exchange("news", Topic)
            .with_queue("locked.q");
        let cases: &[(&str, &[&str], Result<Plan<'_>, PlanError>)] = &[
            ("/queues/news", &["topic"], Ok(q("news", true))),
            ("/queues/a%2Fb", &[], Ok(q("a/b", true))),
            ("/queues/locked.q", &[], Ok(q("locked.q", false))),
            (
                "/queues/locked.new",
                &[],
                Err(PlanError::NotFound("locked.new".into())),
            ),
            (
                "/exchanges/news/a.b",
                &["queue"],
                Ok(x("news", Topic, Release, Some("a.b"), false)),
            ),
            (
                "/exchanges/news",
                &[],
                Ok(x("news", Topic, Release, None, false)),
            ),
            (
                "/exchanges/news/",
                &[],
                Ok(x("news", Topic, Release, Some(""), false)),
            ),
            (
                "/exchanges/auto.e/k",
                &[],
                Ok(x("auto.e", Topic, Release, Some("k"), true)),
            ),
            (
                "/exchanges/missing",
                &[],
                Err(PlanError::NoExchange("missing".into())),
            ),
            (
                "/exchanges/locked.q",
                &[],
                Err(PlanError::NoExchange("locked.q".into())),
            ),
            (
                "/exchanges/lockedx.e",
                &[],
                Err(PlanError::NoExchange("lockedx.e".into())),
            ),
            (
                "locked.new",
                &[],
                Err(PlanError::NotFound("locked.new".into())),
            ),
            (
                "lockedx.e",
                &["topic"],
                Err(PlanError::NotFound("lockedx.e".into())),
            ),
        ];
        for (address, caps, want) in cases {
            for dir in [Publish, Consume] {
                assert_eq!(
                    &plan_str(address, dir, caps, &rules, &nodes),
                    want,
                    "{address} {caps:?} {dir:?}"
                );
            }
        }
    }

    #[test]
    fn null_and_dynamic_addresses() {
        let none = Rules::default();
        let dynamic = format!("{DYNAMIC_PREFIX}0123456789abcdef.7");
        let nodes = Registry::default().with_queue(&dynamic);
        let anon = |dir| plan(Parsed::Anonymous, dir, Capability::None, &none, &nodes);
        assert_eq!(anon(Direction::Publish), Ok(Plan::Anonymous));
        assert_eq!(anon(Direction::Consume), Err(PlanError::NullSource));
        assert_eq!(
            PlanError::NullSource.condition(),
            ErrorCondition::InvalidField
        );
        // An RPC reply to a live dynamic queue finds it; a gone one is not recreated.
        assert_eq!(
            plan_str(&dynamic, Direction::Publish, &[], &none, &nodes),
            Ok(q(&dynamic, false))
        );
        let gone = format!("{DYNAMIC_PREFIX}0123456789abcdef.8");
        for caps in [&[][..], &["topic"], &["queue"]] {
            let got = plan_str(&gone, Direction::Publish, caps, &none, &nodes);
            assert_eq!(got, Err(PlanError::NotFound(gone.clone())), "{caps:?}");
            assert_eq!(got.unwrap_err().condition(), ErrorCondition::NotFound);
        }
    }

    /// The delivery pattern oslo.messaging means by an address.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Oslo {
        /// anycast or unicast: one server takes each message.
        One,
        /// multicast or broadcast: every server gets a copy.
        Every,
    }

    /// Addresses built as oslo.messaging 14.9.3's `LegacyAddresser` and `RoutableAddresser`
    /// build them, with `control_exchange` = `openstack` unless noted.
    const OPENSTACK: &[(&str, &str, Oslo)] = &[
        // Legacy.
        ("rpc call to topic", "unicast.openstack.compute", Oslo::One),
        (
            "rpc call to server",
            "exclusive.openstack.compute.host1",
            Oslo::One,
        ),
        (
            "rpc call to dotted server",
            "exclusive.nova.compute.host1.example.org",
            Oslo::One,
        ),
        (
            "rpc fanout cast",
            "broadcast.openstack.compute.all",
            Oslo::Every,
        ),
        (
            "notification",
            "unicast.openstack.notifications.info",
            Oslo::One,
        ),
        ("vhost anycast", "unicast.vh.openstack.compute", Oslo::One),
        (
            "vhost fanout",
            "broadcast.vh.nova.scheduler.all",
            Oslo::Every,
        ),
        // Routable.
        (
            "rpc call to topic",
            "openstack.org/om/rpc/anycast/openstack/compute",
            Oslo::One,
        ),
        (
            "rpc call to server",
            "openstack.org/om/rpc/unicast/openstack/compute/host1",
            Oslo::One,
        ),
        (
            "rpc fanout cast",
            "openstack.org/om/rpc/multicast/openstack/compute",
            Oslo::Every,
        ),
        (
            "notification",
            "openstack.org/om/notify/anycast/openstack/notifications.info",
            Oslo::One,
        ),
        (
            "notify to server",
            "openstack.org/om/notify/unicast/openstack/notifications.info/h1",
            Oslo::One,
        ),
        (
            "notify multicast",
            "openstack.org/om/notify/multicast/openstack/notifications.info",
            Oslo::Every,
        ),
        (
            "vhost anycast",
            "openstack.org/om/rpc/anycast/vh/nova/compute",
            Oslo::One,
        ),
        (
            "vhost fanout",
            "openstack.org/om/rpc/multicast/vh/nova/compute",
            Oslo::Every,
        ),
    ];

    #[test]
    fn openstack_addresses_in_both_modes() {
        let rules = default_rules();
        let empty = Registry::default();
        for &(what, address, pattern) in OPENSTACK {
            let rule = rules
                .lookup(address)
                .unwrap_or_else(|| panic!("{what}: no rule for {address}"));
            let want_kind = match pattern {
                Oslo::One => NodeKind::Queue,
                Oslo::Every => FANOUT,
            };
            assert_eq!(rule.kind, want_kind, "{what}: {address}");
            assert!(rule.create, "{address}");
            // Senders and receivers alike, on a fresh broker: the node is created with the
            // rule's kind. A fanout receiver then gets its own subscription queue.
            for dir in [Direction::Publish, Direction::Consume] {
                let want = match pattern {
                    Oslo::One => q(address, true),
                    Oslo::Every => x(
                        address,
                        ExchangeType::Fanout,
                        Unroutable::Accept,
                        None,
                        true,
                    ),
                };
                assert_eq!(
                    plan_str(address, dir, &[], &rules, &empty),
                    Ok(want),
                    "{what}: {address} {dir:?}"
                );
            }
        }
    }

    /// An RPC server's three receivers (controller.py `RPCServer.attach`): two shared queues
    /// and one fan-out subscription, in either mode.
    #[test]
    fn openstack_rpc_server_links() {
        let rules = default_rules();
        let empty = Registry::default();
        for (unicast, multicast, anycast) in [
            (
                "exclusive.openstack.compute.host1",
                "broadcast.openstack.compute.all",
                "unicast.openstack.compute",
            ),
            (
                "openstack.org/om/rpc/unicast/openstack/compute/host1",
                "openstack.org/om/rpc/multicast/openstack/compute",
                "openstack.org/om/rpc/anycast/openstack/compute",
            ),
        ] {
            let kind = |a| plan_str(a, Direction::Consume, &[], &rules, &empty).unwrap();
            assert!(matches!(kind(unicast), Plan::Queue { .. }));
            assert!(matches!(kind(anycast), Plan::Queue { .. }));
            assert!(matches!(
                kind(multicast),
                Plan::Exchange {
                    spec: ExchangeSpec {
                        ty: ExchangeType::Fanout,
                        ..
                    },
                    ..
                }
            ));
        }
    }

    #[test]
    fn default_rules_are_all_there_and_valid() {
        let rules = default_rules();
        assert_eq!(rules.rules().len(), 9);
        assert_eq!(Rules::new(rules.rules().to_vec()), Ok(rules.clone()));
        for r in rules.rules() {
            let want = match r.kind {
                NodeKind::Exchange(_) => Unroutable::Accept,
                NodeKind::Queue => Unroutable::Release,
            };
            assert_eq!(r.unroutable, want, "{}", r.pattern());
        }
        // Other names are left to the defaults.
        for name in [
            "orders",
            "unicastx.a",
            "openstack.org/om/other/x",
            "broadcasting",
        ] {
            assert_eq!(rules.lookup(name), None, "{name}");
        }
    }

    fn address_like() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "(/queues/|/exchanges/|/)[%0-9a-fA-F/.~+ é✋\\x00-\\x1f]{0,24}",
            "[a-z.#*/%]{0,24}",
        ]
    }

    proptest! {
        /// Any string either parses or is refused; nothing panics, and a bare name is the
        /// address itself.
        #[test]
        fn parse_never_panics(s in address_like()) {
            match parse(&s) {
                Ok(Parsed::Bare(name)) => prop_assert_eq!(name, s.as_str()),
                Ok(p) => {
                    // A path form re-encodes to an address that parses to the same thing.
                    let again = p.to_address().unwrap();
                    prop_assert_eq!(parse(&again), Ok(p));
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }

        /// Arbitrary bytes, lossily made text, are just as harmless.
        #[test]
        fn parse_never_panics_on_bytes(b in prop::collection::vec(any::<u8>(), 0..64)) {
            let s = format!("/queues/{}", String::from_utf8_lossy(&b));
            let _ = parse(&s);
            let s = format!("/exchanges/{}", String::from_utf8_lossy(&b));
            let _ = parse(&s);
        }

        /// `parse(queue_address(name))` gives `name` back, for any name that is valid.
        #[test]
        fn queue_names_round_trip(name in any::<String>()) {
            let address = queue_address(&name);
            let valid = !name.is_empty()
                && !name.chars().any(char::is_control)
                && address.len() <= MAX_ADDRESS_LEN;
            match parse(&address) {
                Ok(p) => {
                    prop_assert!(valid);
                    prop_assert_eq!(p, Parsed::Queue(Cow::Owned(name)));
                }
                Err(_) => prop_assert!(!valid),
            }
        }

        /// The same for exchanges with and without keys, whose keys may be anything.
        #[test]
        fn exchange_names_round_trip(name in any::<String>(), key in any::<Option<String>>()) {
            let address = exchange_address(&name, key.as_deref());
            let valid = !name.is_empty()
                && name != "amq.default"
                && !name.chars().any(char::is_control)
                && address.len() <= MAX_ADDRESS_LEN;
            match parse(&address) {
                Ok(p) => {
                    prop_assert!(valid);
                    prop_assert_eq!(p, Parsed::Exchange {
                        name: Cow::Owned(name),
                        key: key.map(Cow::Owned),
                    });
                }
                Err(_) => prop_assert!(!valid),
            }
        }

        /// `encode` leaves only unreserved characters and escapes, which decode back.
        #[test]
        fn encode_decode(s in any::<String>()) {
            let e = encode(&s);
            prop_assert!(e.bytes().all(|b| is_unreserved(b) || b == b'%'));
            prop_assert_eq!(decode(&e, 0, Part::Key).unwrap(), s.as_str());
        }

        /// The rule chosen always matches, and some rule is chosen whenever one matches.
        #[test]
        fn lookup_is_consistent(name in "[a-z./#*]{0,16}") {
            let mut all = default_rules().rules().to_vec();
            let extra = [("a.", NodeKind::Queue), ("a.#", FANOUT), ("*.b", TOPIC), ("#", FANOUT)];
            all.extend(extra.into_iter().map(|(p, k)| rule(p, k)));
            let rules = Rules::new(all).unwrap();
            match rules.lookup(&name) {
                Some(r) => prop_assert!(r.matches(&name)),
                None => prop_assert!(rules.rules().iter().all(|r| !r.matches(&name))),
            }
        }
    }
}
