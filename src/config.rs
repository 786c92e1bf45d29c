//! Typed configuration, read from TOML.
//!
//! The commented `etc/ferry.toml` is compiled in and *is* the built-in default: with no
//! `--config`, that text is parsed, and a test asserts that it equals [`Config::default`], so
//! the documented defaults and the code cannot drift apart.
//!
//! Every table refuses unknown keys, so a misspelt limit is an error rather than a limit
//! silently left at its default. Errors name the key (`listeners[0].address`) and, where the
//! parser knows it, the line. Sizes are written `"64MiB"` (or a plain integer of bytes) and
//! durations `"300s"`; both are plain `u64` and [`Duration`] once loaded.

use std::collections::HashSet;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_codec::DecodeLimits;
use ferry_codec::definitions::{Fields, MIN_MAX_FRAME_SIZE};
use ferry_codec::types::{Symbol, Value};
use serde::Deserialize;

use crate::proto::{ConnectionConfig, EndpointRole, SaslConfig};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[broker]`: broker-wide settings and limits.
    pub broker: BrokerConfig,
    /// `[queues]`: queue defaults and pre-declared queues.
    pub queues: QueuesConfig,
    /// `[connection]`: per-connection protocol limits.
    pub connection: ConnectionLimits,
    /// `[store]`: the write-ahead log of durable queues.
    pub store: StoreSection,
    /// `[[exchanges]]`: exchanges that exist from start-up.
    pub exchanges: Vec<ExchangeDecl>,
    /// `[[bindings]]`: bindings of declared queues to declared exchanges.
    pub bindings: Vec<BindingDecl>,
    /// `[[address_rules]]`: which names mean which kind of node, before the built-in ones.
    pub address_rules: Vec<AddressRule>,
    /// `[[listeners]]`: where to accept connections.
    pub listeners: Vec<Listener>,
    /// `[[users]]`: the accounts SASL PLAIN checks.
    pub users: Vec<User>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            broker: BrokerConfig::default(),
            queues: QueuesConfig::default(),
            connection: ConnectionLimits::default(),
            store: StoreSection::default(),
            exchanges: Vec::new(),
            bindings: Vec::new(),
            address_rules: Vec::new(),
            listeners: vec![Listener::default()],
            users: Vec::new(),
        }
    }
}

/// `[broker]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// The container-id we send in open.
    pub container_id: String,
    /// Where durable state will live.
    pub data_dir: PathBuf,
    /// Bytes of message data held in memory across all queues.
    #[serde(deserialize_with = "de_size")]
    pub memory_budget: u64,
    /// Most queues in existence at once.
    pub max_queues: u32,
    /// Whether attaching to an unknown address creates a queue.
    pub auto_create: bool,
    /// How long an auto-created queue lives with no links and no messages.
    #[serde(deserialize_with = "de_duration")]
    pub auto_delete_after: Duration,
    /// Largest message accepted, in bytes.
    #[serde(deserialize_with = "de_size")]
    pub max_message_size: u64,
    /// Most credit granted to one link, in messages.
    pub link_credit: u32,
    /// Most credit granted to one link, in bytes of messages.
    #[serde(deserialize_with = "de_size")]
    pub link_credit_bytes: u64,
    /// Transfers tolerated beyond granted credit on one link.
    pub over_credit_allowance: u32,
    /// How long shutdown waits for connections to close.
    #[serde(deserialize_with = "de_duration")]
    pub shutdown_grace: Duration,
    /// Threads running connections; 0 means one per CPU.
    pub worker_threads: u16,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            container_id: "ferry".into(),
            data_dir: PathBuf::from("data"),
            memory_budget: GIB,
            max_queues: 10_000,
            auto_create: true,
            auto_delete_after: Duration::from_secs(300),
            max_message_size: 16 * MIB,
            link_credit: 256,
            link_credit_bytes: MIB,
            over_credit_allowance: 10_000,
            shutdown_grace: Duration::from_secs(5),
            worker_threads: 0,
        }
    }
}

/// `[queues]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueuesConfig {
    /// `[queues.defaults]`: limits of every queue that does not set its own.
    pub defaults: QueueLimits,
    /// `[[queues.declare]]`: queues that exist from start-up.
    pub declare: Vec<QueueDecl>,
    /// Whether queues created by an attach keep durable messages on disk.
    pub auto_create_durable: bool,
    /// Bytes of a durable queue's stored messages kept in memory; the rest waits on disk.
    #[serde(deserialize_with = "de_size")]
    pub page_above: u64,
}

