//! Per-socket plumbing shared by both namespaces.
//!
//! Every socket gets one session task that handles its events strictly in arrival order
//! (socketioxide would otherwise run each event's handler as its own task, so a `message` could
//! overtake the `join` before it). In front of that queue sits a synchronous [`Front`]: it
//! counts the event, applies the rate limit and the size limit, decodes the payload into the
//! namespace's typed event and answers every refusal with the one `error` shape, all before
//! anything is queued. A socket that keeps getting refused is disconnected.
//!
//! Life of a socket: the connect middleware admits it (`server.max_connections`, and the
//! namespace's own cap if it has one), gives it a public id, installs the front as the catch-all
//! event handler and spawns the session, which waits until the connect packet is out.
//!
//! Public ids: socketioxide's socket id *is* the Engine.IO session id, the one secret that opens
//! a session (`?sid=` on a polling request or a WebSocket upgrade). Whoever knows it can post
//! events as that socket, read its messages, close it or move it to their own WebSocket, and
//! socketioxide 0.18 has no option to make the two differ. So users never see it: every id the
//! protocol shows or accepts is [`Conn::id`], a random id made here, known to the server only as
//! a label. The session id stays between the socket and the server; sfu-lite's logs name
//! sockets by their public id (socketioxide's own debug traces still show the session id).
//!
//! On disconnect the session is told to stop; the disconnect handler waits for it to finish its
//! cleanup, so when socketioxide forgets the socket, its room membership, SFU participant and
//! gauges are gone too.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value as Json;
use socketioxide::extract::{AckSender, Event, SocketRef};
use socketioxide::handler::{ConnectHandler, FromMessageParts, MessageHandler, Value};
use socketioxide::socket::Socket;
use tokio::sync::{mpsc, oneshot, watch};

use super::limits::{Admission, Gate};
use super::protocol::{AckError, ErrorCode, SignalError};
use crate::admission::LogThrottle;
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::{inc, GaugeGuard, Metrics};
use crate::sync::lock;

/// Events queued per socket beyond the one being handled. The rate limit keeps honest clients
/// far below this; when it is full anyway, events are dropped and counted.
const QUEUE: usize = 64;
/// A socket whose connect packet never went out (it vanished during the handshake) is given up
/// after this long.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What every session needs: the config and the metrics.
pub(crate) struct Ctx {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// What the rate limit and strikes read as "now" (a manual clock in tests).
    pub clock: Clock,
    /// Set when shutdown begins: new namespace connections are refused from then on.
    pub closing: std::sync::atomic::AtomicBool,
}

/// One namespace's behaviour, plugged into the shared plumbing.
pub(crate) trait Service: Send + Sync + 'static {
    type Event: Send + 'static;
    /// Decodes a known event's arguments; an unknown name is an `unknown_event` refusal.
    fn parse(event: &str, args: Vec<Json>) -> Result<Self::Event, SignalError>;
    /// Decodes an event from its wire text `["event", args...]`. By default the arguments are
    /// parsed into JSON values for [`Service::parse`]; a namespace that relays payloads
    /// untouched reads the text itself.
    fn decode(event: &str, text: &str) -> Result<Self::Event, SignalError> {
        Self::parse(event, json_args(event, text)?)
    }
    /// The namespace's own cap on its sockets, if it has one (beyond `server.max_connections`).
    fn seats(&self) -> Option<&Seats> {
        None
    }
    /// Runs one socket's session to its end, cleanup included.
    fn run(self: Arc<Self>, conn: Conn<Self::Event>) -> BoxFuture<'static, ()>;
    fn ctx(&self) -> &Arc<Ctx>;
}

/// One decoded event waiting for its session, with the client's ack callback if it asked.
pub(crate) struct Inbound<E> {
    pub event: E,
    pub ack: Option<AckSender>,
}

/// The installed connect handler of a namespace.
pub(crate) struct Connector<S>(pub Arc<S>);

impl<S> Clone for Connector<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

/// Marker types for socketioxide's handler traits, implemented here by plain structs.
pub(crate) struct ViaConnector;
pub(crate) struct ViaFront;

type MiddlewareFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), Box<dyn Display + Send>>> + Send + 'a>>;

impl<S: Service> ConnectHandler<socketioxide::adapter::LocalAdapter, ViaConnector>
    for Connector<S>
{
    /// The connect packet is out: the session may greet the socket.
    fn call(&self, s: Arc<Socket>, _auth: Option<Value>) {
        if let Some(session) = s.extensions.get::<Arc<Handle>>() {
            if let Some(start) = lock(&session.start).take() {
                let _ = start.send(());
            }
        }
    }

    fn call_middleware<'a>(
        &'a self,
        s: Arc<Socket>,
        auth: &'a Option<Value>,
    ) -> MiddlewareFuture<'a> {
        let admitted = self.admit(s, auth.as_ref());
        Box::pin(async move { admitted.map_err(|e| Box::new(e) as Box<dyn Display + Send>) })
    }
}

