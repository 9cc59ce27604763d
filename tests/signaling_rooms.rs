//! Rooms on `/rooms`: join/leave/state/message, deltas instead of rosters, isolation between
//! rooms and from the tutorial's namespace, and the media relay's refusals.

mod common;

use std::sync::atomic::Ordering;

use common::{assert_gauges_zero, server, stop, Client};
use serde_json::json;

#[tokio::test]
async fn join_acknowledges_id_room_members_and_ice_servers() {
    let server = common::server_with(|c| {
        c.media.ice_servers = vec![sfu_lite::config::IceServer {
            urls: vec!["turn:127.0.0.1:3478".into()],
            username: "u".into(),
            credential: "p".into(),
        }]
    })
    .await;
    let a = Client::rooms(&server).await;
    let ack = a.join("standup", "Ada").await;
    let a_id = ack["id"].as_str().unwrap().to_string();
    assert_eq!(ack["room"], "standup");
    assert_eq!(ack["members"], json!([]));
    assert_eq!(
        ack["ice_servers"],
        json!([{"urls": ["turn:127.0.0.1:3478"], "username": "u", "credential": "p"}])
    );

    let b = Client::rooms(&server).await;
    let ack = b.join("standup", "Bob").await;
    assert_eq!(
        ack["members"],
        json!([{"id": a_id, "name": "Ada",
                "state": {"audio_muted": false, "video_muted": false, "screen": false}}])
    );
    assert_eq!(server.metrics.rooms.load(Ordering::Relaxed), 1);
    assert_eq!(server.metrics.participants.load(Ordering::Relaxed), 2);
    stop(server).await;
}

#[tokio::test]
async fn members_get_deltas_never_the_roster() {
    let server = server().await;
    let mut a = Client::rooms(&server).await;
    a.join("r", "A").await;
    let mut b = Client::rooms(&server).await;
    let b_id = b.join("r", "B").await["id"].as_str().unwrap().to_string();
    let joined = a.expect("joined").await;
    assert_eq!(
        joined,
        vec![json!({"id": b_id, "name": "B",
                     "state": {"audio_muted": false, "video_muted": false, "screen": false}})]
    );

    let c = Client::rooms(&server).await;
    let c_id = c.join("r", "C").await["id"].as_str().unwrap().to_string();
    // Each member hears about the newcomer alone, one small object.
    for member in [&mut a, &mut b] {
        let joined = member.expect("joined").await;
        assert_eq!(joined.len(), 1);
        assert_eq!(joined[0]["id"], c_id.as_str());
        assert!(joined[0].get("members").is_none());
    }

    let ack = c.ack("state", json!({"audio_muted": true})).await;
    assert_eq!(ack, json!({}));
    for member in [&mut a, &mut b] {
        let updated = member.expect("updated").await;
        assert_eq!(
            updated,
            vec![
                json!({"id": c_id, "state": {"audio_muted": true, "video_muted": false, "screen": false}})
            ]
        );
    }

    c.emit_args("leave", vec![]).await;
    for member in [&mut a, &mut b] {
        assert_eq!(member.expect("left").await, vec![json!({"id": c_id})]);
    }
    b.disconnect().await;
    assert_eq!(a.expect("left").await, vec![json!({"id": b_id})]);
    stop(server).await;
}

#[tokio::test]
async fn room_message_reaches_every_other_member_and_no_one_else() {
    let server = server().await;
    let (mut tutorial, _, _) = Client::tutorial(&server).await;
    let mut a = Client::rooms(&server).await;
    let a_id = a.join("one", "A").await["id"].as_str().unwrap().to_string();
    let mut b = Client::rooms(&server).await;
    b.join("one", "B").await;
    let mut c = Client::rooms(&server).await;
    c.join("one", "C").await;
    let mut other = Client::rooms(&server).await;
    other.join("two", "O").await;
    let lobby = Client::rooms(&server).await; // connected, in no room
    a.expect("joined").await;
    a.expect("joined").await;
    b.expect("joined").await;

    let ack = a.ack("message", json!({"content": "hello 聊天室"})).await;
    assert_eq!(ack, json!({}));
    for member in [&mut b, &mut c] {
        let m = member.expect("message").await;
        assert_eq!(m.len(), 1);
        assert_eq!(m[0]["from"], a_id.as_str());
        assert_eq!(m[0]["name"], "A");
        assert_eq!(m[0]["content"], "hello 聊天室");
        assert_eq!(m[0]["time"].as_str().unwrap().split(':').count(), 3);
    }
    // The sender, the other room, the lobby and the tutorial's namespace got nothing: a marker
    // sent afterwards is the next thing each sees.
    a.assert_nothing_pending();
    lobby.join("two", "L").await;
    assert_eq!(other.expect("joined").await[0]["name"], "L");
    other.assert_nothing_pending();
    let (_t2, _, _) = Client::tutorial(&server).await;
    tutorial.expect("change").await;
    tutorial.assert_nothing_pending();
    stop(server).await;
}

#[tokio::test]
async fn the_last_leaver_removes_the_room() {
    let server = server().await;
    let a = Client::rooms(&server).await;
    a.join("r", "A").await;
    let b = Client::rooms(&server).await;
    b.join("r", "B").await;
    assert_eq!(server.metrics.rooms.load(Ordering::Relaxed), 1);
    assert_eq!(a.ack_args("leave", vec![]).await, json!({}));
    assert_eq!(b.ack_args("leave", vec![]).await, json!({}));
    assert_gauges_zero_but_sockets(&server).await;
    // The room can be created again, and the old members could join another one.
    a.join("r", "A2").await;
    b.join("other", "B2").await;
    assert_eq!(server.metrics.rooms.load(Ordering::Relaxed), 2);
    a.disconnect().await;
    b.disconnect().await;
    assert_gauges_zero(&server.metrics).await;
    stop(server).await;
}