impl Default for QueuesConfig {
    fn default() -> Self {
        Self {
            defaults: QueueLimits::default(),
            declare: Vec::new(),
            auto_create_durable: true,
            page_above: 64 * MIB,
        }
    }
}

/// One `[[exchanges]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeDecl {
    /// Its name.
    pub name: String,
    /// `fanout`, `direct`, `topic` or `headers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What a publisher hears when no queue takes a message: `release` (default) or `accept`.
    #[serde(default = "release")]
    pub unroutable: String,
}

fn release() -> String {
    "release".into()
}

/// One `[[bindings]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingDecl {
    /// A declared exchange.
    pub exchange: String,
    /// A declared queue.
    pub queue: String,
    /// The key (a pattern for a topic exchange; ignored by fanout and headers).
    #[serde(default)]
    pub key: String,
    /// A headers exchange's match: `x-match = "all"|"any"` and the application-properties
    /// to compare.
    #[serde(default)]
    pub headers: Option<toml::Table>,
}

impl BindingDecl {
    /// The binding's headers match, if it has one.
    pub fn headers_match(&self) -> Result<Option<crate::broker::filter::HeadersMatch>, String> {
        let Some(table) = &self.headers else {
            return Ok(None);
        };
        let mut values = Vec::with_capacity(table.len());
        for (k, v) in table {
            let value = match v {
                toml::Value::String(s) => ferry_codec::types::Value::String(s.as_str().into()),
                toml::Value::Integer(i) => ferry_codec::types::Value::Long(*i),
                toml::Value::Float(f) => ferry_codec::types::Value::Double(*f),
                toml::Value::Boolean(b) => ferry_codec::types::Value::Bool(*b),
                _ => return Err(format!("header {k:?}: a string, number or boolean")),
            };
            values.push((k.as_str(), value));
        }
        crate::broker::filter::HeadersMatch::from_map(values.iter().map(|(k, v)| (*k, v))).map(Some)
    }
}

/// One `[[address_rules]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressRule {
    /// A literal prefix, or a pattern of dot-separated words with `*` and `#`.
    pub pattern: String,
    /// `queue`, or an exchange type.
    pub kind: String,
    /// Whether attaching may create the node (default true).
    #[serde(default = "yes")]
    pub create: bool,
    /// For exchanges: `release` (default) or `accept`.
    #[serde(default = "release")]
    pub unroutable: String,
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// When a durable message is on disk relative to its `accepted`.
    pub sync: SyncMode,
    /// With `sync = "interval"`: the longest time between syncs.
    #[serde(deserialize_with = "de_duration")]
    pub sync_interval: Duration,
    /// Bytes per log segment file.
    #[serde(deserialize_with = "de_size")]
    pub segment_size: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            sync: SyncMode::Always,
            sync_interval: Duration::from_millis(100),
            segment_size: 64 * MIB,
        }
    }
}

/// `[store] sync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// Synced before `accepted`.
    Always,
    /// Synced at least every `sync_interval`; `accepted` may come first.
    Interval,
    /// Never synced: for tests and benchmarks.
    Never,
}

/// The depth limits and message policy of a queue; 0 (or empty) means none.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueLimits {
    /// Most messages held.
    pub max_length: u64,
    /// Most bytes of messages held.
    #[serde(deserialize_with = "de_size")]
    pub max_bytes: u64,
    /// Expiry of messages that carry none of their own.
    #[serde(deserialize_with = "de_duration")]
    pub message_ttl: Duration,
    /// Dead-letter a message once its delivery-count reaches this.
    pub max_delivery_count: u32,
    /// Where dead letters go (rejected, expired, over max_delivery_count).
    pub dead_letter_queue: String,
    /// At max_length or max_bytes: "block", "reject-publish" or "drop-head".
    pub overflow: String,
    /// How long a consumer holds an unsettled message before it goes back to the queue
    /// (the claim TTL of task distribution); 0 means for as long as the link lives.
    #[serde(deserialize_with = "de_duration")]
    pub lock_duration: Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_length: 0,
            max_bytes: 0,
            message_ttl: Duration::ZERO,
            max_delivery_count: 0,
            dead_letter_queue: String::new(),
            overflow: "block".into(),
            lock_duration: Duration::ZERO,
        }
    }
}

