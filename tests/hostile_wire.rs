//! Hostile peers on real sockets. Each case checks the AMQP condition the broker answers with,
//! that only the offending scope (connection, session or link) is torn down, and that its
//! siblings (another link, another session, another connection) keep working.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
#[path = "common/raw.rs"]
mod raw;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use ferry::broker::BrokerConfig;
use ferry::proto::{ConnectionConfig, Event};
use ferry_codec::definitions::ErrorCondition;
use ferry_codec::delivery_state::{Accepted, DeliveryState};
use ferry_codec::frames::{FrameType, ProtocolHeader, encode_frame};
use ferry_codec::messaging::Source;
use ferry_codec::performatives::{Attach, Close, Detach, End, Flow, Open, Performative};
use ferry_codec::sasl::SaslCode;
use ferry_codec::types::Str;
use raw::*;
use tokio::time::Instant;

/// An 8-byte frame header.
fn frame_header(size: u32, doff: u8, frame_type: u8, channel: u16) -> [u8; 8] {
    let s = size.to_be_bytes();
    let c = channel.to_be_bytes();
    [s[0], s[1], s[2], s[3], doff, frame_type, c[0], c[1]]
}

/// A well-formed AMQP frame around an arbitrary body.
fn frame_with_body(channel: u16, body: &[u8]) -> Vec<u8> {
    let mut f = frame_header(8 + body.len() as u32, 2, 0, channel).to_vec();
    f.extend_from_slice(body);
    f
}

/// A message of exactly `n` bytes: one data section (vbin32).
fn message_of_len(n: usize) -> Bytes {
    let mut m = BytesMut::new();
    m.put_slice(&[0x00, 0x53, 0x75, 0xb0]);
    m.put_u32((n - 8) as u32);
    m.put_bytes(b'x', n - 8);
    m.freeze()
}

/// A sender and a receiver on one queue and session: proof that a scope still works.
#[derive(Debug)]
struct Roundtrip {
    channel: u16,
    tx: u32,
    rx: u32,
    delivered: u32,
}

impl Roundtrip {
    async fn setup(p: &mut RawPeer, channel: u16, queue: &str, handles: (u32, u32)) -> Self {
        let tx = p
            .attach(
                channel,
                sender_attach(&format!("{queue}-tx"), handles.0, Some(queue)),
            )
            .await;
        p.await_credit(tx.handle).await;
        let rx = p
            .attach(
                channel,
                receiver_attach(&format!("{queue}-rx"), handles.1, queue),
            )
            .await;
        let dc0 = rx.initial_delivery_count.unwrap().0;
        p.flow(channel, handles.1, dc0, 1000, false).await;
        Self {
            channel,
            tx: handles.0,
            rx: rx.handle,
            delivered: 0,
        }
    }

    async fn check(&mut self, p: &mut RawPeer, body: &str) {
        let state = p
            .send_and_settle(self.channel, self.tx, &message(None, body))
            .await;
        assert!(matches!(state, DeliveryState::Accepted(_)), "{state:?}");
        let d = p.recv_delivery(self.channel, self.rx).await;
        assert_eq!(body_text(&d.payload), body);
        self.delivered += 1;
        p.disposition(
            self.channel,
            d.delivery_id,
            true,
            Some(DeliveryState::Accepted(Accepted {})),
        )
        .await;
    }
}

/// An established connection with a working roundtrip, for connection-scope cases.
async fn sibling_connection(addr: std::net::SocketAddr, queue: &str) -> (RawPeer, Roundtrip) {
    let mut p = RawPeer::open(addr).await;
    p.begin(0).await;
    let mut r = Roundtrip::setup(&mut p, 0, queue, (0, 1)).await;
    r.check(&mut p, "before").await;
    (p, r)
}

