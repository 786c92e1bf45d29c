//! A raw AMQP peer over a real socket: protocol headers and frames are built with
//! `ferry_codec` and written as bytes, the broker's frames are read back, decoded and logged.
//! Nothing here is clever about the protocol, so tests state every frame they rely on. Every
//! wait is bounded ([`WAIT`] unless a test says otherwise).

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry::broker::BrokerConfig;
use ferry::proto::ConnectionConfig;
use ferry::server::{ListenerSpec, Running, ServerSpec};
use ferry::transport::Authenticator;
use ferry_codec::definitions::{
    DeliveryTag, ErrorCondition, ReceiverSettleMode, Role, SenderSettleMode, SequenceNo,
};
use ferry_codec::delivery_state::DeliveryState;
use ferry_codec::frames::{
    AmqpFrame, FrameDecoder, FrameType, ProtocolHeader, RawFrame, encode_frame,
    max_transfer_payload,
};
use ferry_codec::messaging::{
    Data, Header, Message, MessageId, Properties, Section, Source, Target, TargetKind,
};
use ferry_codec::performatives::{
    Attach, Begin, Close, Detach, Disposition, End, Flow, Open, Performative, Transfer,
};
use ferry_codec::sasl::{SaslCode, SaslFrameBody, SaslInit};
use ferry_codec::types::{Str, Symbol, Value};
use ferry_codec::{DecodeLimits, Decoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long any single wait for the broker may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// Accepts exactly one PLAIN user.
#[derive(Debug)]
pub struct UserPass {
    pub user: &'static str,
    pub pass: &'static str,
}

impl Authenticator for UserPass {
    fn verify_plain(&self, initial_response: &[u8]) -> bool {
        let mut parts = initial_response.split(|b| *b == 0);
        let _authzid = parts.next();
        let authcid = parts.next();
        let password = parts.next();
        parts.next().is_none()
            && authcid == Some(self.user.as_bytes())
            && password == Some(self.pass.as_bytes())
    }
}

/// A broker with one listener per engine config, all on free loopback ports.
pub async fn start_server(
    broker: BrokerConfig,
    engines: Vec<ConnectionConfig>,
    auth: Arc<dyn Authenticator>,
) -> Running {
    let spec = ServerSpec {
        listeners: engines
            .into_iter()
            .map(|engine| ListenerSpec {
                address: "127.0.0.1:0".parse().unwrap(),
                max_connections: 100,
                engine,
            })
            .collect(),
        broker,
        shutdown_grace: Duration::from_secs(2),
        store: None,
    };
    ferry::server::start(spec, auth).await.unwrap()
}

/// The engine config the daemon derives from its built-in default configuration, for a
/// listener on loopback.
pub fn daemon_engine() -> ConnectionConfig {
    let cfg = ferry::config::Config::load(None).expect("the built-in config loads");
    let mut listener = cfg.listeners.first().cloned().unwrap_or_default();
    listener.address = "127.0.0.1:0".parse().unwrap();
    cfg.connection_config(&listener)
}

/// One frame as the broker sent it.
#[derive(Debug, Clone)]
pub struct Frame {
    pub frame_type: FrameType,
    pub channel: u16,
    /// SIZE from the frame header.
    pub size: usize,
    /// The frame body (after the extended header).
    pub body: Bytes,
    /// AMQP frames: the performative (`None`: heartbeat).
    pub performative: Option<Performative>,
    /// SASL frames: the body.
    pub sasl: Option<SaslFrameBody>,
    /// Transfer payload.
    pub payload: Bytes,
}

impl Frame {
    pub fn name(&self) -> &'static str {
        match (&self.performative, &self.sasl) {
            (Some(p), _) => p.name(),
            (None, Some(_)) => "sasl",
            (None, None) => "heartbeat",
        }
    }

    /// The link handle the frame is about, if any.
    pub fn handle(&self) -> Option<u32> {
        match self.performative.as_ref()? {
            Performative::Attach(a) => Some(a.handle),
            Performative::Flow(f) => f.handle,
            Performative::Transfer(t) => Some(t.handle),
            Performative::Detach(d) => Some(d.handle),
            _ => None,
        }
    }
}

