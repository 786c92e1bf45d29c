//! One raw-frame test per cross-cutting MUST of `CLIENTS.md` §1: each speaks bytes over a real
//! socket, the way the client that needs the MUST does, and checks the broker's exact frames.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
#[path = "common/raw.rs"]
mod raw;

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use ferry::broker::{BrokerConfig, DYNAMIC_PREFIX, DeclaredQueue, QueueLimits};
use ferry::proto::ConnectionConfig;
use ferry_codec::definitions::{
    Error, ErrorCondition, Fields, ReceiverSettleMode, Role, SenderSettleMode, SequenceNo,
};
use ferry_codec::delivery_state::{Accepted, DeliveryState, Modified, Rejected};
use ferry_codec::frames::{FrameType, ProtocolHeader, encode_frame};
use ferry_codec::messaging::{Message, Source, Target, TargetKind};
use ferry_codec::performatives::{
    Attach, Close, Detach, Disposition, End, Flow, Open, Performative, Transfer,
};
use ferry_codec::sasl::SaslCode;
use ferry_codec::types::{Str, Symbol, Value};
use raw::*;
use tokio::time::Instant;

fn has(list: &[Symbol], name: &str) -> bool {
    list.iter().any(|s| s.as_str() == name)
}

fn accepted(state: &DeliveryState) -> bool {
    matches!(state, DeliveryState::Accepted(_))
}

/// Sends `bodies` to `queue` on a connection of its own and waits until all are accepted.
async fn preload(addr: std::net::SocketAddr, queue: &str, bodies: &[&str]) {
    let mut p = RawPeer::open(addr).await;
    p.begin(0).await;
    let reply = p
        .attach(
            0,
            sender_attach(&format!("preload-{queue}"), 0, Some(queue)),
        )
        .await;
    p.await_credit(reply.handle).await;
    for b in bodies {
        let state = p.send_and_settle(0, 0, &message(None, b)).await;
        assert!(accepted(&state), "{state:?}");
    }
}

// ----- MUST 1 --------------------------------------------------------------------------------

#[tokio::test]
async fn must_01_protocol_header_sniffed() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];

    // SASL header (proton, pyamqp, @azure): the SASL header comes back, then mechanisms.
    let mut p = RawPeer::connect(addr).await;
    let mechanisms = p.sasl_header().await;
    assert!(has(&mechanisms, "ANONYMOUS"), "{mechanisms:?}");
    assert_eq!(
        p.sasl_init("ANONYMOUS", Some(b"anonymous")).await,
        SaslCode::Ok
    );
    let open = p.amqp_after_sasl(open_frame("must01-sasl", 65_536)).await;
    assert_eq!(open.container_id, "ferry-test");
    p.begin(0).await;

    // Plain header (rhea, pyngus, fe2o3 without credentials), pipelined with the open:
    // the plain header comes back, then the open, with no SASL frame in between.
    let mut q = RawPeer::connect(addr).await;
    let mut bytes = BytesMut::new();
    bytes.put_slice(&ProtocolHeader::AMQP.to_bytes());
    encode_frame(
        &mut bytes,
        FrameType::Amqp,
        0,
        &Performative::Open(open_frame("must01-plain", 65_536)),
        &[],
        u32::MAX,
    )
    .unwrap();
    q.write_raw(&bytes).await;
    assert_eq!(q.read_header().await, ProtocolHeader::AMQP.to_bytes());
    let _: Open = q.expect().await;
    q.begin(0).await;

    // A header that trickles in is still recognised.
    let mut r = RawPeer::connect(addr).await;
    r.write_raw(b"AM").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    r.write_raw(&ProtocolHeader::AMQP.to_bytes()[2..]).await;
    assert_eq!(r.read_header().await, ProtocolHeader::AMQP.to_bytes());
    r.send_open(open_frame("must01-slow", 65_536)).await;
    r.begin(0).await;
    drop(server);
}

// ----- MUST 2 --------------------------------------------------------------------------------

#[tokio::test]
async fn must_02_sasl_anonymous_and_plain() {
    // The daemon's own listener settings (built-in config on loopback), with one PLAIN user.
    let server = start_server(
        BrokerConfig::default(),
        vec![daemon_engine()],
        Arc::new(UserPass {
            user: "alice",
            pass: "secret",
        }),
    )
    .await;
    let addr = server.addresses[0];

    // ANONYMOUS and PLAIN are offered; EXTERNAL is not (no client certificate here).
    let mut p = RawPeer::connect(addr).await;
    let mechanisms = p.sasl_header().await;
    assert!(has(&mechanisms, "ANONYMOUS"), "{mechanisms:?}");
    assert!(has(&mechanisms, "PLAIN"), "{mechanisms:?}");
    assert!(!has(&mechanisms, "EXTERNAL"), "{mechanisms:?}");
    // Proton's ANONYMOUS carries the initial response "anonymous".
    assert_eq!(
        p.sasl_init("ANONYMOUS", Some(b"anonymous")).await,
        SaslCode::Ok
    );
    p.amqp_after_sasl(open_frame("must02-anon", 65_536)).await;
    p.begin(0).await;

    // Azure's ANONYMOUS has no initial response at all.
    let mut p = RawPeer::connect(addr).await;
    p.sasl_header().await;
    assert_eq!(p.sasl_init("ANONYMOUS", None).await, SaslCode::Ok);
    p.amqp_after_sasl(open_frame("must02-anon2", 65_536)).await;

    // PLAIN with the right password (proton with user:pass over TCP, rhea-promise).
    let mut p = RawPeer::connect(addr).await;
    p.sasl_header().await;
    assert_eq!(
        p.sasl_init("PLAIN", Some(b"\0alice\0secret")).await,
        SaslCode::Ok
    );
    p.amqp_after_sasl(open_frame("must02-plain", 65_536)).await;
    p.begin(0).await;

    // PLAIN with a wrong password: outcome `auth`, then the socket closes.
    let mut p = RawPeer::connect(addr).await;
    p.sasl_header().await;
    assert_eq!(
        p.sasl_init("PLAIN", Some(b"\0alice\0wrong")).await,
        SaslCode::Auth
    );
    let after = p.expect_eof().await;
    assert!(
        after.is_empty(),
        "nothing after a failed outcome: {after:?}"
    );

    // EXTERNAL, not offered, is refused the same way.
    let mut p = RawPeer::connect(addr).await;
    p.sasl_header().await;
    assert_ne!(p.sasl_init("EXTERNAL", Some(b"")).await, SaslCode::Ok);
    p.expect_eof().await;
    drop(server);
}