/// Refusal of a namespace connection, sent as `connect_error`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    #[error("server_full: the server has {0} connections, its limit")]
    Full(usize),
    #[error("server_shutdown: the server is shutting down")]
    ShuttingDown,
    #[error("namespace_full: namespace {ns:?} has {max} sockets, its limit ({setting})")]
    NamespaceFull {
        ns: &'static str,
        max: usize,
        setting: &'static str,
    },
}

/// A namespace's cap on its own sockets: one seat per admitted socket, given back when the
/// socket's session has ended.
pub(crate) struct Seats {
    ns: &'static str,
    setting: &'static str,
    max: usize,
    taken: Arc<AtomicUsize>,
    /// A full namespace under a reconnect storm would otherwise write one line per attempt.
    warned: LogThrottle,
}

/// One taken seat; dropping it frees it.
pub(crate) struct Seat(Arc<AtomicUsize>);

impl Seats {
    pub fn new(ns: &'static str, setting: &'static str, max: usize) -> Self {
        Self {
            ns,
            setting,
            max,
            taken: Arc::new(AtomicUsize::new(0)),
            warned: LogThrottle::new(),
        }
    }

    fn take(&self) -> Result<Seat, Refused> {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .map(|_| Seat(self.taken.clone()))
            .map_err(|_| {
                let refused = Refused::NamespaceFull {
                    ns: self.ns,
                    max: self.max,
                    setting: self.setting,
                };
                self.warn(&refused);
                refused
            })
    }

