//! The publisher side of a participant: the client's offers and the up tracks they bring.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::track::track_remote::TrackRemote;

use super::adapt::pause_task;
use super::checks;
use super::forward::{AudioLevelSink, UpTrack};
use super::ice_start::wait_gathered;
use super::peer::Peer;
use super::speech::SpeechDetector;
use super::{PcKind, PublishedTrack, SfuError, Source};
use crate::sync::lock;

/// `mid → source` as the client's *current* publish offer declares it. Each offer replaces the
/// whole map (it describes every track the client sends), so its size is bounded by what one
/// offer may carry (`max_tracks_per_participant`), however many re-offers a session makes.
#[derive(Debug, Default)]
pub(crate) struct Declared(HashMap<String, Source>);

impl Declared {
    pub fn replace(&mut self, tracks: Vec<PublishedTrack>) {
        self.0 = tracks.into_iter().map(|t| (t.mid, t.source)).collect();
    }

    pub fn source(&self, mid: &str) -> Option<Source> {
        self.0.get(mid).copied()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// The RFC 6464 audio level header extension.
pub(crate) const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

impl Peer {
    /// A remote track arrived: a new up track, or (simulcast: `on_track` fires once per rid)
    /// one more layer of the up track its mid already has.
    pub(super) fn on_track(self: &Arc<Self>, track: Arc<TrackRemote>, mid: String) {
        if self.is_closed() {
            return;
        }
        let rid = track.rid().to_string();
        let existing = (!rid.is_empty())
            .then(|| lock(&self.simulcast).get(&mid).and_then(Weak::upgrade))
            .flatten()
            .filter(|up| !up.is_ended() && !up.has_rid(&rid));
        let (up, fresh) = match existing {
            Some(up) => (up, false),
            None => {
                let source = lock(&self.declared)
                    .source(&mid)
                    .unwrap_or(match track.kind() {
                        RTPCodecType::Audio => Source::Microphone,
                        _ => Source::Camera,
                    });
                let up = UpTrack::new(self.id.clone(), mid.clone(), source, &track);
                (up, true)
            }
        };
        let audio_level = self.audio_level(&track);
        let (reader, keyframes) =
            up.add_layer(track, self.publisher.clone(), audio_level, &self.shared.fwd);
        tracing::info!(participant = %self.id, room = %self.room, %mid, %rid, source = ?up.source, kind = up.kind, codec = %up.codec.mime_type, "track published");
        if fresh {
            if up.simulcast {
                lock(&self.simulcast).insert(mid.clone(), Arc::downgrade(&up));
                self.spawn(pause_task(Arc::downgrade(&up), self.events.clone()));
            }
            self.shared.rooms.publish(&self.room, &up);
        }
        let peer = self.clone();
        self.spawn(async move {
            reader.await;
            if up.reader_ended() {
                peer.shared.rooms.unpublish(&peer.room, &up);
            }
        });
        self.spawn(keyframes);
    }

    /// Where `track`'s audio levels go, if it is audio with the extension negotiated: a
    /// speech detector whose changes the room announces.
    fn audio_level(self: &Arc<Self>, track: &TrackRemote) -> Option<AudioLevelSink> {
        if track.kind() != RTPCodecType::Audio {
            return None;
        }
        let ext = track
            .params()
            .header_extensions
            .iter()
            .find(|e| e.uri == AUDIO_LEVEL_URI)
            .and_then(|e| u8::try_from(e.id).ok())?;
        let detector = Mutex::new(SpeechDetector::new());
        let peer = Arc::downgrade(self);
        Some(AudioLevelSink {
            ext_id: ext,
            on_level: Box::new(move |level| {
                let change = lock(&detector).on_level(Instant::now(), level);
                if let (Some(speaking), Some(peer)) = (change, peer.upgrade()) {
                    peer.shared
                        .rooms
                        .set_speaking(&peer.room, &peer.id, speaking);
                }
            }),
        })
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
        lock(&self.declared).replace(tracks);
        let reoffer = self.publisher.current_remote_description().await.is_some();
        if reoffer {
            let limit = Duration::from_secs(self.shared.config.connect_timeout_secs);
            if !self.publisher_ice.wait(limit).await {
                tracing::warn!(participant = %self.id, room = %self.room, "publisher ICE has not started; applying the re-offer");
            }
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
        if reoffer {
            // A re-offer with new credentials restarted ICE (webrtc-rs does it in
            // `set_remote_description`, with new local credentials): the answer must carry the
            // new candidates, since a client drops those trickled for the old session. Instant
            // when nothing restarted.
            wait_gathered(&self.publisher, Duration::from_secs(2)).await;
        }
        self.start_connect_timer(PcKind::Publisher);
        let local = self.publisher.local_description().await;
        local
            .map(|d| d.sdp)
            .ok_or_else(|| SfuError::Internal("no local description".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(n: usize, round: usize) -> Vec<PublishedTrack> {
        (0..n)
            .map(|i| PublishedTrack {
                mid: format!("{}", round * n + i),
                source: Source::Camera,
            })
            .collect()
    }

    #[test]
    fn declared_mids_stay_bounded_over_many_reoffers() {
        let mut declared = Declared::default();
        for round in 0..1_500 {
            declared.replace(offer(3, round));
        }
        assert_eq!(declared.len(), 3, "only the current offer's mids are kept");
        assert_eq!(declared.source("4499"), Some(Source::Camera));
        assert_eq!(
            declared.source("0"),
            None,
            "a mid no longer declared is forgotten"
        );
    }

    #[test]
    fn reoffer_relabels_a_mid() {
        let mut declared = Declared::default();
        declared.replace(vec![PublishedTrack {
            mid: "0".into(),
            source: Source::Camera,
        }]);
        declared.replace(vec![PublishedTrack {
            mid: "0".into(),
            source: Source::Screen,
        }]);
        assert_eq!(declared.source("0"), Some(Source::Screen));
    }
}
