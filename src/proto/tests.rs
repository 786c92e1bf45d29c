//! The engine tested in memory: a client-role and a server-role [`Connection`] exchanging
//! bytes through a [`Pair`], with simulated time and no sockets.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferry_codec::DecodeLimits;
use ferry_codec::definitions::{ErrorCondition, ReceiverSettleMode, Role, SequenceNo};
use ferry_codec::delivery_state::{Accepted, DeliveryState, Modified};
use ferry_codec::frames::{FrameDecoder, FrameType, ProtocolHeader, encode_frame};
use ferry_codec::messaging::{
    Data, Header, Message, Properties, Section, Source, Target, TargetKind,
};
use ferry_codec::performatives::{Performative, Transfer};
use ferry_codec::types::{Str, Symbol};

use super::*;

fn server_cfg() -> ConnectionConfig {
    ConnectionConfig {
        role: EndpointRole::Server,
        container_id: "server".into(),
        sasl: SaslConfig {
            mechanisms: vec![
                Symbol::from_static("ANONYMOUS"),
                Symbol::from_static("PLAIN"),
            ],
            allow_plain_header: true,
            client: None,
        },
        ..Default::default()
    }
}

fn client_cfg() -> ConnectionConfig {
    ConnectionConfig {
        role: EndpointRole::Client,
        container_id: "client".into(),
        ..Default::default()
    }
}

/// Two engines wired back to back, with a shared simulated clock.
struct Pair {
    client: Connection,
    server: Connection,
    now: Instant,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
    /// Bytes that went from client to server, for tests that inspect the wire.
    c2s_log: BytesMut,
    s2c_log: BytesMut,
    /// Answer every attach and SASL init like a permissive broker would.
    auto_accept: bool,
}

impl Pair {
    fn new(client: ConnectionConfig, server: ConnectionConfig) -> Self {
        let now = Instant::now();
        let mut pair = Pair {
            client: Connection::new(client, now),
            server: Connection::new(server, now),
            now,
            client_events: Vec::new(),
            server_events: Vec::new(),
            c2s_log: BytesMut::new(),
            s2c_log: BytesMut::new(),
            auto_accept: true,
        };
        pair.drive();
        pair
    }

    fn default_pair() -> Self {
        Self::new(client_cfg(), server_cfg())
    }

    /// Moves bytes both ways until neither side has anything to say (bounded).
    fn drive(&mut self) {
        for _ in 0..1000 {
            let c = self.client.take_output(self.now);
            let s = self.server.take_output(self.now);
            if c.is_empty() && s.is_empty() {
                self.collect();
                if !self.client.has_output() && !self.server.has_output() {
                    return;
                }
                continue;
            }
            self.c2s_log.extend_from_slice(&c);
            self.s2c_log.extend_from_slice(&s);
            let mut c = BytesMut::from(&c[..]);
            let mut s = BytesMut::from(&s[..]);
            self.server.handle_input(&mut c, self.now);
            self.client.handle_input(&mut s, self.now);
            self.collect();
        }
        panic!("the pair did not go quiet");
    }

    fn collect(&mut self) {
        while let Some(e) = self.server.poll_event() {
            if self.auto_accept {
                match &e {
                    Event::SaslInit { .. } => self.server.sasl_outcome(true),
                    Event::AttachRequested { link, attach } => {
                        self.server
                            .accept_attach(
                                *link,
                                AttachReply {
                                    source: attach.source.clone(),
                                    target: attach.target.clone(),
                                    ..Default::default()
                                },
                            )
                            .unwrap();
                    }
                    _ => {}
                }
            }
            self.server_events.push(e);
        }
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.drive();
    }

    fn take_server_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.server_events)
    }

    fn take_client_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.client_events)
    }

    /// Client session plus a link with `role` (the client's role) on address `queue`.
    fn client_link(&mut self, role: Role, queue: &str) -> (SessionId, LinkId, LinkId) {
        let session = self.client.begin().unwrap();
        self.drive();
        let spec = LinkSpec {
            name: Str::from(format!("link-{queue}-{role:?}")),
            role,
            source: Some(Source {
                address: Some(Str::from(queue)),
                ..Default::default()
            }),
            target: Some(TargetKind::Target(Target {
                address: Some(Str::from(queue)),
                ..Default::default()
            })),
            ..Default::default()
        };
        let client_link = self.client.attach(session, spec).unwrap();
        self.drive();
        let server_link = self
            .server_events
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::AttachRequested { link, .. } => Some(*link),
                _ => None,
            })
            .expect("server saw the attach");
        (session, client_link, server_link)
    }
}

