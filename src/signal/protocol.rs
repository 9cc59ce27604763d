//! The wire types of both namespaces: what clients send (strict serde types, unknown fields
//! refused) and what the server emits, plus the one error shape. `docs/protocol.md` shows an
//! example of each.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::access::Role;
use crate::config::IceServer;
use crate::sfu::{IceCandidateInit, PcKind, PublishedTrack, Source, TileView, TrackInfo};

/// Why an event was refused. Serialized as the snake_case `code` of an `error` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    PayloadTooLarge,
    RateLimited,
    UnknownEvent,
    UnknownPeer,
    NotAllowed,
    InvalidRoom,
    InvalidName,
    AlreadyJoined,
    NotInRoom,
    RoomFull,
    TooManyRooms,
    BadSdp,
    BadCandidate,
    TooManyTracks,
    NoPendingOffer,
    MediaError,
    ServerShutdown,
    // Access (docs/protocol.md, "Access and roles").
    TokenRequired,
    TokenTooLarge,
    TokenMalformed,
    TokenAlgorithm,
    TokenUnknownKey,
    TokenSignature,
    TokenExpired,
    TokenNotYetValid,
    TokenWrongRoom,
    PasswordRequired,
    PasswordWrong,
    PasswordRateLimited,
    RoomLocked,
    Banned,
    PublishDenied,
    ChatDisabled,
    NotModerator,
    UnmuteDenied,
    UnknownParticipant,
    Removed,
    RoomEnded,
    // Cluster (docs/cluster.md).
    RoomElsewhere,
    ClusterUnavailable,
}

impl From<crate::access::Denial> for ErrorCode {
    fn from(d: crate::access::Denial) -> Self {
        use crate::access::{Denial as D, TokenError as T};
        match d {
            D::TokenRequired => Self::TokenRequired,
            D::Token(T::TooLarge) => Self::TokenTooLarge,
            D::Token(T::Malformed) => Self::TokenMalformed,
            D::Token(T::WrongAlgorithm) => Self::TokenAlgorithm,
            D::Token(T::UnknownKey) => Self::TokenUnknownKey,
            D::Token(T::BadSignature) => Self::TokenSignature,
            D::Token(T::Expired) => Self::TokenExpired,
            D::Token(T::NotYetValid) => Self::TokenNotYetValid,
            D::Token(T::WrongRoom) => Self::TokenWrongRoom,
            D::PasswordRequired => Self::PasswordRequired,
            D::PasswordWrong => Self::PasswordWrong,
            D::PasswordRateLimited => Self::PasswordRateLimited,
            D::RoomLocked => Self::RoomLocked,
            D::Banned => Self::Banned,
            D::PublishDenied(_) => Self::PublishDenied,
            D::ChatDisabled => Self::ChatDisabled,
            D::NotModerator => Self::NotModerator,
            D::UnmuteDenied => Self::UnmuteDenied,
        }
    }
}

/// The one `error` event: `{code, message, event}`. `event` names the refused event;
/// `room_elsewhere` adds `url`, where the room is hosted.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("{event}: {message}")]
pub struct SignalError {
    pub code: ErrorCode,
    pub message: String,
    pub event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl SignalError {
    /// The refusal of `event` for an access reason (its message never shows a secret).
    pub fn denied(event: &str, d: crate::access::Denial) -> Self {
        Self::new(d.into(), event, d.to_string())
    }

    pub fn new(code: ErrorCode, event: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            event: event.to_string(),
            url: None,
        }
    }

    /// The refusal of a `join` whose room another cluster node hosts: join it at `url`.
    pub fn elsewhere(room: &str, node: &str, url: &str) -> Self {
        let message = format!("room {room:?} is hosted by cluster node {node}: join it at {url}");
        Self {
            url: Some(url.to_string()),
            ..Self::new(ErrorCode::RoomElsewhere, "join", message)
        }
    }

    pub fn bad_request(event: &str, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, event, message)
    }
}

/// What an acknowledgement carries when the acknowledged event was refused.
#[derive(Debug, Serialize)]
pub struct AckError<'a> {
    pub error: &'a SignalError,
}

