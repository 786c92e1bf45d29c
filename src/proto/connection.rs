//! The connection endpoint (§2.4) with its SASL layer (§5.3), owning sessions and links.
//!
//! Connection states (§2.4.6) as this engine walks them. A server waits for the client's
//! header; a client sends its header and, without SASL, pipelines its open:
//!
//! ```text
//!   server: START --hdr rcvd--> HDR_RCVD --hdr sent--> HDR_EXCH --open rcvd--> OPEN_RCVD
//!           --open sent--> OPENED
//!   client: START --hdr sent--> HDR_SENT --open sent--> OPEN_PIPE --hdr rcvd--> OPEN_SENT
//!           --open rcvd--> OPENED
//!   both:   OPENED --close rcvd--> CLOSE_RCVD --close sent--> END
//!           OPENED --close sent--> CLOSE_SENT --close rcvd--> END
//!           any --error: close sent--> DISCARDING --close rcvd or timeout--> END
//! ```
//!
//! With SASL (§5.3.2) a header exchange with protocol id 3 and the SASL frames come first;
//! after a successful outcome the AMQP header exchange starts over from START.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use ferry_codec::DecodeLimits;
use ferry_codec::definitions::{
    DeliveryTag, Error, ErrorCondition, Fields, MIN_MAX_FRAME_SIZE, ReceiverSettleMode, Role,
    SenderSettleMode, SequenceNo,
};
use ferry_codec::delivery_state::{DeliveryState, Rejected};
use ferry_codec::frames::{
    self, AmqpFrame, FrameDecoder, FrameType, ProtocolHeader, ProtocolId, RawFrame,
};
use ferry_codec::messaging::{Message, TargetKind};
use ferry_codec::performatives::{
    Attach, Begin, Close, Detach, Disposition, End, Flow, Open, Performative, Transfer,
};
use ferry_codec::sasl::{SaslCode, SaslFrameBody, SaslInit, SaslMechanisms, SaslOutcome};
use ferry_codec::types::{Str, Symbol};

use crate::idhash::IdMap;
use crate::proto::error::{ProtocolError, Scope, UsageError};
use crate::proto::events::{Event, IncomingDelivery};
use crate::proto::link::{AttachReply, Link, LinkSpec, LinkState, Partial};
use crate::proto::session::{PendingTransfer, Session, SessionState};
use crate::proto::{LinkId, SessionId};

/// Which end of the connection this engine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointRole {
    /// Accepts connections (the broker).
    Server,
    /// Opens connections (tests, the load harness).
    Client,
}

/// What a client authenticates with.
#[derive(Debug, Clone)]
pub struct ClientSasl {
    /// The mechanism, e.g. `ANONYMOUS` or `PLAIN`.
    pub mechanism: Symbol,
    /// Its initial response.
    pub initial_response: Option<Bytes>,
}

/// The SASL layer's configuration.
#[derive(Debug, Clone, Default)]
pub struct SaslConfig {
    /// Server: mechanisms offered, in order of preference. Empty: no SASL at all.
    pub mechanisms: Vec<Symbol>,
    /// Server: accept a client that skips SASL (the plain AMQP header). Only where anonymous
    /// access is allowed.
    pub allow_plain_header: bool,
    /// Client: authenticate with this; `None` sends the plain AMQP header.
    pub client: Option<ClientSasl>,
}

/// Everything a connection is configured with.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Server or client.
    pub role: EndpointRole,
    /// Our container-id.
    pub container_id: String,
    /// Client: the hostname to put in open.
    pub hostname: Option<String>,
    /// Largest frame we accept (advertised in open).
    pub max_frame_size: u32,
    /// Highest channel we accept.
    pub channel_max: u16,
    /// Highest handle we accept per session.
    pub handle_max: u32,
    /// Close a peer we have heard nothing from for this long; we advertise half (§2.4.5).
    pub dead_peer_timeout: Duration,
    /// Refuse a peer whose idle-time-out is below this.
    pub min_peer_idle_timeout: Duration,
    /// Header, SASL and open must be done within this.
    pub handshake_timeout: Duration,
    /// Our per-session incoming window, in transfer frames.
    pub session_window: u32,
    /// Largest message we accept on a link.
    pub max_message_size: u64,
    /// Transfers tolerated beyond granted credit, per link (some clients assume credit).
    pub over_credit_allowance: u32,
    /// Most links on this connection.
    pub max_links: usize,
    /// SASL.
    pub sasl: SaslConfig,
    /// Capabilities offered in open (e.g. `ANONYMOUS-RELAY`).
    pub offered_capabilities: Vec<Symbol>,
    /// Open properties (e.g. `product`, `version`).
    pub properties: Option<Fields>,
    /// Decode limits for everything the peer sends.
    pub decode_limits: DecodeLimits,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            role: EndpointRole::Server,
            container_id: "ferry".into(),
            hostname: None,
            max_frame_size: 65_536,
            channel_max: 255,
            handle_max: 1023,
            dead_peer_timeout: Duration::from_secs(60),
            min_peer_idle_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(10),
            session_window: 2048,
            max_message_size: 16 * 1024 * 1024,
            over_credit_allowance: 10_000,
            max_links: 4096,
            sasl: SaslConfig::default(),
            offered_capabilities: Vec::new(),
            properties: None,
            decode_limits: DecodeLimits::DEFAULT,
        }
    }
}

/// §2.4.6 connection states (AMQP layer; SASL is tracked apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ConnectionState {
    Start,
    HdrRcvd,
    HdrSent,
    HdrExch,
    OpenPipe,
    OpenRcvd,
    OpenSent,
    Opened,
    CloseRcvd,
    CloseSent,
    Discarding,
    End,
}

/// The SASL exchange (§5.3.2), before the AMQP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SaslPhase {
    /// Not started (server: no header yet; client: SASL not used or not begun).
    None,
    /// Server: mechanisms sent, waiting for init.
    AwaitInit,
    /// Server: init reported to the application, waiting for its verdict.
    AwaitVerdict,
    /// Client: waiting for the server's SASL header and mechanisms.
    AwaitMechanisms,
    /// Client: init sent, waiting for the outcome.
    AwaitOutcome,
    /// Succeeded: the AMQP header exchange follows.
    Done,
}

/// A connection endpoint.
#[derive(Debug)]
pub struct Connection {
    cfg: ConnectionConfig,
    state: ConnectionState,
    sasl: SaslPhase,
    /// Whether the next bytes from the peer are a protocol header.
    expect_header: bool,
    frames: FrameDecoder,
    out: Output,
    events: VecDeque<Event>,
    last_recv: Instant,
    last_send: Instant,
    handshake_deadline: Option<Instant>,
    /// When DISCARDING started: give up waiting for the peer's close after a grace period.
    discard_deadline: Option<Instant>,
    remote_max_frame_size: u32,
    remote_channel_max: u16,
    remote_idle_timeout: Option<Duration>,
    sessions: IdMap<u16, Session>,
    /// The peer picks these keys, but only up to our channel-max (enforced on begin), so the
    /// fast hasher's worst case stays bounded.
    remote_channels: IdMap<u16, u16>,
    links: IdMap<LinkId, Link>,
    next_link_id: u64,
    /// The connection is over: nothing more is read, and `Closed` has been reported.
    finished: bool,
    /// A disposition not yet encoded, widened while consecutive deliveries get the same
    /// verdict: one frame then settles a whole batch (§2.7.6 `first`..`last`).
    held_disposition: Option<(u16, Disposition)>,
}

/// Encoded output waiting for the owner. Room is made without copying what is already
/// encoded: a full buffer is sealed and handed out by later `take` calls, and the next one is
/// sized after the last batch, so a busy connection allocates once per batch and an idle one
/// stays small. (Growing one buffer frame by frame re-copied the output several times over.)
#[derive(Debug)]
struct Output {
    /// The buffer being written.
    buf: BytesMut,
    /// Full buffers, oldest first, ahead of `buf`.
    sealed: VecDeque<Bytes>,
    /// Bytes in `sealed`.
    sealed_len: usize,
    /// Bytes the last `take` returned: how much room to give the next batch at once.
    hint: usize,
}

impl Output {
    fn new() -> Self {
        Self {
            buf: BytesMut::with_capacity(4096),
            sealed: VecDeque::new(),
            sealed_len: 0,
            hint: 0,
        }
    }

    /// Everything waiting, in bytes.
    fn len(&self) -> usize {
        self.buf.len() + self.sealed_len
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.sealed.is_empty()
    }

    /// The buffer to encode into, with room for `need` more bytes.
    fn room(&mut self, need: usize) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < need {
            if !self.buf.is_empty() {
                let chunk = self.buf.split().freeze();
                self.sealed_len += chunk.len();
                self.sealed.push_back(chunk);
                self.hint = OUT_CHUNK;
            }
            self.buf
                .reserve(need.max(self.hint.min(OUT_CHUNK)).max(1024));
        }
        &mut self.buf
    }

    /// The oldest waiting bytes.
    fn take(&mut self) -> Bytes {
        if let Some(chunk) = self.sealed.pop_front() {
            self.sealed_len -= chunk.len();
            return chunk;
        }
        // A busy connection keeps large buffers; a quiet one's shrink back.
        self.hint = self.buf.len().max(self.hint / 2);
        self.buf.split().freeze()
    }
}

