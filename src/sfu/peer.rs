//! One participant's server side: its publisher and subscriber PeerConnections and the tasks
//! that serve them. What it publishes and receives is decided by its room's core (`rooms.rs`);
//! the peer only knows its room's id, never the room.
//!
//! - `publish.rs`: the client's publisher offers and the up tracks they bring.
//! - `subscribe.rs`: the subscriber connection, reconciled with the room's matrix.
//!
//! Negotiation is serialised per connection: publisher offers under `publish_lock`; subscriber
//! offers under the `sub` lock, one at a time (the next only after the answer to the previous).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use webrtc::ice_transport::ice_candidate::{RTCIceCandidate, RTCIceCandidateInit};
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::RTCPeerConnection;

use super::checks;
use super::forward::ForwardConfig;
use super::ice_start::IceStart;
use super::publish::Declared;
use super::rooms::Rooms;
use super::selected_pair;
use super::subscribe::SubState;
use super::tasks::{spawn_counted, TaskSet};
use super::transport::Transport;
use super::{IceCandidateInit, ParticipantId, PcKind, RoomId, SfuError, SfuEvent};
use crate::config::MediaConfig;
use crate::metrics::{GaugeGuard, Metrics};
use crate::sync::lock;

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
    pub rooms: Rooms,
}

pub(crate) struct Peer {
    pub id: ParticipantId,
    pub room: RoomId,
    pub(super) shared: Arc<Shared>,
    pub(super) events: mpsc::Sender<SfuEvent>,
    pub(super) publisher: Arc<RTCPeerConnection>,
    pub(super) subscriber: Arc<RTCPeerConnection>,
    pc_gauges: Mutex<Vec<GaugeGuard>>,
    /// `mid → source` as the client's current publish offer declares it.
    pub(super) declared: Mutex<Declared>,
    /// Serialises publisher negotiation; guards the publisher's early candidates.
    pub(super) publish_lock: tokio::sync::Mutex<Vec<RTCIceCandidateInit>>,
    /// Serialises subscriber negotiation and holds the subscriptions.
    pub(super) sub: tokio::sync::Mutex<SubState>,
    /// Wakes the reconcile task (a stored permit: requests coalesce).
    reconcile: Arc<Notify>,
    /// The room changed while an offer was out: reconcile again after the answer.
    pub(super) dirty: AtomicBool,
    closed: AtomicBool,
    /// `fail` ran: `Closed` is (being) sent, exactly once.
    failed: AtomicBool,
    /// The publisher's ICE has started; see [`IceStart`].
    pub(super) publisher_ice: IceStart,
    pub(super) shutdown: watch::Sender<bool>,
    timers_started: [AtomicBool; 2],
    /// Set once each connection has reached `Connected`: the connect timer is about coming up
    /// at all; a connected link that goes down is the recovery timer's business.
    ever_connected: [AtomicBool; 2],
    /// Each connection's latest state, for the recovery timer.
    states: [watch::Sender<RTCPeerConnectionState>; 2],
    /// A recovery timer runs for this connection (see [`Peer::recover`]).
    recovering: [AtomicBool; 2],
    /// The next subscriber offer restarts ICE (asked by the client or by `recover`).
    pub(super) sub_ice_restart: AtomicBool,
    tasks: TaskSet,
}

impl Peer {
    pub async fn new(
        shared: Arc<Shared>,
        room: RoomId,
        id: ParticipantId,
        events: mpsc::Sender<SfuEvent>,
    ) -> Result<Arc<Self>, SfuError> {
        let new_pc = || async {
            shared
                .transport
                .new_peer_connection()
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
            publisher_ice: IceStart::watch(&publisher),
            publisher,
            subscriber,
            pc_gauges: Mutex::new(vec![pub_gauge, sub_gauge]),
            declared: Mutex::default(),
            publish_lock: tokio::sync::Mutex::default(),
            sub: tokio::sync::Mutex::default(),
            reconcile: Arc::default(),
            dirty: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            shutdown: watch::channel(false).0,
            timers_started: [AtomicBool::new(false), AtomicBool::new(false)],
            ever_connected: [AtomicBool::new(false), AtomicBool::new(false)],
            states: [(); 2].map(|_| watch::channel(RTCPeerConnectionState::New).0),
            recovering: [AtomicBool::new(false), AtomicBool::new(false)],
            sub_ice_restart: AtomicBool::new(false),
            tasks: TaskSet::default(),
            shared,
        });
        peer.install_handlers();
        peer.spawn(reconcile_task(Arc::downgrade(&peer)));
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

