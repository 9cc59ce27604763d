//! A room as pure state: its members, their published tracks, and the forwarding matrix (who
//! receives which track). No locks, no async, no WebRTC types: [`Room::handle`] takes one
//! [`Event`] and the current time and returns the [`Action`]s that bring the media side in line,
//! so every rule of who-gets-what is tested here on simulated time (str0m's and mini-redis's
//! style). `rooms.rs` owns the rooms and executes the actions.
//!
//! The rule: subscriber `s` receives track `t` when `s` is a member, `t` is not its own, `t`
//! is not muted, and `s` has not said it does not want `t`. Every event recomputes the wanted
//! matrix and reports the difference (reconcile-by-diff, as webrtc-rs/sfu does), so no event
//! handler has to know which pairs it affects.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use super::{ParticipantId, Source};

/// A published track's key: (publisher, mid). The mid, not the SSRC, survives renegotiation.
pub type TrackKey = (ParticipantId, String);

/// What a published track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
}

/// What a subscriber wants of one track. Simulcast will carry a layer or tile size in `On`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Want {
    #[default]
    On,
    Off,
}

/// Something that happened to the room.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Join {
        id: ParticipantId,
    },
    Leave {
        id: ParticipantId,
    },
    /// A track arrived from `id`. Publishing a key that exists replaces that track.
    Publish {
        id: ParticipantId,
        mid: String,
        kind: MediaKind,
        source: Source,
    },
    Unpublish {
        id: ParticipantId,
        mid: String,
    },
    /// A muted track is forwarded to nobody (the publisher's own mute, or a moderator's).
    Mute {
        track: TrackKey,
        muted: bool,
    },
    /// A subscriber's wish for one track.
    Wants {
        subscriber: ParticipantId,
        track: TrackKey,
        want: Want,
    },
    /// The media side bound `subscriber`'s subscription to `track` and its connection is up:
    /// it needs a keyframe to start decoding.
    Started {
        subscriber: ParticipantId,
        track: TrackKey,
    },
}

/// What the media side must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Subscribe {
        subscriber: ParticipantId,
        track: TrackKey,
    },
    Unsubscribe {
        subscriber: ParticipantId,
        track: TrackKey,
    },
    /// Ask `track`'s publisher for a keyframe (the media side throttles per track).
    RequestKeyframe { track: TrackKey },
}

#[derive(Debug)]
struct Member {
    id: ParticipantId,
    joined_at: Instant,
    /// Only wishes that differ from the default, and only for tracks that exist.
    wants: HashMap<TrackKey, Want>,
}

#[derive(Debug)]
struct Track {
    key: TrackKey,
    kind: MediaKind,
    source: Source,
    muted: bool,
    published_at: Instant,
}

/// One room's membership and forwarding matrix.
#[derive(Debug, Default)]
pub struct Room {
    /// In join order.
    members: Vec<Member>,
    /// In publish order.
    tracks: Vec<Track>,
    /// The current matrix: (subscriber, track) → since when.
    subscribed: BTreeMap<(ParticipantId, TrackKey), Instant>,
    /// Muted mids of members, kept apart from `tracks` so a mute made before the track's
    /// first packet, or one that outlives a republish on the same mid, still holds.
    muted: std::collections::BTreeSet<TrackKey>,
}

