//! HTTP routes: the web client (embedded in the binary, or from a directory), `/healthz`,
//! `/metrics`, and the Socket.IO layer. Only wiring lives here, plus who may read `/metrics`
//! and the page's Content-Security-Policy.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;
use socketioxide::layer::SocketIoLayer;
use tower::Layer;
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::admission::{self, Admission};
use crate::config::Secret;
use crate::metrics::Metrics;

/// Where `/metrics` is served and who may read it there.
#[derive(Clone)]
pub enum MetricsAccess {
    /// On the main port: loopback clients, and others with `Authorization: Bearer <key>` (an
    /// empty key admits no one else).
    Main { key: Secret },
    /// On its own listener (see [`metrics_router`]): not on the main port at all.
    Elsewhere,
}

/// The page's policy: its own scripts, styles and connections only, nothing inline except the
/// one `style` attribute of index.html's SVG sprite (allowed by hash), no framing.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-hashes' 'sha256-/3kWSXHts8LrwfemLzY9W0tOv5I4eLIhrf0pT8cU0WI='; \
    img-src 'self' data:; media-src 'self' blob: mediastream:; connect-src 'self'; \
    font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";
/// The tutorial's page is served as published, inline script and styles included, and lets
/// its user type any signaling server's address.
const TUTORIAL_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; media-src 'self' blob: mediastream:; \
    connect-src 'self' ws: wss: http: https:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// `static/`, compiled into the binary.
#[derive(RustEmbed)]
#[folder = "static/"]
struct Assets;

/// Builds the application router.
pub fn router(
    socketio: SocketIoLayer,
    metrics: Arc<Metrics>,
    static_dir: Option<PathBuf>,
    admission: Arc<Admission>,
    metrics_access: MetricsAccess,
    admin: Router,
) -> Router {
    let mut api = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(admin);
    if let MetricsAccess::Main { key } = metrics_access {
        let guard = MetricsGuard {
            key,
            admission: admission.clone(),
        };
        api = api.route(
            "/metrics",
            get(render_metrics)
                .with_state(metrics)
                .layer(middleware::from_fn_with_state(guard, metrics_guard)),
        );
    }
    let web = match static_dir {
        // Development: files from disk, re-read on every request.
        Some(dir) => Router::new().fallback_service(ServeDir::new(dir)),
        None => Router::new().fallback(embedded),
    };
    let app = api
        .merge(web)
        .layer(CompressionLayer::new())
        // The page asks for camera and microphone; nothing else may frame or sniff it.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(middleware::from_fn(content_security_policy));
    // Socket.IO wraps the whole app as ONE service: `Router::layer` would instantiate the
    // layer once per route and per HTTP method (a handler fallback is `any(handler)`), giving
    // GET and POST separate Engine.IO instances, so a polling session opened by GET would be
    // unknown to the POST that follows. The handshake gate holds no per-instance state.
    Router::new()
        .fallback_service(socketio.layer(app))
        .layer(middleware::from_fn_with_state(admission, admission::gate))
}

/// `/metrics` alone, for `server.metrics_listen`.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(metrics)
}

#[derive(Clone)]
struct MetricsGuard {
    key: Secret,
    admission: Arc<Admission>,
}

async fn metrics_guard(State(guard): State<MetricsGuard>, req: Request, next: Next) -> Response {
    let client = admission::client_of(&guard.admission, &req);
    if client.is_loopback() || bearer_matches(req.headers(), &guard.key) {
        return next.run(req).await;
    }
    let mut res = (
        StatusCode::UNAUTHORIZED,
        "metrics: loopback only, or Authorization: Bearer <server.metrics_key>\n",
    )
        .into_response();
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"metrics\""),
    );
    res
}

/// Whether the request carries the configured (non-empty) key, compared in constant time.
pub(crate) fn bearer_matches(headers: &HeaderMap, key: &Secret) -> bool {
    if key.is_empty() {
        return false;
    }
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), key.0.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn content_security_policy(req: Request, next: Next) -> Response {
    let tutorial = req.uri().path().starts_with("/tutorial");
    let mut res = next.run(req).await;
    let policy = if tutorial { TUTORIAL_CSP } else { PAGE_CSP };
    res.headers_mut()
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(policy));
    res
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}

/// Serves an embedded file. Every response carries the content hash as ETag with `no-cache`,
/// so browsers revalidate cheaply (304) and never run a stale client after an upgrade.
async fn embedded(uri: Uri, headers: HeaderMap) -> Response {
    let mut path = uri.path().trim_start_matches('/').to_string();
    if path.is_empty() || path.ends_with('/') {
        path.push_str("index.html");
    }
    let Some(file) = Assets::get(&path) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mime = mime_guess::from_path(&path)
        .first_or_octet_stream()
        .to_string();
    Response::builder()
        .header(header::CONTENT_TYPE, mime)
        .header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from(file.data))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