/// Encoded output beyond which no more transfers are framed until the owner takes it.
const OUTPUT_HIGH_WATER: usize = 256 * 1024;

/// Largest output buffer allocated at once; more output is sealed into further buffers.
const OUT_CHUNK: usize = 64 * 1024;

/// How long to wait for the peer's close after we closed with an error.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

impl Connection {
    /// A new connection endpoint. A client writes its protocol header (and, without SASL, its
    /// open) at once; a server waits for the peer's header.
    pub fn new(cfg: ConnectionConfig, now: Instant) -> Self {
        let mut conn = Self {
            frames: FrameDecoder::new(MIN_MAX_FRAME_SIZE),
            state: ConnectionState::Start,
            sasl: SaslPhase::None,
            expect_header: true,
            out: Output::new(),
            events: VecDeque::new(),
            last_recv: now,
            last_send: now,
            handshake_deadline: Some(now + cfg.handshake_timeout),
            discard_deadline: None,
            remote_max_frame_size: MIN_MAX_FRAME_SIZE,
            remote_channel_max: 0,
            remote_idle_timeout: None,
            sessions: IdMap::default(),
            remote_channels: IdMap::default(),
            links: IdMap::default(),
            next_link_id: 1,
            finished: false,
            held_disposition: None,
            cfg,
        };
        if conn.cfg.role == EndpointRole::Client {
            if conn.cfg.sasl.client.is_some() {
                conn.write_header(ProtocolHeader::SASL);
                conn.sasl = SaslPhase::AwaitMechanisms;
            } else {
                conn.write_header(ProtocolHeader::AMQP);
                conn.state = ConnectionState::HdrSent;
                conn.send_open();
            }
        }
        conn
    }

    // ----- driving -------------------------------------------------------------------------

    /// Consumes whatever complete headers and frames `buf` holds; leaves a partial frame.
    pub fn handle_input(&mut self, buf: &mut BytesMut, now: Instant) {
        if !buf.is_empty() {
            self.last_recv = now;
        }
        while !self.finished && !buf.is_empty() {
            let progressed = if self.expect_header {
                self.read_header(buf)
            } else {
                self.read_frame(buf)
            };
            if !progressed {
                break;
            }
        }
        if self.finished {
            buf.clear();
        }
    }

    /// Whether some receiving link got more transfers beyond its credit than the allowance:
    /// the owner should stop reading until it grants credit again (which resets the count).
    pub fn over_credit_exceeded(&self) -> bool {
        let allowance = self.cfg.over_credit_allowance;
        self.links.values().any(|l| l.over_credit > allowance)
    }

    /// Counts the peer as heard from. The owner calls this while it deliberately leaves the
    /// socket unread (backpressure), so its own silence is not taken for a dead peer.
    pub fn not_listening(&mut self, now: Instant) {
        self.last_recv = self.last_recv.max(now);
    }

