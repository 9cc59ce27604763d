//! Start-up and shutdown of the whole server: binds the HTTP port (plain or TLS), the SFU's
//! media transport and the signaling layer, and stops them in order on request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use socketioxide::SocketIo;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::sfu::Sfu;
use crate::{http, signal};

/// A started server. Dropping it does not stop it: call [`RunningServer::shutdown`].
pub struct RunningServer {
    /// The bound HTTP address (the real port when the config asked for port 0).
    pub local_addr: SocketAddr,
    /// `https` or `http`.
    pub scheme: &'static str,
    pub metrics: Arc<Metrics>,
    pub sfu: Sfu,
    io: SocketIo,
    grace: Duration,
    stop: watch::Sender<bool>,
    serve: JoinHandle<std::io::Result<()>>,
}

/// Binds everything and starts serving in the background.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    let config = Arc::new(config);
    let metrics = Metrics::new();
    let listener = std::net::TcpListener::bind(config.server.listen)
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?;

    let sfu = Sfu::new(&config.media, local_addr, metrics.clone())
        .await
        .context("cannot start media transport")?;
    let (layer, io) = signal::build(config.clone(), sfu.clone(), metrics.clone());
    let static_dir = Some(config.server.static_dir.trim())
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    let app = http::router(layer, metrics.clone(), static_dir);

    let (stop, mut stopped) = watch::channel(false);
    let tls = tls_config(&config).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let serve = match tls {
        None => {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tokio::spawn(async move {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .await
            })
        }
        Some(tls) => {
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                let _ = stopped.wait_for(|s| *s).await;
                h.graceful_shutdown(None);
            });
            tokio::spawn(async move {
                axum_server::from_tcp_rustls(listener, tls)
                    .handle(handle)
                    .serve(app.into_make_service())
                    .await
            })
        }
    };
    tracing::info!(%local_addr, scheme, "listening");
    Ok(RunningServer {
        local_addr,
        scheme,
        metrics,
        sfu,
        io,
        grace: Duration::from_secs(config.server.shutdown_grace_secs),
        stop,
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

    /// Stops accepting, tells connected clients, closes media, and waits at most the configured
    /// grace period for connections to drain.
    pub async fn shutdown(self) {
        let deadline = tokio::time::Instant::now() + self.grace;
        let _ = self.stop.send(true);
        let drain = async {
            signal::shutdown(&self.io).await;
            self.sfu.close().await;
            let _ = self.serve.await;
        };
        if tokio::time::timeout_at(deadline, drain).await.is_err() {
            tracing::warn!("shutdown grace period over; exiting with connections still open");
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
