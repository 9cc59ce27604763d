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

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

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

/// What the stream and the service of one connection share.
struct Conn {
    conns: Connections,
    /// Set when a response switched protocols: busy until the stream is dropped.
    upgraded: AtomicBool,
}

/// An accepted stream; dropping it ends its WebSocket's busy unit, if it has one.
pub struct Tracked<T> {
    io: T,
    conn: Arc<Conn>,
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
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
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
        let conn = self.conn.clone();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let res = answer.await;
            if matches!(&res, Ok(r) if r.status() == http::StatusCode::SWITCHING_PROTOCOLS)
                && !conn.upgraded.swap(true, Ordering::AcqRel)
            {
                conn.conns.add();
            }
            drop(busy);
            res
        })
    }
}

/// An `axum_server` acceptor that tracks each connection (the innermost one, under TLS).
#[derive(Clone)]
pub struct TrackedAcceptor(pub Connections);

impl<S> axum_server::accept::Accept<tokio::net::TcpStream, S> for TrackedAcceptor {
    type Stream = Tracked<tokio::net::TcpStream>;
    type Service = Activity<S>;
    type Future = std::future::Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        // Signaling is small messages each way: without this, Nagle holds a frame's tail until
        // the peer's delayed ACK (40 ms on Linux) whenever one is still unacknowledged.
        let _ = stream.set_nodelay(true);
        std::future::ready(Ok(Self::track(&self.0, stream, service)))
    }
}

impl TrackedAcceptor {
    fn track<I, S>(conns: &Connections, stream: I, service: S) -> (Tracked<I>, Activity<S>) {
        let conn = Arc::new(Conn {
            conns: conns.clone(),
            upgraded: AtomicBool::new(false),
        });
        (
            Tracked {
                io: stream,
                conn: conn.clone(),
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

    #[tokio::test]
    async fn a_request_is_busy_until_answered_and_a_websocket_until_closed() {
        let conns = Connections::default();

        let (stream, mut svc) = TrackedAcceptor::track(&conns, (), answer(200));
        let pending = svc.ready().await.unwrap().call(http::Request::new(()));
        assert_eq!(conns.busy(), 1, "a request in flight is busy");
        pending.await.unwrap();
        assert_eq!(conns.busy(), 0, "an idle keep-alive connection is not");
        drop(stream);

        let (stream, mut svc) = TrackedAcceptor::track(&conns, (), answer(101));
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
}