/// Decodes the single object argument of `event` into `T`; serde's complaint, with the path of
/// the offending field, becomes a `bad_request`.
pub fn object<T: DeserializeOwned>(event: &str, args: Vec<Value>) -> Result<T, SignalError> {
    let value = single(event, args)?;
    if !value.is_object() {
        return Err(SignalError::bad_request(
            event,
            format!("payload must be a JSON object, got {}", kind(&value)),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path == "." {
            inner.to_string()
        } else {
            format!("field `{path}`: {inner}")
        };
        SignalError::bad_request(event, message)
    })
}

/// Events without a payload accept nothing or an empty object (some clients always send one).
pub fn nothing(event: &str, args: Vec<Value>) -> Result<(), SignalError> {
    match args.as_slice() {
        [] => Ok(()),
        [Value::Object(map)] if map.is_empty() => Ok(()),
        _ => Err(SignalError::bad_request(
            event,
            "this event takes no payload (or an empty object)",
        )),
    }
}

fn single(event: &str, args: Vec<Value>) -> Result<Value, SignalError> {
    let count = args.len();
    let mut args = args.into_iter();
    match (args.next(), count) {
        (Some(value), 1) => Ok(value),
        _ => Err(SignalError::bad_request(
            event,
            format!("expected exactly one object argument, got {count} arguments"),
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---- `/`: the tutorial's protocol -------------------------------------------------------

/// `persons` entry of `ready` and `change`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Person {
    pub id: String,
    pub seq: u32,
}

/// `message {to, ...}` from a client on `/`: any JSON object whose `to` is a string. Its fields
/// are kept as the raw JSON text the client sent, in order, so the relay hands them on exactly
/// (numbers and all) instead of re-encoding what it parsed.
#[derive(Debug)]
pub struct DirectMessage {
    pub to: String,
    fields: Vec<(String, Box<RawValue>)>,
}

impl DirectMessage {
    /// Decodes the arguments of `message`: exactly one, an object with a string `to`.
    pub fn from_args(event: &str, args: &[&RawValue]) -> Result<Self, SignalError> {
        let [body] = args else {
            return Err(SignalError::bad_request(
                event,
                format!(
                    "expected exactly one object argument, got {} arguments",
                    args.len()
                ),
            ));
        };
        let kind = raw_kind(body);
        if kind != "an object" {
            return Err(SignalError::bad_request(
                event,
                format!("payload must be a JSON object, got {kind}"),
            ));
        }
        let Fields(fields) = serde_json::from_str(body.get())
            .map_err(|e| SignalError::bad_request(event, e.to_string()))?;
        let Some((_, to)) = fields.iter().find(|(k, _)| k == "to") else {
            return Err(SignalError::bad_request(event, "field `to` is missing"));
        };
        let to = serde_json::from_str::<String>(to.get()).map_err(|_| {
            SignalError::bad_request(
                event,
                format!(
                    "field `to` must be a string (an id from `ready` or `change`), got {}",
                    raw_kind(to)
                ),
            )
        })?;
        Ok(Self { to, fields })
    }

    /// The body as relayed: the client's fields untouched, `from` and `time` set by the server
    /// (in place if the client sent them, else appended, as the tutorial's `body.from = ...`).
    pub fn relayed<'a>(&'a self, from: &'a str, time: &'a str) -> RelayedMessage<'a> {
        RelayedMessage {
            fields: &self.fields,
            from,
            time,
        }
    }
}

/// An object's fields in order, each as raw JSON; a repeated key keeps its first place and its
/// last value, as `JSON.parse` does.
struct Fields(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields, A::Error> {
                let mut fields: Vec<(String, Box<RawValue>)> = Vec::new();
                let mut index: HashMap<String, usize> = HashMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value::<Box<RawValue>>()?;
                    match index.get(&key) {
                        Some(&at) => fields[at].1 = value,
                        None => {
                            index.insert(key.clone(), fields.len());
                            fields.push((key, value));
                        }
                    }
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// The relayed `message`: see [`DirectMessage::relayed`].
#[derive(Debug)]
pub struct RelayedMessage<'a> {
    fields: &'a [(String, Box<RawValue>)],
    from: &'a str,
    time: &'a str,
}

impl Serialize for RelayedMessage<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let has = |name: &str| self.fields.iter().any(|(k, _)| k == name);
        let mut map = s.serialize_map(None)?;
        for (key, value) in self.fields {
            match key.as_str() {
                "from" => map.serialize_entry(key, self.from)?,
                "time" => map.serialize_entry(key, self.time)?,
                _ => map.serialize_entry(key, value)?,
            }
        }
        if !has("from") {
            map.serialize_entry("from", self.from)?;
        }
        if !has("time") {
            map.serialize_entry("time", self.time)?;
        }
        map.end()
    }
}

/// What kind of JSON value `raw` is, for error messages (its text is valid JSON).
fn raw_kind(raw: &RawValue) -> &'static str {
    match raw.get().trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        _ => "a number",
    }
}

