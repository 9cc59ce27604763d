//! Property tests of every parser of client input: the Socket.IO payload decoders of both
//! namespaces, the SDP checks and the candidate checks. On arbitrary and on almost-valid input
//! they never panic and refuse with a typed error; on valid input they accept.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use sfu_lite::sfu::checks::{check_answer, check_candidate, check_offer};
use sfu_lite::sfu::{IceCandidateInit, SfuError};
use sfu_lite::signal::protocol::ErrorCode;
use sfu_lite::signal::{parse_event, ROOMS_NAMESPACE};

/// Every field name of every client event, so generated objects often hit real fields.
const FIELDS: &[&str] = &[
    "room",
    "name",
    "content",
    "to",
    "type",
    "audio_muted",
    "video_muted",
    "screen",
    "sdp",
    "tracks",
    "mid",
    "source",
    "pc",
    "candidate",
    "sdpMid",
    "sdpMLineIndex",
    "usernameFragment",
    "from",
    "time",
];
/// Every enum value clients send.
const WORDS: &[&str] = &[
    "publisher",
    "subscriber",
    "camera",
    "microphone",
    "screen",
    "screen_audio",
    "v=0",
    "",
];
const ROOM_EVENTS: &[&str] = &[
    "join",
    "leave",
    "state",
    "message",
    "publish_offer",
    "subscribe_answer",
    "candidate",
];
const TUTORIAL_EVENTS: &[&str] = &["message", "bye", "ipaddr"];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(FIELDS).prop_map(str::to_string),
        1 => ".{0,8}",
    ]
}

