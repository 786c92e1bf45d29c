//! The benchmark message and one client connection over TCP, driven by Ferry's sans-IO engine
//! in the client role (so session windows and link credit are honoured by the same code the
//! broker is tested with).
//!
//! Every message is a header and one `data` section of exactly `size` bytes. Its first 16
//! bytes are the send time (u64 little-endian nanoseconds since the UNIX epoch) and a sequence
//! number; the Proton C load client in `benches/proton-load/` writes the same layout, so either
//! client can measure the other's messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use ferry::proto::{ClientSasl, Connection, ConnectionConfig, EndpointRole, Event, SaslConfig};
use ferry_codec::messaging::{ApplicationProperties, Data, Header, Message, Properties, Section};
use ferry_codec::types::{Map, Str, Symbol, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;

/// Bytes at the start of the body that carry the stamp.
pub const STAMP_LEN: usize = 16;

/// Nanoseconds since the UNIX epoch: the clock both clients stamp with.
pub fn wall_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// An encoded message, copied and stamped per send.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
    stamp_at: usize,
}

impl Template {
    /// A header (durable as asked) and one `data` section of `size` bytes (at least 16).
    pub fn new(size: usize, durable: bool) -> Self {
        Self::routed(size, durable, None, &[])
    }

    /// [`Template::new`] with a `properties.subject` (a routing key) and application
    /// properties when given: the routing benchmarks' messages. The body stays the last
    /// section, so the stamp is where [`read_stamp`] looks for it.
    pub fn routed(
        size: usize,
        durable: bool,
        subject: Option<&str>,
        application_properties: &[(&str, Value)],
    ) -> Self {
        let size = size.max(STAMP_LEN);
        let header = Header {
            durable,
            ..Default::default()
        };
        let body = Bytes::from(vec![0u8; size]);
        let mut sections = vec![Section::Header(header)];
        if subject.is_some() {
            sections.push(Section::Properties(Properties {
                subject,
                ..Default::default()
            }));
        }
        if !application_properties.is_empty() {
            let mut map = Map::new();
            for (k, v) in application_properties {
                map.push(Value::String(Str::from(*k)), v.clone());
            }
            sections.push(Section::ApplicationProperties(ApplicationProperties(map)));
        }
        sections.push(Section::Data(Data(body)));
        let bytes = Message::from_sections(&sections)
            .map(|m| m.to_contiguous().to_vec())
            .unwrap_or_default();
        // The data section is last, so its payload is the final `size` bytes.
        let stamp_at = bytes.len().saturating_sub(size);
        Self { bytes, stamp_at }
    }

    /// A message stamped with `nanos` and `seq`.
    pub fn stamped(&self, nanos: u64, seq: u64) -> Option<Message> {
        let mut b = BytesMut::from(&self.bytes[..]);
        let stamp = b.get_mut(self.stamp_at..self.stamp_at + STAMP_LEN)?;
        stamp[..8].copy_from_slice(&nanos.to_le_bytes());
        stamp[8..].copy_from_slice(&seq.to_le_bytes());
        Message::decode(b.freeze()).ok()
    }
}

/// The stamp of a received benchmark message, if it carries one.
pub fn read_stamp(m: &Message) -> Option<(u64, u64)> {
    let body = m.index().body?;
    // A data section: descriptor (3 bytes), then vbin8 (2) or vbin32 (5) before the payload.
    let head = m.contiguous(ferry_codec::messaging::Span {
        start: body.start,
        end: (body.start + 3 + 5 + STAMP_LEN).min(body.end),
    });
    let skip = match head.get(3)? {
        0xa0 => 5,
        0xb0 => 8,
        _ => return None,
    };
    let s = head.get(skip..skip + STAMP_LEN)?;
    let nanos = u64::from_le_bytes(s.get(..8)?.try_into().ok()?);
    let seq = u64::from_le_bytes(s.get(8..)?.try_into().ok()?);
    Some((nanos, seq))
}

/// Where to connect and as whom.
#[derive(Debug, Clone)]
pub struct Target {
    /// host:port
    pub addr: String,
    /// PLAIN user and password; `None` for ANONYMOUS.
    pub credentials: Option<(String, String)>,
}

