//! Down tracks: one subscription's local track, its writer, and the RTCP reader of its m-line.
//!
//! The writer rewrites every packet (`rewrite.rs`) *before* `write_rtp`, with the rewriter of
//! the m-line, so the stream a subscriber sees on one m-line is continuous across layer
//! switches, cuts and the tracks a recycled m-line carries one after another; and because the
//! NACK responder sits after `write_rtp`, it keeps the numbers the subscriber NACKs (webrtc-rs's
//! own sequence transformer renumbered after the responder, so NACKs on a recycled m-line's
//! second track named packets the responder did not hold).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use tokio::sync::mpsc;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use webrtc::rtcp::receiver_report::ReceiverReport;
use webrtc::rtcp::reception_report::ReceptionReport;
use webrtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use webrtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;

use super::codec::VideoCodec;
use super::estimate::Estimator;
use super::forward::{Queued, Sink, UpTrack, NO_LAYER};
use super::rewrite::Rewriter;
use crate::metrics::{inc, Metrics};
use crate::sync::lock;

/// One subscriber connection's downlink: what was sent on it and what it is estimated to
/// carry, shared by all of its subscriptions.
pub(crate) struct Downlink {
    pub sent_bytes: AtomicU64,
    pub estimator: Mutex<Estimator>,
}

impl Downlink {
    pub fn new(initial_bps: u64, min_bps: u64, max_bps: u64) -> Self {
        Self {
            sent_bytes: AtomicU64::new(0),
            estimator: Mutex::new(Estimator::new(
                initial_bps,
                min_bps,
                max_bps,
                Instant::now(),
            )),
        }
    }

    pub fn estimate(&self) -> u64 {
        lock(&self.estimator).estimate(Instant::now())
    }
}

/// What an m-line carries now: the up track and this subscription's sink on it.
pub(crate) struct Bound {
    pub up: Arc<UpTrack>,
    pub sink: Arc<Sink>,
}

/// One subscription's local track, its sink, and its queue.
pub(crate) struct DownTrack {
    pub local: Arc<TrackLocalStaticRTP>,
    pub sink: Arc<Sink>,
    rx: mpsc::Receiver<Queued>,
    clock_rate: u32,
    vp8: bool,
}

impl DownTrack {
    /// `target`: the layer to start with (the top one until the selector says otherwise).
    pub fn new(up: &UpTrack, queue_packets: usize, target: u8) -> Self {
        let (tx, rx) = mpsc::channel(queue_packets);
        let local = Arc::new(TrackLocalStaticRTP::new(
            up.codec.clone(),
            format!("{}-{}", up.publisher, up.mid),
            up.publisher.clone(),
        ));
        Self {
            local,
            sink: Arc::new(up.new_sink(tx, target)),
            rx,
            clock_rate: up.codec.clock_rate.max(1),
            vp8: VideoCodec::from_mime(&up.codec.mime_type) == Some(VideoCodec::Vp8),
        }
    }

