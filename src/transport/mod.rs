//! The transport: one tokio task per connection, owning its socket, its protocol engine and
//! all its sessions and links.
//!
//! The task loop reads from the socket into the engine, turns engine events into broker
//! operations (attach → resolve a queue, delivery → enqueue, disposition → settle), turns
//! queue pushes into transfers, and writes whatever the engine produced. Writes are coalesced
//! per loop turn, never delayed by a timer. When the memory budget is exhausted the task stops
//! reading its socket, so producers slow down instead of failing.

mod link;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ferry_codec::definitions::{Error, ErrorCondition};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::broker::{Broker, Outbound};
use crate::proto::{Connection, ConnectionConfig, Event};

use link::Links;

/// Checks SASL credentials. Implemented by the server from its user table.
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// Whether a SASL PLAIN initial response (`authzid\0authcid\0password`) is valid. May be
    /// slow (password hashing): it is called off the async threads.
    fn verify_plain(&self, initial_response: &[u8]) -> bool;
}

/// Everything a connection task needs.
#[derive(Debug, Clone)]
pub struct ConnectionContext {
    /// The broker.
    pub broker: Arc<Broker>,
    /// The engine's configuration for this listener.
    pub engine: ConnectionConfig,
    /// Credential checks.
    pub auth: Arc<dyn Authenticator>,
    /// Becomes `true` on shutdown: close with `amqp:connection:forced`.
    pub shutdown: watch::Receiver<bool>,
}

/// Capacity of a connection's queue-to-connection channel. Queues never push more than the
/// credit the connection reported, so this only needs to cover the links' credit caps; if it
/// is ever full the queue takes the message back and the credit is topped up next turn.
const OUTBOUND_CAPACITY: usize = 8192;

/// How often a producer starved for queue room is offered credit again.
const STARVED_RETRY: Duration = Duration::from_millis(50);

/// Most bytes read from the socket per turn, so one busy peer cannot starve the task's other
/// work (outbound deliveries, timers).
const READ_CHUNK: usize = 64 * 1024;

/// What an idle connection's read buffer holds: enough for the handshake and small frames.
/// It grows to [`READ_CHUNK`] when a read fills it, and falls back when the peer goes quiet,
/// so ten thousand idle connections do not hold 64 KiB each.
const READ_SMALL: usize = 2 * 1024;

/// Runs one connection to completion, its log lines in a span of its own (entered only while
/// the task runs, so connections' spans never nest).
pub async fn serve<S>(stream: S, ctx: ConnectionContext, peer: String)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use tracing::Instrument;
    let conn_id = ctx.broker.next_connection_id();
    let span = tracing::debug_span!("conn", id = conn_id, peer = %peer);
    run(stream, ctx, conn_id).instrument(span).await
}

async fn run<S>(stream: S, ctx: ConnectionContext, conn_id: u64)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tracing::debug!("connection accepted");
    let mut engine = Connection::new(ctx.engine.clone(), now());
    let (tx, mut rx) = mpsc::channel::<Outbound>(OUTBOUND_CAPACITY);
    let mut links = Links::new(conn_id, Arc::clone(&ctx.broker), tx, &ctx.engine);
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut read_buf = BytesMut::new();
    let mut read_chunk = READ_SMALL;
    let mut pending_write = bytes::Bytes::new();
    let mut shutdown = ctx.shutdown.clone();
    let mut shutting_down = false;
    let memory = Arc::clone(ctx.broker.memory());
    let acks = Arc::clone(&links.acks);

    loop {
        // Handle everything the engine has to say, then collect output.
        while let Some(event) = engine.poll_event() {
            if let Event::SaslInit {
                mechanism,
                initial_response,
                ..
            } = &event
            {
                let ok = match mechanism.as_str() {
                    "ANONYMOUS" => true,
                    "PLAIN" => {
                        let auth = Arc::clone(&ctx.auth);
                        let response = initial_response.clone().unwrap_or_default();
                        tokio::task::spawn_blocking(move || auth.verify_plain(&response))
                            .await
                            .unwrap_or(false)
                    }
                    _ => false,
                };
                if !ok {
                    tracing::info!(mechanism = %mechanism, "authentication failed");
                }
                engine.sasl_outcome(ok);
                continue;
            }
            links.on_event(&mut engine, event);
        }
        links.after_turn(&mut engine);
        if pending_write.is_empty() {
            pending_write = engine.take_output(now());
        }
        if engine.is_finished() && pending_write.is_empty() {
            break;
        }

        if read_buf.capacity() - read_buf.len() < 512 {
            read_buf.reserve(read_chunk);
        }
        let paused = (memory.exhausted() && links.only_produces()) || engine.over_credit_exceeded();
        let mut deadline = engine.poll_timeout().map(Instant::from_std);
        if links.has_starved() {
            let retry = Instant::now() + STARVED_RETRY;
            deadline = Some(deadline.map_or(retry, |d| d.min(retry)));
        }
        let sleep = tokio::time::sleep_until(
            deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
        );
        tokio::pin!(sleep);

        tokio::select! {
            biased;
            changed = shutdown.changed(), if !shutting_down => {
                if changed.is_err() || *shutdown.borrow() {
                    shutting_down = true;
                    engine.close(Some(Error::new(ErrorCondition::ConnectionForced, "broker shutting down")));
                }
            }
            written = writer.write(&pending_write), if !pending_write.is_empty() => {
                match written {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let _ = pending_write.split_to(n.min(pending_write.len()));
                        if pending_write.is_empty() {
                            let _ = writer.flush().await;
                        }
                    }
                }
            }
            Some(out) = rx.recv() => {
                links.on_outbound(&mut engine, out);
                // Batch whatever else is queued, so one write carries many transfers.
                for _ in 0..1024 {
                    match rx.try_recv() {
                        Ok(out) => links.on_outbound(&mut engine, out),
                        Err(_) => break,
                    }
                }
            }
            read = reader.read_buf(&mut read_buf), if !paused && !engine.is_finished() => {
                match read {
                    Ok(0) | Err(_) => {
                        tracing::debug!("peer closed the socket");
                        break;
                    }
                    Ok(_) => {
                        // A read that filled the buffer means more is waiting: read more at once.
                        if read_buf.capacity() == read_buf.len() {
                            read_chunk = READ_CHUNK;
                        }
                        engine.handle_input(&mut read_buf, now());
                    }
                }
            }
            _ = acks.wake.notified() => links.apply_acks(&mut engine),
            _ = memory.wait_room(), if paused => engine.not_listening(now()),
            _ = &mut sleep => {
                // Quiet until a timer: give the large read buffer back.
                if read_buf.is_empty() && read_buf.capacity() > READ_SMALL {
                    read_buf = BytesMut::new();
                    read_chunk = READ_SMALL;
                }
                if paused {
                    engine.not_listening(now());
                }
                engine.handle_timeout(now());
            }
        }
    }
    // Whatever the engine still reports (links gone) returns unsettled messages to queues.
    links.shutdown(&mut engine);
    let _ = writer.shutdown().await;
    tracing::debug!("connection closed");
}

/// The engine runs on std instants taken from tokio's clock, so tests with paused tokio time
/// drive its timers too.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}
