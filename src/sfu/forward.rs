//! Forwarding: one *up* track per published track, read once by its reader task and fanned
//! out to one *down* track per subscriber, each written by its own task from a bounded queue.
//!
//! The packet path takes no lock: the reader loads the subscriber list from an `ArcSwap`
//! (writers replace the whole list, which happens only on (un)subscribe), wraps each packet in
//! one `Arc` and `try_send`s it to every queue. A full queue drops that packet for that
//! subscriber only, counted in `dropped_packets`. Audio loses that one packet. Video would be
//! undecodable until the next keyframe anyway, so the subscriber is *cut*: it gets nothing more
//! until a keyframe starts (`codec`), and the publisher is asked for one (throttled by the
//! track's keyframe task). Only the track's reader touches a sink's cut flag, so it is a plain
//! relaxed atomic.

use std::sync::atomic::{AtomicBool, Ordering};
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

use super::codec::VideoCodec;
use super::keyframe::KeyframeThrottle;
use super::{ParticipantId, Source};
use crate::metrics::{inc, GaugeGuard, Metrics};

/// A forwarded packet, shared by every subscriber's queue.
pub(crate) type SharedPacket = Arc<Packet>;

/// One subscriber's queue for one up track.
pub(crate) struct Sink {
    tx: mpsc::Sender<SharedPacket>,
    /// Video only: a packet was dropped and nothing is queued until a keyframe starts.
    cut: Option<AtomicBool>,
}

/// What [`Sink::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Push {
    Queued,
    /// Dropped: the queue was full (audio), or the video is cut and this is no keyframe start.
    Dropped,
    /// The queue was full: the video is cut from here to the next keyframe, or the keyframe
    /// that would have ended a cut was lost. A keyframe is needed.
    NeedsKeyframe,
}

impl Sink {
    fn new(tx: mpsc::Sender<SharedPacket>, video: bool) -> Self {
        Self {
            tx,
            cut: video.then(|| AtomicBool::new(false)),
        }
    }

    /// Queues `pkt` unless the queue is full or the video is cut; `keyframe_start` is asked
    /// only while cut. Called by the track's reader only.
    fn push(&self, pkt: &SharedPacket, keyframe_start: &mut impl FnMut() -> bool) -> Push {
        let cut = self.cut.as_ref();
        let was_cut = cut.is_some_and(|c| c.load(Ordering::Relaxed));
        if was_cut && !keyframe_start() {
            return Push::Dropped;
        }
        match (self.tx.try_send(pkt.clone()), cut) {
            (Ok(()), Some(c)) if was_cut => {
                c.store(false, Ordering::Relaxed);
                Push::Queued
            }
            (Ok(()), _) => Push::Queued,
            (Err(mpsc::error::TrySendError::Full(_)), Some(c)) => {
                c.store(true, Ordering::Relaxed);
                Push::NeedsKeyframe
            }
            (Err(mpsc::error::TrySendError::Full(_)), None) => Push::Dropped,
            // The subscriber is going away; its list entry is about to be removed.
            (Err(mpsc::error::TrySendError::Closed(_)), _) => Push::Queued,
        }
    }
}

/// A published track as the room sees it.
pub(crate) struct UpTrack {
    pub publisher: ParticipantId,
    pub mid: String,
    pub source: Source,
    pub kind: &'static str,
    pub codec: RTCRtpCodecCapability,
    /// Set for the video codecs whose keyframes we can find; cuts need it.
    video: Option<VideoCodec>,
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
        video: VideoCodec::from_mime(&remote.codec().capability.mime_type),
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
        // Parsed at most once per packet, and only when some subscriber is cut.
        let mut keyframe: Option<bool> = None;
        let mut keyframe_start = || {
            *keyframe.get_or_insert_with(|| {
                up.video
                    .is_some_and(|codec| codec.is_keyframe_start(&pkt.payload))
            })
        };
        for sink in sinks.iter() {
            match sink.push(&pkt, &mut keyframe_start) {
                Push::Queued => {}
                Push::Dropped => inc(&metrics.dropped_packets),
                Push::NeedsKeyframe => {
                    inc(&metrics.dropped_packets);
                    inc(&metrics.video_resyncs);
                    up.request_keyframe();
                }
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
            sink: Arc::new(Sink::new(tx, up.video.is_some())),
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn packet(seq: u16) -> SharedPacket {
        let mut p = Packet::default();
        p.header.sequence_number = seq;
        p.payload = Bytes::from_static(&[0]);
        Arc::new(p)
    }

    #[test]
    fn full_video_queue_cuts_until_a_keyframe_fits() {
        let (tx, mut rx) = mpsc::channel(1);
        let sink = Sink::new(tx, true);
        let (mut key, mut delta) = (|| true, || false);
        assert_eq!(sink.push(&packet(1), &mut delta), Push::Queued);
        assert_eq!(sink.push(&packet(2), &mut delta), Push::NeedsKeyframe);
        // Room again, but a delta frame cannot be decoded after the cut.
        rx.try_recv().unwrap();
        assert_eq!(sink.push(&packet(3), &mut delta), Push::Dropped);
        assert_eq!(sink.push(&packet(4), &mut key), Push::Queued);
        assert_eq!(sink.push(&packet(5), &mut delta), Push::NeedsKeyframe);
        rx.try_recv().unwrap();
        assert_eq!(sink.push(&packet(6), &mut delta), Push::Dropped);
        assert!(rx.try_recv().is_err(), "nothing after the keyframe start");
    }

    #[test]
    fn keyframe_start_lost_to_a_full_queue_asks_again() {
        let (tx, mut rx) = mpsc::channel(1);
        let sink = Sink::new(tx, true);
        let (mut key, mut delta) = (|| true, || false);
        sink.push(&packet(1), &mut delta);
        assert_eq!(sink.push(&packet(2), &mut delta), Push::NeedsKeyframe);
        assert_eq!(sink.push(&packet(3), &mut key), Push::NeedsKeyframe);
        rx.try_recv().unwrap();
        assert_eq!(sink.push(&packet(4), &mut key), Push::Queued);
        assert_eq!(sink.push(&packet(5), &mut delta), Push::NeedsKeyframe);
    }

    #[test]
    fn full_audio_queue_drops_single_packets() {
        let (tx, mut rx) = mpsc::channel(1);
        let sink = Sink::new(tx, false);
        let mut never = || -> bool { panic!("audio is never parsed") };
        assert_eq!(sink.push(&packet(1), &mut never), Push::Queued);
        assert_eq!(sink.push(&packet(2), &mut never), Push::Dropped);
        rx.try_recv().unwrap();
        assert_eq!(sink.push(&packet(3), &mut never), Push::Queued);
    }
}
