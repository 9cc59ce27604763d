//! The headless participant: joins a room like a browser (over Socket.IO, or in-process in
//! core tests), publishes tracks on its publisher PeerConnection, answers the server's
//! subscriber offers, trickles candidates, and records what it receives per (participant,
//! source). Used by the media tests and by `sfu-lite load`.
//!
//! - `link`: the signaling path (Socket.IO or direct) as one event stream.
//! - `media`: what is sent (synthetic packets or the VP8/Opus fixtures), paced.
//! - `codec`: VP8 keyframe detection, payload fingerprints.
//! - `loss`: test-only inbound packet loss placed before the NACK generator.
//! - `restart`: ICE restart of a connection that went down, as the web client does it.
//! - `simulcast`: a simulcast publisher's layers, paused and resumed as the server says.

pub mod codec;
mod link;
pub mod loss;
pub mod media;
mod record;
mod restart;
pub mod simulcast;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::ice_transport::ice_candidate::{RTCIceCandidate, RTCIceCandidateInit};
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;

pub use link::{first_value, join_rooms, Elsewhere, ServerError};
pub use loss::LossSpec;
pub use media::{ClipFile, MediaSource, SentLog, SentPacket, SimLayer};
pub use record::{Received, StreamRecord};
pub use simulcast::LayerStats;

use crate::sfu::ice_start::IceStart;
use crate::sfu::transport::{engine_with, loopback_only, recovery_settings, Streams};
use crate::sfu::udp::SocketPerConnection;
use crate::sfu::{IceCandidateInit, PcKind, PublishedTrack, Sfu, Source, TileView, TrackInfo};
use crate::sync::lock;
use link::{Inbound, Link, Outbound};
use webrtc::ice::udp_network::UDPNetwork;

/// How long a re-offer waits for the subscriber connection's ICE to start (see `drive`).
const ICE_START_WAIT: Duration = Duration::from_secs(10);

/// A `layers` event: which rids of the publisher's track `mid` anyone needs.
#[derive(Debug, Clone)]
pub struct LayersEvent {
    pub mid: String,
    pub active: std::collections::BTreeMap<String, bool>,
    pub at: Instant,
}

/// One track to publish.
#[derive(Debug, Clone)]
pub struct TrackSpec {
    pub source: Source,
    pub media: MediaSource,
}

/// Called for every received packet: (publisher id, source, packet, arrival time).
pub type PacketHook =
    Arc<dyn Fn(&str, Source, &webrtc::rtp::packet::Packet, Instant) + Send + Sync>;
/// Called for every packet sent: (source, sequence number, send time).
pub type SentHook = Arc<dyn Fn(Source, u16, Instant) + Send + Sync>;

/// Per-packet callbacks for measuring tools (latency by (track, sequence) on one clock).
#[derive(Clone, Default)]
pub struct Hooks {
    pub on_packet: Option<PacketHook>,
    pub on_sent: Option<SentHook>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("on_packet", &self.on_packet.is_some())
            .field("on_sent", &self.on_sent.is_some())
            .finish()
    }
}

/// How a headless participant behaves.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    pub tracks: Vec<TrackSpec>,
    /// ICE on loopback only (the default; what tests and local load runs need).
    pub loopback_only: bool,
    /// Keep every sent and received packet's (sequence, payload fingerprint).
    pub record_packets: bool,
    /// Drop chosen inbound packets before the NACK generator sees them.
    pub inbound_loss: Option<LossSpec>,
    /// Per-packet callbacks (none by default).
    pub hooks: Hooks,
    /// The codec video tracks are published with (one of the server's: VP8, VP9, H264).
    /// Synthetic payloads are VP8-shaped whatever this says: the SFU never parses them.
    pub video_mime: &'static str,
    /// Number published packets with a transport-wide sequence (webrtc-rs's TWCC sender), as
    /// browsers do, so that the server's transport-cc feedback can be observed
    /// (`SentLog::transport_feedback`).
    pub transport_cc: bool,
    /// Read each received track's RTCP and count its sender reports (`StreamRecord`).
    pub read_sender_reports: bool,
}

