//! The rooms of `/rooms` and their members, as users see them.
//!
//! Each room has its own lock, a std mutex held only for short synchronous sections: nothing
//! is awaited while it is held, and rooms never wait on each other. A membership change and the
//! deltas announcing it happen in one such section, and a delta is queued on each recipient's
//! socket before the lock is released (socketioxide's `emit` only queues), so:
//! - a joiner's member list and the deltas it receives afterwards never overlap or miss a change;
//! - every socket sees a room's changes in the order they happened.
//!
//! The table of rooms has a lock of its own, taken alone to find or create a room, or with the
//! room's lock held to remove it (lock order: room, then table; never the reverse). A room is
//! removed by the leave that empties it, in the same section, and marked `removed`; a joiner
//! that found the room just before retries the lookup and creates a fresh one, so a join racing
//! the last leave is never refused. Limits are checked under the lock they concern, so they are
//! exact under concurrent joins.
//!
//! A member whose socket cannot take a delta (its buffer is full: it stopped reading) would hold
//! a wrong member list from then on; it is evicted instead: told through its session's eviction
//! channel, which removes it in order like a `leave`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::FutureExt;
use serde::Serialize;
use socketioxide::extract::SocketRef;
use tokio::sync::{mpsc, watch};

use super::budget::ByteBudget;
use super::protocol::{
    ErrorCode, Left, MemberState, MemberView, RoomMessageOut, SignalError, StateUpdate, Updated,
};
use crate::access::{Denial, Role};
use crate::config::SignalingConfig;
use crate::metrics::{GaugeGuard, Metrics};
use crate::sfu::{PublishedTrack, Source};
use crate::sync::lock;

/// Why a session must drop its membership without having asked to: the `error` to send it.
pub(crate) type Eviction = SignalError;

/// Where evictions of one membership are sent; capacity 1 is enough, one eviction suffices.
pub(crate) type Evict = mpsc::Sender<Eviction>;

pub(super) struct Member {
    pub id: String,
    pub name: String,
    pub state: MemberState,
    pub socket: SocketRef,
    pub evict: Evict,
    /// Authoritative: moderation changes it here, and the member's session hears of it
    /// through `control`.
    pub role: Role,
    /// What a ban of this member bans: its token identity, else its address.
    pub ban_keys: Vec<String>,
    /// Sources a moderator muted.
    pub forced: BTreeSet<Source>,
    /// Tracks it declared in its last accepted `publish_offer` (for the admin API).
    pub tracks: Vec<PublishedTrack>,
    pub control: Control,
    _gauge: GaugeGuard,
}

impl Member {
    fn view(&self) -> MemberView {
        MemberView {
            id: self.id.clone(),
            name: self.name.clone(),
            state: self.state,
        }
    }
}

pub(super) struct RoomState {
    /// In joining order.
    pub members: Vec<Member>,
    /// Set by the leave that emptied the room (or the `end` that closed it), which also took it
    /// out of the table.
    pub removed: bool,
    chat: ByteBudget,
    /// A moderator's lock or unlock; `None` = as the room's policy says.
    pub locked: Option<bool>,
    /// Ban keys (see [`Member::ban_keys`]) refused for the room's lifetime.
    pub banned: HashSet<String>,
}

pub(super) struct Room {
    pub state: Mutex<RoomState>,
    _gauge: GaugeGuard,
}

/// What a member's session is told of its own restrictions (its role, its muted sources);
/// a `watch`, so it always holds the latest and is never full.
pub(crate) type Control = watch::Sender<Restrictions>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Restrictions {
    pub role: Role,
    pub forced: BTreeSet<Source>,
}

/// Who joins: its socket, its id as the others see it, its display name, its role.
pub(crate) struct Joiner<'a> {
    pub socket: &'a SocketRef,
    pub id: &'a str,
    pub name: &'a str,
    pub evict: Evict,
    pub role: Role,
    pub ban_keys: Vec<String>,
    pub control: Control,
}

/// The room policy's part in a join: its member cap and whether it is locked.
pub(crate) struct Door {
    pub cap: usize,
    pub locked: bool,
}

pub(crate) struct RoomTable {
    pub(super) limits: SignalingConfig,
    metrics: Arc<Metrics>,
    pub(super) rooms: Mutex<HashMap<String, Arc<Room>>>,
}