fn message(body: &[u8]) -> Message {
    Message::from_sections(&[
        Section::Header(Header {
            durable: true,
            ..Default::default()
        }),
        Section::Properties(Properties {
            to: Some("q"),
            ..Default::default()
        }),
        Section::Data(Data(Bytes::copy_from_slice(body))),
    ])
    .unwrap()
}

fn deliveries(events: &[Event]) -> Vec<&IncomingDelivery> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Delivery(d) => Some(&**d),
            _ => None,
        })
        .collect()
}

#[test]
fn plain_header_handshake_opens_both_sides() {
    let mut p = Pair::default_pair();
    assert_eq!(p.client.state(), ConnectionState::Opened);
    assert_eq!(p.server.state(), ConnectionState::Opened);
    assert!(
        p.take_server_events()
            .iter()
            .any(|e| matches!(e, Event::Opened(_)))
    );
    assert!(
        p.take_client_events()
            .iter()
            .any(|e| matches!(e, Event::Opened(_)))
    );
    assert_eq!(&p.s2c_log[..8], b"AMQP\x00\x01\x00\x00");
}

#[test]
fn sasl_anonymous_then_open() {
    let mut client = client_cfg();
    client.sasl.client = Some(ClientSasl {
        mechanism: Symbol::from_static("ANONYMOUS"),
        initial_response: Some(Bytes::from_static(b"anonymous")),
    });
    let mut p = Pair::new(client, server_cfg());
    let events = p.take_server_events();
    assert!(
        matches!(&events[0], Event::SaslInit { mechanism, .. } if mechanism.as_str() == "ANONYMOUS")
    );
    assert_eq!(p.server.state(), ConnectionState::Opened);
    assert_eq!(p.client.state(), ConnectionState::Opened);
    assert!(
        p.take_client_events()
            .iter()
            .any(|e| matches!(e, Event::SaslOutcome { ok: true }))
    );
}

#[test]
fn sasl_failure_sends_auth_outcome_and_closes() {
    let mut client = client_cfg();
    client.sasl.client = Some(ClientSasl {
        mechanism: Symbol::from_static("PLAIN"),
        initial_response: Some(Bytes::from_static(b"\0user\0wrong")),
    });
    let now = Instant::now();
    let mut c = Connection::new(client, now);
    let mut s = Connection::new(server_cfg(), now);
    for _ in 0..10 {
        let mut out = BytesMut::from(&c.take_output(now)[..]);
        s.handle_input(&mut out, now);
        while let Some(e) = s.poll_event() {
            if let Event::SaslInit { .. } = e {
                s.sasl_outcome(false);
            }
        }
        let mut back = BytesMut::from(&s.take_output(now)[..]);
        c.handle_input(&mut back, now);
    }
    assert!(s.is_finished());
    assert!(c.is_finished());
    let mut saw_fail = false;
    while let Some(e) = c.poll_event() {
        if let Event::SaslOutcome { ok } = e {
            saw_fail = !ok;
        }
    }
    assert!(saw_fail);
}

#[test]
fn unsupported_header_gets_ours_then_close() {
    let now = Instant::now();
    let mut s = Connection::new(server_cfg(), now);
    let mut input = BytesMut::from(&b"AMQP\x00\x00\x09\x01"[..]);
    s.handle_input(&mut input, now);
    assert!(s.is_finished());
    assert_eq!(&s.take_output(now)[..], b"AMQP\x03\x01\x00\x00");
    let mut http = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
    let mut s = Connection::new(server_cfg(), now);
    s.handle_input(&mut http, now);
    assert!(s.is_finished());
}

#[test]
fn plain_header_refused_where_sasl_is_required() {
    let mut cfg = server_cfg();
    cfg.sasl.allow_plain_header = false;
    let now = Instant::now();
    let mut s = Connection::new(cfg, now);
    let mut input = BytesMut::from(&ProtocolHeader::AMQP.to_bytes()[..]);
    s.handle_input(&mut input, now);
    assert!(s.is_finished());
    assert_eq!(&s.take_output(now)[..], b"AMQP\x03\x01\x00\x00");
}

