//! The admin API, `/api/v1/...`: JSON over HTTP with `Authorization: Bearer <auth.admin_key>`
//! (compared in constant time). With no key configured the routes do not exist (404), so an
//! unconfigured server exposes nothing. `docs/admin.md` has a curl example of each.
//!
//! - `GET /api/v1/rooms`: every room, its members (role, state, muted sources, tracks).
//! - `POST /api/v1/tokens` `{room, name?, role, ttl_secs?}`: a token signed with the HS256 key.
//! - `DELETE /api/v1/rooms/{room}/participants/{id}?ban=true`: removes (and bans) a member.
//! - `DELETE /api/v1/rooms/{room}`: ends the meeting.
//! - `GET /api/v1/cluster`: this node's id and every live node's entry (URL, load); 404 on a
//!   single node.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::access::{Access, Claims, Role};
use crate::cluster::Cluster;
use crate::config::Secret;
use crate::signal::protocol::{ErrorCode, Moderate, SignalError};
use crate::signal::RoomsHandle;

#[derive(Clone)]
struct Api {
    rooms: RoomsHandle,
    access: Arc<Access>,
    cluster: Option<Arc<Cluster>>,
}

/// Longest token lifetime the API mints: a day.
const MAX_TTL_SECS: u64 = 24 * 3600;

/// The API's routes, or none when `key` is empty.
pub fn router(
    key: Secret,
    rooms: RoomsHandle,
    access: Arc<Access>,
    cluster: Option<Arc<Cluster>>,
) -> Router {
    if key.is_empty() {
        return Router::new();
    }
    Router::new()
        .route("/api/v1/rooms", get(list))
        .route("/api/v1/rooms/{room}", delete(end))
        .route("/api/v1/rooms/{room}/participants/{id}", delete(remove))
        .route("/api/v1/tokens", post(mint))
        .route("/api/v1/cluster", get(nodes))
        .with_state(Api {
            rooms,
            access,
            cluster,
        })
        .layer(middleware::from_fn_with_state(key, guard))
}

async fn guard(State(key): State<Secret>, req: Request, next: Next) -> Response {
    if crate::http::bearer_matches(req.headers(), &key) {
        return next.run(req).await;
    }
    let mut res = error(
        StatusCode::UNAUTHORIZED,
        "Authorization: Bearer <auth.admin_key> needed",
    );
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"admin\""),
    );
    res
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn list(State(api): State<Api>) -> Response {
    Json(json!({ "rooms": api.rooms.list() })).into_response()
}

async fn nodes(State(api): State<Api>) -> Response {
    let Some(cluster) = &api.cluster else {
        return error(
            StatusCode::NOT_FOUND,
            "this server is a single node (no [cluster])",
        );
    };
    match cluster.nodes().await {
        Ok(nodes) => Json(json!({ "node": cluster.id(), "nodes": nodes })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[derive(Deserialize)]
struct RemoveQuery {
    #[serde(default)]
    ban: bool,
}

async fn remove(
    State(api): State<Api>,
    Path((room, id)): Path<(String, String)>,
    Query(q): Query<RemoveQuery>,
) -> Response {
    moderated(
        api.rooms
            .moderate(&room, &Moderate::Remove { id, ban: q.ban }),
    )
}

async fn end(State(api): State<Api>, Path(room): Path<String>) -> Response {
    moderated(api.rooms.moderate(&room, &Moderate::End))
}

fn moderated(result: Result<(), SignalError>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) if matches!(e.code, ErrorCode::NotInRoom | ErrorCode::UnknownParticipant) => {
            error(StatusCode::NOT_FOUND, &e.message)
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &e.message),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    /// A room name, or a prefix ending in `*`.
    room: String,
    #[serde(default)]
    name: Option<String>,
    role: Role,
    #[serde(default = "default_ttl")]
    ttl_secs: u64,
    #[serde(default)]
    kid: Option<String>,
}

fn default_ttl() -> u64 {
    3600
}

async fn mint(State(api): State<Api>, Json(req): Json<MintRequest>) -> Response {
    if req.ttl_secs == 0 || req.ttl_secs > MAX_TTL_SECS {
        return error(StatusCode::BAD_REQUEST, "ttl_secs must be 1..=86400");
    }
    let claims = Claims::new(&req.room, req.name, req.role, req.ttl_secs);
    match api.access.rules().keys.mint(req.kid.as_deref(), &claims) {
        Ok(token) => Json(json!({ "token": token, "exp": claims.exp })).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}