impl Default for PeerOptions {
    fn default() -> Self {
        Self {
            tracks: Vec::new(),
            loopback_only: true,
            record_packets: true,
            inbound_loss: None,
            hooks: Hooks::default(),
            video_mime: webrtc::api::media_engine::MIME_TYPE_VP8,
            transport_cc: false,
            read_sender_reports: false,
        }
    }
}

/// One published track's local side.
pub struct Published {
    pub source: Source,
    pub mid: String,
    pub log: Arc<SentLog>,
    /// Simulcast layers, lowest first (empty for a plain track).
    pub layers: Vec<Arc<simulcast::LayerState>>,
}

/// State the driver and the receive tasks share with the owner.
pub(crate) struct Shared {
    pub received: Mutex<Received>,
    /// `mid → (participant, source)` from the latest subscriber offer.
    pub mids: Mutex<HashMap<String, (String, Source)>>,
    /// Bumped whenever `mids` changes: a recycled m-line carries a new (participant, source).
    pub mids_version: AtomicU64,
    pub offers: Mutex<Vec<Vec<TrackInfo>>>,
    /// The number of m-lines of each subscriber offer.
    pub offer_mlines: Mutex<Vec<usize>>,
    pub errors: Mutex<Vec<ServerError>>,
    pub closed: Mutex<Option<String>>,
    /// `layers` events (to this peer as a publisher), in arrival order.
    pub layers: Mutex<Vec<LayersEvent>>,
    /// `layer` events (to this peer as a subscriber): (mid, rid, when).
    pub layer: Mutex<Vec<(String, String, Instant)>>,
    /// `speaking` events: (id, speaking).
    pub speaking: Mutex<Vec<(String, bool)>>,
    /// This peer's published simulcast layers by mid, switched by `layers` events.
    pub sim_layers: Mutex<simulcast::LayerTable>,
    /// Woken on every recorded change, for [`HeadlessPeer::wait_until`].
    pub changed: Notify,
    pub paused: watch::Sender<bool>,
    pub record: bool,
    pub on_packet: Option<PacketHook>,
}

/// A headless participant. Call [`HeadlessPeer::leave`] to end it cleanly.
pub struct HeadlessPeer {
    id: String,
    link: Arc<Link>,
    publisher: Arc<RTCPeerConnection>,
    subscriber: Arc<RTCPeerConnection>,
    shared: Arc<Shared>,
    published: Vec<Published>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// This peer's own counters: socket send errors, NACKs sent and answered.
    metrics: Arc<crate::metrics::Metrics>,
}

impl HeadlessPeer {
    /// Joins `room` on the server at `url` over Socket.IO (namespace `/rooms`) as `name`.
    pub async fn join(
        url: &str,
        room: &str,
        name: &str,
        opts: PeerOptions,
    ) -> anyhow::Result<Self> {
        let (link, id, inbound) = Link::socket_io(url, room, name).await?;
        Self::start(link, id, inbound, opts).await
    }

    /// Joins `room` straight on an in-process [`Sfu`] (core tests without signaling).
    pub async fn join_direct(
        sfu: &Sfu,
        room: &str,
        id: &str,
        opts: PeerOptions,
    ) -> anyhow::Result<Self> {
        let (link, inbound) = Link::direct(sfu, room, id)
            .await
            .map_err(|e| anyhow::anyhow!("join refused: {} ({})", e.message, e.code))?;
        Self::start(link, id.to_string(), inbound, opts).await
    }