#[test]
fn handshake_timeout_closes() {
    let now = Instant::now();
    let mut s = Connection::new(server_cfg(), now);
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(10)));
    s.handle_timeout(now + Duration::from_secs(10));
    assert!(s.is_finished());
}

#[test]
fn message_flows_from_client_sender_to_server_and_is_settled() {
    let mut p = Pair::default_pair();
    let (_, c_link, s_link) = p.client_link(Role::Sender, "q1");
    assert!(
        p.take_client_events()
            .iter()
            .any(|e| matches!(e, Event::Attached { .. }))
    );
    // MUST 7: the attach reply is followed by a flow (credit 0 until the broker grants).
    p.server.grant_credit(s_link, 10, false).unwrap();
    p.drive();
    let events = p.take_client_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Credit { credit: 10, .. }))
    );
    assert_eq!(p.client.credit(c_link), Some(10));

    let id = p
        .client
        .send(c_link, &message(b"hello"), false, None)
        .unwrap();
    p.drive();
    let events = p.take_server_events();
    let d = deliveries(&events);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].tag.as_bytes().len(), 8);
    assert!(!d[0].settled);
    assert_eq!(d[0].message.properties().unwrap().unwrap().to, Some("q"));
    assert_eq!(p.server.credit(s_link), Some(9));

    p.server
        .settle_incoming(
            s_link,
            d[0].delivery_id,
            DeliveryState::Accepted(Accepted {}),
        )
        .unwrap();
    p.drive();
    let events = p.take_client_events();
    assert!(events.iter().any(|e| matches!(e,
        Event::Disposition { delivery_id, settled: true, state: Some(DeliveryState::Accepted(_)), .. }
        if *delivery_id == id)));
}

#[test]
fn delivery_ids_are_consecutive_per_delivery_not_per_frame() {
    let mut client = client_cfg();
    client.max_frame_size = 512;
    let mut server = server_cfg();
    server.max_frame_size = 512;
    let mut p = Pair::new(client, server);
    let (_, c_link, s_link) = p.client_link(Role::Receiver, "q2");
    p.client.grant_credit(c_link, 5, false).unwrap();
    p.drive();
    let big = message(&vec![7u8; 3000]);
    let ids: Vec<SequenceNo> = (0..3)
        .map(|_| p.server.send(s_link, &big, false, None).unwrap())
        .collect();
    assert_eq!(ids, vec![SequenceNo(0), SequenceNo(1), SequenceNo(2)]);
    p.drive();
    let events = p.take_client_events();
    let d = deliveries(&events);
    assert_eq!(d.len(), 3);
    for (i, d) in d.iter().enumerate() {
        assert_eq!(d.delivery_id, SequenceNo(i as u32));
        assert_eq!(d.message.to_contiguous(), big.to_contiguous());
        assert!(
            d.message.segments().count() > 1,
            "arrived in several frames"
        );
    }
    // Every frame the server wrote respects the client's 512-byte limit.
    let mut wire = p.s2c_log.clone();
    let _ = wire.split_to(8);
    let mut dec = FrameDecoder::new(512);
    while let Some(f) = dec.decode(&mut wire).unwrap() {
        assert!(f.body.len() + 8 <= 512);
    }
}

#[test]
fn session_window_is_honoured_and_reopened() {
    let mut server = server_cfg();
    server.session_window = 4;
    let mut p = Pair::new(client_cfg(), server);
    let (_, c_link, s_link) = p.client_link(Role::Sender, "q3");
    p.server.grant_credit(s_link, 100, false).unwrap();
    p.drive();
    for _ in 0..40 {
        p.client.send(c_link, &message(b"x"), true, None).unwrap();
    }
    p.drive();
    let events = p.take_server_events();
    assert_eq!(deliveries(&events).len(), 40);
    assert!(!p.server.is_finished());
}

#[test]
fn transfer_beyond_the_window_ends_the_session() {
    let mut server = server_cfg();
    server.session_window = 2;
    let mut p = Pair::new(client_cfg(), server);
    let (session, _c_link, s_link) = p.client_link(Role::Sender, "q4");
    p.server.grant_credit(s_link, 100, false).unwrap();
    p.drive();
    // Hand-written transfers that ignore the window.
    let mut raw = raw_transfers(session, 0, 3);
    p.server.handle_input(&mut raw, p.now);
    p.collect();
    let out = p.server.take_output(p.now);
    let end = find_performative(&out, |p| matches!(p, Performative::End(_)));
    let Some(Performative::End(end)) = end else {
        panic!("no end")
    };
    assert_eq!(
        end.error.unwrap().condition,
        ErrorCondition::WindowViolation
    );
    assert!(!p.server.is_finished(), "only the session ends");
}

