//! Forwarding: one *up* track per published track, read once by its reader task and fanned
//! out to one *down* track per subscriber, each written by its own task from a bounded queue.
//!
//! The packet path takes no lock: the reader loads the subscriber list from an `ArcSwap`
//! (writers replace the whole list, which happens only on (un)subscribe), wraps each packet in
//! one `Arc` and `try_send`s it to every queue. A full queue drops that packet for that
//! subscriber only, counted in `dropped_packets`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::{mpsc, watch};
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::TrackLocalWriter;
use webrtc::track::track_remote::TrackRemote;

use super::keyframe::KeyframeThrottle;
use super::{ParticipantId, Source};
use crate::metrics::{inc, GaugeGuard, Metrics};

/// A forwarded packet, shared by every subscriber's queue.
pub(crate) type SharedPacket = Arc<Packet>;

/// One subscriber's queue for one up track.
pub(crate) struct Sink {
    tx: mpsc::Sender<SharedPacket>,
}

/// A published track as the room sees it.
pub(crate) struct UpTrack {
    pub publisher: ParticipantId,
    pub mid: String,
    pub source: Source,
    pub kind: &'static str,
    pub codec: RTCRtpCodecCapability,
    sinks: ArcSwap<Vec<Arc<Sink>>>,
    /// Capacity 1: requests that arrive while one is pending coalesce into it.
    keyframe_tx: mpsc::Sender<()>,
}

impl UpTrack {
    pub fn add_sink(&self, sink: &Arc<Sink>) {
        self.sinks.rcu(|list| {
            let mut next = Vec::with_capacity(list.len() + 1);
            next.extend(list.iter().cloned());
            next.push(sink.clone());
            next
        });
    }

    pub fn remove_sink(&self, sink: &Arc<Sink>) {
        self.sinks.rcu(|list| {
            list.iter()
                .filter(|s| !Arc::ptr_eq(s, sink))
                .cloned()
                .collect::<Vec<_>>()
        });
    }

    /// Asks the publisher for a keyframe (throttled by the track's keyframe task).
    pub fn request_keyframe(&self) {
        let _ = self.keyframe_tx.try_send(());
    }
}

/// Settings the forwarding tasks need.
#[derive(Clone)]
pub(crate) struct ForwardConfig {
    pub queue_packets: usize,
    pub keyframe_min_interval: Duration,
    pub metrics: Arc<Metrics>,
}

/// Creates the up track for `remote` and the futures of its reader and keyframe tasks; the
/// caller spawns them. The reader ends when the publisher's track ends (the connection closed or
/// the transceiver stopped); the keyframe task ends with it.
pub(crate) fn up_track(
    publisher: ParticipantId,
    mid: String,
    source: Source,
    remote: Arc<TrackRemote>,
    pc: Arc<RTCPeerConnection>,
    cfg: &ForwardConfig,
) -> (
    Arc<UpTrack>,
    impl std::future::Future<Output = ()> + Send + 'static,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (keyframe_tx, keyframe_rx) = mpsc::channel(1);
    let kind = match remote.kind() {
        webrtc::rtp_transceiver::rtp_codec::RTPCodecType::Audio => "audio",
        _ => "video",
    };
    let up = Arc::new(UpTrack {
        publisher,
        mid,
        source,
        kind,
        codec: remote.codec().capability,
        sinks: ArcSwap::from_pointee(Vec::new()),
        keyframe_tx,
    });
    let (ended_tx, ended_rx) = watch::channel(());
    let reader = read_up(up.clone(), remote.clone(), cfg.metrics.clone(), ended_tx);
    let keyframes = keyframe_task(
        keyframe_rx,
        ended_rx,
        pc,
        remote.ssrc(),
        cfg.keyframe_min_interval,
        cfg.metrics.clone(),
    );
    (up, reader, keyframes)
}

