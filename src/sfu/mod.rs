//! The SFU core: one server-side PeerConnection pair per participant (webrtc-rs), and the
//! forwarding of every published RTP track to the other members of its room.
//!
//! Knows RTP and WebRTC, nothing of Socket.IO: signaling drives it through [`Sfu`] and
//! [`Participant`] and relays the [`SfuEvent`]s it emits.
//!
//! - `transport`: codecs, interceptors, UDP mux / port range, NAT 1:1, loopback-only media.
//! - `room`: members of a room; the wanted forwarding matrix is derived from it.
//! - `peer`: one participant's two connections and their serialised negotiation.
//! - `forward`: up tracks (one reader each), down tracks (one queue + writer each), RTCP.
//! - `keyframe`: the pure PLI throttle.
//! - [`checks`]: the pure size/parse checks of client SDP and candidates.
//! - `tasks`: counted, owned tasks.
//!
//! See `docs/sfu.md` for the design and its reasons.

pub mod api;
pub mod checks;
mod forward;
pub mod keyframe;
mod peer;
mod room;
mod tasks;
pub mod transport;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

pub use api::*;

use crate::config::MediaConfig;
use crate::metrics::Metrics;
use forward::{lock, ForwardConfig};
use peer::{Peer, Shared};
use room::Room;
use transport::Transport;

/// The media server: owns the UDP socket(s) and every room's forwarding state. Cheap to clone.
#[derive(Clone)]
pub struct Sfu {
    shared: Arc<Shared>,
    closed: Arc<AtomicBool>,
}

impl Sfu {
    /// Binds media transport according to `config`. `http_listen` decides the default UDP port
    /// and whether media stays on loopback.
    pub async fn new(
        config: &MediaConfig,
        http_listen: SocketAddr,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SfuError> {
        let transport = Transport::new(config, http_listen).await?;
        let fwd = ForwardConfig {
            queue_packets: config.subscriber_queue_packets.max(1),
            keyframe_min_interval: Duration::from_millis(config.keyframe_min_interval_ms),
            metrics: metrics.clone(),
        };
        Ok(Self {
            shared: Arc::new(Shared {
                transport,
                config: config.clone(),
                metrics,
                fwd,
                rooms: Mutex::default(),
            }),
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The muxed media UDP address, when media uses one port.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.shared.transport.udp_addr
    }

    /// Adds participant `id` to the SFU side of `room`. Events for it arrive on `events`.
    /// The participant is removed when [`Participant::leave`] is called or it is dropped.
    pub async fn join(
        &self,
        room: &str,
        id: &str,
        events: mpsc::Sender<SfuEvent>,
    ) -> Result<Participant, SfuError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(SfuError::Internal("the server is shutting down".into()));
        }
        let room = {
            let mut rooms = lock(&self.shared.rooms);
            rooms
                .entry(room.to_string())
                .or_insert_with(|| Arc::new(Room::new(room.to_string())))
                .clone()
        };
        let peer = Peer::new(self.shared.clone(), room.clone(), id.to_string(), events).await?;
        // Re-insert under the table lock: the room may have been dropped by a leaver while the
        // PeerConnections were being made.
        let added = {
            let mut rooms = lock(&self.shared.rooms);
            let current = rooms
                .entry(room.id.clone())
                .or_insert_with(|| room.clone())
                .clone();
            let same = Arc::ptr_eq(&current, &room);
            if same {
                room.add(peer.clone());
            }
            same
        };
        if !added {
            peer.teardown().await;
            return Err(SfuError::Internal(
                "room changed while joining; retry".into(),
            ));
        }
        tracing::info!(participant = %id, room = %room.id, "participant joined media");
        peer.request_reconcile();
        Ok(Participant { peer })
    }

    /// Closes every PeerConnection (server shutdown).
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let peers: Vec<Arc<Peer>> = {
            let rooms = lock(&self.shared.rooms);
            rooms.values().flat_map(|r| r.members()).collect()
        };
        for peer in peers {
            peer.teardown().await;
        }
        if let Some(mux) = &self.shared.transport.mux {
            use webrtc::ice::udp_mux::UDPMux;
            let _ = mux.close().await;
        }
    }

    /// Rooms with at least one media participant (for tests and diagnostics).
    pub fn room_count(&self) -> usize {
        lock(&self.shared.rooms).len()
    }
}

/// One participant's media. Dropping it removes the participant (without waiting).
pub struct Participant {
    peer: Arc<Peer>,
}

impl Participant {
    /// Applies the client's offer on the publisher connection; returns the server's answer.
    pub async fn publish_offer(
        &self,
        sdp: String,
        tracks: Vec<PublishedTrack>,
    ) -> Result<String, SfuError> {
        self.peer.publish_offer(sdp, tracks).await
    }

    /// Applies the client's answer to the pending subscriber offer.
    pub async fn subscribe_answer(&self, sdp: String) -> Result<(), SfuError> {
        self.peer.subscribe_answer(sdp).await
    }

    /// Adds a trickled client candidate; `None` means end of candidates.
    pub async fn add_candidate(
        &self,
        pc: PcKind,
        candidate: Option<IceCandidateInit>,
    ) -> Result<(), SfuError> {
        self.peer.add_candidate(pc, candidate).await
    }

    /// Removes the participant: its tracks leave every subscriber, its connections close and
    /// its tasks end before this returns.
    pub async fn leave(self) {
        self.peer.teardown().await;
    }

    /// The participant's id.
    pub fn id(&self) -> &str {
        &self.peer.id
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        if self.peer.is_closed() {
            return;
        }
        let peer = self.peer.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { peer.teardown().await });
        }
    }
}
