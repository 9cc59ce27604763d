//! Start-up and shutdown of the whole server: binds the HTTP port (plain or TLS), the SFU's
//! media transport and the signaling layer, and stops them in order on request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use tokio::task::JoinHandle;

use crate::access::Access;
use crate::admission::Admission;
use crate::clock::Clock;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::conntrack::{Connections, Timeouts, TrackedAcceptor};
use crate::http::{self, MetricsAccess};
use crate::metrics::Metrics;
use crate::sfu::Sfu;
use crate::signal::{self, Signaling};
use crate::turn::relay::Relay;
use crate::turn::{EmbeddedUrl, IceServers};

/// A started server. Dropping it does not stop it: call [`RunningServer::shutdown`].
pub struct RunningServer {
    /// The bound HTTP address (the real port when the config asked for port 0).
    pub local_addr: SocketAddr,
    /// `https` or `http`.
    pub scheme: &'static str,
    pub metrics: Arc<Metrics>,
    pub sfu: Sfu,
    /// The connection and session counts against their limits.
    pub admission: Arc<Admission>,
    /// Where `/metrics` is served when `server.metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// The access rules in force ([`RunningServer::reload`] replaces them).
    pub access: Arc<Access>,
    signaling: Signaling,
    /// This node's place among several, when `[cluster]` is set.
    pub cluster: Option<Arc<Cluster>>,
    /// The embedded TURN relay, when `turn.embedded` is on.
    relay: Option<Arc<Relay>>,
    connections: Connections,
    grace: Duration,
    http: axum_server::Handle,
    serve: JoinHandle<std::io::Result<()>>,
    metrics_serve: Option<JoinHandle<()>>,
}

/// Binds everything and starts serving in the background.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    start_with_clock(config, Clock::real()).await
}

/// [`start`] with the limits reading `clock` (tests pass a manual one and advance it).
pub async fn start_with_clock(config: Config, clock: Clock) -> anyhow::Result<RunningServer> {
    let config = Arc::new(config);
    let metrics = Metrics::new();
    let listener = std::net::TcpListener::bind(config.server.listen)
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;

    let sfu = Sfu::new(&config.media, local_addr, metrics.clone())
        .await
        .context("cannot start media transport")?;
    let relay = embedded_relay(&config, &sfu, &metrics);
    let embedded_url = relay.as_ref().map(|r| EmbeddedUrl {
        host: config.turn.embedded_host.clone(),
        port: local_addr.port(),
        secret: r.secret().clone(),
    });
    let ice = Arc::new(IceServers::new(&config, embedded_url));
    let access = Access::new(&config).map_err(|e| anyhow::anyhow!("auth: {e}"))?;
    let cluster = Cluster::new(&config.cluster, metrics.clone())?;
    let (layer, signaling) = signal::build(
        config.clone(),
        sfu.clone(),
        metrics.clone(),
        clock,
        ice,
        access.clone(),
        cluster.clone(),
    );
    let admin = crate::admin::router(
        config.auth.admin_key.clone(),
        signaling.rooms(),
        access.clone(),
        cluster.clone(),
    );
    let static_dir = Some(config.server.static_dir.trim())
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let server_config = &config.server;
    let admission = Admission::new(server_config, open_file_limit());
    let (metrics_access, metrics_addr, metrics_serve) =
        match server_config.metrics_listen().map_err(anyhow::Error::msg)? {
            None => (
                MetricsAccess::Main {
                    key: server_config.metrics_key.clone(),
                },
                None,
                None,
            ),
            Some(addr) => {
                let (addr, task) = serve_metrics(addr, metrics.clone()).await?;
                (MetricsAccess::Elsewhere, Some(addr), Some(task))
            }
        };
    let app = http::router(
        layer,
        metrics.clone(),
        static_dir,
        admission.clone(),
        metrics_access,
        admin,
    );

    let connections = Connections::default();
    let tls = tls_config(&config).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp(listener).handle(handle.clone());
    let tracked = TrackedAcceptor {
        conns: connections.clone(),
        admission: admission.clone(),
        timeouts: Timeouts {
            idle: Duration::from_secs(server_config.idle_timeout_secs),
            header: Duration::from_secs(server_config.header_read_timeout_secs),
            // A client that has not read for a whole ping timeout is as gone as one that did
            // not answer a ping.
            write: Duration::from_secs(server_config.ping_timeout_secs),
        },
        relay: relay.clone(),
    };
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let serve = match tls {
        None => tokio::spawn(server.acceptor(tracked).serve(app)),
        Some(tls) => {
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls).acceptor(tracked);
            tokio::spawn(server.acceptor(acceptor).serve(app))
        }
    };
    tracing::info!(
        %local_addr,
        scheme,
        max_tcp_connections = admission.tcp_limit(),
        ?metrics_addr,
        embedded_turn = relay.is_some(),
        "listening"
    );
    Ok(RunningServer {
        local_addr,
        scheme,
        metrics,
        sfu,
        admission,
        metrics_addr,
        access,
        signaling,
        cluster,
        relay,
        connections,
        grace: Duration::from_secs(config.server.shutdown_grace_secs),
        http: handle,
        serve,
        metrics_serve,
    })
}