async fn read_up(
    up: Arc<UpTrack>,
    remote: Arc<TrackRemote>,
    metrics: Arc<Metrics>,
    _ended: watch::Sender<()>,
) {
    let _gauge = GaugeGuard::new(&metrics, |m| &m.published_tracks);
    let mut buf = vec![0u8; 1500];
    loop {
        let mut pkt = match remote.read(&mut buf).await {
            Ok((pkt, _)) => pkt,
            Err(e) => {
                tracing::debug!(publisher = %up.publisher, mid = %up.mid, error = %e, "up track ended");
                break;
            }
        };
        let sinks = up.sinks.load();
        if sinks.is_empty() {
            continue;
        }
        // Header extension ids are per connection: the publisher's mean nothing downstream.
        pkt.header.extension = false;
        pkt.header.extension_profile = 0;
        pkt.header.extensions.clear();
        let pkt = Arc::new(pkt);
        for sink in sinks.iter() {
            if let Err(mpsc::error::TrySendError::Full(_)) = sink.tx.try_send(pkt.clone()) {
                inc(&metrics.dropped_packets);
            }
        }
    }
}

/// Sends PLIs upstream, at most one per `min_interval`; a request inside the interval waits for
/// its end rather than being lost.
async fn keyframe_task(
    mut requests: mpsc::Receiver<()>,
    mut ended: watch::Receiver<()>,
    pc: Arc<RTCPeerConnection>,
    media_ssrc: u32,
    min_interval: Duration,
    metrics: Arc<Metrics>,
) {
    let mut throttle = KeyframeThrottle::new(min_interval);
    loop {
        tokio::select! {
            r = requests.recv() => if r.is_none() { break },
            _ = ended.changed() => break,
        }
        let wait = throttle.delay(Instant::now());
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = ended.changed() => break,
            }
        }
        throttle.sent(Instant::now());
        let pli = PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        };
        if pc.write_rtcp(&[Box::new(pli)]).await.is_ok() {
            inc(&metrics.plis_sent);
        }
    }
}

/// One subscription's local track and the futures of its writer and RTCP reader tasks.
pub(crate) struct DownTrack {
    pub local: Arc<TrackLocalStaticRTP>,
    pub sink: Arc<Sink>,
    rx: mpsc::Receiver<SharedPacket>,
}

impl DownTrack {
    pub fn new(up: &UpTrack, queue_packets: usize) -> Self {
        let (tx, rx) = mpsc::channel(queue_packets);
        let local = Arc::new(TrackLocalStaticRTP::new(
            up.codec.clone(),
            format!("{}-{}", up.publisher, up.mid),
            up.publisher.clone(),
        ));
        Self {
            local,
            sink: Arc::new(Sink { tx }),
            rx,
        }
    }

    /// Writes queued packets until the sink is removed from its up track (the queue closes).
    /// Counters are added once per burst, not per packet, to keep shared cache lines quiet.
    pub async fn write_loop(self, metrics: Arc<Metrics>) {
        let Self {
            local,
            sink,
            mut rx,
        } = self;
        drop(sink);
        let mut batch = Vec::with_capacity(64);
        while rx.recv_many(&mut batch, 64).await > 0 {
            let (mut packets, mut bytes) = (0u64, 0u64);
            for pkt in batch.drain(..) {
                if let Ok(n) = local.write_rtp(&pkt).await {
                    if n > 0 {
                        packets += 1;
                        bytes += pkt.payload.len() as u64;
                    }
                }
            }
            metrics
                .forwarded_packets
                .fetch_add(packets, Ordering::Relaxed);
            metrics.forwarded_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

/// Reads RTCP from a subscriber's sender until it stops: PLI/FIR go upstream (throttled) to
/// the up track the sender carries at the time (`up`: its m-line is recycled across
/// subscriptions), NACKs are counted (the responder interceptor answers them). Reading is what
/// keeps the NACK and report interceptors running.
pub(crate) async fn read_down_rtcp(
    sender: Arc<RTCRtpSender>,
    up: Arc<ArcSwapOption<UpTrack>>,
    metrics: Arc<Metrics>,
) {
    while let Ok((packets, _)) = sender.read_rtcp().await {
        for p in packets {
            let any = p.as_any();
            if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                inc(&metrics.plis_received);
                if let Some(up) = &*up.load() {
                    up.request_keyframe();
                }
            } else if any.is::<TransportLayerNack>() {
                inc(&metrics.nacks_received);
            }
        }
    }
}