impl RoomTable {
    pub fn new(limits: SignalingConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            limits,
            metrics,
            rooms: Mutex::new(HashMap::new()),
        }
    }

    /// Adds `who` to `room` (created if needed), tells the others, and calls `welcome` with the
    /// members before it, all before any later change of the room can be seen.
    pub fn join(
        &self,
        room: &str,
        who: Joiner<'_>,
        door: &Door,
        welcome: impl FnOnce(Vec<MemberView>, bool),
    ) -> Result<(), SignalError> {
        loop {
            let entry = self.find_or_create(room)?;
            let mut st = lock(&entry.state);
            if st.removed {
                // Emptied and taken out of the table since we found it: look again.
                continue;
            }
            if who.ban_keys.iter().any(|k| st.banned.contains(k)) {
                return Err(SignalError::denied("join", Denial::Banned));
            }
            let locked = st.locked.unwrap_or(door.locked);
            if locked && !who.role.may_moderate() {
                return Err(SignalError::denied("join", Denial::RoomLocked));
            }
            let cap = door.cap.min(self.limits.max_members_per_room);
            if st.members.len() >= cap {
                return Err(SignalError::new(
                    ErrorCode::RoomFull,
                    "join",
                    format!("room {room:?} has {cap} members, the limit"),
                ));
            }
            let me = Member {
                id: who.id.to_string(),
                name: who.name.to_string(),
                state: MemberState::default(),
                socket: who.socket.clone(),
                evict: who.evict,
                role: who.role,
                ban_keys: who.ban_keys,
                forced: BTreeSet::new(),
                tracks: Vec::new(),
                control: who.control,
                _gauge: GaugeGuard::new(&self.metrics, |m| &m.participants),
            };
            let before: Vec<MemberView> = st.members.iter().map(Member::view).collect();
            fan_out(&st.members, "", "joined", &me.view());
            st.members.push(me);
            // Also a socketioxide room, so a chat line is encoded once for all recipients.
            who.socket.join(room.to_string());
            welcome(before, locked);
            return Ok(());
        }
    }

    fn find_or_create(&self, room: &str) -> Result<Arc<Room>, SignalError> {
        let mut rooms = lock(&self.rooms);
        if let Some(r) = rooms.get(room) {
            return Ok(r.clone());
        }
        if rooms.len() >= self.limits.max_rooms {
            return Err(SignalError::new(
                ErrorCode::TooManyRooms,
                "join",
                format!("the server has {} rooms, its limit", self.limits.max_rooms),
            ));
        }
        let created = Arc::new(Room {
            state: Mutex::new(RoomState {
                members: Vec::new(),
                removed: false,
                locked: None,
                banned: HashSet::new(),
                chat: ByteBudget::new(
                    self.limits.room_chat_bytes_per_second,
                    self.limits.room_chat_burst_bytes,
                    Instant::now(),
                ),
            }),
            _gauge: GaugeGuard::new(&self.metrics, |m| &m.rooms),
        });
        rooms.insert(room.to_string(), created.clone());
        Ok(created)
    }

    pub(super) fn get(&self, room: &str) -> Option<Arc<Room>> {
        lock(&self.rooms).get(room).cloned()
    }

    /// Removes member `id` from `room` and tells the others; the last one out removes the room,
    /// and is told so (`true`).
    pub fn leave(&self, room: &str, id: &str, socket: &SocketRef) -> bool {
        socket.leave(room.to_string());
        let Some(entry) = self.get(room) else {
            return false;
        };
        let mut st = lock(&entry.state);
        let before = st.members.len();
        st.members.retain(|m| m.id != id);
        if st.members.len() == before {
            return false; // Not (or no longer) a member of the room of that name: an ended room.
        }
        fan_out(&st.members, "", "left", &Left { id });
        if st.members.is_empty() && !st.removed {
            st.removed = true;
            let mut rooms = lock(&self.rooms);
            if rooms.get(room).is_some_and(|r| Arc::ptr_eq(r, &entry)) {
                rooms.remove(room);
                return true;
            }
        }
        false
    }

    /// Whether `room` has members here.
    pub fn contains(&self, room: &str) -> bool {
        lock(&self.rooms).contains_key(room)
    }

    /// The rooms with members here.
    pub fn names(&self) -> Vec<String> {
        lock(&self.rooms).keys().cloned().collect()
    }

    /// Applies a `state` update; the others hear of it only when something changed.
    pub fn update(&self, room: &str, id: &str, update: &StateUpdate) {
        let Some(entry) = self.get(room) else {
            return;
        };
        let mut st = lock(&entry.state);
        let Some(member) = st.members.iter_mut().find(|m| m.id == id) else {
            return;
        };
        let before = member.state;
        member.state.apply(update);
        let state = member.state;
        if state != before {
            fan_out(&st.members, id, "updated", &Updated { id, state });
        }
    }

    /// Sends a chat line to the others in `room`, within the room's chat budget.
    pub fn chat(
        &self,
        room: &str,
        socket: &SocketRef,
        line: &RoomMessageOut<'_>,
    ) -> Result<(), SignalError> {
        let Some(entry) = self.get(room) else {
            return Ok(());
        };
        let mut st = lock(&entry.state);
        let recipients = st.members.len().saturating_sub(1) as u64;
        if recipients == 0 {
            return Ok(());
        }
        // Counted as the JSON the line is sent as; the Socket.IO framing adds a few bytes.
        let size = serde_json::to_vec(line).map_or(0, |v| v.len()) as u64;
        if !st.chat.take(size * recipients, Instant::now()) {
            return Err(SignalError::new(
                ErrorCode::RateLimited,
                "message",
                format!(
                    "room {room:?} is over its chat budget ({} bytes/s, burst {}); this line was not sent",
                    self.limits.room_chat_bytes_per_second, self.limits.room_chat_burst_bytes
                ),
            ));
        }
        // The local adapter's broadcast completes on its first poll (it only queues).
        match socket
            .to(room.to_string())
            .emit("message", line)
            .now_or_never()
        {
            Some(Err(e)) => {
                tracing::debug!(room, error = %e, "chat line not queued for some members")
            }
            None => tracing::warn!(room, "chat broadcast did not complete at once"),
            Some(Ok(())) => {}
        }
        Ok(())
    }
}

/// Queues `event` on every member's socket but `except`'s. A member whose socket is full is
/// evicted: it has missed a change and could never catch up.
pub(super) fn fan_out<T: Serialize + ?Sized>(
    members: &[Member],
    except: &str,
    event: &str,
    data: &T,
) {
    for m in members.iter().filter(|m| m.id != except) {
        if let Err(e) = m.socket.emit(event, data) {
            if !m.socket.connected() {
                continue; // Disconnecting: its session is removing it already.
            }
            let eviction = SignalError::new(
                ErrorCode::NotInRoom,
                "room",
                format!("removed from the room: this client stopped reading ({e})"),
            );
            // Logged once: later deltas find the eviction already pending.
            if m.evict.try_send(eviction).is_ok() {
                tracing::warn!(participant = %m.id, event, error = %e, "member not reading: evicting it");
            }
        }
    }
}
