//! The SFU core: one server-side PeerConnection pair per participant (webrtc-rs), and the
//! forwarding of every published RTP track to the other members of its room.
//!
//! Knows RTP and WebRTC, nothing of Socket.IO: signaling drives it through [`Sfu`] and
//! [`Participant`] and relays the [`SfuEvent`]s it emits.
//!
//! - `room`: the pure room core — members, tracks, the forwarding matrix; events in, actions
//!   out, time passed in. No locks, no async, no WebRTC types.
//! - `rooms`: the table of rooms (one short std mutex) that runs the core's actions.
//! - `peer`: one participant's two connections; `publish` and `subscribe` its two sides
//!   (subscriber m-lines are recycled).
//! - `forward`: up tracks (one reader per simulcast layer) and their subscribers' sinks;
//!   `down`: down tracks (one queue + writer each, rewritten by `rewrite`), RTCP.
//! - `rewrite`: pure — one continuous outgoing stream per m-line across switches.
//! - `layers`: pure — which layer each subscription gets; when a publisher may pause one.
//! - `estimate`: pure — a subscriber's downlink estimate (TWCC loss, REMB).
//! - `speech`: pure — who is speaking, from the audio level extension.
//! - `adapt`: runs the layer choice per subscriber and the pause per simulcast track.
//! - `keyframe`: the pure PLI throttle.
//! - `recovery`: pure — the NACK history a sender keeps, the holes a receiver asks for again;
//!   `nack`: the interceptors built on them (every connection, server and headless client).
//! - `codec`: keyframe detection per video codec (where a cut subscriber can resume).
//! - `ice_start`: the webrtc-rs re-offer workaround, shared with the headless client.
//! - `transport`: codecs, interceptors, ICE-lite, UDP mux / port range, NAT 1:1, loopback-only.
//! - `udp`: media sockets on which a failed send counts as a lost packet.
//! - [`checks`]: the pure size/parse checks of client SDP and candidates.
//! - `tasks`: counted, owned tasks.
//! - `selected_pair`: counts connections by the remote candidate type ICE selected.
//!
//! See `docs/sfu.md` for the design and its reasons.

mod activity;
mod adapt;
pub mod api;
pub mod checks;
pub mod codec;
mod down;
pub mod estimate;
mod forward;
pub mod ice_start;
mod kept;
pub mod keyframe;
pub mod layers;
mod nack;
mod peer;
mod publish;
pub mod recovery;
pub mod rewrite;
pub mod room;
mod rooms;
mod selected_pair;
mod sender_reports;
pub mod speech;
mod subscribe;
mod tasks;
pub mod transport;
mod twcc;
pub mod udp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

pub use api::*;
pub use room::Want;

use crate::config::MediaConfig;
use crate::metrics::Metrics;
use forward::ForwardConfig;
use peer::{Peer, Shared};
use room::Event;
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
        let transport = Transport::new(config, http_listen, metrics.clone()).await?;
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
                rooms: Default::default(),
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
        let shutting_down = || SfuError::Internal("the server is shutting down".into());
        if self.closed.load(Ordering::Acquire) {
            return Err(shutting_down());
        }
        let peer = Peer::new(
            self.shared.clone(),
            room.to_string(),
            id.to_string(),
            events,
        )
        .await?;
        // One call under the table's lock: the room is created, or found, and joined at once.
        if !self.shared.rooms.join(room, &peer) {
            peer.teardown().await;
            return Err(SfuError::Internal(format!("{id} is already in the room")));
        }
        // `close` may have collected the peers while this one was being made.
        if self.closed.load(Ordering::Acquire) {
            peer.teardown().await;
            return Err(shutting_down());
        }
        tracing::info!(participant = %id, room = %room, "participant joined media");
        Ok(Participant { peer })
    }

    /// Closes every PeerConnection (server shutdown).
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let peers = self.shared.rooms.peers();
        for peer in peers {
            peer.teardown().await;
        }
        self.shared.transport.close().await;
    }

    /// Rooms with at least one media participant (for tests and diagnostics).
    pub fn room_count(&self) -> usize {
        self.shared.rooms.len()
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
    /// Restarts ICE on `pc`: the subscriber's next offer carries new credentials. The
    /// publisher restarts with the client's re-offer; asking for it here does nothing.
    pub fn restart_ice(&self, pc: PcKind) -> Result<(), SfuError> {
        if self.peer.is_closed() {
            return Err(SfuError::Gone);
        }
        self.peer.restart_ice(pc);
        Ok(())
    }

    pub async fn leave(self) {
        self.peer.teardown().await;
    }

    /// The participant's id.
    pub fn id(&self) -> &str {
        &self.peer.id
    }

    /// Mutes (or unmutes) this participant's own track `mid`: it is forwarded to nobody while
    /// muted. The hook a moderator's mute uses too.
    pub fn set_muted(&self, mid: &str, muted: bool) {
        let track = (self.peer.id.clone(), mid.to_string());
        self.peer
            .shared
            .rooms
            .apply(&self.peer.room, Event::Mute { track, muted });
    }

    /// What the page shows of the tracks it receives (`view`); unknown mids are ignored.
    pub fn set_view(&self, tiles: Vec<TileView>) {
        self.peer.set_view(tiles);
    }

    /// This participant's wish for `publisher`'s track `mid` (e.g. off for a hidden tile).
    pub fn set_want(&self, publisher: &str, mid: &str, want: Want) {
        let event = Event::Wants {
            subscriber: self.peer.id.clone(),
            track: (publisher.to_string(), mid.to_string()),
            want,
        };
        self.peer.shared.rooms.apply(&self.peer.room, event);
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        if self.peer.is_closed() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let peer = self.peer.clone();
                handle.spawn(async move { peer.teardown().await });
            }
            // No runtime to close connections on: at least leave the room now, so the others
            // stop forwarding to this participant and an empty room is dropped.
            Err(_) => self.peer.leave_sync(),
        }
    }
}
