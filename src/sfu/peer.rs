//! One participant's server side: its publisher and subscriber PeerConnections, the up tracks
//! it publishes and the subscriptions it receives.
//!
//! Negotiation is serialised per connection: publisher offers under `publish_lock`; subscriber
//! offers under the `sub` lock, one at a time (the next only after the answer to the previous),
//! each made by reconciling the subscriptions with what the room offers (a diff, LiveKit- and
//! webrtc-rs/sfu-style).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use webrtc::ice_transport::ice_candidate::{RTCIceCandidate, RTCIceCandidateInit};
use webrtc::ice_transport::ice_connection_state::RTCIceConnectionState;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::{RTCRtpTransceiver, RTCRtpTransceiverInit};
use webrtc::track::track_remote::TrackRemote;

use super::checks;
use super::forward::{lock, read_down_rtcp, up_track, DownTrack, ForwardConfig, Sink, UpTrack};
use super::room::Room;
use super::tasks::{spawn_counted, TaskSet};
use super::transport::Transport;
use super::{
    IceCandidateInit, ParticipantId, PcKind, PublishedTrack, RoomId, SfuError, SfuEvent, Source,
    TrackInfo,
};
use crate::config::MediaConfig;
use crate::metrics::{GaugeGuard, Metrics};

/// Candidates kept while a connection has no remote description yet.
pub(crate) const MAX_EARLY_CANDIDATES: usize = 64;
/// How long leaving waits for a participant's tasks before aborting them.
const TASK_GRACE: Duration = Duration::from_secs(5);

/// What every participant shares: the WebRTC factory, settings, metrics and the room table.
pub(crate) struct Shared {
    pub transport: Transport,
    pub config: MediaConfig,
    pub metrics: Arc<Metrics>,
    pub fwd: ForwardConfig,
    pub rooms: Mutex<HashMap<RoomId, Arc<Room>>>,
}

type TrackKey = (ParticipantId, String);

struct Subscription {
    up: Arc<UpTrack>,
    sink: Arc<Sink>,
    sender: Arc<RTCRtpSender>,
    transceiver: Arc<RTCRtpTransceiver>,
    /// Packets flow only once the answer bound the sender.
    started: bool,
    _gauge: GaugeGuard,
}

#[derive(Default)]
struct SubState {
    offer_pending: bool,
    subs: HashMap<TrackKey, Subscription>,
    early_candidates: Vec<RTCIceCandidateInit>,
}

pub(crate) struct Peer {
    pub id: ParticipantId,
    pub room: Arc<Room>,
    shared: Arc<Shared>,
    events: mpsc::Sender<SfuEvent>,
    publisher: Arc<RTCPeerConnection>,
    subscriber: Arc<RTCPeerConnection>,
    pc_gauges: Mutex<Vec<GaugeGuard>>,
    /// `mid → source` as the client declared in its publish offers.
    declared: Mutex<HashMap<String, Source>>,
    /// Live up tracks by mid.
    published: Mutex<HashMap<String, Arc<UpTrack>>>,
    /// Serialises publisher negotiation; guards the publisher's early candidates.
    publish_lock: tokio::sync::Mutex<Vec<RTCIceCandidateInit>>,
    /// Serialises subscriber negotiation and holds the subscriptions.
    sub: tokio::sync::Mutex<SubState>,
    /// The room changed while an offer was out: reconcile again after the answer.
    dirty: AtomicBool,
    closed: AtomicBool,
    /// The publisher's ICE has started (left `New`); see `publish_offer`.
    publisher_ice_started: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
    timers_started: [AtomicBool; 2],
    /// Set once each connection has reached `Connected`: the connect timer is about coming up
    /// at all; a connected link that blips (Disconnected) is ICE's business.
    ever_connected: [AtomicBool; 2],
    tasks: TaskSet,
}