/// Opens a connection, lets `hostile` misbehave on it, and requires a close with `expected`
/// followed by EOF. An established sibling connection and a new one keep working.
async fn expect_connection_error(
    addr: std::net::SocketAddr,
    case: &str,
    expected: ErrorCondition,
    hostile: &[u8],
) {
    let (mut sib, mut r) = sibling_connection(addr, &format!("sib-{case}")).await;
    let mut p = RawPeer::open(addr).await;
    p.begin(0).await;
    p.write_raw(hostile).await;
    let (channel, close) = p.wait_for_on(|_: &Close| true).await;
    assert_eq!(channel, 0, "{case}: close is on channel 0");
    assert_eq!(
        condition(&close.error),
        Some(expected.clone()),
        "{case}: {close:?}"
    );
    p.expect_eof().await;
    assert!(
        !p.log
            .iter()
            .any(|f| f.name() == "end" || f.name() == "detach"),
        "{case}: connection scope answers with close only: {}",
        p.summary()
    );
    r.check(&mut sib, &format!("after-{case}")).await;
    assert_broker_serves(addr, &format!("fresh-{case}")).await;
}

// ----- framing -------------------------------------------------------------------------------

#[tokio::test]
async fn hostile_oversized_frame_closes_with_framing_error() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    // SIZE one above the 65536 we advertised; the body never needs to arrive.
    expect_connection_error(
        addr,
        "oversized",
        ErrorCondition::FramingError,
        &frame_header(65_537, 2, 0, 0),
    )
    .await;
    // A SIZE of four billion is refused just the same, without buffering anything.
    expect_connection_error(
        addr,
        "huge",
        ErrorCondition::FramingError,
        &frame_header(u32::MAX, 2, 0, 0),
    )
    .await;
    // After SASL too.
    let mut p = RawPeer::connect(addr).await;
    p.sasl_header().await;
    assert_eq!(p.sasl_init("ANONYMOUS", None).await, SaslCode::Ok);
    p.amqp_after_sasl(open_frame("oversized-sasl", 65_536))
        .await;
    p.write_raw(&frame_header(70_000, 2, 0, 0)).await;
    let close = p.expect_close_and_eof().await;
    assert_eq!(condition(&close.error), Some(ErrorCondition::FramingError));
    drop(server);
}

#[tokio::test]
async fn hostile_bad_frame_header_fields_close_with_framing_error() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let cases: [(&str, Vec<u8>); 4] = [
        ("doff-below-2", {
            let mut f = frame_header(16, 1, 0, 0).to_vec();
            f.extend_from_slice(&[0; 8]);
            f
        }),
        ("doff-beyond-frame", {
            let mut f = frame_header(16, 0x10, 0, 0).to_vec();
            f.extend_from_slice(&[0; 8]);
            f
        }),
        ("size-below-8", frame_header(4, 2, 0, 0).to_vec()),
        ("unknown-frame-type", frame_header(8, 2, 0x07, 0).to_vec()),
    ];
    for (case, bytes) in cases {
        expect_connection_error(addr, case, ErrorCondition::FramingError, &bytes).await;
    }
    // A legal extended header (DOFF 3) is skipped, not refused.
    let mut p = RawPeer::open(addr).await;
    let mut begin = BytesMut::new();
    encode_frame(
        &mut begin,
        FrameType::Amqp,
        0,
        &Performative::Begin(begin_frame()),
        &[],
        u32::MAX,
    )
    .unwrap();
    let body = begin.split_off(8);
    let mut f = frame_header(8 + 4 + body.len() as u32, 3, 0, 0).to_vec();
    f.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    f.extend_from_slice(&body);
    p.write_raw(&f).await;
    let (_, reply) = p
        .wait_for_on(|b: &ferry_codec::performatives::Begin| b.remote_channel == Some(0))
        .await;
    assert_eq!(reply.remote_channel, Some(0));
    drop(server);
}

#[tokio::test]
async fn hostile_garbage_instead_of_protocol_header() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let (mut sib, mut r) = sibling_connection(addr, "sib-garbage").await;
    let cases: [&[u8]; 7] = [
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"AMQP\x00\x00\x09\x01",             // AMQP 0-9-1
        b"AMQP\x01\x01\x00\x0a",             // AMQP 0-10
        b"AMQP\x02\x01\x00\x00",             // TLS, not offered on this listener
        b"AMQP\x00\x02\x00\x00",             // an unknown version
        b"\x16\x03\x01\x00\xa5\x01",         // a TLS ClientHello
        b"\x00\x00\x00\x08\x02\x00\x00\x00", // a frame before any header
    ];
    for garbage in cases {
        let mut p = RawPeer::connect(addr).await;
        p.write_raw(garbage).await;
        // The broker names the header it speaks (SASL first here), then hangs up.
        let got = p.read_to_eof(WAIT).await;
        assert_eq!(
            &got[..],
            &ProtocolHeader::SASL.to_bytes()[..],
            "answer to {garbage:?}"
        );
    }
    r.check(&mut sib, "after-garbage").await;
    assert_broker_serves(addr, "fresh-garbage").await;
    drop(server);
}

