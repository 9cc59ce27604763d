//! Signaling over Socket.IO (socketioxide): the tutorial's protocol on the default namespace,
//! and rooms with media negotiation on `/rooms`. Knows Socket.IO, nothing of RTP: media goes
//! through the typed API of [`crate::sfu`].
//!
//! STUB: being written.

use std::sync::Arc;

use socketioxide::layer::SocketIoLayer;
use socketioxide::SocketIo;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::sfu::Sfu;

/// Builds the Socket.IO layer with every namespace and handler installed.
pub fn build(config: Arc<Config>, sfu: Sfu, metrics: Arc<Metrics>) -> (SocketIoLayer, SocketIo) {
    let _ = (config, sfu, metrics);
    let (layer, io) = SocketIo::builder().build_layer();
    (layer, io)
}

/// Server shutdown: tells every connected client and disconnects it.
pub async fn shutdown(io: &SocketIo) {
    let _ = io;
}