impl Room {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `event` at `now`; returns what must change, unsubscriptions first.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        match event {
            Event::Join { id } => {
                if !self.is_member(&id) {
                    self.members.push(Member {
                        id,
                        joined_at: now,
                        wants: HashMap::new(),
                    });
                }
            }
            Event::Leave { id } => {
                self.members.retain(|m| m.id != id);
                self.tracks.retain(|t| t.key.0 != id);
                self.muted.retain(|k| k.0 != id);
                // The leaver's own subscriptions end with its connections: nothing to report.
                self.subscribed.retain(|(s, _), _| *s != id);
                self.forget_wants_for_gone_tracks();
            }
            Event::Publish {
                id,
                mid,
                kind,
                source,
            } => {
                if !self.is_member(&id) {
                    return Vec::new();
                }
                let key = (id, mid);
                let mut actions = Vec::new();
                if self.tracks.iter().any(|t| t.key == key) {
                    actions = self.handle(
                        Event::Unpublish {
                            id: key.0.clone(),
                            mid: key.1.clone(),
                        },
                        now,
                    );
                }
                let muted = self.muted.contains(&key);
                self.tracks.push(Track {
                    key,
                    kind,
                    source,
                    muted,
                    published_at: now,
                });
                actions.extend(self.reconcile(now));
                return actions;
            }
            Event::Unpublish { id, mid } => {
                let key = (id, mid);
                self.tracks.retain(|t| t.key != key);
                self.forget_wants_for_gone_tracks();
            }
            Event::Mute { track, muted } => {
                if !self.is_member(&track.0) {
                    return Vec::new();
                }
                if muted {
                    self.muted.insert(track.clone());
                } else {
                    self.muted.remove(&track);
                }
                if let Some(t) = self.tracks.iter_mut().find(|t| t.key == track) {
                    t.muted = muted;
                }
            }
            Event::Wants {
                subscriber,
                track,
                want,
            } => {
                let known = self.tracks.iter().any(|t| t.key == track);
                if let (true, Some(m)) = (known, self.member_mut(&subscriber)) {
                    match want {
                        Want::On => m.wants.remove(&track),
                        other => m.wants.insert(track, other),
                    };
                }
            }
            Event::Started { subscriber, track } => {
                return if self.subscribed.contains_key(&(subscriber, track.clone())) {
                    vec![Action::RequestKeyframe { track }]
                } else {
                    Vec::new()
                };
            }
        }
        self.reconcile(now)
    }

    /// The tracks `subscriber` should receive, in publish order.
    pub fn subscriptions_of(&self, subscriber: &str) -> Vec<TrackKey> {
        self.tracks
            .iter()
            .filter(|t| {
                self.subscribed
                    .contains_key(&(subscriber.to_string(), t.key.clone()))
            })
            .map(|t| t.key.clone())
            .collect()
    }

    /// Since when `subscriber` has been meant to receive `track`.
    pub fn subscribed_since(&self, subscriber: &str, track: &TrackKey) -> Option<Instant> {
        self.subscribed
            .get(&(subscriber.to_string(), track.clone()))
            .copied()
    }

    /// Members in join order, with the time each joined.
    pub fn members(&self) -> impl Iterator<Item = (&str, Instant)> {
        self.members.iter().map(|m| (m.id.as_str(), m.joined_at))
    }

    /// Published tracks in publish order: key, kind, source, muted, published at.
    pub fn tracks(&self) -> impl Iterator<Item = (&TrackKey, MediaKind, Source, bool, Instant)> {
        self.tracks
            .iter()
            .map(|t| (&t.key, t.kind, t.source, t.muted, t.published_at))
    }

    /// `subscriber`'s wish for `track`, when it has made one that differs from the default.
    pub fn wish(&self, subscriber: &str, track: &TrackKey) -> Option<Want> {
        self.members
            .iter()
            .find(|m| m.id == subscriber)
            .and_then(|m| m.wants.get(track).copied())
    }

    pub fn is_member(&self, id: &str) -> bool {
        self.members.iter().any(|m| m.id == id)
    }

    /// No members left: the owner drops the room.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn forget_wants_for_gone_tracks(&mut self) {
        let tracks = &self.tracks;
        for m in &mut self.members {
            m.wants.retain(|k, _| tracks.iter().any(|t| t.key == *k));
        }
    }

    /// Recomputes the wanted matrix and reports the difference from the current one.
    fn reconcile(&mut self, now: Instant) -> Vec<Action> {
        let mut wanted = Vec::new();
        for m in &self.members {
            for t in &self.tracks {
                let want = m.wants.get(&t.key).copied().unwrap_or_default();
                if t.key.0 != m.id && !t.muted && want != Want::Off {
                    wanted.push((m.id.clone(), t.key.clone()));
                }
            }
        }
        let mut actions: Vec<Action> = self
            .subscribed
            .keys()
            .filter(|pair| !wanted.contains(pair))
            .map(|(subscriber, track)| Action::Unsubscribe {
                subscriber: subscriber.clone(),
                track: track.clone(),
            })
            .collect();
        for action in &actions {
            if let Action::Unsubscribe { subscriber, track } = action {
                self.subscribed.remove(&(subscriber.clone(), track.clone()));
            }
        }
        for pair in wanted {
            if !self.subscribed.contains_key(&pair) {
                actions.push(Action::Subscribe {
                    subscriber: pair.0.clone(),
                    track: pair.1.clone(),
                });
                self.subscribed.insert(pair, now);
            }
        }
        actions
    }
}

#[cfg(test)]
#[path = "room_tests.rs"]
mod tests;
