//! The SFU core: one server-side PeerConnection pair per participant (webrtc-rs), and the
//! forwarding of every published RTP track to the other members of its room.
//!
//! Knows RTP and WebRTC, nothing of Socket.IO: signaling drives it through [`Sfu`] and
//! [`Participant`] and relays the [`SfuEvent`]s it emits.
//!
//! STUB: the API below is the contract; the implementation is being written.

pub mod api;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

pub use api::*;

use crate::config::MediaConfig;
use crate::metrics::Metrics;

/// The media server: owns the UDP socket(s) and every room's forwarding state. Cheap to clone.
#[derive(Clone)]
pub struct Sfu {
    #[allow(dead_code)]
    inner: Arc<()>,
}

impl Sfu {
    /// Binds media transport according to `config`. `http_listen` decides the default UDP port
    /// and whether media stays on loopback.
    pub async fn new(
        config: &MediaConfig,
        http_listen: SocketAddr,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SfuError> {
        let _ = (config, http_listen, metrics);
        Ok(Self {
            inner: Arc::new(()),
        })
    }

    /// Adds participant `id` to the SFU side of `room`. Events for it arrive on `events`.
    /// The participant is removed when [`Participant::leave`] is called or it is dropped.
    pub async fn join(
        &self,
        room: &str,
        id: &str,
        events: mpsc::Sender<SfuEvent>,
    ) -> Result<Participant, SfuError> {
        let _ = (room, id, events);
        Err(SfuError::Internal("media is not implemented yet".into()))
    }

    /// Closes every PeerConnection (server shutdown).
    pub async fn close(&self) {}
}

/// One participant's media. Dropping it removes the participant (without waiting).
pub struct Participant {}

impl Participant {
    /// Applies the client's offer on the publisher connection; returns the server's answer.
    pub async fn publish_offer(
        &self,
        sdp: String,
        tracks: Vec<PublishedTrack>,
    ) -> Result<String, SfuError> {
        let _ = (sdp, tracks);
        Err(SfuError::Gone)
    }

    /// Applies the client's answer to the pending subscriber offer.
    pub async fn subscribe_answer(&self, sdp: String) -> Result<(), SfuError> {
        let _ = sdp;
        Err(SfuError::Gone)
    }

    /// Adds a trickled client candidate; `None` means end of candidates.
    pub async fn add_candidate(
        &self,
        pc: PcKind,
        candidate: Option<IceCandidateInit>,
    ) -> Result<(), SfuError> {
        let _ = (pc, candidate);
        Err(SfuError::Gone)
    }

    /// Removes the participant: its tracks leave every subscriber, its connections close and
    /// its tasks end before this returns.
    pub async fn leave(self) {}
}