#[tokio::test]
async fn hostile_frame_on_unopened_channel() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let mut attach = BytesMut::new();
    encode_frame(
        &mut attach,
        FrameType::Amqp,
        7,
        &Performative::Attach(Box::new(sender_attach("nowhere", 0, Some("q")))),
        &[],
        u32::MAX,
    )
    .unwrap();
    expect_connection_error(addr, "attach-ch7", ErrorCondition::FramingError, &attach).await;
    let mut flow = BytesMut::new();
    encode_frame(
        &mut flow,
        FrameType::Amqp,
        3,
        &Performative::Flow(Flow {
            incoming_window: 10,
            outgoing_window: 10,
            ..Default::default()
        }),
        &[],
        u32::MAX,
    )
    .unwrap();
    expect_connection_error(addr, "flow-ch3", ErrorCondition::FramingError, &flow).await;
    drop(server);
}

// ----- decoding ------------------------------------------------------------------------------

#[tokio::test]
async fn hostile_truncated_or_undecodable_performative() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let cases: [(&str, &[u8]); 4] = [
        // An attach whose list8 claims 0x30 bytes but the frame ends after 8.
        (
            "truncated-list",
            &[
                0x00, 0x53, 0x12, 0xc0, 0x30, 0x0e, 0xa1, 0x03, b'a', b'b', b'c',
            ],
        ),
        // A list8 whose count claims more items than there are.
        (
            "short-count",
            &[0x00, 0x53, 0x11, 0xc0, 0x03, 0x05, 0x40, 0x43],
        ),
        // A format code that does not exist.
        (
            "bad-format-code",
            &[0x00, 0x53, 0x11, 0xc0, 0x02, 0x01, 0xff],
        ),
        // A descriptor no performative has.
        ("unknown-descriptor", &[0x00, 0x53, 0x99, 0x45]),
    ];
    for (case, body) in cases {
        expect_connection_error(
            addr,
            case,
            ErrorCondition::DecodeError,
            &frame_with_body(0, body),
        )
        .await;
    }
    drop(server);
}

#[tokio::test]
async fn hostile_missing_mandatory_field() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let cases: [(&str, &[u8]); 3] = [
        // attach with only a name: handle and role are missing.
        (
            "attach-name-only",
            &[0x00, 0x53, 0x12, 0xc0, 0x04, 0x01, 0xa1, 0x01, b'x'],
        ),
        // begin with a null next-outgoing-id.
        (
            "begin-null-next-outgoing-id",
            &[0x00, 0x53, 0x11, 0xc0, 0x05, 0x04, 0x40, 0x40, 0x43, 0x43],
        ),
        // flow without incoming-window.
        ("flow-empty", &[0x00, 0x53, 0x13, 0x45]),
    ];
    for (case, body) in cases {
        expect_connection_error(
            addr,
            case,
            ErrorCondition::InvalidField,
            &frame_with_body(0, body),
        )
        .await;
    }
    drop(server);
}

// ----- connection state ----------------------------------------------------------------------