    pub(super) fn pc(&self, kind: PcKind) -> &Arc<RTCPeerConnection> {
        match kind {
            PcKind::Publisher => &self.publisher,
            PcKind::Subscriber => &self.subscriber,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(super) fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.push(spawn_counted(&self.shared.metrics, fut));
    }

    async fn send_candidate(&self, pc: PcKind, c: RTCIceCandidate) {
        let Ok(json) = c.to_json() else { return };
        // No sdpMid: with BUNDLE every candidate belongs to the first m-line, and the server
        // does not know the client's mids for it. Browsers accept the index alone.
        let candidate = IceCandidateInit {
            candidate: json.candidate,
            sdp_mid: None,
            sdp_mline_index: Some(0),
            username_fragment: None,
        };
        let event = SfuEvent::Candidate { pc, candidate };
        let _ = tokio::time::timeout(Duration::from_secs(2), self.events.send(event)).await;
    }

    fn on_state(self: &Arc<Self>, kind: PcKind, state: RTCPeerConnectionState) {
        tracing::debug!(participant = %self.id, room = %self.room, ?kind, ?state, "connection state");
        if state == RTCPeerConnectionState::Connected {
            self.ever_connected[kind as usize].store(true, Ordering::Release);
            let metrics = self.shared.metrics.clone();
            self.spawn(selected_pair::count_remote_type(
                self.pc(kind).clone(),
                metrics,
            ));
        }
        self.states[kind as usize].send_replace(state);
        let was_up = self.ever_connected[kind as usize].load(Ordering::Acquire);
        match state {
            // Connecting again after Connected: a restart is under way.
            RTCPeerConnectionState::Disconnected
            | RTCPeerConnectionState::Failed
            | RTCPeerConnectionState::Connecting
                if was_up =>
            {
                self.recover(kind, state)
            }
            // Never up: the connect timer's case; ICE gave up on it before the timer did.
            RTCPeerConnectionState::Failed => self.fail("ICE failed".into()),
            RTCPeerConnectionState::Connected if kind == PcKind::Subscriber => {
                // Keyframes asked for before the connection was up (or back up after a restart)
                // went nowhere: ask again.
                let peer = self.clone();
                self.spawn(async move { peer.restart_started().await });
            }
            _ => {}
        }
    }

    /// A connection that was up went `Disconnected` or `Failed`, or is `Connecting` again (an
    /// ICE restart under way): the participant keeps its place for
    /// `media.ice_failed_timeout_ms` while ICE restarts (the client re-offers the publisher; the
    /// server re-offers the subscriber with new credentials, starting now unless a restart is
    /// already under way), and is removed only if the connection is not `Connected` again by
    /// then. The timer runs on tokio's clock (`tokio::time::pause` drives it in tests).
    fn recover(self: &Arc<Self>, kind: PcKind, state: RTCPeerConnectionState) {
        if self.is_closed() || self.recovering[kind as usize].swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::info!(participant = %self.id, room = %self.room, ?kind, ?state, "media connection lost; waiting for an ICE restart");
        if kind == PcKind::Subscriber && state != RTCPeerConnectionState::Connecting {
            self.restart_ice(kind);
        }
        let limit = Duration::from_millis(self.shared.config.ice_failed_timeout_ms);
        let mut state = self.states[kind as usize].subscribe();
        let mut shutdown = self.shutdown.subscribe();
        let weak = Arc::downgrade(self);
        self.spawn(async move {
            let back = tokio::select! {
                r = tokio::time::timeout(limit, state.wait_for(|s| *s == RTCPeerConnectionState::Connected)) => {
                    r.is_ok_and(|r| r.is_ok())
                }
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let Some(peer) = weak.upgrade() else { return };
            peer.recovering[kind as usize].store(false, Ordering::Release);
            if back {
                tracing::info!(participant = %peer.id, room = %peer.room, ?kind, "media connection restored");
            } else {
                peer.fail(format!(
                    "ICE failed: {kind:?} media did not reconnect within {} ms",
                    limit.as_millis()
                ));
            }
        });
    }

    /// Restarts ICE on a connection, as the client asks (`restart_ice`) or `recover` does. The
    /// subscriber's next offer, serialised with the others, carries new credentials. The
    /// publisher restarts with the client's own re-offer (new credentials in it): nothing to do
    /// here.
    pub fn restart_ice(&self, kind: PcKind) {
        if kind == PcKind::Subscriber && !self.is_closed() {
            self.sub_ice_restart.store(true, Ordering::Release);
            self.reconcile.notify_one();
        }
    }

    /// Schedules a reconcile of this participant's subscriptions (coalesced).
    pub fn request_reconcile(&self) {
        if !self.is_closed() {
            self.reconcile.notify_one();
        }
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
        let Some(init) = checks::check_candidate(c)? else {
            // The browser's end-of-candidates marker.
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

    /// A connection that is being negotiated must be up within `connect_timeout_secs`.
    pub(super) fn start_connect_timer(self: &Arc<Self>, kind: PcKind) {
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

    /// Media is gone for good: tear down, then tell signaling. `Closed` is the participant's
    /// last event, so it is sent with a waiting `send` after everything else has stopped (the
    /// relay always drains its channel; a dropped receiver makes `send` return at once).
    pub fn fail(self: &Arc<Self>, reason: String) {
        if self.is_closed() || self.failed.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::info!(participant = %self.id, room = %self.room, %reason, "participant media closed");
        let peer = self.clone();
        spawn_counted(&self.shared.metrics, async move {
            peer.teardown().await;
            let _ = peer.events.send(SfuEvent::Closed { reason }).await;
        });
    }

    /// Removes the participant: its tracks leave every subscriber, its connections close, its
    /// tasks end before this returns. Idempotent.
    pub async fn teardown(self: &Arc<Self>) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.shutdown.send(true);
        self.shared.rooms.leave(&self.room, self);
        self.unsubscribe_all().await;
        let _ = self.publisher.close().await;
        let _ = self.subscriber.close().await;
        lock(&self.pc_gauges).clear();
        self.tasks.join_all(TASK_GRACE).await;
        tracing::info!(participant = %self.id, room = %self.room, "participant left");
    }

    /// Leaves the room without a runtime (a `Participant` dropped outside one): the room and
    /// every other member are brought up to date at once; the connections go with the runtime.
    pub fn leave_sync(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let _ = self.shutdown.send(true);
            self.shared.rooms.leave(&self.room, self);
        }
    }
}

/// Runs one reconcile per wake-up until the peer ends. Holds the peer weakly: it never keeps
/// the participant alive.
async fn reconcile_task(weak: Weak<Peer>) {
    let Some((wake, mut shutdown)) = weak
        .upgrade()
        .map(|p| (p.reconcile.clone(), p.shutdown.subscribe()))
    else {
        return;
    };
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let Some(peer) = weak.upgrade() else { return };
        if let Err(e) = peer.reconcile().await {
            if !peer.is_closed() {
                tracing::warn!(participant = %peer.id, room = %peer.room, error = %e, "subscriber negotiation failed");
                peer.fail(format!("subscriber negotiation failed: {e}"));
            }
        }
    }
}