    fn warn(&self, refused: &Refused) {
        if let Some(count) = self.warned.tick(Instant::now()) {
            tracing::warn!(
                ns = self.ns,
                count,
                "connection refused: {refused} (count: refusals since the last such line)"
            );
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Characters of a public id: 16 of 62 alphanumerics, about 95 bits, from the OS's CSPRNG, so
/// one cannot be guessed from the others.
const PUBLIC_ID_LEN: usize = 16;

fn public_id() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::rngs::OsRng, PUBLIC_ID_LEN)
}

impl<S: Service> Connector<S> {
    fn admit(&self, s: Arc<Socket>, auth: Option<&Value>) -> Result<(), Refused> {
        let ctx = self.0.ctx().clone();
        let auth_token = auth_token(auth, ctx.config.signaling.max_message_bytes);
        let client = s
            .req_parts()
            .extensions
            .get::<Arc<crate::admission::SessionTicket>>()
            .map(|t| t.ip());
        if ctx.closing.load(Ordering::Relaxed) {
            return Err(Refused::ShuttingDown);
        }
        let max = ctx.config.server.max_connections;
        let gauge = GaugeGuard::new(&ctx.metrics, |m| &m.sockets);
        if ctx.metrics.sockets.load(Ordering::Relaxed) > max as i64 {
            // One line per interval: a flood of refusals must not become a flood of logs.
            static FULL: LogThrottle = LogThrottle::new();
            if let Some(count) = FULL.tick(Instant::now()) {
                tracing::warn!(
                    ns = s.ns(),
                    max,
                    count,
                    "connection refused: server full (count: refusals since the last such line)"
                );
            }
            return Err(Refused::Full(max));
        }
        let seat = self.0.seats().map(Seats::take).transpose()?;
        let id = public_id();
        let front = Arc::new(Front {
            gate: Mutex::new(Gate::new(&ctx.config.signaling, ctx.clock.now())),
            ctx,
            id: id.clone(),
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let (start_tx, start_rx) = oneshot::channel();
        let (close_tx, close_rx) = oneshot::channel();
        let (done_tx, done_rx) = watch::channel(false);
        let handle = Arc::new(Handle {
            start: Mutex::new(Some(start_tx)),
            close: Mutex::new(Some(close_tx)),
            done: done_rx,
        });
        s.extensions.insert(handle.clone());
        s.on_fallback(Dispatcher::<S> {
            front: front.clone(),
            inbox: tx,
        });
        s.on_disconnect(move || async move { handle.stop().await });
        let conn = Conn {
            socket: SocketRef::from(s),
            id,
            front,
            inbox: rx,
            start: Some(start_rx),
            closed: Some(close_rx),
            done: done_tx,
            gauge: Some(gauge),
            seat,
            client,
            auth_token,
        };
        tokio::spawn(self.0.clone().run(conn));
        Ok(())
    }
}

/// Kept in the socket's extensions: how to start, stop and await its session.
pub(crate) struct Handle {
    start: Mutex<Option<oneshot::Sender<()>>>,
    close: Mutex<Option<oneshot::Sender<()>>>,
    done: watch::Receiver<bool>,
}

impl Handle {
    /// Tells the session to stop and waits until it has cleaned up.
    pub async fn stop(&self) {
        if let Some(close) = lock(&self.close).take() {
            let _ = close.send(());
        }
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }
}

/// The catch-all event handler: runs synchronously in socketioxide's receive path.
struct Dispatcher<S: Service> {
    front: Arc<Front>,
    inbox: mpsc::Sender<Inbound<S::Event>>,
}

impl<S: Service> MessageHandler<socketioxide::adapter::LocalAdapter, ViaFront> for Dispatcher<S> {
    fn call(&self, s: Arc<Socket>, v: Value, ack_id: Option<i64>) {
        self.front.receive::<S>(s, v, ack_id, &self.inbox);
    }
}

/// The synchronous checks in front of a session's queue.
pub(crate) struct Front {
    ctx: Arc<Ctx>,
    gate: Mutex<Gate>,
    /// The socket's public id, for the logs.
    id: String,
}

impl Front {
    fn receive<S: Service>(
        &self,
        s: Arc<Socket>,
        mut v: Value,
        ack_id: Option<i64>,
        inbox: &mpsc::Sender<Inbound<S::Event>>,
    ) {
        let metrics = &self.ctx.metrics;
        inc(&metrics.signaling_events);
        let ack = match ack_id {
            Some(_) => AckSender::from_message_parts(&s, &mut v, &ack_id).ok(),
            None => None,
        };
        let name = Event::from_message_parts(&s, &mut v, &None)
            .map(|e| e.0)
            .unwrap_or_default();
        let socket = SocketRef::from(s);
        let limits = &self.ctx.config.signaling;
        // Bound first: a guard in the match scrutinee would live through the arms.
        let admission = lock(&self.gate).admit(self.ctx.clock.now());
        match admission {
            Admission::Accept => {}
            Admission::Answer => {
                let message = format!(
                    "more than {} events per second (burst {}); further events are dropped",
                    limits.events_per_second, limits.event_burst
                );
                let err = SignalError::new(ErrorCode::RateLimited, &name, message);
                return self.refuse(&socket, err, ack);
            }
            Admission::Drop => {
                inc(&metrics.signaling_dropped);
                return self.strike(&socket);
            }
        }
        let text = match &v {
            Value::Str(text, bins) if bins.as_ref().is_none_or(|b| b.is_empty()) => text,
            _ => {
                let err = SignalError::bad_request(&name, "binary payloads are not accepted");
                return self.refuse(&socket, err, ack);
            }
        };
        // The payload as it came on the wire: `["event", args...]`.
        if text.len() > limits.max_message_bytes {
            let message = format!(
                "payload is {} bytes, the limit is {}",
                text.len(),
                limits.max_message_bytes
            );
            let err = SignalError::new(ErrorCode::PayloadTooLarge, &name, message);
            return self.refuse(&socket, err, ack);
        }
        match S::decode(&name, text.as_str()) {
            Ok(event) => match inbox.try_send(Inbound { event, ack }) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    inc(&metrics.signaling_dropped);
                    self.strike(&socket);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            },
            Err(err) => self.refuse(&socket, err, ack),
        }
    }

    /// Answers a refused event: one `error` event, and the ack (if asked) carrying it too.
    pub fn refuse(&self, socket: &SocketRef, err: SignalError, ack: Option<AckSender>) {
        self.answer(socket, err, ack);
        self.strike(socket);
    }

    /// [`Front::refuse`] without a strike: for refusals that are no fault of the client (the
    /// server is busy, a room's shared budget is spent).
    pub fn answer(&self, socket: &SocketRef, err: SignalError, ack: Option<AckSender>) {
        inc(&self.ctx.metrics.signaling_refused);
        tracing::debug!(id = %self.id, ns = socket.ns(), code = ?err.code, event = %err.event, message = %err.message, "event refused");
        let _ = socket.emit("error", &err);
        if let Some(ack) = ack {
            let _ = ack.send(&AckError { error: &err });
        }
    }

    fn strike(&self, socket: &SocketRef) {
        if lock(&self.gate).strike(self.ctx.clock.now()) {
            tracing::warn!(id = %self.id, ns = socket.ns(), "too many refused events: disconnecting");
            let _ = socket.clone().disconnect();
        }
    }
}

/// The `token` string of a Socket.IO `auth` payload `{token: "..."}`. A payload bigger than an
/// event may be is not read (a token that long would be refused anyway).
fn auth_token(auth: Option<&Value>, max: usize) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Auth {
        token: Option<String>,
    }
    let Some(Value::Str(text, _)) = auth else {
        return None;
    };
    if text.len() > max {
        return None;
    }
    serde_json::from_str::<Auth>(text.as_str()).ok()?.token
}

/// The arguments of an event from its wire text `["event", args...]`, as JSON values.
pub(crate) fn json_args(event: &str, text: &str) -> Result<Vec<Json>, SignalError> {
    match serde_json::from_str::<Vec<Json>>(text) {
        Ok(mut args) if !args.is_empty() => {
            args.remove(0);
            Ok(args)
        }
        _ => Err(SignalError::bad_request(
            event,
            "payload is not a JSON event array",
        )),
    }
}

/// A session's view of its socket: the events in order, and the ways to answer.
pub(crate) struct Conn<E> {
    pub socket: SocketRef,
    /// The public id (see the module doc): what other users see and address.
    id: String,
    front: Arc<Front>,
    inbox: mpsc::Receiver<Inbound<E>>,
    start: Option<oneshot::Receiver<()>>,
    closed: Option<oneshot::Receiver<()>>,
    done: watch::Sender<bool>,
    gauge: Option<GaugeGuard>,
    seat: Option<Seat>,
    /// The client's address (as admitted: behind a trusted proxy, the one it names).
    pub client: Option<std::net::IpAddr>,
    /// The `token` of the Socket.IO `auth` payload, if the client sent one.
    pub auth_token: Option<String>,
}

impl<E> Conn<E> {
    /// The socket's public id, never its Engine.IO session id.
    pub fn id(&self) -> String {
        self.id.clone()
    }