// ----- MUST 3 --------------------------------------------------------------------------------

#[tokio::test]
async fn must_03_open_fields_explicit_relay_product_no_hostname() {
    let server = start_server(
        BrokerConfig::default(),
        vec![daemon_engine(), common::server_engine()],
        Arc::new(common::NoUsers),
    )
    .await;
    for (i, addr) in server.addresses.iter().enumerate() {
        // Our open has no hostname (rhea's default): the broker must not require one.
        let mut p = RawPeer::open(*addr).await;
        let open_frame = p.log.iter().find(|f| f.name() == "open").unwrap().clone();
        let (code, _, fields) = raw_fields(&open_frame.body);
        assert_eq!(code, 0x10);
        // eventhub's `frame[2] < 512`: max-frame-size present and sensible.
        match &fields[2] {
            Value::Uint(n) => assert!(*n >= 512, "max-frame-size {n}"),
            other => panic!("max-frame-size must be an explicit uint, got {other:?}"),
        }
        assert!(
            matches!(fields[3], Value::Ushort(_)),
            "channel-max must be explicit, got {:?}",
            fields[3]
        );
        let open = p.broker_open.clone().unwrap();
        assert!(
            has(&open.offered_capabilities, "ANONYMOUS-RELAY"),
            "{:?}",
            open.offered_capabilities
        );
        if i == 0 {
            // The daemon's config sets properties: oslo picks routable addressing by product.
            let props = open.properties.expect("the daemon sends open properties");
            assert_eq!(props.get("product"), Some(&Value::string("ferry")));
            assert_eq!(open.max_frame_size, 65_536);
        }
        // And the connection is usable.
        p.begin(0).await;
    }
    drop(server);
}

// ----- MUST 4 --------------------------------------------------------------------------------

#[tokio::test]
async fn must_04_performatives_carry_all_fields() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let mut p = RawPeer::connect(addr).await;
    p.sasl_header().await;
    assert_eq!(p.sasl_init("ANONYMOUS", None).await, SaslCode::Ok);
    p.amqp_after_sasl(open_frame("must04", 65_536)).await;
    p.begin(0).await;
    let tx = p.attach(0, sender_attach("must04-tx", 0, Some("q4"))).await;
    p.await_credit(tx.handle).await;
    assert!(accepted(
        &p.send_and_settle(0, 0, &message(None, "m4")).await
    ));
    let rx = p.attach(0, receiver_attach("must04-rx", 1, "q4")).await;
    p.flow(0, 1, 0, 10, false).await;
    let d = p.recv_delivery(0, rx.handle).await;
    p.disposition(
        0,
        d.delivery_id,
        true,
        Some(DeliveryState::Accepted(Accepted {})),
    )
    .await;
    p.send(
        0,
        Performative::Detach(Detach {
            handle: 1,
            closed: true,
            error: None,
        }),
    )
    .await;
    let _: Detach = p.wait_for(|d: &Detach| d.handle == rx.handle).await;
    p.send(0, Performative::End(End { error: None })).await;
    let _: End = p.wait_for(|_| true).await;
    p.send(0, Performative::Close(Close { error: None })).await;
    p.expect_close_and_eof().await;

    // Every frame the broker sent, read the way eventhub's pyamqp reads them: list8/list32
    // only, every field present, begin[4] (handle-max) not null.
    let expected_fields = |code: u64| match code {
        0x10 => 10, // open
        0x11 => 8,  // begin
        0x12 => 14, // attach
        0x13 => 11, // flow
        0x14 => 11, // transfer
        0x15 => 6,  // disposition
        0x16 => 3,  // detach
        0x17 => 1,  // end
        0x18 => 1,  // close
        0x40 => 1,  // sasl-mechanisms
        0x44 => 2,  // sasl-outcome
        other => panic!("unexpected descriptor 0x{other:x}"),
    };
    let mut seen = std::collections::BTreeSet::new();
    for f in &p.log {
        if f.body.is_empty() {
            continue; // heartbeat
        }
        let (code, constructor, fields) = raw_fields(&f.body);
        assert!(
            constructor == 0xc0 || constructor == 0xd0,
            "{} encoded with constructor 0x{constructor:02x}",
            f.name()
        );
        assert_eq!(
            fields.len(),
            expected_fields(code),
            "{} has {} fields",
            f.name(),
            fields.len()
        );
        if code == 0x11 {
            assert!(
                matches!(fields[4], Value::Uint(_)),
                "begin handle-max: {:?}",
                fields[4]
            );
        }
        seen.insert(code);
    }
    let all: std::collections::BTreeSet<u64> = (0x10..=0x18).chain([0x40, 0x44]).collect();
    assert_eq!(seen, all, "every performative was checked");
    drop(server);
}

// ----- MUST 5 --------------------------------------------------------------------------------

#[tokio::test]
async fn must_05_links_keyed_by_name_and_role() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let mut p = RawPeer::open(addr).await;
    p.begin(0).await;
    // Proton names both links `<container-id>-<address>`.
    let name = "must05-container-q5";
    let tx = p.attach(0, sender_attach(name, 0, Some("q5"))).await;
    let rx = p.attach(0, receiver_attach(name, 1, "q5")).await;
    assert_eq!(tx.role, Role::Receiver);
    assert_eq!(rx.role, Role::Sender);
    assert_ne!(tx.handle, rx.handle);
    assert!(
        !p.log
            .iter()
            .any(|f| f.name() == "detach" || f.name() == "end"),
        "{}",
        p.summary()
    );
    p.await_credit(tx.handle).await;
    assert!(accepted(
        &p.send_and_settle(0, 0, &message(None, "one")).await
    ));
    let dc = rx.initial_delivery_count.unwrap().0;
    p.flow(0, 1, dc, 10, false).await;
    let d = p.recv_delivery(0, rx.handle).await;
    assert_eq!(body_text(&d.payload), "one");
    p.disposition(
        0,
        d.delivery_id,
        true,
        Some(DeliveryState::Accepted(Accepted {})),
    )
    .await;

    // Closing the sender leaves its same-named receiver alone.
    p.send(
        0,
        Performative::Detach(Detach {
            handle: 0,
            closed: true,
            error: None,
        }),
    )
    .await;
    let detach: Detach = p.wait_for(|d: &Detach| d.handle == tx.handle).await;
    assert!(detach.error.is_none());
    preload(addr, "q5", &["two"]).await;
    let d = p.recv_delivery(0, rx.handle).await;
    assert_eq!(body_text(&d.payload), "two");
    drop(server);
}

