//! The collector's network receivers, on tokio: the agent protocol, syslog
//! over TCP and UDP, the Elasticsearch-compatible `_bulk` endpoint and
//! OTLP/HTTP logs. Each hands what it accepted to the [`Submitter`] and
//! answers the sender only once it is durable.
//!
//! Every connection has deadlines (a handshake, a frame or a line that
//! takes too long is dropped with a log line), every size is bounded, and
//! one bad peer never affects the others.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::task::TaskTracker;

use pipeline::Shutdown;

use crate::collector::Submitter;
use crate::config::{constant_time_eq as same, AgentReceiver, Receivers};
use crate::lumberjack;
use crate::protocol::{Frame, FrameError, MAX_FRAME, VERSION};
use crate::record::{self, Kind, Record};
use crate::IngestError;

/// How long a new connection may take to say hello.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// `[receivers.limits]` as durations.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header: Duration,
    request: Duration,
    message: Duration,
    max_connections: usize,
}

impl From<crate::config::LimitsConfig> for Limits {
    fn from(c: crate::config::LimitsConfig) -> Limits {
        Limits {
            header: Duration::from_millis(c.header_timeout_ms.max(1)),
            request: Duration::from_millis(c.request_timeout_ms.max(1)),
            message: Duration::from_millis(c.message_timeout_ms.max(1)),
            max_connections: c.max_connections.max(1),
        }
    }
}

/// The largest frame an agent may send before it has authenticated.
const MAX_HELLO: u32 = 64 * 1024;
/// How long a connection may stay silent between records.
const IDLE: Duration = Duration::from_secs(600);

/// The addresses the receivers are listening on (ports resolved).
#[derive(Debug, Clone, Default)]
pub struct Bound {
    /// Agent protocol.
    pub agent: Option<SocketAddr>,
    /// Syslog TCP.
    pub syslog_tcp: Option<SocketAddr>,
    /// Syslog UDP.
    pub syslog_udp: Option<SocketAddr>,
    /// `_bulk`.
    pub es_bulk: Option<SocketAddr>,
    /// OTLP/HTTP.
    pub otlp: Option<SocketAddr>,
    /// Lumberjack (Beats → Logstash).
    pub lumberjack: Option<SocketAddr>,
}

async fn bind_tcp(addr: SocketAddr, what: &str) -> Result<TcpListener, IngestError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| IngestError::Bind {
            what: what.to_string(),
            addr,
            source,
        })
}

/// Binds an HTTP receiver and serves `app` on each connection (HTTP/1.1)
/// until `stop`, then lets the requests in flight finish; returns the
/// bound address. Headers must arrive within `limits.header`; a whole
/// request within `limits.request` (408 otherwise); at most
/// `limits.max_connections` at once.
async fn serve_http(
    addr: SocketAddr,
    what: &'static str,
    app: Router,
    limits: Limits,
    tasks: &TaskTracker,
    stop: &Shutdown,
) -> Result<SocketAddr, IngestError> {
    let listener = bind_tcp(addr, what).await?;
    let local = listener.local_addr().unwrap_or(addr);
    let request_deadline = limits.request;
    let app = app.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| async move {
            match timeout(request_deadline, next.run(request)).await {
                Ok(response) => response,
                Err(_) => (
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request did not complete within {} s",
                        request_deadline.as_secs_f64()
                    ),
                )
                    .into_response(),
            }
        },
    ));
    let conn_stop = stop.clone();
    tasks.spawn(accept_loop(
        listener,
        what,
        None,
        limits.max_connections,
        (tasks.clone(), stop.clone()),
        move |stream, peer| {
            let app = app.clone();
            let stop = conn_stop.clone();
            async move {
                use tower::ServiceExt as _;
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        app.clone().oneshot(request.map(axum::body::Body::new))
                    },
                );
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(limits.header)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                tokio::pin!(conn);
                let result = tokio::select! {
                    result = conn.as_mut() => result,
                    _ = stop.wait_async() => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(receiver = what, %peer, "connection closed: {e}");
                }
            }
        },
    ));
    Ok(local)
}

/// TLS for a receiver when both a certificate and a key are configured.
fn tls_acceptor(
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
    client_ca: Option<&std::path::Path>,
    section: &str,
) -> Result<Option<tokio_rustls::TlsAcceptor>, IngestError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(crate::tls::acceptor(cert, key, client_ca)?)),
        (None, None) => Ok(None),
        _ => Err(IngestError::Config(format!(
            "[receivers.{section}] needs both cert and key for TLS"
        ))),
    }
}

/// The receivers, running: their addresses, and what [`Running::drain`]
/// waits for.
#[derive(Debug)]
pub struct Running {
    /// Where each receiver listens.
    pub bound: Bound,
    /// The agents the agent receiver has seen.
    pub agents: Agents,
    stop: Shutdown,
    tasks: TaskTracker,
}

/// What the agent receiver knows of one agent (by the name it gave).
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentStatus {
    /// The agent's name.
    pub name: String,
    /// Where its last connection came from.
    pub peer: String,
    /// Connected now.
    pub connected: bool,
    /// When its last connection was accepted.
    pub connected_at: chrono::DateTime<chrono::Utc>,
    /// When it last sent a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_batch_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Batches received since this process started.
    pub batches: u64,
}

/// The agents seen since the receivers started (for the status API).
#[derive(Debug, Clone, Default)]
pub struct Agents(Arc<std::sync::Mutex<std::collections::BTreeMap<String, AgentStatus>>>);

/// At most this many agents are remembered (the oldest disconnected go).
const MAX_AGENTS: usize = 10_000;

impl Agents {
    /// Every agent, by name.
    pub fn snapshot(&self) -> Vec<AgentStatus> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut AgentStatus)) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(name) && map.len() >= MAX_AGENTS {
            let oldest = map
                .values()
                .filter(|a| !a.connected)
                .min_by_key(|a| a.connected_at)
                .map(|a| a.name.clone());
            match oldest {
                Some(o) => {
                    map.remove(&o);
                }
                None => return,
            }
        }
        let entry = map.entry(name.to_string()).or_insert_with(|| AgentStatus {
            name: name.to_string(),
            peer: String::new(),
            connected: false,
            connected_at: chrono::Utc::now(),
            last_batch_at: None,
            batches: 0,
        });
        f(entry);
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Connections and listeners still running at the deadline (their
    /// unacknowledged batches are resent by their senders).
    pub cut: usize,
}

