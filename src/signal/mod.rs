//! Signaling over Socket.IO (socketioxide): the tutorial's protocol on the default namespace,
//! and rooms with media negotiation on `/rooms`. Knows Socket.IO, nothing of RTP: media goes
//! through the typed API of [`crate::sfu`]. The protocol is documented in `docs/protocol.md`.
//!
//! - [`protocol`]: the wire types and the one error shape.
//! - `session`: per-socket plumbing for both namespaces (admission, limits, ordered queue).
//! - `limits`: the pure rate/strike gate and the name rules.
//! - `tutorial`: namespace `/`; `tutorial_shared`: its roster when it spans a cluster. `rooms`: namespace `/rooms` (sessions); `room_table`: the rooms
//!   and their members; `budget`: the pure byte budget of room chat. `media`: each member's SFU
//!   worker and relay. `moderation`: the `moderate` event's actions on the room table, and
//!   the listing and actions the admin API ([`Rooms`]) uses.

mod budget;
mod limits;
mod media;
pub mod moderation;
pub mod protocol;
mod room_table;
mod rooms;
mod session;
mod tutorial;
mod tutorial_shared;

pub use media::sfu_error;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use std::time::Duration;

use socketioxide::layer::SocketIoLayer;
use socketioxide::{ParserConfig, SocketIo};

use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::sfu::Sfu;
use crate::turn::IceServers;

/// The namespace of rooms and media.
pub const ROOMS_NAMESPACE: &str = "/rooms";

/// Decodes one client event of namespace `ns` (`/` or [`ROOMS_NAMESPACE`]) exactly as a
/// session's front does, and says only whether it decoded: the entry point of the decoders'
/// property tests (`tests/parsers_never_panic.rs`).
pub fn parse_event(
    ns: &str,
    event: &str,
    args: Vec<serde_json::Value>,
) -> Result<(), protocol::SignalError> {
    use session::Service;
    if ns == ROOMS_NAMESPACE {
        rooms::Rooms::parse(event, args).map(drop)
    } else {
        tutorial::Tutorial::parse(event, args).map(drop)
    }
}

/// The signaling layer's handle: its Socket.IO instance and what shutdown needs.
pub struct Signaling {
    io: SocketIo,
    ctx: Arc<session::Ctx>,
    rooms: Arc<rooms::Rooms>,
}

/// What the admin API may see and do of `/rooms`.
#[derive(Clone)]
pub struct RoomsHandle(Arc<rooms::Rooms>);

impl RoomsHandle {
    /// Every room, its members and their declared tracks.
    pub fn list(&self) -> Vec<moderation::RoomSnapshot> {
        self.0.table.snapshot()
    }

    /// Applies a moderation action as the server (announced with `by: ""`).
    pub fn moderate(
        &self,
        room: &str,
        action: &protocol::Moderate,
    ) -> Result<(), protocol::SignalError> {
        let policy = self.0.access.policy(room);
        self.0.table.moderate(room, None, &policy, action)
    }
}

/// Builds the Socket.IO layer with every namespace and handler installed.
pub fn build(
    config: Arc<Config>,
    sfu: Sfu,
    metrics: Arc<Metrics>,
    clock: Clock,
    ice: Arc<IceServers>,
    access: Arc<crate::access::Access>,
    cluster: Option<Arc<crate::cluster::Cluster>>,
) -> (SocketIoLayer, Signaling) {
    // The transport lets a few oversized payloads through so they can be refused politely with
    // `payload_too_large`; far bigger ones close the connection at the Engine.IO layer.
    let max = config.signaling.max_message_bytes as u64;
    let transport_max = max * 4 + 16 * 1024;
    let server = &config.server;
    let (layer, io) = SocketIo::builder()
        .max_payload(transport_max)
        .ws_max_message_size(transport_max as usize)
        .ws_max_frame_size(transport_max as usize)
        .max_buffer_size(server.send_queue_packets)
        .ping_interval(Duration::from_secs(server.ping_interval_secs))
        .ping_timeout(Duration::from_secs(server.ping_timeout_secs))
        // A handshake that joins no namespace holds a session slot only this long.
        .connect_timeout(Duration::from_secs(server.connect_timeout_secs))
        .with_parser(
            ParserConfig::common()
                .max_incoming_binaries(MAX_ATTACHMENTS)
                .max_incoming_binary_buf_size(MAX_ATTACHMENT_BYTES)
                .packet_completion_timeout(Duration::from_secs(5)),
        )
        .build_layer();
    let ctx = Arc::new(session::Ctx {
        config,
        metrics,
        clock,
        closing: AtomicBool::new(false),
    });
    io.ns(
        "/",
        session::Connector(tutorial::Tutorial::new(ctx.clone(), cluster.clone())),
    );
    let rooms = rooms::Rooms::new(ctx.clone(), sfu, ice, access, cluster.clone());
    if let Some(cluster) = cluster {
        let table = rooms.clone();
        cluster.start(Box::new(move || table.table.names()));
    }
    io.ns(ROOMS_NAMESPACE, session::Connector(rooms.clone()));
    (layer, Signaling { io, ctx, rooms })
}

/// Attachments per binary event, and their bytes, that are read before being refused.
///
/// Binary attachments are refused anyway (`bad_request`), but socketioxide buffers a binary
/// event's attachments until the last one arrives, and checks its completion timeout only when
/// another one does: by default 10,000 attachments and 10 MB per socket, held for as long as the
/// client likes. One small attachment is let through so the refusal can be polite; a binary
/// event declaring more, or a bigger attachment, closes that client's connection.
pub const MAX_ATTACHMENTS: usize = 1;
pub const MAX_ATTACHMENT_BYTES: usize = 1024;

impl Signaling {
    /// The rooms, for the admin API.
    pub fn rooms(&self) -> RoomsHandle {
        RoomsHandle(self.rooms.clone())
    }

    /// First step of server shutdown: refuses new sockets, tells every connected client
    /// (`error {code: "server_shutdown"}`), disconnects it from its namespace, and waits until
    /// each session has cleaned up.
    ///
    /// The transports stay open on purpose: what is queued (the notice, the disconnect) still
    /// has to reach the client, possibly over a polling-to-WebSocket upgrade in progress, and
    /// closing the transport now would drop it. The official clients hang up by themselves once
    /// their last namespace is gone; [`Signaling::close_transports`] is for those that do not.
    pub async fn shutdown(&self) {
        self.ctx.closing.store(true, Ordering::Relaxed);
        let mut handles = Vec::new();
        for ns in ["/", ROOMS_NAMESPACE] {
            if let Some(ops) = self.io.of(ns) {
                for socket in ops.sockets() {
                    handles.extend(session::shut(&socket));
                }
            }
        }
        tracing::info!(sockets = handles.len(), "signaling shutting down");
        for handle in handles {
            handle.stop().await;
        }
    }

    /// Last step of server shutdown: closes the transport of any socket still in a namespace
    /// (one admitted in the instant shutdown began, so never told). Sockets already
    /// disconnected by [`Signaling::shutdown`] are out of socketioxide's reach here; a client
    /// that never hung up is cut when the process exits.
    pub async fn close_transports(&self) {
        if tokio::time::timeout(TRANSPORT_CLOSE, self.io.close())
            .await
            .is_err()
        {
            tracing::debug!("some transports did not close in time");
        }
    }
}

/// How long the last step waits for transports to close.
const TRANSPORT_CLOSE: std::time::Duration = std::time::Duration::from_secs(1);