impl Peer {
    pub async fn new(
        shared: Arc<Shared>,
        room: Arc<Room>,
        id: ParticipantId,
        events: mpsc::Sender<SfuEvent>,
    ) -> Result<Arc<Self>, SfuError> {
        let new_pc = || async {
            shared
                .transport
                .api
                .new_peer_connection(shared.transport.rtc_config.clone())
                .await
                .map(Arc::new)
                .map_err(|e| SfuError::Internal(e.to_string()))
        };
        let publisher = new_pc().await?;
        let pub_gauge = GaugeGuard::new(&shared.metrics, |m| &m.peer_connections);
        let subscriber = match new_pc().await {
            Ok(pc) => pc,
            Err(e) => {
                let _ = publisher.close().await;
                return Err(e);
            }
        };
        let sub_gauge = GaugeGuard::new(&shared.metrics, |m| &m.peer_connections);
        let peer = Arc::new(Self {
            id,
            room,
            events,
            publisher,
            subscriber,
            pc_gauges: Mutex::new(vec![pub_gauge, sub_gauge]),
            declared: Mutex::default(),
            published: Mutex::default(),
            publish_lock: tokio::sync::Mutex::default(),
            sub: tokio::sync::Mutex::default(),
            dirty: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            publisher_ice_started: watch::channel(false).0,
            shutdown: watch::channel(false).0,
            timers_started: [AtomicBool::new(false), AtomicBool::new(false)],
            ever_connected: [AtomicBool::new(false), AtomicBool::new(false)],
            tasks: TaskSet::default(),
            shared,
        });
        peer.install_handlers();
        Ok(peer)
    }

    fn install_handlers(self: &Arc<Self>) {
        for kind in [PcKind::Publisher, PcKind::Subscriber] {
            let pc = self.pc(kind);
            let weak = Arc::downgrade(self);
            pc.on_ice_candidate(Box::new(move |c: Option<RTCIceCandidate>| {
                let weak = weak.clone();
                Box::pin(async move {
                    if let (Some(peer), Some(c)) = (weak.upgrade(), c) {
                        peer.send_candidate(kind, c).await;
                    }
                })
            }));
            let weak = Arc::downgrade(self);
            pc.on_peer_connection_state_change(Box::new(move |state| {
                if let Some(peer) = weak.upgrade() {
                    peer.on_state(kind, state);
                }
                Box::pin(async {})
            }));
        }
        let weak = Arc::downgrade(self);
        self.publisher
            .on_ice_connection_state_change(Box::new(move |state| {
                if let (Some(peer), true) = (weak.upgrade(), state != RTCIceConnectionState::New) {
                    peer.publisher_ice_started.send_replace(true);
                }
                Box::pin(async {})
            }));
        let weak: Weak<Self> = Arc::downgrade(self);
        self.publisher
            .on_track(Box::new(move |track, _receiver, transceiver| {
                if let Some(peer) = weak.upgrade() {
                    let mid = transceiver.mid().map(|m| m.to_string()).unwrap_or_default();
                    peer.on_track(track, mid);
                }
                Box::pin(async {})
            }));
    }