/// What a bounded read found.
#[derive(Debug)]
pub enum Next {
    Frame(Box<Frame>),
    Eof,
    Timeout,
}

/// Extracts one performative type from a [`Performative`].
pub trait Expect: Sized + std::fmt::Debug {
    const NAME: &'static str;
    fn take(p: Performative) -> Option<Self>;
}

macro_rules! expect_impl {
    ($($t:ident => $name:literal, $pat:pat => $out:expr;)*) => {$(
        impl Expect for $t {
            const NAME: &'static str = $name;
            fn take(p: Performative) -> Option<Self> {
                match p {
                    $pat => Some($out),
                    _ => None,
                }
            }
        }
    )*};
}

expect_impl! {
    Open => "open", Performative::Open(x) => x;
    Begin => "begin", Performative::Begin(x) => x;
    Attach => "attach", Performative::Attach(x) => *x;
    Flow => "flow", Performative::Flow(x) => x;
    Transfer => "transfer", Performative::Transfer(x) => x;
    Disposition => "disposition", Performative::Disposition(x) => x;
    Detach => "detach", Performative::Detach(x) => x;
    End => "end", Performative::End(x) => x;
    Close => "close", Performative::Close(x) => x;
}

/// A session as the raw peer tracks it, by our channel.
#[derive(Debug, Clone)]
pub struct RawSession {
    /// The broker's channel for it.
    pub remote: u16,
    /// The broker's begin.
    pub begin: Begin,
    /// Our next transfer-id.
    pub next_outgoing_id: u32,
    /// Our next delivery-id.
    pub next_delivery_id: u32,
    /// Transfer frames received from the broker.
    pub transfers_in: u32,
}

/// A complete message received on a link.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub handle: u32,
    pub delivery_id: u32,
    pub settled: bool,
    pub payload: Bytes,
    /// SIZE of each transfer frame it came in.
    pub frame_sizes: Vec<usize>,
}

/// A transfer frame read but not yet taken: the performative, its payload, its SIZE.
type PendingTransfer = (Transfer, Bytes, usize);

/// A raw AMQP peer.
#[derive(Debug)]
pub struct RawPeer {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
    out: BytesMut,
    /// Every frame received, in order.
    pub log: Vec<Frame>,
    /// The broker's open, once received.
    pub broker_open: Option<Open>,
    /// Our sessions, by our channel.
    pub sessions: HashMap<u16, RawSession>,
    /// Our max-frame-size as advertised: frames above it are flagged.
    pub max_frame_size: usize,
    /// Transfer frames not yet taken by [`RawPeer::recv_delivery`], by (broker channel,
    /// handle), so that frames skipped while waiting for something else are not lost.
    transfers: HashMap<(u16, u32), VecDeque<PendingTransfer>>,
}

