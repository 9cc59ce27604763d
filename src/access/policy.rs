//! Room policies and the pure decisions made from them: who may enter a room, and what a
//! member of a given role may do there. No I/O, no clock: [`super::Access`] feeds them.
//!
//! A room is declared under `[rooms."name"]` in the config (or in a file `name.toml` of
//! `auth.rooms_dir`); an undeclared room gets [`RoomPolicy::default`] with `access` set from
//! `auth.default_room`. A token is an invitation: its holder enters invite-only and
//! password-protected rooms alike, with the token's role. Without one, a room must be open,
//! and its password given if it has one; the joiner then gets the room's `guest_role`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::role::Role;
use super::Denial;
use crate::sfu::Source;

/// Who may enter without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// Anyone (with the room's password, if it has one).
    #[default]
    Open,
    /// Only holders of a token for this room.
    Invite,
}

/// Who may publish media, whatever their role allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Publishers {
    /// Every role that may publish (participant and up).
    #[default]
    Everyone,
    /// Presenters and moderators only.
    Presenters,
}

/// One room's rules. Every field has a default, so a declaration names only what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomPolicy {
    pub access: Entry,
    /// Argon2 hash in PHC form (`sfu-lite hash-password`); empty = no password.
    pub password: String,
    /// Members at most; 0 = `signaling.max_members_per_room` (which also caps this).
    pub max_members: usize,
    pub publish: Publishers,
    /// Whether room chat (`message`) is allowed; moderators may always write.
    pub chat: bool,
    /// Locked rooms admit moderators only (until a moderator unlocks them).
    pub locked: bool,
    /// Whether someone a moderator muted may unmute themselves.
    pub self_unmute: bool,
    /// The role of those who enter without a token.
    pub guest_role: Role,
}

impl Default for RoomPolicy {
    fn default() -> Self {
        Self {
            access: Entry::Open,
            password: String::new(),
            max_members: 0,
            publish: Publishers::Everyone,
            chat: true,
            locked: false,
            self_unmute: true,
            // As before policies existed: everyone may publish camera, microphone and screen.
            guest_role: Role::Presenter,
        }
    }
}

impl RoomPolicy {
    /// Checks what the types cannot: the password is a parseable hash.
    pub fn validate(&self) -> Result<(), String> {
        if !self.password.is_empty() {
            argon2::PasswordHash::new(&self.password).map_err(|e| {
                format!("password must be a hash from `sfu-lite hash-password` (PHC string): {e}")
            })?;
        }
        Ok(())
    }

    /// The member cap given the server-wide one.
    pub fn cap(&self, server_max: usize) -> usize {
        match self.max_members {
            0 => server_max,
            n => n.min(server_max),
        }
    }
}

/// Every declared room, and the rule for the others.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub undeclared: RoomPolicy,
    pub declared: BTreeMap<String, RoomPolicy>,
}

impl Policies {
    pub fn get(&self, room: &str) -> &RoomPolicy {
        self.declared.get(room).unwrap_or(&self.undeclared)
    }
}

/// What entering takes once the token, if any, is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Enter with this role.
    Admit(Role),
    /// Enter with this role if the room's password is given.
    Password(Role),
}

/// Who may enter `policy`'s room: `token_role` is the role of a verified token, if one came.
/// A room's lock is not decided here: it can change at run time (see the room table).
pub fn entry(policy: &RoomPolicy, token_role: Option<Role>) -> Result<Step, Denial> {
    match (token_role, policy.access) {
        (Some(role), _) => Ok(Step::Admit(role)),
        (None, Entry::Invite) => Err(Denial::TokenRequired),
        (None, Entry::Open) if policy.password.is_empty() => Ok(Step::Admit(policy.guest_role)),
        (None, Entry::Open) => Ok(Step::Password(policy.guest_role)),
    }
}

/// Something a member asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish(Source),
    Chat,
    /// Any moderation action on someone else, or on the room.
    Moderate,
    /// Lifting a moderator's mute of one's own track.
    SelfUnmute,
}

/// Whether a member of `role` may take `action` in `policy`'s room.
pub fn permits(role: Role, policy: &RoomPolicy, action: Action) -> Result<(), Denial> {
    let moderator = role.may_moderate();
    let allowed = match action {
        Action::Publish(source) => {
            role.may_publish(source)
                && (policy.publish == Publishers::Everyone || role >= Role::Presenter)
        }
        Action::Chat => policy.chat || moderator,
        Action::Moderate => moderator,
        Action::SelfUnmute => policy.self_unmute || moderator,
    };
    if allowed {
        return Ok(());
    }
    Err(match action {
        Action::Publish(source) => Denial::PublishDenied(source),
        Action::Chat => Denial::ChatDisabled,
        Action::Moderate => Denial::NotModerator,
        Action::SelfUnmute => Denial::UnmuteDenied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash() -> String {
        super::super::password::hash("pw").unwrap()
    }

    #[test]
    fn tokens_are_invitations_and_guests_need_an_open_room() {
        let open = RoomPolicy::default();
        assert_eq!(entry(&open, None), Ok(Step::Admit(Role::Presenter)));
        let invite = RoomPolicy {
            access: Entry::Invite,
            ..Default::default()
        };
        assert_eq!(entry(&invite, None), Err(Denial::TokenRequired));
        assert_eq!(
            entry(&invite, Some(Role::Viewer)),
            Ok(Step::Admit(Role::Viewer))
        );
        let password = RoomPolicy {
            password: hash(),
            guest_role: Role::Participant,
            ..Default::default()
        };
        assert_eq!(
            entry(&password, None),
            Ok(Step::Password(Role::Participant))
        );
        assert_eq!(
            entry(&password, Some(Role::Moderator)),
            Ok(Step::Admit(Role::Moderator))
        );
    }

    #[test]
    fn presenters_only_rooms_silence_participants() {
        let room = RoomPolicy {
            publish: Publishers::Presenters,
            ..Default::default()
        };
        let camera = Action::Publish(Source::Camera);
        assert_eq!(
            permits(Role::Participant, &room, camera),
            Err(Denial::PublishDenied(Source::Camera))
        );
        assert_eq!(permits(Role::Presenter, &room, camera), Ok(()));
        assert_eq!(
            permits(Role::Participant, &RoomPolicy::default(), camera),
            Ok(())
        );
    }

    #[test]
    fn chat_and_self_unmute_follow_the_room_but_not_for_moderators() {
        let strict = RoomPolicy {
            chat: false,
            self_unmute: false,
            ..Default::default()
        };
        assert_eq!(
            permits(Role::Presenter, &strict, Action::Chat),
            Err(Denial::ChatDisabled)
        );
        assert_eq!(
            permits(Role::Presenter, &strict, Action::SelfUnmute),
            Err(Denial::UnmuteDenied)
        );
        assert_eq!(permits(Role::Moderator, &strict, Action::Chat), Ok(()));
        assert_eq!(
            permits(Role::Viewer, &RoomPolicy::default(), Action::Chat),
            Ok(())
        );
        assert_eq!(
            permits(Role::Presenter, &strict, Action::Moderate),
            Err(Denial::NotModerator)
        );
    }

    #[test]
    fn caps_and_hashes_are_checked() {
        let room = RoomPolicy {
            max_members: 80,
            ..Default::default()
        };
        assert_eq!(room.cap(50), 50);
        assert_eq!(RoomPolicy::default().cap(50), 50);
        let bad = RoomPolicy {
            password: "hunter2".into(),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let good = RoomPolicy {
            password: hash(),
            ..Default::default()
        };
        assert!(good.validate().is_ok());
    }
}
