//! The null acceptor: an AMQP 1.0 peer that accepts every link, settles every message it is
//! sent with `accepted` at once, and feeds every receiver stamped messages as fast as its
//! credit allows. Run against it, `ferry-bench` measures itself: no broker can hand it
//! messages faster than this, so its figures for a broker mean something only while they
//! stay well below the null acceptor's (the harness asks for 2×).
//!
//! For that bound to mean anything the null acceptor must cost next to nothing per message,
//! so it works at the frame level with `ferry-codec` instead of running a full engine:
//! - incoming transfers are never decoded as messages; only the transfer performative is
//!   read, by a hand-written parser for the usual encodings (anything else falls back to the
//!   codec), and every read batch is settled with one disposition per run of delivery-ids;
//! - outgoing messages are one pre-encoded transfer frame (or run of frames) per link, copied
//!   and patched at fixed offsets: delivery-id, delivery-tag and the 16 stamp bytes;
//! - reads and writes are batched (hundreds of KiB per syscall).
//!
//! Control frames (open, begin, attach, flow, ...) go through the codec: they are rare.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use ferry_codec::definitions::{Role, SenderSettleMode, SequenceNo};
use ferry_codec::delivery_state::{Accepted, DeliveryState};
use ferry_codec::frames::{self, AmqpFrame, FrameType, ProtocolHeader, ProtocolId, RawFrame};
use ferry_codec::messaging::{Data, Header, Message, Section};
use ferry_codec::performatives::{
    Attach, Begin, Close, Detach, Disposition, End, Flow, Open, Performative, Transfer,
};
use ferry_codec::sasl::{SaslCode, SaslFrameBody, SaslMechanisms, SaslOutcome};
use ferry_codec::types::{Str, Symbol};
use ferry_codec::{DecodeLimits, Encode};
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};

use crate::wire::{STAMP_LEN, wall_nanos};

/// Connections served at once.
const MAX_CONNECTIONS: usize = 20_000;
/// Largest frame we accept, and the largest we send.
const MAX_FRAME: u32 = 1 << 20;
/// Highest channel (session) and handle (link) we accept: peers get tables this large at most.
const CHANNEL_MAX: u16 = 255;
const HANDLE_MAX: u32 = 1023;
/// Links per connection.
const MAX_LINKS: usize = 4096;
/// Incoming window we advertise per session, in transfer frames; reopened at half.
const SESSION_WINDOW: u32 = 1 << 20;
/// Credit granted to every sender, topped up at half. Not more: with credit to spare,
/// ferry-bench's producer queues megabytes in its engine while a write is in flight, and the
/// allocator's grow-and-trim of those buffers (tens of page faults per 1,000 messages) costs
/// the client a third more CPU per message; brokers grant far less (Ferry: 256).
const CREDIT: u32 = 5_000;
/// Bytes read before the batch is processed (and settled).
const READ_BATCH: usize = 256 * 1024;
/// Transfers are generated while less than this is waiting to be written.
const OUT_BATCH: usize = 128 * 1024;
/// Reading stops while this much output waits (a peer that does not read cannot make us
/// buffer without bound).
const OUT_MAX: usize = 4 << 20;
/// Messages one link sends before the next link gets its turn.
const BURST: u32 = 256;

/// Binds `addr` and serves until the process ends. Returns the bound address through
/// `bound` as soon as it is known. Works on any tokio runtime; each connection is one task.
pub async fn serve(
    addr: SocketAddr,
    size: usize,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let _ = bound.send(listener.local_addr()?);
    let message = Arc::new(MessageBytes::new(size));
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = listener.accept().await?;
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            continue;
        };
        let message = Arc::clone(&message);
        tokio::spawn(async move {
            let _ = serve_connection(stream, message).await;
            drop(permit);
        });
    }
}

/// The benchmark message (header and one `data` section, as `wire::Template` lays it out),
/// encoded once and shared by every connection.
#[derive(Debug)]
struct MessageBytes {
    bytes: Bytes,
    stamp_at: usize,
}

impl MessageBytes {
    fn new(size: usize) -> Self {
        let size = size.max(STAMP_LEN);
        let body = Bytes::from(vec![0u8; size]);
        let sections = [
            Section::Header(Header::default()),
            Section::Data(Data(body)),
        ];
        let bytes = Message::from_sections(&sections)
            .map(|m| m.to_contiguous())
            .unwrap_or_default();
        let stamp_at = bytes.len().saturating_sub(size);
        Self { bytes, stamp_at }
    }
}

