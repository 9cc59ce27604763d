//! Roles and what each may do, before a room's policy narrows it (see [`super::policy`]).
//!
//! Four roles, each one all of the one below plus more, as Galène's observe/present/op and
//! LiveKit's grants: `viewer` subscribes (and chats, if the room allows chat), `participant`
//! also publishes camera and microphone, `presenter` also shares a screen, `moderator` also
//! takes the moderation actions.

use serde::{Deserialize, Serialize};

use crate::sfu::Source;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Participant,
    Presenter,
    Moderator,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Viewer,
        Role::Participant,
        Role::Presenter,
        Role::Moderator,
    ];

    /// Whether this role may publish a track of `source` (the room's policy aside).
    pub fn may_publish(self, source: Source) -> bool {
        match source {
            Source::Camera | Source::Microphone => self >= Role::Participant,
            Source::Screen | Source::ScreenAudio => self >= Role::Presenter,
        }
    }

    pub fn may_moderate(self) -> bool {
        self == Role::Moderator
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Participant => "participant",
            Role::Presenter => "presenter",
            Role::Moderator => "moderator",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!("unknown role {s:?}: viewer, participant, presenter or moderator")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_adds_to_the_one_below() {
        let publishes = |r: Role| {
            [
                Source::Camera,
                Source::Microphone,
                Source::Screen,
                Source::ScreenAudio,
            ]
            .map(|s| r.may_publish(s))
        };
        assert_eq!(publishes(Role::Viewer), [false; 4]);
        assert_eq!(publishes(Role::Participant), [true, true, false, false]);
        assert_eq!(publishes(Role::Presenter), [true; 4]);
        assert_eq!(publishes(Role::Moderator), [true; 4]);
        assert!(Role::Moderator.may_moderate() && !Role::Presenter.may_moderate());
        assert_eq!("presenter".parse::<Role>(), Ok(Role::Presenter));
        assert!("admin".parse::<Role>().is_err());
    }
}
