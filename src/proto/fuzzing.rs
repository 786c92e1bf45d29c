//! Random operation sequences across a client-role and a server-role [`Connection`], with a
//! checker watching both byte streams. Run by the cargo-fuzz target `fuzz/` (`engine_pair`)
//! and replayed by `tests/engine_fuzz_corpus.rs`, so both run exactly this code.
//!
//! # Input layout
//!
//! Three configuration bytes, then up to [`MAX_OPS`] operations, each an opcode byte
//! (see [`Op`]; the opcode is taken modulo 32) followed by its argument bytes. Missing bytes
//! read as zero; the script ends when the input does. Then both pipes are drained until the
//! engines go quiet, and the end-state invariants are checked.
//!
//! - byte 0: max-frame-size, `512 * (1 + bits 0-2)` for the client and `bits 3-5` for the
//!   server; bit 6: the client authenticates with SASL ANONYMOUS; bit 7: the server refuses it.
//! - byte 1: session window, `1 + bits 0-2` (client) and `1 + bits 3-5` (server); bits 6-7:
//!   the server's max-message-size (16 MiB, 1000, 4000 or 100 000).
//! - byte 2: handle-max (client bits 0-1, server bits 2-3), channel-max (client bits 4-5,
//!   server bits 6-7).
//!
//! The client and server are joined by two pipes. Bytes move only when a script says so, as
//! a prefix of what is pending (random chunk splits); time moves only when a script says so.
//!
//! # Invariants
//!
//! While no garbage has been injected (after that, only "no panic" is checked):
//! - everything each side writes decodes as protocol headers and valid frames, ends on a frame
//!   boundary, and no frame exceeds the max-frame-size the receiver advertised (512 before the
//!   writer has the receiver's open);
//! - frames follow the connection, session and link lifecycles: nothing before open or after
//!   close, nothing on a channel without a begin or after its end, nothing on a handle that is
//!   not attached or after its detach; channels and handles are not reused while in use and
//!   stay within the peer's channel-max and handle-max;
//! - a sender commits (`send`) a delivery only within the credit the receiver granted, as the
//!   sender knew it (delivery-count + link-credit of the receiver's last flow, §2.6.7); a drain
//!   advances delivery-count only when asked and never past that limit; the receiver never
//!   puts delivery-count ahead of what the sender reported;
//! - transfer frames on a session stay within the incoming window the receiver advertised
//!   (§2.5.6); flows report next-incoming-id and next-outgoing-id consistent with the
//!   transfers actually exchanged;
//! - delivery-ids are consecutive per session and direction, one per delivery; a delivery is
//!   settled at most once by each side, and no side sends a disposition for a delivery it
//!   knows to be settled (pre-settled, settled by itself, or settled by the peer), nor for one
//!   it has not received;
//! - no side writes an error (close, end, detach, rejected outcome) the script did not ask for,
//!   except a resource-limit-exceeded close from a timer;
//! - every [`Event::Delivery`] carries exactly the bytes that were sent, with the tag the
//!   sender chose, on the link paired with the sending one, once, in order; every
//!   [`Event::Disposition`] names (by the number `send` returned) a delivery its side sent on
//!   that link and the receiving application settled or updated; a client is never asked to
//!   accept an attach, and its `Attached` events name the right link;
//! - at the end, with both engines quiet and open: every message sent on a link that still
//!   exists has been delivered, and both ends of each link agree on its credit.

// A failed assertion is how the fuzzer reports a bug, so this module, unlike the rest of the
// protocol engine, panics on purpose; none of it runs on a broker's data path.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferry_codec::DecodeLimits;
use ferry_codec::definitions::{
    DeliveryTag, Error, ErrorCondition, MIN_MAX_FRAME_SIZE, ReceiverSettleMode, Role,
    SenderSettleMode, SequenceNo,
};
use ferry_codec::delivery_state::{
    Accepted, DeliveryState, Modified, Received, Rejected, Released,
};
use ferry_codec::frames::{AmqpFrame, FrameDecoder, FrameType, ProtocolId, take_protocol_header};
use ferry_codec::messaging::{
    Data, Message, MessageId, Properties, Section, Source, Target, TargetKind,
};
use ferry_codec::performatives::{Attach, Begin, Disposition, Flow, Performative, Transfer};
use ferry_codec::sasl::SaslFrameBody;
use ferry_codec::types::{Str, Symbol};

use crate::proto::{
    AttachReply, ClientSasl, Connection, ConnectionConfig, EndpointRole, Event, IncomingDelivery,
    LinkId, LinkSpec, SaslConfig, SessionId,
};

/// The most operations one input runs.
pub const MAX_OPS: usize = 300;

/// Operations, by opcode (the input byte modulo 32; the gaps repeat the opcode before them,
/// weighting the common operations). Arguments follow the opcode, one byte each; a
/// "selector" picks an item of a list modulo its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Deliver client bytes to the server: `[chunk]` (< 64: all; < 128: 1-8 bytes; < 192:
    /// up to 512 in steps of 8; else half of what is pending).
    DeliverToServer = 0,
    /// Deliver server bytes to the client: `[chunk]`, as above. Also opcode 3.
    DeliverToClient = 2,
    /// Exchange everything both ways, `1 + rounds % 8` times: `[rounds]`. Also opcode 5.
    Pump = 4,
    /// Client: begin a session.
    Begin = 6,
    /// Client: attach `[session selector, name, flags]`; flags bit 0: receiver; bits 1-2:
    /// snd-settle-mode (unsettled, settled, mixed); bit 3: rcv-settle-mode second; bits 4-6:
    /// max-message-size (0, 300, 2000, 1 MiB, else none). Also opcode 8.
    Attach = 7,
    /// Client: grant credit `[link selector, credit, flags]`; credit 250 and above means
    /// 1000; flags bit 0: drain.
    ClientGrant = 9,
    /// Client: send `[link selector, size, flags]`; flags bit 0: pre-settled; bit 1: our own
    /// delivery tag. Also opcode 11.
    ClientSend = 10,
    /// Client: settle a received delivery `[delivery selector, outcome]`.
    ClientSettle = 12,
    /// Client: update a received delivery without settling it `[delivery selector, state]`.
    ClientUpdate = 13,
    /// Client: detach `[link selector, flags]`; flags bit 0: closed; bit 1: with an error.
    ClientDetach = 14,
    /// Client: end `[session selector, flags]`; flags bit 0: with an error.
    ClientEnd = 15,
    /// Client: close `[guard, flags]`, only when `guard < 32`; flags bit 0: with an error.
    ClientClose = 16,
    /// Client: report a sending link drained `[link selector]`.
    ClientDrained = 17,
    /// Client: settle an outgoing delivery `[delivery selector, outcome]`.
    ClientSettleOutgoing = 18,
    /// Server: accept an attach request `[request selector, flags]`; flags bits 0-2:
    /// max-message-size (0, 300, 2000, else the default). Also opcode 20.
    ServerAccept = 19,
    /// Server: refuse an attach request `[request selector]`.
    ServerRefuse = 21,
    /// Server: grant credit `[link selector, credit, flags]`, as the client's.
    ServerGrant = 22,
    /// Server: send `[link selector, size, flags]`, as the client's. Also opcode 24.
    ServerSend = 23,
    /// Server: settle (outcome bit 7 clear) or update (set) a received delivery
    /// `[delivery selector, outcome]`.
    ServerSettle = 25,
    /// Server: report a sending link drained `[link selector]`.
    ServerDrained = 26,
    /// Server: detach `[link selector, flags]`, as the client's.
    ServerDetach = 27,
    /// Server: end a session `[session selector, flags]`, as the client's.
    ServerEnd = 28,
    /// Server: close `[guard, flags]`, as the client's.
    ServerClose = 29,
    /// Advance time and fire timers `[amount, sides]`; amount bits 6-7 pick the scale
    /// (10 ms, 250 ms, 1 s or 20 s plus a second) of bits 0-5; sides: 0 both, 1 client,
    /// 2 server, 3 both.
    Time = 30,
    /// Inject garbage `[guard, direction, length, bytes...]`, only when `guard == 0xa5`;
    /// direction bit 0: towards the client; `1 + length % 8` bytes follow.
    Garbage = 31,
}

