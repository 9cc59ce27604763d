//! Media UDP sockets on which a failed send is a lost packet, not a dead connection.
//!
//! webrtc-rs passes a `sendto` error up the stack: during the DTLS handshake it ends the
//! connection ("Failed to start manager dtls: ... Operation not permitted"). But the errors a
//! datagram socket reports are about one packet: a firewall rule that drops it (EPERM), a full
//! device queue (ENOBUFS), a full socket buffer (EAGAIN), an ICMP error for an earlier packet
//! (ECONNREFUSED and friends). [`LossySocket`] counts them (`sfu_media_send_errors_total`) and
//! reports the packet as sent, so the layers above see loss, which they are built to handle
//! (retransmitted handshakes, NACK, PLI).
//!
//! Every media socket of the server and of the headless client goes through it:
//! - one muxed port: `UDPMuxDefault` over a [`LossySocket`] (see `transport`);
//! - a port range, and the headless client: [`SocketPerConnection`], a `UDPMux` that binds one
//!   [`LossySocket`] for its connection when ICE first asks and closes it when that agent
//!   closes. webrtc-ice's own `EphemeralUDP` sockets are made and read inside the agent and
//!   cannot be wrapped, which is why the port range is implemented here instead.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::net::UdpSocket;
use webrtc::ice::udp_mux::{UDPMux, UDPMuxDefault, UDPMuxParams};
use webrtc::util::{Conn, Error as UtilError};

use crate::metrics::{inc, Metrics};

/// Whether a datagram socket error concerns one packet only (the socket stays usable).
pub fn is_transient(e: &io::Error) -> bool {
    if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted {
        return true;
    }
    matches!(
        e.raw_os_error(),
        Some(
            libc::EPERM
                | libc::EACCES
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EAGAIN
                | libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENETDOWN
        )
    )
}

/// A UDP socket whose transient send errors count as loss (see the module docs).
pub struct LossySocket {
    socket: UdpSocket,
    metrics: Arc<Metrics>,
}

impl LossySocket {
    pub fn new(socket: UdpSocket, metrics: Arc<Metrics>) -> Self {
        Self { socket, metrics }
    }