// ----- MUST 6 --------------------------------------------------------------------------------

#[tokio::test]
async fn must_06_attach_reply_echoes_fills_dynamic_and_comes_first() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    preload(addr, "q6", &["a", "b", "c"]).await;

    let mut p = RawPeer::open(addr).await;
    p.begin(0).await;
    // Attach and credit pipelined in one write: messages are waiting, yet the attach reply
    // must precede every flow and transfer on its handle.
    let mut attach = receiver_attach("must06-rx", 0, "q6");
    attach.target = Some(TargetKind::Target(target(Some("raw-target-6"))));
    p.push(0, Performative::Attach(Box::new(attach)));
    let flow = p.flow_frame(0, 0, 0, 10, false);
    p.push(0, Performative::Flow(flow));
    p.flush().await;
    let rx: Attach = p
        .wait_for(|a: &Attach| a.name == "must06-rx" && a.role == Role::Sender)
        .await;
    for _ in 0..3 {
        p.recv_delivery(0, rx.handle).await;
    }
    let remote = p.remote(0);
    let attach_at = p
        .log
        .iter()
        .position(|f| f.name() == "attach" && f.channel == remote)
        .unwrap();
    let first_use = p
        .log
        .iter()
        .position(|f| {
            f.channel == remote
                && matches!(f.name(), "flow" | "transfer")
                && f.handle() == Some(rx.handle)
        })
        .unwrap();
    assert!(attach_at < first_use, "{}", p.summary());
    assert_eq!(rx.source.as_ref().unwrap().address.as_deref(), Some("q6"));
    match &rx.target {
        Some(TargetKind::Target(t)) => assert_eq!(t.address.as_deref(), Some("raw-target-6")),
        other => panic!("target not echoed: {other:?}"),
    }

    // A sender's source and target are echoed too.
    let tx = p
        .attach(0, sender_attach("must06-tx", 1, Some("q6b")))
        .await;
    assert_eq!(
        tx.source.as_ref().unwrap().address.as_deref(),
        Some("must06-tx")
    );
    match &tx.target {
        Some(TargetKind::Target(t)) => assert_eq!(t.address.as_deref(), Some("q6b")),
        other => panic!("target not echoed: {other:?}"),
    }

    // A dynamic source gets its address filled in; the target is echoed.
    let dynamic_rx = Attach {
        source: Some(Source {
            dynamic: true,
            ..Default::default()
        }),
        ..receiver_attach("must06-dyn-rx", 2, "unused")
    };
    let drx = p.attach(0, dynamic_rx).await;
    let dyn_source = drx.source.clone().unwrap();
    let address = dyn_source
        .address
        .clone()
        .expect("dynamic address filled in");
    assert!(address.starts_with(DYNAMIC_PREFIX), "{address}");
    assert!(drx.target.is_some());

    // A dynamic target gets its address filled in; the source is echoed.
    let dynamic_tx = Attach {
        target: Some(TargetKind::Target(Target {
            dynamic: true,
            ..Default::default()
        })),
        ..sender_attach("must06-dyn-tx", 3, None)
    };
    let dtx = p.attach(0, dynamic_tx).await;
    match &dtx.target {
        Some(TargetKind::Target(t)) => {
            let a = t
                .address
                .as_deref()
                .expect("dynamic target address filled in");
            assert!(a.starts_with(DYNAMIC_PREFIX), "{a}");
        }
        other => panic!("no target: {other:?}"),
    }
    assert!(dtx.source.is_some());

    // The dynamic source works: a message sent to its address arrives after its attach.
    let to_dyn = p
        .attach(0, sender_attach("must06-to-dyn", 4, Some(&address)))
        .await;
    p.await_credit(to_dyn.handle).await;
    assert!(accepted(
        &p.send_and_settle(0, 4, &message(None, "dyn")).await
    ));
    p.flow(0, 2, 0, 1, false).await;
    assert_eq!(
        body_text(&p.recv_delivery(0, drx.handle).await.payload),
        "dyn"
    );
    drop(server);
}

// ----- MUST 7 --------------------------------------------------------------------------------

/// Whether a disposition names delivery-id `id` (its `first`..=`last` range).
fn covers(d: &Disposition, id: u32) -> bool {
    d.first.0 <= id && id <= d.last.unwrap_or(d.first).0
}

#[tokio::test]
async fn must_07_credit_flow_right_after_sender_attach() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let mut p = RawPeer::open(addr).await;
    p.begin(0).await;
    p.send(
        0,
        Performative::Attach(Box::new(sender_attach("must07-tx", 0, Some("q7")))),
    )
    .await;
    let reply: Attach = p.expect().await;
    assert_eq!(reply.role, Role::Receiver);
    // Right after the attach, with nothing else in between: flows on this handle, each with
    // delivery-count and link-credit, the last of them granting credit.
    let credit = loop {
        let f: Flow = p.expect().await;
        assert_eq!(f.handle, Some(reply.handle), "{}", p.summary());
        assert_eq!(f.delivery_count, Some(SequenceNo(0)));
        let credit = f.link_credit.expect("link-credit present");
        if credit > 0 {
            break credit;
        }
    };
    // The credit is real: that many transfers are accepted without another flow.
    for i in 0..credit.min(20) {
        p.push_transfer(0, 0, &message(None, &format!("m{i}")), false);
    }
    p.flush().await;
    // Dispositions may settle ranges: count the ids they cover.
    let mut settled = 0;
    while settled < credit.min(20) {
        let d: Disposition = p.wait_for(|d: &Disposition| covers(d, settled)).await;
        assert!(d.settled && accepted(d.state.as_ref().unwrap()));
        settled = d.last.unwrap_or(d.first).0 + 1;
    }

    // pyamqp-style: attach and transfer pipelined before any flow (self-assumed credit).
    p.push(
        0,
        Performative::Attach(Box::new(sender_attach("must07-eager", 1, Some("q7")))),
    );
    let id = p.push_transfer(0, 1, &message(None, "eager"), false);
    p.flush().await;
    let d: Disposition = p.wait_for(|d: &Disposition| covers(d, id)).await;
    assert!(d.settled && accepted(d.state.as_ref().unwrap()), "{d:?}");

    // Every link flow the broker sent carries both fields.
    for f in &p.log {
        if let Some(Performative::Flow(flow)) = &f.performative
            && flow.handle.is_some()
        {
            assert!(flow.delivery_count.is_some() && flow.link_credit.is_some());
        }
    }
    drop(server);
}

