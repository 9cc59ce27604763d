//! Who may open what, before any work is done for them: open TCP connections (in all and per
//! client address), Engine.IO sessions (in all, against `server.max_connections`, and per
//! address) and the handshake rate per address.
//!
//! A session is counted from its handshake request on, by a [`SessionTicket`] put into that
//! request's extensions: engineioxide keeps the handshake's request parts inside the session
//! for its whole life, so the ticket is dropped, and the count released, exactly when the
//! session is gone (namespace joined or not, closed, timed out). No socketioxide hook is needed.
//!
//! The client address is the TCP peer, or, when the peer is one of `server.trusted_proxies`,
//! the address that proxy names in `Forwarded` / `X-Forwarded-For`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::{canonical, IpNet, ServerConfig};
use crate::sync::lock;

/// Descriptors kept for media sockets, files and the listener when the TCP cap is automatic.
const FD_RESERVE: u64 = 512;
/// Refusals are logged at most once per this interval, with their count.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why a connection or session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the server has {0} open TCP connections, its limit")]
    TcpFull(usize),
    #[error("the server has {0} sessions, its limit (server.max_connections and some room)")]
    SessionsFull(usize),
    #[error("this address has {0} connections, its limit (server.max_connections_per_address)")]
    AddressFull(usize),
    #[error("this address opens sessions too fast (server.handshakes_per_address_per_second)")]
    TooFast,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Refusal::TcpFull(_) | Refusal::SessionsFull(_) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::AddressFull(_) | Refusal::TooFast => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// The limits, the client-address rule and the live counts; shared by the acceptor and the
/// handshake gate.
pub struct Admission {
    limits: Limits,
    trusted: Vec<IpNet>,
    /// Every count lives here, behind one lock that is never held across an await.
    state: Mutex<Counts>,
    tcp_refused: LogThrottle,
    session_refused: LogThrottle,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    tcp: usize,
    sessions: usize,
    per_address: usize,
    rate: f64,
    burst: f64,
}

#[derive(Default)]
struct Counts {
    tcp: usize,
    sessions: usize,
    /// One entry per address holding a connection or a session; removed with its last one.
    by_address: HashMap<IpAddr, PerAddress>,
}

struct PerAddress {
    tcp: usize,
    sessions: usize,
    /// Handshake tokens left and when they were counted.
    tokens: f64,
    at: Instant,
}

impl Admission {
    /// From the config; `fd_limit` is the process's open-file limit (for the automatic TCP cap).
    pub fn new(config: &ServerConfig, fd_limit: u64) -> Arc<Self> {
        let tcp = match config.max_tcp_connections {
            0 => fd_limit.saturating_sub(FD_RESERVE).max(64) as usize,
            n => n,
        };
        let unlimited = |n: usize| if n == 0 { usize::MAX } else { n };
        // A little room above `max_connections`, so that a client arriving at a full server
        // still gets the namespace's polite `server_full` refusal instead of a bare HTTP 503.
        let sessions = config.max_connections + (config.max_connections / 50).max(8);
        Arc::new(Self {
            limits: Limits {
                tcp,
                sessions,
                per_address: unlimited(config.max_connections_per_address),
                rate: config.handshakes_per_address_per_second as f64,
                burst: config.handshake_burst.max(1) as f64,
            },
            // Validated with the config.
            trusted: config.trusted_proxies().unwrap_or_default(),
            state: Mutex::new(Counts::default()),
            tcp_refused: LogThrottle::default(),
            session_refused: LogThrottle::default(),
        })
    }

    /// The cap on open TCP connections in force.
    pub fn tcp_limit(&self) -> usize {
        self.limits.tcp
    }

    /// The cap on Engine.IO sessions: `server.max_connections` and a little room.
    pub fn session_limit(&self) -> usize {
        self.limits.sessions
    }

    /// Open sessions right now.
    pub fn sessions(&self) -> usize {
        self.lock().sessions
    }

    /// Open TCP connections right now.
    pub fn tcp_connections(&self) -> usize {
        self.lock().tcp
    }

    /// Admits one accepted TCP connection from `peer`. A trusted proxy carries many clients,
    /// so only the total applies to it.
    pub fn open_tcp(self: &Arc<Self>, peer: IpAddr) -> Result<TcpTicket, Refusal> {
        let peer = canonical(peer);
        let per_address = !self.is_trusted(peer);
        let result = {
            let mut counts = self.lock();
            if counts.tcp >= self.limits.tcp {
                Err(Refusal::TcpFull(self.limits.tcp))
            } else {
                let now = Instant::now();
                let burst = self.limits.burst;
                let entry = counts
                    .by_address
                    .entry(peer)
                    .or_insert_with(|| PerAddress::new(burst, now));
                if per_address && entry.tcp >= self.limits.per_address {
                    Err(Refusal::AddressFull(self.limits.per_address))
                } else {
                    entry.tcp += 1;
                    counts.tcp += 1;
                    Ok(())
                }
            }
        };
        match result {
            Ok(()) => Ok(TcpTicket {
                admission: self.clone(),
                ip: peer,
            }),
            Err(refusal) => {
                self.forget_if_unused(peer);
                self.tcp_refused
                    .note(&refusal, peer, "TCP connection refused");
                Err(refusal)
            }
        }
    }