    fn pc(&self, kind: PcKind) -> &Arc<RTCPeerConnection> {
        match kind {
            PcKind::Publisher => &self.publisher,
            PcKind::Subscriber => &self.subscriber,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn published(&self) -> Vec<Arc<UpTrack>> {
        lock(&self.published).values().cloned().collect()
    }

    fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.push(spawn_counted(&self.shared.metrics, fut));
    }

    async fn send_candidate(&self, pc: PcKind, c: RTCIceCandidate) {
        let Ok(json) = c.to_json() else { return };
        // No sdpMid: with BUNDLE every candidate belongs to the first m-line, and the server
        // does not know the client's mids for it. Browsers accept the index alone.
        let candidate = IceCandidateInit {
            sdp_mid: None,
            sdp_mline_index: Some(0),
            username_fragment: None,
            ..json.into()
        };
        let event = SfuEvent::Candidate { pc, candidate };
        let _ = tokio::time::timeout(Duration::from_secs(2), self.events.send(event)).await;
    }

    fn on_state(self: &Arc<Self>, kind: PcKind, state: RTCPeerConnectionState) {
        tracing::debug!(participant = %self.id, room = %self.room.id, ?kind, ?state, "connection state");
        if state == RTCPeerConnectionState::Connected {
            self.ever_connected[kind as usize].store(true, Ordering::Release);
        }
        match state {
            RTCPeerConnectionState::Failed => self.fail("ICE failed".into()),
            RTCPeerConnectionState::Connected if kind == PcKind::Subscriber => {
                // Keyframes asked for before the connection was up went nowhere: ask again.
                let peer = self.clone();
                self.spawn(async move {
                    let st = peer.sub.lock().await;
                    for sub in st.subs.values().filter(|s| s.started) {
                        sub.up.request_keyframe();
                    }
                });
            }
            _ => {}
        }
    }

    fn on_track(self: &Arc<Self>, track: Arc<TrackRemote>, mid: String) {
        if self.is_closed() {
            return;
        }
        let source = lock(&self.declared)
            .get(&mid)
            .copied()
            .unwrap_or(match track.kind() {
                RTPCodecType::Audio => Source::Microphone,
                _ => Source::Camera,
            });
        let (up, reader, keyframes) = up_track(
            self.id.clone(),
            mid.clone(),
            source,
            track,
            self.publisher.clone(),
            &self.shared.fwd,
        );
        tracing::info!(participant = %self.id, room = %self.room.id, %mid, ?source, kind = up.kind, codec = %up.codec.mime_type, "track published");
        lock(&self.published).insert(mid.clone(), up.clone());
        let peer = self.clone();
        self.spawn(async move {
            reader.await;
            let removed = {
                let mut published = lock(&peer.published);
                match published.get(&mid) {
                    Some(current) if Arc::ptr_eq(current, &up) => published.remove(&mid).is_some(),
                    _ => false,
                }
            };
            if removed && !peer.is_closed() {
                peer.room.reconcile_others(&peer.id);
            }
        });
        self.spawn(keyframes);
        self.room.reconcile_others(&self.id);
    }

    /// Applies the client's publisher offer and returns the answer.
    pub async fn publish_offer(
        self: &Arc<Self>,
        sdp: String,
        tracks: Vec<PublishedTrack>,
    ) -> Result<String, SfuError> {
        let mut early = self.publish_lock.lock().await;
        if self.is_closed() {
            return Err(SfuError::Gone);
        }
        let max = self.shared.config.max_tracks_per_participant;
        let offer = checks::check_offer(sdp, tracks.len(), max)?.description;
        lock(&self.declared).extend(tracks.into_iter().map(|t| (t.mid, t.source)));
        if self.publisher.current_remote_description().await.is_some() {
            self.wait_publisher_ice_start().await;
        }
        self.publisher
            .set_remote_description(offer)
            .await
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let answer = self
            .publisher
            .create_answer(None)
            .await
            .map_err(|e| SfuError::Internal(e.to_string()))?;
        self.publisher
            .set_local_description(answer)
            .await
            .map_err(|e| SfuError::Internal(e.to_string()))?;
        for c in early.drain(..) {
            let _ = self.publisher.add_ice_candidate(c).await;
        }
        self.start_connect_timer(PcKind::Publisher);
        let local = self.publisher.local_description().await;
        local
            .map(|d| d.sdp)
            .ok_or_else(|| SfuError::Internal("no local description".into()))
    }

    /// webrtc-rs 0.17 gives the ICE agent the remote credentials only when the transport start
    /// queued by the first offer runs. A re-offer applied before then compares its ufrag with
    /// empty credentials, takes it for an ICE restart and restarts the agent with new local
    /// credentials the client never learns: the connection never comes up. So a re-offer waits
    /// for ICE to have started (bounded by the connect timeout, which fails the peer anyway).
    async fn wait_publisher_ice_start(&self) {
        let mut started = self.publisher_ice_started.subscribe();
        let limit = Duration::from_secs(self.shared.config.connect_timeout_secs);
        if tokio::time::timeout(limit, started.wait_for(|s| *s))
            .await
            .is_err()
        {
            tracing::warn!(participant = %self.id, room = %self.room.id, "publisher ICE has not started; applying the re-offer");
        }
    }

    /// Applies the client's answer to the pending subscriber offer.
    pub async fn subscribe_answer(self: &Arc<Self>, sdp: String) -> Result<(), SfuError> {
        let mut st = self.sub.lock().await;
        if self.is_closed() {
            return Err(SfuError::Gone);
        }
        if !st.offer_pending {
            return Err(SfuError::NoPendingOffer);
        }
        let answer = checks::check_answer(sdp)?;
        self.subscriber
            .set_remote_description(answer)
            .await
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        st.offer_pending = false;
        for c in std::mem::take(&mut st.early_candidates) {
            let _ = self.subscriber.add_ice_candidate(c).await;
        }
        // A keyframe sent before the connection is up is lost, and would use up the track's
        // request interval: until then, the `Connected` handler asks instead.
        let connected = self.subscriber.connection_state() == RTCPeerConnectionState::Connected;
        for sub in st.subs.values_mut().filter(|s| !s.started) {
            sub.started = true;
            sub.up.add_sink(&sub.sink);
            if connected {
                sub.up.request_keyframe();
            }
        }
        drop(st);
        if self.dirty.swap(false, Ordering::AcqRel) {
            self.request_reconcile();
        }
        Ok(())
    }

    /// Adds a trickled client candidate (kept until the remote description is set).
    pub async fn add_candidate(
        &self,
        kind: PcKind,
        candidate: Option<IceCandidateInit>,
    ) -> Result<(), SfuError> {
        if self.is_closed() {
            return Err(SfuError::Gone);
        }
        let Some(c) = candidate else { return Ok(()) };
        // `None`: the browser's end-of-candidates marker.
        let Some(init) = checks::check_candidate(c)? else {
            return Ok(());
        };
        let pc = self.pc(kind).clone();
        let apply = |early: &mut Vec<RTCIceCandidateInit>, has_remote: bool, init| {
            if has_remote {
                return Some(init);
            }
            if early.len() < MAX_EARLY_CANDIDATES {
                early.push(init);
            }
            None
        };
        let now = match kind {
            PcKind::Publisher => {
                let mut early = self.publish_lock.lock().await;
                let has_remote = pc.remote_description().await.is_some();
                apply(&mut early, has_remote, init)
            }
            PcKind::Subscriber => {
                let mut st = self.sub.lock().await;
                let has_remote = pc.remote_description().await.is_some();
                apply(&mut st.early_candidates, has_remote, init)
            }
        };
        if let Some(init) = now {
            pc.add_ice_candidate(init)
                .await
                .map_err(|e| SfuError::BadCandidate(e.to_string()))?;
        }
        Ok(())
    }

    /// Schedules a reconcile of this participant's subscriptions.
    pub fn request_reconcile(self: &Arc<Self>) {
        if self.is_closed() {
            return;
        }
        let peer = self.clone();
        self.spawn(async move {
            if let Err(e) = peer.reconcile().await {
                if !peer.is_closed() {
                    tracing::warn!(participant = %peer.id, room = %peer.room.id, error = %e, "subscriber negotiation failed");
                    peer.fail(format!("subscriber negotiation failed: {e}"));
                }
            }
        });
    }

    /// Brings the subscriptions in line with the room's tracks and offers the result.
    async fn reconcile(self: &Arc<Self>) -> Result<(), SfuError> {
        let internal = |e: webrtc::Error| SfuError::Internal(e.to_string());
        let mut st = self.sub.lock().await;
        if self.is_closed() {
            return Ok(());
        }
        if st.offer_pending {
            self.dirty.store(true, Ordering::Release);
            return Ok(());
        }
        self.dirty.store(false, Ordering::Release);
        let wanted = self.room.tracks_for(&self.id);
        let stale: Vec<TrackKey> = st
            .subs
            .iter()
            .filter(|(_, s)| !wanted.iter().any(|u| Arc::ptr_eq(u, &s.up)))
            .map(|(k, _)| k.clone())
            .collect();
        let mut changed = !stale.is_empty();
        for key in stale {
            if let Some(sub) = st.subs.remove(&key) {
                sub.up.remove_sink(&sub.sink);
                let _ = self.subscriber.remove_track(&sub.sender).await;
            }
        }
        for up in wanted {
            let key = (up.publisher.clone(), up.mid.clone());
            if st.subs.contains_key(&key) {
                continue;
            }
            let down = DownTrack::new(&up, self.shared.fwd.queue_packets);
            let transceiver = self
                .subscriber
                .add_transceiver_from_track(
                    down.local.clone(),
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Sendonly,
                        send_encodings: vec![],
                    }),
                )
                .await
                .map_err(internal)?;
            // Every m-line offers every codec, no per-track codec preferences: webrtc-rs fixes a
            // connection's video codecs from its *first* video m-line and never revisits them,
            // so a first subscription offered as VP8 only would leave no codec for a later
            // H.264 or VP9 publisher. The local track binds to its own codec within what the
            // subscriber accepted; a subscriber that cannot decode it gets nothing for it.
            let sender = transceiver.sender().await;
            let sink = down.sink.clone();
            let metrics = self.shared.metrics.clone();
            self.spawn(down.write_loop(metrics.clone()));
            self.spawn(read_down_rtcp(sender.clone(), up.clone(), metrics.clone()));
            st.subs.insert(
                key,
                Subscription {
                    up,
                    sink,
                    sender,
                    transceiver,
                    started: false,
                    _gauge: GaugeGuard::new(&metrics, |m| &m.subscriptions),
                },
            );
            changed = true;
        }
        if !changed {
            return Ok(());
        }
        let offer = self.subscriber.create_offer(None).await.map_err(internal)?;
        self.subscriber
            .set_local_description(offer)
            .await
            .map_err(internal)?;
        let sdp = self
            .subscriber
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| SfuError::Internal("no local description".into()))?;
        let mut tracks: Vec<TrackInfo> = st
            .subs
            .values()
            .map(|s| TrackInfo {
                mid: s
                    .transceiver
                    .mid()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                participant: s.up.publisher.clone(),
                source: s.up.source,
                kind: s.up.kind.to_string(),
            })
            .collect();
        tracks.sort_by(|a, b| a.mid.cmp(&b.mid));
        st.offer_pending = true;
        drop(st);
        self.start_connect_timer(PcKind::Subscriber);
        let _ = self
            .events
            .send(SfuEvent::SubscribeOffer { sdp, tracks })
            .await;
        Ok(())
    }

    /// A connection that is being negotiated must be up within `connect_timeout_secs`.
    fn start_connect_timer(self: &Arc<Self>, kind: PcKind) {
        if self.timers_started[kind as usize].swap(true, Ordering::AcqRel) {
            return;
        }
        let timeout = Duration::from_secs(self.shared.config.connect_timeout_secs);
        let mut shutdown = self.shutdown.subscribe();
        let weak = Arc::downgrade(self);
        self.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(timeout) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            if let Some(peer) = weak.upgrade() {
                if !peer.ever_connected[kind as usize].load(Ordering::Acquire) {
                    peer.fail(format!(
                        "{kind:?} media did not connect within {} s",
                        timeout.as_secs()
                    ));
                }
            }
        });
    }

    /// Media is gone for good: tell signaling and tear down without waiting here.
    pub fn fail(self: &Arc<Self>, reason: String) {
        if self.is_closed() {
            return;
        }
        tracing::info!(participant = %self.id, room = %self.room.id, %reason, "participant media closed");
        let _ = self.events.try_send(SfuEvent::Closed { reason });
        let peer = self.clone();
        spawn_counted(&self.shared.metrics, async move { peer.teardown().await });
    }

    /// Removes the participant: its tracks leave every subscriber, its connections close, its
    /// tasks end before this returns. Idempotent.
    pub async fn teardown(self: &Arc<Self>) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.shutdown.send(true);
        {
            let mut rooms = lock(&self.shared.rooms);
            if self.room.remove(&self.id)
                && rooms
                    .get(&self.room.id)
                    .is_some_and(|r| Arc::ptr_eq(r, &self.room))
            {
                rooms.remove(&self.room.id);
            }
        }
        let published = std::mem::take(&mut *lock(&self.published));
        self.room.reconcile_others(&self.id);
        {
            let mut st = self.sub.lock().await;
            for (_, sub) in st.subs.drain() {
                sub.up.remove_sink(&sub.sink);
            }
        }
        let _ = self.publisher.close().await;
        let _ = self.subscriber.close().await;
        lock(&self.pc_gauges).clear();
        self.tasks.join_all(TASK_GRACE).await;
        drop(published);
        tracing::info!(participant = %self.id, room = %self.room.id, "participant left");
    }
}