#[tokio::test]
async fn hostile_begin_before_open_and_open_twice() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let (mut sib, mut r) = sibling_connection(addr, "sib-state").await;

    // begin before open: the broker opens (open must precede close), then closes.
    let mut p = RawPeer::connect(addr).await;
    p.write_raw(&ProtocolHeader::AMQP.to_bytes()).await;
    p.read_header().await;
    p.send(0, Performative::Begin(begin_frame())).await;
    let _: Open = p.expect().await;
    let close: Close = p.expect().await;
    assert_eq!(condition(&close.error), Some(ErrorCondition::IllegalState));
    p.expect_eof().await;

    // attach before open, likewise.
    let mut p = RawPeer::connect(addr).await;
    p.write_raw(&ProtocolHeader::AMQP.to_bytes()).await;
    p.read_header().await;
    p.send(
        0,
        Performative::Attach(Box::new(sender_attach("early", 0, Some("q")))),
    )
    .await;
    let _: Open = p.expect().await;
    let close: Close = p.expect().await;
    assert_eq!(condition(&close.error), Some(ErrorCondition::IllegalState));
    p.expect_eof().await;

    // open twice.
    let mut p = RawPeer::open(addr).await;
    p.send(0, Performative::Open(open_frame("again", 65_536)))
        .await;
    let close = p.expect_close_and_eof().await;
    assert_eq!(condition(&close.error), Some(ErrorCondition::IllegalState));

    // An AMQP frame in the middle of the SASL exchange: no AMQP close is possible, the
    // broker hangs up.
    let mut p = RawPeer::connect(addr).await;
    p.sasl_header().await;
    p.send(0, Performative::Open(open_frame("sasl-skipper", 65_536)))
        .await;
    let after = p.expect_eof().await;
    assert!(after.is_empty(), "{after:?}");

    r.check(&mut sib, "after-state").await;
    drop(server);
}

#[tokio::test]
async fn hostile_slow_peers_hit_the_handshake_timeout() {
    let engine = ConnectionConfig {
        handshake_timeout: Duration::from_secs(1),
        ..common::server_engine()
    };
    let server = common::start_with(BrokerConfig::default(), engine).await;
    let addr = server.addresses[0];
    // An established connection idles past the timeout and keeps working: the timer only
    // covers the handshake.
    let (mut sib, mut r) = sibling_connection(addr, "sib-slow").await;
    let t0 = Instant::now();

    let header_only = async {
        let mut p = RawPeer::connect(addr).await;
        p.write_raw(&ProtocolHeader::AMQP.to_bytes()).await;
        p.read_header().await;
        // Never sends open: the broker opens and closes.
        let _: Open = p.expect().await;
        let close: Close = p.expect().await;
        p.expect_eof().await;
        (close, Instant::now())
    };
    let silent = async {
        let mut p = RawPeer::connect(addr).await;
        let got = p.read_to_eof(WAIT).await;
        (got, Instant::now())
    };
    let sasl_stalled = async {
        let mut p = RawPeer::connect(addr).await;
        p.sasl_header().await;
        let after = p.expect_eof().await;
        (after.len(), Instant::now())
    };
    let half_frame = async {
        let mut p = RawPeer::connect(addr).await;
        p.write_raw(&ProtocolHeader::AMQP.to_bytes()).await;
        p.read_header().await;
        // The first bytes of an open, then nothing: a slowloris.
        p.write_raw(&frame_header(100, 2, 0, 0)[..6]).await;
        let _: Open = p.expect().await;
        let close: Close = p.expect().await;
        p.expect_eof().await;
        (close, Instant::now())
    };
    let ((close_a, at_a), (got_b, at_b), (after_c, at_c), (close_d, at_d)) =
        tokio::join!(header_only, silent, sasl_stalled, half_frame);
    assert_eq!(
        condition(&close_a.error),
        Some(ErrorCondition::ResourceLimitExceeded)
    );
    assert_eq!(
        condition(&close_d.error),
        Some(ErrorCondition::ResourceLimitExceeded)
    );
    assert!(got_b.is_empty(), "a silent peer gets nothing: {got_b:?}");
    assert_eq!(after_c, 0, "nothing after sasl-mechanisms");
    for at in [at_a, at_b, at_c, at_d] {
        let waited = at - t0;
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
            "closed after {waited:?}"
        );
    }
    r.check(&mut sib, "after-slow").await;
    drop(server);
}

// ----- session scope -------------------------------------------------------------------------

/// Expects `end` with `expected` on our session `channel`, answers it, and checks that no
/// close came and that session `sibling` still works.
async fn expect_session_error(
    p: &mut RawPeer,
    channel: u16,
    expected: ErrorCondition,
    sibling: &mut Roundtrip,
    case: &str,
) {
    let remote = p.remote(channel);
    let (ch, end) = p.wait_for_on(|_: &End| true).await;
    assert_eq!(ch, remote, "{case}: the end is for the offending session");
    assert_eq!(condition(&end.error), Some(expected), "{case}: {end:?}");
    p.send(channel, Performative::End(End { error: None }))
        .await;
    sibling.check(p, &format!("after-{case}")).await;
    assert!(
        !p.log.iter().any(|f| f.name() == "close"),
        "{case}: session scope only: {}",
        p.summary()
    );
    let sibling_remote = p.remote(sibling.channel);
    assert!(
        !p.log
            .iter()
            .any(|f| f.name() == "end" && f.channel == sibling_remote),
        "{case}: the sibling session was not ended"
    );
}