impl Running {
    /// Stops the receivers gracefully: listeners stop accepting; a
    /// connection between records closes; one inside a record or a request
    /// finishes it, hands it to the log and answers (ack, HTTP response)
    /// once it is durable, then closes. Whatever is still running after
    /// `deadline` is left to the runtime's shutdown to cancel, and counted.
    pub async fn drain(self, deadline: Duration) -> Drained {
        self.stop.trigger();
        self.tasks.close();
        let cut = match timeout(deadline, self.tasks.wait()).await {
            Ok(()) => 0,
            Err(_) => self.tasks.len(),
        };
        if cut > 0 {
            tracing::warn!(
                cut,
                deadline_ms = deadline.as_millis() as u64,
                "receivers: connections still open at the drain deadline are cut; their senders resend what was not acknowledged"
            );
        }
        Drained { cut }
    }
}

/// Binds every enabled receiver and runs them until `stop` is given or
/// [`Running::drain`] is called.
pub async fn start(
    receivers: &Receivers,
    submitter: &Submitter,
    stop: &Shutdown,
) -> Result<Running, IngestError> {
    // Nothing binds before the configuration says who may send.
    for warning in receivers.check().map_err(IngestError::Config)? {
        tracing::warn!("{warning}");
    }
    let syslog_allow = Arc::new(receivers.syslog_allow().map_err(IngestError::Config)?);
    let limits = Limits::from(receivers.limits);
    let tasks = TaskTracker::new();
    let stop = stop.clone();
    let mut bound = Bound::default();
    let agents = Agents::default();
    if receivers.agent.enabled {
        let listener = bind_tcp(receivers.agent.listen, "agent receiver").await?;
        bound.agent = listener.local_addr().ok();
        let tls = tls_acceptor(
            receivers.agent.cert.as_deref(),
            receivers.agent.key.as_deref(),
            receivers.agent.client_ca.as_deref(),
            "agent",
        )?;
        let cfg = Arc::new(receivers.agent.clone());
        let sub = submitter.clone();
        let conn_stop = stop.clone();
        let seen = agents.clone();
        tasks.spawn(accept_loop(
            listener,
            "agent",
            tls,
            limits.max_connections,
            (tasks.clone(), stop.clone()),
            move |stream, peer| {
                agent_conn(
                    stream,
                    peer,
                    cfg.clone(),
                    sub.clone(),
                    limits.message,
                    (conn_stop.clone(), seen.clone()),
                )
            },
        ));
    }
    if receivers.syslog.enabled {
        let max = receivers.syslog.max_message;
        if let Some(addr) = receivers.syslog.tcp {
            let listener = bind_tcp(addr, "syslog TCP receiver").await?;
            bound.syslog_tcp = listener.local_addr().ok();
            let sub = submitter.clone();
            tasks.spawn(accept_loop(
                listener,
                "syslog TCP",
                None,
                limits.max_connections,
                (tasks.clone(), stop.clone()),
                {
                    let stop = stop.clone();
                    let allow = syslog_allow.clone();
                    move |stream, peer| {
                        let allowed = allowed(&allow, peer);
                        let (sub, stop) = (sub.clone(), stop.clone());
                        async move {
                            if allowed {
                                syslog_tcp(stream, peer, max, limits.message, sub, stop).await;
                            } else {
                                tracing::warn!(%peer, "syslog TCP: a source outside [receivers.syslog] allow was dropped");
                            }
                        }
                    }
                },
            ));
        }
        if let Some(addr) = receivers.syslog.udp {
            let socket = UdpSocket::bind(addr)
                .await
                .map_err(|source| IngestError::Bind {
                    what: "syslog UDP receiver".into(),
                    addr,
                    source,
                })?;
            bound.syslog_udp = socket.local_addr().ok();
            tasks.spawn(syslog_udp(
                socket,
                submitter.clone(),
                syslog_allow.clone(),
                stop.clone(),
            ));
        }
    }
    if receivers.es_bulk.enabled {
        let state = HttpState {
            sub: submitter.clone(),
            max_body: receivers.es_bulk.max_body,
        };
        let addr = receivers.es_bulk_addr();
        let app = with_auth(es_router(state), &receivers.es_bulk.auth);
        bound.es_bulk = Some(serve_http(addr, "_bulk receiver", app, limits, &tasks, &stop).await?);
    }
    if receivers.otlp.enabled {
        let state = HttpState {
            sub: submitter.clone(),
            max_body: receivers.otlp.max_body,
        };
        let addr = receivers.otlp_addr();
        let app = with_auth(otlp_router(state), &receivers.otlp.auth);
        bound.otlp = Some(serve_http(addr, "OTLP receiver", app, limits, &tasks, &stop).await?);
    }
    if receivers.lumberjack.enabled {
        let listener = bind_tcp(receivers.lumberjack_addr(), "Lumberjack receiver").await?;
        bound.lumberjack = listener.local_addr().ok();
        let tls = tls_acceptor(
            receivers.lumberjack.cert.as_deref(),
            receivers.lumberjack.key.as_deref(),
            receivers.lumberjack.client_ca.as_deref(),
            "lumberjack",
        )?;
        let sub = submitter.clone();
        let conn_stop = stop.clone();
        tasks.spawn(accept_loop(
            listener,
            "lumberjack",
            tls,
            limits.max_connections,
            (tasks.clone(), stop.clone()),
            move |stream, peer| {
                lumberjack_conn(stream, peer, sub.clone(), limits.message, conn_stop.clone())
            },
        ));
    }
    Ok(Running {
        bound,
        agents,
        stop,
        tasks,
    })
}

// ---------------------------------------------------------------- agent