async fn assert_gauges_zero_but_sockets(server: &sfu_lite::server::RunningServer) {
    assert_eq!(server.metrics.rooms.load(Ordering::Relaxed), 0);
    assert_eq!(server.metrics.participants.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn room_events_before_join_are_refused_with_not_in_room() {
    let server = server().await;
    let mut a = Client::rooms(&server).await;
    for (event, payload) in [
        ("message", json!({"content": "x"})),
        ("state", json!({"screen": true})),
        ("publish_offer", json!({"sdp": "v=0", "tracks": []})),
        ("subscribe_answer", json!({"sdp": "v=0"})),
        ("candidate", json!({"pc": "publisher", "candidate": null})),
    ] {
        let ack = a.ack(event, payload).await;
        assert_eq!(ack["error"]["code"], "not_in_room", "{event}: {ack}");
        assert_eq!(ack["error"]["event"], event);
        let err = a.expect_error("not_in_room").await;
        assert_eq!(err["event"], event);
    }
    a.emit_args("leave", vec![]).await;
    a.expect_error("not_in_room").await;
    stop(server).await;
}

#[tokio::test]
async fn joining_twice_is_refused_and_the_first_membership_stays() {
    let server = server().await;
    let mut a = Client::rooms(&server).await;
    a.join("r", "A").await;
    let ack = a.ack("join", json!({"room": "s", "name": "A"})).await;
    assert_eq!(ack["error"]["code"], "already_joined");
    a.expect_error("already_joined").await;
    let b = Client::rooms(&server).await;
    let members = b.join("r", "B").await["members"].clone();
    assert_eq!(members.as_array().unwrap().len(), 1);
    assert_eq!(server.metrics.rooms.load(Ordering::Relaxed), 1);
    stop(server).await;
}

#[tokio::test]
async fn media_offer_with_garbage_sdp_is_refused_and_the_member_stays() {
    let server = server().await;
    let mut a = Client::rooms(&server).await;
    a.join("r", "A").await;
    let ack = a
        .ack(
            "publish_offer",
            json!({"sdp": "not an sdp", "tracks": [{"mid": "0", "source": "camera"}]}),
        )
        .await;
    // The member has media (the test server runs a real SFU), so the SFU parses the offer.
    assert_eq!(ack["error"]["code"], "bad_sdp", "{ack}");
    a.expect_error("bad_sdp").await;
    // No subscriber offer was ever made to this member.
    let ack = a.ack("subscribe_answer", json!({"sdp": "v=0"})).await;
    assert_eq!(ack["error"]["code"], "no_pending_offer", "{ack}");
    a.expect_error("no_pending_offer").await;
    // Still a member: chat works.
    let mut b = Client::rooms(&server).await;
    b.join("r", "B").await;
    a.expect("joined").await;
    a.emit("message", json!({"content": "still here"})).await;
    assert_eq!(b.expect("message").await[0]["content"], "still here");
    stop(server).await;
}

#[tokio::test]
async fn a_state_that_changes_nothing_is_not_fanned_out() {
    let server = server().await;
    let mut a = Client::rooms(&server).await;
    a.join("r", "A").await;
    let b = Client::rooms(&server).await;
    let b_id = b.join("r", "B").await["id"].as_str().unwrap().to_string();
    a.expect("joined").await;

    // Each is acknowledged, none changes b's state.
    for noop in [
        json!({}),
        json!({"audio_muted": false}),
        json!({"screen": false, "video_muted": false}),
    ] {
        assert_eq!(b.ack("state", noop).await, json!({}));
    }
    assert_eq!(
        b.ack("state", json!({"video_muted": true})).await,
        json!({})
    );
    assert_eq!(
        b.ack("state", json!({"video_muted": true})).await,
        json!({})
    );
    // The one real change is the next (and only) thing a hears.
    let updated = a.expect("updated").await;
    assert_eq!(
        updated,
        vec![
            json!({"id": b_id, "state": {"audio_muted": false, "video_muted": true, "screen": false}})
        ]
    );
    b.emit("message", json!({"content": "marker"})).await;
    assert_eq!(a.expect("message").await[0]["content"], "marker");
    a.assert_nothing_pending();
    stop(server).await;
}

#[tokio::test]
async fn chat_over_the_room_budget_is_refused_and_reaches_no_one() {
    // 3000 bytes of chat egress, refilled at 1 byte/s: a line of ~1.1 KB sent to two members
    // costs ~2.2 KB, so the first passes and a second cannot, however slow this machine is.
    let server = common::server_with(|c| {
        c.signaling.room_chat_bytes_per_second = 1;
        c.signaling.room_chat_burst_bytes = 3000;
    })
    .await;
    let a = Client::rooms(&server).await;
    a.join("r", "A").await;
    let mut b = Client::rooms(&server).await;
    b.join("r", "B").await;
    let mut c = Client::rooms(&server).await;
    c.join("r", "C").await;
    b.expect("joined").await;

    let long = "x".repeat(1000);
    assert_eq!(a.ack("message", json!({"content": long})).await, json!({}));
    let ack = a
        .ack("message", json!({"content": "second ".repeat(150)}))
        .await;
    assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
    assert_eq!(ack["error"]["event"], "message");
    // A short line still fits in what is left; it is the next thing each member sees after the
    // first line: the refused one reached no one.
    assert_eq!(
        a.ack("message", json!({"content": "short"})).await,
        json!({})
    );
    for member in [&mut b, &mut c] {
        assert_eq!(member.expect("message").await[0]["content"], long.as_str());
        assert_eq!(member.expect("message").await[0]["content"], "short");
    }
    stop(server).await;
}