/// The embedded TURN relay, when configured and media runs on one muxed port (the relay
/// forwards to that port; with a port range there is no one address to allow).
fn embedded_relay(config: &Config, sfu: &Sfu, metrics: &Arc<Metrics>) -> Option<Arc<Relay>> {
    if !config.turn.embedded {
        return None;
    }
    let Some(media) = sfu.udp_addr() else {
        tracing::warn!(
            "turn.embedded needs a single media port (media.port_range is set): relay off"
        );
        return None;
    };
    Some(Relay::new(
        media,
        &config.media.public_ips,
        Duration::from_secs(config.server.idle_timeout_secs),
        metrics.clone(),
    ))
}

/// Serves `/metrics` alone on `addr` (plain HTTP: meant for a private address).
async fn serve_metrics(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on server.metrics_listen {addr}"))?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, http::metrics_router(metrics)).await {
            tracing::warn!(error = %e, "metrics listener stopped");
        }
    });
    Ok((local, task))
}

/// Raises the soft open-file limit to the hard one and returns the limit in force. Every
/// connection is a descriptor, and the usual soft default (1,024) is far below what
/// `server.max_connections` asks for: when it runs out, the server cannot even accept the
/// connection that would be refused.
pub fn raise_open_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        let soft = lim.rlim_cur;
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        tracing::info!(
            soft_before = soft,
            open_files = lim.rlim_cur,
            hard = lim.rlim_max,
            "open-file limit"
        );
    }
    lim.rlim_cur as u64
}

/// The soft open-file limit now.
fn open_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 1024,
        rlim_max: 1024,
    };
    // SAFETY: getrlimit only writes the struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur as u64
}

impl RunningServer {
    /// Puts the access rules (`[auth]`, `[rooms]`, `auth.rooms_dir`) of `config` in force, for
    /// joins from now on; no one in a room is dropped. Other sections need a restart.
    pub fn reload(&self, config: &Config) -> Result<(), crate::access::AccessError> {
        self.access.reload(config)
    }

    /// The URL a person opens, with `localhost` for wildcard and loopback addresses.
    pub fn url(&self) -> String {
        let ip = self.local_addr.ip();
        let host = if ip.is_unspecified() || ip.is_loopback() {
            "localhost".to_string()
        } else {
            self.local_addr.ip().to_string()
        };
        format!("{}://{}:{}/", self.scheme, host, self.local_addr.port())
    }

    /// Tells connected clients, waits until they have hung up, stops accepting and closes media,
    /// at most the configured grace period in all.
    pub async fn shutdown(self) {
        let deadline = tokio::time::Instant::now() + self.grace;
        let drain = async {
            self.signaling.shutdown().await;
            // After the members were told: their rooms are free to claim again at once.
            if let Some(cluster) = &self.cluster {
                cluster.shutdown().await;
            }
            if let Some(relay) = &self.relay {
                relay.close();
            }
            self.sfu.close().await;
            // Still accepting here: a polling client needs a fresh request (sometimes a fresh
            // connection) to fetch the notice, and a WebSocket upgrade may be half done.
            self.connections.all_idle().await;
        };
        if tokio::time::timeout_at(deadline, drain).await.is_err() {
            tracing::warn!(
                busy = self.connections.busy(),
                "shutdown grace period over; closing the connections still open"
            );
        }
        // Cut short before (or while) leaving the cluster: leave now, bounded, so the
        // heartbeat and the subscription end and the rooms' claims go.
        if let Some(cluster) = &self.cluster {
            if !cluster.is_closed() {
                let _ = tokio::time::timeout(Duration::from_secs(2), cluster.shutdown()).await;
            }
        }
        // Stops accepting; idle keep-alive connections close at once.
        self.http.graceful_shutdown(Some(Duration::from_secs(1)));
        self.signaling.close_transports().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.serve).await;
        if let Some(task) = self.metrics_serve {
            task.abort();
        }
    }
}

async fn tls_config(config: &Config) -> anyhow::Result<Option<RustlsConfig>> {
    let tls = &config.tls;
    // Both webrtc-rs (DTLS) and rcgen already use ring; rustls uses the same provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if tls.self_signed {
        let cert = rcgen::generate_simple_self_signed(tls.self_signed_names.clone())
            .context("cannot generate a self-signed certificate")?;
        tracing::info!(names = ?tls.self_signed_names, "serving https with a self-signed certificate");
        let config = RustlsConfig::from_pem(
            cert.cert.pem().into_bytes(),
            cert.key_pair.serialize_pem().into_bytes(),
        )
        .await
        .context("cannot use the self-signed certificate")?;
        return Ok(Some(config));
    }
    if !tls.cert.is_empty() {
        // Paths only: key material is never logged.
        let config = RustlsConfig::from_pem_file(&tls.cert, &tls.key)
            .await
            .with_context(|| format!("cannot load tls.cert {} / tls.key", tls.cert))?;
        return Ok(Some(config));
    }
    Ok(None)
}
