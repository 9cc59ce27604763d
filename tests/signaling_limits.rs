//! Bad input and limits: every refusal is one `error {code, message, event}` (and the ack
//! carries it), the connection survives unless it abuses, and no one else notices.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{server, server_with, server_with_clock, stop, Client};
use rust_socketio::Payload;
use serde_json::{json, Value};

#[tokio::test]
async fn non_object_payloads_get_bad_request_and_the_connection_survives() {
    let server = server().await;
    let mut a = Client::rooms(&server).await;
    for args in [
        vec![json!("standup")],
        vec![json!(5)],
        vec![json!(["r", "n"])],
        vec![Value::Null],
        vec![],
        vec![json!({"room": "r", "name": "n"}), json!(2)],
    ] {
        let ack = a.ack_args("join", args.clone()).await;
        assert_eq!(ack["error"]["code"], "bad_request", "{args:?}: {ack}");
        let err = a.expect_error("bad_request").await;
        assert_eq!(err["event"], "join");
    }
    let (mut t, _, _) = Client::tutorial(&server).await;
    t.emit_args("message", vec![json!("hello")]).await;
    t.expect_error("bad_request").await;
    a.join("r", "A").await;
    stop(server).await;
}

#[tokio::test]
async fn missing_mistyped_and_unknown_fields_are_named() {
    let server = server().await;
    let mut a = Client::rooms(&server).await;
    for (payload, field) in [
        (json!({"room": "r"}), "name"),
        (json!({"room": 5, "name": "n"}), "room"),
        (json!({"room": "r", "name": "n", "admin": true}), "admin"),
    ] {
        a.emit("join", payload).await;
        let err = a.expect_error("bad_request").await;
        let message = err["message"].as_str().unwrap();
        assert!(message.contains(field), "{message} names {field}");
    }
    a.join("r", "A").await;
    a.emit("state", json!({"screen": "yes"})).await;
    let err = a.expect_error("bad_request").await;
    assert!(err["message"].as_str().unwrap().contains("screen"), "{err}");
    a.emit("candidate", json!({"pc": "sideways", "candidate": null}))
        .await;
    let err = a.expect_error("bad_request").await;
    assert!(err["message"].as_str().unwrap().contains("pc"), "{err}");
    let (mut t, _, _) = Client::tutorial(&server).await;
    // The tutorial's relay takes any fields but needs a string `to`.
    t.emit("message", json!({"type": "text", "content": "x"}))
        .await;
    let err = t.expect_error("bad_request").await;
    assert!(err["message"].as_str().unwrap().contains("`to`"), "{err}");
    stop(server).await;
}

#[tokio::test]
async fn unknown_events_are_refused_on_both_namespaces() {
    let server = server().await;
    let mut a = Client::rooms(&server).await;
    let ack = a.ack("frobnicate", json!({})).await;
    assert_eq!(ack["error"]["code"], "unknown_event");
    assert_eq!(ack["error"]["event"], "frobnicate");
    a.expect_error("unknown_event").await;
    let (mut t, _, _) = Client::tutorial(&server).await;
    t.emit("join", json!({"room": "r", "name": "n"})).await;
    let err = t.expect_error("unknown_event").await;
    assert_eq!(err["event"], "join");
    stop(server).await;
}