/// A connection, in TLS or not.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Accepts connections until `stop`; each runs `serve` on its own task
/// (tracked, so a drain waits for it), after the TLS handshake when `tls`
/// is set (a failed or slow handshake is logged and the connection dropped).
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    what: &'static str,
    tls: Option<tokio_rustls::TlsAcceptor>,
    max_connections: usize,
    (tasks, stop): (TaskTracker, Shutdown),
    serve: F,
) where
    F: Fn(Box<dyn Io>, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut refused = 0u64;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_async() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(ok) => ok,
            Err(e) => {
                tracing::warn!(receiver = what, "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Over the cap: closed at once, so one greedy peer cannot take
            // every file descriptor.
            refused += 1;
            if refused == 1 || refused.is_power_of_two() {
                tracing::warn!(receiver = what, %peer, refused, max_connections, "connection refused: too many open");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (serve, tls) = (serve.clone(), tls.clone());
        tasks.spawn(async move {
            let _slot = slot;
            match tls {
                Some(acceptor) => match timeout(HANDSHAKE, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve(Box::new(stream), peer).await,
                    Ok(Err(e)) => tracing::warn!("{what} {peer}: TLS handshake failed: {e}"),
                    Err(_) => tracing::warn!("{what} {peer}: TLS handshake timed out"),
                },
                None => serve(Box::new(stream), peer).await,
            }
        });
    }
}

/// Reads one frame; `Ok(None)` on a clean end of stream, or when `stop`
/// is given before a frame begins (a frame begun is read to its end).
/// Reads one agent frame: waits up to `idle` for its first byte, then the
/// whole frame must arrive within `message` of it (one deadline, not one
/// per read). A frame longer than `max` is refused before anything is
/// allocated for it, and the body grows as bytes arrive, never to a
/// claimed size up front.
async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    idle: Duration,
    message: Duration,
    max: u32,
    stop: &Shutdown,
) -> Result<Option<Frame>, FrameError> {
    let mut len = [0u8; 4];
    // Only the wait for a frame's first bytes races the stop signal: `read`
    // loses nothing when cancelled, and a frame begun is read to its end.
    let got = tokio::select! {
        biased;
        _ = stop.wait_async() => return Ok(None),
        first = timeout(idle, r.read(&mut len)) => match first {
            Err(_) => {
                return Err(FrameError::Malformed(
                    "no frame before the idle deadline".into(),
                ))
            }
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(n)) => n,
        },
    };
    let deadline = tokio::time::Instant::now() + message;
    let late = |what: String| {
        FrameError::Malformed(format!(
            "{what} did not arrive within {} s of its first byte",
            message.as_secs_f64()
        ))
    };
    match tokio::time::timeout_at(deadline, r.read_exact(&mut len[got..])).await {
        Err(_) => return Err(late("a frame's length".into())),
        Ok(Err(e)) => return Err(e.into()),
        Ok(Ok(_)) => {}
    }
    let len = u32::from_be_bytes(len);
    if len > max.min(MAX_FRAME) {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = Vec::with_capacity((len as usize).min(64 * 1024));
    match tokio::time::timeout_at(
        deadline,
        (&mut *r).take(u64::from(len)).read_to_end(&mut body),
    )
    .await
    {
        Err(_) => Err(late(format!("a {len}-byte frame"))),
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(n)) if n < len as usize => Err(FrameError::Malformed(format!(
            "the connection ended inside a {len}-byte frame"
        ))),
        Ok(Ok(_)) => Frame::decode(&body).map(Some),
    }
}

async fn agent_conn<S>(
    stream: S,
    peer: SocketAddr,
    cfg: Arc<AgentReceiver>,
    sub: Submitter,
    message: Duration,
    (stop, agents): (Shutdown, Agents),
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    // Before it has authenticated, a peer gets a small frame, not 16 MiB.
    let agent = match read_frame(&mut rd, HANDSHAKE, message, MAX_HELLO, &stop).await {
        Ok(Some(Frame::Hello {
            version,
            agent,
            token,
        })) => {
            if version != VERSION {
                let reason = format!(
                    "protocol version {version} is not supported; this collector speaks {VERSION}"
                );
                tracing::warn!("agent {agent} at {peer} refused: {reason}");
                let _ = wr.write_all(&Frame::Refused { reason }.encode()).await;
                return;
            }
            if !cfg.accepts(&agent, &token) {
                let what = if token.is_empty() { "missing" } else { "wrong" };
                tracing::warn!("agent {agent} at {peer} refused: {what} token");
                let reason = format!("{what} token for agent {agent}");
                let _ = wr.write_all(&Frame::Refused { reason }.encode()).await;
                return;
            }
            agent
        }
        Ok(Some(other)) => {
            tracing::warn!("agent {peer}: expected Hello, got {other:?}; closing");
            return;
        }
        Ok(None) => return,
        Err(e) => {
            tracing::warn!("agent {peer}: handshake failed: {e}");
            return;
        }
    };
    if wr
        .write_all(&Frame::Welcome { version: VERSION }.encode())
        .await
        .is_err()
    {
        return;
    }
    tracing::info!("agent {agent} connected from {peer}");
    agents.update(&agent, |a| {
        a.peer = peer.to_string();
        a.connected = true;
        a.connected_at = chrono::Utc::now();
    });
    let (ack_tx, mut ack_rx) = mpsc::channel::<(u64, crate::collector::Durable)>(256);
    let acks = tokio::spawn(async move {
        while let Some((seq, durable)) = ack_rx.recv().await {
            let frame = match durable.wait().await {
                Ok(_) => Frame::Ack { seq },
                Err(e) => Frame::Nack {
                    seq,
                    reason: e.to_string(),
                },
            };
            if wr.write_all(&frame.encode()).await.is_err() {
                break;
            }
        }
    });
    let origin = format!("agent {agent}");
    loop {
        let frame = match read_frame(&mut rd, IDLE, message, MAX_FRAME, &stop).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("agent {agent} at {peer}: {e}; closing the connection");
                break;
            }
        };
        let Frame::Batch {
            seq,
            kind,
            format,
            payload,
        } = frame
        else {
            tracing::warn!("agent {agent} at {peer}: unexpected {frame:?}; closing");
            break;
        };
        let body = [&[kind, format, 0, 0][..], &payload].concat();
        let Some(mut record) = Record::decode(&body) else {
            tracing::warn!("agent {agent} at {peer}: batch {seq} has unknown kind {kind} or format {format}; closing");
            break;
        };
        record.origin = origin.clone();
        agents.update(&agent, |a| {
            a.batches += 1;
            a.last_batch_at = Some(chrono::Utc::now());
        });
        match sub.enqueue(vec![record]).await {
            Ok(durable) => {
                if ack_tx.send((seq, durable)).await.is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    drop(ack_tx);
    let _ = acks.await;
    let from = peer.to_string();
    agents.update(&agent, |a| {
        // A newer connection of the same agent keeps it connected.
        if a.peer == from {
            a.connected = false;
        }
    });
}

// ---------------------------------------------------------------- lumberjack

/// Reads exactly `n` bytes within `deadline`.
/// Reads `n` bytes by `deadline` (the frame's, not one per read); the
/// buffer grows as bytes arrive.
async fn read_n<R: AsyncRead + Unpin>(
    r: &mut R,
    n: usize,
    deadline: tokio::time::Instant,
) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(n.min(64 * 1024));
    match tokio::time::timeout_at(deadline, r.take(n as u64).read_to_end(&mut buf)).await {
        Err(_) => Err("a frame did not arrive within the message deadline".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(got)) if got < n => Err(format!(
            "the connection ended inside a frame ({got} of {n} bytes)"
        )),
        Ok(Ok(_)) => Ok(buf),
    }
}