/// One `[[queues.declare]]` entry; unset limits come from `[queues.defaults]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueDecl {
    /// The queue's address.
    pub name: String,
    /// Most messages held (0: unlimited).
    #[serde(default)]
    pub max_length: Option<u64>,
    /// Most bytes held (0: unlimited).
    #[serde(default, deserialize_with = "de_opt_size")]
    pub max_bytes: Option<u64>,
    /// Largest message this queue accepts, below the broker-wide limit.
    #[serde(default, deserialize_with = "de_opt_size")]
    pub max_message_size: Option<u64>,
    /// Whether its durable messages are kept on disk (default true).
    #[serde(default = "yes")]
    pub durable: bool,
    /// Expiry of messages that carry none of their own.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub message_ttl: Option<Duration>,
    /// Dead-letter a message once its delivery-count reaches this (0: never).
    #[serde(default)]
    pub max_delivery_count: Option<u32>,
    /// Where dead letters go ("": dropped and counted).
    #[serde(default)]
    pub dead_letter_queue: Option<String>,
    /// At its limits: "block", "reject-publish" or "drop-head".
    #[serde(default)]
    pub overflow: Option<String>,
    /// How long a consumer may hold an unsettled message (0: no limit).
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub lock_duration: Option<Duration>,
}

fn yes() -> bool {
    true
}

impl QueueDecl {
    /// This queue's depth limits, falling back to `defaults` for what it leaves unset.
    pub fn limits(&self, defaults: &QueueLimits) -> QueueLimits {
        QueueLimits {
            max_length: self.max_length.unwrap_or(defaults.max_length),
            max_bytes: self.max_bytes.unwrap_or(defaults.max_bytes),
            message_ttl: self.message_ttl.unwrap_or(defaults.message_ttl),
            max_delivery_count: self
                .max_delivery_count
                .unwrap_or(defaults.max_delivery_count),
            dead_letter_queue: self
                .dead_letter_queue
                .clone()
                .unwrap_or_else(|| defaults.dead_letter_queue.clone()),
            overflow: self
                .overflow
                .clone()
                .unwrap_or_else(|| defaults.overflow.clone()),
            lock_duration: self.lock_duration.unwrap_or(defaults.lock_duration),
        }
    }
}

/// `[connection]`: the limits every connection is held to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Largest frame accepted, advertised in open.
    pub max_frame_size: u32,
    /// Highest channel accepted.
    pub channel_max: u16,
    /// Highest link handle accepted per session.
    pub handle_max: u32,
    /// Incoming window per session, in transfer frames.
    pub session_window: u32,
    /// Close a peer silent for this long; half of it is advertised as our idle-time-out.
    #[serde(deserialize_with = "de_duration")]
    pub dead_peer_timeout: Duration,
    /// Refuse a peer asking for heartbeats more often than this.
    #[serde(deserialize_with = "de_duration")]
    pub min_peer_idle_timeout: Duration,
    /// Protocol header, SASL and open must complete within this.
    #[serde(deserialize_with = "de_duration")]
    pub handshake_timeout: Duration,
    /// Most links on one connection.
    pub max_links_per_connection: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_frame_size: 65_536,
            channel_max: 255,
            handle_max: 1023,
            session_window: 2048,
            dead_peer_timeout: Duration::from_secs(60),
            min_peer_idle_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(10),
            max_links_per_connection: 4096,
        }
    }
}

/// A SASL mechanism a listener may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SaslMechanism {
    /// RFC 4505: no credentials.
    Anonymous,
    /// RFC 4616: user name and password, checked against `[[users]]`.
    Plain,
    /// RFC 4422 appendix A: the identity established by TLS.
    External,
}

impl SaslMechanism {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Anonymous => "ANONYMOUS",
            Self::Plain => "PLAIN",
            Self::External => "EXTERNAL",
        }
    }
}

/// When a listener lets clients in without credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnonymousPolicy {
    /// On every address.
    Always,
    /// Never.
    Never,
    /// Only when the listener's address is a loopback address.
    Loopback,
}