// ---- `/rooms` ------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub room: String,
    pub name: String,
    /// An access token (also accepted in the Socket.IO `auth` payload).
    #[serde(default)]
    pub token: Option<String>,
    /// The room's password, when it has one and no token is given.
    #[serde(default)]
    pub password: Option<String>,
}

/// What a member shows the others. Every flag starts false.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    pub audio_muted: bool,
    pub video_muted: bool,
    pub screen: bool,
}

/// `state {...}`: only the named flags change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateUpdate {
    pub audio_muted: Option<bool>,
    pub video_muted: Option<bool>,
    pub screen: Option<bool>,
}

impl MemberState {
    pub fn apply(&mut self, update: &StateUpdate) {
        if let Some(v) = update.audio_muted {
            self.audio_muted = v;
        }
        if let Some(v) = update.video_muted {
            self.video_muted = v;
        }
        if let Some(v) = update.screen {
            self.screen = v;
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub id: String,
    pub name: String,
    pub state: MemberState,
}

/// The acknowledgement of a successful `join`.
#[derive(Debug, Serialize)]
pub struct JoinAck<'a> {
    pub id: &'a str,
    pub room: &'a str,
    pub members: Vec<MemberView>,
    pub ice_servers: &'a [IceServer],
    /// The joiner's role, and what the room allows: the page shows controls accordingly.
    pub role: Role,
    pub name: &'a str,
    pub policy: PolicyView,
}

/// The parts of a room's policy a member's page needs.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyView {
    pub chat: bool,
    pub publish: crate::access::policy::Publishers,
    pub self_unmute: bool,
    pub locked: bool,
}

/// `moderate {action, ...}`: one moderation action. All but `unmute` of oneself need the
/// moderator role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Moderate {
    /// Stop forwarding member `id`'s tracks of `source`.
    Mute {
        id: String,
        source: Source,
    },
    /// Lift such a mute (a member may lift its own if the room allows).
    Unmute {
        id: String,
        source: Source,
    },
    /// Remove member `id`; with `ban`, it may not come back while the room lasts.
    Remove {
        id: String,
        #[serde(default)]
        ban: bool,
    },
    Lock,
    Unlock,
    /// Remove everyone; the room is gone.
    End,
    /// Promote or demote member `id`.
    SetRole {
        id: String,
        role: Role,
    },
}

/// `moderated {action, by, ...}` to every member: what a moderator did. `by` is empty when it
/// was the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct Moderated<'a> {
    #[serde(flatten)]
    pub action: &'a Moderate,
    pub by: &'a str,
}

#[derive(Debug, Serialize)]
pub struct Left<'a> {
    pub id: &'a str,
}

#[derive(Debug, Serialize)]
pub struct Updated<'a> {
    pub id: &'a str,
    pub state: MemberState,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomMessage {
    pub content: Value,
}

#[derive(Debug, Serialize)]
pub struct RoomMessageOut<'a> {
    pub from: &'a str,
    pub name: &'a str,
    pub content: &'a Value,
    pub time: &'a str,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishOffer {
    pub sdp: String,
    pub tracks: Vec<PublishedTrack>,
}

#[derive(Debug, Serialize)]
pub struct PublishAnswer {
    pub sdp: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeAnswer {
    pub sdp: String,
}

#[derive(Debug, Serialize)]
pub struct SubscribeOffer<'a> {
    pub sdp: &'a str,
    pub tracks: &'a [TrackInfo],
}

/// `view {tracks: [{mid, width, height, visible}]}`: what the page shows of each track it
/// receives (issue 10; `docs/protocol.md`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct View {
    pub tracks: Vec<TileView>,
}

/// `layers {mid, active: {rid: bool}}` to a publisher.
#[derive(Debug, Serialize)]
pub struct LayersOut<'a> {
    pub mid: &'a str,
    pub active: &'a std::collections::BTreeMap<String, bool>,
}

