//! Which client connections are busy, so shutdown can wait until clients have hung up.
//!
//! A connection is *busy* while a request on it is being answered (a long-poll counts) or once
//! it has been upgraded to a WebSocket, until it closes. Idle keep-alive connections are not:
//! browsers keep those open for minutes, and the HTTP server's graceful shutdown closes them.
//!
//! Why here and not in the HTTP or Socket.IO layer: an upgraded WebSocket leaves hyper's
//! bookkeeping, and the Socket.IO layer does not say when a transport has written its last
//! packet. The accepted stream ([`Tracked`]) lives inside the upgraded WebSocket too, so its
//! drop is the hang-up; the per-connection service ([`Activity`]) sees requests and upgrades.
//!
//! The same two halves enforce the per-connection deadlines, since only together do they know
//! what state a connection is in:
//! - *idle*: no request in flight and not a WebSocket. It must send a byte within
//!   `idle_timeout` of becoming idle, and its request's headers within `header_timeout` of
//!   that first byte (slowloris), or the stream reads as failed and hyper drops it.
//! - *write stall*: a write that stays blocked (the client stopped reading, its TCP window is
//!   zero) for `write_timeout` fails, and so does everything on that stream after. engineioxide's
//!   WebSocket writer waits on a blocked write while holding the session's queue, and closing
//!   the session waits for that queue: without this a client that stops reading is never
//!   disconnected, and its room never hears it left.
//!
//! Admission of the connection itself (total and per-address caps) is [`crate::admission`]'s.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::http;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::admission::{Admission, TcpTicket};
use crate::sync::lock;
use crate::turn::relay::{self, FirstBytes, Relay};

/// The count of busy connections, shared by every connection and whoever waits for zero.
#[derive(Clone)]
pub struct Connections(Arc<watch::Sender<usize>>);

impl Default for Connections {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl Connections {
    /// Connections busy right now.
    pub fn busy(&self) -> usize {
        *self.0.borrow()
    }

    /// Resolves once no connection is busy.
    pub async fn all_idle(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    fn add(&self) {
        self.0.send_modify(|n| *n += 1);
    }

    fn sub(&self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }

    /// One unit of "busy" for as long as the guard lives.
    fn hold(&self) -> Busy {
        self.add();
        Busy(self.clone())
    }
}

struct Busy(Connections);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.sub();
    }
}

/// The deadlines every connection is held to (see the module comment).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub idle: Duration,
    pub header: Duration,
    pub write: Duration,
}

/// What the stream and the service of one connection share.
struct Conn {
    conns: Connections,
    timeouts: Timeouts,
    /// Set when a response switched protocols: busy until the stream is dropped.
    upgraded: AtomicBool,
    /// Requests being answered on this connection.
    active: AtomicUsize,
    /// When the connection last became idle, and when the next request's first byte came.
    idle: Mutex<Idle>,
    /// Set once a deadline passed: every later read and write fails.
    dead: AtomicBool,
    /// Holds the connection's place in the admission counts until both halves are gone.
    _ticket: Option<TcpTicket>,
}

struct Idle {
    since: Instant,
    first_byte: Option<Instant>,
    /// The reader parked while a request was in flight (hyper reads ahead to notice a hang-up):
    /// woken when the request ends, so the idle deadline gets armed.
    reader: Option<Waker>,
}

impl Conn {
    /// When the idle connection must have made progress; `None` while it is busy.
    fn read_deadline(&self) -> Option<Instant> {
        if self.upgraded.load(Ordering::Acquire) || self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle = lock(&self.idle);
        Some(match idle.first_byte {
            Some(at) => at + self.timeouts.header,
            None => idle.since + self.timeouts.idle,
        })
    }

    fn saw_bytes(&self) {
        if self.read_deadline().is_some() {
            lock(&self.idle).first_byte.get_or_insert_with(Instant::now);
        }
    }

    fn request_started(&self) {
        self.active.fetch_add(1, Ordering::AcqRel);
        lock(&self.idle).first_byte = None;
    }