/// Reads `head` bytes ending in a u32 length, then that many bytes, onto
/// `frame`; the length is checked against the payload limit first.
async fn read_sized<R: AsyncRead + Unpin>(
    r: &mut R,
    frame: &mut Vec<u8>,
    head: usize,
    what: &'static str,
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    let fields = read_n(r, head, deadline).await?;
    let len = u32::from_be_bytes(fields[head - 4..].try_into().expect("4 bytes"));
    let n = lumberjack::check_len(what, len).map_err(|e| e.to_string())?;
    frame.extend(fields);
    frame.extend(read_n(r, n, deadline).await?);
    Ok(())
}

/// Reads one top-level frame and returns its items; `Ok(None)` on a clean
/// end of stream between frames.
/// `Ok(None)` too when `stop` is given (if set) before the frame begins.
async fn lumberjack_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    first_wait: Duration,
    message: Duration,
    stop: Option<&Shutdown>,
) -> Result<Option<Vec<lumberjack::Item>>, String> {
    use lumberjack::{check_version, parse_frames};
    let mut head = [0u8; 2];
    let stopped = async {
        match stop {
            Some(stop) => stop.wait_async().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        _ = stopped => return Ok(None),
        first = timeout(first_wait, r.read(&mut head[..1])) => match first {
            Err(_) => return Err("no frame before the deadline".into()),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(_)) => {}
        },
    }
    check_version(head[0]).map_err(|e| e.to_string())?;
    // The whole frame within `message` of its first byte.
    let deadline = tokio::time::Instant::now() + message;
    head[1] = read_n(r, 1, deadline).await?[0];
    // The frame is rebuilt into one buffer and parsed by the same code as
    // frames inside a compressed payload.
    let mut frame = head.to_vec();
    match head[1] {
        b'W' => frame.extend(read_n(r, 4, deadline).await?),
        b'C' => read_sized(r, &mut frame, 4, "a compressed payload", deadline).await?,
        b'J' => read_sized(r, &mut frame, 8, "a JSON event", deadline).await?,
        b'D' => {
            let seq_pairs = read_n(r, 8, deadline).await?;
            let pairs =
                u32::from_be_bytes([seq_pairs[4], seq_pairs[5], seq_pairs[6], seq_pairs[7]]);
            frame.extend(seq_pairs);
            for _ in 0..pairs.saturating_mul(2) {
                read_sized(r, &mut frame, 4, "a data field", deadline).await?;
                if frame.len() > lumberjack::MAX_PAYLOAD {
                    return Err("a data frame is over the payload limit".into());
                }
            }
        }
        other => return Err(lumberjack::LumberjackError::FrameType(other).to_string()),
    }
    let mut items = Vec::new();
    // Inflating up to 64 MiB is CPU work: keep it off the async workers.
    let items =
        tokio::task::spawn_blocking(move || parse_frames(&frame, 0, &mut items).map(|_| items))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    Ok(Some(items))
}

/// One Beats connection: windows of events → one WAL record each → an
/// ack of the window's last sequence number once durable.
///
/// On `stop`, a window begun is read to its end and acked; the connection
/// closes between windows.
async fn lumberjack_conn<S>(
    stream: S,
    peer: SocketAddr,
    sub: Submitter,
    message: Duration,
    stop: Shutdown,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let origin = format!("lumberjack {peer}");
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (ack_tx, mut ack_rx) = mpsc::channel::<(u8, u32, crate::collector::Durable)>(64);
    let ack_origin = origin.clone();
    let acks = tokio::spawn(async move {
        while let Some((version, seq, durable)) = ack_rx.recv().await {
            if let Err(e) = durable.wait().await {
                // No ack: the client resends the window after reconnecting.
                tracing::warn!("{ack_origin}: window not stored: {e}; closing");
                break;
            }
            if wr.write_all(&lumberjack::ack(version, seq)).await.is_err() {
                break;
            }
        }
    });
    let mut window: Option<u32> = None;
    let mut lines: Vec<u8> = Vec::new();
    let mut pending = 0u32;
    let mut last: Option<(u8, u32)> = None;
    let mut first = true;
    loop {
        let wait = if first {
            HANDSHAKE
        } else if pending > 0 {
            message
        } else {
            IDLE
        };
        first = false;
        let between_windows = (pending == 0).then_some(&stop);
        let items = match lumberjack_frame(&mut rd, wait, message, between_windows).await {
            Ok(Some(items)) => items,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("{origin}: {e}; closing the connection");
                break;
            }
        };
        let mut flush_now = window.is_none();
        for item in items {
            match item {
                lumberjack::Item::Window(n) => {
                    if pending > 0 {
                        // A new window before the last was complete: what
                        // arrived is a window of its own.
                        if !flush(&sub, &ack_tx, &origin, &mut lines, &mut pending, last).await {
                            return;
                        }
                    }
                    window = Some(n);
                    flush_now = false;
                }
                lumberjack::Item::Event { seq, json, version } => {
                    lines.extend_from_slice(&json);
                    lines.push(b'\n');
                    pending += 1;
                    last = Some((version, seq));
                    if window.is_some_and(|w| pending >= w) {
                        if !flush(&sub, &ack_tx, &origin, &mut lines, &mut pending, last).await {
                            return;
                        }
                        window = None;
                    }
                }
            }
        }
        if flush_now
            && pending > 0
            && !flush(&sub, &ack_tx, &origin, &mut lines, &mut pending, last).await
        {
            return;
        }
    }
    if pending > 0 {
        tracing::warn!("{origin}: connection closed inside a window; {pending} unacknowledged event(s) dropped (the client resends them)");
    }
    drop(ack_tx);
    let _ = acks.await;
}