#[tokio::test]
async fn binary_payloads_are_refused() {
    let server = server().await;
    let mut a = Client::rooms(&server).await;
    a.sio
        .emit("message", Payload::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    a.expect_error("bad_request").await;
    a.join("r", "A").await;
    stop(server).await;
}

#[tokio::test]
async fn oversized_message_is_rejected_and_no_one_else_notices() {
    let server = server_with(|c| c.signaling.max_message_bytes = 1024).await;
    let mut a = Client::rooms(&server).await;
    a.join("r", "A").await;
    let mut b = Client::rooms(&server).await;
    b.join("r", "B").await;
    a.expect("joined").await;

    let ack = a.ack("message", json!({"content": "x".repeat(2000)})).await;
    assert_eq!(ack["error"]["code"], "payload_too_large");
    let err = a.expect_error("payload_too_large").await;
    assert_eq!(err["event"], "message");
    // A payload just under the limit passes.
    a.emit("message", json!({"content": "y".repeat(900)})).await;
    let m = b.expect("message").await;
    assert_eq!(m[0]["content"].as_str().unwrap().len(), 900);
    b.assert_nothing_pending();
    // Same on the tutorial's namespace.
    let (mut t, _, _) = Client::tutorial(&server).await;
    t.emit(
        "message",
        json!({"to": "x", "type": "t", "content": "z".repeat(5000)}),
    )
    .await;
    t.expect_error("payload_too_large").await;
    stop(server).await;
}

#[tokio::test]
async fn flood_is_answered_once_per_second_the_rest_dropped_and_the_bucket_refills_with_time() {
    // The limits read a clock that stands still until this test moves it: the burst, the one
    // answer per second and the refill are exact, whatever the machine's speed.
    let (server, clock) = server_with_clock(|c| {
        c.signaling.events_per_second = 5;
        c.signaling.event_burst = 10;
        c.signaling.max_refused_events = 10_000;
    })
    .await;
    let (mut a, _, _) = Client::tutorial(&server).await;
    let (mut b, b_id, _) = Client::tutorial(&server).await;
    a.expect("change").await;
    for i in 0..100 {
        a.emit("message", json!({"to": b_id, "type": "text", "content": i}))
            .await;
    }
    // All 100 have been received once the counter says so (each is counted on arrival).
    wait_for_events(&server, 100).await;
    let dropped = server.metrics.signaling_dropped.load(Ordering::Relaxed);
    let refused = server.metrics.signaling_refused.load(Ordering::Relaxed);
    // No time passed: the burst of 10 passes, one event is answered, the other 89 dropped.
    assert_eq!((refused, dropped), (1, 89));
    for i in 0..10 {
        assert_eq!(b.expect("message").await[0]["content"], i);
    }
    a.expect_error("rate_limited").await;
    // Still no time: refused again, silently.
    a.emit(
        "message",
        json!({"to": b_id, "type": "text", "content": "early"}),
    )
    .await;
    wait_for_events(&server, 101).await;
    assert_eq!(server.metrics.signaling_dropped.load(Ordering::Relaxed), 90);
    // 200 ms at 5/s is one token: one event passes; the next is dropped, as the last answer
    // was less than a second ago.
    clock.advance(Duration::from_millis(200));
    let ack = a
        .ack(
            "message",
            json!({"to": b_id, "type": "text", "content": "after"}),
        )
        .await;
    assert_eq!(ack, json!({}));
    assert_eq!(b.expect("message").await[0]["content"], "after");
    a.emit(
        "message",
        json!({"to": b_id, "type": "text", "content": "late"}),
    )
    .await;
    wait_for_events(&server, 103).await;
    assert_eq!(server.metrics.signaling_dropped.load(Ordering::Relaxed), 91);
    // 800 ms more refill four tokens, and a full second after the first answer the next
    // refusal is answered again.
    clock.advance(Duration::from_millis(800));
    for i in 0..4 {
        a.emit("message", json!({"to": b_id, "type": "text", "content": i}))
            .await;
    }
    for i in 0..4 {
        assert_eq!(b.expect("message").await[0]["content"], i);
    }
    a.emit(
        "message",
        json!({"to": b_id, "type": "text", "content": "over"}),
    )
    .await;
    a.expect_error("rate_limited").await;
    assert_eq!(server.metrics.signaling_refused.load(Ordering::Relaxed), 2);
    b.assert_nothing_pending();
    stop(server).await;
}

/// Waits (bounded) until the server has counted `n` received events: the only sign that an
/// event it drops silently has arrived.
async fn wait_for_events(server: &sfu_lite::server::RunningServer, n: u64) {
    let events = || server.metrics.signaling_events.load(Ordering::Relaxed);
    common::gauges::assert_settles_to_zero(|| {
        vec![(
            "events still to arrive".into(),
            n.saturating_sub(events()) as i64,
        )]
    })
    .await;
}

#[tokio::test]
async fn a_socket_that_keeps_flooding_is_disconnected_and_others_carry_on() {
    // Time stands still: no token refills while the abuser floods, however slow the machine.
    let (server, _clock) = server_with_clock(|c| {
        c.signaling.events_per_second = 1;
        c.signaling.event_burst = 5;
        c.signaling.max_refused_events = 20;
    })
    .await;
    let mut abuser = Client::rooms(&server).await;
    let a = Client::rooms(&server).await;
    a.join("r", "A").await;
    let mut b = Client::rooms(&server).await;
    b.join("r", "B").await;
    for _ in 0..60 {
        if abuser
            .sio
            .emit("state", json!({"screen": true}))
            .await
            .is_err()
        {
            break;
        }
    }
    loop {
        let (event, args) = abuser.next().await;
        if event == "close" {
            break;
        }
        assert_eq!(event, "error", "{args:?}");
    }
    a.emit("message", json!({"content": "fine"})).await;
    assert_eq!(b.expect("message").await[0]["content"], "fine");
    stop(server).await;
}

#[tokio::test]
async fn invalid_room_and_display_names_are_refused() {
    let server = server_with(|c| {
        c.signaling.max_room_name_len = 8;
        c.signaling.max_display_name_len = 5;
    })
    .await;
    let mut a = Client::rooms(&server).await;
    for (room, name, code) in [
        ("", "A", "invalid_room"),
        ("a b", "A", "invalid_room"),
        ("a/b", "A", "invalid_room"),
        ("123456789", "A", "invalid_room"),
        ("ok", "", "invalid_name"),
        ("ok", "   ", "invalid_name"),
        ("ok", "abcdef", "invalid_name"),
        ("ok", "a\u{7}b", "invalid_name"),
    ] {
        let ack = a.ack("join", json!({"room": room, "name": name})).await;
        assert_eq!(ack["error"]["code"], code, "{room:?} {name:?}: {ack}");
        a.expect_error(code).await;
    }
    a.join("12345678", "abcde").await;
    assert_eq!(server.metrics.rooms.load(Ordering::Relaxed), 1);
    stop(server).await;
}

#[tokio::test]
async fn full_rooms_and_too_many_rooms_are_refused() {
    let server = server_with(|c| {
        c.signaling.max_members_per_room = 2;
        c.signaling.max_rooms = 1;
    })
    .await;
    let a = Client::rooms(&server).await;
    a.join("r", "A").await;
    let b = Client::rooms(&server).await;
    b.join("r", "B").await;
    let mut c = Client::rooms(&server).await;
    let ack = c.ack("join", json!({"room": "r", "name": "C"})).await;
    assert_eq!(ack["error"]["code"], "room_full");
    c.expect_error("room_full").await;
    let ack = c.ack("join", json!({"room": "s", "name": "C"})).await;
    assert_eq!(ack["error"]["code"], "too_many_rooms");
    c.expect_error("too_many_rooms").await;
    // When a member leaves, there is room again.
    assert_eq!(b.ack_args("leave", vec![]).await, json!({}));
    c.join("r", "C").await;
    stop(server).await;
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused() {
    let server = server_with(|c| c.server.max_connections = 2).await;
    let (_a, _, _) = Client::tutorial(&server).await;
    let b = Client::rooms(&server).await;
    let mut c = Client::try_connect(&server, "/rooms").await;
    let (event, args) = c.next().await;
    assert_eq!(event, "error", "{args:?}");
    assert!(args[0].to_string().contains("server_full"), "{args:?}");
    b.disconnect().await;
    // The slot frees once the session has ended.
    common::gauges::assert_settles_to_zero(|| {
        let sockets = server.metrics.sockets.load(Ordering::Relaxed);
        vec![("sockets beyond the one left".into(), (sockets - 1).max(0))]
    })
    .await;
    let d = Client::rooms(&server).await;
    d.join("r", "D").await;
    stop(server).await;
}