/// One `[[listeners]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listener {
    /// IP address and port to bind.
    #[serde(deserialize_with = "de_address")]
    pub address: SocketAddr,
    /// Most connections open at once on this listener.
    pub max_connections: u32,
    /// Overrides `[connection].max_frame_size` here.
    pub max_frame_size: Option<u32>,
    /// Overrides `[broker].max_message_size` here.
    #[serde(deserialize_with = "de_opt_size")]
    pub max_message_size: Option<u64>,
    /// Mechanisms offered, in order of preference.
    pub sasl_mechanisms: Vec<SaslMechanism>,
    /// When anonymous access (SASL ANONYMOUS or no SASL at all) is allowed.
    pub allow_anonymous: AnonymousPolicy,
}

impl Default for Listener {
    fn default() -> Self {
        Self {
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, 5672)),
            max_connections: 10_000,
            max_frame_size: None,
            max_message_size: None,
            sasl_mechanisms: vec![SaslMechanism::Anonymous, SaslMechanism::Plain],
            allow_anonymous: AnonymousPolicy::Loopback,
        }
    }
}

impl Listener {
    /// Whether clients may connect here without credentials. `loopback` is decided by the
    /// listener's own address (an IPv4-mapped `::ffff:127.0.0.1` counts), so a broker moved
    /// from `127.0.0.1` to `0.0.0.0` stops being open without anyone editing this setting.
    pub fn anonymous_allowed(&self) -> bool {
        match self.allow_anonymous {
            AnonymousPolicy::Always => true,
            AnonymousPolicy::Never => false,
            AnonymousPolicy::Loopback => self.address.ip().to_canonical().is_loopback(),
        }
    }

    /// The mechanisms actually offered: the configured list, less ANONYMOUS where anonymous
    /// access is not allowed.
    pub fn offered_mechanisms(&self) -> Vec<SaslMechanism> {
        let anonymous = self.anonymous_allowed();
        self.sasl_mechanisms
            .iter()
            .copied()
            .filter(|m| anonymous || *m != SaslMechanism::Anonymous)
            .collect()
    }
}

/// One `[[users]]` entry.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The SASL PLAIN authcid.
    pub name: String,
    /// An argon2 PHC string, as printed by `ferry passwd`.
    pub password_hash: String,
}

/// The hash stays out of logs: it is what an offline guesser needs.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// A configuration that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not valid TOML, or not a valid configuration.
    #[error("config error in {origin}: {detail}")]
    Invalid {
        /// The file, or the built-in default.
        origin: String,
        /// The offending key, e.g. `listeners[0].address`, when known.
        key: Option<String>,
        /// Its 1-based line, when known.
        line: Option<usize>,
        /// The whole explanation (it names `key` and `line` too).
        detail: String,
    },
}

impl ConfigError {
    /// The offending key, e.g. `broker.memory_budget` or `listeners[1].address`.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => key.as_deref(),
            Self::Read { .. } => None,
        }
    }

    /// The 1-based line of the offending key or value, when the parser knows it.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid { line, .. } => *line,
            Self::Read { .. } => None,
        }
    }

    fn invalid(origin: &str, key: Option<String>, line: Option<usize>, message: &str) -> Self {
        let detail = describe(key.as_deref(), line, message);
        Self::Invalid {
            origin: origin.to_owned(),
            key,
            line,
            detail,
        }
    }
}

/// What `origin` says of the built-in default in errors.
const BUILT_IN: &str = "the built-in default config";