impl Op {
    /// The operation an opcode byte stands for.
    pub fn from_byte(b: u8) -> Op {
        match b % 32 {
            0 | 1 => Op::DeliverToServer,
            2 | 3 => Op::DeliverToClient,
            4 | 5 => Op::Pump,
            6 => Op::Begin,
            7 | 8 => Op::Attach,
            9 => Op::ClientGrant,
            10 | 11 => Op::ClientSend,
            12 => Op::ClientSettle,
            13 => Op::ClientUpdate,
            14 => Op::ClientDetach,
            15 => Op::ClientEnd,
            16 => Op::ClientClose,
            17 => Op::ClientDrained,
            18 => Op::ClientSettleOutgoing,
            19 | 20 => Op::ServerAccept,
            21 => Op::ServerRefuse,
            22 => Op::ServerGrant,
            23 | 24 => Op::ServerSend,
            25 => Op::ServerSettle,
            26 => Op::ServerDrained,
            27 => Op::ServerDetach,
            28 => Op::ServerEnd,
            29 => Op::ServerClose,
            30 => Op::Time,
            _ => Op::Garbage,
        }
    }
}

/// Runs one script (see the module documentation) and checks the invariants.
pub fn engine_pair(data: &[u8]) {
    let mut h = Harness::new(data);
    h.run();
}

/// [`engine_pair`], printing each operation, frame and event to stderr: for reading a failing
/// input.
pub fn engine_pair_traced(data: &[u8]) {
    let mut h = Harness::new(data);
    h.trace = true;
    if let Some(w) = h.wire.as_mut() {
        w.trace = true;
    }
    h.run();
}

// ---------------------------------------------------------------------------------------
// Small helpers.

const CLIENT: usize = 0;
const SERVER: usize = 1;
const SIDE: [&str; 2] = ["client", "server"];
const NAMES: [&str; 4] = ["a", "b", "c", "shared"];

fn peer(side: usize) -> usize {
    1 - side
}

/// RFC-1982 `a < b`.
fn lt(a: u32, b: u32) -> bool {
    let d = b.wrapping_sub(a);
    d != 0 && d < 1 << 31
}

/// RFC-1982 `a <= b`.
fn le(a: u32, b: u32) -> bool {
    a == b || lt(a, b)
}

struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.data.split_first()?;
        self.data = rest;
        Some(b)
    }

    fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }

    /// A selector: an index below `len`, or `None` for an empty list (a byte is read anyway).
    fn index(&mut self, len: usize) -> Option<usize> {
        let b = usize::from(self.byte());
        (len > 0).then(|| b % len)
    }
}

/// A message carrying `seq` as its message-id and a body of `len` bytes.
fn message(seq: u64, len: usize) -> Message {
    let body: Vec<u8> = (0..len)
        .map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8))
        .collect();
    Message::from_sections(&[
        Section::Properties(Properties {
            message_id: Some(MessageId::Ulong(seq)),
            ..Default::default()
        }),
        Section::Data(Data(Bytes::from(body))),
    ])
    .expect("a message of our own encodes")
}

fn message_len(b: u8) -> usize {
    let n = usize::from(b & 63);
    match b >> 6 {
        0 => n,
        1 => n * 16,
        2 => n * 64,
        _ => n * 160,
    }
}

/// An error the script chose; only such errors (and timer closes) may appear on the wire.
fn app_error(b: u8) -> Error {
    let condition = match b % 3 {
        0 => ErrorCondition::NotFound,
        1 => ErrorCondition::InternalError,
        _ => ErrorCondition::Other(Symbol::from_static("com.example:fuzz")),
    };
    Error::new(condition, "fuzz: chosen by the script")
}

fn is_app_error(e: &Error) -> bool {
    e.description
        .as_ref()
        .is_some_and(|d| d.as_str().starts_with("fuzz"))
}

fn outcome(b: u8) -> DeliveryState {
    match b % 5 {
        0 | 1 => DeliveryState::Accepted(Accepted {}),
        2 => DeliveryState::Released(Released {}),
        3 => DeliveryState::Rejected(Rejected {
            error: Some(app_error(b >> 3)),
        }),
        _ => DeliveryState::Modified(Modified {
            delivery_failed: Some(b & 8 != 0),
            undeliverable_here: (b & 16 != 0).then_some(true),
            message_annotations: None,
        }),
    }
}

fn credit_of(b: u8) -> u32 {
    if b >= 250 { 1000 } else { u32::from(b % 12) }
}

// ---------------------------------------------------------------------------------------
// The checker: a model of both ends built from the frames each side writes (at the moment it
// writes them) and from what has been delivered to each side (what it knows).

/// What the reader of a frame learns when it is delivered.
#[derive(Debug)]
enum Learn {
    Open,
    Begin {
        sess: usize,
        window: u32,
    },
    Flow {
        sess: usize,
        next_incoming: Option<u32>,
        window: u32,
        link: Option<(usize, LinkFlow)>,
    },
    Transfer {
        sess: usize,
        link: usize,
        first: Option<u32>,
        settled: bool,
    },
    Disposition {
        sess: usize,
        owner: usize,
        first: u32,
        span: u32,
        settled: bool,
    },
    Attach {
        link: usize,
    },
    Detach {
        link: usize,
    },
    End {
        sess: usize,
    },
}

#[derive(Debug, Clone, Copy)]
enum LinkFlow {
    /// From the receiver: the delivery-limit (delivery-count + link-credit) and drain.
    Credit { limit: u32, drain: bool },
    /// From the sender: its delivery-count.
    Count { dc: u32 },
}

/// One side's output stream, decoded as it is written.
#[derive(Debug)]
struct OutStream {
    buf: BytesMut,
    decoder: FrameDecoder,
    protocol: Option<ProtocolId>,
    written: u64,
    delivered: u64,
    /// Frames not yet delivered: where they end in the stream, and what the reader learns.
    learned: VecDeque<(u64, Learn)>,
}

impl OutStream {
    fn new() -> Self {
        Self {
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(u32::MAX),
            protocol: None,
            written: 0,
            delivered: 0,
            learned: VecDeque::new(),
        }
    }
}

#[derive(Debug, Default)]
struct DeliveryModel {
    /// The receiver has the first transfer.
    received: bool,
    /// Each side has settled it (pre-settled transfer or settled disposition).
    settled_by: [bool; 2],
    /// When (in which delivery to it) each side learned that its peer settled it.
    peer_settled_seen: [Option<u64>; 2],
}

#[derive(Debug, Default)]
struct SessModel {
    ch: [Option<u16>; 2],
    wrote_end: [bool; 2],
    got_end: [bool; 2],
    handle_max: [Option<u32>; 2],
    /// The side has the peer's begin.
    knows_begin: [bool; 2],
    initial_out: [Option<u32>; 2],
    /// The side's next outgoing transfer-id.
    next_out: [u32; 2],
    /// Transfers of the peer the side has received.
    rcvd: [u32; 2],
    /// The delivery (epoch) in which `rcvd` last grew, and its value before that delivery.
    rcvd_epoch: [u64; 2],
    rcvd_base: [u32; 2],
    /// The peer's incoming window as the side knows it: (next-incoming-id, window).
    window: [Option<(Option<u32>, u32)>; 2],
    next_delivery: [Option<u32>; 2],
    /// Deliveries by the side that sent them.
    deliveries: [HashMap<u32, DeliveryModel>; 2],
    handles: [HashMap<u32, usize>; 2],
    links: Vec<usize>,
}

#[derive(Debug)]
struct LinkModel {
    sess: usize,
    name: String,
    sender: usize,
    handle: [Option<u32>; 2],
    ids: [Option<LinkId>; 2],
    wrote_detach: [bool; 2],
    got_detach: [bool; 2],
    initial_dc: u32,
    /// The sender's delivery-count as its application committed it (`send`, drain).
    committed: u32,
    /// The sender's delivery-count as its first transfers put it on the wire.
    wire_dc: u32,
    /// The highest delivery-count the receiver can know of.
    seen_by_receiver: u32,
    /// The delivery-limit the sender knows (from the receiver's last flow).
    limit: Option<u32>,
    /// The sender knows the receiver asked to drain.
    drain: bool,
    /// A multi-frame delivery being written.
    in_progress: Option<u32>,
}