impl RawPeer {
    /// A connected socket; nothing written yet.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect timed out")
            .expect("connect");
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: BytesMut::with_capacity(64 * 1024),
            decoder: FrameDecoder::new(u32::MAX),
            out: BytesMut::new(),
            log: Vec::new(),
            broker_open: None,
            sessions: HashMap::new(),
            max_frame_size: usize::MAX,
            transfers: HashMap::new(),
        }
    }

    /// Plain AMQP header exchange and open, with our max-frame-size 65536.
    pub async fn open(addr: SocketAddr) -> Self {
        Self::open_with(addr, open_frame("raw-peer", 65_536)).await
    }

    /// Plain AMQP header exchange, then `open` is sent and the broker's open awaited.
    pub async fn open_with(addr: SocketAddr, open: Open) -> Self {
        let mut p = Self::connect(addr).await;
        p.write_raw(&ProtocolHeader::AMQP.to_bytes()).await;
        let h = p.read_header().await;
        assert_eq!(
            h,
            ProtocolHeader::AMQP.to_bytes(),
            "broker's protocol header"
        );
        p.send_open(open).await;
        p
    }

    /// Sends our open and awaits the broker's.
    pub async fn send_open(&mut self, open: Open) -> Open {
        self.max_frame_size = open.max_frame_size as usize;
        self.send(0, Performative::Open(open)).await;
        let theirs: Open = self.expect().await;
        self.broker_open = Some(theirs.clone());
        theirs
    }

    // ----- writing --------------------------------------------------------------------------

    /// Writes bytes as they are.
    pub async fn write_raw(&mut self, bytes: &[u8]) {
        // The broker may have closed already; a failed write shows up as EOF when reading.
        let _ = tokio::time::timeout(WAIT, self.stream.write_all(bytes)).await;
    }

    /// Queues a frame (written by [`RawPeer::flush`]).
    pub fn push(&mut self, channel: u16, p: Performative) {
        self.push_payload(channel, p, &[]);
    }

    /// Queues a frame with a payload.
    pub fn push_payload(&mut self, channel: u16, p: Performative, payload: &[u8]) {
        if let Performative::Transfer(_) = p
            && let Some(s) = self.sessions.get_mut(&channel)
        {
            s.next_outgoing_id = s.next_outgoing_id.wrapping_add(1);
        }
        encode_frame(
            &mut self.out,
            FrameType::Amqp,
            channel,
            &p,
            payload,
            u32::MAX,
        )
        .unwrap();
    }

    /// Writes everything queued in one write.
    pub async fn flush(&mut self) {
        let out = self.out.split().freeze();
        self.write_raw(&out).await;
    }

    /// Writes one frame now.
    pub async fn send(&mut self, channel: u16, p: Performative) {
        self.push(channel, p);
        self.flush().await;
    }

    /// Writes one SASL frame now.
    pub async fn send_sasl(&mut self, body: SaslFrameBody) {
        let mut out = BytesMut::new();
        encode_frame(&mut out, FrameType::Sasl, 0, &body, &[], u32::MAX).unwrap();
        self.write_raw(&out).await;
    }

    // ----- reading --------------------------------------------------------------------------

    /// Reads more bytes before `deadline`: `Some(true)` got bytes, `Some(false)` EOF, `None`
    /// timed out.
    async fn fill(&mut self, deadline: Instant) -> Option<bool> {
        match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => None,
            Ok(Ok(0)) | Ok(Err(_)) => Some(false),
            Ok(Ok(_)) => Some(true),
        }
    }

    /// Reads the broker's 8-byte protocol header.
    pub async fn read_header(&mut self) -> [u8; 8] {
        let deadline = Instant::now() + WAIT;
        while self.buf.len() < 8 {
            match self.fill(deadline).await {
                Some(true) => {}
                Some(false) => panic!("EOF before the protocol header ({:?})", &self.buf[..]),
                None => panic!("no protocol header within {WAIT:?}"),
            }
        }
        let h = self.buf.split_to(8);
        h[..].try_into().unwrap()
    }

    /// Reads whatever arrives until EOF (bounded), returning the raw bytes.
    pub async fn read_to_eof(&mut self, wait: Duration) -> Bytes {
        let deadline = Instant::now() + wait;
        loop {
            match self.fill(deadline).await {
                Some(true) => {}
                Some(false) => return self.buf.split().freeze(),
                None => panic!(
                    "the broker did not close the socket within {wait:?} (got {:?})",
                    &self.buf[..]
                ),
            }
        }
    }

    fn try_decode(&mut self) -> Option<Frame> {
        if self.buf.len() < 8 {
            return None;
        }
        let size = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
        let raw = match self.decoder.decode(&mut self.buf) {
            Ok(Some(raw)) => raw,
            Ok(None) => return None,
            Err(e) => panic!("the broker sent a broken frame header: {e}"),
        };
        let frame = decode_frame(raw, size);
        if let Some(Performative::Transfer(t)) = &frame.performative {
            if let Some(s) = self
                .sessions
                .values_mut()
                .find(|s| s.remote == frame.channel)
            {
                s.transfers_in = s.transfers_in.wrapping_add(1);
            }
            self.transfers
                .entry((frame.channel, t.handle))
                .or_default()
                .push_back((t.clone(), frame.payload.clone(), frame.size));
        }
        assert!(
            frame.size <= self.max_frame_size,
            "the broker sent a {} frame of {} bytes, above our max-frame-size {}",
            frame.name(),
            frame.size,
            self.max_frame_size
        );
        self.log.push(frame.clone());
        Some(frame)
    }

    /// The next frame (heartbeats included), EOF, or a timeout after `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Next {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(f) = self.try_decode() {
                return Next::Frame(Box::new(f));
            }
            match self.fill(deadline).await {
                Some(true) => {}
                Some(false) => {
                    // Whatever complete frames arrived before EOF come first.
                    if let Some(f) = self.try_decode() {
                        return Next::Frame(Box::new(f));
                    }
                    return Next::Eof;
                }
                None => return Next::Timeout,
            }
        }
    }

    /// The next non-heartbeat frame; panics on EOF or after [`WAIT`].
    pub async fn next_frame(&mut self) -> Frame {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Next::Frame(f) if f.performative.is_none() && f.sasl.is_none() => continue,
                Next::Frame(f) => return *f,
                Next::Eof => panic!("EOF; frames so far: {}", self.summary()),
                Next::Timeout => panic!("no frame within {WAIT:?}; so far: {}", self.summary()),
            }
        }
    }

    /// The next frame, which must be a `T`.
    pub async fn expect<T: Expect>(&mut self) -> T {
        self.expect_on().await.1
    }

    /// The next frame, which must be a `T`, with its channel.
    pub async fn expect_on<T: Expect>(&mut self) -> (u16, T) {
        let f = self.next_frame().await;
        let name = f.name();
        let channel = f.channel;
        match f.performative.and_then(T::take) {
            Some(t) => (channel, t),
            None => panic!(
                "expected {}, got {name}; frames so far: {}",
                T::NAME,
                self.summary()
            ),
        }
    }

    /// Skips frames until a `T` matching `pred` arrives (on any channel).
    pub async fn wait_for<T: Expect>(&mut self, pred: impl Fn(&T) -> bool) -> T {
        self.wait_for_on(pred).await.1
    }

    /// Skips frames until a `T` matching `pred` arrives, with its channel.
    pub async fn wait_for_on<T: Expect>(&mut self, pred: impl Fn(&T) -> bool) -> (u16, T) {
        loop {
            let f = self.next_frame().await;
            let channel = f.channel;
            if let Some(t) = f.performative.and_then(T::take)
                && pred(&t)
            {
                return (channel, t);
            }
        }
    }

    /// The last `T` matching `pred` logged after the broker's latest attach with `handle`.
    pub fn logged_since_attach<T: Expect>(
        &self,
        handle: u32,
        pred: impl Fn(&T) -> bool,
    ) -> Option<T> {
        let start = self.log.iter().rposition(
            |f| matches!(&f.performative, Some(Performative::Attach(a)) if a.handle == handle),
        )?;
        self.log[start..]
            .iter()
            .filter_map(|f| f.performative.clone().and_then(T::take))
            .filter(|t| pred(t))
            .last()
    }

    /// The flow that gives a sender we attached (broker handle `h`) credit: already logged
    /// since the broker's attach, or awaited.
    pub async fn await_credit(&mut self, h: u32) -> Flow {
        let credit = |f: &Flow| f.handle == Some(h) && f.link_credit.unwrap_or(0) > 0;
        if let Some(f) = self.logged_since_attach(h, credit) {
            return f;
        }
        self.wait_for(credit).await
    }

    /// The next SASL frame body.
    pub async fn expect_sasl(&mut self) -> SaslFrameBody {
        let f = self.next_frame().await;
        let name = f.name();
        f.sasl
            .unwrap_or_else(|| panic!("expected a SASL frame, got {name}"))
    }

    /// Skips frames until `close`, then requires EOF; returns the close.
    pub async fn expect_close_and_eof(&mut self) -> Close {
        let close: Close = self.wait_for(|_| true).await;
        self.expect_eof().await;
        close
    }

    /// Requires that the broker closes the socket within [`WAIT`]; returns the frames that
    /// arrived before.
    pub async fn expect_eof(&mut self) -> Vec<Frame> {
        let deadline = Instant::now() + WAIT;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Next::Frame(f) => frames.push(*f),
                Next::Eof => return frames,
                Next::Timeout => panic!(
                    "the broker did not close the socket; frames so far: {}",
                    self.summary()
                ),
            }
        }
    }

    /// Collects frames for `d` (stopping early at EOF).
    pub async fn frames_for(&mut self, d: Duration) -> (Vec<Frame>, bool) {
        let deadline = Instant::now() + d;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_within(left).await {
                Next::Frame(f) => frames.push(*f),
                Next::Eof => return (frames, true),
                Next::Timeout => return (frames, false),
            }
        }
    }

    /// The log as performative names with channel and handle, for failure messages.
    pub fn summary(&self) -> String {
        self.log
            .iter()
            .map(|f| match f.handle() {
                Some(h) => format!("{}@{}/{}", f.name(), f.channel, h),
                None => format!("{}@{}", f.name(), f.channel),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    // ----- SASL -----------------------------------------------------------------------------

    /// SASL header exchange; returns the offered mechanisms.
    pub async fn sasl_header(&mut self) -> Vec<Symbol> {
        self.write_raw(&ProtocolHeader::SASL.to_bytes()).await;
        let h = self.read_header().await;
        assert_eq!(h, ProtocolHeader::SASL.to_bytes(), "broker's SASL header");
        match self.expect_sasl().await {
            SaslFrameBody::Mechanisms(m) => m.sasl_server_mechanisms,
            other => panic!("expected sasl-mechanisms, got {other:?}"),
        }
    }

    /// Sends sasl-init and returns the outcome code.
    pub async fn sasl_init(
        &mut self,
        mechanism: &'static str,
        response: Option<&[u8]>,
    ) -> SaslCode {
        self.send_sasl(SaslFrameBody::Init(SaslInit {
            mechanism: Symbol::from_static(mechanism),
            initial_response: response.map(Bytes::copy_from_slice),
            hostname: None,
        }))
        .await;
        match self.expect_sasl().await {
            SaslFrameBody::Outcome(o) => o.code,
            other => panic!("expected sasl-outcome, got {other:?}"),
        }
    }

    /// After a successful SASL outcome: the AMQP header exchange and open.
    pub async fn amqp_after_sasl(&mut self, open: Open) -> Open {
        self.write_raw(&ProtocolHeader::AMQP.to_bytes()).await;
        let h = self.read_header().await;
        assert_eq!(h, ProtocolHeader::AMQP.to_bytes());
        self.send_open(open).await
    }

    // ----- sessions and links ---------------------------------------------------------------

    /// Begins a session on `channel` and awaits the broker's begin.
    pub async fn begin(&mut self, channel: u16) -> Begin {
        self.send(channel, Performative::Begin(begin_frame())).await;
        let (remote, begin) = self
            .wait_for_on(|b: &Begin| b.remote_channel == Some(channel))
            .await;
        self.sessions.insert(
            channel,
            RawSession {
                remote,
                begin: begin.clone(),
                next_outgoing_id: 0,
                next_delivery_id: 0,
                transfers_in: 0,
            },
        );
        begin
    }

    /// The broker's channel for our session `channel`.
    pub fn remote(&self, channel: u16) -> u16 {
        self.sessions[&channel].remote
    }

    /// Sends `attach` on `channel` and awaits the broker's answer (same name, other role).
    pub async fn attach(&mut self, channel: u16, attach: Attach) -> Attach {
        let (name, role) = (attach.name.clone(), attach.role);
        self.send(channel, Performative::Attach(Box::new(attach)))
            .await;
        let (on, reply) = self
            .wait_for_on(|a: &Attach| a.name == name && a.role != role)
            .await;
        assert_eq!(
            on,
            self.remote(channel),
            "the attach reply is on our session"
        );
        reply
    }

    /// A flow for a link on `channel`, with the session state filled in.
    pub fn flow_frame(
        &self,
        channel: u16,
        handle: u32,
        delivery_count: u32,
        credit: u32,
        drain: bool,
    ) -> Flow {
        let s = &self.sessions[&channel];
        Flow {
            next_incoming_id: Some(s.begin.next_outgoing_id.wrapping_add(s.transfers_in)),
            incoming_window: 100_000,
            next_outgoing_id: SequenceNo(s.next_outgoing_id),
            outgoing_window: 100_000,
            handle: Some(handle),
            delivery_count: Some(SequenceNo(delivery_count)),
            link_credit: Some(credit),
            drain,
            ..Default::default()
        }
    }

    /// Grants credit on a receiving link.
    pub async fn flow(
        &mut self,
        channel: u16,
        handle: u32,
        delivery_count: u32,
        credit: u32,
        drain: bool,
    ) {
        let f = self.flow_frame(channel, handle, delivery_count, credit, drain);
        self.send(channel, Performative::Flow(f)).await;
    }

    /// Takes the next delivery-id of session `channel`.
    pub fn next_delivery_id(&mut self, channel: u16) -> u32 {
        let s = self.sessions.get_mut(&channel).expect("no such session");
        let id = s.next_delivery_id;
        s.next_delivery_id = id.wrapping_add(1);
        id
    }

    /// Queues a one-frame transfer of `message`; returns its delivery-id.
    pub fn push_transfer(
        &mut self,
        channel: u16,
        handle: u32,
        message: &[u8],
        settled: bool,
    ) -> u32 {
        let id = self.next_delivery_id(channel);
        let t = transfer_frame(handle, id, settled, false);
        self.push_payload(channel, Performative::Transfer(t), message);
        id
    }

    /// Sends `message` in one transfer frame; returns its delivery-id.
    pub async fn transfer(
        &mut self,
        channel: u16,
        handle: u32,
        message: &[u8],
        settled: bool,
    ) -> u32 {
        let id = self.push_transfer(channel, handle, message, settled);
        self.flush().await;
        id
    }

    /// Sends `message` split so that no frame exceeds `max_frame` bytes; returns its
    /// delivery-id and the frame count.
    pub async fn transfer_split(
        &mut self,
        channel: u16,
        handle: u32,
        message: &[u8],
        settled: bool,
        max_frame: usize,
    ) -> (u32, usize) {
        let id = self.next_delivery_id(channel);
        let mut offset = 0;
        let mut frames = 0;
        loop {
            let first = offset == 0;
            let mut t = transfer_frame(handle, id, settled, true);
            if !first {
                t.delivery_id = None;
                t.delivery_tag = None;
                t.message_format = None;
            }
            let room = max_transfer_payload(&t, max_frame as u32).unwrap();
            let n = room.min(message.len() - offset);
            t.more = offset + n < message.len();
            let more = t.more;
            self.push_payload(
                channel,
                Performative::Transfer(t),
                &message[offset..offset + n],
            );
            offset += n;
            frames += 1;
            if !more {
                break;
            }
        }
        self.flush().await;
        (id, frames)
    }

    /// Sends a disposition as a receiver.
    pub async fn disposition(
        &mut self,
        channel: u16,
        first: u32,
        settled: bool,
        state: Option<DeliveryState>,
    ) {
        self.send(
            channel,
            Performative::Disposition(Disposition {
                role: Role::Receiver,
                first: SequenceNo(first),
                last: None,
                settled,
                state,
                batchable: false,
            }),
        )
        .await;
    }

    /// The next complete delivery on the broker's `handle` of our session `channel`, from
    /// transfers already read or read now; other frames are skipped (they stay in the log).
    pub async fn recv_delivery(&mut self, channel: u16, handle: u32) -> Delivery {
        let key = (self.remote(channel), handle);
        let mut payload = BytesMut::new();
        let mut first: Option<(u32, bool)> = None;
        let mut sizes = Vec::new();
        loop {
            let next = self.transfers.get_mut(&key).and_then(VecDeque::pop_front);
            let Some((t, part, size)) = next else {
                let _ = self.next_frame().await;
                continue;
            };
            if first.is_none() {
                let id = t
                    .delivery_id
                    .expect("first transfer carries a delivery-id")
                    .0;
                first = Some((id, t.settled.unwrap_or(false)));
            }
            sizes.push(size);
            payload.extend_from_slice(&part);
            if !t.more {
                let (delivery_id, settled) = first.unwrap();
                return Delivery {
                    handle,
                    delivery_id,
                    settled,
                    payload: payload.freeze(),
                    frame_sizes: sizes,
                };
            }
        }
    }

    /// Sends a message and waits until the broker settles it; returns the outcome.
    pub async fn send_and_settle(
        &mut self,
        channel: u16,
        handle: u32,
        message: &[u8],
    ) -> DeliveryState {
        let id = self.transfer(channel, handle, message, false).await;
        let d: Disposition = self
            .wait_for(|d: &Disposition| {
                d.role == Role::Receiver
                    && d.first.0 <= id
                    && d.last.map_or(d.first.0, |l| l.0) >= id
            })
            .await;
        assert!(d.settled, "the broker settles what it receives: {d:?}");
        d.state.expect("a settled disposition carries an outcome")
    }
}

fn decode_frame(raw: RawFrame, size: usize) -> Frame {
    match raw.frame_type {
        FrameType::Amqp => {
            let f = AmqpFrame::decode(&raw, DecodeLimits::DEFAULT)
                .unwrap_or_else(|e| panic!("the broker sent an undecodable frame: {e}"));
            Frame {
                frame_type: FrameType::Amqp,
                channel: raw.channel,
                size,
                body: raw.body,
                performative: f.performative,
                sasl: None,
                payload: f.payload,
            }
        }
        FrameType::Sasl => {
            let body = SaslFrameBody::decode_frame(&raw, DecodeLimits::DEFAULT)
                .unwrap_or_else(|e| panic!("the broker sent an undecodable SASL frame: {e}"));
            Frame {
                frame_type: FrameType::Sasl,
                channel: 0,
                size,
                body: raw.body,
                performative: None,
                sasl: Some(body),
                payload: Bytes::new(),
            }
        }
    }
}

// ----- frame builders -----------------------------------------------------------------------

/// An open without hostname.
pub fn open_frame(container_id: &str, max_frame_size: u32) -> Open {
    Open {
        container_id: Str::from(container_id),
        hostname: None,
        max_frame_size,
        channel_max: 255,
        ..Default::default()
    }
}

/// A begin with generous windows.
pub fn begin_frame() -> Begin {
    Begin {
        remote_channel: None,
        next_outgoing_id: SequenceNo(0),
        incoming_window: 100_000,
        outgoing_window: 100_000,
        handle_max: 1023,
        ..Default::default()
    }
}

pub fn source(address: Option<&str>) -> Source {
    Source {
        address: address.map(Str::from),
        ..Default::default()
    }
}

pub fn target(address: Option<&str>) -> Target {
    Target {
        address: address.map(Str::from),
        ..Default::default()
    }
}

/// Our attach as a sender to `target` (`None`: a null target, the anonymous relay).
pub fn sender_attach(name: &str, handle: u32, to: Option<&str>) -> Attach {
    Attach {
        name: Str::from(name),
        handle,
        role: Role::Sender,
        snd_settle_mode: SenderSettleMode::Unsettled,
        rcv_settle_mode: ReceiverSettleMode::First,
        source: Some(source(Some(name))),
        target: to.map(|a| TargetKind::Target(target(Some(a)))),
        initial_delivery_count: Some(SequenceNo(0)),
        ..Default::default()
    }
}

/// Our attach as a receiver from `from`.
pub fn receiver_attach(name: &str, handle: u32, from: &str) -> Attach {
    Attach {
        name: Str::from(name),
        handle,
        role: Role::Receiver,
        snd_settle_mode: SenderSettleMode::Unsettled,
        rcv_settle_mode: ReceiverSettleMode::First,
        source: Some(source(Some(from))),
        target: Some(TargetKind::Target(target(Some(name)))),
        ..Default::default()
    }
}

/// A transfer for the first frame of a delivery (tag = the delivery-id).
pub fn transfer_frame(handle: u32, delivery_id: u32, settled: bool, more: bool) -> Transfer {
    Transfer {
        handle,
        delivery_id: Some(SequenceNo(delivery_id)),
        delivery_tag: DeliveryTag::new(Bytes::copy_from_slice(&delivery_id.to_be_bytes())),
        message_format: Some(0),
        settled: Some(settled),
        more,
        ..Default::default()
    }
}

/// A small message: header, properties (message-id, optional `to`), one data section.
pub fn message(to: Option<&str>, body: &str) -> Bytes {
    Message::from_sections(&[
        Section::Header(Header::default()),
        Section::Properties(Properties {
            message_id: Some(MessageId::String(body)),
            to,
            ..Default::default()
        }),
        Section::Data(Data(Bytes::copy_from_slice(body.as_bytes()))),
    ])
    .unwrap()
    .to_contiguous()
}

/// The text of a message's single data section.
pub fn body_text(payload: &Bytes) -> String {
    let m = Message::decode(payload.clone()).unwrap();
    match m.body_sections().unwrap().first() {
        Some(Section::Data(d)) => String::from_utf8(d.0.to_vec()).unwrap(),
        other => panic!("unexpected body {other:?}"),
    }
}

/// A performative's raw field list: its descriptor code, list constructor and items.
pub fn raw_fields(body: &Bytes) -> (u64, u8, Vec<Value>) {
    let mut d = Decoder::new(body);
    let code = match d.descriptor().unwrap() {
        ferry_codec::decode::DescriptorRef::Code(c) => c,
        other => panic!("symbolic descriptor {other:?}"),
    };
    let constructor = d.peek_u8().unwrap();
    let items = match d.value().unwrap() {
        Value::List(items) => items,
        other => panic!("performative body is not a list: {other:?}"),
    };
    (code, constructor, items)
}

/// The condition of an optional error, for assertions.
pub fn condition(e: &Option<ferry_codec::definitions::Error>) -> Option<ErrorCondition> {
    e.as_ref().map(|e| e.condition.clone())
}

/// Proof that the broker still serves: a fresh raw connection sends a message to a fresh
/// queue and receives it back.
pub async fn assert_broker_serves(addr: SocketAddr, queue: &str) {
    let mut p = RawPeer::open(addr).await;
    p.begin(0).await;
    let tx = p
        .attach(0, sender_attach(&format!("{queue}-tx"), 0, Some(queue)))
        .await;
    p.await_credit(tx.handle).await;
    let state = p
        .send_and_settle(0, 0, &message(None, "still-serving"))
        .await;
    assert!(matches!(state, DeliveryState::Accepted(_)), "{state:?}");
    let reply = p
        .attach(0, receiver_attach(&format!("{queue}-rx"), 1, queue))
        .await;
    let dc = reply.initial_delivery_count.unwrap().0;
    p.flow(0, 1, dc, 10, false).await;
    let d = p.recv_delivery(0, reply.handle).await;
    assert_eq!(body_text(&d.payload), "still-serving");
}