/// Any JSON value, biased towards the protocol's field names and words.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        ".{0,24}".prop_map(Value::String),
        prop::sample::select(WORDS).prop_map(|w| Value::String(w.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn event_name(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(known).prop_map(str::to_string),
        1 => ".{0,12}",
    ]
}

/// A refusal must be a typed `error` naming the event, with a message.
fn assert_typed(
    ns: &str,
    event: &str,
    result: Result<(), sfu_lite::signal::protocol::SignalError>,
) -> Result<(), TestCaseError> {
    if let Err(e) = result {
        prop_assert!(
            matches!(e.code, ErrorCode::BadRequest | ErrorCode::UnknownEvent),
            "{ns} {event}: unexpected code {:?}",
            e.code
        );
        prop_assert_eq!(&e.event, event);
        prop_assert!(!e.message.is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn room_event_decoders_refuse_arbitrary_json_with_a_typed_error(
        event in event_name(ROOM_EVENTS),
        args in prop::collection::vec(json_value(), 0..3),
    ) {
        let result = parse_event(ROOMS_NAMESPACE, &event, args);
        if !ROOM_EVENTS.contains(&event.as_str()) {
            prop_assert_eq!(result.clone().unwrap_err().code, ErrorCode::UnknownEvent);
        }
        assert_typed(ROOMS_NAMESPACE, &event, result)?;
    }

    #[test]
    fn tutorial_event_decoders_refuse_arbitrary_json_with_a_typed_error(
        event in event_name(TUTORIAL_EVENTS),
        args in prop::collection::vec(json_value(), 0..3),
    ) {
        let result = parse_event("/", &event, args);
        if !TUTORIAL_EVENTS.contains(&event.as_str()) {
            prop_assert_eq!(result.clone().unwrap_err().code, ErrorCode::UnknownEvent);
        }
        assert_typed("/", &event, result)?;
    }

    #[test]
    fn a_valid_object_with_one_field_changed_is_decoded_or_refused_typed(
        (event, valid) in valid_room_event(),
        field in key(),
        value in json_value(),
    ) {
        let mut object = valid;
        object.as_object_mut().unwrap().insert(field, value);
        assert_typed(ROOMS_NAMESPACE, event, parse_event(ROOMS_NAMESPACE, event, vec![object]))?;
    }

    #[test]
    fn valid_room_events_decode((event, payload) in valid_room_event()) {
        let result = parse_event(ROOMS_NAMESPACE, event, vec![payload.clone()]);
        prop_assert!(result.is_ok(), "{} {}: {:?}", event, payload, result);
    }

    #[test]
    fn valid_tutorial_messages_decode(to in ".{0,16}", kind in ".{0,8}", content in json_value()) {
        let body = json!({"to": to, "type": kind, "content": content});
        let result = parse_event("/", "message", vec![body]);
        prop_assert!(result.is_ok(), "{:?}", result);
        prop_assert!(parse_event("/", "bye", vec![]).is_ok());
    }
}

/// One well-formed payload of each `/rooms` event that takes an object.
fn valid_room_event() -> impl Strategy<Value = (&'static str, Value)> {
    let source = prop::sample::select(&["camera", "microphone", "screen", "screen_audio"][..]);
    let pc = prop::sample::select(&["publisher", "subscriber"][..]);
    prop_oneof![
        (".{0,16}", ".{0,16}")
            .prop_map(|(room, name)| ("join", json!({"room": room, "name": name}))),
        (any::<Option<bool>>(), any::<Option<bool>>()).prop_map(|(a, v)| {
            let mut m = Map::new();
            if let Some(a) = a {
                m.insert("audio_muted".into(), json!(a));
            }
            if let Some(v) = v {
                m.insert("video_muted".into(), json!(v));
            }
            ("state", Value::Object(m))
        }),
        json_value().prop_map(|c| ("message", json!({"content": c}))),
        (".{0,64}", prop::collection::vec((".{0,4}", source), 0..4)).prop_map(|(sdp, tracks)| {
            let tracks: Vec<Value> = tracks
                .into_iter()
                .map(|(mid, s)| json!({"mid": mid, "source": s}))
                .collect();
            ("publish_offer", json!({"sdp": sdp, "tracks": tracks}))
        }),
        ".{0,64}".prop_map(|sdp| ("subscribe_answer", json!({"sdp": sdp}))),
        (
            pc,
            prop::option::of((
                ".{0,40}",
                prop::option::of(".{0,3}"),
                prop::option::of(any::<u16>())
            ))
        )
            .prop_map(|(pc, c)| {
                let candidate = c.map(|(line, mid, index)| {
                    let mut m = Map::new();
                    m.insert("candidate".into(), json!(line));
                    if let Some(mid) = mid {
                        m.insert("sdpMid".into(), json!(mid));
                    }
                    if let Some(i) = index {
                        m.insert("sdpMLineIndex".into(), json!(i));
                    }
                    Value::Object(m)
                });
                ("candidate", json!({"pc": pc, "candidate": candidate}))
            }),
    ]
}

// ---- SDP --------------------------------------------------------------------------------------

/// A minimal offer webrtc-rs parses, with one m-section per entry of `kinds`.
fn offer(kinds: &[bool]) -> String {
    let mut sdp = String::from("v=0\r\no=- 4215 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    for (i, video) in kinds.iter().enumerate() {
        let (media, pt, map) = if *video {
            ("video", 96, "VP8/90000")
        } else {
            ("audio", 111, "opus/48000/2")
        };
        sdp.push_str(&format!(
            "m={media} 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\na=mid:{i}\r\n\
             a=sendonly\r\na=rtpmap:{pt} {map}\r\n"
        ));
    }
    sdp
}

/// Mutations of an SDP's lines: drop, duplicate, replace with noise, truncate.
#[derive(Debug, Clone)]
enum Mutation {
    Drop(usize),
    Duplicate(usize),
    Replace(usize, String),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Drop),
        any::<usize>().prop_map(Mutation::Duplicate),
        (any::<usize>(), "[a-z]=.{0,30}|.{0,30}").prop_map(|(i, s)| Mutation::Replace(i, s)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(sdp: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = sdp.split("\r\n").map(str::to_string).collect();
    for m in mutations {
        let n = lines.len().max(1);
        match m {
            Mutation::Drop(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Mutation::Duplicate(i) if !lines.is_empty() => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::Replace(i, s) if !lines.is_empty() => lines[i % n] = s.clone(),
            Mutation::Truncate(i) => {
                let joined = lines.join("\r\n");
                let mut cut = i % (joined.len() + 1);
                while !joined.is_char_boundary(cut) {
                    cut -= 1;
                }
                lines = joined[..cut].split("\r\n").map(str::to_string).collect();
            }
            _ => {}
        }
    }
    lines.join("\r\n")
}

fn assert_sdp_error(result: Result<(), SfuError>) -> Result<(), TestCaseError> {
    if let Err(e) = result {
        prop_assert!(
            matches!(e, SfuError::BadSdp(_) | SfuError::TooManyTracks(_)),
            "untyped: {:?}",
            e
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn sdp_checks_refuse_arbitrary_text_typed(sdp in ".{0,400}", declared in 0usize..8) {
        assert_sdp_error(check_offer(sdp.clone(), declared, 4).map(drop))?;
        assert_sdp_error(check_answer(sdp).map(drop))?;
    }

    #[test]
    fn sdp_checks_refuse_mutated_offers_typed(
        kinds in prop::collection::vec(any::<bool>(), 0..6),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let sdp = mutate(&offer(&kinds), &mutations);
        assert_sdp_error(check_offer(sdp.clone(), kinds.len(), 4).map(drop))?;
        assert_sdp_error(check_answer(sdp).map(drop))?;
    }

    #[test]
    fn valid_offers_pass_up_to_the_track_limit(
        kinds in prop::collection::vec(any::<bool>(), 0..7),
        max in 0usize..6,
    ) {
        let sdp = offer(&kinds);
        match check_offer(sdp.clone(), 0, max) {
            Ok(c) => {
                prop_assert!(kinds.len() <= max);
                prop_assert_eq!(c.media_sections, kinds.len());
            }
            Err(e) => {
                prop_assert!(kinds.len() > max, "{:?} for {}", e, sdp);
                prop_assert_eq!(e, SfuError::TooManyTracks(max));
            }
        }
        prop_assert!(check_answer(sdp).is_ok());
    }
}

// ---- ICE candidates ----------------------------------------------------------------------

fn candidate(line: String) -> IceCandidateInit {
    IceCandidateInit {
        candidate: line,
        sdp_mid: None,
        sdp_mline_index: Some(0),
        username_fragment: None,
    }
}

fn host_line() -> impl Strategy<Value = String> {
    (
        "[a-zA-Z0-9+/]{1,32}",
        1u16..=2,
        any::<u32>(),
        any::<[u8; 4]>(),
        1u16..,
        prop::sample::select(&["udp", "UDP", "tcp"][..]),
    )
        .prop_map(|(foundation, component, priority, ip, port, proto)| {
            let ip = std::net::Ipv4Addr::from(ip);
            let tcp = if proto == "tcp" {
                " tcptype passive"
            } else {
                ""
            };
            format!(
                "candidate:{foundation} {component} {proto} {priority} {ip} {port} typ host{tcp}"
            )
        })
}

/// Candidate-like lines: real tokens and noise, space-separated.
fn token_line() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        prop::sample::select(
            &[
                "candidate:1",
                "1",
                "udp",
                "tcp",
                "2130706431",
                "127.0.0.1",
                "::1",
                "9",
                "typ",
                "host",
                "srflx",
                "relay",
                "raddr",
                "rport",
                "generation",
                "0",
                "tcptype",
                "active",
                "ufrag",
                "-1",
                "99999999999",
                "65536"
            ][..]
        )
        .prop_map(str::to_string),
        ".{0,10}",
    ];
    prop::collection::vec(token, 0..14).prop_map(|t| t.join(" "))
}

fn assert_candidate_error(
    result: Result<Option<impl std::fmt::Debug>, SfuError>,
) -> Result<(), TestCaseError> {
    if let Err(e) = result {
        prop_assert!(matches!(e, SfuError::BadCandidate(_)), "untyped: {:?}", e);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn candidate_check_refuses_arbitrary_text_typed(line in ".{0,200}") {
        assert_candidate_error(check_candidate(candidate(line)))?;
    }

    #[test]
    fn candidate_check_refuses_token_soup_typed(line in token_line()) {
        assert_candidate_error(check_candidate(candidate(line.clone())))?;
        assert_candidate_error(check_candidate(candidate(format!("candidate:{line}"))))?;
    }

    #[test]
    fn host_candidates_pass_unchanged(line in host_line()) {
        let checked = check_candidate(candidate(line.clone()));
        prop_assert!(matches!(&checked, Ok(Some(c)) if c.candidate == line), "{:?}", checked);
    }

    #[test]
    fn oversized_candidates_are_refused(extra in 1usize..200) {
        let line = format!("candidate:1 1 udp 1 127.0.0.1 9 typ host{}", " ".repeat(1024 + extra));
        let refused = matches!(check_candidate(candidate(line)), Err(SfuError::BadCandidate(_)));
        prop_assert!(refused);
    }
}