/// Hands the collected window to the log and queues its ack.
async fn flush(
    sub: &Submitter,
    acks: &mpsc::Sender<(u8, u32, crate::collector::Durable)>,
    origin: &str,
    lines: &mut Vec<u8>,
    pending: &mut u32,
    last: Option<(u8, u32)>,
) -> bool {
    let Some((version, seq)) = last else {
        return true;
    };
    let record = Record::text(
        Some(parsers::Format::EcsJson),
        origin.to_string(),
        std::mem::take(lines),
    );
    *pending = 0;
    match sub.enqueue(vec![record]).await {
        Ok(durable) => acks.send((version, seq, durable)).await.is_ok(),
        Err(e) => {
            tracing::warn!("{origin}: {e}");
            false
        }
    }
}

// ---------------------------------------------------------------- syslog

/// Splits syslog messages off the front of `buf`: octet-counted (`LEN SP
/// MSG`) or LF-terminated, decided per message by its first byte. Returns
/// the messages and how many bytes were used. `skip` carries an oversized
/// message's remainder across reads.
fn split_syslog(
    buf: &[u8],
    max: usize,
    skip: &mut Skip,
    out: &mut Vec<u8>,
    errors: &mut Vec<String>,
) -> (usize, usize) {
    let mut at = 0;
    let mut count = 0;
    loop {
        match *skip {
            Skip::Bytes(n) => {
                let take = n.min(buf.len() - at);
                at += take;
                *skip = if take == n {
                    Skip::None
                } else {
                    Skip::Bytes(n - take)
                };
                if *skip != Skip::None {
                    return (at, count);
                }
            }
            Skip::Line => match memchr::memchr(b'\n', &buf[at..]) {
                Some(i) => {
                    at += i + 1;
                    *skip = Skip::None;
                }
                None => return (buf.len(), count),
            },
            Skip::None => {}
        }
        // Blank separators between messages.
        while at < buf.len() && matches!(buf[at], b'\n' | b'\r' | b' ' | 0) {
            at += 1;
        }
        if at >= buf.len() {
            return (at, count);
        }
        let rest = &buf[at..];
        if rest[0].is_ascii_digit() {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == rest.len() {
                return (at, count); // the count is still arriving
            }
            let counted = digits <= 9 && rest[digits] == b' ';
            if counted {
                let len: usize = std::str::from_utf8(&rest[..digits])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(usize::MAX);
                if len > max {
                    errors.push(format!(
                        "octet-counted message of {len} bytes is over the {max}-byte limit; skipped"
                    ));
                    at += digits + 1;
                    *skip = Skip::Bytes(len);
                    continue;
                }
                if rest.len() < digits + 1 + len {
                    return (at, count);
                }
                record::push_message(out, &rest[digits + 1..digits + 1 + len]);
                count += 1;
                at += digits + 1 + len;
                continue;
            }
        }
        match memchr::memchr(b'\n', rest) {
            Some(i) => {
                if i > max {
                    errors.push(format!(
                        "message of {i} bytes is over the {max}-byte limit; skipped"
                    ));
                } else {
                    let mut line = &rest[..i];
                    if line.last() == Some(&b'\r') {
                        line = &line[..line.len() - 1];
                    }
                    record::push_message(out, line);
                    count += 1;
                }
                at += i + 1;
            }
            None => {
                if rest.len() > max {
                    errors.push(format!(
                        "a line longer than the {max}-byte limit; skipped up to its end"
                    ));
                    *skip = Skip::Line;
                    return (buf.len(), count);
                }
                return (at, count);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    None,
    Bytes(usize),
    Line,
}

/// One syslog TCP connection. On `stop` it hands what complete messages it
/// holds to the log and closes (syslog has no acknowledgements: what the
/// sender has not yet written is its to resend or lose, as with any
/// syslog server that restarts).
async fn syslog_tcp<S: AsyncRead + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    max: usize,
    message: Duration,
    sub: Submitter,
    stop: Shutdown,
) {
    let origin = format!("syslog-tcp {peer}");
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 256 * 1024];
    let mut skip = Skip::None;
    let mut partial_since: Option<tokio::time::Instant> = None;
    let mut stopping = false;
    loop {
        // A message begun must be whole within `message` of its first byte
        // (one deadline for it, not one per read: a byte every few seconds
        // does not keep a connection and its buffer forever).
        let deadline = match partial_since {
            Some(since) => message.saturating_sub(since.elapsed()),
            None => IDLE,
        };
        let read = tokio::select! {
            biased;
            _ = stop.wait_async() => {
                stopping = true;
                Ok(Ok(0))
            }
            read = timeout(deadline, stream.read(&mut chunk)) => read,
        };
        let n = match read {
            Err(_) => {
                if partial_since.is_some() {
                    tracing::warn!(
                        "{origin}: a message was not complete within {} s of its first byte; closing",
                        message.as_secs_f64()
                    );
                } else {
                    tracing::debug!("{origin}: idle for {} s; closing", IDLE.as_secs());
                }
                break;
            }
            Ok(Err(e)) => {
                tracing::warn!("{origin}: {e}");
                break;
            }
            Ok(Ok(0)) => 0,
            Ok(Ok(n)) => n,
        };
        let eof = n == 0;
        buf.extend_from_slice(&chunk[..n]);
        if eof && !stopping && !buf.is_empty() && skip == Skip::None && !buf.ends_with(b"\n") {
            // A last LF-framed message without its LF.
            buf.push(b'\n');
        }
        let mut payload = Vec::new();
        let mut errors = Vec::new();
        let (used, count) = split_syslog(&buf, max, &mut skip, &mut payload, &mut errors);
        for e in errors {
            tracing::warn!("{origin}: {e}");
        }
        buf.drain(..used);
        if buf.is_empty() {
            partial_since = None;
        } else if used > 0 || partial_since.is_none() {
            // What is left is the start of the next message.
            partial_since = Some(tokio::time::Instant::now());
        }
        if count > 0 {
            let record = Record {
                kind: Kind::Syslog,
                format: None,
                origin: origin.clone(),
                payload,
            };
            // Waiting here is the backpressure: the socket is not read
            // while the batch is being made durable.
            if let Err(e) = sub.submit(vec![record]).await {
                tracing::warn!("{origin}: {e}");
                break;
            }
        }
        if eof {
            if !buf.is_empty() {
                tracing::warn!(
                    "{origin}: connection closed inside a message ({} bytes dropped)",
                    buf.len()
                );
            }
            break;
        }
    }
}

/// Whether `peer` may send syslog (an empty allow-list lets everyone).
fn allowed(allow: &[ipnet::IpNet], peer: SocketAddr) -> bool {
    let ip = match peer.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    };
    allow.is_empty() || allow.iter().any(|net| net.contains(&ip))
}

