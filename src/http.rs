//! HTTP routes: the web client (embedded in the binary, or from a directory), `/healthz`,
//! `/metrics`, and the Socket.IO layer. Only wiring lives here.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;
use socketioxide::layer::SocketIoLayer;
use tower::Layer;
use tower_http::compression::CompressionLayer;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::metrics::Metrics;

/// `static/`, compiled into the binary.
#[derive(RustEmbed)]
#[folder = "static/"]
struct Assets;

/// Builds the application router.
pub fn router(
    socketio: SocketIoLayer,
    metrics: Arc<Metrics>,
    static_dir: Option<PathBuf>,
) -> Router {
    let api = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(render_metrics))
        .with_state(metrics);
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
        ));
    // Socket.IO wraps the whole app as ONE service: `Router::layer` would instantiate the
    // layer once per route and per HTTP method (a handler fallback is `any(handler)`), giving
    // GET and POST separate Engine.IO instances, so a polling session opened by GET would be
    // unknown to the POST that follows.
    Router::new().fallback_service(socketio.layer(app))
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
