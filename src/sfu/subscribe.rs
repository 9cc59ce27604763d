//! The subscriber side of a participant: its subscriptions, reconciled with what the room's core
//! says it should receive (a diff, webrtc-rs/sfu-style), and the server's offers.
//!
//! m-lines are recycled: when a subscription ends its transceiver goes `inactive` and keeps its
//! m-line, and the next subscription of the same kind takes it over (`replace_track` to the new
//! local track, direction back to `sendonly`). An SDP therefore has as many m-lines as the peak
//! number of tracks received at once, not one per track ever forwarded. The old local track
//! stays bound while the m-line is inactive (nothing writes to it): webrtc-rs cannot rebind a
//! sender whose track was set to `None`, and its SSRC lines keep the client's receiver alive.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::peer_connection::offer_answer_options::RTCOfferOptions;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::{RTCRtpTransceiver, RTCRtpTransceiverInit};

use super::adapt::DownEntry;
use super::checks;
use super::down::{read_down_rtcp, Bound, DownTrack};
use super::forward::{Sink, UpTrack};
use super::ice_start::wait_gathered;
use super::peer::Peer;
use super::rewrite::Rewriter;
use super::room::{Event, TrackKey};
use super::{PcKind, SfuError, SfuEvent, TrackInfo};
use crate::metrics::GaugeGuard;

/// One subscriber transceiver (one m-line), kept for the connection's life.
struct Slot {
    transceiver: Arc<RTCRtpTransceiver>,
    sender: Arc<RTCRtpSender>,
    kind: &'static str,
    /// What this m-line carries now, for its RTCP reader (PLIs go to its layer).
    bound: Arc<ArcSwapOption<Bound>>,
    /// The m-line's one outgoing stream, continued across every track it carries.
    rewriter: Arc<Mutex<Rewriter>>,
}

impl Slot {
    /// The m-line's mid ("" before negotiation gave it one).
    fn mid(&self) -> String {
        self.transceiver
            .mid()
            .map(|m| m.to_string())
            .unwrap_or_default()
    }
}

struct Subscription {
    up: Arc<UpTrack>,
    sink: Arc<Sink>,
    slot: Slot,
    /// Packets flow only once the answer bound the sender.
    started: bool,
    _gauge: GaugeGuard,
}

#[derive(Default)]
pub(crate) struct SubState {
    offer_pending: bool,
    subs: HashMap<TrackKey, Subscription>,
    /// Inactive m-lines waiting for a track of their kind.
    free: Vec<Slot>,
    pub early_candidates: Vec<RTCIceCandidateInit>,
}

/// How long a restart offer waits for the new host candidates (a few ms on a muxed socket).
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn key_of(up: &UpTrack) -> TrackKey {
    (up.publisher.clone(), up.mid.clone())
}