// ----- MUST 8 --------------------------------------------------------------------------------

#[tokio::test]
async fn must_08_rcv_settle_first_and_settled_dispositions() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let mut p = RawPeer::open(addr).await;
    p.begin(0).await;
    // azure-servicebus / eventhub: unsettled sender asking for rcv-settle-mode second.
    for (handle, snd) in [
        (0, SenderSettleMode::Unsettled),
        (1, SenderSettleMode::Mixed),
    ] {
        let attach = Attach {
            snd_settle_mode: snd,
            rcv_settle_mode: ReceiverSettleMode::Second,
            ..sender_attach(&format!("must08-{handle}"), handle, Some("q8"))
        };
        let reply = p.attach(0, attach).await;
        assert_eq!(reply.rcv_settle_mode, ReceiverSettleMode::First);
        p.await_credit(reply.handle).await;
        let id = p
            .transfer(0, handle, &message(None, "settle me"), false)
            .await;
        let d: Disposition = p.wait_for(|d: &Disposition| covers(d, id)).await;
        assert_eq!(d.role, Role::Receiver);
        assert!(d.settled, "{d:?}");
        assert!(matches!(d.state, Some(DeliveryState::Accepted(_))), "{d:?}");
    }
    assert!(
        !p.log.iter().any(|f| matches!(
            &f.performative,
            Some(Performative::Disposition(d)) if !d.settled
        )),
        "the broker never leaves a received delivery unsettled"
    );
    drop(server);
}

// ----- MUST 9 --------------------------------------------------------------------------------

#[tokio::test]
async fn must_09_rcv_settle_second_echoes_settled_outcome() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    preload(addr, "q9", &["complete", "abandon", "dead-letter"]).await;
    let mut p = RawPeer::open(addr).await;
    p.begin(0).await;
    // @azure/service-bus peekLock: receiver with rcv-settle-mode second.
    let attach = Attach {
        rcv_settle_mode: ReceiverSettleMode::Second,
        ..receiver_attach("must09-rx", 0, "q9")
    };
    let rx = p.attach(0, attach).await;
    assert_eq!(rx.rcv_settle_mode, ReceiverSettleMode::Second);
    p.flow(0, 0, rx.initial_delivery_count.unwrap().0, 3, false)
        .await;
    let mut deliveries = Vec::new();
    for _ in 0..3 {
        let d = p.recv_delivery(0, rx.handle).await;
        assert!(!d.settled);
        deliveries.push(d);
    }
    let mut dead_letter = Fields::new();
    dead_letter.push(
        Symbol::from_static("DeadLetterReason"),
        Value::string("test"),
    );
    let outcomes = [
        DeliveryState::Accepted(Accepted {}),
        DeliveryState::Modified(Modified {
            delivery_failed: Some(true),
            undeliverable_here: Some(true),
            message_annotations: None,
        }),
        DeliveryState::Rejected(Rejected {
            error: Some(Error {
                condition: ErrorCondition::Other(Symbol::from_static("com.microsoft:dead-letter")),
                description: Some(Str::from("dead-lettered by test")),
                info: Some(dead_letter),
            }),
        }),
    ];
    for (d, outcome) in deliveries.iter().zip(outcomes) {
        p.disposition(0, d.delivery_id, false, Some(outcome.clone()))
            .await;
        let echo: Disposition = p.wait_for(|e: &Disposition| covers(e, d.delivery_id)).await;
        assert_eq!(echo.role, Role::Sender);
        assert!(echo.settled, "{echo:?}");
        assert_eq!(echo.last.map_or(echo.first, |l| l), echo.first);
        assert_eq!(echo.state, Some(outcome), "the same outcome is echoed");
    }
    // The outcomes were applied: one completed, one back in the queue, one dead-lettered.
    let q = server.broker.get("q9").unwrap();
    let deadline = Instant::now() + WAIT;
    while q.stats().unacked > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(q.stats().ready, 1);
    assert_eq!(q.stats().unacked, 0);
    assert_eq!(q.rejected_count(), 1);
    // The abandoned message comes back to another link with its delivery-count raised.
    let rx2 = p.attach(0, receiver_attach("must09-rx2", 1, "q9")).await;
    p.flow(0, 1, rx2.initial_delivery_count.unwrap().0, 5, false)
        .await;
    let again = p.recv_delivery(0, rx2.handle).await;
    let m = Message::decode(again.payload.clone()).unwrap();
    assert_eq!(body_text(&again.payload), "abandon");
    assert_eq!(m.header().unwrap().delivery_count, 1);
    drop(server);
}

// ----- MUST 10 -------------------------------------------------------------------------------