    fn request_done(&self) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            let reader = {
                let mut idle = lock(&self.idle);
                idle.since = Instant::now();
                idle.first_byte = None;
                idle.reader.take()
            };
            if let Some(reader) = reader {
                reader.wake();
            }
        }
    }

    /// Remembers who to wake when the request in flight ends (not needed for a WebSocket).
    fn park_reader(&self, waker: &Waker) {
        if self.upgraded.load(Ordering::Acquire) {
            return;
        }
        let mut idle = lock(&self.idle);
        if !idle.reader.as_ref().is_some_and(|w| w.will_wake(waker)) {
            idle.reader = Some(waker.clone());
        }
        // The request may have ended between the caller's check and this store, and
        // `request_done` then found no reader to wake: wake it now so it arms its deadline.
        if self.active.load(Ordering::Acquire) == 0 {
            waker.wake_by_ref();
        }
    }

    fn kill(&self, why: &'static str) -> io::Error {
        if !self.dead.swap(true, Ordering::AcqRel) {
            tracing::debug!(why, "closing a client connection");
        }
        io::Error::new(io::ErrorKind::TimedOut, why)
    }

    fn check_alive(&self) -> io::Result<()> {
        if self.dead.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection timed out",
            ));
        }
        Ok(())
    }
}

/// An accepted stream; dropping it ends its WebSocket's busy unit, if it has one.
pub struct Tracked<T> {
    io: T,
    conn: Arc<Conn>,
    /// The idle/header deadline, re-aimed at [`Conn::read_deadline`] on every read.
    read_timer: Pin<Box<Sleep>>,
    /// Armed while a write is blocked.
    write_timer: Pin<Box<Sleep>>,
    write_blocked: bool,
}

impl<T> Tracked<T> {
    /// Passes a write-side poll through, failing it once it has been blocked too long.
    fn guard_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut T, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if let Err(e) = self.conn.check_alive() {
            return Poll::Ready(Err(e));
        }
        match poll(&mut self.io, cx) {
            Poll::Pending => {
                if !self.write_blocked {
                    self.write_blocked = true;
                    let deadline = Instant::now() + self.conn.timeouts.write;
                    self.write_timer.as_mut().reset(deadline);
                }
                match self.write_timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(self
                        .conn
                        .kill("writes blocked: the client stopped reading"))),
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.write_blocked = false;
                ready
            }
        }
    }
}

impl<T> Drop for Tracked<T> {
    fn drop(&mut self) {
        if self.conn.upgraded.swap(false, Ordering::AcqRel) {
            self.conn.conns.sub();
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Err(e) = this.conn.check_alive() {
            return Poll::Ready(Err(e));
        }
        match this.conn.read_deadline() {
            Some(deadline) => {
                if this.read_timer.deadline() != deadline {
                    this.read_timer.as_mut().reset(deadline);
                }
                if this.read_timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(this
                        .conn
                        .kill("idle or slow request headers: timed out")));
                }
            }
            None => this.conn.park_reader(cx.waker()),
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.saw_bytes();
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.guard_write(cx, |io, cx| Pin::new(io).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.guard_write(cx, |io, cx| Pin::new(io).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = self.guard_write(cx, |io, cx| Pin::new(io).poll_flush(cx));
        // A response just went out. Arm the idle deadline here too, with this task's waker: a
        // connection whose reader is parked elsewhere must still be closed when it passes.
        if res.is_ready() {
            let this = &mut *self;
            if let Some(deadline) = this.conn.read_deadline() {
                if this.read_timer.deadline() != deadline {
                    this.read_timer.as_mut().reset(deadline);
                }
                let _ = this.read_timer.as_mut().poll(cx);
            }
        }
        res
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.conn.dead.load(Ordering::Acquire) {
            // Nothing more can be sent; the socket closes when the stream is dropped.
            return Poll::Ready(Ok(()));
        }
        self.guard_write(cx, |io, cx| Pin::new(io).poll_shutdown(cx))
    }
}

/// The per-connection service wrapper: busy while a request is answered, and from a
/// `101 Switching Protocols` on until the stream closes.
#[derive(Clone)]
pub struct Activity<S> {
    inner: S,
    conn: Arc<Conn>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, Req, B> tower::Service<http::Request<Req>> for Activity<S>
where
    S: tower::Service<http::Request<Req>, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Req>) -> Self::Future {
        let busy = self.conn.conns.hold();
        self.conn.request_started();
        let active = RequestDone(self.conn.clone());
        let conn = self.conn.clone();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let res = answer.await;
            if matches!(&res, Ok(r) if r.status() == http::StatusCode::SWITCHING_PROTOCOLS)
                && !conn.upgraded.swap(true, Ordering::AcqRel)
            {
                conn.conns.add();
            }
            drop(active);
            drop(busy);
            res
        })
    }
}