impl Peer {
    /// Brings the subscriptions in line with the room's matrix and offers the result.
    pub(super) async fn reconcile(self: &Arc<Self>) -> Result<(), SfuError> {
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
        let wanted = self.shared.rooms.wanted(&self.room, &self.id);
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
                sub.slot.bound.store(None);
                sub.slot
                    .transceiver
                    .set_direction(RTCRtpTransceiverDirection::Inactive)
                    .await;
                st.free.push(sub.slot);
            }
        }
        for up in wanted {
            if st.subs.contains_key(&key_of(&up)) {
                continue;
            }
            let down = DownTrack::new(&up, self.shared.fwd.queue_packets, up.top_layer());
            let slot = match st.free.iter().position(|s| s.kind == up.kind) {
                Some(i) => {
                    let slot = st.free.swap_remove(i);
                    slot.sender
                        .replace_track(Some(down.local.clone()))
                        .await
                        .map_err(internal)?;
                    slot.transceiver
                        .set_direction(RTCRtpTransceiverDirection::Sendonly)
                        .await;
                    slot
                }
                None => self.new_slot(&down, up.kind).await.map_err(internal)?,
            };
            let sink = down.sink.clone();
            slot.bound.store(Some(Arc::new(Bound {
                up: up.clone(),
                sink: sink.clone(),
            })));
            self.spawn(down.write_loop(
                slot.rewriter.clone(),
                self.downlink.clone(),
                self.shared.metrics.clone(),
            ));
            st.subs.insert(
                key_of(&up),
                Subscription {
                    up,
                    sink,
                    slot,
                    started: false,
                    _gauge: GaugeGuard::new(&self.shared.metrics, |m| &m.subscriptions),
                },
            );
            changed = true;
        }
        // Nothing to restart before the first answer: that negotiation starts ICE anyway.
        let restart = self.sub_ice_restart.swap(false, Ordering::AcqRel)
            && self.subscriber.current_remote_description().await.is_some();
        if !changed && !restart {
            return Ok(());
        }
        let options = restart.then(|| RTCOfferOptions {
            ice_restart: true,
            ..Default::default()
        });
        let offer = self
            .subscriber
            .create_offer(options)
            .await
            .map_err(internal)?;
        self.subscriber
            .set_local_description(offer)
            .await
            .map_err(internal)?;
        if restart {
            // The restart offer carries the new candidates: the client drops any trickled
            // before it applies the offer.
            wait_gathered(&self.subscriber, GATHER_WAIT).await;
            tracing::info!(participant = %self.id, room = %self.room, "subscriber ICE restart offered");
        }
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
                mid: s.slot.mid(),
                participant: s.up.publisher.clone(),
                source: s.up.source,
                kind: s.up.kind.to_string(),
            })
            .collect();
        tracks.sort_by(|a, b| a.mid.cmp(&b.mid));
        self.set_downs(
            st.subs
                .values()
                .map(|s| DownEntry {
                    mid: s.slot.mid(),
                    up: s.up.clone(),
                    sink: s.sink.clone(),
                })
                .collect(),
        );
        st.offer_pending = true;
        drop(st);
        self.start_connect_timer(PcKind::Subscriber);
        let _ = self
            .events
            .send(SfuEvent::SubscribeOffer { sdp, tracks })
            .await;
        Ok(())
    }

    /// A new m-line for `down`, with the RTCP reader it keeps for the connection's life.
    async fn new_slot(&self, down: &DownTrack, kind: &'static str) -> Result<Slot, webrtc::Error> {
        let transceiver = self
            .subscriber
            .add_transceiver_from_track(
                down.local.clone(),
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendonly,
                    send_encodings: vec![],
                }),
            )
            .await?;
        // Every m-line offers every codec, no per-track codec preferences: webrtc-rs fixes a
        // connection's video codecs from its *first* video m-line and never revisits them,
        // so a first subscription offered as VP8 only would leave no codec for a later
        // H.264 or VP9 publisher. The local track binds to its own codec within what the
        // subscriber accepted; a subscriber that cannot decode it gets nothing for it.
        let sender = transceiver.sender().await;
        // The m-line keeps its SSRC across the tracks it carries; each publisher numbers its
        // packets from its own random start, so a switch would jump the sequence, and a jump
        // backwards looks like a replay to the client's SRTP (measured: the 5th recycled m-line
        // carried nothing). The m-line's rewriter continues sequence, timestamps and picture
        // ids at every switch, before `write_rtp`, so the NACK responder keeps the numbers the
        // client sees (webrtc-rs's own transformer renumbered after it).
        let bound = Arc::new(ArcSwapOption::empty());
        self.spawn(read_down_rtcp(
            sender.clone(),
            bound.clone(),
            self.downlink.clone(),
            self.shared.metrics.clone(),
        ));
        Ok(Slot {
            transceiver,
            sender,
            kind,
            bound,
            rewriter: Arc::new(Mutex::new(Rewriter::new())),
        })
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
        let mut started = Vec::new();
        for (key, sub) in st.subs.iter_mut().filter(|(_, s)| !s.started) {
            sub.started = true;
            sub.up.add_sink(&sub.sink);
            started.push(key.clone());
        }
        drop(st);
        if connected {
            self.report_started(started);
        }
        if self.dirty.swap(false, Ordering::AcqRel) {
            self.request_reconcile();
        }
        Ok(())
    }

    /// The subscriber connection came up: every bound subscription needs its keyframe now.
    pub(super) async fn restart_started(&self) {
        let started: Vec<TrackKey> = {
            let st = self.sub.lock().await;
            st.subs
                .iter()
                .filter(|(_, s)| s.started)
                .map(|(k, _)| k.clone())
                .collect()
        };
        self.report_started(started);
    }

    /// Tells the room these subscriptions started; it asks for their keyframes.
    fn report_started(&self, tracks: Vec<TrackKey>) {
        for track in tracks {
            let subscriber = self.id.clone();
            self.shared
                .rooms
                .apply(&self.room, Event::Started { subscriber, track });
        }
    }

    /// Ends every subscription (the participant is leaving).
    pub(super) async fn unsubscribe_all(&self) {
        let mut st = self.sub.lock().await;
        for (_, sub) in st.subs.drain() {
            sub.up.remove_sink(&sub.sink);
        }
        st.free.clear();
        drop(st);
        self.set_downs(Vec::new());
    }
}