    async fn start(
        link: Link,
        id: String,
        inbound: mpsc::UnboundedReceiver<Inbound>,
        opts: PeerOptions,
    ) -> anyhow::Result<Self> {
        for t in &opts.tracks {
            media::check(&t.media)?;
        }
        let link = Arc::new(link);
        let metrics = crate::metrics::Metrics::new();
        let publisher = Arc::new(new_pc(&opts, false, &metrics).await?);
        let subscriber = Arc::new(new_pc(&opts, true, &metrics).await?);
        let shared = Arc::new(Shared {
            received: Mutex::default(),
            mids: Mutex::default(),
            mids_version: AtomicU64::new(0),
            offers: Mutex::default(),
            offer_mlines: Mutex::default(),
            errors: Mutex::default(),
            closed: Mutex::default(),
            layers: Mutex::default(),
            layer: Mutex::default(),
            speaking: Mutex::default(),
            sim_layers: Mutex::default(),
            changed: Notify::new(),
            paused: watch::channel(false).0,
            record: opts.record_packets,
            on_packet: opts.hooks.on_packet.clone(),
        });
        let (stop, _) = watch::channel(false);
        let mut tasks = Vec::new();
        // Candidates go out through the driver's link, in order.
        let (cand_tx, mut cand_rx) = mpsc::unbounded_channel::<(PcKind, RTCIceCandidate)>();
        for (kind, pc) in [
            (PcKind::Publisher, &publisher),
            (PcKind::Subscriber, &subscriber),
        ] {
            let tx = cand_tx.clone();
            pc.on_ice_candidate(Box::new(move |c| {
                if let Some(c) = c {
                    let _ = tx.send((kind, c));
                }
                Box::pin(async {})
            }));
        }
        drop(cand_tx);
        {
            let link = link.clone();
            tasks.push(tokio::spawn(async move {
                while let Some((pc, c)) = cand_rx.recv().await {
                    if let Ok(json) = c.to_json() {
                        let candidate = IceCandidateInit {
                            username_fragment: None,
                            ..json.into()
                        };
                        link.send(Outbound::Candidate { pc, candidate }).await;
                    }
                }
            }));
        }
        // A re-offer applied before the first negotiation's ICE start ran never connects
        // (see `sfu::ice_start`): `drive` waits for it.
        let ice_started = IceStart::watch(&subscriber);
        // Connection states reach the driver, which restarts ICE on a lost connection.
        let (state_tx, states) = mpsc::unbounded_channel();
        for (kind, pc) in [
            (PcKind::Publisher, &publisher),
            (PcKind::Subscriber, &subscriber),
        ] {
            let tx = state_tx.clone();
            pc.on_peer_connection_state_change(Box::new(move |s| {
                let _ = tx.send((kind, s));
                Box::pin(async {})
            }));
        }
        let (track_tx, mut track_rx) = mpsc::unbounded_channel();
        subscriber.on_track(Box::new(move |track, receiver, transceiver| {
            let mid = transceiver.mid().map(|m| m.to_string()).unwrap_or_default();
            let _ = track_tx.send((track, receiver, mid));
            Box::pin(async {})
        }));
        {
            // Receive tasks are spawned from here so their handles are owned and aborted on leave.
            let shared = shared.clone();
            let pc = Arc::downgrade(&subscriber);
            let sender_reports = opts.read_sender_reports;
            tasks.push(tokio::spawn(async move {
                let mut readers = Vec::new();
                while let Some((track, receiver, mid)) = track_rx.recv().await {
                    if sender_reports {
                        let rtcp =
                            record::read_sender_reports(shared.clone(), receiver, mid.clone());
                        readers.push(tokio::spawn(rtcp));
                    }
                    let reader = record::read_track(shared.clone(), track, mid, pc.clone());
                    readers.push(tokio::spawn(reader));
                }
                for r in readers {
                    r.abort();
                }
            }));
        }

        // Publish: one send-only transceiver per track, then one offer for all.
        let mut published = Vec::new();
        let mut declared = Vec::new();
        for spec in &opts.tracks {
            let mime = if spec.media.is_video() {
                opts.video_mime
            } else {
                webrtc::api::media_engine::MIME_TYPE_OPUS
            };
            let codec = crate::sfu::transport::codec_capability(mime)
                .ok_or_else(|| anyhow::anyhow!("{mime} is not a codec the server forwards"))?;
            if let MediaSource::SimulcastVideo(layers) = &spec.media {
                let log = Arc::new(SentLog::new(
                    opts.record_packets,
                    spec.source,
                    opts.hooks.on_sent.clone(),
                ));
                let (transceiver, states) = simulcast::publish(
                    &publisher,
                    codec,
                    (&id, published.len()),
                    layers,
                    &log,
                    &stop,
                    &mut tasks,
                )
                .await?;
                published.push((spec.source, transceiver, log, states));
                continue;
            }
            let local = Arc::new(TrackLocalStaticRTP::new(
                codec,
                format!("{id}-{}", published.len()),
                id.clone(),
            ));
            let transceiver = publisher
                .add_transceiver_from_track(
                    local.clone(),
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Sendonly,
                        send_encodings: vec![],
                    }),
                )
                .await?;
            let sender = transceiver.sender().await;
            let keyframe = Arc::new(AtomicBool::new(true));
            let log = Arc::new(SentLog::new(
                opts.record_packets,
                spec.source,
                opts.hooks.on_sent.clone(),
            ));
            {
                let (keyframe, log) = (keyframe.clone(), log.clone());
                tasks.push(tokio::spawn(async move {
                    while let Ok((packets, _)) = sender.read_rtcp().await {
                        for p in packets {
                            let any = p.as_any();
                            if any.is::<TransportLayerCc>() {
                                log.transport_feedback
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                                log.keyframe_requests
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                keyframe.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    }
                }));
            }
            tasks.push(tokio::spawn(media::send_loop(
                local,
                spec.media.clone(),
                keyframe,
                log.clone(),
                stop.subscribe(),
            )));
            published.push((spec.source, transceiver, log, Vec::new()));
        }
        let mut publish_offer = None;
        if !published.is_empty() {
            let offer = publisher.create_offer(None).await?;
            publisher.set_local_description(offer).await?;
            let sdp = publisher
                .local_description()
                .await
                .map(|d| d.sdp)
                .unwrap_or_default();
            for (source, transceiver, _, _) in &published {
                declared.push(PublishedTrack {
                    mid: transceiver.mid().map(|m| m.to_string()).unwrap_or_default(),
                    source: *source,
                });
            }
            publish_offer = Some(Outbound::PublishOffer {
                sdp,
                tracks: declared.clone(),
            });
        }
        let published = published
            .into_iter()
            .zip(declared.iter())
            .map(|((source, _, log, layers), d)| Published {
                source,
                mid: d.mid.clone(),
                log,
                layers,
            })
            .collect::<Vec<_>>();
        *lock(&shared.sim_layers) = published
            .iter()
            .filter(|p| !p.layers.is_empty())
            .map(|p| (p.mid.clone(), p.layers.clone()))
            .collect();
        tasks.push(tokio::spawn(drive(
            link.clone(),
            Signals { inbound, states },
            publisher.clone(),
            subscriber.clone(),
            ice_started,
            shared.clone(),
            declared,
        )));
        if let Some(offer) = publish_offer {
            link.send(offer).await;
        }
        Ok(Self {
            id,
            link,
            publisher,
            subscriber,
            shared,
            published,
            stop,
            tasks,
            metrics,
        })
    }