    /// Admits one Engine.IO handshake from `client`.
    pub fn open_session(self: &Arc<Self>, client: IpAddr) -> Result<SessionTicket, Refusal> {
        let client = canonical(client);
        let result = {
            let mut counts = self.lock();
            let now = Instant::now();
            let limits = self.limits;
            if counts.sessions >= limits.sessions {
                Err(Refusal::SessionsFull(limits.sessions))
            } else {
                let entry = counts
                    .by_address
                    .entry(client)
                    .or_insert_with(|| PerAddress::new(limits.burst, now));
                if entry.sessions >= limits.per_address {
                    Err(Refusal::AddressFull(limits.per_address))
                } else if !entry.take_token(&limits, now) {
                    Err(Refusal::TooFast)
                } else {
                    entry.sessions += 1;
                    counts.sessions += 1;
                    Ok(())
                }
            }
        };
        match result {
            Ok(()) => Ok(SessionTicket {
                admission: self.clone(),
                ip: client,
            }),
            Err(refusal) => {
                self.forget_if_unused(client);
                self.session_refused
                    .note(&refusal, client, "Socket.IO handshake refused");
                Err(refusal)
            }
        }
    }

    /// The client's address: `peer`, or what a trusted proxy says in front of it.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        // The chain as the last proxy saw it, client first; walk it from our end and stop at
        // the first hop that is not one of our proxies: everything before it could be forged.
        let chain = forwarded_chain(headers);
        let mut client = peer;
        for hop in chain.iter().rev() {
            client = canonical(*hop);
            if !self.is_trusted(client) {
                break;
            }
        }
        client
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    fn release(&self, ip: IpAddr, tcp: usize, sessions: usize) {
        let mut counts = self.lock();
        counts.tcp -= tcp;
        counts.sessions -= sessions;
        if let Some(entry) = counts.by_address.get_mut(&ip) {
            entry.tcp -= tcp;
            entry.sessions -= sessions;
            if entry.tcp == 0 && entry.sessions == 0 {
                // Its handshake bucket goes too: refilling takes at most as long as it took
                // the address to see all its sessions closed (connect timeout and up).
                counts.by_address.remove(&ip);
            }
        }
    }

    fn forget_if_unused(&self, ip: IpAddr) {
        self.release(ip, 0, 0);
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        crate::sync::lock(&self.state)
    }
}

impl PerAddress {
    fn new(burst: f64, now: Instant) -> Self {
        Self {
            tcp: 0,
            sessions: 0,
            tokens: burst,
            at: now,
        }
    }

    fn take_token(&mut self, limits: &Limits, now: Instant) -> bool {
        if limits.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limits.rate).min(limits.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One admitted TCP connection; dropping it releases the count.
pub struct TcpTicket {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for TcpTicket {
    fn drop(&mut self) {
        self.admission.release(self.ip, 1, 0);
    }
}

/// One admitted Engine.IO session; dropping it releases the count. Travels inside the
/// handshake request's extensions (hence `Arc`, which makes it `Clone` without double counting).
pub struct SessionTicket {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl SessionTicket {
    /// The client address this session was admitted for.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for SessionTicket {
    fn drop(&mut self) {
        self.admission.release(self.ip, 0, 1);
    }
}

/// The client chain named by `Forwarded` (RFC 7239 `for=`), else by `X-Forwarded-For`.
fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let forwarded: Vec<IpAddr> = headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.eq_ignore_ascii_case("for")
                    .then(|| parse_node(value))
                    .flatten()
            })
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(parse_node)
        .collect()
}

/// `192.0.2.1`, `"[2001:db8::1]:4711"`, `192.0.2.1:80`; `unknown` and obfuscated names are not
/// addresses.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    text.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// The axum middleware that admits Engine.IO handshakes (requests under the Socket.IO path
/// without a `sid`), refusing over-limit ones with a plain status before socketioxide sees
/// them.
pub async fn gate(
    State(admission): State<Arc<Admission>>,
    mut req: Request,
    next: Next,
) -> Response {
    if is_handshake(&req) {
        let client = client_of(&admission, &req);
        match admission.open_session(client) {
            Ok(ticket) => {
                req.extensions_mut().insert(Arc::new(ticket));
            }
            Err(refusal) => return refuse(refusal),
        }
    }
    next.run(req).await
}

/// The client address of a request (its TCP peer when the server did not record one).
pub fn client_of(admission: &Admission, req: &Request) -> IpAddr {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    admission.client_ip(peer, req.headers())
}

fn is_handshake(req: &Request) -> bool {
    let uri = req.uri();
    let path = uri.path();
    if !(path == "/socket.io" || path.starts_with("/socket.io/")) {
        return false;
    }
    let query = uri.query().unwrap_or("");
    let has = |key: &str| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(key))
    };
    has("EIO") && !has("sid")
}