#[derive(Debug)]
struct Wire {
    out: [OutStream; 2],
    open_max_frame: [Option<u32>; 2],
    channel_max: [Option<u16>; 2],
    /// The side has the peer's open.
    knows_open: [bool; 2],
    wrote_close: [bool; 2],
    sessions: Vec<SessModel>,
    chan: [HashMap<u16, usize>; 2],
    links: Vec<LinkModel>,
    by_id: [HashMap<LinkId, usize>; 2],
    /// Links the client's last output attached.
    new_client_links: Vec<usize>,
    /// Client attaches delivered to the server, awaiting its `AttachRequested`.
    attach_fifo: VecDeque<usize>,
    /// The output being checked was written by a timer.
    timeout_ctx: bool,
    /// Counts deliveries of bytes, so knowledge can be dated.
    epoch: u64,
    /// The output being checked answers the delivery numbered so: what was learned from that
    /// delivery may or may not have preceded it.
    batch: Option<u64>,
    trace: bool,
}

impl Wire {
    fn new() -> Self {
        Self {
            out: [OutStream::new(), OutStream::new()],
            open_max_frame: [None; 2],
            channel_max: [None; 2],
            knows_open: [false; 2],
            wrote_close: [false; 2],
            sessions: Vec::new(),
            chan: [HashMap::new(), HashMap::new()],
            links: Vec::new(),
            by_id: [HashMap::new(), HashMap::new()],
            new_client_links: Vec::new(),
            attach_fifo: VecDeque::new(),
            timeout_ctx: false,
            epoch: 0,
            batch: None,
            trace: false,
        }
    }

    fn check_error(&self, w: usize, what: &str, error: Option<&Error>) {
        if let Some(e) = error {
            let timer = self.timeout_ctx && e.condition == ErrorCondition::ResourceLimitExceeded;
            assert!(
                is_app_error(e) || timer,
                "{} wrote {what} with an error nobody asked for: {e:?}",
                SIDE[w]
            );
        }
    }

    /// Decodes and checks what `w` just wrote.
    fn on_output(&mut self, w: usize, bytes: &[u8]) {
        let who = SIDE[w];
        self.out[w].buf.extend_from_slice(bytes);
        while !self.out[w].buf.is_empty() {
            let out = &mut self.out[w];
            if out.protocol.is_none() || out.buf.first() == Some(&b'A') {
                let h = take_protocol_header(&mut out.buf)
                    .unwrap_or_else(|e| panic!("{who} wrote a bad protocol header: {e}"))
                    .unwrap_or_else(|| panic!("{who}'s output ends inside a protocol header"));
                assert!(h.is_v1_0(), "{who} wrote protocol header {h:?}");
                out.protocol = Some(h.id);
                out.written += 8;
                continue;
            }
            let size = match out.buf.get(..4) {
                Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
                _ => panic!("{who}'s output ends inside a frame header"),
            };
            let raw = out
                .decoder
                .decode(&mut out.buf)
                .unwrap_or_else(|e| panic!("{who} wrote an undecodable frame: {e}"))
                .unwrap_or_else(|| panic!("{who}'s output ends inside a {size}-byte frame"));
            out.written += u64::from(size);
            let end = out.written;
            let learn = match (out.protocol, raw.frame_type) {
                (Some(ProtocolId::SASL), FrameType::Sasl) => {
                    assert!(
                        size <= MIN_MAX_FRAME_SIZE,
                        "{who} wrote a {size}-byte SASL frame"
                    );
                    SaslFrameBody::decode_frame(&raw, DecodeLimits::DEFAULT)
                        .unwrap_or_else(|e| panic!("{who} wrote an undecodable SASL frame: {e}"));
                    None
                }
                (Some(ProtocolId::AMQP), FrameType::Amqp) => {
                    let limit = match (self.knows_open[w], self.open_max_frame[peer(w)]) {
                        (true, Some(max)) => max,
                        _ => MIN_MAX_FRAME_SIZE,
                    };
                    assert!(
                        size <= limit,
                        "{who} wrote a {size}-byte frame; the peer accepts at most {limit}"
                    );
                    let frame = AmqpFrame::decode(&raw, DecodeLimits::DEFAULT)
                        .unwrap_or_else(|e| panic!("{who} wrote an undecodable frame: {e}"));
                    self.on_frame(w, frame)
                }
                (p, t) => panic!("{who} wrote a {t:?} frame after protocol header {p:?}"),
            };
            if let Some(l) = learn {
                self.out[w].learned.push_back((end, l));
            }
        }
    }

    /// `n` more bytes of `from`'s output were handed to its peer.
    fn on_delivered(&mut self, from: usize, n: u64) {
        self.epoch += 1;
        self.batch = Some(self.epoch);
        self.out[from].delivered += n;
        let delivered = self.out[from].delivered;
        while self.out[from]
            .learned
            .front()
            .is_some_and(|(end, _)| *end <= delivered)
        {
            if let Some((_, learn)) = self.out[from].learned.pop_front() {
                self.apply(peer(from), learn);
            }
        }
    }

    fn on_frame(&mut self, w: usize, frame: AmqpFrame) -> Option<Learn> {
        let who = SIDE[w];
        if self.trace {
            eprintln!(
                "    {who} wrote ch {}: {:?}",
                frame.channel, frame.performative
            );
        }
        assert!(!self.wrote_close[w], "{who} wrote a frame after its close");
        let p = frame.performative?; // heartbeats teach nothing
        let ch = frame.channel;
        if let Performative::Open(o) = &p {
            assert_eq!(ch, 0, "{who} sent open on channel {ch}");
            assert!(self.open_max_frame[w].is_none(), "{who} sent open twice");
            self.open_max_frame[w] = Some(o.max_frame_size);
            self.channel_max[w] = Some(o.channel_max);
            return Some(Learn::Open);
        }
        assert!(
            self.open_max_frame[w].is_some(),
            "{who} wrote {} before open",
            p.name()
        );
        match p {
            Performative::Close(c) => {
                self.check_error(w, "close", c.error.as_ref());
                self.wrote_close[w] = true;
                None
            }
            Performative::Begin(b) => Some(self.on_begin(w, ch, &b)),
            p => {
                let name = p.name();
                let &sess = self.chan[w].get(&ch).unwrap_or_else(|| {
                    panic!("{who} wrote {name} on channel {ch}, where it has no session (or one it ended)")
                });
                assert!(
                    !self.sessions[sess].wrote_end[w],
                    "{who} wrote {name} on channel {ch} after ending that session"
                );
                match p {
                    Performative::Attach(a) => Some(self.on_attach(w, sess, &a)),
                    Performative::Flow(f) => Some(self.on_flow(w, sess, &f)),
                    Performative::Transfer(t) => Some(self.on_transfer(w, sess, &t)),
                    Performative::Disposition(d) => Some(self.on_disposition(w, sess, &d)),
                    Performative::Detach(d) => {
                        let link = self.link_of(w, sess, d.handle, "detach");
                        let l = &mut self.links[link];
                        assert!(!l.wrote_detach[w], "{who} detached link '{}' twice", l.name);
                        l.wrote_detach[w] = true;
                        self.check_error(w, "detach", d.error.as_ref());
                        self.maybe_free_handle(link, w);
                        Some(Learn::Detach { link })
                    }
                    Performative::End(e) => {
                        self.check_error(w, "end", e.error.as_ref());
                        self.sessions[sess].wrote_end[w] = true;
                        self.maybe_free_channel(sess, w);
                        Some(Learn::End { sess })
                    }
                    p => panic!("{who} wrote {} on a session", p.name()),
                }
            }
        }
    }

    fn link_of(&self, w: usize, sess: usize, handle: u32, what: &str) -> usize {
        *self.sessions[sess].handles[w]
            .get(&handle)
            .unwrap_or_else(|| {
                panic!(
                    "{} wrote {what} on handle {handle}, which it has not attached (or has \
                     detached)",
                    SIDE[w]
                )
            })
    }

    fn maybe_free_handle(&mut self, link: usize, side: usize) {
        let l = &self.links[link];
        if l.wrote_detach[side]
            && l.got_detach[side]
            && let Some(h) = l.handle[side]
        {
            let handles = &mut self.sessions[l.sess].handles[side];
            if handles.get(&h) == Some(&link) {
                handles.remove(&h);
            }
        }
    }

    fn maybe_free_channel(&mut self, sess: usize, side: usize) {
        let s = &self.sessions[sess];
        if s.wrote_end[side]
            && s.got_end[side]
            && let Some(ch) = s.ch[side]
            && self.chan[side].get(&ch) == Some(&sess)
        {
            self.chan[side].remove(&ch);
        }
    }