#[tokio::test]
async fn must_10_drain_answered_promptly() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    preload(addr, "q10", &["x", "y"]).await;
    let mut p = RawPeer::open(addr).await;
    p.begin(0).await;
    let rx = p.attach(0, receiver_attach("must10-rx", 0, "q10")).await;
    let h = rx.handle;
    let dc0 = rx.initial_delivery_count.unwrap().0;
    // The broker's own flow after its attach.
    let _: Flow = p.expect().await;

    // drain with credit 5 and 2 messages: 2 transfers, then a flow with credit 0 and the
    // delivery-count advanced by all 5, within the JS batching receiver's 200 ms.
    let t0 = Instant::now();
    p.flow(0, 0, dc0, 5, true).await;
    for _ in 0..2 {
        let t: Transfer = p.expect().await;
        assert_eq!(t.handle, h);
    }
    let f: Flow = p.expect().await;
    let elapsed = t0.elapsed();
    assert_eq!(f.handle, Some(h));
    assert_eq!(f.link_credit, Some(0));
    assert_eq!(f.delivery_count, Some(SequenceNo(dc0.wrapping_add(5))));
    assert!(
        elapsed < Duration::from_millis(200),
        "drain took {elapsed:?}"
    );

    // drain on an empty queue: answered at once, nothing sent.
    let t0 = Instant::now();
    p.flow(0, 0, dc0.wrapping_add(5), 7, true).await;
    let f: Flow = p.expect().await;
    let elapsed = t0.elapsed();
    assert_eq!(f.handle, Some(h));
    assert_eq!(f.link_credit, Some(0));
    assert_eq!(f.delivery_count, Some(SequenceNo(dc0.wrapping_add(12))));
    assert!(
        elapsed < Duration::from_millis(200),
        "drain took {elapsed:?}"
    );
    drop(server);
}

#[tokio::test]
async fn must_10_drain_past_the_credit_cap_and_past_deferred_messages() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let cap = BrokerConfig::default().link_credit as usize;
    let bodies: Vec<String> = (0..cap + 44).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    preload(addr, "q10c", &refs).await;
    preload(addr, "q10d", &["deferred", "behind"]).await;
    let mut p = RawPeer::open(addr).await;
    p.begin(0).await;

    // Credit above the broker's per-link cap: a drain still sends everything available
    // (§2.6.7) before giving the rest of the credit back.
    let rx = p.attach(0, receiver_attach("must10-cap", 0, "q10c")).await;
    let dc0 = rx.initial_delivery_count.unwrap().0;
    let _: Flow = p.expect().await;
    p.flow(0, 0, dc0, 1000, true).await;
    let mut got = 0;
    let answer = loop {
        let f = p.next_frame().await;
        match f.performative {
            Some(Performative::Transfer(_)) => got += 1,
            Some(Performative::Flow(flow)) if flow.handle == Some(rx.handle) => break flow,
            _ => {}
        }
    };
    assert_eq!(got, bodies.len(), "messages sent before the drain answer");
    assert_eq!(answer.link_credit, Some(0));
    assert_eq!(
        answer.delivery_count,
        Some(SequenceNo(dc0.wrapping_add(1000)))
    );

    // A message this link deferred (modified, undeliverable-here) neither holds back the one
    // behind it nor keeps the drain from being answered.
    let rx = p
        .attach(0, receiver_attach("must10-defer", 1, "q10d"))
        .await;
    let dc0 = rx.initial_delivery_count.unwrap().0;
    p.flow(0, 1, dc0, 1, false).await;
    let d = p.recv_delivery(0, rx.handle).await;
    assert_eq!(body_text(&d.payload), "deferred");
    p.disposition(
        0,
        d.delivery_id,
        true,
        Some(DeliveryState::Modified(Modified {
            delivery_failed: None,
            undeliverable_here: Some(true),
            message_annotations: None,
        })),
    )
    .await;
    let t0 = Instant::now();
    p.flow(0, 1, dc0.wrapping_add(1), 5, true).await;
    let d = p.recv_delivery(0, rx.handle).await;
    assert_eq!(body_text(&d.payload), "behind");
    let f: Flow = p
        .wait_for(|f: &Flow| f.handle == Some(rx.handle) && f.link_credit == Some(0))
        .await;
    let elapsed = t0.elapsed();
    assert_eq!(f.delivery_count, Some(SequenceNo(dc0.wrapping_add(6))));
    assert!(
        elapsed < Duration::from_millis(200),
        "drain took {elapsed:?}"
    );
    drop(server);
}

// ----- MUST 11 -------------------------------------------------------------------------------

#[tokio::test]
async fn must_11_anonymous_relay_routes_on_to() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let mut p = RawPeer::open(addr).await;
    let caps = p.broker_open.clone().unwrap().offered_capabilities;
    assert!(has(&caps, "ANONYMOUS-RELAY"));
    p.begin(0).await;
    let rx = p.attach(0, receiver_attach("must11-rx", 2, "q11")).await;

    // Proton `create_sender(None)`: a null target.
    let anon = p.attach(0, sender_attach("must11-anon", 0, None)).await;
    assert!(anon.target.is_some(), "the reply carries a target");
    p.await_credit(anon.handle).await;
    assert!(accepted(
        &p.send_and_settle(0, 0, &message(Some("q11"), "first"))
            .await
    ));
    // A `to` that resolves nowhere: rejected with amqp:not-found, the link stays.
    for to in [Some("nowhere-11"), None] {
        match p.send_and_settle(0, 0, &message(to, "lost")).await {
            DeliveryState::Rejected(Rejected { error }) => {
                assert_eq!(condition(&error), Some(ErrorCondition::NotFound), "{to:?}");
            }
            other => panic!("expected rejected, got {other:?}"),
        }
    }
    assert!(accepted(
        &p.send_and_settle(0, 0, &message(Some("q11"), "second"))
            .await
    ));
    // A target with a null address is the anonymous relay too.
    let anon2 = p
        .attach(
            0,
            Attach {
                target: Some(TargetKind::Target(target(None))),
                ..sender_attach("must11-anon2", 1, None)
            },
        )
        .await;
    p.await_credit(anon2.handle).await;
    assert!(accepted(
        &p.send_and_settle(0, 1, &message(Some("q11"), "third"))
            .await
    ));
    assert!(
        !p.log.iter().any(|f| f.name() == "detach"),
        "no link was detached: {}",
        p.summary()
    );
    p.flow(0, 2, rx.initial_delivery_count.unwrap().0, 10, false)
        .await;
    for expected in ["first", "second", "third"] {
        assert_eq!(
            body_text(&p.recv_delivery(0, rx.handle).await.payload),
            expected
        );
    }
    drop(server);
}

// ----- MUST 12 -------------------------------------------------------------------------------