/// Ends a request's activity however its future ends (answered or dropped).
struct RequestDone(Arc<Conn>);

impl Drop for RequestDone {
    fn drop(&mut self) {
        self.0.request_done();
    }
}

/// An `axum_server` acceptor that admits and tracks each connection (the innermost one, under
/// TLS, so the deadlines also cover a stalled TLS handshake). With the embedded TURN relay on,
/// it first tells TURN from HTTP by the connection's first bytes and hands TURN over.
#[derive(Clone)]
pub struct TrackedAcceptor {
    pub conns: Connections,
    pub admission: Arc<Admission>,
    pub timeouts: Timeouts,
    pub relay: Option<Arc<Relay>>,
}

impl<S: Send + 'static> axum_server::accept::Accept<tokio::net::TcpStream, S> for TrackedAcceptor {
    type Stream = Tracked<tokio::net::TcpStream>;
    type Service = Activity<S>;
    type Future = BoxFuture<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        // Refused before any TLS or HTTP work: dropping the stream closes it.
        let ticket = match stream.peer_addr() {
            Ok(peer) => match self.admission.open_tcp(peer.ip()) {
                Ok(ticket) => ticket,
                Err(refusal) => {
                    return Box::pin(std::future::ready(Err(io::Error::other(
                        refusal.to_string(),
                    ))))
                }
            },
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        // Signaling is small messages each way: without this, Nagle holds a frame's tail until
        // the peer's delayed ACK (40 ms on Linux) whenever one is still unacknowledged.
        let _ = stream.set_nodelay(true);
        let (conns, timeouts) = (self.conns.clone(), self.timeouts);
        let Some(relay) = self.relay.clone() else {
            let tracked = Self::track(&conns, timeouts, Some(ticket), stream, service);
            return Box::pin(std::future::ready(Ok(tracked)));
        };
        Box::pin(async move {
            let first = tokio::time::timeout(timeouts.idle, relay::sniff(&stream)).await;
            match first {
                Ok(Ok(FirstBytes::Other)) => {
                    Ok(Self::track(&conns, timeouts, Some(ticket), stream, service))
                }
                Ok(Ok(FirstBytes::Turn)) => {
                    relay.serve(stream, ticket);
                    Err(io::Error::other("handed to the embedded TURN relay"))
                }
                Ok(Ok(FirstBytes::NeedMore)) => Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(io::ErrorKind::TimedOut.into()),
            }
        })
    }
}