    fn on_begin(&mut self, w: usize, ch: u16, b: &Begin) -> Learn {
        let who = SIDE[w];
        assert!(
            !self.chan[w].contains_key(&ch),
            "{who} began a session on channel {ch}, which is still in use"
        );
        if self.knows_open[w]
            && let Some(max) = self.channel_max[peer(w)]
        {
            assert!(
                ch <= max,
                "{who} began a session on channel {ch}, beyond the peer's channel-max {max}"
            );
        }
        let sess = match b.remote_channel {
            None => {
                assert_eq!(w, CLIENT, "the server began a session of its own");
                self.sessions.push(SessModel::default());
                self.sessions.len() - 1
            }
            Some(rc) => {
                let &sess = self.chan[peer(w)].get(&rc).unwrap_or_else(|| {
                    panic!("{who}'s begin answers channel {rc}, where the peer began nothing")
                });
                assert!(
                    self.sessions[sess].ch[w].is_none(),
                    "{who} answered the begin on channel {rc} twice"
                );
                sess
            }
        };
        let s = &mut self.sessions[sess];
        s.ch[w] = Some(ch);
        s.initial_out[w] = Some(b.next_outgoing_id.0);
        s.next_out[w] = b.next_outgoing_id.0;
        s.handle_max[w] = Some(b.handle_max);
        self.chan[w].insert(ch, sess);
        Learn::Begin {
            sess,
            window: b.incoming_window,
        }
    }

    fn on_attach(&mut self, w: usize, sess: usize, a: &Attach) -> Learn {
        let who = SIDE[w];
        let h = a.handle;
        let name = a.name.as_str();
        let s = &self.sessions[sess];
        assert!(
            !s.handles[w].contains_key(&h),
            "{who} attached '{name}' on handle {h}, which is still in use"
        );
        if s.knows_begin[w]
            && let Some(max) = s.handle_max[peer(w)]
        {
            assert!(
                h <= max,
                "{who} attached '{name}' on handle {h}, beyond the peer's handle-max {max}"
            );
        }
        let sender = if a.role == Role::Sender { w } else { peer(w) };
        let link = if w == CLIENT {
            self.links.push(LinkModel {
                sess,
                name: name.to_owned(),
                sender,
                handle: [None; 2],
                ids: [None; 2],
                wrote_detach: [false; 2],
                got_detach: [false; 2],
                initial_dc: 0,
                committed: 0,
                wire_dc: 0,
                seen_by_receiver: 0,
                limit: None,
                drain: false,
                in_progress: None,
            });
            let link = self.links.len() - 1;
            self.sessions[sess].links.push(link);
            self.new_client_links.push(link);
            link
        } else {
            // The server only answers: the pending client attach with this name and the
            // opposite role (the script keeps such names unique, as §2.6.1 requires).
            let candidates: Vec<usize> = s
                .links
                .iter()
                .copied()
                .filter(|&i| {
                    let l = &self.links[i];
                    l.handle[SERVER].is_none()
                        && l.handle[CLIENT].is_some()
                        && l.name == name
                        && l.sender == sender
                })
                .collect();
            assert_eq!(
                candidates.len(),
                1,
                "the server's attach '{name}' answers {} pending client attaches",
                candidates.len()
            );
            candidates[0]
        };
        let l = &mut self.links[link];
        l.handle[w] = Some(h);
        if l.sender == w {
            let dc = a
                .initial_delivery_count
                .unwrap_or_else(|| panic!("{who} attached as sender without a delivery-count"))
                .0;
            l.initial_dc = dc;
            l.committed = dc;
            l.wire_dc = dc;
            l.seen_by_receiver = dc;
        }
        self.sessions[sess].handles[w].insert(h, link);
        Learn::Attach { link }
    }

    fn window_limit(&self, sess: usize, w: usize) -> Option<u32> {
        let s = &self.sessions[sess];
        let (next_incoming, window) = s.window[w]?;
        let base = next_incoming.or(s.initial_out[w])?;
        Some(base.wrapping_add(window))
    }

    fn on_flow(&mut self, w: usize, sess: usize, f: &Flow) -> Learn {
        let who = SIDE[w];
        let s = &self.sessions[sess];
        if let Some(nii) = f.next_incoming_id {
            let init = s.initial_out[peer(w)].unwrap_or_else(|| {
                panic!("{who}'s flow has a next-incoming-id before the peer's begin")
            });
            // Transfers that came in the input this flow answers may have been read after
            // the flow was written.
            let low = if self.batch == Some(s.rcvd_epoch[w]) {
                s.rcvd_base[w]
            } else {
                s.rcvd[w]
            };
            let got = nii.0.wrapping_sub(init);
            assert!(
                le(low, got) && le(got, s.rcvd[w]),
                "{who}'s flow says next-incoming-id {} after receiving {} transfers from {init}",
                nii.0,
                s.rcvd[w]
            );
        }
        assert_eq!(
            f.next_outgoing_id.0, s.next_out[w],
            "{who}'s flow says next-outgoing-id {} but its next transfer-id is {}",
            f.next_outgoing_id.0, s.next_out[w]
        );
        let link = match f.handle {
            None => None,
            Some(h) => {
                let link = self.link_of(w, sess, h, "flow");
                let l = &mut self.links[link];
                assert!(
                    !l.wrote_detach[w],
                    "{who} wrote a flow on link '{}' after detaching it",
                    l.name
                );
                if l.sender == w {
                    // The count a sender reports covers the transfers it has written, plus
                    // the credit a drain used up; deliveries still queued are not on the wire.
                    let dc = f
                        .delivery_count
                        .unwrap_or_else(|| panic!("{who}'s sender flow has no delivery-count"))
                        .0;
                    let advance = dc.wrapping_sub(l.wire_dc);
                    assert!(
                        advance < 1 << 31,
                        "{who}'s flow puts delivery-count of '{}' at {dc}, behind the {} \
                         deliveries it has sent",
                        l.name,
                        l.wire_dc
                    );
                    if advance > 0 {
                        assert!(
                            l.drain,
                            "{who}'s flow moves delivery-count of '{}' from {} to {dc}, past \
                             the deliveries it has sent, without a drain",
                            l.name, l.wire_dc
                        );
                        let limit = l.limit.unwrap_or(l.committed);
                        let after = l.committed.wrapping_add(advance);
                        assert!(
                            le(after, limit),
                            "{who}'s drain moves delivery-count of '{}' {advance} past the \
                             {} deliveries it has sent, beyond the credit left (the \
                             delivery-limit it knew was {limit}, {} deliveries committed)",
                            l.name,
                            l.wire_dc,
                            l.committed
                        );
                        l.committed = after;
                        l.wire_dc = dc;
                    }
                    Some((link, LinkFlow::Count { dc }))
                } else {
                    let dc = f.delivery_count.map_or(l.initial_dc, |d| d.0);
                    assert!(
                        le(dc, l.seen_by_receiver),
                        "{who}'s flow puts delivery-count of '{}' at {dc}, ahead of the {} \
                         the sender reported",
                        l.name,
                        l.seen_by_receiver
                    );
                    f.link_credit.map(|lc| {
                        (
                            link,
                            LinkFlow::Credit {
                                limit: dc.wrapping_add(lc),
                                drain: f.drain,
                            },
                        )
                    })
                }
            }
        };
        Learn::Flow {
            sess,
            next_incoming: f.next_incoming_id.map(|n| n.0),
            window: f.incoming_window,
            link,
        }
    }

    fn on_transfer(&mut self, w: usize, sess: usize, t: &Transfer) -> Learn {
        let who = SIDE[w];
        let link = self.link_of(w, sess, t.handle, "transfer");
        {
            let l = &self.links[link];
            assert_eq!(
                l.sender, w,
                "{who} sent a transfer on link '{}', where it is the receiver",
                l.name
            );
            assert!(
                !l.wrote_detach[w],
                "{who} sent a transfer on link '{}' after detaching it",
                l.name
            );
        }
        let tid = self.sessions[sess].next_out[w];
        let limit = self.window_limit(sess, w).unwrap_or_else(|| {
            panic!("{who} sent a transfer before it knew the peer's incoming window")
        });
        assert!(
            lt(tid, limit),
            "{who} sent transfer-id {tid}, beyond the incoming window the peer advertised \
             (it ends before {limit})"
        );
        let s = &mut self.sessions[sess];
        s.next_out[w] = tid.wrapping_add(1);
        let l = &mut self.links[link];
        let settled = t.settled == Some(true);
        let first = match l.in_progress {
            None => {
                let id = t
                    .delivery_id
                    .unwrap_or_else(|| panic!("{who}'s first transfer has no delivery-id"))
                    .0;
                assert!(
                    t.delivery_tag.is_some(),
                    "{who}'s first transfer has no delivery-tag"
                );
                if let Some(expected) = s.next_delivery[w] {
                    assert_eq!(
                        id, expected,
                        "{who}'s delivery-ids are not consecutive: {id} where {expected} was due"
                    );
                }
                s.next_delivery[w] = Some(id.wrapping_add(1));
                assert!(
                    lt(l.wire_dc, l.committed),
                    "{who} put more deliveries on link '{}' than its application sent",
                    l.name
                );
                l.wire_dc = l.wire_dc.wrapping_add(1);
                let mut d = DeliveryModel::default();
                d.settled_by[w] = settled;
                let old = s.deliveries[w].insert(id, d);
                assert!(old.is_none(), "{who} reused delivery-id {id}");
                Some(id)
            }
            Some(current) => {
                if let Some(id) = t.delivery_id {
                    assert_eq!(
                        id.0, current,
                        "{who} changed the delivery-id within a delivery"
                    );
                }
                if settled && let Some(d) = s.deliveries[w].get_mut(&current) {
                    d.settled_by[w] = true;
                }
                None
            }
        };
        l.in_progress = if t.more && !t.aborted {
            first.or(l.in_progress)
        } else {
            None
        };
        Learn::Transfer {
            sess,
            link,
            first,
            settled,
        }
    }