#[tokio::test]
async fn must_12_dynamic_source_reachable_from_another_connection() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    // Requester: proton `create_receiver(dynamic=True)`.
    let mut a = RawPeer::open(addr).await;
    a.begin(0).await;
    let rx = a
        .attach(
            0,
            Attach {
                source: Some(Source {
                    dynamic: true,
                    ..Default::default()
                }),
                ..receiver_attach("must12-replies", 0, "unused")
            },
        )
        .await;
    let reply_to = rx.source.unwrap().address.unwrap().to_string();

    // Responder on another connection: a sender to that address (oslo), and the anonymous
    // relay with `to` = that address (SyncRequestResponse).
    let mut b = RawPeer::open(addr).await;
    b.begin(0).await;
    let tx = b
        .attach(0, sender_attach("must12-responder", 0, Some(&reply_to)))
        .await;
    match &tx.target {
        Some(TargetKind::Target(t)) => assert_eq!(t.address.as_deref(), Some(reply_to.as_str())),
        other => panic!("{other:?}"),
    }
    b.await_credit(tx.handle).await;
    assert!(accepted(
        &b.send_and_settle(0, 0, &message(None, "reply-1")).await
    ));
    let anon = b.attach(0, sender_attach("must12-anon", 1, None)).await;
    b.await_credit(anon.handle).await;
    assert!(accepted(
        &b.send_and_settle(0, 1, &message(Some(&reply_to), "reply-2"))
            .await
    ));
    assert!(
        !b.log.iter().any(|f| f.name() == "detach"),
        "{}",
        b.summary()
    );

    a.flow(0, 0, rx.initial_delivery_count.unwrap().0, 10, false)
        .await;
    assert_eq!(
        body_text(&a.recv_delivery(0, rx.handle).await.payload),
        "reply-1"
    );
    assert_eq!(
        body_text(&a.recv_delivery(0, rx.handle).await.payload),
        "reply-2"
    );

    // The node goes with its creating link (delete-on-close): afterwards it cannot be reached.
    a.send(
        0,
        Performative::Detach(Detach {
            handle: 0,
            closed: true,
            error: None,
        }),
    )
    .await;
    let _: Detach = a.wait_for(|d: &Detach| d.handle == rx.handle).await;
    let late = b
        .attach(0, sender_attach("must12-late", 2, Some(&reply_to)))
        .await;
    assert!(late.target.is_none(), "a refused attach has a null target");
    let d: Detach = b.wait_for(|d: &Detach| d.handle == late.handle).await;
    assert_eq!(condition(&d.error), Some(ErrorCondition::NotFound));
    drop(server);
}

// ----- MUST 13 -------------------------------------------------------------------------------

/// A message in legal but unusual encodings: boolean and uint in their wide forms, a
/// properties list32 behind a full-width ulong descriptor, an application-properties map32
/// behind a symbolic descriptor, str32/sym32/vbin32 values, two data sections and a footer.
/// Returns (whole message, bare message, footer).
fn unusual_message(to: &str) -> (Bytes, Bytes, Bytes) {
    fn str32(b: &mut BytesMut, s: &str) {
        b.put_u8(0xb1);
        b.put_u32(s.len() as u32);
        b.put_slice(s.as_bytes());
    }
    fn str8(b: &mut BytesMut, s: &str) {
        b.put_u8(0xa1);
        b.put_u8(s.len() as u8);
        b.put_slice(s.as_bytes());
    }
    fn compound32(b: &mut BytesMut, code: u8, count: u32, body: &[u8]) {
        b.put_u8(code);
        b.put_u32(body.len() as u32 + 4);
        b.put_u32(count);
        b.put_slice(body);
    }
    let mut m = BytesMut::new();
    // header: durable as boolean 0x56 01, priority ubyte, ttl full uint, first-acquirer false,
    // delivery-count smalluint 0.
    let header_body = [
        0x56, 0x01, 0x50, 0x07, 0x70, 0x00, 0x00, 0xea, 0x60, 0x56, 0x00, 0x52, 0x00,
    ];
    m.put_slice(&[0x00, 0x53, 0x70, 0xc0, header_body.len() as u8 + 1, 5]);
    m.put_slice(&header_body);
    // message-annotations as map32.
    let mut ma = BytesMut::new();
    ma.put_u8(0xa3);
    ma.put_u8(16);
    ma.put_slice(b"x-opt-ferry-test");
    str32(&mut ma, "v");
    m.put_slice(&[0x00, 0x53, 0x72]);
    compound32(&mut m, 0xd1, 2, &ma);

    let bare_start = m.len();
    // properties: descriptor as a full ulong, list32.
    let mut props = BytesMut::new();
    props.put_u8(0x80); // message-id: ulong, full width
    props.put_u64(42);
    props.put_u8(0xb0); // user-id: vbin32
    props.put_u32(4);
    props.put_slice(b"user");
    str32(&mut props, to); // to: str32
    str8(&mut props, "subject"); // subject
    props.put_u8(0x40); // reply-to: null
    props.put_u8(0x98); // correlation-id: uuid
    props.put_slice(&[7u8; 16]);
    props.put_u8(0xb3); // content-type: sym32
    props.put_u32(24);
    props.put_slice(b"application/octet-stream");
    props.put_u8(0x40); // content-encoding: null
    props.put_u8(0x83); // absolute-expiry-time: year 2100
    props.put_i64(4_102_444_800_000);
    props.put_u8(0x83); // creation-time
    props.put_i64(1_700_000_000_000);
    str32(&mut props, "group"); // group-id
    props.put_u8(0x70); // group-sequence: full uint
    props.put_u32(5);
    str8(&mut props, "reply-group"); // reply-to-group-id
    m.put_slice(&[0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x73]);
    compound32(&mut m, 0xd0, 13, &props);
    // application-properties: symbolic descriptor, map32, wide and odd-but-legal values.
    let mut ap = BytesMut::new();
    let mut count = 0;
    let mut entry = |ap: &mut BytesMut, key: &str, value: &[u8]| {
        str32(ap, key);
        ap.put_slice(value);
        count += 2;
    };
    entry(&mut ap, "int", &[0x71, 0, 0, 0, 1]);
    entry(&mut ap, "long", &[0x81, 0, 0, 0, 0, 0, 0, 0, 7]);
    entry(&mut ap, "bool", &[0x56, 0x00]);
    entry(
        &mut ap,
        "double",
        &[0x82, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18],
    );
    entry(&mut ap, "float", &[0x72, 0x3f, 0xc0, 0x00, 0x00]);
    entry(&mut ap, "short", &[0x61, 0xff, 0xfe]);
    entry(&mut ap, "ubyte", &[0x50, 0xff]);
    entry(&mut ap, "char", &[0x73, 0x00, 0x00, 0x00, 0xe9]);
    entry(&mut ap, "binary", &[0xb0, 0, 0, 0, 2, 0xca, 0xfe]);
    entry(&mut ap, "symbol", &[0xb3, 0, 0, 0, 1, b's']);
    entry(&mut ap, "null", &[0x40]);
    entry(&mut ap, "uint0", &[0x43]);
    entry(&mut ap, "dec32", &[0x74, 1, 2, 3, 4]);
    m.put_u8(0x00);
    m.put_u8(0xa3);
    m.put_u8(31);
    m.put_slice(b"amqp:application-properties:map");
    compound32(&mut m, 0xd1, count, &ap);
    // body: a data section as vbin32, then one as vbin8.
    m.put_slice(&[0x00, 0x53, 0x75, 0xb0]);
    m.put_u32(300);
    m.extend((0..300u32).map(|i| (i * 7) as u8));
    m.put_slice(&[0x00, 0x53, 0x75, 0xa0, 4]);
    m.put_slice(b"tail");
    let bare_end = m.len();
    // footer: map8.
    m.put_slice(&[0x00, 0x53, 0x78, 0xc1, 14, 2, 0xa3, 8]);
    m.put_slice(b"x-footer");
    str8(&mut m, "f");
    let m = m.freeze();
    let bare = m.slice(bare_start..bare_end);
    let footer = m.slice(bare_end..);
    (m, bare, footer)
}

