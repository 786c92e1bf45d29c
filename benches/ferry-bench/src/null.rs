//! The null acceptor: an AMQP 1.0 peer that accepts every link, settles every message it is
//! sent with `accepted` at once, and feeds every receiver stamped messages as fast as its
//! credit allows. Run against it, `ferry-bench` measures itself: no broker can hand it
//! messages faster than this, so its figures for a broker mean something only while they
//! stay well below the null acceptor's (the harness asks for 2×).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferry::proto::{
    AttachReply, Connection, ConnectionConfig, EndpointRole, Event, LinkId, SaslConfig,
};
use ferry_codec::definitions::Role;
use ferry_codec::delivery_state::DeliveryState;
use ferry_codec::types::Symbol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::wire::{Template, wall_nanos};

/// Credit granted to every sender, refilled at half.
const CREDIT: u32 = 5000;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 20_000;

/// Binds `addr` and serves until the process ends. Returns the bound address through
/// `bound` as soon as it is known.
pub async fn serve(
    addr: SocketAddr,
    size: usize,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let _ = bound.send(listener.local_addr()?);
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = listener.accept().await?;
        let Ok(permit) = std::sync::Arc::clone(&permits).try_acquire_owned() else {
            continue;
        };
        tokio::spawn(async move {
            connection(stream, size).await;
            drop(permit);
        });
    }
}

fn engine_config() -> ConnectionConfig {
    ConnectionConfig {
        role: EndpointRole::Server,
        container_id: "ferry-bench-null".into(),
        max_frame_size: 1024 * 1024,
        session_window: 8192,
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

#[derive(Debug, Default)]
struct Link {
    role: Role,
    /// Receiving: messages since the last credit grant.
    used: u32,
    /// Sending: messages produced so far.
    seq: u64,
}

async fn connection(stream: TcpStream, size: usize) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let mut engine = Connection::new(engine_config(), Instant::now());
    let mut links: HashMap<LinkId, Link> = HashMap::new();
    let template = Template::new(size, false);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut pending = Bytes::new();
    loop {
        while let Some(e) = engine.poll_event() {
            match e {
                Event::SaslInit { .. } => engine.sasl_outcome(true),
                Event::AttachRequested { link, attach } => {
                    // We take the opposite role of the peer.
                    let role = match attach.role {
                        Role::Sender => Role::Receiver,
                        Role::Receiver => Role::Sender,
                    };
                    let reply = AttachReply {
                        source: attach.source.clone(),
                        target: attach.target.clone(),
                        ..Default::default()
                    };
                    if engine.accept_attach(link, reply).is_ok() {
                        if role == Role::Receiver {
                            let _ = engine.grant_credit(link, CREDIT, false);
                        }
                        links.insert(
                            link,
                            Link {
                                role,
                                ..Default::default()
                            },
                        );
                    }
                }
                Event::Delivery(d) => {
                    if !d.settled {
                        let _ = engine.settle_incoming(
                            d.link,
                            d.delivery_id,
                            DeliveryState::Accepted(Default::default()),
                        );
                    }
                    if let Some(l) = links.get_mut(&d.link) {
                        l.used += 1;
                        if l.used >= CREDIT / 2 {
                            l.used = 0;
                            let _ = engine.grant_credit(d.link, CREDIT, false);
                        }
                    }
                }
                Event::Detached { link, .. } => {
                    links.remove(&link);
                    let _ = engine.detach(link, true, None);
                }
                Event::Closed { .. } => {}
                _ => {}
            }
        }
        // Feed receivers while credit lasts and the socket keeps up.
        let mut fed = false;
        for (id, l) in links.iter_mut() {
            if l.role != Role::Sender || pending.len() > 256 * 1024 {
                continue;
            }
            let mut n = 0;
            while n < 256 && engine.credit(*id).unwrap_or(0) > 0 {
                let Some(m) = template.stamped(wall_nanos(), l.seq) else {
                    break;
                };
                if engine.send(*id, &m, true, None).is_err() {
                    break;
                }
                l.seq += 1;
                n += 1;
                fed = true;
            }
        }
        if pending.is_empty() {
            pending = engine.take_output(Instant::now());
        }
        if engine.is_finished() && pending.is_empty() {
            break;
        }
        let wait = if fed {
            Duration::ZERO
        } else {
            engine.poll_timeout().map_or(Duration::from_secs(1), |t| {
                t.saturating_duration_since(Instant::now())
            })
        };
        tokio::select! {
            biased;
            r = reader.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    engine.handle_input(&mut buf, Instant::now());
                    if buf.capacity() - buf.len() < 16 * 1024 {
                        buf.reserve(64 * 1024);
                    }
                }
            },
            w = writer.write(&pending), if !pending.is_empty() => match w {
                Ok(0) | Err(_) => break,
                Ok(n) => { let _ = pending.split_to(n.min(pending.len())); }
            },
            _ = tokio::time::sleep(wait) => engine.handle_timeout(Instant::now()),
        }
    }
}
