//! Moderation on `/rooms`: the `moderate` event's actions, applied to the room table under
//! the room's lock (so the check of the moderator's role, the change and its announcement to
//! the room are one step), and the room listing of the admin API.
//!
//! A moderator never touches another member's media directly: the target's restrictions (its
//! role, its muted sources) change in the table and reach its own session through the
//! member's `control` watch; that session tells its media worker, which calls
//! [`crate::sfu::Participant::set_muted`]. Removal and the end of a room go through the
//! eviction channel, like any other forced leave.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;

use super::protocol::{ErrorCode, MemberState, Moderate, Moderated, SignalError};
use super::room_table::{fan_out, Member, Restrictions, RoomTable};
use crate::access::policy::{permits, Action};
use crate::access::{Role, RoomPolicy};
use crate::sfu::{PublishedTrack, Source};
use crate::sync::lock;

/// A room as the admin API lists it.
#[derive(Debug, Serialize)]
pub struct RoomSnapshot {
    pub name: String,
    /// A moderator's lock or unlock, if one was made (else the policy's `locked` holds).
    pub locked: Option<bool>,
    pub members: Vec<MemberSnapshot>,
}

#[derive(Debug, Serialize)]
pub struct MemberSnapshot {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub state: MemberState,
    pub muted_by_moderator: BTreeSet<Source>,
    pub tracks: Vec<PublishedTrack>,
}

impl Member {
    fn restrictions(&self) -> Restrictions {
        Restrictions {
            role: self.role,
            forced: self.forced.clone(),
        }
    }
}

fn unknown(id: &str) -> SignalError {
    SignalError::new(
        ErrorCode::UnknownParticipant,
        "moderate",
        format!("no member {id:?} in this room"),
    )
}

impl RoomTable {
    /// The role of member `id` of `room` now.
    pub fn role(&self, room: &str, id: &str) -> Option<Role> {
        let entry = self.get(room)?;
        let st = lock(&entry.state);
        st.members.iter().find(|m| m.id == id).map(|m| m.role)
    }

    /// Records the tracks member `id` declared in an accepted offer.
    pub fn set_tracks(&self, room: &str, id: &str, tracks: Vec<PublishedTrack>) {
        let Some(entry) = self.get(room) else { return };
        let mut st = lock(&entry.state);
        if let Some(m) = st.members.iter_mut().find(|m| m.id == id) {
            m.tracks = tracks;
        }
    }

    /// Applies `action` in `room` on behalf of member `by` (`None`: the admin API, which may do
    /// anything), and announces it to every member as `moderated`.
    pub fn moderate(
        &self,
        room: &str,
        by: Option<&str>,
        policy: &RoomPolicy,
        action: &Moderate,
    ) -> Result<(), SignalError> {
        let entry = self.get(room).ok_or_else(|| {
            SignalError::new(
                ErrorCode::NotInRoom,
                "moderate",
                format!("no room {room:?}"),
            )
        })?;
        let mut st = lock(&entry.state);
        let actor = match by {
            None => Role::Moderator,
            Some(id) => st
                .members
                .iter()
                .find(|m| m.id == id)
                .map(|m| m.role)
                .ok_or_else(|| unknown(id))?,
        };
        let needs = match action {
            Moderate::Unmute { id, .. } if by == Some(id.as_str()) => Action::SelfUnmute,
            _ => Action::Moderate,
        };
        permits(actor, policy, needs).map_err(|d| SignalError::denied("moderate", d))?;
        let target = match action {
            Moderate::Mute { id, .. }
            | Moderate::Unmute { id, .. }
            | Moderate::Remove { id, .. }
            | Moderate::SetRole { id, .. } => Some(
                st.members
                    .iter()
                    .position(|m| &m.id == id)
                    .ok_or_else(|| unknown(id))?,
            ),
            Moderate::Lock | Moderate::Unlock | Moderate::End => None,
        };
        // Announced first, so a removed member hears why before it is removed.
        let by_id = by.unwrap_or("");
        fan_out(
            &st.members,
            "",
            "moderated",
            &Moderated { action, by: by_id },
        );
        match (action, target) {
            (Moderate::Mute { source, .. }, Some(i)) => {
                st.members[i].forced.insert(*source);
                st.members[i]
                    .control
                    .send_replace(st.members[i].restrictions());
            }
            (Moderate::Unmute { source, .. }, Some(i)) => {
                st.members[i].forced.remove(source);
                st.members[i]
                    .control
                    .send_replace(st.members[i].restrictions());
            }
            (Moderate::SetRole { role, .. }, Some(i)) => {
                st.members[i].role = *role;
                st.members[i]
                    .control
                    .send_replace(st.members[i].restrictions());
            }
            (Moderate::Remove { ban, .. }, Some(i)) => {
                if *ban {
                    let keys = st.members[i].ban_keys.clone();
                    st.banned.extend(keys);
                }
                let message = if *ban {
                    "a moderator removed you from the room and banned you from it"
                } else {
                    "a moderator removed you from the room"
                };
                let _ = st.members[i].evict.try_send(SignalError::new(
                    ErrorCode::Removed,
                    "room",
                    message,
                ));
            }
            (Moderate::Lock, _) => st.locked = Some(true),
            (Moderate::Unlock, _) => st.locked = Some(false),
            (Moderate::End, _) => {
                for m in &st.members {
                    let _ = m.evict.try_send(SignalError::new(
                        ErrorCode::RoomEnded,
                        "room",
                        "a moderator ended the meeting",
                    ));
                }
                // Out of the table now: a join from here on opens a new room of that name.
                st.removed = true;
                let mut rooms = lock(&self.rooms);
                if rooms.get(room).is_some_and(|r| Arc::ptr_eq(r, &entry)) {
                    rooms.remove(room);
                }
            }
            _ => {}
        }
        tracing::info!(room, by = by_id, action = ?action, "moderation");
        Ok(())
    }

    /// Every room and its members, for the admin API.
    pub fn snapshot(&self) -> Vec<RoomSnapshot> {
        let rooms: Vec<(String, _)> = lock(&self.rooms)
            .iter()
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        let mut out: Vec<RoomSnapshot> = rooms
            .into_iter()
            .map(|(name, room)| {
                let st = lock(&room.state);
                RoomSnapshot {
                    name,
                    locked: st.locked,
                    members: st
                        .members
                        .iter()
                        .map(|m| MemberSnapshot {
                            id: m.id.clone(),
                            name: m.name.clone(),
                            role: m.role,
                            state: m.state,
                            muted_by_moderator: m.forced.clone(),
                            tracks: m.tracks.clone(),
                        })
                        .collect(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}