async fn syslog_udp(
    socket: UdpSocket,
    sub: Submitter,
    allow: Arc<Vec<ipnet::IpNet>>,
    stop: Shutdown,
) {
    let mut datagram = vec![0u8; 65536];
    let mut refused = 0u64;
    loop {
        let received = tokio::select! {
            biased;
            _ = stop.wait_async() => return,
            received = socket.recv_from(&mut datagram) => received,
        };
        let (n, peer) = match received {
            Ok(ok) => ok,
            Err(e) => {
                tracing::warn!("syslog UDP: {e}");
                continue;
            }
        };
        let mut payload = Vec::new();
        let mut count = 0;
        if allowed(&allow, peer) {
            record::push_message(&mut payload, &datagram[..n]);
            count += 1;
        } else {
            refused += 1;
        }
        // Take what else has already arrived, in one record.
        let mut taken = 1;
        while taken < 4096 {
            match socket.try_recv_from(&mut datagram) {
                Ok((n, from)) => {
                    taken += 1;
                    if allowed(&allow, from) {
                        record::push_message(&mut payload, &datagram[..n]);
                        count += 1;
                    } else {
                        refused += 1;
                    }
                }
                Err(_) => break,
            }
        }
        if refused > 0 && (refused == 1 || refused.is_power_of_two()) {
            tracing::warn!(refused, last = %peer, "syslog UDP: datagrams from sources outside [receivers.syslog] allow were dropped");
        }
        if count == 0 {
            continue;
        }
        let record = Record {
            kind: Kind::Syslog,
            format: None,
            origin: format!("syslog-udp {peer}"),
            payload,
        };
        if let Err(e) = sub.submit(vec![record]).await {
            tracing::warn!("syslog UDP: {e}");
        }
    }
}

// ---------------------------------------------------------------- HTTP

/// Requires one of `auth`'s credentials on every request (nothing when
/// none is configured: a loopback receiver, or one open on purpose).
fn with_auth(app: Router, auth: &crate::config::HttpAuth) -> Router {
    if auth.is_empty() {
        return app;
    }
    let auth = Arc::new(auth.clone());
    app.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let auth = auth.clone();
            async move {
                if authorized(&auth, request.headers()) {
                    next.run(request).await
                } else {
                    tracing::warn!(path = %request.uri().path(), "HTTP receiver: a request without valid credentials was refused");
                    (
                        StatusCode::UNAUTHORIZED,
                        [
                            (header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"relive\", ApiKey, Bearer")),
                            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
                        ],
                        r#"{"error":{"type":"security_exception","reason":"missing or wrong credentials for relive"},"status":401}"#,
                    )
                        .into_response()
                }
            }
        },
    ))
}

/// Whether the request carries one of the configured credentials.
fn authorized(auth: &crate::config::HttpAuth, headers: &HeaderMap) -> bool {
    use base64::Engine as _;
    for (name, value) in &auth.headers {
        if headers
            .get(name.as_str())
            .is_some_and(|v| same(v.as_bytes(), value.as_bytes()))
        {
            return true;
        }
    }
    let Some(authorization) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, credential) = authorization
        .trim()
        .split_once(' ')
        .unwrap_or((authorization, ""));
    let credential = credential.trim();
    let decoded = || {
        base64::engine::general_purpose::STANDARD
            .decode(credential)
            .ok()
    };
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => decoded().is_some_and(|plain| {
            plain.split(|&b| b == b':').next().is_some_and(|user| {
                let password = &plain[(user.len() + 1).min(plain.len())..];
                auth.basic
                    .iter()
                    .any(|(u, p)| same(u.as_bytes(), user) & same(p.as_bytes(), password))
            })
        }),
        "apikey" => {
            let plain = decoded();
            auth.api_keys.iter().any(|key| {
                plain.as_deref().is_some_and(|p| same(p, key.as_bytes()))
                    || same(credential.as_bytes(), key.as_bytes())
            })
        }
        "bearer" => auth
            .bearer_tokens
            .iter()
            .any(|t| same(t.as_bytes(), credential.as_bytes())),
        _ => false,
    }
}

#[derive(Clone)]
struct HttpState {
    sub: Submitter,
    max_body: usize,
}