    /// Writes queued packets until the sink is removed from its up track (the queue closes).
    /// Counters are added once per burst, not per packet, to keep shared cache lines quiet.
    pub async fn write_loop(
        self,
        rewriter: Arc<Mutex<Rewriter>>,
        downlink: Arc<Downlink>,
        metrics: Arc<Metrics>,
    ) {
        let Self {
            local,
            sink,
            mut rx,
            clock_rate,
            vp8,
        } = self;
        drop(sink);
        let mut batch = Vec::with_capacity(64);
        while rx.recv_many(&mut batch, 64).await > 0 {
            let (mut packets, mut bytes) = (0u64, 0u64);
            for (tag, pkt) in batch.drain(..) {
                let h = &pkt.header;
                let out = lock(&rewriter).rewrite(
                    tag,
                    h.sequence_number,
                    h.timestamp,
                    &pkt.payload,
                    vp8,
                    clock_rate,
                    Instant::now(),
                );
                let Some(out) = out else { continue };
                let sent = [send_time()];
                let written = if out.unchanged {
                    local.write_rtp_with_extensions(&pkt, &sent).await
                } else {
                    let mut p = (*pkt).clone();
                    p.header.sequence_number = out.seq;
                    p.header.timestamp = out.ts;
                    if let Some(payload) = out.payload {
                        p.payload = payload.into();
                    }
                    local.write_rtp_with_extensions(&p, &sent).await
                };
                if let Ok(n) = written {
                    if n > 0 {
                        packets += 1;
                        bytes += pkt.payload.len() as u64;
                    }
                }
            }
            downlink.sent_bytes.fetch_add(bytes, Ordering::Relaxed);
            metrics
                .forwarded_packets
                .fetch_add(packets, Ordering::Relaxed);
            metrics.forwarded_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

/// The `abs-send-time` extension with the time the server sends the packet (written only where
/// the subscriber negotiated it). A browser's receive-side bandwidth estimator, the one behind
/// the REMB it sends, compares these with arrival times. Without it, it falls back to the RTP
/// timestamps, which carry the publisher's capture and pacing jitter and the server's
/// forwarding delay: measured, Chromium's REMB for a large tile on loopback fell from ~310 to
/// ~60 kbit/s within seconds and held it on the lowest layer.
fn send_time() -> webrtc::rtp::extension::HeaderExtension {
    webrtc::rtp::extension::HeaderExtension::AbsSendTime(
        webrtc::rtp::extension::abs_send_time_extension::AbsSendTimeExtension::new(
            std::time::SystemTime::now(),
        ),
    )
}

/// Receiver reports turned into (received, expected) since the previous report, per SSRC: the
/// loss a subscriber saw, for the estimator (RFC 3550 §6.4.1's cumulative counters).
#[derive(Default)]
struct ReportDeltas {
    /// ssrc → (extended highest sequence, cumulative lost) at the last report.
    last: std::collections::HashMap<u32, (u32, u32)>,
}

impl ReportDeltas {
    fn update(&mut self, r: &ReceptionReport) -> Option<(u32, u32)> {
        let now = (r.last_sequence_number, r.total_lost);
        let before = self.last.insert(r.ssrc, now)?;
        let expected = now.0.wrapping_sub(before.0);
        // A counter that went backwards (a new stream on the m-line) or a huge jump says
        // nothing about loss.
        if expected == 0 || expected > 1 << 15 {
            return None;
        }
        let lost = now.1.saturating_sub(before.1).min(expected);
        Some((expected - lost, expected))
    }
}

/// Reads RTCP from a subscriber's sender until it stops: PLI/FIR go upstream (throttled) to
/// the layer the m-line carries at the time (`bound`: its m-line is recycled across
/// subscriptions); receiver reports, REMB and transport-wide feedback (when some future
/// sender numbers packets for it) feed the downlink estimate; NACKs are
/// counted (the responder interceptor answers them). Reading is what keeps the NACK and
/// report interceptors running.
pub(crate) async fn read_down_rtcp(
    sender: Arc<RTCRtpSender>,
    bound: Arc<ArcSwapOption<Bound>>,
    downlink: Arc<Downlink>,
    metrics: Arc<Metrics>,
) {
    let mut reports = ReportDeltas::default();
    while let Ok((packets, _)) = sender.read_rtcp().await {
        for p in packets {
            let any = p.as_any();
            if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                inc(&metrics.plis_received);
                if let Some(b) = &*bound.load() {
                    let layer = match b.sink.current() {
                        NO_LAYER => b.sink.target(),
                        current => current,
                    };
                    b.up.request_layer_keyframe(layer);
                }
            } else if any.is::<TransportLayerNack>() {
                inc(&metrics.nacks_received);
            } else if let Some(cc) = any.downcast_ref::<TransportLayerCc>() {
                let total = u32::from(cc.packet_status_count);
                let received = cc.recv_deltas.len() as u32;
                let sent = downlink.sent_bytes.load(Ordering::Relaxed);
                lock(&downlink.estimator).on_feedback(Instant::now(), received, total, sent);
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                for r in &rr.reports {
                    let Some((received, total)) = reports.update(r) else {
                        continue;
                    };
                    let sent = downlink.sent_bytes.load(Ordering::Relaxed);
                    lock(&downlink.estimator).on_feedback(Instant::now(), received, total, sent);
                }
            } else if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
                lock(&downlink.estimator).on_remb(Instant::now(), remb.bitrate as u64);
            }
        }
    }
}