    /// Fires whatever timers are due: handshake timeout, dead peer, heartbeat.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        if self.discard_deadline.is_some_and(|d| now >= d) {
            self.finish(None);
            return;
        }
        if self.handshake_deadline.is_some_and(|d| now >= d) {
            self.handshake_deadline = None;
            self.fail(ProtocolError::connection(
                ErrorCondition::ResourceLimitExceeded,
                "handshake not completed in time",
            ));
            return;
        }
        if now.saturating_duration_since(self.last_recv) >= self.cfg.dead_peer_timeout {
            self.fail(ProtocolError::connection(
                ErrorCondition::ResourceLimitExceeded,
                "no frames from the peer within the idle timeout",
            ));
            return;
        }
        if let Some(peer) = self.remote_idle_timeout
            && self.is_amqp_open()
            && now.saturating_duration_since(self.last_send) >= peer / 2
        {
            frames::encode_heartbeat(self.out.room(8));
            self.last_send = now;
        }
    }

    /// The next instant at which [`Connection::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        let mut next = self.last_recv + self.cfg.dead_peer_timeout;
        if let Some(d) = self.handshake_deadline {
            next = next.min(d);
        }
        if let Some(d) = self.discard_deadline {
            next = next.min(d);
        }
        if let Some(peer) = self.remote_idle_timeout
            && self.is_amqp_open()
        {
            next = next.min(self.last_send + peer / 2);
        }
        Some(next)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Everything written since the last call; the caller writes it to the socket.
    ///
    /// The owner calls this after handling the events of its last input, so this is where
    /// incoming windows reopen: a window bounds what one read can deliver before the
    /// application has processed it (§2.5.6).
    pub fn take_output(&mut self, now: Instant) -> Bytes {
        self.release_disposition();
        self.reopen_windows();
        if self.out.len() < OUTPUT_HIGH_WATER {
            let waiting: Vec<u16> = self
                .sessions
                .iter()
                .filter(|(_, s)| !s.pending.is_empty())
                .map(|(ch, _)| *ch)
                .collect();
            for ch in waiting {
                self.flush_session(ch);
            }
        }
        if !self.out.is_empty() {
            self.last_send = now;
        }
        self.out.take()
    }

    /// Sends a session flow wherever our incoming window has fallen below half.
    fn reopen_windows(&mut self) {
        if self.finished {
            return;
        }
        let window = self.cfg.session_window;
        let mut flows = Vec::new();
        for (ch, s) in self.sessions.iter_mut() {
            // Half rounded up, so that a window of 1 reopens once used.
            if s.state == SessionState::Mapped && s.incoming_window < window.div_ceil(2) {
                s.incoming_window = window;
                flows.push((*ch, Self::session_flow(s)));
            }
        }
        for (ch, flow) in flows {
            self.write_frame(ch, &Performative::Flow(flow), &[]);
        }
    }

    /// Whether output is waiting.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
            || self.held_disposition.is_some()
            || self
                .sessions
                .values()
                .any(|s| !s.pending.is_empty() && s.remote_incoming_window > 0)
    }

    /// Whether the connection is over (the socket can be closed once output is flushed).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The §2.4.6 state.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// The peer's max-frame-size.
    pub fn remote_max_frame_size(&self) -> u32 {
        self.remote_max_frame_size
    }

    fn is_amqp_open(&self) -> bool {
        matches!(
            self.state,
            ConnectionState::Opened | ConnectionState::OpenSent | ConnectionState::OpenRcvd
        )
    }

    // ----- headers and SASL ----------------------------------------------------------------

    fn write_header(&mut self, h: ProtocolHeader) {
        self.out.room(8).extend_from_slice(&h.to_bytes());
    }

    /// Reads a protocol header; returns whether it made progress.
    fn read_header(&mut self, buf: &mut BytesMut) -> bool {
        let header = match ProtocolHeader::parse(buf) {
            Ok(Some(h)) => h,
            Ok(None) => return false,
            Err(_) => {
                // Not AMQP at all: answer with the header we would accept, then close.
                self.write_header(self.preferred_header());
                self.finish(None);
                return true;
            }
        };
        buf.advance(frames::HEADER_LEN);
        match self.cfg.role {
            EndpointRole::Server => self.server_header(header),
            EndpointRole::Client => self.client_header(header),
        }
        true
    }

    /// The header a server wants first: SASL unless SASL is off.
    fn preferred_header(&self) -> ProtocolHeader {
        if self.cfg.sasl.mechanisms.is_empty() || self.sasl == SaslPhase::Done {
            ProtocolHeader::AMQP
        } else {
            ProtocolHeader::SASL
        }
    }

    fn server_header(&mut self, h: ProtocolHeader) {
        let sasl_on = !self.cfg.sasl.mechanisms.is_empty();
        match (h.id, h.is_v1_0(), self.sasl) {
            (ProtocolId::SASL, true, SaslPhase::None) if sasl_on => {
                self.write_header(ProtocolHeader::SASL);
                let mechanisms = SaslMechanisms {
                    sasl_server_mechanisms: self.cfg.sasl.mechanisms.clone(),
                };
                self.write_sasl(&SaslFrameBody::Mechanisms(mechanisms));
                self.sasl = SaslPhase::AwaitInit;
                self.expect_header = false;
            }
            (ProtocolId::AMQP, true, SaslPhase::Done) => self.amqp_header_received(),
            (ProtocolId::AMQP, true, SaslPhase::None)
                if !sasl_on || self.cfg.sasl.allow_plain_header =>
            {
                self.amqp_header_received()
            }
            _ => {
                // Unsupported id or version, or SASL skipped where it is required: our header,
                // then close (§2.2).
                self.write_header(self.preferred_header());
                self.finish(None);
            }
        }
    }

    fn amqp_header_received(&mut self) {
        self.state = ConnectionState::HdrRcvd;
        self.write_header(ProtocolHeader::AMQP);
        self.state = ConnectionState::HdrExch;
        self.expect_header = false;
        self.frames.set_max_frame_size(self.cfg.max_frame_size);
    }

    fn client_header(&mut self, h: ProtocolHeader) {
        match (h.id, h.is_v1_0(), self.sasl, self.state) {
            (ProtocolId::SASL, true, SaslPhase::AwaitMechanisms, _) => self.expect_header = false,
            // Also after an early close (open and close pipelined): the server still answers.
            (ProtocolId::AMQP, true, _, ConnectionState::OpenPipe | ConnectionState::CloseSent) => {
                if self.state == ConnectionState::OpenPipe {
                    self.state = ConnectionState::OpenSent;
                }
                self.expect_header = false;
                self.frames.set_max_frame_size(self.cfg.max_frame_size);
            }
            _ => self.finish(Some(Error::new(
                ErrorCondition::NotImplemented,
                "the server answered with an unexpected protocol header",
            ))),
        }
    }

    fn write_sasl(&mut self, body: &SaslFrameBody) {
        // SASL bodies are small and bounded by MIN-MAX-FRAME-SIZE on both sides (§5.3.1).
        let _ = frames::encode_frame(self.out.room(512), FrameType::Sasl, 0, body, &[], u32::MAX);
    }

    /// Server: the application's verdict on [`Event::SaslInit`].
    pub fn sasl_outcome(&mut self, ok: bool) {
        if self.sasl != SaslPhase::AwaitVerdict || self.finished {
            return;
        }
        let code = if ok { SaslCode::Ok } else { SaslCode::Auth };
        self.write_sasl(&SaslFrameBody::Outcome(SaslOutcome {
            code,
            additional_data: None,
        }));
        if ok {
            self.sasl = SaslPhase::Done;
            self.expect_header = true;
        } else {
            self.finish(None);
        }
    }

    fn handle_sasl(&mut self, raw: &RawFrame) {
        let body = match SaslFrameBody::decode_frame(raw, self.cfg.decode_limits) {
            Ok(b) => b,
            Err(_) => {
                self.finish(None);
                return;
            }
        };
        match (self.sasl, body) {
            (
                SaslPhase::AwaitInit,
                SaslFrameBody::Init(SaslInit {
                    mechanism,
                    initial_response,
                    hostname,
                }),
            ) => {
                if !self.cfg.sasl.mechanisms.contains(&mechanism) {
                    self.sasl = SaslPhase::AwaitVerdict;
                    self.sasl_outcome(false);
                    return;
                }
                self.sasl = SaslPhase::AwaitVerdict;
                self.events.push_back(Event::SaslInit {
                    mechanism,
                    initial_response,
                    hostname,
                });
            }
            (SaslPhase::AwaitMechanisms, SaslFrameBody::Mechanisms(m)) => {
                let Some(choice) = self.cfg.sasl.client.clone() else {
                    self.finish(None);
                    return;
                };
                if !m.sasl_server_mechanisms.contains(&choice.mechanism) {
                    self.finish(Some(Error::new(
                        ErrorCondition::NotImplemented,
                        "the server does not offer our SASL mechanism",
                    )));
                    return;
                }
                self.write_sasl(&SaslFrameBody::Init(SaslInit {
                    mechanism: choice.mechanism,
                    initial_response: choice.initial_response,
                    hostname: self.cfg.hostname.as_deref().map(Str::from),
                }));
                self.sasl = SaslPhase::AwaitOutcome;
            }
            (SaslPhase::AwaitOutcome, SaslFrameBody::Outcome(o)) => {
                let ok = o.code == SaslCode::Ok;
                self.events.push_back(Event::SaslOutcome { ok });
                if ok {
                    self.sasl = SaslPhase::Done;
                    self.expect_header = true;
                    self.write_header(ProtocolHeader::AMQP);
                    self.state = ConnectionState::HdrSent;
                    self.send_open();
                } else {
                    self.finish(Some(Error::new(
                        ErrorCondition::UnauthorizedAccess,
                        "SASL authentication failed",
                    )));
                }
            }
            // Challenge/response mechanisms are not offered, so anything else is out of order.
            _ => self.finish(None),
        }
    }

    // ----- frames --------------------------------------------------------------------------

    /// Reads one frame; returns whether it made progress.
    fn read_frame(&mut self, buf: &mut BytesMut) -> bool {
        let in_sasl = matches!(
            self.sasl,
            SaslPhase::AwaitInit
                | SaslPhase::AwaitVerdict
                | SaslPhase::AwaitMechanisms
                | SaslPhase::AwaitOutcome
        );
        let raw = match self.frames.decode(buf) {
            Ok(Some(raw)) => raw,
            Ok(None) => return false,
            Err(e) => {
                // In the AMQP layer (after SASL, or a client that skipped SASL where the plain
                // header is allowed) a framing error is answered with close; during the SASL
                // exchange there is no AMQP close to send.
                if in_sasl {
                    self.finish(None);
                } else {
                    self.fail(ProtocolError::connection(e.condition(), e.to_string()));
                }
                return true;
            }
        };
        match (raw.frame_type, in_sasl) {
            (FrameType::Sasl, true) => self.handle_sasl(&raw),
            (FrameType::Amqp, false) => {
                if let Err(e) = self.handle_amqp(&raw) {
                    self.apply_error(e);
                }
            }
            _ => {
                if in_sasl {
                    self.finish(None);
                } else {
                    self.fail(ProtocolError::connection(
                        ErrorCondition::FramingError,
                        "SASL frame after the SASL exchange",
                    ));
                }
            }
        }
        true
    }

    fn handle_amqp(&mut self, raw: &RawFrame) -> Result<(), ProtocolError> {
        let frame = AmqpFrame::decode(raw, self.cfg.decode_limits)
            .map_err(|e| ProtocolError::connection(e.condition(), e.to_string()))?;
        let Some(performative) = frame.performative else {
            return Ok(()); // heartbeat
        };
        if self.state == ConnectionState::Discarding {
            if let Performative::Close(_) = performative {
                self.finish(None);
            }
            return Ok(());
        }
        // After our close, only the peer's close matters (§2.4.3): an open or a begin answer
        // still in flight is no error.
        if self.state == ConnectionState::CloseSent
            && !matches!(performative, Performative::Close(_))
        {
            return Ok(());
        }
        match performative {
            Performative::Open(open) => self.on_open(open),
            Performative::Close(close) => {
                self.on_close(close);
                Ok(())
            }
            Performative::Begin(begin) => self.on_begin(frame.channel, begin),
            p => {
                if !matches!(
                    self.state,
                    ConnectionState::Opened | ConnectionState::CloseSent
                ) {
                    return Err(ProtocolError::connection(
                        ErrorCondition::IllegalState,
                        format!("{} before open", p.name()),
                    ));
                }
                if self.state == ConnectionState::CloseSent {
                    return Ok(());
                }
                let local = self.local_channel(frame.channel)?;
                self.on_session_frame(local, p, frame.payload)
            }
        }
    }

    fn local_channel(&self, remote: u16) -> Result<u16, ProtocolError> {
        self.remote_channels.get(&remote).copied().ok_or_else(|| {
            ProtocolError::connection(
                ErrorCondition::FramingError,
                format!("frame on unopened channel {remote}"),
            )
        })
    }

    /// Whether our close is out (or the connection is over): no frame may follow it (§2.4.3).
    fn close_written(&self) -> bool {
        matches!(
            self.state,
            ConnectionState::CloseSent | ConnectionState::Discarding | ConnectionState::End
        )
    }

    fn write_frame(&mut self, channel: u16, p: &Performative, payload: &[u8]) {
        self.release_disposition();
        self.encode_now(channel, p, payload);
    }

    /// Encodes a frame at once; callers have released any held disposition first so frames
    /// keep their order.
    fn encode_now(&mut self, channel: u16, p: &Performative, payload: &[u8]) {
        if self.close_written() {
            return;
        }
        let max_frame = self.remote_max_frame_size;
        let out = self.out.room(512 + payload.len());
        // Our own performatives always fit: max-frame-size is at least 512 and the only large
        // ones (attach with big terminus maps) are bounded by what the peer sent us.
        if frames::encode_frame(out, FrameType::Amqp, channel, p, payload, max_frame).is_err() {
            let _ = frames::encode_frame(out, FrameType::Amqp, channel, p, payload, u32::MAX);
        }
    }

    // ----- open / close --------------------------------------------------------------------

    fn send_open(&mut self) {
        let open = Open {
            container_id: Str::from(self.cfg.container_id.as_str()),
            hostname: self.cfg.hostname.as_deref().map(Str::from),
            max_frame_size: self.cfg.max_frame_size,
            channel_max: self.cfg.channel_max,
            idle_time_out: Some(
                u32::try_from((self.cfg.dead_peer_timeout / 2).as_millis()).unwrap_or(u32::MAX),
            ),
            offered_capabilities: self.cfg.offered_capabilities.clone(),
            properties: self.cfg.properties.clone(),
            ..Default::default()
        };
        self.write_frame(0, &Performative::Open(open), &[]);
        self.state = match self.state {
            ConnectionState::HdrSent => ConnectionState::OpenPipe,
            ConnectionState::OpenRcvd => ConnectionState::Opened,
            other => other,
        };
    }

    fn on_open(&mut self, open: Open) -> Result<(), ProtocolError> {
        let next = match (self.cfg.role, self.state) {
            (EndpointRole::Server, ConnectionState::HdrExch) => ConnectionState::OpenRcvd,
            (EndpointRole::Client, ConnectionState::OpenSent) => ConnectionState::Opened,
            (_, state) => {
                return Err(ProtocolError::connection(
                    ErrorCondition::IllegalState,
                    format!("open in state {state:?}"),
                ));
            }
        };
        self.remote_max_frame_size = open.max_frame_size.max(MIN_MAX_FRAME_SIZE);
        self.remote_channel_max = open.channel_max;
        if let Some(ms) = open.idle_time_out.filter(|ms| *ms > 0) {
            let peer = Duration::from_millis(u64::from(ms));
            if peer < self.cfg.min_peer_idle_timeout {
                self.state = next;
                return Err(ProtocolError::connection(
                    ErrorCondition::NotAllowed,
                    format!(
                        "idle-time-out {ms} ms is below the minimum of {} ms",
                        self.cfg.min_peer_idle_timeout.as_millis()
                    ),
                ));
            }
            self.remote_idle_timeout = Some(peer);
        }
        self.state = next;
        if self.cfg.role == EndpointRole::Server {
            self.send_open();
        }
        self.handshake_deadline = None;
        self.events.push_back(Event::Opened(Box::new(open)));
        Ok(())
    }

    fn on_close(&mut self, close: Close) {
        // Every link and session is gone with the connection.
        let links: Vec<LinkId> = self.links.keys().copied().collect();
        for link in links {
            self.drop_link(link, false, close.error.clone());
        }
        let channels: Vec<u16> = self.sessions.keys().copied().collect();
        for ch in channels {
            self.drop_session(ch, close.error.clone());
        }
        if self.state != ConnectionState::CloseSent {
            self.state = ConnectionState::CloseRcvd;
            self.write_frame(0, &Performative::Close(Close { error: None }), &[]);
        }
        self.state = ConnectionState::End;
        self.finish(close.error);
    }

    /// Closes the connection (with `error`, e.g. `amqp:connection:forced` on shutdown).
    pub fn close(&mut self, error: Option<Error>) {
        if self.finished
            || matches!(
                self.state,
                ConnectionState::CloseSent | ConnectionState::End
            )
        {
            return;
        }
        if !matches!(
            self.state,
            ConnectionState::Opened
                | ConnectionState::OpenRcvd
                | ConnectionState::OpenSent
                | ConnectionState::HdrExch
                | ConnectionState::OpenPipe
        ) {
            self.finish(error);
            return;
        }
        if self.state == ConnectionState::HdrExch {
            // Open must precede close (§2.4.1).
            self.send_open();
            self.state = ConnectionState::Opened;
        }
        self.write_frame(0, &Performative::Close(Close { error }), &[]);
        self.state = ConnectionState::CloseSent;
        self.discard_deadline = Some(self.last_recv + CLOSE_GRACE);
    }

    /// Ends the connection for good: no more input is read, and `Closed` is reported once.
    fn finish(&mut self, error: Option<Error>) {
        if self.finished {
            return;
        }
        let links: Vec<LinkId> = self.links.keys().copied().collect();
        for link in links {
            self.drop_link(link, false, None);
        }
        let channels: Vec<u16> = self.sessions.keys().copied().collect();
        for ch in channels {
            self.drop_session(ch, None);
        }
        self.finished = true;
        self.state = ConnectionState::End;
        self.events.push_back(Event::Closed { error });
    }

    /// Applies a protocol error at its scope.
    fn apply_error(&mut self, e: ProtocolError) {
        match e.scope {
            Scope::Connection => self.fail(e),
            Scope::Session(ch) => self.fail_session(ch, e),
            Scope::Link(link) => self.fail_link(link, e),
        }
    }

    /// Connection error: close with the condition, then discard until the peer's close.
    fn fail(&mut self, e: ProtocolError) {
        if self.finished {
            return;
        }
        tracing::debug!(condition = %e.condition, description = %e.description, "closing connection");
        let error = e.to_amqp();
        if matches!(
            self.state,
            ConnectionState::Start | ConnectionState::HdrSent
        ) || self.sasl == SaslPhase::AwaitInit
            || self.sasl == SaslPhase::AwaitVerdict
        {
            self.finish(Some(error));
            return;
        }
        if matches!(
            self.state,
            ConnectionState::HdrExch | ConnectionState::HdrRcvd
        ) {
            self.send_open();
        }
        if self.state != ConnectionState::CloseSent {
            self.write_frame(
                0,
                &Performative::Close(Close {
                    error: Some(error.clone()),
                }),
                &[],
            );
        }
        let links: Vec<LinkId> = self.links.keys().copied().collect();
        for link in links {
            self.drop_link(link, false, Some(error.clone()));
        }
        let channels: Vec<u16> = self.sessions.keys().copied().collect();
        for ch in channels {
            self.drop_session(ch, None);
        }
        self.state = ConnectionState::Discarding;
        self.discard_deadline = Some(self.last_recv + CLOSE_GRACE);
        self.events.push_back(Event::Closed { error: Some(error) });
        // The application may close the socket now; further input is only the peer's close.
        self.finished = true;
    }

    // ----- sessions ------------------------------------------------------------------------

    fn free_channel(&self) -> Option<u16> {
        let max = self.cfg.channel_max.min(self.remote_channel_max);
        (0..=max).find(|ch| !self.sessions.contains_key(ch))
    }

    fn on_begin(&mut self, remote: u16, begin: Begin) -> Result<(), ProtocolError> {
        if self.state != ConnectionState::Opened {
            return Err(ProtocolError::connection(
                ErrorCondition::IllegalState,
                "begin before open",
            ));
        }
        if remote > self.cfg.channel_max {
            return Err(ProtocolError::connection(
                ErrorCondition::FramingError,
                format!(
                    "channel {remote} exceeds channel-max {}",
                    self.cfg.channel_max
                ),
            ));
        }
        if self.remote_channels.contains_key(&remote) {
            return Err(ProtocolError::connection(
                ErrorCondition::IllegalState,
                format!("channel {remote} already has a session"),
            ));
        }
        let mut announce = true;
        let local = match begin.remote_channel {
            // The answer to a begin of ours. If we ended the session before it came, it only
            // maps the channel until the peer's end arrives.
            Some(local) => {
                let s = self
                    .sessions
                    .get_mut(&local)
                    .filter(|s| s.remote_channel.is_none())
                    .ok_or_else(|| {
                        ProtocolError::connection(
                            ErrorCondition::IllegalState,
                            format!("begin answers unknown channel {local}"),
                        )
                    })?;
                if s.state == SessionState::BeginSent {
                    s.state = SessionState::Mapped;
                } else {
                    announce = false;
                }
                local
            }
            None => {
                let local = self.free_channel().ok_or_else(|| {
                    ProtocolError::connection(
                        ErrorCondition::ResourceLimitExceeded,
                        "no free channel",
                    )
                })?;
                let mut s = Session::new(self.cfg.session_window);
                s.state = SessionState::Mapped;
                self.sessions.insert(local, s);
                self.send_begin(local, Some(remote));
                local
            }
        };
        self.remote_channels.insert(remote, local);
        if let Some(s) = self.sessions.get_mut(&local) {
            s.remote_channel = Some(remote);
            s.remote_incoming_window = begin.incoming_window;
            s.remote_outgoing_window = begin.outgoing_window;
            s.remote_handle_max = begin.handle_max;
            s.next_incoming_id = begin.next_outgoing_id;
        }
        if announce {
            self.events.push_back(Event::SessionBegun(SessionId(local)));
        }
        Ok(())
    }

    fn send_begin(&mut self, local: u16, remote_channel: Option<u16>) {
        let Some(s) = self.sessions.get(&local) else {
            return;
        };
        let begin = Begin {
            remote_channel,
            next_outgoing_id: s.next_outgoing_id,
            incoming_window: s.incoming_window,
            outgoing_window: u32::MAX >> 1,
            handle_max: self.cfg.handle_max,
            ..Default::default()
        };
        self.write_frame(local, &Performative::Begin(begin), &[]);
    }

    /// Client: begins a session.
    pub fn begin(&mut self) -> Result<SessionId, UsageError> {
        if self.finished || !self.is_amqp_open() && self.state != ConnectionState::OpenPipe {
            return Err(UsageError::Closed);
        }
        // The peer's channel-max too; before its open arrives that is 0, so only one session
        // can be pipelined.
        let max = self.cfg.channel_max.min(self.remote_channel_max);
        let local = (0..=max)
            .find(|ch| !self.sessions.contains_key(ch))
            .ok_or(UsageError::Exhausted)?;
        self.sessions
            .insert(local, Session::new(self.cfg.session_window));
        self.send_begin(local, None);
        Ok(SessionId(local))
    }

    /// Ends a session (with `error`, or cleanly).
    pub fn end(&mut self, session: SessionId, error: Option<Error>) -> Result<(), UsageError> {
        let s = self
            .sessions
            .get_mut(&session.0)
            .ok_or(UsageError::NoSuchSession)?;
        if matches!(s.state, SessionState::EndSent | SessionState::Discarding) {
            return Ok(());
        }
        s.state = if error.is_some() {
            SessionState::Discarding
        } else {
            SessionState::EndSent
        };
        self.write_frame(session.0, &Performative::End(End { error }), &[]);
        let links: Vec<LinkId> = self
            .links
            .values()
            .filter(|l| l.channel == session.0)
            .map(|l| l.id)
            .collect();
        for link in links {
            self.drop_link(link, false, None);
        }
        Ok(())
    }

    fn fail_session(&mut self, channel: u16, e: ProtocolError) {
        tracing::debug!(channel, condition = %e.condition, description = %e.description, "ending session");
        let _ = self.end(SessionId(channel), Some(e.to_amqp()));
    }

    fn drop_session(&mut self, channel: u16, error: Option<Error>) {
        if let Some(s) = self.sessions.remove(&channel) {
            if let Some(remote) = s.remote_channel {
                self.remote_channels.remove(&remote);
            }
            self.events.push_back(Event::SessionEnded {
                session: SessionId(channel),
                error,
            });
        }
    }

    fn on_session_frame(
        &mut self,
        channel: u16,
        p: Performative,
        payload: Bytes,
    ) -> Result<(), ProtocolError> {
        let state = self
            .sessions
            .get(&channel)
            .map(|s| s.state)
            .ok_or_else(|| ProtocolError::connection(ErrorCondition::FramingError, "no session"))?;
        if let Performative::End(end) = p {
            return self.on_end(channel, end);
        }
        if matches!(state, SessionState::Discarding | SessionState::EndSent) {
            return Ok(());
        }
        match p {
            Performative::Attach(a) => self.on_attach(channel, *a),
            Performative::Flow(f) => self.on_flow(channel, f),
            Performative::Transfer(t) => self.on_transfer(channel, t, payload),
            Performative::Disposition(d) => {
                self.on_disposition(channel, d);
                Ok(())
            }
            Performative::Detach(d) => self.on_detach(channel, d),
            _ => Err(ProtocolError::connection(
                ErrorCondition::IllegalState,
                "unexpected performative on a session",
            )),
        }
    }

    fn on_end(&mut self, channel: u16, end: End) -> Result<(), ProtocolError> {
        let state = self.sessions.get(&channel).map(|s| s.state);
        let links: Vec<LinkId> = self
            .links
            .values()
            .filter(|l| l.channel == channel)
            .map(|l| l.id)
            .collect();
        for link in links {
            self.drop_link(link, false, end.error.clone());
        }
        if !matches!(
            state,
            Some(SessionState::EndSent | SessionState::Discarding)
        ) {
            self.write_frame(channel, &Performative::End(End { error: None }), &[]);
        }
        self.drop_session(channel, end.error);
        Ok(())
    }

    // ----- links ---------------------------------------------------------------------------

    fn session_mut(&mut self, channel: u16) -> Result<&mut Session, ProtocolError> {
        self.sessions
            .get_mut(&channel)
            .ok_or_else(|| ProtocolError::connection(ErrorCondition::FramingError, "no session"))
    }

    fn link_by_remote_handle(&self, channel: u16, handle: u32) -> Result<LinkId, ProtocolError> {
        self.sessions
            .get(&channel)
            .and_then(|s| s.remote_handles.get(&handle).copied())
            .ok_or_else(|| {
                ProtocolError::session(
                    channel,
                    ErrorCondition::UnattachedHandle,
                    format!("handle {handle} is not attached"),
                )
            })
    }

    fn on_attach(&mut self, channel: u16, attach: Attach) -> Result<(), ProtocolError> {
        if attach.handle > self.cfg.handle_max {
            return Err(ProtocolError::connection(
                ErrorCondition::FramingError,
                format!(
                    "handle {} exceeds handle-max {}",
                    attach.handle, self.cfg.handle_max
                ),
            ));
        }
        let handle = attach.handle;
        let s = self.session_mut(channel)?;
        if s.remote_handles.contains_key(&handle) {
            return Err(ProtocolError::session(
                channel,
                ErrorCondition::HandleInUse,
                format!("handle {handle} is in use"),
            ));
        }
        // Our answer to an attach of ours: same name, opposite role, and waiting (or detached
        // by us before the answer came: then it only maps the handle for the peer's detach).
        let ours = self
            .links
            .values()
            .find(|l| {
                l.channel == channel
                    && l.name == attach.name
                    && l.role != attach.role
                    && (l.state == LinkState::AttachSent
                        || l.state == LinkState::DetachSent && l.remote_handle.is_none())
            })
            .map(|l| l.id);
        if let Some(id) = ours {
            if self
                .links
                .get(&id)
                .is_some_and(|l| l.state == LinkState::DetachSent)
            {
                if let Some(l) = self.links.get_mut(&id) {
                    l.remote_handle = Some(handle);
                }
                self.session_mut(channel)?.remote_handles.insert(handle, id);
                return Ok(());
            }
            if let Some(l) = self.links.get_mut(&id) {
                l.remote_handle = Some(handle);
                l.state = LinkState::Attached;
                l.remote_max_message_size = attach.max_message_size.filter(|m| *m > 0);
                if l.role == Role::Receiver
                    && let Some(dc) = attach.initial_delivery_count
                {
                    l.delivery_count = dc;
                }
                l.snd_settle_mode = attach.snd_settle_mode;
            }
            self.session_mut(channel)?.remote_handles.insert(handle, id);
            self.events.push_back(Event::Attached {
                link: id,
                attach: Box::new(attach),
            });
            return Ok(());
        }
        if self.links.len() >= self.cfg.max_links {
            return Err(ProtocolError::session(
                channel,
                ErrorCondition::ResourceLimitExceeded,
                "too many links on this connection",
            ));
        }
        let id = LinkId(self.next_link_id);
        self.next_link_id += 1;
        let s = self.session_mut(channel)?;
        let local_handle = s.free_local_handle(s.remote_handle_max).ok_or_else(|| {
            ProtocolError::session(
                channel,
                ErrorCondition::ResourceLimitExceeded,
                "no free handle",
            )
        })?;
        s.remote_handles.insert(handle, id);
        s.local_handles.insert(local_handle, id);
        let role = match attach.role {
            Role::Sender => Role::Receiver,
            Role::Receiver => Role::Sender,
        };
        let link = Link {
            id,
            channel,
            name: attach.name.clone(),
            role,
            state: LinkState::AttachRcvd,
            local_handle,
            remote_handle: Some(handle),
            snd_settle_mode: attach.snd_settle_mode,
            // MUST 8: we always settle first, whatever the client asks for.
            rcv_settle_mode: if role == Role::Receiver {
                ReceiverSettleMode::First
            } else {
                attach.rcv_settle_mode
            },
            remote_max_message_size: attach.max_message_size.filter(|m| *m > 0),
            local_max_message_size: self.cfg.max_message_size,
            delivery_count: attach.initial_delivery_count.unwrap_or_default(),
            link_credit: 0,
            over_credit: 0,
            available: 0,
            drain: false,
            partial: None,
            skipping: false,
            next_tag: 0,
            tag_pool: Bytes::new(),
        };
        self.links.insert(id, link);
        self.events.push_back(Event::AttachRequested {
            link: id,
            attach: Box::new(attach),
        });
        Ok(())
    }

    fn attach_frame(
        &self,
        l: &Link,
        source: Option<ferry_codec::messaging::Source>,
        target: Option<TargetKind>,
        max_message_size: Option<u64>,
        properties: Option<Fields>,
        offered: Vec<Symbol>,
    ) -> Attach {
        Attach {
            name: l.name.clone(),
            handle: l.local_handle,
            role: l.role,
            snd_settle_mode: l.snd_settle_mode,
            rcv_settle_mode: l.rcv_settle_mode,
            source,
            target,
            initial_delivery_count: (l.role == Role::Sender).then_some(l.delivery_count),
            max_message_size,
            offered_capabilities: offered,
            properties,
            ..Default::default()
        }
    }

    /// Server: accepts a peer's attach, answering with `reply`.
    pub fn accept_attach(&mut self, link: LinkId, reply: AttachReply) -> Result<(), UsageError> {
        let l = self.links.get_mut(&link).ok_or(UsageError::NoSuchLink)?;
        if l.state != LinkState::AttachRcvd {
            return Err(UsageError::NotAttached);
        }
        l.state = LinkState::Attached;
        // 0 means no limit (§2.7.3), as it does from the peer: the connection's own applies.
        if let Some(m) = reply.max_message_size.filter(|m| *m > 0) {
            l.local_max_message_size = m;
        }
        let max = Some(l.local_max_message_size);
        let channel = l.channel;
        let l = self.links.get(&link).ok_or(UsageError::NoSuchLink)?;
        let attach = self.attach_frame(
            l,
            reply.source,
            reply.target,
            max,
            reply.properties,
            reply.offered_capabilities,
        );
        self.write_frame(channel, &Performative::Attach(Box::new(attach)), &[]);
        // MUST 7: a sender gets to know its credit state right away.
        self.send_link_flow(link);
        Ok(())
    }

    /// Server: refuses a peer's attach (§2.6.3): an attach reply with a null terminus on our
    /// side, then `detach(closed=true)` with `condition`.
    pub fn refuse_attach(&mut self, link: LinkId, error: Error) -> Result<(), UsageError> {
        let l = self.links.get(&link).ok_or(UsageError::NoSuchLink)?;
        if l.state != LinkState::AttachRcvd {
            return Err(UsageError::NotAttached);
        }
        let channel = l.channel;
        let attach = self.attach_frame(
            l,
            None,
            None,
            Some(l.local_max_message_size),
            None,
            Vec::new(),
        );
        self.write_frame(channel, &Performative::Attach(Box::new(attach)), &[]);
        if let Some(l) = self.links.get_mut(&link) {
            l.state = LinkState::Attached;
        }
        self.detach(link, true, Some(error))
    }

    /// Client: attaches a link on `session`.
    pub fn attach(&mut self, session: SessionId, spec: LinkSpec) -> Result<LinkId, UsageError> {
        if self.close_written() {
            return Err(UsageError::Closed);
        }
        if self.links.len() >= self.cfg.max_links {
            return Err(UsageError::Exhausted);
        }
        let s = self
            .sessions
            .get_mut(&session.0)
            .ok_or(UsageError::NoSuchSession)?;
        let handle = s
            .free_local_handle(s.remote_handle_max.min(self.cfg.handle_max))
            .ok_or(UsageError::Exhausted)?;
        let id = LinkId(self.next_link_id);
        self.next_link_id += 1;
        s.local_handles.insert(handle, id);
        let link = Link {
            id,
            channel: session.0,
            name: spec.name,
            role: spec.role,
            state: LinkState::AttachSent,
            local_handle: handle,
            remote_handle: None,
            snd_settle_mode: spec.snd_settle_mode,
            rcv_settle_mode: spec.rcv_settle_mode,
            remote_max_message_size: None,
            // 0 means no limit (§2.7.3): the connection's own applies.
            local_max_message_size: spec
                .max_message_size
                .filter(|m| *m > 0)
                .unwrap_or(self.cfg.max_message_size),
            delivery_count: SequenceNo(0),
            link_credit: 0,
            over_credit: 0,
            available: 0,
            drain: false,
            partial: None,
            skipping: false,
            next_tag: 0,
            tag_pool: Bytes::new(),
        };
        let attach = self.attach_frame(
            &link,
            spec.source,
            spec.target,
            Some(link.local_max_message_size),
            spec.properties,
            Vec::new(),
        );
        self.links.insert(id, link);
        self.write_frame(session.0, &Performative::Attach(Box::new(attach)), &[]);
        Ok(id)
    }

    /// Detaches (or, with `closed`, closes) a link.
    pub fn detach(
        &mut self,
        link: LinkId,
        closed: bool,
        error: Option<Error>,
    ) -> Result<(), UsageError> {
        let l = self.links.get(&link).ok_or(UsageError::NoSuchLink)?;
        if l.state == LinkState::DetachSent {
            return Ok(());
        }
        self.attach_before_detach(link);
        let l = self.links.get_mut(&link).ok_or(UsageError::NoSuchLink)?;
        l.state = LinkState::DetachSent;
        let (channel, handle) = (l.channel, l.local_handle);
        self.write_frame(
            channel,
            &Performative::Detach(Detach {
                handle,
                closed,
                error,
            }),
            &[],
        );
        self.forget_deliveries(link, channel);
        Ok(())
    }

    /// A link the peer attached and the application never answered gets our attach (with a
    /// null terminus, as a refusal) before any detach: §2.6.3 pairs every detach with an attach.
    fn attach_before_detach(&mut self, link: LinkId) {
        let Some(l) = self
            .links
            .get(&link)
            .filter(|l| l.state == LinkState::AttachRcvd)
        else {
            return;
        };
        let attach = self.attach_frame(
            l,
            None,
            None,
            Some(l.local_max_message_size),
            None,
            Vec::new(),
        );
        let channel = l.channel;
        self.write_frame(channel, &Performative::Attach(Box::new(attach)), &[]);
    }

    fn fail_link(&mut self, link: LinkId, e: ProtocolError) {
        tracing::debug!(condition = %e.condition, description = %e.description, "detaching link");
        let error = e.to_amqp();
        if self.detach(link, true, Some(error.clone())).is_ok() {
            self.events.push_back(Event::Detached {
                link,
                closed: true,
                error: Some(error),
            });
        }
    }

    fn on_detach(&mut self, channel: u16, d: Detach) -> Result<(), ProtocolError> {
        let id = self.link_by_remote_handle(channel, d.handle)?;
        let ours_sent = self
            .links
            .get(&id)
            .is_some_and(|l| l.state == LinkState::DetachSent);
        if !ours_sent && let Some(l) = self.links.get(&id) {
            let (ch, handle) = (l.channel, l.local_handle);
            self.attach_before_detach(id);
            self.write_frame(
                ch,
                &Performative::Detach(Detach {
                    handle,
                    closed: d.closed,
                    error: None,
                }),
                &[],
            );
        }
        self.remove_link(id);
        // A detach we started (or a refused attach) needs no report: the application knows.
        if !ours_sent {
            self.events.push_back(Event::Detached {
                link: id,
                closed: d.closed,
                error: d.error,
            });
        }
        Ok(())
    }

    /// Forgets a link's unsettled and pending deliveries (they get no more dispositions).
    fn forget_deliveries(&mut self, link: LinkId, channel: u16) {
        if let Some(s) = self.sessions.get_mut(&channel) {
            s.unsettled_out.retain(|_, (l, _)| *l != link);
            s.unsettled_in.retain(|_, l| *l != link);
            s.pending.retain(|p| p.link != link);
        }
    }

    fn remove_link(&mut self, link: LinkId) {
        if let Some(l) = self.links.remove(&link)
            && let Some(s) = self.sessions.get_mut(&l.channel)
        {
            if let Some(h) = l.remote_handle {
                s.remote_handles.remove(&h);
            }
            s.local_handles.remove(&l.local_handle);
            s.unsettled_out.retain(|_, (id, _)| *id != link);
            s.unsettled_in.retain(|_, id| *id != link);
            s.pending.retain(|p| p.link != link);
        }
    }

    /// Removes a link without any frame, reporting it gone (session or connection ended).
    fn drop_link(&mut self, link: LinkId, closed: bool, error: Option<Error>) {
        if self.links.contains_key(&link) {
            self.remove_link(link);
            self.events.push_back(Event::Detached {
                link,
                closed,
                error,
            });
        }
    }

    // ----- flow ----------------------------------------------------------------------------

    fn session_flow(s: &Session) -> Flow {
        Flow {
            next_incoming_id: s.remote_channel.map(|_| s.next_incoming_id),
            incoming_window: s.incoming_window,
            next_outgoing_id: s.next_outgoing_id,
            outgoing_window: u32::MAX >> 1,
            ..Default::default()
        }
    }

    /// Sends a flow carrying the link's state (§2.6.7: both delivery-count and link-credit).
    fn send_link_flow(&mut self, link: LinkId) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let Some(s) = self.sessions.get(&l.channel) else {
            return;
        };
        let mut flow = Self::session_flow(s);
        flow.handle = Some(l.local_handle);
        // A sender's count covers deliveries still queued for window, which the receiver has
        // not seen and will count when they come: a flow that overtakes them reports the count
        // (and credit) as of the transfers written so far.
        let queued = if l.role == Role::Sender {
            s.pending
                .iter()
                .filter(|p| p.link == link && p.offset == 0)
                .count() as u32
        } else {
            0
        };
        flow.delivery_count = Some(SequenceNo(l.delivery_count.0.wrapping_sub(queued)));
        flow.link_credit = Some(l.link_credit.saturating_add(queued));
        flow.available = (l.role == Role::Sender).then_some(l.available);
        flow.drain = l.drain;
        let channel = l.channel;
        self.write_frame(channel, &Performative::Flow(flow), &[]);
    }

    /// Receiving link: sets the credit we grant (absolute), and tells the peer. With `drain`,
    /// the peer is asked to use the credit up or give it back (§2.6.7).
    pub fn grant_credit(
        &mut self,
        link: LinkId,
        credit: u32,
        drain: bool,
    ) -> Result<(), UsageError> {
        let l = self.links.get_mut(&link).ok_or(UsageError::NoSuchLink)?;
        if l.role != Role::Receiver {
            return Err(UsageError::WrongRole);
        }
        if l.state != LinkState::Attached {
            return Err(UsageError::NotAttached);
        }
        l.link_credit = credit;
        l.over_credit = 0;
        l.drain = drain;
        self.send_link_flow(link);
        if let Some(l) = self.links.get_mut(&link) {
            l.drain = false;
        }
        Ok(())
    }

    /// Current credit of a link (granted to us, or by us).
    pub fn credit(&self, link: LinkId) -> Option<u32> {
        self.links.get(&link).map(|l| l.link_credit)
    }

    /// Sending link: reports what we have available (sent with the next flow).
    pub fn set_available(&mut self, link: LinkId, available: u32) {
        if let Some(l) = self.links.get_mut(&link) {
            l.available = available;
        }
    }

    /// Sending link: nothing more is available. If the peer asked to drain, the unused credit
    /// is consumed (delivery-count advances) and a flow with credit 0 answers (§2.6.7).
    pub fn drained(&mut self, link: LinkId) -> Result<(), UsageError> {
        let l = self.links.get_mut(&link).ok_or(UsageError::NoSuchLink)?;
        if l.role != Role::Sender {
            return Err(UsageError::WrongRole);
        }
        if !l.drain {
            return Ok(());
        }
        l.delivery_count = l.delivery_count.wrapping_add(l.link_credit);
        l.link_credit = 0;
        l.available = 0;
        self.send_link_flow(link);
        if let Some(l) = self.links.get_mut(&link) {
            l.drain = false;
        }
        Ok(())
    }

    fn on_flow(&mut self, channel: u16, f: Flow) -> Result<(), ProtocolError> {
        let s = self.session_mut(channel)?;
        // §2.5.6: the peer's incoming window, counted from its view of our next-outgoing-id.
        let base = f.next_incoming_id.unwrap_or(SequenceNo(0));
        let limit = base.wrapping_add(f.incoming_window);
        s.remote_incoming_window = limit
            .distance_from(s.next_outgoing_id)
            .min(f.incoming_window);
        s.remote_outgoing_window = f.outgoing_window;
        let Some(handle) = f.handle else {
            if f.echo {
                let flow = Self::session_flow(self.sessions.get(&channel).ok_or_else(|| {
                    ProtocolError::connection(ErrorCondition::FramingError, "no session")
                })?);
                self.write_frame(channel, &Performative::Flow(flow), &[]);
            }
            self.flush_session(channel);
            return Ok(());
        };
        let link = self.link_by_remote_handle(channel, handle)?;
        let Some(l) = self.links.get_mut(&link) else {
            return Ok(());
        };
        if l.state == LinkState::DetachSent {
            // In flight before our detach arrived; the handle is ours no more, so no echo.
            self.flush_session(channel);
            return Ok(());
        }
        let mut echo = f.echo;
        match l.role {
            Role::Sender => {
                // §2.6.7: credit = delivery-count(rcv) + link-credit(rcv) - delivery-count(snd).
                let credit = match (f.delivery_count, f.link_credit) {
                    // Never negative: transfers in flight may have used the credit up (the
                    // receiver's delivery-count is behind ours), or more than it.
                    (Some(dc), Some(lc)) => {
                        let credit = dc.wrapping_add(lc).distance_from(l.delivery_count);
                        if credit <= lc { credit } else { 0 }
                    }
                    (None, Some(lc)) => lc,
                    (_, None) => l.link_credit,
                };
                l.link_credit = credit;
                l.drain = f.drain;
                self.events.push_back(Event::Credit {
                    link,
                    credit,
                    drain: f.drain,
                });
            }
            Role::Receiver => {
                if let Some(dc) = f.delivery_count {
                    // The sender's count moves ahead of ours only by transfers (or its own
                    // drain); our credit shrinks by the difference. It is the sender's count
                    // even when that is more than our credit now (we lowered the credit while
                    // its drain was in flight): keeping ours would leave the two disagreeing.
                    let advanced = dc.distance_from(l.delivery_count);
                    if advanced < 1 << 31 {
                        l.link_credit = l.link_credit.saturating_sub(advanced);
                        l.delivery_count = dc;
                    }
                }
                if f.drain {
                    echo = true;
                }
                self.events.push_back(Event::SenderState {
                    link,
                    available: f.available,
                });
            }
        }
        if echo {
            self.send_link_flow(link);
        }
        self.flush_session(channel);
        Ok(())
    }

    // ----- sending -------------------------------------------------------------------------

    /// Sending link: sends `message` as one delivery, using one credit. Returns the number
    /// [`Event::Disposition`] and `settle_outgoing` name it by: its delivery-id, unless
    /// deliveries queued before it were dropped unsent (see `next_wire_delivery_id`). `tag`
    /// defaults to a fresh 8-byte tag unique on the link.
    pub fn send(
        &mut self,
        link: LinkId,
        message: &Message,
        settled: bool,
        tag: Option<DeliveryTag>,
    ) -> Result<SequenceNo, UsageError> {
        if self.finished {
            return Err(UsageError::Closed);
        }
        let l = self.links.get_mut(&link).ok_or(UsageError::NoSuchLink)?;
        if l.role != Role::Sender {
            return Err(UsageError::WrongRole);
        }
        if l.state != LinkState::Attached {
            return Err(UsageError::NotAttached);
        }
        if l.link_credit == 0 {
            return Err(UsageError::NoCredit);
        }
        if l.remote_max_message_size
            .is_some_and(|m| message.len() as u64 > m)
        {
            return Err(UsageError::MessageTooLarge);
        }
        let settled = match l.snd_settle_mode {
            SenderSettleMode::Settled => true,
            SenderSettleMode::Unsettled => false,
            SenderSettleMode::Mixed => settled,
        };
        l.link_credit -= 1;
        l.delivery_count = l.delivery_count.next();
        l.available = l.available.saturating_sub(1);
        let tag = tag.unwrap_or_else(|| l.next_delivery_tag());
        let (channel, handle) = (l.channel, l.local_handle);
        let s = self
            .sessions
            .get_mut(&channel)
            .ok_or(UsageError::NoSuchSession)?;
        let delivery_id = s.next_delivery_id;
        s.next_delivery_id = delivery_id.next();
        s.pending.push_back(PendingTransfer {
            link,
            handle,
            delivery_id,
            tag,
            settled,
            message: message.clone(),
            offset: 0,
        });
        self.flush_session(channel);
        Ok(delivery_id)
    }

    /// Writes pending transfer frames while the peer's incoming window allows (§2.5.6).
    fn flush_session(&mut self, channel: u16) {
        self.release_disposition();
        let max_frame = self.remote_max_frame_size;
        if self.close_written() {
            return;
        }
        let Some(s) = self.sessions.get_mut(&channel) else {
            return;
        };
        // Frame only what the socket can take soon: pending transfers hold shared message
        // bytes, the output buffer holds copies. The owner's next `take_output` continues.
        while s.remote_incoming_window > 0 && self.out.len() < OUTPUT_HIGH_WATER {
            let Some(p) = s.pending.front_mut() else {
                break;
            };
            let first = p.offset == 0;
            let wire_id = s.next_wire_delivery_id;
            if first {
                s.next_wire_delivery_id = wire_id.next();
                if !p.settled {
                    s.unsettled_out.insert(wire_id.0, (p.link, p.delivery_id));
                }
            }
            let mut t = Transfer {
                handle: p.handle,
                delivery_id: first.then_some(wire_id),
                delivery_tag: first.then(|| p.tag.clone()),
                message_format: first.then_some(0),
                settled: Some(p.settled),
                more: false,
                ..Default::default()
            };
            let room = frames::max_transfer_payload(&t, max_frame).unwrap_or(1);
            let remaining = p.message.len() - p.offset;
            let n = remaining.min(room);
            t.more = n < remaining;
            let chunk = p.message.contiguous(ferry_codec::messaging::Span {
                start: p.offset,
                end: p.offset + n,
            });
            p.offset += n;
            let done = !t.more;
            let _ = frames::encode_frame(
                self.out.room(128 + n),
                FrameType::Amqp,
                channel,
                &Performative::Transfer(t),
                &chunk,
                u32::MAX,
            );
            s.next_outgoing_id = s.next_outgoing_id.next();
            s.remote_incoming_window -= 1;
            if done {
                s.pending.pop_front();
            }
        }
    }

    /// Settles (or updates) an outgoing delivery from our side, e.g. to give up on it.
    pub fn settle_outgoing(
        &mut self,
        link: LinkId,
        delivery_id: SequenceNo,
        state: Option<DeliveryState>,
    ) -> Result<(), UsageError> {
        let channel = self.links.get(&link).ok_or(UsageError::NoSuchLink)?.channel;
        let s = self
            .sessions
            .get_mut(&channel)
            .ok_or(UsageError::NoSuchSession)?;
        // Not framed yet: the peer has not heard of the delivery, so no disposition may name
        // it; it goes out settled instead.
        if let Some(p) = s
            .pending
            .iter_mut()
            .find(|p| p.link == link && p.delivery_id == delivery_id && p.offset == 0)
        {
            p.settled = true;
            return Ok(());
        }
        let Some(wire_id) = s
            .unsettled_out
            .iter()
            .find(|(_, v)| **v == (link, delivery_id))
            .map(|(id, _)| *id)
        else {
            return Ok(());
        };
        s.unsettled_out.remove(&wire_id);
        self.write_disposition(channel, Role::Sender, SequenceNo(wire_id), true, state);
        Ok(())
    }

    // ----- receiving -----------------------------------------------------------------------

    fn on_transfer(
        &mut self,
        channel: u16,
        t: Transfer,
        payload: Bytes,
    ) -> Result<(), ProtocolError> {
        let link = self.link_by_remote_handle(channel, t.handle)?;
        let s = self.session_mut(channel)?;
        if s.incoming_window == 0 {
            return Err(ProtocolError::session(
                channel,
                ErrorCondition::WindowViolation,
                "transfer beyond the incoming window",
            ));
        }
        s.incoming_window -= 1;
        s.next_incoming_id = s.next_incoming_id.next();
        let over_allowance = self.cfg.over_credit_allowance;
        let Some(l) = self.links.get_mut(&link) else {
            return Ok(());
        };
        if l.state == LinkState::DetachSent {
            return Ok(()); // in flight before our detach arrived
        }
        if l.role != Role::Receiver {
            return Err(ProtocolError::session(
                channel,
                ErrorCondition::ErrantLink,
                "transfer on a link where the peer is the receiver",
            ));
        }
        if l.partial.is_none() && !l.skipping {
            // The first frame of a delivery: it consumes credit and the delivery-id.
            let Some(delivery_id) = t.delivery_id else {
                return Err(ProtocolError::link(
                    link,
                    ErrorCondition::InvalidField,
                    "first transfer of a delivery without delivery-id",
                ));
            };
            if l.link_credit > 0 {
                l.link_credit -= 1;
            } else {
                // Some clients (pyamqp) assume credit they were never granted. Up to the
                // allowance that is tolerated; past it the owner stops reading the socket
                // (see `over_credit_exceeded`), which bounds the excess by one read. Twice the
                // allowance means the owner is not throttling: a hard error.
                l.over_credit += 1;
                if l.over_credit > over_allowance.saturating_mul(2) {
                    return Err(ProtocolError::link(
                        link,
                        ErrorCondition::TransferLimitExceeded,
                        "transfers beyond granted credit",
                    ));
                }
            }
            l.delivery_count = l.delivery_count.next();
            let settled = t.settled.unwrap_or(false);
            if !settled {
                let s = self.sessions.get_mut(&channel).ok_or_else(|| {
                    ProtocolError::connection(ErrorCondition::FramingError, "no session")
                })?;
                s.unsettled_in.insert(delivery_id.0, link);
                s.expected_delivery_id = Some(delivery_id.next());
            }
            let Some(l) = self.links.get_mut(&link) else {
                return Ok(());
            };
            l.partial = Some(Partial {
                delivery_id,
                tag: t.delivery_tag.clone().unwrap_or_default(),
                message_format: t.message_format.unwrap_or(0),
                settled,
                state: t.state.clone(),
                first: Bytes::new(),
                segments: Vec::new(),
                size: 0,
            });
        }
        let Some(l) = self.links.get_mut(&link) else {
            return Ok(());
        };
        if l.skipping {
            if !t.more {
                l.skipping = false;
            }
            return Ok(());
        }
        let Some(p) = l.partial.as_mut() else {
            return Ok(());
        };
        if let Some(id) = t.delivery_id
            && id != p.delivery_id
        {
            return Err(ProtocolError::link(
                link,
                ErrorCondition::InvalidField,
                "delivery-id changed within a delivery",
            ));
        }
        if t.settled == Some(true) {
            p.settled = true; // once true, stays true
        }
        if t.aborted {
            // §2.6.14: the payload is dropped, the delivery is settled, the credit stays used.
            let p = l.partial.take();
            if let (Some(p), Some(s)) = (p, self.sessions.get_mut(&channel)) {
                s.unsettled_in.remove(&p.delivery_id.0);
            }
            return Ok(());
        }
        p.size += payload.len() as u64;
        if p.size > l.local_max_message_size {
            let limit = l.local_max_message_size;
            return Err(ProtocolError::link(
                link,
                ErrorCondition::MessageSizeExceeded,
                format!("message exceeds max-message-size {limit}"),
            ));
        }
        if p.segments.len() >= 1 << 20 {
            return Err(ProtocolError::link(
                link,
                ErrorCondition::ResourceLimitExceeded,
                "too many frames in one delivery",
            ));
        }
        if p.first.is_empty() {
            p.first = payload;
        } else if !payload.is_empty() {
            p.segments.push(payload);
        }
        if t.more {
            return Ok(());
        }
        let Some(p) = l.partial.take() else {
            return Ok(());
        };
        let decoded = if p.segments.is_empty() {
            Message::decode_with(p.first, self.cfg.decode_limits)
        } else {
            let mut all = Vec::with_capacity(p.segments.len() + 1);
            all.push(p.first);
            all.extend(p.segments);
            Message::from_segments_with(all, self.cfg.decode_limits)
        };
        let message = match decoded {
            Ok(m) => m,
            Err(e) => {
                // A malformed message fails alone: reject it, keep the link.
                if !p.settled {
                    let _ = self.settle_incoming(
                        link,
                        p.delivery_id,
                        DeliveryState::Rejected(Rejected {
                            error: Some(Error::new(ErrorCondition::DecodeError, e.to_string())),
                        }),
                    );
                }
                return Ok(());
            }
        };
        if p.settled {
            if let Some(s) = self.sessions.get_mut(&channel) {
                s.unsettled_in.remove(&p.delivery_id.0);
            }
        }
        self.events
            .push_back(Event::Delivery(Box::new(IncomingDelivery {
                link,
                delivery_id: p.delivery_id,
                tag: p.tag,
                message_format: p.message_format,
                settled: p.settled,
                state: p.state,
                message,
            })));
        Ok(())
    }

    /// Writes a disposition for one delivery. It is held back while the next ones extend it
    /// (same session, role, settled flag and state, consecutive ids), and is encoded before
    /// any other frame or when the owner takes the output.
    fn write_disposition(
        &mut self,
        channel: u16,
        role: Role,
        id: SequenceNo,
        settled: bool,
        state: Option<DeliveryState>,
    ) {
        if let Some((ch, held)) = &mut self.held_disposition {
            let last = held.last.unwrap_or(held.first);
            if *ch == channel
                && held.role == role
                && held.settled == settled
                && last.next() == id
                && held.state == state
            {
                held.last = Some(id);
                return;
            }
        }
        self.release_disposition();
        let d = Disposition {
            role,
            first: id,
            last: None,
            settled,
            state,
            batchable: false,
        };
        self.held_disposition = Some((channel, d));
    }

    /// Encodes the held disposition, if any.
    fn release_disposition(&mut self) {
        if let Some((channel, d)) = self.held_disposition.take() {
            self.encode_now(channel, &Performative::Disposition(d), &[]);
        }
    }

    /// Receiving link: settles an incoming delivery with its outcome.
    pub fn settle_incoming(
        &mut self,
        link: LinkId,
        delivery_id: SequenceNo,
        state: DeliveryState,
    ) -> Result<(), UsageError> {
        self.dispose_incoming(link, delivery_id, state, true)
    }

    /// Receiving link: reports a delivery's outcome without settling it, as a client under
    /// rcv-settle-mode second does; the sender settles, then so do we.
    pub fn update_incoming(
        &mut self,
        link: LinkId,
        delivery_id: SequenceNo,
        state: DeliveryState,
    ) -> Result<(), UsageError> {
        self.dispose_incoming(link, delivery_id, state, false)
    }

    /// Writes our disposition for an unsettled incoming delivery; settling forgets it. A
    /// delivery already settled (pre-settled, aborted, or settled twice) is ignored.
    fn dispose_incoming(
        &mut self,
        link: LinkId,
        delivery_id: SequenceNo,
        state: DeliveryState,
        settle: bool,
    ) -> Result<(), UsageError> {
        let channel = self.links.get(&link).ok_or(UsageError::NoSuchLink)?.channel;
        let s = self
            .sessions
            .get_mut(&channel)
            .ok_or(UsageError::NoSuchSession)?;
        let known = if settle {
            s.unsettled_in.remove(&delivery_id.0).is_some()
        } else {
            s.unsettled_in.contains_key(&delivery_id.0)
        };
        if known {
            self.write_disposition(channel, Role::Receiver, delivery_id, settle, Some(state));
        }
        Ok(())
    }

    fn on_disposition(&mut self, channel: u16, d: Disposition) {
        let last = d.last.unwrap_or(d.first);
        let Some(s) = self.sessions.get_mut(&channel) else {
            return;
        };
        match d.role {
            // The peer is the receiver: about deliveries we sent.
            Role::Receiver => {
                let ids = Session::ids_in_range(&s.unsettled_out, d.first, last);
                let mut echo = Vec::new();
                for (id, (link, number)) in ids {
                    let second = self
                        .links
                        .get(&link)
                        .is_some_and(|l| l.rcv_settle_mode == ReceiverSettleMode::Second);
                    let outcome = d.state.as_ref().is_some_and(DeliveryState::is_outcome);
                    // MUST 9: under rcv-settle-mode second, an outcome is applied and echoed
                    // settled; the delivery is settled from then on.
                    let settled = d.settled || (second && outcome);
                    if settled {
                        s.unsettled_out.remove(&id);
                    }
                    if second && outcome && !d.settled {
                        echo.push(id);
                    }
                    self.events.push_back(Event::Disposition {
                        link,
                        delivery_id: number,
                        state: d.state.clone(),
                        settled,
                    });
                }
                for id in echo {
                    self.write_disposition(
                        channel,
                        Role::Sender,
                        SequenceNo(id),
                        true,
                        d.state.clone(),
                    );
                }
            }
            // The peer is the sender: it settled deliveries we received (a broker giving up
            // on one, say); reported so the application stops waiting to settle them.
            Role::Sender => {
                if d.settled {
                    for (id, link) in Session::ids_in_range(&s.unsettled_in, d.first, last) {
                        s.unsettled_in.remove(&id);
                        // One still arriving was never reported; its settlement is not either.
                        let partial = self
                            .links
                            .get(&link)
                            .and_then(|l| l.partial.as_ref())
                            .is_some_and(|p| p.delivery_id.0 == id);
                        if partial {
                            continue;
                        }
                        self.events.push_back(Event::Disposition {
                            link,
                            delivery_id: SequenceNo(id),
                            state: d.state.clone(),
                            settled: true,
                        });
                    }
                }
            }
        }
    }
}