/// The body, gunzipped when `Content-Encoding: gzip`, bounded by `max`.
fn body_bytes(
    headers: &HeaderMap,
    body: &Bytes,
    max: usize,
) -> Result<Vec<u8>, (StatusCode, String)> {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    if !gzip {
        return Ok(body.to_vec());
    }
    let mut out = Vec::new();
    let decoder = flate2::read::MultiGzDecoder::new(&body[..]);
    match decoder.take(max as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > max => Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("gzip body expands past the {max}-byte limit"),
        )),
        Ok(_) => Ok(out),
        Err(e) => Err((StatusCode::BAD_REQUEST, format!("bad gzip body: {e}"))),
    }
}

fn busy() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
        "relive is indexing behind; retry shortly\n",
    )
        .into_response()
}

async fn product_header(mut response: Response) -> Response {
    response.headers_mut().insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    response
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        value.to_string(),
    )
        .into_response()
}

fn es_router(state: HttpState) -> Router {
    let max = state.max_body;
    Router::new()
        .route("/", get(es_root).head(es_head))
        .route("/_bulk", post(bulk).put(bulk))
        .route("/{index}/_bulk", post(bulk_index).put(bulk_index))
        .route("/_cluster/health", get(|| async {
            json(StatusCode::OK, serde_json::json!({"cluster_name": "relive", "status": "green", "number_of_nodes": 1}))
        }))
        .route("/_license", get(|| async {
            json(StatusCode::OK, serde_json::json!({"license": {"status": "active", "type": "basic", "uid": "relive"}}))
        }))
        .route("/_index_template/{name}", get(|| async { json(StatusCode::NOT_FOUND, serde_json::json!({"index_templates": []})) })
            .head(|| async { StatusCode::NOT_FOUND })
            .put(|| async { json(StatusCode::OK, serde_json::json!({"acknowledged": true})) }))
        .route("/_ilm/policy/{name}", get(|| async { json(StatusCode::NOT_FOUND, serde_json::json!({})) })
            .put(|| async { json(StatusCode::OK, serde_json::json!({"acknowledged": true})) }))
        .fallback(|| async {
            json(StatusCode::NOT_FOUND, serde_json::json!({"error": {"type": "illegal_argument_exception", "reason": "relive answers _bulk and the version handshake only"}, "status": 404}))
        })
        .layer(DefaultBodyLimit::max(max))
        .layer(axum::middleware::map_response(product_header))
        .with_state(state)
}

async fn es_root() -> Response {
    json(
        StatusCode::OK,
        serde_json::json!({
            "name": "relive",
            "cluster_name": "relive",
            "cluster_uuid": "relive-collector",
            "version": {
                "number": "8.17.0",
                "build_flavor": "default",
                "build_type": "relive",
                "lucene_version": "9.12.0",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "You Know, for Search"
        }),
    )
}

async fn es_head() -> StatusCode {
    StatusCode::OK
}

async fn bulk_index(
    State(state): State<HttpState>,
    axum::extract::Path(index): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    bulk_with(state, Some(index), headers, body).await
}

async fn bulk(State(state): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    bulk_with(state, None, headers, body).await
}

/// One item of a bulk request, as answered.
struct Item {
    op: &'static str,
    index: String,
    id: Option<String>,
    error: Option<(u16, &'static str, String)>,
}

/// Reads a `_bulk` body: action lines, each (but `delete`) followed by a
/// source line. Blank lines are tolerated (rsyslog sends them).
fn split_bulk(text: &str, default_index: &str) -> Result<(Vec<Item>, Vec<u8>), String> {
    let mut items = Vec::new();
    let mut sources = Vec::new();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    while let Some(action) = lines.next() {
        let value: serde_json::Value = serde_json::from_str(action)
            .map_err(|e| format!("malformed action line [{action:.80}]: {e}"))?;
        let Some((op, meta)) = value.as_object().and_then(|o| o.iter().next()) else {
            return Err(format!("malformed action line [{action:.80}]"));
        };
        let op: &'static str = match op.as_str() {
            "index" => "index",
            "create" => "create",
            "update" => "update",
            "delete" => "delete",
            other => return Err(format!("unknown bulk action [{other}]")),
        };
        let index = meta
            .get("_index")
            .and_then(|v| v.as_str())
            .unwrap_or(default_index)
            .to_string();
        let id = meta.get("_id").and_then(|v| v.as_str()).map(str::to_string);
        if op == "delete" {
            items.push(Item {
                op,
                index,
                id,
                error: Some((
                    400,
                    "action_request_validation_exception",
                    "relive keeps events; delete is not supported".into(),
                )),
            });
            continue;
        }
        let Some(source) = lines.next() else {
            return Err(format!("the {op} action has no source line"));
        };
        if op == "update" {
            items.push(Item {
                op,
                index,
                id,
                error: Some((
                    400,
                    "action_request_validation_exception",
                    "relive keeps events; update is not supported".into(),
                )),
            });
            continue;
        }
        match serde_json::from_str::<serde::de::IgnoredAny>(source) {
            Ok(_) if source.starts_with('{') => {
                sources.extend_from_slice(source.as_bytes());
                sources.push(b'\n');
                items.push(Item {
                    op,
                    index,
                    id,
                    error: None,
                });
            }
            Ok(_) => items.push(Item {
                op,
                index,
                id,
                error: Some((
                    400,
                    "mapper_parsing_exception",
                    "the source is not a JSON object".into(),
                )),
            }),
            Err(e) => items.push(Item {
                op,
                index,
                id,
                error: Some((
                    400,
                    "mapper_parsing_exception",
                    format!("failed to parse the source: {e}"),
                )),
            }),
        }
    }
    Ok((items, sources))
}

async fn bulk_with(
    state: HttpState,
    index: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let raw = match body_bytes(&headers, &body, state.max_body) {
        Ok(raw) => raw,
        Err((status, reason)) => {
            tracing::warn!("_bulk: {reason}");
            return es_error(status, "parse_exception", &reason);
        }
    };
    let Ok(text) = std::str::from_utf8(&raw) else {
        return es_error(
            StatusCode::BAD_REQUEST,
            "parse_exception",
            "the body is not UTF-8",
        );
    };
    let default_index = index.as_deref().unwrap_or("relive-events");
    let (items, sources) = match split_bulk(text, default_index) {
        Ok(ok) => ok,
        Err(reason) => {
            tracing::warn!("_bulk: {reason}");
            return es_error(
                StatusCode::BAD_REQUEST,
                "illegal_argument_exception",
                &reason,
            );
        }
    };
    if !sources.is_empty() {
        let record = Record::text(Some(parsers::Format::EcsJson), "es-bulk", sources);
        match state.sub.try_submit(vec![record]).await {
            Err(_) => return busy(),
            Ok(Err(e)) => {
                tracing::error!("_bulk: {e}");
                return es_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable_shards_exception",
                    &e.to_string(),
                );
            }
            Ok(Ok(_)) => {}
        }
    }
    let mut errors = false;
    let mut n = 0u64;
    let out: Vec<serde_json::Value> = items
        .into_iter()
        .map(|item| {
            n += 1;
            let id = item
                .id
                .unwrap_or_else(|| format!("relive-{}-{n}", started.elapsed().as_nanos()));
            let body = match item.error {
                None => serde_json::json!({
                    "_index": item.index, "_id": id, "_version": 1, "result": "created",
                    "_shards": {"total": 1, "successful": 1, "failed": 0},
                    "_seq_no": n, "_primary_term": 1, "status": 201
                }),
                Some((status, kind, reason)) => {
                    errors = true;
                    serde_json::json!({
                        "_index": item.index, "_id": id, "status": status,
                        "error": {"type": kind, "reason": reason}
                    })
                }
            };
            serde_json::json!({ item.op: body })
        })
        .collect();
    json(
        StatusCode::OK,
        serde_json::json!({"took": started.elapsed().as_millis() as u64, "errors": errors, "items": out}),
    )
}

