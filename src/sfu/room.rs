//! A room as the SFU sees it: its members, and through them every published up track. The
//! wanted forwarding matrix is derived from this on demand (see `Peer::reconcile`).

use std::sync::{Arc, Mutex};

use super::forward::{lock, UpTrack};
use super::peer::Peer;
use super::RoomId;

pub(crate) struct Room {
    pub id: RoomId,
    /// Members in join order. Short critical sections only, never across `.await`.
    members: Mutex<Vec<Arc<Peer>>>,
}

impl Room {
    pub fn new(id: RoomId) -> Self {
        Self {
            id,
            members: Mutex::new(Vec::new()),
        }
    }

    pub fn add(&self, peer: Arc<Peer>) {
        lock(&self.members).push(peer);
    }

    /// Removes `id`; returns whether the room is now empty.
    pub fn remove(&self, id: &str) -> bool {
        let mut members = lock(&self.members);
        members.retain(|p| p.id != id);
        members.is_empty()
    }

    pub fn members(&self) -> Vec<Arc<Peer>> {
        lock(&self.members).clone()
    }

    /// Every live up track of every member other than `subscriber`.
    pub fn tracks_for(&self, subscriber: &str) -> Vec<Arc<UpTrack>> {
        self.members()
            .iter()
            .filter(|p| p.id != subscriber && !p.is_closed())
            .flat_map(|p| p.published())
            .collect()
    }

    /// Asks every member but `except` to bring its subscriptions up to date.
    pub fn reconcile_others(&self, except: &str) {
        for peer in self.members() {
            if peer.id != except {
                peer.request_reconcile();
            }
        }
    }
}
