//! A broker on a free loopback port, and a client built on Ferry's own engine (client role)
//! that speaks raw AMQP over a real socket.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry::broker::BrokerConfig;
use ferry::proto::{
    Connection, ConnectionConfig, EndpointRole, Event, LinkId, LinkSpec, SaslConfig, SessionId,
};
use ferry::server::{ListenerSpec, Running, ServerSpec};
use ferry::transport::Authenticator;
use ferry_codec::definitions::Role;
use ferry_codec::messaging::{
    Data, Header, Message, Properties, Section, Source, Target, TargetKind,
};
use ferry_codec::types::{Str, Symbol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct NoUsers;

impl Authenticator for NoUsers {
    fn verify_plain(&self, _initial_response: &[u8]) -> bool {
        false
    }
}

pub fn server_engine() -> ConnectionConfig {
    ConnectionConfig {
        role: EndpointRole::Server,
        container_id: "ferry-test".into(),
        sasl: SaslConfig {
            mechanisms: vec![
                Symbol::from_static("ANONYMOUS"),
                Symbol::from_static("PLAIN"),
            ],
            allow_plain_header: true,
            client: None,
        },
        offered_capabilities: vec![Symbol::from_static("ANONYMOUS-RELAY")],
        ..Default::default()
    }
}

pub async fn start_broker(broker: BrokerConfig) -> Running {
    start_with(broker, server_engine()).await
}

pub async fn start_with(broker: BrokerConfig, engine: ConnectionConfig) -> Running {
    start_spec(broker, engine, None).await
}

/// A broker whose durable queues keep a write-ahead log in `dir` (synced every batch).
pub async fn start_durable(dir: &std::path::Path, broker: BrokerConfig) -> Running {
    let store = ferry::server::StoreSpec {
        dir: dir.join("wal"),
        config: ferry::store::StoreConfig {
            segment_size: 4 << 20,
            sync: ferry::store::SyncPolicy::Always,
        },
    };
    start_spec(broker, server_engine(), Some(store)).await
}

async fn start_spec(
    broker: BrokerConfig,
    engine: ConnectionConfig,
    store: Option<ferry::server::StoreSpec>,
) -> Running {
    let spec = ServerSpec {
        listeners: vec![ListenerSpec {
            address: "127.0.0.1:0".parse().unwrap(),
            max_connections: 100,
            engine,
        }],
        broker,
        shutdown_grace: Duration::from_secs(2),
        store,
    };
    ferry::server::start(spec, Arc::new(NoUsers)).await.unwrap()
}

pub struct TestClient {
    pub engine: Connection,
    stream: TcpStream,
    buf: BytesMut,
    pub events: VecDeque<Event>,
    pub session: Option<SessionId>,
}

impl TestClient {
    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        let cfg = ConnectionConfig {
            role: EndpointRole::Client,
            container_id: "test-client".into(),
            ..Default::default()
        };
        Self::connect_with(addr, cfg).await
    }

    pub async fn connect_with(addr: std::net::SocketAddr, cfg: ConnectionConfig) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut c = Self {
            engine: Connection::new(cfg, std::time::Instant::now()),
            stream,
            buf: BytesMut::with_capacity(65536),
            events: VecDeque::new(),
            session: None,
        };
        c.wait_for(|e| matches!(e, Event::Opened(_))).await;
        let s = c.engine.begin().unwrap();
        c.session = Some(s);
        c.wait_for(|e| matches!(e, Event::SessionBegun(_))).await;
        c
    }

    /// Writes pending output, then reads for at most `wait`. Fires the engine's timers first,
    /// so the client heartbeats like a real one.
    pub async fn pump(&mut self, wait: Duration) {
        let now = std::time::Instant::now();
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        let out = self.engine.take_output(std::time::Instant::now());
        if !out.is_empty() {
            self.stream.write_all(&out).await.unwrap();
        }
        if let Ok(Ok(n)) = tokio::time::timeout(wait, self.stream.read_buf(&mut self.buf)).await {
            if n == 0 {
                self.engine
                    .handle_timeout(std::time::Instant::now() + Duration::from_secs(3600));
            }
            self.engine
                .handle_input(&mut self.buf, std::time::Instant::now());
        }
        while let Some(e) = self.engine.poll_event() {
            self.events.push_back(e);
        }
    }

    /// Pumps until an event matching `f` arrives (10 s at most), returning it.
    pub async fn wait_for(&mut self, f: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(i) = self.events.iter().position(&f) {
                return self.events.remove(i).unwrap();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out; events: {:?}",
                self.events
            );
            self.pump(Duration::from_millis(20)).await;
        }
    }

    /// Pumps for `d`, collecting events.
    pub async fn settle_for(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        while tokio::time::Instant::now() < deadline {
            self.pump(Duration::from_millis(10)).await;
        }
    }

    pub async fn sender(&mut self, address: Option<&str>) -> LinkId {
        let spec = LinkSpec {
            name: Str::from(format!("sender-{}", address.unwrap_or("anon"))),
            role: Role::Sender,
            target: Some(TargetKind::Target(Target {
                address: address.map(Str::from),
                ..Default::default()
            })),
            source: Some(Source::default()),
            ..Default::default()
        };
        self.attach(spec).await
    }

    pub async fn receiver(&mut self, source: Source) -> LinkId {
        let spec = LinkSpec {
            name: Str::from(format!("receiver-{:?}", source.address)),
            role: Role::Receiver,
            source: Some(source),
            target: Some(TargetKind::Target(Target::default())),
            ..Default::default()
        };
        self.attach(spec).await
    }

    pub async fn attach(&mut self, spec: LinkSpec) -> LinkId {
        let link = self.engine.attach(self.session.unwrap(), spec).unwrap();
        self.wait_for(|e| matches!(e, Event::Attached { link: l, .. } if *l == link))
            .await;
        link
    }

    /// Sends `n` messages on `link` (waiting for credit as needed), unsettled.
    pub async fn send_many(&mut self, link: LinkId, n: usize, make: impl Fn(usize) -> Message) {
        let mut sent = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while sent < n {
            while sent < n && self.engine.credit(link).unwrap_or(0) > 0 {
                self.engine.send(link, &make(sent), false, None).unwrap();
                sent += 1;
            }
            assert!(tokio::time::Instant::now() < deadline, "no credit");
            self.pump(Duration::from_millis(5)).await;
        }
    }

    pub fn deliveries(&mut self) -> Vec<ferry::proto::IncomingDelivery> {
        let mut out = Vec::new();
        self.events.retain(|e| match e {
            Event::Delivery(d) => {
                out.push((**d).clone());
                false
            }
            _ => true,
        });
        out
    }
}

pub fn text_message(to: Option<&str>, body: &str) -> Message {
    Message::from_sections(&[
        Section::Header(Header::default()),
        Section::Properties(Properties {
            to,
            message_id: Some(ferry_codec::messaging::MessageId::String(body)),
            ..Default::default()
        }),
        Section::Data(Data(Bytes::copy_from_slice(body.as_bytes()))),
    ])
    .unwrap()
}

pub fn body_of(m: &Message) -> String {
    match m.body_sections().unwrap().first() {
        Some(Section::Data(d)) => String::from_utf8(d.0.to_vec()).unwrap(),
        other => panic!("unexpected body {other:?}"),
    }
}