fn es_error(status: StatusCode, kind: &str, reason: &str) -> Response {
    json(
        status,
        serde_json::json!({"error": {"type": kind, "reason": reason}, "status": status.as_u16()}),
    )
}

fn otlp_router(state: HttpState) -> Router {
    let max = state.max_body;
    Router::new()
        .route("/v1/logs", post(otlp_logs))
        .layer(DefaultBodyLimit::max(max))
        .with_state(state)
}

async fn otlp_logs(State(state): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-protobuf")
        .to_ascii_lowercase();
    let is_json = content_type.starts_with("application/json");
    let raw = match body_bytes(&headers, &body, state.max_body) {
        Ok(raw) => raw,
        Err((status, reason)) => {
            tracing::warn!("OTLP: {reason}");
            return (status, reason).into_response();
        }
    };
    let kind = if is_json {
        if let Err(e) = serde_json::from_slice::<parsers::format::otlp_json::LogsRequest>(&raw) {
            tracing::warn!("OTLP: bad JSON request: {e}");
            return (
                StatusCode::BAD_REQUEST,
                format!("bad OTLP/JSON request: {e}"),
            )
                .into_response();
        }
        Kind::OtlpJson
    } else {
        if let Err(e) = crate::otlp::count_protobuf(&raw) {
            tracing::warn!("OTLP: bad protobuf request: {e}");
            return (
                StatusCode::BAD_REQUEST,
                format!("bad OTLP protobuf request: {e}"),
            )
                .into_response();
        }
        Kind::OtlpProto
    };
    let record = Record {
        kind,
        format: None,
        origin: "otlp-http".into(),
        payload: raw,
    };
    match state.sub.try_submit(vec![record]).await {
        Err(_) => busy(),
        Ok(Err(e)) => {
            tracing::error!("OTLP: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
                e.to_string(),
            )
                .into_response()
        }
        Ok(Ok(_)) if is_json => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            "{}",
        )
            .into_response(),
        Ok(Ok(_)) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            )],
            crate::otlp::encode_response(0, ""),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(input: &[u8], max: usize) -> (Vec<Vec<u8>>, Vec<String>) {
        let mut skip = Skip::None;
        let mut payload = Vec::new();
        let mut errors = Vec::new();
        let (used, _) = split_syslog(input, max, &mut skip, &mut payload, &mut errors);
        assert_eq!(used, input.len());
        (
            record::messages(&payload).map(<[u8]>::to_vec).collect(),
            errors,
        )
    }

    #[test]
    fn octet_counting_and_lf_framing_mix() {
        let input = b"5 <1>ab<2>lf one\n<3>lf two\r\n9 <4>x\nyz\n\n";
        let (msgs, errors) = split_all(input, 1000);
        assert!(errors.is_empty());
        assert_eq!(
            msgs,
            vec![
                b"<1>ab".to_vec(),
                b"<2>lf one".to_vec(),
                b"<3>lf two".to_vec(),
                b"<4>x\nyz\n\n".to_vec()
            ]
        );
    }

    #[test]
    fn oversized_messages_are_skipped_and_reported() {
        let mut input = b"20 <1>aaaaaaaaaaaaaaaaa".to_vec();
        input.extend_from_slice(b"<2>ok\n");
        let (msgs, errors) = split_all(&input, 10);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(msgs, vec![b"<2>ok".to_vec()]);
    }

    #[test]
    fn bulk_bodies_split_into_items() {
        let body = "{\"index\":{\"_index\": \"relive-events\",\"_type\":\"events\"}}\n{\"message\":\"a\"}\n\n{\"create\":{\"_id\":\"x\"}}\n{\"message\":\"b\"}\n{\"delete\":{\"_id\":\"y\"}}\n{\"index\":{}}\nnot json\n";
        let (items, sources) = split_bulk(body, "d").unwrap();
        assert_eq!(items.len(), 4);
        assert!(items[0].error.is_none() && items[1].error.is_none());
        assert_eq!(items[1].id.as_deref(), Some("x"));
        assert!(items[2].error.is_some() && items[3].error.is_some());
        assert_eq!(sources, b"{\"message\":\"a\"}\n{\"message\":\"b\"}\n");
    }
}