    /// Waits until the connect packet is out. False if the socket went away first.
    pub async fn started(&mut self) -> bool {
        let (Some(start), Some(closed)) = (self.start.take(), self.closed.as_mut()) else {
            return false;
        };
        tokio::select! {
            r = start => r.is_ok(),
            _ = closed => { self.closed = None; false }
            _ = tokio::time::sleep(START_TIMEOUT) => false,
        }
    }

    /// The next event, or `None` once the socket is disconnected.
    pub async fn next(&mut self) -> Option<Inbound<E>> {
        let closed = self.closed.as_mut()?;
        tokio::select! {
            biased;
            _ = closed => { self.closed = None; None }
            work = self.inbox.recv() => work,
        }
    }

    pub fn refuse(&self, err: SignalError, ack: Option<AckSender>) {
        self.front.refuse(&self.socket, err, ack);
    }

    /// A refusal without a strike (see [`Front::answer`]).
    pub fn answer(&self, err: SignalError, ack: Option<AckSender>) {
        self.front.answer(&self.socket, err, ack);
    }

    /// A handle to answer this socket's events from another task.
    pub fn replier(&self) -> Replier {
        Replier {
            socket: self.socket.clone(),
            front: self.front.clone(),
        }
    }

    /// Acknowledges a handled event, when the client asked for it.
    pub fn reply<T: Serialize + ?Sized>(ack: Option<AckSender>, value: &T) {
        if let Some(ack) = ack {
            let _ = ack.send(value);
        }
    }

    /// An empty acknowledgement `{}`.
    pub fn ok(ack: Option<AckSender>) {
        Self::reply(ack, &serde_json::json!({}));
    }
}

/// Answers events of one socket from a helper task (the member's media worker).
#[derive(Clone)]
pub(crate) struct Replier {
    pub socket: SocketRef,
    front: Arc<Front>,
}

impl Replier {
    pub fn refuse(&self, err: SignalError, ack: Option<AckSender>) {
        self.front.refuse(&self.socket, err, ack);
    }

    pub fn answer(&self, err: SignalError, ack: Option<AckSender>) {
        self.front.answer(&self.socket, err, ack);
    }
}

impl<E> Drop for Conn<E> {
    fn drop(&mut self) {
        // The seat, then the gauges, so whoever waits for `done` (or sees the socket gauge
        // drop) finds them settled.
        self.seat.take();
        self.gauge.take();
        let _ = self.done.send(true);
    }
}

/// Queues `error {code: "server_shutdown"}` and a namespace disconnect on `socket`; returns its
/// session handle to await.
pub(crate) fn shut(socket: &SocketRef) -> Option<Arc<Handle>> {
    let err = SignalError::new(ErrorCode::ServerShutdown, "", "the server is shutting down");
    let _ = socket.emit("error", &err);
    let handle = socket.extensions.get::<Arc<Handle>>();
    let _ = socket.clone().disconnect();
    handle
}