#[tokio::test]
async fn hostile_attach_with_handle_in_use_ends_the_session() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let mut p = RawPeer::open(addr).await;
    p.begin(1).await;
    let mut sibling = Roundtrip::setup(&mut p, 1, "sib-hiu", (0, 1)).await;
    p.begin(0).await;
    p.attach(0, sender_attach("first", 0, Some("q-hiu"))).await;
    p.send(
        0,
        Performative::Attach(Box::new(sender_attach("second", 0, Some("q-hiu")))),
    )
    .await;
    expect_session_error(
        &mut p,
        0,
        ErrorCondition::HandleInUse,
        &mut sibling,
        "handle-in-use",
    )
    .await;
    // The channel can be used again.
    p.begin(0).await;
    let mut again = Roundtrip::setup(&mut p, 0, "q-hiu-again", (0, 1)).await;
    again.check(&mut p, "reused").await;
    drop(server);
}

#[tokio::test]
async fn hostile_frames_on_unattached_handles_end_the_session() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let mut p = RawPeer::open(addr).await;
    p.begin(1).await;
    let mut sibling = Roundtrip::setup(&mut p, 1, "sib-unattached", (0, 1)).await;
    for (channel, case) in [
        (2u16, "transfer"),
        (3, "flow"),
        (4, "detach"),
        (5, "disposition"),
    ] {
        p.begin(channel).await;
        match case {
            "transfer" => {
                p.transfer(channel, 9, &message(None, "to nowhere"), false)
                    .await;
            }
            "flow" => p.flow(channel, 9, 0, 10, false).await,
            "detach" => {
                p.send(
                    channel,
                    Performative::Detach(Detach {
                        handle: 9,
                        closed: true,
                        error: None,
                    }),
                )
                .await
            }
            _ => {
                // A disposition for a delivery that does not exist is harmless: ignored.
                p.disposition(
                    channel,
                    12345,
                    true,
                    Some(DeliveryState::Accepted(Accepted {})),
                )
                .await;
                let (frames, eof) = p.frames_for(Duration::from_millis(100)).await;
                assert!(!eof);
                assert!(
                    !frames.iter().any(|f| matches!(f.name(), "end" | "close")),
                    "{frames:?}"
                );
                sibling.check(&mut p, "after-disposition").await;
                continue;
            }
        }
        expect_session_error(
            &mut p,
            channel,
            ErrorCondition::UnattachedHandle,
            &mut sibling,
            case,
        )
        .await;
    }
    drop(server);
}

#[tokio::test]
async fn hostile_transfers_beyond_the_incoming_window() {
    let engine = ConnectionConfig {
        session_window: 8,
        ..common::server_engine()
    };
    let server = common::start_with(BrokerConfig::default(), engine).await;
    let addr = server.addresses[0];
    let mut p = RawPeer::open(addr).await;
    p.begin(1).await;
    let mut sibling = Roundtrip::setup(&mut p, 1, "sib-window", (0, 1)).await;
    let begin = p.begin(0).await;
    assert_eq!(begin.incoming_window, 8);
    let tx = p
        .attach(0, sender_attach("burst", 0, Some("q-window")))
        .await;
    p.await_credit(tx.handle).await;
    // 64 transfers in one write: far past the 8 advertised, before any flow can reopen it.
    for i in 0..64 {
        p.push_transfer(0, 0, &message(None, &format!("b{i}")), true);
    }
    p.flush().await;
    expect_session_error(
        &mut p,
        0,
        ErrorCondition::WindowViolation,
        &mut sibling,
        "window-violation",
    )
    .await;
    // A peer that waits for each settlement never runs out of window.
    for i in 0..40 {
        sibling.check(&mut p, &format!("paced-{i}")).await;
    }
    drop(server);
}