    fn sent_or_lost(&self, len: usize, r: io::Result<usize>) -> webrtc::util::Result<usize> {
        match r {
            Ok(n) => Ok(n),
            Err(e) if is_transient(&e) => {
                inc(&self.metrics.media_send_errors);
                tracing::trace!(error = %e, "media send failed; counted as a lost packet");
                Ok(len)
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl Conn for LossySocket {
    async fn connect(&self, addr: SocketAddr) -> webrtc::util::Result<()> {
        Ok(self.socket.connect(addr).await?)
    }

    async fn recv(&self, buf: &mut [u8]) -> webrtc::util::Result<usize> {
        loop {
            match self.socket.recv(buf).await {
                Err(e) if is_transient(&e) => continue,
                r => return Ok(r?),
            }
        }
    }

    /// webrtc-ice's mux reader stops for good on any error but a timeout, so an ICMP error
    /// reported here for an earlier send must not reach it.
    async fn recv_from(&self, buf: &mut [u8]) -> webrtc::util::Result<(usize, SocketAddr)> {
        loop {
            match self.socket.recv_from(buf).await {
                Err(e) if is_transient(&e) => continue,
                r => return Ok(r?),
            }
        }
    }

    async fn send(&self, buf: &[u8]) -> webrtc::util::Result<usize> {
        let r = self.socket.send(buf).await;
        self.sent_or_lost(buf.len(), r)
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc::util::Result<usize> {
        let r = self.socket.send_to(buf, target).await;
        self.sent_or_lost(buf.len(), r)
    }

    fn local_addr(&self) -> webrtc::util::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> webrtc::util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

/// Binds a [`LossySocket`] on `ip`, on a port of `ports` (inclusive; any port when `None`),
/// starting at a random one so concurrent connections rarely race for the same port.
pub async fn bind_lossy(
    ip: IpAddr,
    ports: Option<(u16, u16)>,
    metrics: &Arc<Metrics>,
) -> io::Result<LossySocket> {
    let wrap = |s| LossySocket::new(s, metrics.clone());
    let Some((lo, hi)) = ports else {
        return UdpSocket::bind(SocketAddr::new(ip, 0)).await.map(wrap);
    };
    let span = u32::from(hi - lo) + 1;
    let first = rand::random::<u32>() % span;
    for i in 0..span {
        let port = lo + ((first + i) % span) as u16;
        match UdpSocket::bind(SocketAddr::new(ip, port)).await {
            Ok(s) => return Ok(wrap(s)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("every UDP port in {lo}-{hi} is in use"),
    ))
}

/// `UDPMuxDefault` made safe for ICE restarts. A restart closes the old ufrag's muxed conn,
/// and webrtc-ice 0.17.2 clears that conn's addresses *before* its mux forgets them
/// (`UDPMuxConnInner::close`, then `remove_conn_by_ufrag` in a spawned task finds none), so
/// the client's address keeps pointing at the closed conn: every check the client sends from
/// the same port with the new ufrag is routed there and dropped, and an ICE-lite agent never
/// sends first to fix the entry. A client that restarts without changing its socket (a
/// blackout, not a network change) never reconnects. [`RestartSafeConn`] removes its ufrag
/// from the mux while the addresses are still known, then closes.
pub struct RestartSafeMux(Arc<UDPMuxDefault>);

impl RestartSafeMux {
    pub fn new(mux: Arc<UDPMuxDefault>) -> Arc<Self> {
        Arc::new(Self(mux))
    }
}

#[async_trait]
impl UDPMux for RestartSafeMux {
    async fn close(&self) -> Result<(), UtilError> {
        self.0.close().await
    }

    async fn get_conn(
        self: Arc<Self>,
        ufrag: &str,
    ) -> Result<Arc<dyn Conn + Send + Sync>, UtilError> {
        restart_safe(&self.0, ufrag).await
    }

    async fn remove_conn_by_ufrag(&self, ufrag: &str) {
        self.0.remove_conn_by_ufrag(ufrag).await
    }
}

async fn restart_safe(
    mux: &Arc<UDPMuxDefault>,
    ufrag: &str,
) -> Result<Arc<dyn Conn + Send + Sync>, UtilError> {
    let inner = mux.clone().get_conn(ufrag).await?;
    Ok(Arc::new(RestartSafeConn {
        inner,
        mux: Arc::downgrade(mux),
        ufrag: ufrag.to_string(),
    }))
}

/// One ufrag's muxed conn that unregisters its addresses before it closes (see
/// [`RestartSafeMux`]).
struct RestartSafeConn {
    inner: Arc<dyn Conn + Send + Sync>,
    mux: std::sync::Weak<UDPMuxDefault>,
    ufrag: String,
}

#[async_trait]
impl Conn for RestartSafeConn {
    async fn connect(&self, addr: SocketAddr) -> webrtc::util::Result<()> {
        self.inner.connect(addr).await
    }
    async fn recv(&self, buf: &mut [u8]) -> webrtc::util::Result<usize> {
        self.inner.recv(buf).await
    }
    async fn recv_from(&self, buf: &mut [u8]) -> webrtc::util::Result<(usize, SocketAddr)> {
        self.inner.recv_from(buf).await
    }
    async fn send(&self, buf: &[u8]) -> webrtc::util::Result<usize> {
        self.inner.send(buf).await
    }
    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc::util::Result<usize> {
        self.inner.send_to(buf, target).await
    }
    fn local_addr(&self) -> webrtc::util::Result<SocketAddr> {
        self.inner.local_addr()
    }
    fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr()
    }
    async fn close(&self) -> webrtc::util::Result<()> {
        if let Some(mux) = self.mux.upgrade() {
            mux.remove_conn_by_ufrag(&self.ufrag).await;
        }
        self.inner.close().await
    }
    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

enum State {
    Unbound,
    Open(Arc<UDPMuxDefault>),
    Closed,
}

/// One PeerConnection's own UDP socket, as a `UDPMux` webrtc-ice uses like a shared one: bound
/// on the agent's first `get_conn`, closed when the agent closes (its only
/// `remove_conn_by_ufrag` call; an ICE restart asks for a new ufrag on the same socket).
pub struct SocketPerConnection {
    ip: IpAddr,
    ports: Option<(u16, u16)>,
    metrics: Arc<Metrics>,
    state: tokio::sync::Mutex<State>,
}

impl SocketPerConnection {
    pub fn new(ip: IpAddr, ports: Option<(u16, u16)>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            ip,
            ports,
            metrics,
            state: tokio::sync::Mutex::new(State::Unbound),
        })
    }
}

#[async_trait]
impl UDPMux for SocketPerConnection {
    async fn close(&self) -> Result<(), UtilError> {
        let old = std::mem::replace(&mut *self.state.lock().await, State::Closed);
        if let State::Open(mux) = old {
            mux.close().await?;
        }
        Ok(())
    }

    async fn get_conn(
        self: Arc<Self>,
        ufrag: &str,
    ) -> Result<Arc<dyn Conn + Send + Sync>, UtilError> {
        let mux = {
            let mut state = self.state.lock().await;
            match &*state {
                State::Open(mux) => mux.clone(),
                State::Closed => return Err(UtilError::ErrUseClosedNetworkConn),
                State::Unbound => {
                    let socket = bind_lossy(self.ip, self.ports, &self.metrics).await?;
                    let mux = UDPMuxDefault::new(UDPMuxParams::new(socket));
                    *state = State::Open(mux.clone());
                    mux
                }
            }
        };
        restart_safe(&mux, ufrag).await
    }

    async fn remove_conn_by_ufrag(&self, _ufrag: &str) {
        let _ = UDPMux::close(self).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_packet_errors_are_transient_and_others_are_not() {
        for errno in [libc::EPERM, libc::ENOBUFS, libc::EAGAIN, libc::ECONNREFUSED] {
            assert!(
                is_transient(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        assert!(is_transient(&io::ErrorKind::WouldBlock.into()));
        for errno in [libc::EBADF, libc::EINVAL, libc::EMSGSIZE, libc::ENOTSOCK] {
            assert!(
                !is_transient(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
    }

    #[tokio::test]
    async fn a_port_range_binds_inside_it_and_reports_when_full() {
        let metrics = Metrics::new();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let probe = UdpSocket::bind((ip, 0)).await.unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let a = bind_lossy(ip, Some((port, port)), &metrics).await.unwrap();
        assert_eq!(a.local_addr().unwrap().port(), port);
        let err = bind_lossy(ip, Some((port, port)), &metrics)
            .await
            .err()
            .expect("the only port is taken");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