    fn on_disposition(&mut self, w: usize, sess: usize, d: &Disposition) -> Learn {
        let who = SIDE[w];
        let owner = if d.role == Role::Sender { w } else { peer(w) };
        let first = d.first.0;
        let span = d.last.map_or(0, |l| l.0.wrapping_sub(first));
        assert!(
            span < 4096,
            "{who} wrote a disposition over {span} delivery-ids"
        );
        if let Some(DeliveryState::Rejected(r)) = &d.state {
            self.check_error(w, "a rejected outcome", r.error.as_ref());
        }
        for i in 0..=span {
            let id = first.wrapping_add(i);
            let del = self.sessions[sess].deliveries[owner]
                .get_mut(&id)
                .unwrap_or_else(|| {
                    panic!(
                        "{who}'s disposition names delivery-id {id}, which the {} never sent",
                        SIDE[owner]
                    )
                });
            if owner != w {
                assert!(
                    del.received,
                    "{who} wrote a disposition for delivery {id} before receiving it"
                );
            }
            assert!(
                !del.settled_by[w],
                "{who} wrote a disposition for delivery {id}, which it had settled already"
            );
            // Learned in the input being answered, the peer's settlement may have come after
            // this frame was written (an echo under rcv-settle-mode second, say): only what was
            // known before that input counts.
            if let Some(seen) = del.peer_settled_seen[w] {
                assert!(
                    self.batch.is_some_and(|b| seen >= b),
                    "{who} wrote a disposition for delivery {id}, which it knew the peer had \
                     settled"
                );
            }
            if d.settled {
                del.settled_by[w] = true;
            }
        }
        Learn::Disposition {
            sess,
            owner,
            first,
            span,
            settled: d.settled,
        }
    }

    /// `to` has processed a frame of its peer.
    fn apply(&mut self, to: usize, learn: Learn) {
        let from = peer(to);
        // After its close a side reads nothing but the peer's close (§2.4.3).
        if self.wrote_close[to] {
            return;
        }
        // A side that has ended a session ignores everything on it but the peer's end.
        let sess = match &learn {
            Learn::Flow { sess, .. }
            | Learn::Transfer { sess, .. }
            | Learn::Disposition { sess, .. } => Some(*sess),
            Learn::Attach { link } | Learn::Detach { link } => Some(self.links[*link].sess),
            Learn::Open | Learn::Begin { .. } | Learn::End { .. } => None,
        };
        if sess.is_some_and(|s| self.sessions[s].wrote_end[to]) {
            return;
        }
        match learn {
            Learn::Open => self.knows_open[to] = true,
            Learn::Begin { sess, window } => {
                let s = &mut self.sessions[sess];
                s.knows_begin[to] = true;
                s.window[to] = Some((None, window));
            }
            Learn::Flow {
                sess,
                next_incoming,
                window,
                link,
            } => {
                self.sessions[sess].window[to] = Some((next_incoming, window));
                match link {
                    Some((l, LinkFlow::Credit { limit, drain })) => {
                        self.links[l].limit = Some(limit);
                        self.links[l].drain = drain;
                    }
                    Some((l, LinkFlow::Count { dc })) => {
                        let l = &mut self.links[l];
                        if lt(l.seen_by_receiver, dc) {
                            l.seen_by_receiver = dc;
                        }
                    }
                    None => {}
                }
            }
            Learn::Transfer {
                sess,
                link,
                first,
                settled,
            } => {
                let s = &mut self.sessions[sess];
                if s.rcvd_epoch[to] != self.epoch {
                    s.rcvd_epoch[to] = self.epoch;
                    s.rcvd_base[to] = s.rcvd[to];
                }
                s.rcvd[to] = s.rcvd[to].wrapping_add(1);
                if let Some(id) = first {
                    let l = &mut self.links[link];
                    l.seen_by_receiver = l.seen_by_receiver.wrapping_add(1);
                    if let Some(d) = s.deliveries[from].get_mut(&id) {
                        d.received = true;
                        if settled {
                            d.peer_settled_seen[to] = Some(self.epoch);
                        }
                    }
                } else if settled {
                    // A later frame settling the delivery: which one is the link's business;
                    // the engine never does this, so nothing more is tracked.
                }
            }
            Learn::Disposition {
                sess,
                owner,
                first,
                span,
                settled,
            } => {
                if settled {
                    for i in 0..=span {
                        let id = first.wrapping_add(i);
                        if let Some(d) = self.sessions[sess].deliveries[owner].get_mut(&id) {
                            d.peer_settled_seen[to].get_or_insert(self.epoch);
                        }
                    }
                }
            }
            Learn::Attach { link } => {
                if to == SERVER {
                    self.attach_fifo.push_back(link);
                }
            }
            Learn::Detach { link } => {
                self.links[link].got_detach[to] = true;
                self.maybe_free_handle(link, to);
            }
            Learn::End { sess } => {
                self.sessions[sess].got_end[to] = true;
                self.maybe_free_channel(sess, to);
            }
        }
    }

    /// The application `side` committed a delivery on `link`.
    fn commit_send(&mut self, side: usize, link: LinkId) {
        let who = SIDE[side];
        let &m = self.by_id[side]
            .get(&link)
            .unwrap_or_else(|| panic!("{who} sent on {link:?}, a link the checker never saw"));
        let l = &mut self.links[m];
        assert_eq!(l.sender, side, "{who} sent on '{}' as receiver", l.name);
        let limit = l.limit.unwrap_or_else(|| {
            panic!(
                "{who} sent on '{}' without ever being granted credit",
                l.name
            )
        });
        assert!(
            lt(l.committed, limit),
            "{who} sent delivery number {} on '{}' beyond the credit the receiver granted \
             (delivery-limit {limit})",
            l.committed,
            l.name
        );
        l.committed = l.committed.wrapping_add(1);
    }

    /// The server reported an attach: pair its link with the client attach it answers.
    fn map_attach_request(&mut self, link: LinkId, attach: &Attach) {
        let m = self.attach_fifo.pop_front().unwrap_or_else(|| {
            panic!(
                "the server reported attach '{}' which the checker never saw arrive",
                attach.name
            )
        });
        let l = &self.links[m];
        assert!(
            l.handle[CLIENT] == Some(attach.handle) && l.name == attach.name.as_str(),
            "the server reported attach '{}' (handle {}) where '{}' (handle {:?}) was due",
            attach.name,
            attach.handle,
            l.name,
            l.handle[CLIENT]
        );
        self.links[m].ids[SERVER] = Some(link);
        self.by_id[SERVER].insert(link, m);
    }

    /// The client reported the server's answer to its attach.
    fn check_attached(&self, link: LinkId, attach: &Attach) {
        let &m = self.by_id[CLIENT]
            .get(&link)
            .unwrap_or_else(|| panic!("the client reported {link:?} attached, an unknown link"));
        let l = &self.links[m];
        assert!(
            l.handle[SERVER] == Some(attach.handle) && l.name == attach.name.as_str(),
            "the client took the server's attach '{}' (handle {}) as the answer for '{}' \
             (answered with handle {:?})",
            attach.name,
            attach.handle,
            l.name,
            l.handle[SERVER]
        );
    }
}