fn refuse(refusal: Refusal) -> Response {
    let mut res = (refusal.status(), format!("{refusal}\n")).into_response();
    if refusal == Refusal::TooFast {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    res
}

/// Counts refusals and says when to log them: the first at once, then at most one line per
/// [`LOG_INTERVAL`] with how many there were since, so a flood cannot flood the log.
#[derive(Default)]
pub struct LogThrottle {
    /// Refusals since the last line.
    pending: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl LogThrottle {
    pub const fn new() -> Self {
        Self {
            pending: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }

    /// Counts one; `Some(n)` when a line is due, covering `n` refusals.
    pub fn tick(&self, now: Instant) -> Option<u64> {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let mut last = lock(&self.last);
        if last.is_some_and(|t| now.saturating_duration_since(t) < LOG_INTERVAL) {
            return None;
        }
        *last = Some(now);
        Some(self.pending.swap(0, Ordering::Relaxed))
    }

    fn note(&self, refusal: &Refusal, ip: IpAddr, what: &'static str) {
        if let Some(count) = self.tick(Instant::now()) {
            tracing::warn!(%ip, reason = %refusal, count, interval_secs = LOG_INTERVAL.as_secs(), "{what} (count: refusals since the last such line)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn admission(tweak: impl FnOnce(&mut ServerConfig)) -> Arc<Admission> {
        let mut c = Config::embedded().server;
        tweak(&mut c);
        Admission::new(&c, 4096)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sessions_count_until_their_ticket_drops() {
        let a = admission(|c| {
            c.max_connections = 2;
            c.handshakes_per_address_per_second = 0;
        });
        assert_eq!(a.session_limit(), 2 + 8);
        let mut held: Vec<_> = (0..10u8)
            .map(|i| a.open_session(IpAddr::from([192, 0, 2, i])).unwrap())
            .collect();
        assert_eq!(
            a.open_session(ip("192.0.2.99")).err(),
            Some(Refusal::SessionsFull(10))
        );
        held.pop();
        assert!(a.open_session(ip("192.0.2.99")).is_ok());
    }

    #[test]
    fn one_address_cannot_take_every_slot() {
        let a = admission(|c| {
            c.max_connections_per_address = 3;
            c.handshakes_per_address_per_second = 0;
        });
        let held: Vec<_> = (0..3)
            .map(|_| a.open_session(ip("192.0.2.1")).unwrap())
            .collect();
        assert_eq!(
            a.open_session(ip("192.0.2.1")).err(),
            Some(Refusal::AddressFull(3))
        );
        assert!(a.open_session(ip("192.0.2.2")).is_ok());
        let tcp: Vec<_> = (0..3)
            .map(|_| a.open_tcp(ip("192.0.2.1")).unwrap())
            .collect();
        assert!(a.open_tcp(ip("192.0.2.1")).is_err());
        drop((held, tcp));
        assert_eq!((a.sessions(), a.tcp_connections()), (0, 0));
        assert!(
            a.lock().by_address.is_empty(),
            "no entry outlives its last holder"
        );
    }

    #[test]
    fn handshake_bucket_refills_at_the_configured_rate() {
        let a = admission(|c| {
            c.handshakes_per_address_per_second = 2;
            c.handshake_burst = 3;
        });
        let limits = a.limits;
        let t0 = Instant::now();
        let mut entry = PerAddress::new(limits.burst, t0);
        assert!((0..3).all(|_| entry.take_token(&limits, t0)));
        assert!(!entry.take_token(&limits, t0));
        assert!(entry.take_token(&limits, t0 + Duration::from_millis(500)));
        assert!(!entry.take_token(&limits, t0 + Duration::from_millis(600)));
    }

    #[test]
    fn forwarded_address_counts_only_behind_a_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.5".parse().unwrap());
        let untrusted = admission(|_| {});
        assert_eq!(
            untrusted.client_ip(ip("10.0.0.5"), &headers),
            ip("10.0.0.5")
        );
        let trusted = admission(|c| c.trusted_proxies = vec!["10.0.0.0/8".into()]);
        assert_eq!(
            trusted.client_ip(ip("10.0.0.7"), &headers),
            ip("203.0.113.9")
        );
        headers.insert(
            header::FORWARDED,
            "for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.5"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            trusted.client_ip(ip("10.0.0.7"), &headers),
            ip("2001:db8::7")
        );
        // A proxy's own TCP connections are not limited per address.
        let proxy = admission(|c| {
            c.trusted_proxies = vec!["10.0.0.7".into()];
            c.max_connections_per_address = 1;
        });
        let _a = proxy.open_tcp(ip("10.0.0.7")).unwrap();
        assert!(proxy.open_tcp(ip("10.0.0.7")).is_ok());
    }

    #[test]
    fn refusals_are_logged_once_per_interval_with_their_count() {
        let log = LogThrottle::new();
        let t0 = Instant::now();
        assert_eq!(log.tick(t0), Some(1));
        for i in 1..100 {
            assert_eq!(log.tick(t0 + Duration::from_millis(i)), None);
        }
        // The 99 kept quiet and the one that is logged.
        assert_eq!(log.tick(t0 + LOG_INTERVAL), Some(100));
    }
}