impl TrackedAcceptor {
    fn track<I, S>(
        conns: &Connections,
        timeouts: Timeouts,
        ticket: Option<TcpTicket>,
        stream: I,
        service: S,
    ) -> (Tracked<I>, Activity<S>) {
        let now = Instant::now();
        let conn = Arc::new(Conn {
            conns: conns.clone(),
            timeouts,
            upgraded: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            idle: Mutex::new(Idle {
                since: now,
                first_byte: None,
                reader: None,
            }),
            dead: AtomicBool::new(false),
            _ticket: ticket,
        });
        (
            Tracked {
                io: stream,
                conn: conn.clone(),
                read_timer: Box::pin(tokio::time::sleep_until(now + timeouts.idle)),
                write_timer: Box::pin(tokio::time::sleep_until(now + timeouts.write)),
                write_blocked: false,
            },
            Activity {
                inner: service,
                conn,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tower::{service_fn, Service, ServiceExt};

    fn answer(
        status: u16,
    ) -> impl Service<
        http::Request<()>,
        Response = http::Response<()>,
        Error = std::convert::Infallible,
        Future = impl Future + Send + 'static,
    > + Clone {
        service_fn(move |_req: http::Request<()>| async move {
            Ok(http::Response::builder().status(status).body(()).unwrap())
        })
    }

    // Real time (tokio's test clock is not built in): short deadlines, checked from below.
    const TIMEOUTS: Timeouts = Timeouts {
        idle: Duration::from_millis(300),
        header: Duration::from_millis(200),
        write: Duration::from_millis(250),
    };
    /// Far above every deadline, for "not closed".
    const LONG: Duration = Duration::from_secs(2);

    fn track<I, S>(conns: &Connections, io: I, svc: S) -> (Tracked<I>, Activity<S>) {
        TrackedAcceptor::track(conns, TIMEOUTS, None, io, svc)
    }

    #[tokio::test]
    async fn a_request_is_busy_until_answered_and_a_websocket_until_closed() {
        let conns = Connections::default();

        let (stream, mut svc) = track(&conns, (), answer(200));
        let pending = svc.ready().await.unwrap().call(http::Request::new(()));
        assert_eq!(conns.busy(), 1, "a request in flight is busy");
        pending.await.unwrap();
        assert_eq!(conns.busy(), 0, "an idle keep-alive connection is not");
        drop(stream);

        let (stream, mut svc) = track(&conns, (), answer(101));
        svc.ready()
            .await
            .unwrap()
            .call(http::Request::new(()))
            .await
            .unwrap();
        assert_eq!(conns.busy(), 1, "an upgraded connection is busy");
        let waiter = tokio::spawn({
            let conns = conns.clone();
            async move { conns.all_idle().await }
        });
        drop(stream);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("all_idle resolves once the WebSocket is gone")
            .unwrap();
    }

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_connection_that_never_sends_a_request_is_closed_after_the_idle_timeout() {
        let conns = Connections::default();
        let (_client, server) = tokio::io::duplex(1024);
        let (mut stream, _svc) = track(&conns, server, answer(200));
        let started = Instant::now();
        let mut buf = [0u8; 16];
        let err = stream.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= TIMEOUTS.idle);
    }

    #[tokio::test]
    async fn headers_trickled_slower_than_the_header_timeout_are_cut() {
        let conns = Connections::default();
        let (mut client, server) = tokio::io::duplex(1024);
        let (mut stream, _svc) = track(&conns, server, answer(200));
        let mut buf = [0u8; 16];
        let first = Instant::now();
        // One byte now and then keeps the connection reading, never finishing the headers.
        let trickle = tokio::spawn(async move {
            loop {
                if client.write_all(b"G").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let err = loop {
            match stream.read(&mut buf).await {
                Ok(n) => assert!(n > 0),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let took = first.elapsed();
        assert!(took >= TIMEOUTS.header && took < LONG, "{took:?}");
        drop(stream);
        trickle.await.unwrap();
    }

    #[tokio::test]
    async fn a_write_blocked_past_the_write_timeout_fails_and_the_stream_stays_dead() {
        let conns = Connections::default();
        let (_client, server) = tokio::io::duplex(64);
        let (mut stream, _svc) = track(&conns, server, answer(101));
        let started = Instant::now();
        // The client never reads: the pipe fills, then the write blocks until the deadline.
        let err = stream.write_all(&[0u8; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= TIMEOUTS.write);
        let mut buf = [0u8; 4];
        assert!(stream.read(&mut buf).await.is_err(), "reads fail too");
        assert!(stream.write(b"x").await.is_err());
    }

    #[tokio::test]
    async fn no_deadline_while_a_request_is_answered() {
        let conns = Connections::default();
        let (_client, server) = tokio::io::duplex(1024);
        let slow = service_fn(|_req: http::Request<()>| async {
            tokio::time::sleep(LONG * 2).await;
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        });
        let (mut stream, mut svc) = track(&conns, server, slow);
        let pending = svc.ready().await.unwrap().call(http::Request::new(()));
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(LONG, stream.read(&mut buf)).await;
        assert!(
            read.is_err(),
            "a long poll keeps its connection past the idle timeout"
        );
        pending.await.unwrap();
    }
}