// ----- link scope ----------------------------------------------------------------------------

#[tokio::test]
async fn hostile_message_above_max_message_size_detaches_the_link() {
    let engine = ConnectionConfig {
        max_message_size: 1000,
        ..common::server_engine()
    };
    let server = common::start_with(BrokerConfig::default(), engine).await;
    let addr = server.addresses[0];
    let mut p = RawPeer::open(addr).await;
    p.begin(0).await;
    let big = p
        .attach(0, sender_attach("too-big", 0, Some("q-mms")))
        .await;
    assert_eq!(big.max_message_size, Some(1000));
    p.await_credit(big.handle).await;
    let mut sibling = Roundtrip::setup(&mut p, 0, "q-mms", (1, 2)).await;

    // Exactly the limit is fine.
    let state = p.send_and_settle(0, 0, &message_of_len(1000)).await;
    assert!(matches!(state, DeliveryState::Accepted(_)), "{state:?}");
    // 1500 bytes in two frames: refused as soon as the first frame passes the limit.
    let too_big = message_of_len(1500);
    let (_, frames) = p.transfer_split(0, 0, &too_big, false, 1200).await;
    assert_eq!(frames, 2);
    let detach: Detach = p.wait_for(|d: &Detach| d.handle == big.handle).await;
    assert!(detach.closed);
    assert_eq!(
        condition(&detach.error),
        Some(ErrorCondition::MessageSizeExceeded)
    );
    p.send(
        0,
        Performative::Detach(Detach {
            handle: 0,
            closed: true,
            error: None,
        }),
    )
    .await;
    // The sibling link on the same session carries on; it drains the accepted message
    // first.
    let d = p.recv_delivery(0, sibling.rx).await;
    assert_eq!(d.payload, message_of_len(1000));
    sibling.check(&mut p, "after-too-big").await;
    assert!(
        !p.log.iter().any(|f| matches!(f.name(), "end" | "close")),
        "link scope only: {}",
        p.summary()
    );
    // The handle can be attached again.
    let again = p
        .attach(0, sender_attach("too-big-2", 0, Some("q-mms")))
        .await;
    p.await_credit(again.handle).await;
    let state = p.send_and_settle(0, 0, &message(None, "small")).await;
    assert!(matches!(state, DeliveryState::Accepted(_)));
    drop(server);
}

// ----- many at once --------------------------------------------------------------------------