    /// The server's media address on this peer's subscriber connection (the selected ICE
    /// pair's remote end), once connected. With `media.port_range` it names the one server
    /// socket that carries this subscriber's downlink (what `netshape` caps).
    pub async fn subscriber_server_addr(&self) -> Option<std::net::SocketAddr> {
        let pair = self
            .subscriber
            .sctp()
            .transport()
            .ice_transport()
            .get_selected_candidate_pair()
            .await?;
        let ip = pair.remote.address.parse().ok()?;
        Some(std::net::SocketAddr::new(ip, pair.remote.port))
    }

    /// The local UDP port of this peer's subscriber connection (the selected pair's local end),
    /// once connected: what `netshape` caps to shape this peer's downlink alone.
    pub async fn subscriber_local_port(&self) -> Option<u16> {
        let dtls = self.subscriber.sctp().transport();
        let pair = dtls.ice_transport().get_selected_candidate_pair().await?;
        Some(pair.local.port)
    }

    /// The local UDP ports of this peer's connected media (the selected pairs' local ends): what
    /// a firewall rule names to cut this participant's media off.
    pub async fn media_ports(&self) -> Vec<u16> {
        let mut ports = Vec::new();
        for pc in [&self.publisher, &self.subscriber] {
            let dtls = pc.sctp().transport();
            if let Some(pair) = dtls.ice_transport().get_selected_candidate_pair().await {
                ports.push(pair.local.port);
            }
        }
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The server's ICE ufrag on the (publisher, subscriber) connection, from the server's
    /// latest description: it changes with every ICE restart.
    pub async fn server_ufrags(&self) -> (String, String) {
        let ufrag = |sdp: Option<RTCSessionDescription>| {
            sdp.and_then(|d| {
                d.sdp
                    .lines()
                    .find_map(|l| l.strip_prefix("a=ice-ufrag:").map(str::to_string))
            })
            .unwrap_or_default()
        };
        (
            ufrag(self.publisher.current_remote_description().await),
            ufrag(self.subscriber.current_remote_description().await),
        )
    }

    /// Sends on this peer's media sockets that failed and were counted as lost packets.
    pub fn send_errors(&self) -> u64 {
        self.metrics
            .media_send_errors
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// This peer's own counters (both connections): `media_send_errors`, `nacks_sent` (holes
    /// in what it received), `retransmitted_packets` (NACKs from the server it answered),
    /// `plis_sent` (holes given up).
    pub fn counters(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// The participant id the server knows this peer by.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What this peer published, with its send logs.
    pub fn published(&self) -> &[Published] {
        &self.published
    }

    /// A snapshot of everything received so far.
    pub fn received(&self) -> Received {
        lock(&self.shared.received).clone()
    }

    /// Every subscriber offer's track list, in arrival order.
    pub fn offers(&self) -> Vec<Vec<TrackInfo>> {
        lock(&self.shared.offers).clone()
    }

    /// The number of m-lines of every subscriber offer, in arrival order.
    pub fn offer_mlines(&self) -> Vec<usize> {
        lock(&self.shared.offer_mlines).clone()
    }

    /// Every `layers` event the server sent this peer as a publisher.
    pub fn layers_events(&self) -> Vec<LayersEvent> {
        lock(&self.shared.layers).clone()
    }

    /// The simulcast layers of this peer's published `source` (empty when not simulcast).
    pub fn layer_stats(&self, source: Source) -> Vec<LayerStats> {
        self.published
            .iter()
            .filter(|p| p.source == source)
            .flat_map(|p| p.layers.iter().map(|l| l.stats()))
            .collect()
    }

    /// Every `layer` event: (subscriber mid, rid, arrival).
    pub fn layer_events(&self) -> Vec<(String, String, Instant)> {
        lock(&self.shared.layer).clone()
    }

    /// The rid `publisher`'s `source` arrives on now, from the latest `layer` event for its mid.
    pub fn current_rid(&self, publisher: &str, source: Source) -> Option<String> {
        let mid = self.mid_of(publisher, source)?;
        lock(&self.shared.layer)
            .iter()
            .rev()
            .find(|(m, _, _)| *m == mid)
            .map(|(_, rid, _)| rid.clone())
    }

    /// The subscriber-connection mid that carries `publisher`'s `source` now.
    pub fn mid_of(&self, publisher: &str, source: Source) -> Option<String> {
        lock(&self.shared.mids)
            .iter()
            .find(|(_, (p, s))| p == publisher && *s == source)
            .map(|(m, _)| m.clone())
    }

    /// Every `speaking` event: (id, speaking).
    pub fn speaking_events(&self) -> Vec<(String, bool)> {
        lock(&self.shared.speaking).clone()
    }

    /// Tells the server what the page would show (`view`).
    pub async fn send_view(&self, tiles: Vec<TileView>) {
        self.link.send(Outbound::View(tiles)).await;
    }

    /// Errors the server sent.
    pub fn errors(&self) -> Vec<ServerError> {
        lock(&self.shared.errors).clone()
    }

    /// Why the server closed this peer's media, if it did.
    pub fn closed_reason(&self) -> Option<String> {
        lock(&self.shared.closed).clone()
    }

    pub fn publisher_state(&self) -> RTCPeerConnectionState {
        self.publisher.connection_state()
    }

    pub fn subscriber_state(&self) -> RTCPeerConnectionState {
        self.subscriber.connection_state()
    }

    /// Stops (true) or resumes reading received tracks: a subscriber that stops reading.
    pub fn pause_receiving(&self, paused: bool) {
        let _ = self.shared.paused.send(paused);
    }

    /// Waits until `cond(self)` holds, re-checking on every recorded change; fails after
    /// `timeout` with the last state described by `what`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        cond: impl Fn(&Self) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            if cond(self) {
                return Ok(());
            }
            // Connection state changes are not recorded events: re-check at a bounded pace too.
            let step = tokio::time::Instant::now() + Duration::from_millis(50);
            if tokio::time::timeout_at(deadline.min(step), notified)
                .await
                .is_err()
                && tokio::time::Instant::now() >= deadline
            {
                anyhow::bail!(
                    "peer {}: timed out after {timeout:?} waiting for {what}",
                    self.id
                );
            }
        }
    }