/// `layer {mid, rid}` to a subscriber.
#[derive(Debug, Serialize)]
pub struct LayerOut<'a> {
    pub mid: &'a str,
    pub rid: &'a str,
}

/// `speaking {id, speaking}` to every member.
#[derive(Debug, Serialize)]
pub struct SpeakingOut<'a> {
    pub id: &'a str,
    pub speaking: bool,
}

/// `candidate {pc, candidate}` both ways; `candidate: null` ends the client's candidates.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    pub pc: PcKind,
    pub candidate: Option<IceCandidateInit>,
}

/// `restart_ice {pc}`: the client lost a connection and asks for an ICE restart on it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartIce {
    pub pc: PcKind,
}

/// Server local time as the tutorial prints it: `H:M:S`, unpadded (JS `getHours()` etc.).
pub fn clock() -> String {
    chrono::Local::now().format("%-H:%-M:%-S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_and_mistyped_fields_are_named() {
        let e = object::<JoinRequest>("join", vec![json!({"room": "a"})]).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("name"), "{}", e.message);
        let e = object::<JoinRequest>("join", vec![json!({"room": 5, "name": "x"})]).unwrap_err();
        assert!(e.message.contains("`room`"), "{}", e.message);
        let e = object::<JoinRequest>("join", vec![json!({"room": "a", "name": "x", "extra": 1})])
            .unwrap_err();
        assert!(e.message.contains("extra"), "{}", e.message);
    }

    #[test]
    fn non_objects_and_argument_counts_are_refused() {
        let e = object::<JoinRequest>("join", vec![json!("room")]).unwrap_err();
        assert!(e.message.contains("a string"), "{}", e.message);
        assert!(object::<JoinRequest>("join", vec![]).is_err());
        assert!(object::<RoomMessage>("message", vec![json!({"content": 1}), json!(2)]).is_err());
        assert!(nothing("leave", vec![]).is_ok());
        assert!(nothing("leave", vec![json!({})]).is_ok());
        assert!(nothing("leave", vec![json!({"x": 1})]).is_err());
    }

    fn direct(body: &str) -> Result<DirectMessage, SignalError> {
        let raw: Box<RawValue> = serde_json::from_str(body).unwrap();
        DirectMessage::from_args("message", &[&raw])
    }

    #[test]
    fn direct_message_is_relayed_as_sent_with_from_and_time() {
        let body = r#"{"to":"b","n":0.1234567890123456789,"big":123456789012345678901234567890,"x":{"y":[1,"é"]},"from":"forged"}"#;
        let m = direct(body).unwrap();
        assert_eq!(m.to, "b");
        let out = serde_json::to_string(&m.relayed("a", "9:5:7")).unwrap();
        assert_eq!(
            out,
            r#"{"to":"b","n":0.1234567890123456789,"big":123456789012345678901234567890,"x":{"y":[1,"é"]},"from":"a","time":"9:5:7"}"#
        );
    }

    #[test]
    fn repeated_keys_keep_their_first_place_and_last_value() {
        let m = direct(r#"{"a":1,"to":"x","a":2}"#).unwrap();
        let out = serde_json::to_string(&m.relayed("f", "t")).unwrap();
        assert_eq!(out, r#"{"a":2,"to":"x","from":"f","time":"t"}"#);
    }

    #[test]
    fn direct_message_needs_an_object_with_a_string_to() {
        for (body, says) in [
            (r#""hi""#, "a string"),
            ("[1]", "an array"),
            ("null", "null"),
            ("7", "a number"),
            (r#"{"type":"text"}"#, "missing"),
            (r#"{"to":5}"#, "got a number"),
            (r#"{"to":{"id":"x"}}"#, "got an object"),
            (r#"{"to":null}"#, "got null"),
        ] {
            let e = direct(body).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest);
            assert!(e.message.contains(says), "{body}: {}", e.message);
        }
        assert!(DirectMessage::from_args("message", &[]).is_err());
    }

    #[test]
    fn clock_is_unpadded() {
        let t = clock();
        let parts: Vec<&str> = t.split(':').collect();
        assert_eq!(parts.len(), 3);
        for p in parts {
            assert!(p.len() == 1 || !p.starts_with('0'), "{t}");
        }
    }

    #[test]
    fn error_serializes_as_documented() {
        let e = SignalError::new(ErrorCode::RoomFull, "join", "full");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"code": "room_full", "message": "full", "event": "join"})
        );
    }
}