/// Drives one connection: read a batch, answer it, generate transfers, write; repeat.
async fn serve_connection(stream: TcpStream, message: Arc<MessageBytes>) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::new(message);
    let mut input = BytesMut::with_capacity(READ_BATCH + 64 * 1024);
    let mut heartbeat: Option<tokio::time::Interval> = None;
    let mut wrote = false;
    loop {
        conn.fill();
        if conn.closed && conn.out.is_empty() {
            return Ok(());
        }
        if heartbeat.is_none()
            && let Some(period) = conn.heartbeat
        {
            let mut i = tokio::time::interval(period);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            heartbeat = Some(i);
        }
        let interest = match (conn.out.is_empty(), conn.out.len() > OUT_MAX) {
            (true, _) => Interest::READABLE,
            (false, false) => Interest::READABLE | Interest::WRITABLE,
            (false, true) => Interest::WRITABLE,
        };
        let ready = tokio::select! {
            biased;
            r = stream.ready(interest) => r?,
            _ = async {
                match heartbeat.as_mut() {
                    Some(i) => i.tick().await,
                    None => std::future::pending().await,
                }
            } => {
                // The peer closes us after its idle-time-out without a frame: send an empty
                // one if nothing went out since the last tick.
                if !wrote {
                    frames::encode_heartbeat(&mut conn.out);
                }
                wrote = false;
                continue;
            }
        };
        if ready.is_readable() && interest.is_readable() {
            let mut got = 0;
            loop {
                if input.capacity() - input.len() < 16 * 1024 {
                    input.reserve(64 * 1024);
                }
                match stream.try_read_buf(&mut input) {
                    Ok(0) => return Ok(()),
                    Ok(n) => {
                        got += n;
                        if got >= READ_BATCH {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            let Ok(used) = conn.input(&input) else {
                return Ok(()); // broken input: drop the connection
            };
            input.advance(used);
            conn.flush_batch();
        }
        // A few writes at most, so that reads (flows, settlements) keep being served.
        for _ in 0..8 {
            if conn.out.is_empty() {
                break;
            }
            match stream.try_write(&conn.out) {
                Ok(n) => {
                    conn.out.advance(n);
                    wrote = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
            conn.fill();
        }
    }
}

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a protocol header (`sasl_done` says which one may come).
    Header,
    /// SASL header answered; waiting for sasl-init.
    SaslInit,
    /// AMQP header answered; waiting for open.
    Open,
    /// Open answered.
    Running,
}

/// The null acceptor's side of one connection (sans I/O: bytes in, bytes out).
#[derive(Debug)]
struct Conn {
    phase: Phase,
    sasl_done: bool,
    /// Close answered: flush and hang up.
    closed: bool,
    /// Largest frame the peer accepts (capped at ours).
    peer_max_frame: u32,
    /// How often to check for silence, if the peer asked for an idle-time-out: a quarter of
    /// it, so that we are never quiet for more than half (§2.4.5).
    heartbeat: Option<Duration>,
    message: Arc<MessageBytes>,
    /// Sessions by channel; we answer each on the channel it was begun on.
    sessions: Vec<Option<Session>>,
    /// Links we feed, as (channel, handle), taken in turn.
    sources: Vec<(u16, u32)>,
    links: usize,
    out: BytesMut,
}

#[derive(Debug)]
struct Session {
    /// The peer's next transfer-id, and what is left of the window we gave it.
    next_in: u32,
    in_left: u32,
    /// Our next transfer-id and delivery-id.
    next_out: u32,
    next_delivery: u32,
    /// The peer's next-incoming-id + incoming-window: we send while `next_out` is below.
    peer_in_limit: u32,
    /// Links by handle (ours is the peer's).
    links: Vec<Option<Link>>,
    /// Runs of delivery-ids received unsettled in this batch.
    unsettled: Vec<(u32, u32)>,
}

#[derive(Debug)]
enum Link {
    /// The peer sends; we settle.
    Sink(Sink),
    /// The peer receives; we feed it.
    Source(Source),
}

#[derive(Debug)]
struct Sink {
    delivery_count: u32,
    /// `delivery_count` at which the credit we granted runs out.
    credit_limit: u32,
    /// A multi-frame delivery is under way.
    partial: bool,
    delivery_id: u32,
    settled: bool,
}

#[derive(Debug)]
struct Source {
    delivery_count: u32,
    credit: u32,
    drain: bool,
    seq: u64,
    template: Template,
}

impl Conn {
    fn new(message: Arc<MessageBytes>) -> Self {
        Self {
            phase: Phase::Header,
            sasl_done: false,
            closed: false,
            peer_max_frame: 512,
            heartbeat: None,
            message,
            sessions: Vec::new(),
            sources: Vec::new(),
            links: 0,
            out: BytesMut::with_capacity(OUT_BATCH * 2),
        }
    }

    /// Handles every complete header and frame in `buf`; returns the bytes used.
    fn input(&mut self, buf: &[u8]) -> Result<usize, ()> {
        let mut at = 0;
        while !self.closed {
            let rest = buf.get(at..).unwrap_or_default();
            if self.phase == Phase::Header {
                let Some(h) = ProtocolHeader::parse(rest).map_err(drop)? else {
                    break;
                };
                at += frames::HEADER_LEN;
                self.header(h)?;
                continue;
            }
            let Some(&[a, b, c, d, doff, ftype, c0, c1]) = rest.get(..8) else {
                break;
            };
            let size = u32::from_be_bytes([a, b, c, d]);
            let body_at = usize::from(doff) * 4;
            if !(8..=MAX_FRAME).contains(&size) || doff < 2 || body_at > size as usize {
                return Err(());
            }
            let Some(body) = rest.get(body_at..size as usize) else {
                break; // not all here yet
            };
            at += size as usize;
            let channel = u16::from_be_bytes([c0, c1]);
            match (self.phase, ftype) {
                (Phase::SaslInit, 1) => self.sasl(body)?,
                (Phase::Open | Phase::Running, 0) => self.frame(channel, body)?,
                _ => return Err(()),
            }
        }
        Ok(at)
    }

    fn header(&mut self, h: ProtocolHeader) -> Result<(), ()> {
        if !h.is_v1_0() {
            return Err(());
        }
        self.out.extend_from_slice(&h.to_bytes());
        match h.id {
            ProtocolId::SASL if !self.sasl_done => {
                let mechanisms = SaslMechanisms {
                    sasl_server_mechanisms: vec![
                        Symbol::from_static("ANONYMOUS"),
                        Symbol::from_static("PLAIN"),
                    ],
                };
                self.write(FrameType::Sasl, 0, &mechanisms);
                self.phase = Phase::SaslInit;
            }
            ProtocolId::AMQP => self.phase = Phase::Open,
            _ => return Err(()),
        }
        Ok(())
    }

    /// Any sasl-init is welcome.
    fn sasl(&mut self, body: &[u8]) -> Result<(), ()> {
        let raw = raw_frame(FrameType::Sasl, 0, body);
        match SaslFrameBody::decode_frame(&raw, DecodeLimits::DEFAULT) {
            Ok(SaslFrameBody::Init(_)) => {
                let outcome = SaslOutcome {
                    code: SaslCode::Ok,
                    additional_data: None,
                };
                self.write(FrameType::Sasl, 0, &outcome);
                self.phase = Phase::Header;
                self.sasl_done = true;
                Ok(())
            }
            _ => Err(()),
        }
    }

    /// One AMQP frame. Transfers take the fast path; the rest are decoded.
    fn frame(&mut self, channel: u16, body: &[u8]) -> Result<(), ()> {
        if body.is_empty() {
            return Ok(()); // heartbeat
        }
        if self.phase == Phase::Running
            && let Some(t) = TransferHead::parse(body)
        {
            return self.transfer(channel, t);
        }
        let raw = raw_frame(FrameType::Amqp, channel, body);
        let frame = AmqpFrame::decode(&raw, DecodeLimits::DEFAULT).map_err(drop)?;
        let Some(p) = frame.performative else {
            return Ok(());
        };
        match (self.phase, p) {
            (Phase::Open, Performative::Open(open)) => self.open(open),
            (Phase::Running, Performative::Begin(b)) => self.begin(channel, b),
            (Phase::Running, Performative::Attach(a)) => self.attach(channel, *a),
            (Phase::Running, Performative::Flow(f)) => self.flow(channel, f),
            (Phase::Running, Performative::Transfer(t)) => {
                self.transfer(channel, TransferHead::from(&t))
            }
            (Phase::Running, Performative::Disposition(_)) => Ok(()), // nothing is tracked
            (Phase::Running, Performative::Detach(d)) => self.detach(channel, d),
            (Phase::Running, Performative::End(_)) => self.end(channel),
            (Phase::Running, Performative::Close(_)) => {
                self.write(FrameType::Amqp, 0, &Close::default());
                self.closed = true;
                Ok(())
            }
            _ => Err(()),
        }
    }

    fn open(&mut self, open: Open) -> Result<(), ()> {
        self.peer_max_frame = open.max_frame_size.clamp(512, MAX_FRAME);
        self.heartbeat = open
            .idle_time_out
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(u64::from(ms / 4).max(50)));
        let ours = Open {
            container_id: Str::from("ferry-bench-null"),
            max_frame_size: MAX_FRAME,
            channel_max: CHANNEL_MAX,
            ..Default::default()
        };
        self.write(FrameType::Amqp, 0, &ours);
        self.phase = Phase::Running;
        Ok(())
    }

    fn begin(&mut self, channel: u16, b: Begin) -> Result<(), ()> {
        let slot = usize::from(channel);
        if channel > CHANNEL_MAX || b.remote_channel.is_some() {
            return Err(()); // we never begin sessions, so nothing can answer ours
        }
        if self.sessions.len() <= slot {
            self.sessions.resize_with(slot + 1, || None);
        }
        let Some(entry @ None) = self.sessions.get_mut(slot) else {
            return Err(()); // channel in use
        };
        *entry = Some(Session {
            next_in: b.next_outgoing_id.0,
            in_left: SESSION_WINDOW,
            next_out: 0,
            next_delivery: 0,
            peer_in_limit: b.incoming_window,
            links: Vec::new(),
            unsettled: Vec::new(),
        });
        let reply = Begin {
            remote_channel: Some(channel),
            next_outgoing_id: SequenceNo(0),
            incoming_window: SESSION_WINDOW,
            outgoing_window: u32::MAX,
            handle_max: HANDLE_MAX,
            ..Default::default()
        };
        self.write(FrameType::Amqp, channel, &reply);
        Ok(())
    }

    /// Every link is accepted, in the opposite role, with the peer's termini copied.
    fn attach(&mut self, channel: u16, a: Attach) -> Result<(), ()> {
        let handle = a.handle;
        if handle > HANDLE_MAX || self.links >= MAX_LINKS {
            return Err(());
        }
        let max_frame = self.peer_max_frame;
        let s = session(&mut self.sessions, channel)?;
        let slot = handle as usize;
        if s.links.len() <= slot {
            s.links.resize_with(slot + 1, || None);
        }
        let entry = s.links.get_mut(slot).ok_or(())?;
        if entry.is_some() {
            return Err(()); // handle in use
        }
        let ours = match a.role {
            Role::Sender => Role::Receiver,
            Role::Receiver => Role::Sender,
        };
        let reply = Attach {
            name: a.name,
            handle,
            role: ours,
            snd_settle_mode: a.snd_settle_mode,
            rcv_settle_mode: a.rcv_settle_mode,
            source: a.source,
            target: a.target,
            initial_delivery_count: (ours == Role::Sender).then_some(SequenceNo(0)),
            ..Default::default()
        };
        self.links += 1;
        match ours {
            Role::Receiver => {
                let dc = a.initial_delivery_count.unwrap_or_default().0;
                *entry = Some(Link::Sink(Sink {
                    delivery_count: dc,
                    credit_limit: dc.wrapping_add(CREDIT),
                    partial: false,
                    delivery_id: 0,
                    settled: false,
                }));
                write(&mut self.out, FrameType::Amqp, channel, &reply);
                let grant = s.flow(Some((handle, dc, CREDIT, false)));
                write(&mut self.out, FrameType::Amqp, channel, &grant);
            }
            Role::Sender => {
                let settled = a.snd_settle_mode == SenderSettleMode::Settled;
                let template = Template::new(&self.message, channel, handle, settled, max_frame);
                *entry = Some(Link::Source(Source {
                    delivery_count: 0,
                    credit: 0,
                    drain: false,
                    seq: 0,
                    template,
                }));
                self.sources.push((channel, handle));
                write(&mut self.out, FrameType::Amqp, channel, &reply);
            }
        }
        Ok(())
    }

    fn flow(&mut self, channel: u16, f: Flow) -> Result<(), ()> {
        let s = session(&mut self.sessions, channel)?;
        // Before the peer has our begin, its window counts from our first transfer-id (0).
        let next_in = f.next_incoming_id.map_or(0, |n| n.0);
        s.peer_in_limit = next_in.wrapping_add(f.incoming_window);
        let Some(handle) = f.handle else {
            if f.echo {
                let reply = s.flow(None);
                write(&mut self.out, FrameType::Amqp, channel, &reply);
            }
            return Ok(());
        };
        let state = match s.links.get_mut(handle as usize).and_then(Option::as_mut) {
            None => return Err(()),
            Some(Link::Source(l)) => {
                // credit = the receiver's delivery-count + link-credit - ours (§2.6.7); our
                // transfers in flight may have used it up already (never below 0).
                if let Some(lc) = f.link_credit {
                    let theirs = f.delivery_count.map_or(l.delivery_count, |n| n.0);
                    let credit = theirs.wrapping_add(lc).wrapping_sub(l.delivery_count);
                    l.credit = if credit <= lc { credit } else { 0 };
                }
                l.drain = f.drain;
                (handle, l.delivery_count, l.credit, l.drain)
            }
            Some(Link::Sink(l)) => {
                // The sender's delivery-count is authoritative (it advances it to drain).
                if let Some(dc) = f.delivery_count
                    && serial_ahead(dc.0, l.delivery_count) > 0
                {
                    l.delivery_count = dc.0;
                }
                let credit = serial_ahead(l.credit_limit, l.delivery_count);
                (handle, l.delivery_count, credit, false)
            }
        };
        if f.echo {
            let reply = s.flow(Some(state));
            write(&mut self.out, FrameType::Amqp, channel, &reply);
        }
        Ok(())
    }

    /// A transfer to us: count it against window and credit, and note its delivery-id if it
    /// completes an unsettled delivery (settled as a batch in [`Conn::flush_batch`]).
    fn transfer(&mut self, channel: u16, t: TransferHead) -> Result<(), ()> {
        let s = session(&mut self.sessions, channel)?;
        s.next_in = s.next_in.wrapping_add(1);
        s.in_left = s.in_left.saturating_sub(1);
        let Some(Some(Link::Sink(l))) = s.links.get_mut(t.handle as usize) else {
            return Err(()); // unattached handle, or a transfer on a link we send on
        };
        if !l.partial {
            l.delivery_id = t.delivery_id.ok_or(())?;
            l.settled = false;
            l.delivery_count = l.delivery_count.wrapping_add(1);
        }
        l.settled |= t.settled;
        l.partial = t.more && !t.aborted;
        if !l.partial && !l.settled && !t.aborted {
            match s.unsettled.last_mut() {
                Some((_, last)) if last.wrapping_add(1) == l.delivery_id => *last = l.delivery_id,
                _ => s.unsettled.push((l.delivery_id, l.delivery_id)),
            }
        }
        Ok(())
    }

    fn detach(&mut self, channel: u16, d: Detach) -> Result<(), ()> {
        let s = session(&mut self.sessions, channel)?;
        let entry = s.links.get_mut(d.handle as usize).ok_or(())?;
        if entry.take().is_none() {
            return Err(());
        }
        self.links = self.links.saturating_sub(1);
        self.sources.retain(|&x| x != (channel, d.handle));
        let reply = Detach {
            handle: d.handle,
            closed: d.closed,
            error: None,
        };
        self.write(FrameType::Amqp, channel, &reply);
        Ok(())
    }

    fn end(&mut self, channel: u16) -> Result<(), ()> {
        let s = self
            .sessions
            .get_mut(usize::from(channel))
            .and_then(Option::take)
            .ok_or(())?;
        let gone = s.links.iter().filter(|l| l.is_some()).count();
        self.links = self.links.saturating_sub(gone);
        self.sources.retain(|&(c, _)| c != channel);
        self.write(FrameType::Amqp, channel, &End::default());
        Ok(())
    }

    /// End of a read batch: one disposition per run of unsettled deliveries, credit for the
    /// links that ran low, and the session window reopened. Walks every session and link:
    /// there are a handful, and at most [`MAX_LINKS`].
    fn flush_batch(&mut self) {
        let out = &mut self.out;
        for (channel, s) in self.sessions.iter_mut().enumerate() {
            let (Some(s), Ok(channel)) = (s.as_mut(), u16::try_from(channel)) else {
                continue;
            };
            for (first, last) in s.unsettled.drain(..) {
                let d = Disposition {
                    role: Role::Receiver,
                    first: SequenceNo(first),
                    last: (last != first).then_some(SequenceNo(last)),
                    settled: true,
                    state: Some(DeliveryState::Accepted(Accepted {})),
                    batchable: false,
                };
                write(out, FrameType::Amqp, channel, &d);
            }
            for handle in 0..s.links.len() {
                let Some(Some(Link::Sink(l))) = s.links.get_mut(handle) else {
                    continue;
                };
                if serial_ahead(l.credit_limit, l.delivery_count) >= CREDIT / 2 {
                    continue;
                }
                l.credit_limit = l.delivery_count.wrapping_add(CREDIT);
                let grant = (handle as u32, l.delivery_count, CREDIT, false);
                let f = s.flow(Some(grant));
                write(out, FrameType::Amqp, channel, &f);
            }
            if s.in_left < SESSION_WINDOW / 2 {
                let f = s.flow(None);
                write(out, FrameType::Amqp, channel, &f);
            }
        }
    }

    /// Feeds receivers, in turn, while credit and the peer's session window allow and less
    /// than [`OUT_BATCH`] is waiting to be written.
    fn fill(&mut self) {
        if self.sources.is_empty() || self.out.len() >= OUT_BATCH {
            return;
        }
        let Self {
            sessions,
            sources,
            out,
            ..
        } = self;
        let mut nanos = wall_nanos();
        let mut progress = true;
        while progress && out.len() < OUT_BATCH {
            progress = false;
            for &(channel, handle) in sources.iter() {
                let Some(Some(s)) = sessions.get_mut(usize::from(channel)) else {
                    continue;
                };
                let Some(Some(Link::Source(l))) = s.links.get_mut(handle as usize) else {
                    continue;
                };
                let t = &l.template;
                let mut sent = 0;
                let mut blocked = false;
                while l.credit > 0 && sent < BURST && out.len() < OUT_BATCH {
                    if serial_ahead(s.peer_in_limit, s.next_out) < t.frames {
                        blocked = true;
                        break;
                    }
                    if sent % 64 == 63 {
                        nanos = wall_nanos();
                    }
                    t.put(out, s.next_delivery, l.seq, nanos);
                    s.next_delivery = s.next_delivery.wrapping_add(1);
                    s.next_out = s.next_out.wrapping_add(t.frames);
                    l.delivery_count = l.delivery_count.wrapping_add(1);
                    l.credit -= 1;
                    l.seq += 1;
                    sent += 1;
                }
                progress |= sent > 0;
                // Drain: what cannot be sent now is given back, and the peer is told.
                if l.drain && (l.credit == 0 || blocked) {
                    l.delivery_count = l.delivery_count.wrapping_add(l.credit);
                    l.credit = 0;
                    l.drain = false;
                    let state = (handle, l.delivery_count, 0, true);
                    let f = s.flow(Some(state));
                    write(out, FrameType::Amqp, channel, &f);
                }
            }
        }
    }

    fn write(&mut self, frame_type: FrameType, channel: u16, body: &impl Encode) {
        write(&mut self.out, frame_type, channel, body);
    }
}

impl Session {
    /// Our flow: session state, plus link state (handle, delivery-count, credit, drain).
    fn flow(&mut self, link: Option<(u32, u32, u32, bool)>) -> Flow {
        self.in_left = SESSION_WINDOW;
        Flow {
            next_incoming_id: Some(SequenceNo(self.next_in)),
            incoming_window: SESSION_WINDOW,
            next_outgoing_id: SequenceNo(self.next_out),
            outgoing_window: u32::MAX,
            handle: link.map(|l| l.0),
            delivery_count: link.map(|l| SequenceNo(l.1)),
            link_credit: link.map(|l| l.2),
            drain: link.is_some_and(|l| l.3),
            ..Default::default()
        }
    }
}

fn session(sessions: &mut [Option<Session>], channel: u16) -> Result<&mut Session, ()> {
    sessions
        .get_mut(usize::from(channel))
        .and_then(Option::as_mut)
        .ok_or(())
}

/// How far `limit` is ahead of `at` in serial arithmetic; 0 if it is behind.
fn serial_ahead(limit: u32, at: u32) -> u32 {
    let d = limit.wrapping_sub(at);
    if d > i32::MAX as u32 { 0 } else { d }
}

/// Appends one frame; our frames are small and below any max-frame-size (512 at least).
fn write(out: &mut BytesMut, frame_type: FrameType, channel: u16, body: &impl Encode) {
    let _ = frames::encode_frame(out, frame_type, channel, body, &[], MAX_FRAME);
}

fn raw_frame(frame_type: FrameType, channel: u16, body: &[u8]) -> RawFrame {
    RawFrame {
        frame_type,
        channel,
        body: Bytes::copy_from_slice(body),
    }
}

/// What the sink needs from a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TransferHead {
    handle: u32,
    delivery_id: Option<u32>,
    settled: bool,
    more: bool,
    aborted: bool,
}

impl From<&Transfer> for TransferHead {
    fn from(t: &Transfer) -> Self {
        Self {
            handle: t.handle,
            delivery_id: t.delivery_id.map(|d| d.0),
            settled: t.settled.unwrap_or(false),
            more: t.more,
            aborted: t.aborted,
        }
    }
}

impl TransferHead {
    /// Reads a transfer performative written the usual way (small descriptor; fields as
    /// uint/vbin/bool/ubyte or null, no delivery state). `None` for anything else, which
    /// the codec then decodes (or refuses).
    fn parse(body: &[u8]) -> Option<Self> {
        let mut c = Cursor(body);
        if c.take(3)? != [0x00, 0x53, 0x14] {
            return None;
        }
        let count = match c.byte()? {
            0xc0 => {
                c.take(1)?;
                u32::from(c.byte()?)
            }
            0xd0 => {
                c.take(4)?;
                u32::from_be_bytes(c.take(4)?.try_into().ok()?)
            }
            _ => return None,
        };
        if !(1..=11).contains(&count) {
            return None;
        }
        let mut t = TransferHead {
            handle: 0,
            delivery_id: None,
            settled: false,
            more: false,
            aborted: false,
        };
        for field in 0..count {
            match field {
                0 => t.handle = c.uint()??,
                1 => t.delivery_id = c.uint()?,
                2 => c.binary()?,
                3 => _ = c.uint()?,
                4 => t.settled = c.boolean()?,
                5 => t.more = c.boolean()?,
                6 => c.ubyte()?,
                7 => (c.byte()? == 0x40).then_some(())?, // a delivery state: let the codec
                9 => t.aborted = c.boolean()?,
                _ => _ = c.boolean()?,
            }
        }
        Some(t)
    }
}

/// A reader over a frame body for [`TransferHead::parse`]: every method is `None` on an
/// encoding it does not know, never a panic.
#[derive(Debug)]
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn byte(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    /// A uint, or null (`Some(None)`).
    fn uint(&mut self) -> Option<Option<u32>> {
        Some(match self.byte()? {
            0x40 => None,
            0x43 => Some(0),
            0x52 => Some(u32::from(self.byte()?)),
            0x70 => Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?)),
            _ => return None,
        })
    }
    /// A boolean; null reads as false (the default of every boolean field read here).
    fn boolean(&mut self) -> Option<bool> {
        match self.byte()? {
            0x40 | 0x42 => Some(false),
            0x41 => Some(true),
            0x56 => match self.byte()? {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            },
            _ => None,
        }
    }
    fn ubyte(&mut self) -> Option<()> {
        match self.byte()? {
            0x40 => Some(()),
            0x50 => self.byte().map(drop),
            _ => None,
        }
    }
    /// A binary (skipped), or null.
    fn binary(&mut self) -> Option<()> {
        let n = match self.byte()? {
            0x40 => 0,
            0xa0 => usize::from(self.byte()?),
            0xb0 => u32::from_be_bytes(self.take(4)?.try_into().ok()?) as usize,
            _ => return None,
        };
        self.take(n).map(drop)
    }
}

