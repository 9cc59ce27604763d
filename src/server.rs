//! Start-up and shutdown of the whole server: binds the HTTP port (plain or TLS), the SFU's
//! media transport and the signaling layer, and stops them in order on request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::Config;
use crate::conntrack::{Connections, TrackedAcceptor};
use crate::http;
use crate::metrics::Metrics;
use crate::sfu::Sfu;
use crate::signal::{self, Signaling};

/// A started server. Dropping it does not stop it: call [`RunningServer::shutdown`].
pub struct RunningServer {
    /// The bound HTTP address (the real port when the config asked for port 0).
    pub local_addr: SocketAddr,
    /// `https` or `http`.
    pub scheme: &'static str,
    pub metrics: Arc<Metrics>,
    pub sfu: Sfu,
    signaling: Signaling,
    connections: Connections,
    grace: Duration,
    http: axum_server::Handle,
    serve: JoinHandle<std::io::Result<()>>,
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
    let (layer, signaling) = signal::build(config.clone(), sfu.clone(), metrics.clone(), clock);
    let static_dir = Some(config.server.static_dir.trim())
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let app = http::router(layer, metrics.clone(), static_dir);

    let connections = Connections::default();
    let tls = tls_config(&config).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp(listener).handle(handle.clone());
    let tracked = TrackedAcceptor(connections.clone());
    let app = app.into_make_service();
    let serve = match tls {
        None => tokio::spawn(server.acceptor(tracked).serve(app)),
        Some(tls) => {
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls).acceptor(tracked);
            tokio::spawn(server.acceptor(acceptor).serve(app))
        }
    };
    tracing::info!(%local_addr, scheme, "listening");
    Ok(RunningServer {
        local_addr,
        scheme,
        metrics,
        sfu,
        signaling,
        connections,
        grace: Duration::from_secs(config.server.shutdown_grace_secs),
        http: handle,
        serve,
    })
}

impl RunningServer {
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
        // Stops accepting; idle keep-alive connections close at once.
        self.http.graceful_shutdown(Some(Duration::from_secs(1)));
        self.signaling.close_transports().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.serve).await;
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
