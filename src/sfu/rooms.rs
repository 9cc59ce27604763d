//! Every room of the SFU: the pure [`Room`] core of each, plus what the media side needs to act
//! on its decisions (each up track by key, each member's peer).
//!
//! One owner, one short `std::sync::Mutex` over the whole table. An event is applied to the
//! room's core under the lock; the actions it returns are turned into effects (nudge a
//! subscriber to reconcile, ask an up track for a keyframe) and run *after* unlocking. Nothing
//! is awaited under the lock and no section does I/O: a map look-up and a diff over one room's
//! members × tracks. Why not a task per room fed by a channel: the effects are idempotent — a
//! nudged subscriber reconciles against the matrix as it is when it runs, a keyframe request
//! is throttled per track — so running them in any order after unlocking gives the same result;
//! with the lock a join is a plain call that cannot race the room being dropped (both happen
//! under it: no "room changed while joining"), needs no reply channel, and there is no extra
//! task per room to own, count and stop. Peers are held as `Weak`: the table never keeps a
//! participant alive, and a participant only holds its room's id (no `Arc` cycle).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use super::forward::UpTrack;
use super::peer::Peer;
use super::room::{Action, Event, MediaKind, Room, TrackKey};
use super::{ParticipantId, RoomId, SfuEvent};
use crate::sync::lock;

#[derive(Default)]
struct Entry {
    core: Room,
    ups: HashMap<TrackKey, Arc<UpTrack>>,
    peers: HashMap<ParticipantId, Weak<Peer>>,
    /// Members whose audio says they are speaking now (`speech.rs`).
    speaking: HashSet<ParticipantId>,
}

/// What an action becomes on the media side, run after the table is unlocked.
enum Effect {
    Reconcile(Weak<Peer>),
    Keyframe(Arc<UpTrack>),
}

#[derive(Default)]
pub(crate) struct Rooms {
    table: Mutex<HashMap<RoomId, Entry>>,
}

impl Rooms {
    /// Adds `peer` to `room` (created on first join). False if the id is already a member.
    pub fn join(&self, room: &str, peer: &Arc<Peer>) -> bool {
        let effects = {
            let mut table = lock(&self.table);
            let entry = table.entry(room.to_string()).or_default();
            if entry.core.is_member(&peer.id) {
                return false;
            }
            entry.peers.insert(peer.id.clone(), Arc::downgrade(peer));
            let actions = entry.core.handle(
                Event::Join {
                    id: peer.id.clone(),
                },
                Instant::now(),
            );
            effects(entry, actions)
        };
        run(effects);
        true
    }

    /// Removes `peer` from `room`: its tracks leave every subscriber; an empty room is dropped.
    /// A peer that never got in (its id was taken) changes nothing.
    pub fn leave(&self, room: &str, peer: &Peer) {
        let id = peer.id.as_str();
        let effects = {
            let mut table = lock(&self.table);
            let Some(entry) = table.get_mut(room) else {
                return;
            };
            let member = entry.peers.get(id);
            if !member.is_some_and(|w| std::ptr::eq(w.as_ptr(), peer)) {
                return;
            }
            entry.peers.remove(id);
            entry.speaking.remove(id);
            entry.ups.retain(|(publisher, _), _| publisher != id);
            let actions = entry
                .core
                .handle(Event::Leave { id: id.into() }, Instant::now());
            let effects = effects(entry, actions);
            if entry.core.is_empty() {
                table.remove(room);
            }
            effects
        };
        run(effects);
    }

    /// `up` arrived from its publisher; it replaces any track on the same mid.
    pub fn publish(&self, room: &str, up: &Arc<UpTrack>) {
        let kind = match up.kind {
            "audio" => MediaKind::Audio,
            _ => MediaKind::Video,
        };
        let event = Event::Publish {
            id: up.publisher.clone(),
            mid: up.mid.clone(),
            kind,
            source: up.source,
        };
        self.with(room, |entry| {
            if !entry.core.is_member(&up.publisher) {
                return Vec::new();
            }
            entry
                .ups
                .insert((up.publisher.clone(), up.mid.clone()), up.clone());
            entry.core.handle(event, Instant::now())
        });
    }