fn bare_and_footer(payload: &Bytes) -> (Bytes, Bytes) {
    let m = Message::decode(payload.clone()).expect("the delivered message decodes");
    let bare: Vec<u8> = m.bare().iter().flat_map(|b| b.to_vec()).collect();
    let footer = m
        .index()
        .footer
        .map(|s| m.contiguous(s))
        .unwrap_or_default();
    (Bytes::from(bare), footer)
}

#[tokio::test]
async fn must_13_bare_message_relayed_byte_exact() {
    let server = common::start_broker(BrokerConfig::default()).await;
    let addr = server.addresses[0];
    let (whole, bare, footer) = unusual_message("q13");
    Message::decode(whole.clone()).expect("the hand-made message is legal");

    let mut p = RawPeer::open(addr).await;
    p.begin(0).await;
    let tx = p
        .attach(0, sender_attach("must13-tx", 0, Some("q13")))
        .await;
    p.await_credit(tx.handle).await;
    let anon = p.attach(0, sender_attach("must13-anon", 1, None)).await;
    p.await_credit(anon.handle).await;
    // 1. one frame, to the named queue.
    assert!(accepted(&p.send_and_settle(0, 0, &whole).await));
    // 2. many small frames, so that every section straddles frames.
    let (id, frames) = p.transfer_split(0, 0, &whole, false, 64).await;
    assert!(frames > 10);
    let d: Disposition = p.wait_for(|d: &Disposition| covers(d, id)).await;
    assert!(accepted(d.state.as_ref().unwrap()));
    // 3. through the anonymous relay, which must read `to` from the list32 properties.
    let (id, _) = p.transfer_split(0, 1, &whole, false, 100).await;
    let d: Disposition = p.wait_for(|d: &Disposition| covers(d, id)).await;
    assert!(accepted(d.state.as_ref().unwrap()), "{d:?}");

    let rx = p.attach(0, receiver_attach("must13-rx", 2, "q13")).await;
    let dc0 = rx.initial_delivery_count.unwrap().0;
    p.flow(0, 2, dc0, 3, false).await;
    for i in 0..3 {
        let d = p.recv_delivery(0, rx.handle).await;
        // The header's ttl is rewritten to the time left (issue 6); the annotations are
        // the same map. The bare message and the footer must be byte-exact.
        let got = Message::decode(d.payload.clone()).unwrap();
        let sent = Message::decode(whole.clone()).unwrap();
        let (gh, sh) = (got.header().unwrap(), sent.header().unwrap());
        assert_eq!(
            (gh.durable, gh.priority, gh.delivery_count),
            (sh.durable, sh.priority, sh.delivery_count),
            "delivery {i}: header"
        );
        assert!(gh.ttl.is_some(), "delivery {i}: ttl kept");
        assert_eq!(
            got.message_annotations().unwrap(),
            sent.message_annotations().unwrap(),
            "delivery {i}: message annotations"
        );
        let (b, f) = bare_and_footer(&d.payload);
        assert_eq!(b, bare, "delivery {i}: bare message");
        assert_eq!(f, footer, "delivery {i}: footer");
        if i == 0 {
            // Abandon the first: it comes back with a new header, the bare message intact.
            p.disposition(
                0,
                d.delivery_id,
                true,
                Some(DeliveryState::Modified(Modified {
                    delivery_failed: Some(true),
                    undeliverable_here: None,
                    message_annotations: None,
                })),
            )
            .await;
        } else {
            p.disposition(
                0,
                d.delivery_id,
                true,
                Some(DeliveryState::Accepted(Accepted {})),
            )
            .await;
        }
    }
    p.flow(0, 2, dc0.wrapping_add(3), 1, false).await;
    let again = p.recv_delivery(0, rx.handle).await;
    let (b, f) = bare_and_footer(&again.payload);
    assert_eq!(b, bare, "redelivered bare message");
    assert_eq!(f, footer, "redelivered footer");
    let m = Message::decode(again.payload.clone()).unwrap();
    assert_eq!(m.header().unwrap().delivery_count, 1);
    drop(server);
}

// ----- MUST 14 -------------------------------------------------------------------------------