    /// Leaves the room, closes both connections and ends every task of this peer.
    pub async fn leave(self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        self.link.leave().await;
        let _ = self.publisher.close().await;
        let _ = self.subscriber.close().await;
    }
}

async fn new_pc(
    opts: &PeerOptions,
    subscriber: bool,
    metrics: &Arc<crate::metrics::Metrics>,
) -> anyhow::Result<RTCPeerConnection> {
    // The server's interceptors (`engine_with`), so both ends recover loss the same way. The
    // test loss interceptor goes first: it is then innermost, ahead of the NACK generator,
    // which therefore sees the gap.
    let mut inner = webrtc::interceptor::registry::Registry::new();
    if let (Some(loss), true) = (&opts.inbound_loss, subscriber) {
        inner.add(Box::new(loss::LossBuilder(loss.clone())));
    }
    if opts.transport_cc && !subscriber {
        inner.add(Box::new(
            webrtc::interceptor::twcc::sender::Sender::builder(),
        ));
    }
    // The subscriber connection receives only SSRCs the server's offer declares.
    let streams = if subscriber {
        Streams::Declared
    } else {
        Streams::Simulcast
    };
    let (media, registry) = engine_with(inner, metrics, streams)?;
    let mut settings = SettingEngine::default();
    // As on the server: no `get_stats` here, so no per-packet stats interceptor.
    settings.disable_stats_interceptor(true);
    if opts.loopback_only {
        loopback_only(&mut settings, false);
    }
    // The client's own socket goes through the same loss-tolerant wrapper as the server's: a
    // firewall that refuses a send (EPERM) must look like loss here too, not end the
    // connection. `send_errors` counts them.
    let ip = if opts.loopback_only {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    };
    settings.set_udp_network(UDPNetwork::Muxed(SocketPerConnection::new(
        ip,
        None,
        metrics.clone(),
    )));
    if subscriber && opts.inbound_loss.is_some() {
        // The loss interceptor drops packets after SRTP has seen them, so a retransmission
        // looks like a replay to SRTP. Real network loss happens before SRTP; without replay
        // protection here the test sees what a lossy network would produce. (Not with
        // `recovery_settings`: a replay window, once set, wins over this.)
        settings.disable_srtp_replay_protection(true);
    } else {
        recovery_settings(&mut settings);
    }
    let api = APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build();
    Ok(api.new_peer_connection(RTCConfiguration::default()).await?)
}