    /// `up` ended. Ignored when its mid already carries a newer track.
    pub fn unpublish(&self, room: &str, up: &Arc<UpTrack>) {
        let key = (up.publisher.clone(), up.mid.clone());
        self.with(room, |entry| {
            match entry.ups.get(&key) {
                Some(current) if Arc::ptr_eq(current, up) => {}
                _ => return Vec::new(),
            }
            entry.ups.remove(&key);
            let (id, mid) = key;
            entry
                .core
                .handle(Event::Unpublish { id, mid }, Instant::now())
        });
    }

    /// Applies a mute, a wish or a started subscription.
    pub fn apply(&self, room: &str, event: Event) {
        self.with(room, |entry| entry.core.handle(event, Instant::now()));
    }

    /// The up tracks `id` should receive now, in publish order.
    pub fn wanted(&self, room: &str, id: &str) -> Vec<Arc<UpTrack>> {
        let table = lock(&self.table);
        let Some(entry) = table.get(room) else {
            return Vec::new();
        };
        entry
            .core
            .subscriptions_of(id)
            .iter()
            .filter_map(|k| entry.ups.get(k).cloned())
            .collect()
    }

    /// Whether `id` is speaking now (the layer choice gives the speaker priority).
    pub fn is_speaking(&self, room: &str, id: &str) -> bool {
        lock(&self.table)
            .get(room)
            .is_some_and(|e| e.speaking.contains(id))
    }

    /// `id` started or stopped speaking: every member is told (the speaker too).
    pub fn set_speaking(&self, room: &str, id: &str, speaking: bool) {
        let peers: Vec<Weak<Peer>> = {
            let mut table = lock(&self.table);
            let Some(entry) = table.get_mut(room) else {
                return;
            };
            if !entry.peers.contains_key(id) {
                return;
            }
            let changed = if speaking {
                entry.speaking.insert(id.to_string())
            } else {
                entry.speaking.remove(id)
            };
            if !changed {
                return;
            }
            entry.peers.values().cloned().collect()
        };
        for peer in peers.iter().filter_map(Weak::upgrade) {
            let event = SfuEvent::Speaking {
                id: id.to_string(),
                speaking,
            };
            let _ = peer.events.try_send(event);
        }
    }

    /// Every live participant of every room (server shutdown).
    pub fn peers(&self) -> Vec<Arc<Peer>> {
        lock(&self.table)
            .values()
            .flat_map(|e| e.peers.values().filter_map(Weak::upgrade))
            .collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.table).len()
    }

    fn with(&self, room: &str, f: impl FnOnce(&mut Entry) -> Vec<Action>) {
        let effects = {
            let mut table = lock(&self.table);
            let Some(entry) = table.get_mut(room) else {
                return;
            };
            let actions = f(entry);
            effects(entry, actions)
        };
        run(effects);
    }
}

/// Turns actions into effects: one reconcile per subscriber touched, one request per track.
fn effects(entry: &Entry, actions: Vec<Action>) -> Vec<Effect> {
    let mut nudged: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for action in &actions {
        match action {
            Action::Subscribe { subscriber, .. } | Action::Unsubscribe { subscriber, .. } => {
                if nudged.contains(&subscriber.as_str()) {
                    continue;
                }
                nudged.push(subscriber);
                if let Some(peer) = entry.peers.get(subscriber) {
                    out.push(Effect::Reconcile(peer.clone()));
                }
            }
            Action::RequestKeyframe { track } => {
                if let Some(up) = entry.ups.get(track) {
                    out.push(Effect::Keyframe(up.clone()));
                }
            }
        }
    }
    out
}

fn run(effects: Vec<Effect>) {
    for effect in effects {
        match effect {
            Effect::Reconcile(peer) => {
                if let Some(peer) = peer.upgrade() {
                    peer.request_reconcile();
                }
            }
            Effect::Keyframe(up) => up.request_keyframe(),
        }
    }
}