impl Target {
    /// Parses `amqp://[user:pass@]host:port`. Only loopback hosts are allowed: this tool
    /// generates load and must not be pointed at someone else's machine by accident.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("amqp://")
            .ok_or_else(|| format!("{url}: expected amqp://[user:pass@]host:port"))?;
        let rest = rest.trim_end_matches('/');
        let (credentials, hostport) = match rest.rsplit_once('@') {
            Some((userinfo, hp)) => {
                let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (Some((u.to_string(), p.to_string())), hp)
            }
            None => (None, rest),
        };
        let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
        if !matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1") {
            return Err(format!(
                "{host}: ferry-bench only targets loopback addresses"
            ));
        }
        let addr = if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:5672")
        };
        Ok(Self { addr, credentials })
    }

    fn engine_config(&self, container: &str) -> ConnectionConfig {
        let mechanism = match &self.credentials {
            Some((u, p)) => ClientSasl {
                mechanism: Symbol::from_static("PLAIN"),
                initial_response: Some(Bytes::from(format!("\0{u}\0{p}").into_bytes())),
            },
            None => ClientSasl {
                mechanism: Symbol::from_static("ANONYMOUS"),
                initial_response: Some(Bytes::from_static(b"ferry-bench")),
            },
        };
        let host = self.addr.rsplit_once(':').map_or("localhost", |(h, _)| h);
        ConnectionConfig {
            role: EndpointRole::Client,
            container_id: container.to_string(),
            hostname: Some(host.to_string()),
            max_frame_size: 1024 * 1024,
            session_window: 8192,
            max_message_size: 64 * 1024 * 1024,
            sasl: SaslConfig {
                client: Some(mechanism),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// Wakes a task at a steady period with sub-millisecond precision, from a thread of its own.
/// tokio's timers fire on whole milliseconds: pacing sends with them would make every message
/// up to 1 ms late, and under `--rate` that lateness counts as latency (it is measured from the
/// scheduled send time), so the figures would be the client's rather than the broker's.
#[derive(Debug)]
pub struct Pacer {
    notify: Arc<Notify>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pacer {
    /// Ticks every `period` (at least 250 µs: finer ticks send a message or two per write, which costs both sides more than the wait they save).
    pub fn start(period: Duration) -> Self {
        let period = period.max(Duration::from_micros(250));
        let notify = Arc::new(Notify::new());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (notify, stop) = (Arc::clone(&notify), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    next += period;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        // Fell behind: do not try to catch up with a burst of ticks.
                        next = now;
                    }
                    notify.notify_one();
                }
            })
        };
        Self {
            notify,
            stop,
            thread: Some(thread),
        }
    }

    /// What to wait on.
    pub fn tick(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One client connection: engine plus socket halves.
#[derive(Debug)]
pub struct Conn {
    /// The engine.
    pub engine: Connection,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    buf: BytesMut,
    pending: Bytes,
}

/// What one turn of [`Conn::turn`] saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    /// Progress (or a timer): the caller looks at events.
    Ok,
    /// The socket closed.
    Eof,
}

const READ_CHUNK: usize = 256 * 1024;

impl Conn {
    /// Connects and waits for the peer's open (10 s at most).
    pub async fn connect(target: &Target, container: &str) -> Result<Self, String> {
        let stream = TcpStream::connect(&target.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", target.addr))?;
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        let mut c = Self {
            engine: Connection::new(target.engine_config(container), Instant::now()),
            reader,
            writer,
            buf: BytesMut::with_capacity(READ_CHUNK),
            pending: Bytes::new(),
        };
        c.wait(|e| matches!(e, Event::Opened(_)), Duration::from_secs(10))
            .await?;
        Ok(c)
    }

    /// Drives the connection until an event matching `f` arrives; other events are dropped
    /// unless they end the connection.
    pub async fn wait(
        &mut self,
        f: impl Fn(&Event) -> bool,
        limit: Duration,
    ) -> Result<Event, String> {
        let deadline = Instant::now() + limit;
        loop {
            while let Some(e) = self.engine.poll_event() {
                if f(&e) {
                    return Ok(e);
                }
                match e {
                    Event::SaslOutcome { ok: false } => return Err("authentication failed".into()),
                    Event::Closed { error } => return Err(format!("connection closed: {error:?}")),
                    Event::Detached { error, .. } => {
                        return Err(format!("link detached: {error:?}"));
                    }
                    Event::SessionEnded { error, .. } => {
                        return Err(format!("session ended: {error:?}"));
                    }
                    _ => {}
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err("timed out waiting for the peer".into());
            }
            if self.turn(deadline - now).await == Turn::Eof {
                return Err("peer closed the socket".into());
            }
        }
    }

    /// Writes what the engine has, reads what arrives, fires timers; waits at most `wait` (or
    /// until the next engine timer).
    pub async fn turn(&mut self, wait: Duration) -> Turn {
        self.turn_paced(wait, None).await
    }

    /// [`Conn::turn`], also returning when `tick` is notified (see [`Pacer`]).
    pub async fn turn_paced(&mut self, wait: Duration, tick: Option<&Notify>) -> Turn {
        let now = Instant::now();
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        if self.pending.is_empty() {
            self.pending = self.engine.take_output(now);
        }
        let mut until = now + wait;
        if let Some(t) = self.engine.poll_timeout() {
            until = until.min(t);
        }
        let sleep = tokio::time::sleep_until(until.into());
        tokio::select! {
            biased;
            r = self.reader.read_buf(&mut self.buf) => match r {
                Ok(0) | Err(_) => return Turn::Eof,
                Ok(_) => {
                    self.engine.handle_input(&mut self.buf, Instant::now());
                    if self.buf.capacity() - self.buf.len() < 16 * 1024 {
                        self.buf.reserve(READ_CHUNK);
                    }
                }
            },
            w = self.writer.write(&self.pending), if !self.pending.is_empty() => match w {
                Ok(0) | Err(_) => return Turn::Eof,
                Ok(n) => {
                    let _ = self.pending.split_to(n.min(self.pending.len()));
                }
            },
            _ = sleep => {}
            _ = async {
                match tick {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        Turn::Ok
    }

    /// Closes politely and flushes (1 s at most).
    pub async fn close(mut self) {
        self.engine.close(None);
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            if self.pending.is_empty() {
                self.pending = self.engine.take_output(Instant::now());
            }
            if self.pending.is_empty() || Instant::now() >= deadline {
                break;
            }
            if self.turn(Duration::from_millis(50)).await == Turn::Eof {
                break;
            }
        }
        let _ = self.writer.shutdown().await;
    }

    /// Whether output is still waiting to be written.
    pub fn backlogged(&self) -> bool {
        self.pending.len() > 512 * 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_for_small_and_large_bodies() {
        for size in [16, 64, 255, 256, 1024, 70_000] {
            let t = Template::new(size, true);
            let m = t.stamped(123_456_789, 42).unwrap();
            assert_eq!(read_stamp(&m), Some((123_456_789, 42)), "size {size}");
            assert!(m.header().unwrap().durable);
        }
    }

    #[test]
    fn routed_templates_carry_subject_and_properties_and_keep_the_stamp() {
        let t = Template::routed(
            64,
            false,
            Some("eu.d7.temp"),
            &[("color", Value::string("red")), ("size", Value::Long(11))],
        );
        let m = t.stamped(5, 9).unwrap();
        assert_eq!(read_stamp(&m), Some((5, 9)));
        assert_eq!(m.properties().unwrap().unwrap().subject, Some("eu.d7.temp"));
        let props = m.application_properties().unwrap().unwrap();
        assert_eq!(props.0.len(), 2);
    }

    #[test]
    fn urls_are_parsed_and_only_loopback_is_allowed() {
        let t = Target::parse("amqp://guest:secret@127.0.0.1:5999").unwrap();
        assert_eq!(t.addr, "127.0.0.1:5999");
        assert_eq!(t.credentials, Some(("guest".into(), "secret".into())));
        assert_eq!(
            Target::parse("amqp://localhost").unwrap().addr,
            "localhost:5672"
        );
        assert!(Target::parse("amqp://10.0.0.1:5672").is_err());
        assert!(Target::parse("http://127.0.0.1").is_err());
    }
}