// ---------------------------------------------------------------------------------------
// The harness: two engines, two pipes, a clock, and the application bookkeeping a script
// needs to pick its arguments.

#[derive(Debug, Clone)]
struct AppLink {
    id: LinkId,
    role: Role,
    name: &'static str,
}

#[derive(Debug, Default)]
struct App {
    sessions: Vec<SessionId>,
    /// Links the application may use.
    links: Vec<AppLink>,
    /// Every link the client ever attached (names must stay unique while they exist).
    all_links: Vec<AppLink>,
    requests: Vec<(LinkId, Option<Source>, Option<TargetKind>)>,
    received: Vec<(LinkId, SequenceNo)>,
    unsettled_out: Vec<(LinkId, SequenceNo)>,
    last_seq: HashMap<LinkId, u64>,
}

#[derive(Debug)]
struct Peer {
    conn: Connection,
    inbox: BytesMut,
    /// Written, not yet delivered to the peer.
    unsent: BytesMut,
    app: App,
}

#[derive(Debug)]
struct Sent {
    from: usize,
    link: LinkId,
    bytes: Bytes,
    tag: Option<Bytes>,
    delivered: bool,
    /// The receiving application settled or updated it.
    disposed: bool,
}

struct Harness<'a> {
    input: Input<'a>,
    now: Instant,
    ends: [Peer; 2],
    /// The checker; dropped once garbage is injected.
    wire: Option<Wire>,
    sent: Vec<Sent>,
    /// Sent deliveries by (side, link, the number `send` returned).
    sent_index: HashMap<(usize, LinkId, u32), usize>,
    /// Unsettled deliveries each side received, by (side, link, delivery-id): the sender may
    /// settle them, which the receiving engine reports as a disposition.
    peer_settles: std::collections::HashSet<(usize, LinkId, u32)>,
    /// Received deliveries by (side, link, delivery-id).
    received_index: HashMap<(usize, LinkId, u32), usize>,
    sasl_ok: bool,
    trace: bool,
}