/// What the driver reacts to: the server's messages and the connections' states.
struct Signals {
    inbound: mpsc::UnboundedReceiver<Inbound>,
    states: mpsc::UnboundedReceiver<(PcKind, RTCPeerConnectionState)>,
}

/// Applies the server's messages one at a time, and restarts ICE on a lost connection between
/// them: negotiation on each connection is serial.
async fn drive(
    link: Arc<Link>,
    signals: Signals,
    publisher: Arc<RTCPeerConnection>,
    subscriber: Arc<RTCPeerConnection>,
    subscriber_ice: IceStart,
    shared: Arc<Shared>,
    declared: Vec<PublishedTrack>,
) {
    let Signals {
        mut inbound,
        mut states,
    } = signals;
    let mut early: HashMap<PcKind, Vec<RTCIceCandidateInit>> = HashMap::new();
    let mut recovery = restart::Recovery::default();
    let pc_of = |k: PcKind| match k {
        PcKind::Publisher => &publisher,
        PcKind::Subscriber => &subscriber,
    };
    loop {
        let due = recovery.next_due().map(tokio::time::Instant::from_std);
        let msg = tokio::select! {
            msg = inbound.recv() => match msg {
                Some(msg) => msg,
                None => break,
            },
            Some((kind, state)) = states.recv() => {
                if recovery.on_state(kind, state, Instant::now()) {
                    tracing::debug!(?kind, ?state, "connection lost; restarting ICE");
                    restart::restart(kind, &publisher, &declared, &link).await;
                }
                continue;
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                for kind in recovery.take_due(Instant::now()) {
                    restart::restart(kind, &publisher, &declared, &link).await;
                }
                continue;
            }
        };
        match msg {
            Inbound::PublishAnswer(sdp) => {
                let applied = match RTCSessionDescription::answer(sdp) {
                    Ok(d) => publisher.set_remote_description(d).await.is_ok(),
                    Err(_) => false,
                };
                if applied {
                    for c in early.remove(&PcKind::Publisher).unwrap_or_default() {
                        let _ = publisher.add_ice_candidate(c).await;
                    }
                }
            }
            Inbound::SubscribeOffer { sdp, tracks } => {
                {
                    let now = Instant::now();
                    let mut mids = lock(&shared.mids);
                    let mut received = lock(&shared.received);
                    for t in &tracks {
                        mids.insert(t.mid.clone(), (t.participant.clone(), t.source));
                        record::ReceivedExt::offered(&mut *received, &t.participant, t.source, now);
                    }
                    shared
                        .mids_version
                        .fetch_add(1, std::sync::atomic::Ordering::Release);
                    lock(&shared.offer_mlines)
                        .push(sdp.lines().filter(|l| l.starts_with("m=")).count());
                    lock(&shared.offers).push(tracks);
                }
                if subscriber.current_remote_description().await.is_some() {
                    // A re-offer: the first negotiation's ICE start must have run.
                    if !subscriber_ice.wait(ICE_START_WAIT).await {
                        tracing::warn!("subscriber ICE has not started; applying the re-offer");
                    }
                }
                let answer = async {
                    subscriber
                        .set_remote_description(RTCSessionDescription::offer(sdp)?)
                        .await?;
                    let answer = subscriber.create_answer(None).await?;
                    subscriber.set_local_description(answer).await?;
                    Ok::<_, webrtc::Error>(subscriber.local_description().await.map(|d| d.sdp))
                };
                match answer.await {
                    Ok(Some(sdp)) => {
                        for c in early.remove(&PcKind::Subscriber).unwrap_or_default() {
                            let _ = subscriber.add_ice_candidate(c).await;
                        }
                        link.send(Outbound::SubscribeAnswer(sdp)).await;
                    }
                    other => tracing::warn!(?other, "cannot answer the subscriber offer"),
                }
                shared.changed.notify_waiters();
            }
            Inbound::Candidate { pc, candidate } => {
                let Some(c) = candidate else { continue };
                let init = RTCIceCandidateInit::from(c);
                let target = pc_of(pc);
                if target.remote_description().await.is_some() {
                    let _ = target.add_ice_candidate(init).await;
                } else {
                    early.entry(pc).or_default().push(init);
                }
            }
            Inbound::Error(e) => {
                tracing::debug!(?e, "server refused a message");
                lock(&shared.errors).push(e);
                shared.changed.notify_waiters();
            }
            Inbound::Closed(reason) => {
                *lock(&shared.closed) = Some(reason);
                shared.changed.notify_waiters();
            }
            Inbound::Layers { mid, active } => {
                simulcast::apply_layers(&lock(&shared.sim_layers), &mid, &active);
                lock(&shared.layers).push(LayersEvent {
                    mid,
                    active,
                    at: Instant::now(),
                });
                shared.changed.notify_waiters();
            }
            Inbound::Layer { mid, rid } => {
                lock(&shared.layer).push((mid, rid, Instant::now()));
                shared.changed.notify_waiters();
            }
            Inbound::Speaking { id, speaking } => {
                lock(&shared.speaking).push((id, speaking));
                shared.changed.notify_waiters();
            }
        }
    }
}