/// One hostile connection of kind `kind`; `Ok` when the broker dealt with it as it should.
async fn hostile(addr: std::net::SocketAddr, kind: usize) -> Result<(), String> {
    async fn closes(p: &mut RawPeer, expected: ErrorCondition) -> Result<(), String> {
        let close: Close = p.wait_for(|_| true).await;
        p.expect_eof().await;
        match condition(&close.error) {
            Some(c) if c == expected => Ok(()),
            other => Err(format!("expected {expected}, got {other:?}")),
        }
    }
    async fn ends(p: &mut RawPeer, expected: ErrorCondition) -> Result<(), String> {
        let end: End = p.wait_for(|_| true).await;
        match condition(&end.error) {
            Some(c) if c == expected => Ok(()),
            other => Err(format!("expected {expected}, got {other:?}")),
        }
    }
    match kind {
        0 => {
            let mut p = RawPeer::connect(addr).await;
            p.write_raw(b"GET / HTTP/1.0\r\n\r\n").await;
            let got = p.read_to_eof(WAIT).await;
            (got[..] == ProtocolHeader::SASL.to_bytes()[..])
                .then_some(())
                .ok_or(format!("{got:?}"))
        }
        1 => {
            let mut p = RawPeer::open(addr).await;
            p.write_raw(&frame_header(1 << 30, 2, 0, 0)).await;
            closes(&mut p, ErrorCondition::FramingError).await
        }
        2 => {
            let mut p = RawPeer::open(addr).await;
            p.write_raw(&frame_header(8, 1, 0, 0)).await;
            closes(&mut p, ErrorCondition::FramingError).await
        }
        3 => {
            let mut p = RawPeer::open(addr).await;
            p.send(9, Performative::Begin(begin_frame())).await;
            p.send(
                200,
                Performative::Attach(Box::new(sender_attach("x", 0, Some("q")))),
            )
            .await;
            closes(&mut p, ErrorCondition::FramingError).await
        }
        4 => {
            let mut p = RawPeer::open(addr).await;
            p.begin(0).await;
            p.push(
                0,
                Performative::Attach(Box::new(sender_attach("h1", 0, Some("hostile-q")))),
            );
            p.push(
                0,
                Performative::Attach(Box::new(sender_attach("h2", 0, Some("hostile-q")))),
            );
            p.flush().await;
            ends(&mut p, ErrorCondition::HandleInUse).await
        }
        5 => {
            let mut p = RawPeer::open(addr).await;
            p.begin(0).await;
            p.transfer(0, 77, &message(None, "x"), true).await;
            ends(&mut p, ErrorCondition::UnattachedHandle).await
        }
        6 => {
            let mut p = RawPeer::open(addr).await;
            p.write_raw(&frame_with_body(0, &[0x00, 0x53, 0x10, 0xd0, 0, 0, 1, 0]))
                .await;
            closes(&mut p, ErrorCondition::DecodeError).await
        }
        7 => {
            let mut p = RawPeer::open(addr).await;
            p.write_raw(&frame_with_body(0, &[0x00, 0x53, 0x11, 0x45]))
                .await;
            closes(&mut p, ErrorCondition::InvalidField).await
        }
        8 => {
            let mut p = RawPeer::connect(addr).await;
            p.write_raw(&ProtocolHeader::AMQP.to_bytes()).await;
            p.read_header().await;
            p.send(0, Performative::Begin(begin_frame())).await;
            closes(&mut p, ErrorCondition::IllegalState).await
        }
        9 => {
            // Never opens: the handshake timeout (1 s here) ends it.
            let mut p = RawPeer::connect(addr).await;
            p.write_raw(&ProtocolHeader::AMQP.to_bytes()).await;
            p.read_header().await;
            closes(&mut p, ErrorCondition::ResourceLimitExceeded).await
        }
        10 => {
            let mut p = RawPeer::open(addr).await;
            p.send(0, Performative::Open(open_frame("twice", 512)))
                .await;
            closes(&mut p, ErrorCondition::IllegalState).await
        }
        11 => {
            // Pseudo-random bytes after open: closed with some error, never hanging.
            let mut p = RawPeer::open(addr).await;
            let mut x = 0x2545_f491_u32.wrapping_mul(kind as u32 + 1);
            let noise: Vec<u8> = (0..4096)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            p.write_raw(&noise).await;
            let close: Close = p.wait_for(|_| true).await;
            p.expect_eof().await;
            close
                .error
                .map(|_| ())
                .ok_or_else(|| "close without error".to_string())
        }
        12 => {
            // 3000 transfers in one write, far past the 16-frame window.
            let mut p = RawPeer::open(addr).await;
            p.begin(0).await;
            let tx = p
                .attach(0, sender_attach("flood", 0, Some("hostile-flood")))
                .await;
            p.await_credit(tx.handle).await;
            for _ in 0..3000 {
                p.push_transfer(0, 0, b"\x00\x53\x77\x40", true);
            }
            p.flush().await;
            ends(&mut p, ErrorCondition::WindowViolation).await
        }
        13 => {
            // Half a frame, then gone.
            let mut p = RawPeer::open(addr).await;
            p.begin(0).await;
            p.write_raw(&frame_header(300, 2, 0, 0)).await;
            p.write_raw(&[0x00, 0x53, 0x14]).await;
            Ok(())
        }
        14 => {
            // Two hundred attaches to fresh addresses in one write, then gone.
            let mut p = RawPeer::open(addr).await;
            p.begin(0).await;
            for h in 0..200 {
                p.push(
                    0,
                    Performative::Attach(Box::new(sender_attach(
                        &format!("spray-{h}"),
                        h,
                        Some(&format!("hostile-spray-{kind}-{h}")),
                    ))),
                );
            }
            p.flush().await;
            let _: Attach = p.wait_for(|_| true).await;
            Ok(())
        }
        15 => {
            // A consumer on the good client's queue that takes messages, never settles, and
            // vanishes: what it took must go back to the queue.
            let mut p = RawPeer::open(addr).await;
            p.begin(0).await;
            let rx = p.attach(0, receiver_attach("thief", 0, "good-20")).await;
            p.flow(0, 0, rx.initial_delivery_count.unwrap().0, 30, false)
                .await;
            let _ = p.frames_for(Duration::from_millis(300)).await;
            Ok(())
        }
        16 => {
            let mut p = RawPeer::connect(addr).await;
            p.sasl_header().await;
            let code = p.sasl_init("NO-SUCH-MECH", Some(b"x")).await;
            p.expect_eof().await;
            (code != SaslCode::Ok)
                .then_some(())
                .ok_or_else(|| "unknown mechanism accepted".to_string())
        }
        17 => {
            // A heartbeat flood, then a proper close: answered.
            let mut p = RawPeer::open(addr).await;
            let beats: Vec<u8> = std::iter::repeat_n(frame_header(8, 2, 0, 0), 20_000)
                .flatten()
                .collect();
            p.write_raw(&beats).await;
            p.send(0, Performative::Close(Close { error: None })).await;
            let close: Close = p.wait_for(|_| true).await;
            p.expect_eof().await;
            close
                .error
                .is_none()
                .then_some(())
                .ok_or_else(|| format!("{close:?}"))
        }
        18 => {
            let mut p = RawPeer::open(addr).await;
            p.begin(0).await;
            p.send(
                0,
                Performative::Detach(Detach {
                    handle: 5,
                    closed: false,
                    error: None,
                }),
            )
            .await;
            ends(&mut p, ErrorCondition::UnattachedHandle).await
        }
        _ => {
            let mut p = RawPeer::open(addr).await;
            p.write_raw(&frame_header(3, 2, 0, 0)).await;
            closes(&mut p, ErrorCondition::FramingError).await
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_twenty_connections_while_a_good_client_works() {
    // A small session window, so that a burst is a violation however the broker's reads
    // split it (the good client's engine keeps to the window).
    let engine = ConnectionConfig {
        handshake_timeout: Duration::from_secs(1),
        session_window: 16,
        ..common::server_engine()
    };
    let server = common::start_with(BrokerConfig::default(), engine).await;
    let addr = server.addresses[0];

    let mut good = common::TestClient::connect(addr).await;
    let rx = good
        .receiver(Source {
            address: Some(Str::from("good-20")),
            ..Default::default()
        })
        .await;
    let tx = good.sender(Some("good-20")).await;

    let mut hostiles = tokio::task::JoinSet::new();
    for kind in 0..20 {
        hostiles.spawn(async move { (kind, hostile(addr, kind).await) });
    }

    good.send_many(tx, 100, |i| common::text_message(None, &format!("m{i}")))
        .await;
    good.engine.grant_credit(rx, 50, false).unwrap();
    let mut got = BTreeSet::new();
    let mut accepted = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 100 || accepted < 100 {
        assert!(
            Instant::now() < deadline,
            "good client got {} messages, {accepted} accepted",
            got.len()
        );
        good.pump(Duration::from_millis(5)).await;
        for d in good.deliveries() {
            assert!(
                got.insert(common::body_of(&d.message)),
                "delivered twice to the good client"
            );
            good.engine
                .settle_incoming(rx, d.delivery_id, DeliveryState::Accepted(Accepted {}))
                .unwrap();
        }
        good.events.retain(|e| match e {
            Event::Disposition {
                settled: true,
                state: Some(DeliveryState::Accepted(_)),
                ..
            } => {
                accepted += 1;
                false
            }
            _ => true,
        });
        if good.engine.credit(rx).unwrap_or(0) < 20 {
            good.engine.grant_credit(rx, 50, false).unwrap();
        }
    }
    let expected: BTreeSet<String> = (0..100).map(|i| format!("m{i}")).collect();
    assert_eq!(got, expected);

    let mut failures = Vec::new();
    let all = async {
        while let Some(r) = hostiles.join_next().await {
            let (kind, outcome) = r.expect("hostile task panicked");
            if let Err(e) = outcome {
                failures.push(format!("kind {kind}: {e}"));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), all)
        .await
        .expect("every hostile connection was dealt with");
    assert!(failures.is_empty(), "{failures:?}");
    // And the broker still serves.
    assert_broker_serves(addr, "after-twenty").await;
    drop(server);
}
