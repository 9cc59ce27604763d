//! What a headless participant received, per (publisher, source): packet counts, every
//! packet's (sequence, payload fingerprint) when recording, first packet and first keyframe
//! times, and when the stream was first offered.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::track::track_remote::TrackRemote;

use super::codec::{payload_hash, VideoCodec};
use super::Shared;
use crate::sfu::Source;
use crate::sync::lock;

/// Everything received, keyed by (publisher id, source).
pub type Received = BTreeMap<(String, Source), StreamRecord>;

#[derive(Debug, Clone, Default)]
pub struct StreamRecord {
    pub mime_type: String,
    pub packets: u64,
    pub bytes: u64,
    /// (sequence number, payload fingerprint) in arrival order, when recording.
    pub log: Vec<(u16, u64)>,
    /// When a subscriber offer first listed this stream.
    pub offered_at: Option<Instant>,
    pub first_packet_at: Option<Instant>,
    pub first_keyframe_at: Option<Instant>,
    pub keyframes: u64,
    /// RTCP sender reports for this stream, when the peer reads them
    /// (`PeerOptions::read_sender_reports`), and the packet count the last one carried.
    pub sender_reports: u64,
    pub last_sr_packet_count: Option<u32>,
}

/// Reads the RTCP of one received track's receiver and counts its sender reports, until the
/// receiver ends.
pub(crate) async fn read_sender_reports(
    shared: Arc<Shared>,
    receiver: Arc<webrtc::rtp_transceiver::rtp_receiver::RTCRtpReceiver>,
    mid: String,
) {
    use webrtc::rtcp::sender_report::SenderReport;
    while let Ok((packets, _)) = receiver.read_rtcp().await {
        for p in packets {
            let Some(sr) = p.as_any().downcast_ref::<SenderReport>() else {
                continue;
            };
            let key = lock(&shared.mids).get(&mid).cloned();
            if let Some(key) = key {
                let mut received = lock(&shared.received);
                let rec = received.entry(key).or_default();
                rec.sender_reports += 1;
                rec.last_sr_packet_count = Some(sr.packet_count);
            }
        }
    }
}

pub(crate) trait ReceivedExt {
    fn offered(&mut self, participant: &str, source: Source, at: Instant);
}

impl ReceivedExt for Received {
    fn offered(&mut self, participant: &str, source: Source, at: Instant) {
        self.entry((participant.to_string(), source))
            .or_default()
            .offered_at
            .get_or_insert(at);
    }
}

/// While a video track has shown no keyframe, how often to ask for one (a browser's receiver
/// asks when it cannot decode; without it a keyframe lost as the stream's very first packet,
/// which no NACK can name, would never be replaced).
const KEYFRAME_ASK: Duration = Duration::from_millis(500);

/// Reads one received track until it ends, recording every packet. `pc` (the subscriber
/// connection) carries the keyframe requests.
pub(crate) async fn read_track(
    shared: Arc<Shared>,
    track: Arc<TrackRemote>,
    mid: String,
    pc: Weak<RTCPeerConnection>,
) {
    let lookup = || {
        let version = shared.mids_version.load(Ordering::Acquire);
        let mids = lock(&shared.mids);
        mids.get(&mid).map(|(p, s)| ((p.clone(), *s), version))
    };
    let Some((mut key, mut version)) = lookup() else {
        tracing::warn!(%mid, "received a track no offer described");
        return;
    };
    tracing::debug!(%mid, ssrc = track.ssrc(), participant = %key.0, source = ?key.1, "receiving track");
    let mime = track.codec().capability.mime_type;
    let video = VideoCodec::from_mime(&mime);
    let mut paused = shared.paused.subscribe();
    let mut buf = vec![0u8; 1500];
    let mut got_keyframe = false;
    let mut asked: Option<Instant> = None;
    loop {
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let pkt = match track.read(&mut buf).await {
            Ok((pkt, _)) => pkt,
            Err(e) => {
                tracing::debug!(%mid, ssrc = track.ssrc(), error = %e, "received track ended");
                return;
            }
        };
        if shared.mids_version.load(Ordering::Acquire) != version {
            // A new offer may have given this m-line (the server recycles them) to another track.
            if let Some(found) = lookup() {
                (key, version) = found;
            }
        }
        let now = Instant::now();
        let keyframe = video.is_some_and(|c| c.is_keyframe_start(&pkt.payload));
        got_keyframe |= keyframe;
        if video.is_some() && !got_keyframe && asked.is_none_or(|at| now - at >= KEYFRAME_ASK) {
            asked = Some(now);
            if let Some(pc) = pc.upgrade() {
                let pli = PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc: track.ssrc(),
                };
                let _ = pc.write_rtcp(&[Box::new(pli)]).await;
            }
        }
        if let Some(hook) = &shared.on_packet {
            hook(&key.0, key.1, &pkt, now);
        }
        {
            let mut received = lock(&shared.received);
            let rec = received.entry(key.clone()).or_default();
            if rec.mime_type.is_empty() {
                rec.mime_type = mime.clone();
            }
            rec.packets += 1;
            rec.bytes += pkt.payload.len() as u64;
            rec.first_packet_at.get_or_insert(now);
            if keyframe {
                rec.keyframes += 1;
                rec.first_keyframe_at.get_or_insert(now);
            }
            if shared.record {
                rec.log
                    .push((pkt.header.sequence_number, payload_hash(&pkt.payload)));
            }
        }
        shared.changed.notify_waiters();
    }
}