impl Config {
    /// The commented default configuration, verbatim (`ferry print-default-config`).
    pub fn default_toml() -> &'static str {
        include_str!("../etc/ferry.toml")
    }

    /// Reads and validates the file at `path`, or the built-in default when `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (text, origin) = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                (text, path.display().to_string())
            }
            None => (Self::default_toml().to_owned(), BUILT_IN.to_owned()),
        };
        let config = Self::parse(&text, &origin)?;
        config.validate(&origin)?;
        Ok(config)
    }

    /// Parses TOML without the semantic checks of [`Config::validate`]; `origin` names the
    /// source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let deserializer = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::invalid(origin, None, line_of(text, &e), e.message()))?;
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let key = (path != ".").then_some(path);
            let inner = e.into_inner();
            ConfigError::invalid(origin, key, line_of(text, &inner), inner.message())
        })
    }

    /// The address rules: the configured ones, then the built-in OpenStack set.
    pub fn rules(&self) -> Result<crate::broker::address::Rules, String> {
        use crate::broker::address::{NodeKind, Rule, Unroutable, default_rules};
        let mut rules = Vec::new();
        for (i, r) in self.address_rules.iter().enumerate() {
            let kind: NodeKind = r.kind.parse().map_err(|_| {
                format!("[{i}]: kind {:?} is not queue or an exchange type", r.kind)
            })?;
            let unroutable = match r.unroutable.as_str() {
                "accept" => Unroutable::Accept,
                "release" => Unroutable::Release,
                other => {
                    return Err(format!(
                        "[{i}]: unroutable {other:?} is not release or accept"
                    ));
                }
            };
            let rule = Rule::new(r.pattern.clone(), kind)
                .map_err(|e| format!("[{i}]: {e}"))?
                .with_create(r.create)
                .with_unroutable(unroutable);
            rules.push(rule);
        }
        rules.extend(default_rules().rules().iter().cloned());
        crate::broker::address::Rules::new(rules).map_err(|e| e.to_string())
    }

    /// The checks a value-by-value parse cannot make: frame sizes, uniqueness, hashes, and
    /// listeners that nobody could log in to.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        self.check()
            .map_err(|(key, message)| ConfigError::invalid(origin, Some(key), None, &message))
    }

    fn check(&self) -> Result<(), (String, String)> {
        let st = &self.store;
        if st.segment_size < MIB || st.segment_size > 4 * GIB {
            return Err((
                "store.segment_size".into(),
                "must be between 1MiB and 4GiB".into(),
            ));
        }
        if st.segment_size < 2 * self.broker.max_message_size + MIB {
            return Err((
                "store.segment_size".into(),
                format!(
                    "must hold at least two of the largest message (broker.max_message_size = {}) plus 1MiB",
                    self.broker.max_message_size
                ),
            ));
        }
        if st.sync == SyncMode::Interval && st.sync_interval.is_zero() {
            return Err((
                "store.sync_interval".into(),
                "must be more than zero (use sync = \"always\" to sync every batch)".into(),
            ));
        }
        let b = &self.broker;
        if b.container_id.is_empty() {
            return Err(("broker.container_id".into(), "must not be empty".into()));
        }
        if b.link_credit == 0 {
            return Err((
                "broker.link_credit".into(),
                "must be at least 1 (no message could ever flow)".into(),
            ));
        }
        let c = &self.connection;
        check_frame_size("connection.max_frame_size", c.max_frame_size)?;
        if c.session_window == 0 {
            return Err((
                "connection.session_window".into(),
                "must be at least 1 (no transfer could ever arrive)".into(),
            ));
        }

        for (i, e) in self.exchanges.iter().enumerate() {
            if e.name.is_empty() {
                return Err((format!("exchanges[{i}].name"), "must not be empty".into()));
            }
            if e.kind
                .parse::<crate::broker::address::ExchangeType>()
                .is_err()
            {
                return Err((
                    format!("exchanges[{i}].type"),
                    format!("{:?} is not fanout, direct, topic or headers", e.kind),
                ));
            }
            if !matches!(e.unroutable.as_str(), "release" | "accept") {
                return Err((
                    format!("exchanges[{i}].unroutable"),
                    "must be \"release\" or \"accept\"".into(),
                ));
            }
        }
        for (i, b) in self.bindings.iter().enumerate() {
            if !self.exchanges.iter().any(|e| e.name == b.exchange) {
                return Err((
                    format!("bindings[{i}].exchange"),
                    format!("no [[exchanges]] entry named {:?}", b.exchange),
                ));
            }
            if !self.queues.declare.iter().any(|q| q.name == b.queue) {
                return Err((
                    format!("bindings[{i}].queue"),
                    format!("no [[queues.declare]] entry named {:?}", b.queue),
                ));
            }
            if let Err(why) = b.headers_match() {
                return Err((format!("bindings[{i}].headers"), why));
            }
            let headers_exchange = self
                .exchanges
                .iter()
                .any(|e| e.name == b.exchange && e.kind == "headers");
            if b.headers.is_some() && !headers_exchange {
                return Err((
                    format!("bindings[{i}].headers"),
                    "only a headers exchange's bindings have headers".into(),
                ));
            }
        }
        if let Err(e) = self.rules() {
            return Err(("address_rules".into(), e));
        }
        let overflow_ok = |v: &str| matches!(v, "block" | "reject-publish" | "drop-head");
        if !overflow_ok(&self.queues.defaults.overflow) {
            return Err((
                "queues.defaults.overflow".into(),
                "must be \"block\", \"reject-publish\" or \"drop-head\"".into(),
            ));
        }
        for (i, q) in self.queues.declare.iter().enumerate() {
            if q.overflow.as_deref().is_some_and(|v| !overflow_ok(v)) {
                return Err((
                    format!("queues.declare[{i}].overflow"),
                    "must be \"block\", \"reject-publish\" or \"drop-head\"".into(),
                ));
            }
        }
        let mut queue_names = HashSet::new();
        for (i, q) in self.queues.declare.iter().enumerate() {
            let key = format!("queues.declare[{i}].name");
            if q.name.is_empty() {
                return Err((key, "must not be empty".into()));
            }
            if !queue_names.insert(q.name.as_str()) {
                return Err((key, format!("queue `{}` is declared twice", q.name)));
            }
        }

        if self.listeners.is_empty() {
            return Err((
                "listeners".into(),
                "at least one listener is required".into(),
            ));
        }
        let mut addresses = HashSet::new();
        for (i, l) in self.listeners.iter().enumerate() {
            if !addresses.insert(l.address) {
                return Err((
                    format!("listeners[{i}].address"),
                    format!("{} is listed twice", l.address),
                ));
            }
            if let Some(size) = l.max_frame_size {
                check_frame_size(&format!("listeners[{i}].max_frame_size"), size)?;
            }
            let mut seen = HashSet::new();
            if let Some(m) = l.sasl_mechanisms.iter().find(|m| !seen.insert(**m)) {
                return Err((
                    format!("listeners[{i}].sasl_mechanisms"),
                    format!("{} is listed twice", m.name()),
                ));
            }
            if l.offered_mechanisms().is_empty() && !l.anonymous_allowed() {
                return Err((
                    format!("listeners[{i}].sasl_mechanisms"),
                    format!(
                        "no client could connect to {}: anonymous access is not allowed there \
                         and no other mechanism is offered",
                        l.address
                    ),
                ));
            }
        }

        let mut user_names = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let key = format!("users[{i}].name");
            if u.name.is_empty() || u.name.contains('\0') {
                return Err((key, "must be non-empty and contain no NUL".into()));
            }
            if !user_names.insert(u.name.as_str()) {
                return Err((key, format!("user `{}` is listed twice", u.name)));
            }
            crate::auth::check_phc(&u.password_hash)
                .map_err(|m| (format!("users[{i}].password_hash"), m))?;
        }
        Ok(())
    }

    /// `--listen`: one listener per address, each a copy of the first configured listener
    /// with its address replaced, so its limits and SASL settings carry over.
    pub fn override_listen(&mut self, addresses: &[SocketAddr]) {
        if addresses.is_empty() {
            return;
        }
        let template = self.listeners.first().cloned().unwrap_or_default();
        self.listeners = addresses
            .iter()
            .map(|&address| Listener {
                address,
                ..template.clone()
            })
            .collect();
    }

    /// The protocol engine's configuration for connections accepted on `listener`.
    pub fn connection_config(&self, listener: &Listener) -> ConnectionConfig {
        let c = &self.connection;
        let mechanisms = listener
            .offered_mechanisms()
            .into_iter()
            .map(|m| Symbol::from_static(m.name()))
            .collect();
        let mut properties = Fields::new();
        properties.push(Symbol::from_static("product"), Value::string("ferry"));
        properties.push(
            Symbol::from_static("version"),
            Value::string(env!("CARGO_PKG_VERSION")),
        );
        ConnectionConfig {
            role: EndpointRole::Server,
            container_id: self.broker.container_id.clone(),
            hostname: None,
            max_frame_size: listener.max_frame_size.unwrap_or(c.max_frame_size),
            channel_max: c.channel_max,
            handle_max: c.handle_max,
            dead_peer_timeout: c.dead_peer_timeout,
            min_peer_idle_timeout: c.min_peer_idle_timeout,
            handshake_timeout: c.handshake_timeout,
            session_window: c.session_window,
            max_message_size: listener
                .max_message_size
                .unwrap_or(self.broker.max_message_size),
            over_credit_allowance: self.broker.over_credit_allowance,
            max_links: usize::try_from(c.max_links_per_connection).unwrap_or(usize::MAX),
            sasl: SaslConfig {
                mechanisms,
                allow_plain_header: listener.anonymous_allowed(),
                client: None,
            },
            offered_capabilities: vec![Symbol::from_static("ANONYMOUS-RELAY")],
            properties: Some(properties),
            decode_limits: DecodeLimits::DEFAULT,
        }
    }
}