#[tokio::test]
async fn must_14_every_attach_has_positive_max_message_size() {
    let broker = BrokerConfig {
        declared: vec![DeclaredQueue {
            name: "small14".into(),
            limits: QueueLimits {
                max_length: 0,
                max_bytes: 0,
                max_message_size: 1000,
            },
            durable: false,
            ..Default::default()
        }],
        ..Default::default()
    };
    let server = common::start_broker(broker).await;
    let addr = server.addresses[0];
    let mut p = RawPeer::open(addr).await;
    p.begin(0).await;
    let with_max = |mut a: Attach, m: Option<u64>| {
        a.max_message_size = m;
        a
    };
    let attaches = vec![
        with_max(sender_attach("m14-tx-null", 0, Some("q14")), None),
        with_max(sender_attach("m14-tx-zero", 1, Some("q14")), Some(0)),
        with_max(receiver_attach("m14-rx-zero", 2, "q14"), Some(0)),
        with_max(receiver_attach("m14-rx-null", 3, "q14"), None),
        sender_attach("m14-anon", 4, None),
        Attach {
            source: Some(Source {
                dynamic: true,
                ..Default::default()
            }),
            ..receiver_attach("m14-dyn-rx", 5, "unused")
        },
        Attach {
            target: Some(TargetKind::Target(Target {
                dynamic: true,
                ..Default::default()
            })),
            ..sender_attach("m14-dyn-tx", 6, None)
        },
        sender_attach("m14-small", 7, Some("small14")),
        // Refused attaches: no source; a dynamic address that does not exist.
        Attach {
            source: None,
            ..receiver_attach("m14-refused-1", 8, "unused")
        },
        receiver_attach("m14-refused-2", 9, &format!("{DYNAMIC_PREFIX}nope")),
    ];
    let n = attaches.len();
    for a in attaches {
        let name = a.name.clone();
        let reply = p.attach(0, a).await;
        if name.starts_with("m14-refused") {
            let d: Detach = p.wait_for(|d: &Detach| d.handle == reply.handle).await;
            assert!(d.closed && d.error.is_some());
            p.send(
                0,
                Performative::Detach(Detach {
                    handle: if name.ends_with('1') { 8 } else { 9 },
                    closed: true,
                    error: None,
                }),
            )
            .await;
        }
    }
    let mut checked = 0;
    for f in &p.log {
        let Some(Performative::Attach(a)) = &f.performative else {
            continue;
        };
        let (_, _, fields) = raw_fields(&f.body);
        let max = match &fields[10] {
            Value::Ulong(m) => *m,
            other => panic!("{}: max-message-size is {other:?}", a.name),
        };
        assert!(max > 0, "{}: max-message-size 0", a.name);
        if a.name == "m14-small" {
            assert_eq!(max, 1000, "the queue's own limit is advertised");
        }
        checked += 1;
    }
    assert_eq!(checked, n);
    drop(server);
}

// ----- MUST 15 -------------------------------------------------------------------------------

#[tokio::test]
async fn must_15_max_frame_size_per_listener_and_multi_frame_transfers() {
    let small = ConnectionConfig {
        max_frame_size: 4096,
        ..common::server_engine()
    };
    let server = start_server(
        BrokerConfig::default(),
        vec![common::server_engine(), small],
        Arc::new(common::NoUsers),
    )
    .await;
    let (big_addr, small_addr) = (server.addresses[0], server.addresses[1]);
    let body: Vec<u8> = (0..100 * 1024u32).map(|i| (i % 251) as u8).collect();
    let payload = Message::from_sections(&[ferry_codec::messaging::Section::Data(
        ferry_codec::messaging::Data(Bytes::from(body)),
    )])
    .unwrap()
    .to_contiguous();

    // Each listener advertises its own limit.
    let big = RawPeer::open(big_addr).await;
    assert_eq!(big.broker_open.as_ref().unwrap().max_frame_size, 65_536);
    drop(big);
    let mut tx = RawPeer::open_with(small_addr, open_frame("must15-tx", 4096)).await;
    assert_eq!(tx.broker_open.as_ref().unwrap().max_frame_size, 4096);

    // 100 KiB in frames of at most 4096 bytes (most exactly 4096), twice.
    tx.begin(0).await;
    let reply = tx
        .attach(0, sender_attach("must15-tx", 0, Some("q15")))
        .await;
    tx.await_credit(reply.handle).await;
    for _ in 0..3 {
        let (id, frames) = tx.transfer_split(0, 0, &payload, false, 4096).await;
        assert!(frames >= 25, "{frames} frames");
        let d: Disposition = tx.wait_for(|d: &Disposition| covers(d, id)).await;
        assert!(d.settled && accepted(d.state.as_ref().unwrap()), "{d:?}");
    }

    // Out again, each receiver's own max-frame-size respected by every broker frame.
    for (addr, ours) in [(small_addr, 4096u32), (small_addr, 512), (big_addr, 4096)] {
        let mut rx = RawPeer::open_with(addr, open_frame("must15-rx", ours)).await;
        rx.begin(0).await;
        let r = rx.attach(0, receiver_attach("must15-rx", 0, "q15")).await;
        rx.flow(0, 0, r.initial_delivery_count.unwrap().0, 1, false)
            .await;
        let d = rx.recv_delivery(0, r.handle).await;
        assert_eq!(d.payload, payload);
        let expected = payload.len() / ours as usize;
        assert!(
            d.frame_sizes.len() > expected,
            "{} frames",
            d.frame_sizes.len()
        );
        let largest = rx.log.iter().map(|f| f.size).max().unwrap();
        assert!(largest <= ours as usize, "largest frame {largest} > {ours}");
        rx.disposition(
            0,
            d.delivery_id,
            true,
            Some(DeliveryState::Accepted(Accepted {})),
        )
        .await;
        rx.frames_for(Duration::from_millis(20)).await;
    }

    // The listener's limit is enforced: 4097 bytes is one too many.
    let mut big_frame = RawPeer::open_with(small_addr, open_frame("must15-over", 4096)).await;
    big_frame.begin(0).await;
    let r = big_frame
        .attach(0, sender_attach("must15-over", 0, Some("q15")))
        .await;
    big_frame.await_credit(r.handle).await;
    let t = transfer_frame(0, 0, false, false);
    let room = ferry_codec::frames::max_transfer_payload(&t, 4097).unwrap();
    big_frame.transfer(0, 0, &payload[..room], false).await;
    let close = big_frame.expect_close_and_eof().await;
    assert_eq!(condition(&close.error), Some(ErrorCondition::FramingError));
    drop(server);
}
