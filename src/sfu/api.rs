//! The typed boundary between signaling and the SFU core.
//!
//! Signaling (Socket.IO) calls [`super::Sfu`] and [`super::Participant`] with these types and
//! relays [`SfuEvent`]s to the participant's socket; the SFU never learns how they travel.

use serde::{Deserialize, Serialize};

/// A participant's id: the signaling layer's connection id, opaque to the SFU.
pub type ParticipantId = String;
/// A room's name as validated by signaling.
pub type RoomId = String;

/// What a published track carries, as the publisher declares it. Subscribers use it to label tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Camera,
    Microphone,
    Screen,
    ScreenAudio,
}

/// Which of a participant's two PeerConnections a message concerns.
/// `Publisher`: client → server media, the client offers. `Subscriber`: server → client media,
/// the server offers. Two connections mean the two offerers never collide (LiveKit's design).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PcKind {
    Publisher,
    Subscriber,
}

/// An ICE candidate as the browser's `RTCIceCandidateInit` spells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceCandidateInit {
    pub candidate: String,
    #[serde(rename = "sdpMid", default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(
        rename = "sdpMLineIndex",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sdp_mline_index: Option<u16>,
    #[serde(
        rename = "usernameFragment",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub username_fragment: Option<String>,
}

/// The one conversion to webrtc-rs's candidate type (both server and headless client use it).
impl From<IceCandidateInit> for webrtc::ice_transport::ice_candidate::RTCIceCandidateInit {
    fn from(c: IceCandidateInit) -> Self {
        Self {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: c.username_fragment,
        }
    }
}

/// And back, for candidates gathered by a webrtc-rs connection (`RTCIceCandidate::to_json`).
impl From<webrtc::ice_transport::ice_candidate::RTCIceCandidateInit> for IceCandidateInit {
    fn from(c: webrtc::ice_transport::ice_candidate::RTCIceCandidateInit) -> Self {
        Self {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: c.username_fragment,
        }
    }
}

/// One publisher-declared track: the transceiver `mid` in its offer and what it carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedTrack {
    pub mid: String,
    pub source: Source,
}

/// One track in a subscriber offer: which `mid` carries whose what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackInfo {
    pub mid: String,
    pub participant: ParticipantId,
    pub source: Source,
    /// "audio" or "video".
    pub kind: String,
}

/// One tile as the page renders it (`view`): `mid` is a mid of the subscriber connection;
/// width and height in device pixels; `visible: false` wants nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TileView {
    pub mid: String,
    pub width: u32,
    pub height: u32,
    pub visible: bool,
}

/// What the SFU tells one participant, to be relayed by signaling.
#[derive(Debug, Clone, PartialEq)]
pub enum SfuEvent {
    /// A new offer on the subscriber connection, with the full current track map.
    SubscribeOffer { sdp: String, tracks: Vec<TrackInfo> },
    /// A server ICE candidate for one of the two connections.
    Candidate {
        pc: PcKind,
        candidate: IceCandidateInit,
    },
    /// To a publisher: which simulcast layers (by rid) of its track `mid` anyone needs; the
    /// page sets `encodings[i].active` from it.
    Layers {
        mid: String,
        active: std::collections::BTreeMap<String, bool>,
    },
    /// To a subscriber: its track `mid` carries layer `rid` now (the switch is complete).
    Layer { mid: String, rid: String },
    /// To every member: `id` started or stopped speaking.
    Speaking { id: ParticipantId, speaking: bool },
    /// The participant's media is gone for good (ICE failed, never connected in time).
    /// Signaling should remove the participant from the room.
    Closed { reason: String },
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum SfuError {
    #[error("invalid session description: {0}")]
    BadSdp(String),
    #[error("invalid ICE candidate: {0}")]
    BadCandidate(String),
    #[error("too many tracks: at most {0} per participant")]
    TooManyTracks(usize),
    #[error("no subscriber offer is waiting for an answer")]
    NoPendingOffer,
    #[error("the participant has left")]
    Gone,
    #[error("media error: {0}")]
    Internal(String),
}