fn check_frame_size(key: &str, size: u32) -> Result<(), (String, String)> {
    if size < MIN_MAX_FRAME_SIZE {
        return Err((
            key.to_owned(),
            format!(
                "{size} is below {MIN_MAX_FRAME_SIZE}, the smallest max-frame-size AMQP allows"
            ),
        ));
    }
    Ok(())
}

/// The 1-based line where a toml error starts.
fn line_of(text: &str, error: &toml::de::Error) -> Option<usize> {
    let start = error.span()?.start;
    let before = text.get(..start)?;
    Some(before.bytes().filter(|&b| b == b'\n').count() + 1)
}

/// Puts key, line and message in one sentence. An unknown field is reported against its
/// table, the way the reader sees it in the file: "unknown field `x` in [listeners]".
fn describe(key: Option<&str>, line: Option<usize>, message: &str) -> String {
    let at_line = line.map(|l| format!(" at line {l}")).unwrap_or_default();
    if let (Some(key), Some(rest)) = (key, message.strip_prefix("unknown field ")) {
        let (field, expected) = match rest.split_once(", ") {
            Some((field, expected)) => (field, format!(" ({expected})")),
            None => (rest, String::new()),
        };
        let table = match key.rsplit_once('.') {
            Some((parent, _)) => format!("in [{}]", strip_indices(parent)),
            None => "at the top level".to_owned(),
        };
        return format!("unknown field {field} {table}{at_line}{expected}");
    }
    match (key, line) {
        (Some(key), _) => format!("`{key}`{at_line}: {message}"),
        (None, Some(line)) => format!("line {line}: {message}"),
        (None, None) => message.to_owned(),
    }
}