/// `n` pre-settled single-frame transfers on handle 0, written by hand so that they can ignore
/// windows and credit.
fn raw_transfers(session: SessionId, from: u32, n: u32) -> BytesMut {
    let mut raw = BytesMut::new();
    for i in from..from + n {
        let t = Transfer {
            handle: 0,
            delivery_id: Some(SequenceNo(i)),
            delivery_tag: ferry_codec::definitions::DeliveryTag::new(Bytes::from_static(b"t")),
            settled: Some(true),
            ..Default::default()
        };
        encode_frame(
            &mut raw,
            FrameType::Amqp,
            session.0,
            &Performative::Transfer(t),
            &message(b"y").to_contiguous(),
            u32::MAX,
        )
        .unwrap();
    }
    raw
}

fn find_performative(bytes: &[u8], f: impl Fn(&Performative) -> bool) -> Option<Performative> {
    let mut buf = BytesMut::from(bytes);
    let mut dec = FrameDecoder::new(u32::MAX);
    while let Ok(Some(raw)) = dec.decode(&mut buf) {
        if let Ok(frame) = ferry_codec::frames::AmqpFrame::decode(&raw, DecodeLimits::DEFAULT)
            && let Some(p) = frame.performative
            && f(&p)
        {
            return Some(p);
        }
    }
    None
}

#[test]
fn unknown_handle_ends_the_session_with_unattached_handle() {
    let mut p = Pair::default_pair();
    let session = p.client.begin().unwrap();
    p.drive();
    let t = Transfer {
        handle: 42,
        delivery_id: Some(SequenceNo(0)),
        delivery_tag: ferry_codec::definitions::DeliveryTag::new(Bytes::from_static(b"t")),
        ..Default::default()
    };
    let mut raw = BytesMut::new();
    encode_frame(
        &mut raw,
        FrameType::Amqp,
        session.0,
        &Performative::Transfer(t),
        b"",
        u32::MAX,
    )
    .unwrap();
    p.server.handle_input(&mut raw, p.now);
    let out = p.server.take_output(p.now);
    let Some(Performative::End(end)) =
        find_performative(&out, |p| matches!(p, Performative::End(_)))
    else {
        panic!("no end")
    };
    assert_eq!(
        end.error.unwrap().condition,
        ErrorCondition::UnattachedHandle
    );
    assert!(!p.server.is_finished());
}

#[test]
fn frame_on_unopened_channel_closes_with_framing_error() {
    let mut p = Pair::default_pair();
    let t = Performative::Flow(Default::default());
    let mut raw = BytesMut::new();
    encode_frame(&mut raw, FrameType::Amqp, 9, &t, b"", u32::MAX).unwrap();
    p.server.handle_input(&mut raw, p.now);
    let out = p.server.take_output(p.now);
    let Some(Performative::Close(close)) =
        find_performative(&out, |p| matches!(p, Performative::Close(_)))
    else {
        panic!("no close")
    };
    assert_eq!(close.error.unwrap().condition, ErrorCondition::FramingError);
    assert!(p.server.is_finished());
}

#[test]
fn oversized_message_detaches_only_that_link() {
    let mut server = server_cfg();
    server.max_message_size = 1000;
    let mut p = Pair::new(client_cfg(), server);
    let (_, c_link, s_link) = p.client_link(Role::Sender, "q5");
    let (_, c_link2, s_link2) = p.client_link(Role::Sender, "q6");
    p.server.grant_credit(s_link, 10, false).unwrap();
    p.server.grant_credit(s_link2, 10, false).unwrap();
    p.drive();
    // The client ignores the advertised limit by sending anyway (its own limit check is off).
    p.client
        .send(c_link, &message(&vec![1u8; 5000]), false, None)
        .ok();
    p.drive();
    let events = p.take_client_events();
    let detached = events.iter().find_map(|e| match e {
        Event::Detached { link, error, .. } if *link == c_link => error.clone(),
        _ => None,
    });
    // Either the client refused locally (it saw max-message-size) or the server detached.
    if let Some(error) = detached {
        assert_eq!(error.condition, ErrorCondition::MessageSizeExceeded);
    } else {
        assert_eq!(
            p.client
                .send(c_link, &message(&vec![1u8; 5000]), false, None),
            Err(UsageError::MessageTooLarge)
        );
    }
    // The sibling link still works.
    p.client.send(c_link2, &message(b"ok"), true, None).unwrap();
    p.drive();
    assert_eq!(deliveries(&p.take_server_events()).len(), 1);
}