/// One message on one link, pre-encoded as its transfer frame(s). Only the delivery-id, the
/// delivery-tag (the sequence number, 8 bytes) and the stamp change per message, each at a
/// fixed offset in the first frame, so sending is a copy and three small patches.
#[derive(Debug)]
struct Template {
    bytes: Vec<u8>,
    /// Transfer frames per message (more than one when it exceeds the peer's max frame).
    frames: u32,
    delivery_id_at: usize,
    tag_at: usize,
    stamp_at: Option<usize>,
}

/// Bytes of the first frame's transfer performative, in the fixed layout of [`Template`].
const FIRST_PERFORMATIVE: usize = 29;
/// Bytes of a continuation frame's transfer performative.
const NEXT_PERFORMATIVE: usize = 16;

impl Template {
    fn new(message: &MessageBytes, channel: u16, handle: u32, settled: bool, max: u32) -> Self {
        let msg = &message.bytes[..];
        let room = |perf: usize| (max as usize).saturating_sub(8 + perf).max(1);
        let (first, mut rest) = msg.split_at(room(FIRST_PERFORMATIVE).min(msg.len()));
        let settled = if settled { 0x41 } else { 0x42 };
        let more = |more: bool| if more { 0x41 } else { 0x42 };
        let h = handle.to_be_bytes();
        let mut bytes = Vec::with_capacity(msg.len() + 64);
        let frame_head = |bytes: &mut Vec<u8>, len: usize| {
            bytes.extend_from_slice(&(8 + len as u32).to_be_bytes());
            bytes.extend_from_slice(&[2, 0]);
            bytes.extend_from_slice(&channel.to_be_bytes());
        };
        // transfer(handle: uint, delivery-id: uint, delivery-tag: vbin8[8], message-format:
        // uint0, settled, more), all fixed width: 29 bytes.
        frame_head(&mut bytes, FIRST_PERFORMATIVE + first.len());
        bytes.extend_from_slice(&[0x00, 0x53, 0x14, 0xc0, 24, 6, 0x70]);
        bytes.extend_from_slice(&h);
        let delivery_id_at = bytes.len() + 1;
        bytes.extend_from_slice(&[0x70, 0, 0, 0, 0, 0xa0, 8]);
        let tag_at = bytes.len();
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&[0x43, settled, more(!rest.is_empty())]);
        let stamp_at = bytes.len() + message.stamp_at;
        bytes.extend_from_slice(first);
        let mut frames = 1;
        while !rest.is_empty() {
            // Continuation: transfer(handle, null, null, null, settled, more): 16 bytes.
            let (chunk, tail) = rest.split_at(room(NEXT_PERFORMATIVE).min(rest.len()));
            rest = tail;
            frame_head(&mut bytes, NEXT_PERFORMATIVE + chunk.len());
            bytes.extend_from_slice(&[0x00, 0x53, 0x14, 0xc0, 11, 6, 0x70]);
            bytes.extend_from_slice(&h);
            bytes.extend_from_slice(&[0x40, 0x40, 0x40, settled, more(!rest.is_empty())]);
            bytes.extend_from_slice(chunk);
            frames += 1;
        }
        // The stamp must lie in the first frame, which holds at least ~470 bytes.
        let stamp_at = (message.stamp_at + STAMP_LEN <= first.len()).then_some(stamp_at);
        Self {
            bytes,
            frames,
            delivery_id_at,
            tag_at,
            stamp_at,
        }
    }

    /// Appends the message with its delivery-id, tag (`seq`) and stamp (`nanos`, `seq`).
    fn put(&self, out: &mut BytesMut, delivery_id: u32, seq: u64, nanos: u64) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        let Some(f) = out.get_mut(start..) else {
            return;
        };
        let mut patch = |at: usize, v: &[u8]| {
            if let Some(dst) = f.get_mut(at..at + v.len()) {
                dst.copy_from_slice(v);
            }
        };
        patch(self.delivery_id_at, &delivery_id.to_be_bytes());
        patch(self.tag_at, &seq.to_be_bytes());
        if let Some(at) = self.stamp_at {
            patch(at, &nanos.to_le_bytes());
            patch(at + 8, &seq.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::read_stamp;
    use ferry_codec::definitions::DeliveryTag;
    use ferry_codec::messaging::{Source as Src, Target, TargetKind};
    use ferry_codec::sasl::SaslInit;

    /// The frames in `bytes`, protocol headers and SASL frames skipped.
    fn frames_of(mut bytes: Bytes) -> Vec<AmqpFrame> {
        let mut dec = frames::FrameDecoder::new(MAX_FRAME);
        let mut out = Vec::new();
        loop {
            if bytes.starts_with(b"AMQP") {
                bytes.advance(8);
            }
            let Some(raw) = dec.decode_bytes(&mut bytes).unwrap() else {
                break;
            };
            if raw.frame_type == FrameType::Amqp {
                out.push(AmqpFrame::decode(&raw, DecodeLimits::DEFAULT).unwrap());
            }
        }
        assert!(bytes.is_empty());
        out
    }

    fn output(c: &mut Conn) -> Vec<(u16, Performative)> {
        let frames = frames_of(c.out.split().freeze());
        frames
            .into_iter()
            .filter_map(|f| Some((f.channel, f.performative?)))
            .collect()
    }

    fn put(buf: &mut BytesMut, channel: u16, body: &impl Encode, payload: &[u8]) {
        frames::encode_frame(buf, FrameType::Amqp, channel, body, payload, MAX_FRAME).unwrap();
    }

    fn attach(name: &str, handle: u32, role: Role, settle: SenderSettleMode) -> Attach {
        Attach {
            name: Str::from(name),
            handle,
            role,
            snd_settle_mode: settle,
            source: Some(Src::default()),
            target: Some(TargetKind::Target(Target::default())),
            initial_delivery_count: (role == Role::Sender).then_some(SequenceNo(0)),
            ..Default::default()
        }
    }

    /// SASL, open, a session, a sender (handle 0) and a settled receiver (handle 1).
    fn handshake() -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&ProtocolHeader::SASL.to_bytes());
        let init = SaslInit {
            mechanism: Symbol::from_static("ANONYMOUS"),
            initial_response: None,
            hostname: None,
        };
        frames::encode_frame(&mut b, FrameType::Sasl, 0, &init, &[], 512).unwrap();
        b.extend_from_slice(&ProtocolHeader::AMQP.to_bytes());
        let open = Open {
            container_id: Str::from("test"),
            idle_time_out: Some(1000),
            ..Default::default()
        };
        put(&mut b, 0, &open, &[]);
        let begin = Begin {
            next_outgoing_id: SequenceNo(0),
            incoming_window: 3,
            outgoing_window: 100,
            ..Default::default()
        };
        put(&mut b, 0, &begin, &[]);
        put(
            &mut b,
            0,
            &attach("in", 0, Role::Sender, SenderSettleMode::Unsettled),
            &[],
        );
        put(
            &mut b,
            0,
            &attach("out", 1, Role::Receiver, SenderSettleMode::Settled),
            &[],
        );
        b
    }

    #[test]
    fn links_are_answered_fed_within_the_window_drained_and_settled_in_runs() {
        let mut c = Conn::new(Arc::new(MessageBytes::new(64)));
        let input = handshake();
        assert_eq!(c.input(&input), Ok(input.len()));
        assert_eq!(c.heartbeat, Some(Duration::from_millis(250)));
        let names: Vec<_> = output(&mut c).iter().map(|(_, p)| p.name()).collect();
        assert_eq!(names, ["open", "begin", "attach", "flow", "attach"]);

        // Credit 5 with drain, but a session window of 3: three transfers, then the rest of
        // the credit is given back.
        let mut b = BytesMut::new();
        let flow = Flow {
            next_incoming_id: Some(SequenceNo(0)),
            incoming_window: 3,
            handle: Some(1),
            delivery_count: Some(SequenceNo(0)),
            link_credit: Some(5),
            drain: true,
            ..Default::default()
        };
        put(&mut b, 0, &flow, &[]);
        assert_eq!(c.input(&b), Ok(b.len()));
        c.flush_batch();
        c.fill();
        let out = output(&mut c);
        assert_eq!(out.len(), 4, "{out:?}");
        for (i, (_, p)) in out.iter().take(3).enumerate() {
            let Performative::Transfer(t) = p else {
                panic!("{p:?}")
            };
            assert_eq!((t.handle, t.delivery_id), (1, Some(SequenceNo(i as u32))));
            assert_eq!(t.settled, Some(true));
        }
        let Some((_, Performative::Flow(f))) = out.last() else {
            panic!("{out:?}")
        };
        assert_eq!((f.handle, f.link_credit, f.drain), (Some(1), Some(0), true));
        assert_eq!(f.delivery_count, Some(SequenceNo(5)));

        // Ten transfers in one batch, the fifth settled: two dispositions.
        let mut b = BytesMut::new();
        for id in 0..10u32 {
            let t = Transfer {
                handle: 0,
                delivery_id: Some(SequenceNo(id)),
                delivery_tag: DeliveryTag::new(Bytes::from(id.to_be_bytes().to_vec())),
                message_format: Some(0),
                settled: Some(id == 4),
                ..Default::default()
            };
            put(&mut b, 0, &t, b"message");
        }
        put(&mut b, 0, &Close::default(), &[]);
        assert_eq!(c.input(&b), Ok(b.len()));
        c.flush_batch();
        let runs: Vec<_> = output(&mut c)
            .into_iter()
            .map(|(_, p)| match p {
                Performative::Disposition(d) => {
                    assert!(d.settled && matches!(d.state, Some(DeliveryState::Accepted(_))));
                    (d.first.0, d.last.map(|l| l.0))
                }
                other => (u32::MAX, Some(u32::from(other.name().len() as u8))),
            })
            .collect();
        assert_eq!(runs, [(u32::MAX, Some(5)), (0, Some(3)), (5, Some(9))]);
        assert!(c.closed);
    }

    /// Broken input of every kind is refused or waited on, never a panic.
    #[test]
    fn mangled_input_never_panics() {
        let good = handshake();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut b = good.to_vec();
            for _ in 0..=rand() % 4 {
                let at = rand() as usize % b.len();
                b[at] = rand() as u8;
            }
            b.truncate(b.len() - rand() as usize % 16);
            let mut c = Conn::new(Arc::new(MessageBytes::new(16)));
            if c.input(&b).is_ok() {
                let flow = Flow {
                    handle: Some(1),
                    link_credit: Some(rand() as u32 % 8),
                    incoming_window: rand() as u32,
                    drain: rand() % 2 == 0,
                    ..Default::default()
                };
                let mut more = BytesMut::new();
                put(&mut more, (rand() % 2) as u16, &flow, &[]);
                let _ = c.input(&more);
                c.flush_batch();
                c.fill();
            }
        }
    }

    #[test]
    fn template_frames_decode_with_the_codec_and_carry_the_stamp() {
        for (size, max) in [(16, 512), (1024, MAX_FRAME), (1024, 512), (70_000, 4096)] {
            let m = MessageBytes::new(size);
            let t = Template::new(&m, 3, 7, size == 1024, max);
            let mut out = BytesMut::new();
            t.put(&mut out, 41, 0x0102_0304_0506_0708, 99);
            let mut rest = &out[..];
            while let Some(size) = rest.get(..4) {
                let size = u32::from_be_bytes(size.try_into().unwrap());
                assert!(size <= max, "size {size} max {max}");
                rest = &rest[size as usize..];
            }
            let frames = frames_of(out.freeze());
            assert_eq!(frames.len() as u32, t.frames, "size {size} max {max}");
            let mut payload = BytesMut::new();
            for (i, f) in frames.iter().enumerate() {
                assert_eq!(f.channel, 3);
                let Some(Performative::Transfer(tr)) = &f.performative else {
                    panic!("not a transfer");
                };
                assert_eq!(TransferHead::parse(&encode_body(tr, b"")), Some(tr.into()));
                assert_eq!(tr.handle, 7);
                assert_eq!(tr.more, i + 1 < frames.len());
                if i == 0 {
                    assert_eq!(tr.delivery_id, Some(SequenceNo(41)));
                    let tag = tr.delivery_tag.as_ref().unwrap().as_bytes();
                    assert_eq!(&tag[..], &0x0102_0304_0506_0708u64.to_be_bytes());
                    assert_eq!(tr.settled, Some(size == 1024));
                }
                payload.extend_from_slice(&f.payload);
            }
            let msg = Message::decode(payload.freeze()).unwrap();
            assert_eq!(read_stamp(&msg), Some((99, 0x0102_0304_0506_0708)));
        }
    }

    fn encode_body(t: &Transfer, payload: &[u8]) -> Vec<u8> {
        let mut b = BytesMut::new();
        t.encode(&mut b);
        b.extend_from_slice(payload);
        b.to_vec()
    }

    #[test]
    fn transfer_fast_path_agrees_with_the_codec() {
        let cases = [
            Transfer {
                handle: 2,
                delivery_id: Some(SequenceNo(300)),
                delivery_tag: DeliveryTag::new(Bytes::from_static(b"t")),
                message_format: Some(0),
                settled: Some(true),
                ..Default::default()
            },
            Transfer {
                handle: 70_000,
                more: true,
                aborted: true,
                ..Default::default()
            },
        ];
        for t in cases {
            let body = encode_body(&t, b"payload");
            assert_eq!(TransferHead::parse(&body), Some((&t).into()));
        }
        // Truncated or odd bodies never panic.
        let body = encode_body(&Transfer::default(), b"");
        for n in 0..body.len() {
            let _ = TransferHead::parse(&body[..n]);
        }
        assert_eq!(TransferHead::parse(&[0x00, 0x53, 0x14, 0x45]), None);
    }
}