/// `listeners[0]` → `listeners`: the table as written in the file.
fn strip_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for ch in path.chars() {
        match ch {
            '[' => in_index = true,
            ']' => in_index = false,
            _ if !in_index => out.push(ch),
            _ => {}
        }
    }
    out
}

/// Parses a size: a whole number of bytes with an optional unit, `B`, `KiB`, `MiB`, `GiB`,
/// `TiB` (powers of 1024) or `KB`, `MB`, `GB`, `TB` (powers of 1000): `"64MiB"`, `"0"`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid size {text:?}: expected a whole number with an optional unit \
             (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB), e.g. \"64MiB\""
        )
    };
    let (number, unit) = split_number(text.trim()).ok_or_else(bad)?;
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "KiB" => KIB,
        "MiB" => MIB,
        "GiB" => GIB,
        "TiB" => 1024 * GIB,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size {text:?} does not fit in 64 bits"))
}

/// Parses a duration: a whole number and a unit, `ms`, `s`, `m`, `h` or `d`: `"300s"`.
/// A unit is required, since a bare number could mean either seconds or milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration {text:?}: expected a whole number and a unit \
             (ms, s, m, h, d), e.g. \"300s\""
        )
    };
    let (number, unit) = split_number(text.trim()).ok_or_else(bad)?;
    let seconds = |factor: u64| {
        number
            .checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("duration {text:?} is too long"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        "d" => seconds(86_400),
        _ => Err(bad()),
    }
}

/// `"64 MiB"` → `(64, "MiB")`; `None` without leading digits or when they overflow.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    Some((number.parse().ok()?, unit.trim_start()))
}

fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(SizeVisitor)
}

fn de_opt_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_any(SizeVisitor).map(Some)
}

fn de_opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    d.deserialize_any(DurationVisitor).map(Some)
}

fn de_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "invalid address {text:?}: expected an IP address and a port, such as \
             \"127.0.0.1:5672\" or \"[::]:5672\" (host names are not resolved)"
        ))
    })
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

struct SizeVisitor;

impl serde::de::Visitor<'_> for SizeVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size: a number of bytes, or a string such as \"64MiB\"")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
        parse_size(v).map_err(E::custom)
    }
}

struct DurationVisitor;

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string with a unit, such as \"300s\" or \"250ms\"")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(E::custom)
    }
}