#[test]
fn drain_is_answered_after_what_is_available() {
    let mut p = Pair::default_pair();
    let (_, c_link, s_link) = p.client_link(Role::Receiver, "q7");
    p.client.grant_credit(c_link, 10, true).unwrap();
    p.drive();
    let events = p.take_server_events();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Credit {
            credit: 10,
            drain: true,
            ..
        }
    )));
    p.server.send(s_link, &message(b"1"), true, None).unwrap();
    p.server.send(s_link, &message(b"2"), true, None).unwrap();
    p.server.drained(s_link).unwrap();
    p.drive();
    let events = p.take_client_events();
    assert_eq!(deliveries(&events).len(), 2);
    // The drain answer moved delivery-count past the unused credit: nothing left.
    assert_eq!(p.client.credit(c_link), Some(0));
    assert_eq!(p.server.credit(s_link), Some(0));
}

#[test]
fn rcv_settle_mode_second_outcome_is_echoed_settled() {
    let mut p = Pair::default_pair();
    let session = p.client.begin().unwrap();
    p.drive();
    let c_link = p
        .client
        .attach(
            session,
            LinkSpec {
                name: Str::from("second"),
                role: Role::Receiver,
                rcv_settle_mode: ReceiverSettleMode::Second,
                source: Some(Source {
                    address: Some(Str::from("q8")),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .unwrap();
    p.drive();
    let s_link = p
        .take_server_events()
        .iter()
        .find_map(|e| match e {
            Event::AttachRequested { link, .. } => Some(*link),
            _ => None,
        })
        .unwrap();
    p.client.grant_credit(c_link, 1, false).unwrap();
    p.drive();
    let id = p.server.send(s_link, &message(b"m"), false, None).unwrap();
    p.drive();
    let events = p.take_client_events();
    let d = deliveries(&events)[0].delivery_id;
    // The client answers unsettled (as Azure peek-lock does); the server applies and echoes.
    p.client
        .update_incoming(
            c_link,
            d,
            DeliveryState::Modified(Modified {
                delivery_failed: Some(true),
                ..Default::default()
            }),
        )
        .unwrap();
    p.drive();
    let events = p.take_server_events();
    assert!(events.iter().any(|e| matches!(e,
        Event::Disposition { delivery_id, settled: true, state: Some(DeliveryState::Modified(_)), .. }
        if *delivery_id == id)));
    let echo = find_performative(
        &p.s2c_log[8..],
        |p| matches!(p, Performative::Disposition(d) if d.settled && d.role == Role::Sender),
    );
    assert!(echo.is_some(), "settled echo sent");
}

#[test]
fn heartbeats_keep_an_idle_connection_alive_and_silence_kills_it() {
    let mut p = Pair::default_pair();
    // Both advertise 30 s (half of the 60 s dead-peer threshold); each sends an empty frame
    // after 15 s of silence, so advancing in 10 s steps never lets 60 s pass unheard.
    for _ in 0..20 {
        p.advance(Duration::from_secs(10));
    }
    assert!(!p.server.is_finished());
    assert!(!p.client.is_finished());
    // Now the client goes silent: the server waits the full threshold, then closes.
    let now = p.now;
    p.server.handle_timeout(now + Duration::from_secs(59));
    assert!(!p.server.is_finished());
    p.server.handle_timeout(now + Duration::from_secs(61));
    assert!(p.server.is_finished());
    let out = p.server.take_output(now);
    let Some(Performative::Close(close)) =
        find_performative(&out, |p| matches!(p, Performative::Close(_)))
    else {
        panic!("no close")
    };
    assert_eq!(
        close.error.unwrap().condition,
        ErrorCondition::ResourceLimitExceeded
    );
}

#[test]
fn peer_idle_timeout_below_the_floor_is_refused() {
    let mut client = client_cfg();
    client.dead_peer_timeout = Duration::from_millis(400); // advertises 200 ms
    let p = Pair::new(client, server_cfg());
    assert!(p.server.is_finished());
    let close = find_performative(&p.s2c_log[8..], |p| matches!(p, Performative::Close(_)));
    let Some(Performative::Close(close)) = close else {
        panic!("no close")
    };
    assert_eq!(close.error.unwrap().condition, ErrorCondition::NotAllowed);
}

#[test]
fn refused_attach_gets_null_terminus_then_closed_detach() {
    let mut p = Pair::default_pair();
    p.auto_accept = false;
    let session = p.client.begin().unwrap();
    p.drive();
    let c_link = p
        .client
        .attach(
            session,
            LinkSpec {
                name: Str::from("nope"),
                role: Role::Sender,
                target: Some(TargetKind::Target(Target {
                    address: Some(Str::from("missing")),
                    ..Default::default()
                })),
                ..Default::default()
            },
        )
        .unwrap();
    p.drive();
    let s_link = p
        .take_server_events()
        .iter()
        .find_map(|e| match e {
            Event::AttachRequested { link, .. } => Some(*link),
            _ => None,
        })
        .unwrap();
    p.server
        .refuse_attach(
            s_link,
            ferry_codec::definitions::Error::new(ErrorCondition::NotFound, "no such node"),
        )
        .unwrap();
    p.drive();
    let events = p.take_client_events();
    let attached = events.iter().find_map(|e| match e {
        Event::Attached { attach, .. } => Some(attach.clone()),
        _ => None,
    });
    assert!(
        attached.unwrap().target.is_none(),
        "null target in the reply"
    );
    assert!(events.iter().any(|e| matches!(e,
        Event::Detached { link, closed: true, error: Some(err) }
        if *link == c_link && err.condition == ErrorCondition::NotFound)));
}

#[test]
fn every_performative_the_server_writes_has_all_fields() {
    let mut p = Pair::default_pair();
    let (_, _c, s_link) = p.client_link(Role::Sender, "q9");
    p.server.grant_credit(s_link, 1, false).unwrap();
    p.drive();
    let mut wire = p.s2c_log.clone();
    let _ = wire.split_to(8);
    let mut dec = FrameDecoder::new(u32::MAX);
    let mut seen = 0;
    while let Some(raw) = dec.decode(&mut wire).unwrap() {
        if raw.body.is_empty() {
            continue;
        }
        // descriptor 0x00 0x53 code, then list8 (0xc0) or list32 (0xd0): never list0.
        assert_eq!(raw.body[0], 0x00);
        assert!(matches!(raw.body[3], 0xc0 | 0xd0), "full list");
        seen += 1;
    }
    assert!(seen >= 4);
}

#[test]
fn over_credit_transfers_are_tolerated_then_throttled_then_refused() {
    let mut server = server_cfg();
    server.over_credit_allowance = 3;
    let mut p = Pair::new(client_cfg(), server);
    let (session, _c_link, s_link) = p.client_link(Role::Sender, "q10");
    // No credit granted at all: transfers by hand, as pyamqp does with its assumed credit.
    let transfers = |from: u32, n: u32| raw_transfers(session, from, n);
    p.server.handle_input(&mut transfers(0, 3), p.now);
    p.collect();
    assert_eq!(deliveries(&p.take_server_events()).len(), 3);
    assert!(!p.server.over_credit_exceeded(), "within the allowance");
    p.server.handle_input(&mut transfers(3, 2), p.now);
    p.collect();
    assert_eq!(
        deliveries(&p.take_server_events()).len(),
        2,
        "accepted, not an error"
    );
    assert!(
        p.server.over_credit_exceeded(),
        "the owner should stop reading"
    );
    // Granting credit resets the count.
    p.server.grant_credit(s_link, 10, false).unwrap();
    assert!(!p.server.over_credit_exceeded());
    // A peer that goes past twice the allowance regardless gets transfer-limit-exceeded.
    let _ = p.server.take_output(p.now);
    p.server.handle_input(&mut transfers(5, 10 + 7), p.now);
    p.collect();
    let out = p.server.take_output(p.now);
    let Some(Performative::Detach(d)) =
        find_performative(&out, |p| matches!(p, Performative::Detach(_)))
    else {
        panic!("no detach")
    };
    assert_eq!(
        d.error.unwrap().condition,
        ErrorCondition::TransferLimitExceeded
    );
}
