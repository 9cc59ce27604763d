//! Publishing simulcast as a browser does: one send-only transceiver with an encoding per layer
//! (`add_encoding`), each layer sent by its own loop, and the server's `layers` event obeyed
//! (a paused layer sends nothing; on resume it starts with a keyframe, as an encoder does when
//! `encodings[i].active` turns true again).
//!
//! Each layer also keeps what the server's receiver reports say arrived of it (the highest
//! sequence number), so a test can see a pause at the server's end, not only at ours.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtcp::receiver_report::ReceiverReport;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::{RTCRtpTransceiver, RTCRtpTransceiverInit};
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::TrackLocalWriter;

use super::media::{self, SentLog, SimLayer};

/// One published layer's switch and counters.
pub struct LayerState {
    pub rid: &'static str,
    /// Whether the layer sends (the server's latest `layers` word; on at start).
    active: watch::Sender<bool>,
    /// Packets this layer sent.
    sent: AtomicU64,
    /// The extended highest sequence number the server reported receiving, plus one (0: no
    /// report yet).
    server_highest: AtomicU64,
}

/// A snapshot of one layer, for tests and the load tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerStats {
    pub rid: &'static str,
    pub active: bool,
    pub sent: u64,
    /// From the server's receiver reports: the highest sequence number it has of this layer
    /// (extended), or `None` before its first report.
    pub server_highest_seq: Option<u64>,
}

impl LayerState {
    fn new(rid: &'static str) -> Arc<Self> {
        Arc::new(Self {
            rid,
            active: watch::channel(true).0,
            sent: AtomicU64::new(0),
            server_highest: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> LayerStats {
        let highest = self.server_highest.load(Ordering::Relaxed);
        LayerStats {
            rid: self.rid,
            active: *self.active.borrow(),
            sent: self.sent.load(Ordering::Relaxed),
            server_highest_seq: highest.checked_sub(1),
        }
    }
}

/// The simulcast layers of every published track, by the track's mid.
pub type LayerTable = HashMap<String, Vec<Arc<LayerState>>>;

/// Applies a `layers` event: rids it names are switched on or off; unknown mids and rids are
/// ignored (the track may just have gone).
pub fn apply_layers(table: &LayerTable, mid: &str, active: &BTreeMap<String, bool>) {
    let Some(layers) = table.get(mid) else {
        return;
    };
    for layer in layers {
        if let Some(&on) = active.get(layer.rid) {
            layer
                .active
                .send_if_modified(|a| std::mem::replace(a, on) != on);
        }
    }
}

/// Adds one send-only transceiver with an encoding per layer, and the send loop and RTCP reader
/// of each layer (pushed onto `tasks`). Returns the transceiver and the layers' states.
pub(crate) async fn publish(
    publisher: &Arc<RTCPeerConnection>,
    codec: RTCRtpCodecCapability,
    (id, n): (&str, usize),
    layers: &[SimLayer],
    log: &Arc<SentLog>,
    stop: &watch::Sender<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<(Arc<RTCRtpTransceiver>, Vec<Arc<LayerState>>)> {
    let tracks: Vec<Arc<TrackLocalStaticRTP>> = layers
        .iter()
        .map(|l| {
            Arc::new(TrackLocalStaticRTP::new_with_rid(
                codec.clone(),
                format!("{id}-{n}"),
                l.rid.to_string(),
                id.to_string(),
            ))
        })
        .collect();
    let first = tracks.first().ok_or_else(|| anyhow::anyhow!("no layers"))?;
    let transceiver = publisher
        .add_transceiver_from_track(
            first.clone(),
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                send_encodings: vec![],
            }),
        )
        .await?;
    let sender = transceiver.sender().await;
    for t in &tracks[1..] {
        sender.add_encoding(t.clone()).await?;
    }
    let ssrcs: HashMap<String, u32> = sender
        .get_parameters()
        .await
        .encodings
        .into_iter()
        .map(|e| (e.rid.to_string(), e.ssrc))
        .collect();
    let mut states = Vec::new();
    for (layer, track) in layers.iter().zip(tracks) {
        let state = LayerState::new(layer.rid);
        let keyframe = Arc::new(AtomicBool::new(true));
        let ssrc = ssrcs.get(layer.rid).copied();
        let (sender, flag, log2, state2) =
            (sender.clone(), keyframe.clone(), log.clone(), state.clone());
        tasks.push(tokio::spawn(async move {
            while let Ok((packets, _)) = sender.read_rtcp_simulcast(state2.rid).await {
                for p in packets {
                    on_rtcp(p.as_any(), ssrc, &state2, &flag, &log2);
                }
            }
        }));
        tasks.push(tokio::spawn(layer_loop(
            track,
            *layer,
            keyframe,
            state.clone(),
            log.clone(),
            stop.subscribe(),
        )));
        states.push(state);
    }
    Ok((transceiver, states))
}

/// One RTCP packet for a layer: a keyframe request, or the server's receiver report.
fn on_rtcp(
    any: &dyn std::any::Any,
    ssrc: Option<u32>,
    state: &LayerState,
    keyframe: &AtomicBool,
    log: &SentLog,
) {
    if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
        log.keyframe_requests.fetch_add(1, Ordering::Relaxed);
        keyframe.store(true, Ordering::Relaxed);
    } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
        for r in &rr.reports {
            if ssrc.is_none_or(|s| s == r.ssrc) {
                let highest = u64::from(r.last_sequence_number) + 1;
                state.server_highest.fetch_max(highest, Ordering::Relaxed);
            }
        }
    }
}

/// Sends one layer's synthetic frames on `track` until `stop`, while the layer is active: a
/// keyframe first, on every resume and whenever `keyframe` is set (a PLI for this layer).
/// Timestamps follow the wall clock, so a pause shows as the time it lasted.
async fn layer_loop(
    track: Arc<TrackLocalStaticRTP>,
    layer: SimLayer,
    keyframe: Arc<AtomicBool>,
    state: Arc<LayerState>,
    log: Arc<SentLog>,
    mut stop: watch::Receiver<bool>,
) {
    let mut active = state.active.subscribe();
    let mut seq: u16 = rand::random();
    let ts0: u32 = rand::random();
    let start = tokio::time::Instant::now();
    let pps = layer.packets_per_second.max(1);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / pps);
    keyframe.store(true, Ordering::Relaxed);
    for counter in 0u64.. {
        if !*active.borrow_and_update() {
            tokio::select! {
                on = active.wait_for(|a| *a) => if on.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
            keyframe.store(true, Ordering::Relaxed);
            tick.reset_immediately();
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
            // Paused between two ticks: go back to waiting.
            _ = active.wait_for(|a| !*a) => continue,
        }
        let key = keyframe.swap(false, Ordering::Relaxed);
        let ts = ts0.wrapping_add((start.elapsed().as_micros() * 90 / 1000) as u32);
        let pkt = media::simulcast_packet(&layer, key, counter, seq, ts);
        log.sent(&pkt, key);
        state.sent.fetch_add(1, Ordering::Relaxed);
        let _ = track.write_rtp(&pkt).await;
        seq = seq.wrapping_add(1);
    }
}
