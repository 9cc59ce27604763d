//! The embedded TURN relay: TURN over TCP on the HTTP port, relaying to this server's media
//! port and nowhere else, so one TCP and one UDP port carry everything and a client whose UDP
//! is blocked still gets media.
//!
//! The accept loop ([`crate::conntrack::TrackedAcceptor`]) peeks at a new connection's first
//! bytes: a STUN message (top bits `00`, magic cookie at bytes 4..8) is handed to
//! [`Relay::serve`]; anything else (an HTTP method, a TLS ClientHello) goes to HTTP as before.
//! Each connection gets its own `turn` crate server over a [`framing::TcpConn`] (one
//! allocation per connection, ended with it); credentials are per participant, TURN REST
//! scheme, with a secret made at start-up that never leaves the process.

pub mod framing;
pub mod peers;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use webrtc::turn::auth::{generate_auth_key, AuthHandler};
use webrtc::turn::server::config::{ConnConfig, ServerConfig};
use webrtc::turn::server::Server;

use crate::admission::TcpTicket;
use crate::config::Secret;
use crate::metrics::{GaugeGuard, Metrics};
use crate::turn::credentials;
use framing::TcpConn;
use peers::{PeerFilter, SfuOnlyRelays};

const REALM: &str = "sfu-lite";
/// Between two messages on a connection: longer than the default allocation lifetime
/// (10 minutes), so a client that only refreshes is never cut.
const IDLE_TIMEOUT: Duration = Duration::from_secs(660);

/// What a connection's first bytes say it is.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstBytes {
    Turn,
    Other,
    /// Too few bytes to tell yet.
    NeedMore,
}

/// Tells TURN from HTTP and TLS. HTTP starts with an ASCII method, TLS with 0x16; a TURN
/// client's first message is a STUN request: first byte 0x00 or 0x01, cookie at 4..8.
pub fn classify(bytes: &[u8]) -> FirstBytes {
    match bytes.first() {
        None => FirstBytes::NeedMore,
        Some(b) if *b > 0x01 => FirstBytes::Other,
        Some(_) if bytes.len() < 8 => FirstBytes::NeedMore,
        Some(_) if bytes[4..8] == 0x2112_A442u32.to_be_bytes() => FirstBytes::Turn,
        Some(_) => FirstBytes::Other,
    }
}

/// Waits for enough of a new connection's first bytes to tell TURN from the rest, without
/// consuming them. `NeedMore` only when the client closed first.
pub async fn sniff(stream: &tokio::net::TcpStream) -> std::io::Result<FirstBytes> {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let mut buf = [0u8; 8];
    stream
        .async_io(tokio::io::Interest::READABLE, || {
            // SAFETY: recv writes at most `buf.len()` bytes into `buf`; MSG_PEEK leaves them
            // queued for whoever reads the connection next.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK) };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = n as usize;
            match classify(&buf[..n]) {
                // Not all there yet: WouldBlock waits for the next arrival (edge-triggered).
                FirstBytes::NeedMore if n > 0 => Err(std::io::ErrorKind::WouldBlock.into()),
                verdict => Ok(verdict),
            }
        })
        .await
}

/// The embedded relay. Cheap to share; [`Relay::close`] ends every connection.
pub struct Relay {
    secret: Secret,
    filter: Arc<PeerFilter>,
    first_timeout: Duration,
    metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// `media` is the SFU's muxed UDP address; `first_timeout` how long a new connection may
    /// take to send its first message.
    pub fn new(
        media: SocketAddr,
        public_ips: &[IpAddr],
        first_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        use rand::distributions::{Alphanumeric, DistString};
        Arc::new(Self {
            secret: Secret(Alphanumeric.sample_string(&mut rand::rngs::OsRng, 32)),
            filter: Arc::new(PeerFilter::new(media, public_ips)),
            first_timeout,
            metrics,
            shutdown: watch::channel(false).0,
        })
    }

    /// The secret the join acknowledgement's credentials for this relay are made with.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// Serves one accepted TURN connection in the background, until either side ends it.
    pub fn serve(self: &Arc<Self>, stream: tokio::net::TcpStream, ticket: TcpTicket) {
        let relay = self.clone();
        tokio::spawn(async move {
            let _ticket = ticket;
            let _gauge = GaugeGuard::new(&relay.metrics, |m| &m.relay_connections);
            if let Err(e) = relay.run(stream).await {
                tracing::debug!(error = %e, "embedded TURN relay connection ended");
            }
        });
    }

    async fn run(&self, stream: tokio::net::TcpStream) -> Result<(), webrtc::turn::Error> {
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(TcpConn::new(
            stream,
            self.filter.clone(),
            self.first_timeout,
            IDLE_TIMEOUT,
        )?);
        let mut closed = conn.closed();
        let server = Server::new(ServerConfig {
            conn_configs: vec![ConnConfig {
                conn: conn.clone(),
                relay_addr_generator: Box::new(SfuOnlyRelays {
                    filter: self.filter.clone(),
                }),
            }],
            realm: REALM.into(),
            auth_handler: Arc::new(RestAuth(self.secret.clone())),
            channel_bind_timeout: Duration::ZERO,
            alloc_close_notify: None,
        })
        .await?;
        let mut shutdown = self.shutdown.subscribe();
        tokio::select! {
            _ = closed.wait_for(|c| *c) => {}
            _ = shutdown.wait_for(|s| *s) => conn.end(),
        }
        // The server's read loop has seen the end (or will at its next read) and closes the
        // allocation and its relay socket; this ends its command task.
        server.close().await
    }

    /// Ends every relay connection.
    pub fn close(&self) {
        self.shutdown.send_replace(true);
    }
}

/// Checks TURN REST credentials made with the relay's secret.
struct RestAuth(Secret);

impl AuthHandler for RestAuth {
    fn auth_handle(
        &self,
        username: &str,
        realm: &str,
        _src: SocketAddr,
    ) -> Result<Vec<u8>, webrtc::turn::Error> {
        if !credentials::is_current(username, SystemTime::now()) {
            return Err(webrtc::turn::Error::Other(
                "expired TURN credentials".into(),
            ));
        }
        let password = credentials::password(self.0 .0.as_bytes(), username);
        Ok(generate_auth_key(username, realm, &password))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_auth_refuses_an_expired_username_even_with_its_right_password() {
        let auth = RestAuth(Secret("k".into()));
        let src: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let later = SystemTime::now() + Duration::from_secs(60);
        let fresh = credentials::issue(b"k", "p", later, Duration::ZERO);
        let key = auth.auth_handle(&fresh.username, REALM, src).unwrap();
        assert_eq!(
            key,
            generate_auth_key(&fresh.username, REALM, &fresh.password)
        );
        let old = credentials::issue(b"k", "p", SystemTime::UNIX_EPOCH, Duration::from_secs(60));
        assert!(auth.auth_handle(&old.username, REALM, src).is_err());
    }

    #[test]
    fn turn_is_told_from_http_and_tls_by_its_first_bytes() {
        let stun = [0x00, 0x03, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42, 0, 0];
        assert_eq!(classify(&stun), FirstBytes::Turn);
        assert_eq!(classify(&stun[..5]), FirstBytes::NeedMore);
        assert_eq!(classify(b""), FirstBytes::NeedMore);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), FirstBytes::Other);
        assert_eq!(classify(&[0x16, 0x03, 0x01]), FirstBytes::Other);
        assert_eq!(classify(&[0x00, 0x01, 0, 0, 1, 2, 3, 4]), FirstBytes::Other);
    }
}