impl<'a> Harness<'a> {
    fn new(data: &'a [u8]) -> Self {
        let mut input = Input { data };
        let c0 = input.byte();
        let c1 = input.byte();
        let c2 = input.byte();
        let frame = |bits: u8| 512 * (1 + u32::from(bits & 7));
        let server_max_message = match c1 >> 6 {
            0 => 16 << 20,
            1 => 1000,
            2 => 4000,
            _ => 100_000,
        };
        let client = ConnectionConfig {
            role: EndpointRole::Client,
            container_id: "fuzz-client".into(),
            hostname: Some("localhost".into()),
            max_frame_size: frame(c0),
            channel_max: u16::from((c2 >> 4) & 3),
            handle_max: u32::from(c2 & 3),
            session_window: 1 + u32::from(c1 & 7),
            sasl: SaslConfig {
                client: (c0 & 0x40 != 0).then(|| ClientSasl {
                    mechanism: Symbol::from_static("ANONYMOUS"),
                    initial_response: Some(Bytes::from_static(b"fuzz")),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let server = ConnectionConfig {
            role: EndpointRole::Server,
            container_id: "fuzz-server".into(),
            max_frame_size: frame(c0 >> 3),
            channel_max: u16::from((c2 >> 6) & 3),
            handle_max: u32::from((c2 >> 2) & 3),
            session_window: 1 + u32::from((c1 >> 3) & 7),
            max_message_size: server_max_message,
            sasl: SaslConfig {
                mechanisms: vec![Symbol::from_static("ANONYMOUS")],
                allow_plain_header: true,
                client: None,
            },
            ..Default::default()
        };
        let now = Instant::now();
        let end = |cfg| Peer {
            conn: Connection::new(cfg, now),
            inbox: BytesMut::new(),
            unsent: BytesMut::new(),
            app: App::default(),
        };
        Harness {
            input,
            now,
            ends: [end(client), end(server)],
            wire: Some(Wire::new()),
            sent: Vec::new(),
            sent_index: HashMap::new(),
            peer_settles: std::collections::HashSet::new(),
            received_index: HashMap::new(),
            sasl_ok: c0 & 0x80 == 0,
            trace: false,
        }
    }

    fn run(&mut self) {
        self.collect(CLIENT);
        for _ in 0..MAX_OPS {
            let Some(op) = self.input.next() else {
                break;
            };
            let op = Op::from_byte(op);
            if self.trace {
                eprintln!(
                    "op {op:?} (next bytes {:?})",
                    &self.input.data[..self.input.data.len().min(4)]
                );
            }
            self.op(op);
        }
        let quiet = self.quiesce();
        if self.wire.is_some() {
            assert!(quiet, "the engines kept talking after the script ended");
            self.final_checks();
        }
    }

    // ----- moving bytes --------------------------------------------------------------------

    /// Takes `side`'s output, checks it, and queues it for the peer.
    fn collect(&mut self, side: usize) {
        let out = self.ends[side].conn.take_output(self.now);
        if out.is_empty() {
            return;
        }
        if let Some(w) = self.wire.as_mut() {
            w.on_output(side, &out);
        }
        self.ends[side].unsent.extend_from_slice(&out);
    }

    /// Hands the first `n` pending bytes of `from` to its peer.
    fn deliver(&mut self, from: usize, n: usize) {
        let to = peer(from);
        let n = n.min(self.ends[from].unsent.len());
        if n == 0 {
            return;
        }
        // What `to` wrote so far was written with what it knew so far.
        self.collect(to);
        let chunk = self.ends[from].unsent.split_to(n);
        if self.trace {
            eprintln!("  deliver {n} bytes {} -> {}", SIDE[from], SIDE[to]);
        }
        let end = &mut self.ends[to];
        end.inbox.extend_from_slice(&chunk);
        end.conn.handle_input(&mut end.inbox, self.now);
        if let Some(w) = self.wire.as_mut() {
            w.on_delivered(from, n as u64);
        }
        self.events(to);
        self.collect(to);
        if let Some(w) = self.wire.as_mut() {
            w.batch = None;
        }
    }

    fn deliver_chunk(&mut self, from: usize) {
        let b = self.input.byte();
        let pending = self.ends[from].unsent.len();
        let n = match b {
            0..64 => pending,
            64..128 => usize::from(b % 8) + 1,
            128..192 => (usize::from(b % 64) + 1) * 8,
            _ => pending.div_ceil(2),
        };
        self.deliver(from, n);
    }

    fn exchange(&mut self) {
        self.collect(CLIENT);
        self.collect(SERVER);
        self.deliver(CLIENT, usize::MAX);
        self.deliver(SERVER, usize::MAX);
    }

    /// Exchanges everything until neither side has anything to say; whether that happened.
    /// With a window of one transfer and 512-byte frames, a script's messages can take some
    /// thousands of round trips; an exchange that never ends is a bug.
    fn quiesce(&mut self) -> bool {
        for _ in 0..50_000 {
            self.collect(CLIENT);
            self.collect(SERVER);
            let idle = self
                .ends
                .iter()
                .all(|e| e.unsent.is_empty() && !e.conn.has_output());
            if idle {
                return true;
            }
            self.exchange();
        }
        false
    }

    /// After an application call on `side`: its output and any events it raised.
    fn after_op(&mut self, side: usize) {
        self.collect(side);
        self.events(side);
        self.collect(side);
    }

    // ----- events ----------------------------------------------------------------------------

    fn events(&mut self, side: usize) {
        while let Some(e) = self.ends[side].conn.poll_event() {
            self.on_event(side, e);
        }
    }

    fn on_event(&mut self, side: usize, e: Event) {
        let who = SIDE[side];
        let checking = self.wire.is_some();
        if self.trace {
            eprintln!("    {who} event {e:?}");
        }
        match e {
            Event::SaslInit { .. } => {
                assert!(!checking || side == SERVER, "the client got a SASL init");
                if side == SERVER {
                    self.ends[SERVER].conn.sasl_outcome(self.sasl_ok);
                }
            }
            Event::SaslOutcome { ok } => {
                assert!(!checking || ok == self.sasl_ok, "SASL outcome {ok}");
            }
            Event::Opened(_) | Event::Credit { .. } | Event::SenderState { .. } => {}
            Event::SessionBegun(s) => {
                let app = &mut self.ends[side].app;
                if side == SERVER {
                    app.sessions.push(s);
                } else {
                    assert!(
                        !checking || app.sessions.contains(&s),
                        "the client reported {s:?} begun, which it never began"
                    );
                }
            }
            Event::SessionEnded { session, error } => {
                self.ends[side].app.sessions.retain(|s| *s != session);
                self.check_event_error(side, "a session end", error.as_ref());
            }
            Event::AttachRequested { link, attach } => {
                if side == CLIENT {
                    assert!(
                        !checking,
                        "the client was asked to accept attach '{}' (handle {}); the server \
                         never starts links",
                        attach.name, attach.handle
                    );
                    return;
                }
                if let Some(w) = self.wire.as_mut() {
                    w.map_attach_request(link, &attach);
                }
                let app = &mut self.ends[SERVER].app;
                let role = match attach.role {
                    Role::Sender => Role::Receiver,
                    Role::Receiver => Role::Sender,
                };
                let name = NAMES
                    .iter()
                    .find(|n| **n == attach.name.as_str())
                    .copied()
                    .unwrap_or("other");
                app.links.push(AppLink {
                    id: link,
                    role,
                    name,
                });
                app.requests
                    .push((link, attach.source.clone(), attach.target.clone()));
            }
            Event::Attached { link, attach } => {
                assert!(!checking || side == CLIENT, "the server got Attached");
                if let Some(w) = &self.wire {
                    w.check_attached(link, &attach);
                }
            }
            Event::Delivery(d) => self.on_delivery(side, *d),
            Event::Disposition {
                link,
                delivery_id,
                settled,
                ..
            } => {
                if self.peer_settles.contains(&(side, link, delivery_id.0)) {
                    // The sender settled a delivery this side received.
                    assert!(settled, "{who} got an unsettled update from the sender");
                    self.peer_settles.remove(&(side, link, delivery_id.0));
                    self.ends[side]
                        .app
                        .received
                        .retain(|(l, id)| (*l, *id) != (link, delivery_id));
                    return;
                }
                if checking {
                    let seq = *self
                        .sent_index
                        .get(&(side, link, delivery_id.0))
                        .unwrap_or_else(|| {
                            panic!(
                                "{who} got a disposition for delivery {} on {link:?}, which it \
                                 never sent there",
                                delivery_id.0
                            )
                        });
                    assert!(
                        self.sent[seq].disposed,
                        "{who} got a disposition for message {seq} (delivery {}), which the \
                         receiver never settled or updated",
                        delivery_id.0
                    );
                }
                if settled {
                    self.ends[side]
                        .app
                        .unsettled_out
                        .retain(|(l, id)| (*l, *id) != (link, delivery_id));
                }
            }
            Event::Detached { link, error, .. } => {
                let app = &mut self.ends[side].app;
                app.links.retain(|l| l.id != link);
                app.requests.retain(|r| r.0 != link);
                self.check_event_error(side, "a detach", error.as_ref());
            }
            Event::Closed { error } => {
                if let Some(e) = &error {
                    let sasl = !self.sasl_ok && e.condition == ErrorCondition::UnauthorizedAccess;
                    if !sasl {
                        self.check_event_error(side, "a close", Some(e));
                    }
                }
            }
        }
    }

    fn check_event_error(&self, side: usize, what: &str, error: Option<&Error>) {
        if let Some(e) = error
            && self.wire.is_some()
        {
            // Timer closes are checked on the wire (only a timer may write them).
            assert!(
                is_app_error(e) || e.condition == ErrorCondition::ResourceLimitExceeded,
                "{} reported {what} with an error nobody asked for: {e:?}",
                SIDE[side]
            );
        }
    }

    fn on_delivery(&mut self, side: usize, d: IncomingDelivery) {
        let who = SIDE[side];
        if !d.settled {
            self.peer_settles.insert((side, d.link, d.delivery_id.0));
            let received = &mut self.ends[side].app.received;
            if received.len() >= 32 {
                received.remove(0);
            }
            received.push((d.link, d.delivery_id));
        }
        let Some(w) = &self.wire else {
            return;
        };
        let seq = match d.message.properties() {
            Ok(Some(Properties {
                message_id: Some(MessageId::Ulong(seq)),
                ..
            })) => seq,
            other => panic!("{who} got a delivery without our message-id: {other:?}"),
        };
        let sent = self
            .sent
            .get_mut(seq as usize)
            .unwrap_or_else(|| panic!("{who} got message {seq}, which nobody sent"));
        assert_ne!(sent.from, side, "{who} got its own message {seq}");
        assert!(!sent.delivered, "{who} got message {seq} twice");
        sent.delivered = true;
        assert!(
            d.message.to_contiguous() == sent.bytes,
            "{who} got message {seq} with different bytes"
        );
        if let Some(tag) = &sent.tag {
            assert_eq!(
                d.tag.as_bytes(),
                tag,
                "{who} got message {seq} with another tag"
            );
        }
        let here = w.by_id[side].get(&d.link);
        let there = w.by_id[sent.from].get(&sent.link);
        assert!(
            here.is_some() && here == there,
            "{who} got message {seq} on {:?}, not the link it was sent on",
            d.link
        );
        self.received_index
            .insert((side, d.link, d.delivery_id.0), seq as usize);
        let last = self.ends[side].app.last_seq.insert(d.link, seq);
        assert!(
            last.is_none_or(|l| l < seq),
            "{who} got message {seq} after {last:?} on the same link"
        );
    }

    // ----- operations ------------------------------------------------------------------------

    fn op(&mut self, op: Op) {
        match op {
            Op::DeliverToServer => self.deliver_chunk(CLIENT),
            Op::DeliverToClient => self.deliver_chunk(SERVER),
            Op::Pump => {
                let rounds = 1 + self.input.byte() % 8;
                for _ in 0..rounds {
                    self.exchange();
                }
            }
            Op::Begin => {
                if let Ok(s) = self.ends[CLIENT].conn.begin() {
                    self.ends[CLIENT].app.sessions.push(s);
                }
                self.after_op(CLIENT);
            }
            Op::Attach => self.attach(),
            Op::ClientGrant => self.grant(CLIENT),
            Op::ServerGrant => self.grant(SERVER),
            Op::ClientSend => self.send(CLIENT),
            Op::ServerSend => self.send(SERVER),
            Op::ClientSettle => self.settle(CLIENT, false),
            Op::ClientUpdate => self.settle(CLIENT, true),
            Op::ServerSettle => self.settle(SERVER, false),
            Op::ClientDetach => self.detach(CLIENT),
            Op::ServerDetach => self.detach(SERVER),
            Op::ClientEnd => self.end(CLIENT),
            Op::ServerEnd => self.end(SERVER),
            Op::ClientClose => self.close(CLIENT),
            Op::ServerClose => self.close(SERVER),
            Op::ClientDrained => self.drained(CLIENT),
            Op::ServerDrained => self.drained(SERVER),
            Op::ClientSettleOutgoing => {
                let list = &self.ends[CLIENT].app.unsettled_out;
                let pick = self.input.index(list.len()).map(|i| list[i]);
                let b = self.input.byte();
                if let Some((link, id)) = pick {
                    let _ = self.ends[CLIENT]
                        .conn
                        .settle_outgoing(link, id, Some(outcome(b)));
                    self.ends[CLIENT]
                        .app
                        .unsettled_out
                        .retain(|x| *x != (link, id));
                }
                self.after_op(CLIENT);
            }
            Op::ServerAccept => self.accept(),
            Op::ServerRefuse => {
                let n = self.ends[SERVER].app.requests.len();
                if let Some(i) = self.input.index(n) {
                    let (link, _, _) = self.ends[SERVER].app.requests.remove(i);
                    let _ = self.ends[SERVER]
                        .conn
                        .refuse_attach(link, app_error(i as u8));
                }
                self.after_op(SERVER);
            }
            Op::Time => self.time(),
            Op::Garbage => {
                let guard = self.input.byte();
                let to_client = self.input.byte() & 1 == 1;
                let len = 1 + usize::from(self.input.byte() % 8);
                let junk: Vec<u8> = (0..len).map(|_| self.input.byte()).collect();
                if guard == 0xa5 {
                    // A broken stream legitimately closes things: from here on, only "no
                    // panic" is checked.
                    self.wire = None;
                    let from = if to_client { SERVER } else { CLIENT };
                    self.ends[from].unsent.extend_from_slice(&junk);
                }
            }
        }
    }

    fn pick_link(&mut self, side: usize, role: Role) -> Option<LinkId> {
        let links: Vec<LinkId> = self.ends[side]
            .app
            .links
            .iter()
            .filter(|l| l.role == role)
            .map(|l| l.id)
            .collect();
        self.input.index(links.len()).map(|i| links[i])
    }

    fn attach(&mut self) {
        let sessions = &self.ends[CLIENT].app.sessions;
        let session = self.input.index(sessions.len()).map(|i| sessions[i]);
        let name = NAMES[usize::from(self.input.byte() % 4)];
        let flags = self.input.byte();
        let Some(session) = session else {
            return;
        };
        let role = if flags & 1 == 0 {
            Role::Sender
        } else {
            Role::Receiver
        };
        // §2.6.1: a link name is unique per direction, so the application does not reuse one
        // while a link by that name still exists.
        let c = &self.ends[CLIENT];
        if c.app
            .all_links
            .iter()
            .any(|l| l.name == name && l.role == role && c.conn.credit(l.id).is_some())
        {
            return;
        }
        let spec = LinkSpec {
            name: Str::from(name),
            role,
            source: Some(Source {
                address: Some(Str::from(name)),
                ..Default::default()
            }),
            target: Some(TargetKind::Target(Target {
                address: Some(Str::from(name)),
                ..Default::default()
            })),
            snd_settle_mode: match ((flags >> 1) & 3) % 3 {
                0 => SenderSettleMode::Unsettled,
                1 => SenderSettleMode::Settled,
                _ => SenderSettleMode::Mixed,
            },
            rcv_settle_mode: if flags & 8 != 0 {
                ReceiverSettleMode::Second
            } else {
                ReceiverSettleMode::First
            },
            max_message_size: match (flags >> 4) & 7 {
                0 => Some(0),
                1 => Some(300),
                2 => Some(2000),
                3 => Some(1 << 20),
                _ => None,
            },
            properties: None,
        };
        let result = self.ends[CLIENT].conn.attach(session, spec);
        self.after_op(CLIENT);
        if let Ok(id) = result {
            if let Some(w) = self.wire.as_mut() {
                let new = std::mem::take(&mut w.new_client_links);
                assert_eq!(new.len(), 1, "one attach() wrote {} attaches", new.len());
                w.links[new[0]].ids[CLIENT] = Some(id);
                w.by_id[CLIENT].insert(id, new[0]);
            }
            let link = AppLink { id, role, name };
            self.ends[CLIENT].app.links.push(link.clone());
            self.ends[CLIENT].app.all_links.push(link);
        }
    }

    fn accept(&mut self) {
        let n = self.ends[SERVER].app.requests.len();
        let pick = self.input.index(n);
        let flags = self.input.byte();
        if let Some(i) = pick {
            let (link, source, target) = self.ends[SERVER].app.requests.remove(i);
            let reply = AttachReply {
                source,
                target,
                max_message_size: match flags & 7 {
                    0 => Some(0),
                    1 => Some(300),
                    2 => Some(2000),
                    _ => None,
                },
                ..Default::default()
            };
            let _ = self.ends[SERVER].conn.accept_attach(link, reply);
        }
        self.after_op(SERVER);
    }

    fn grant(&mut self, side: usize) {
        let link = self.pick_link(side, Role::Receiver);
        let credit = credit_of(self.input.byte());
        let drain = self.input.byte() & 1 == 1;
        if let Some(link) = link {
            let _ = self.ends[side].conn.grant_credit(link, credit, drain);
        }
        self.after_op(side);
    }

    fn send(&mut self, side: usize) {
        let link = self.pick_link(side, Role::Sender);
        let len = message_len(self.input.byte());
        let flags = self.input.byte();
        let Some(link) = link else {
            return;
        };
        let seq = self.sent.len() as u64;
        let msg = message(seq, len);
        let settled = flags & 1 != 0;
        let tag = (flags & 2 != 0).then(|| Bytes::from(format!("tag-{seq}")));
        let result =
            self.ends[side]
                .conn
                .send(link, &msg, settled, tag.clone().and_then(DeliveryTag::new));
        if let Ok(id) = result {
            if let Some(w) = self.wire.as_mut() {
                w.commit_send(side, link);
            }
            self.sent_index.insert((side, link, id.0), self.sent.len());
            self.sent.push(Sent {
                from: side,
                link,
                bytes: msg.to_contiguous(),
                tag,
                delivered: false,
                disposed: false,
            });
            if !settled {
                self.ends[side].app.unsettled_out.push((link, id));
            }
        }
        self.after_op(side);
    }

    fn settle(&mut self, side: usize, update: bool) {
        let list = &self.ends[side].app.received;
        let pick = self.input.index(list.len()).map(|i| list[i]);
        let b = self.input.byte();
        if let Some((link, id)) = pick {
            if let Some(&seq) = self.received_index.get(&(side, link, id.0)) {
                self.sent[seq].disposed = true;
            }
            let conn = &mut self.ends[side].conn;
            if update || (side == SERVER && b & 0x80 != 0) {
                let state = if b & 0x40 != 0 {
                    DeliveryState::Received(Received {
                        section_number: 0,
                        section_offset: 0,
                    })
                } else {
                    outcome(b)
                };
                let _ = conn.update_incoming(link, id, state);
            } else {
                let _ = conn.settle_incoming(link, id, outcome(b));
            }
        }
        self.after_op(side);
    }

    fn detach(&mut self, side: usize) {
        let links = &self.ends[side].app.links;
        let pick = self.input.index(links.len()).map(|i| links[i].id);
        let flags = self.input.byte();
        if let Some(link) = pick {
            let error = (flags & 2 != 0).then(|| app_error(flags >> 2));
            let _ = self.ends[side].conn.detach(link, flags & 1 != 0, error);
            let app = &mut self.ends[side].app;
            app.links.retain(|l| l.id != link);
            app.requests.retain(|r| r.0 != link);
        }
        self.after_op(side);
    }

    fn end(&mut self, side: usize) {
        let sessions = &self.ends[side].app.sessions;
        let pick = self.input.index(sessions.len()).map(|i| sessions[i]);
        let flags = self.input.byte();
        if let Some(session) = pick {
            let error = (flags & 1 != 0).then(|| app_error(flags >> 1));
            let _ = self.ends[side].conn.end(session, error);
            self.ends[side].app.sessions.retain(|s| *s != session);
        }
        self.after_op(side);
    }

    fn close(&mut self, side: usize) {
        let guard = self.input.byte();
        let flags = self.input.byte();
        if guard < 32 {
            let error = (flags & 1 != 0).then(|| app_error(flags >> 1));
            self.ends[side].conn.close(error);
        }
        self.after_op(side);
    }

    fn drained(&mut self, side: usize) {
        if let Some(link) = self.pick_link(side, Role::Sender) {
            let _ = self.ends[side].conn.drained(link);
        }
        self.after_op(side);
    }

    fn time(&mut self) {
        let b = self.input.byte();
        let sides = self.input.byte() % 4;
        let n = u64::from(b & 63);
        self.now += match b >> 6 {
            0 => Duration::from_millis(n * 10),
            1 => Duration::from_millis(n * 250),
            2 => Duration::from_secs(n),
            _ => Duration::from_secs(20 + n),
        };
        for side in [CLIENT, SERVER] {
            if sides == 1 + side as u8 || sides % 3 == 0 {
                self.collect(side);
                self.ends[side].conn.handle_timeout(self.now);
                if let Some(w) = self.wire.as_mut() {
                    w.timeout_ctx = true;
                }
                self.collect(side);
                if let Some(w) = self.wire.as_mut() {
                    w.timeout_ctx = false;
                }
                self.events(side);
                self.collect(side);
            }
        }
    }

    // ----- the end -----------------------------------------------------------------------

    fn final_checks(&self) {
        let Some(w) = &self.wire else {
            return;
        };
        if self.ends.iter().any(|e| e.conn.is_finished()) {
            return;
        }
        for (seq, s) in self.sent.iter().enumerate() {
            assert!(
                s.delivered || self.ends[s.from].conn.credit(s.link).is_none(),
                "message {seq}, sent by the {} on {:?}, was never delivered though the link \
                 is still attached and both engines are quiet",
                SIDE[s.from],
                s.link
            );
        }
        for l in &w.links {
            if let [Some(c), Some(s)] = l.ids
                && let (Some(cc), Some(sc)) = (
                    self.ends[CLIENT].conn.credit(c),
                    self.ends[SERVER].conn.credit(s),
                )
            {
                assert_eq!(
                    cc, sc,
                    "at rest, the two ends of link '{}' disagree on its credit \
                     (client {cc}, server {sc})",
                    l.name
                );
            }
        }
    }
}
