//! The tutorial's protocol on `/`, driven by a real Socket.IO client.

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use common::{ids, server, server_with, stop, Client, WAIT};
use serde_json::{json, Value};

fn seqs(persons: &[Value]) -> Vec<u64> {
    persons.iter().map(|p| p["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn ready_goes_to_newcomer_and_change_to_the_others() {
    let server = server().await;
    let (mut a, a_id, persons) = Client::tutorial(&server).await;
    assert_eq!(persons, vec![json!({"id": a_id, "seq": 1})]);

    let (mut b, b_id, persons) = Client::tutorial(&server).await;
    assert_eq!(ids(&persons), vec![a_id.clone(), b_id.clone()]);
    assert_eq!(seqs(&persons), vec![1, 2]);

    let change = a.expect("change").await;
    assert_eq!(change.len(), 1, "change has one argument");
    assert_eq!(change[0].as_array().unwrap(), &persons);

    // The newcomer gets `ready` only, not its own `change`: the next thing b sees is a's
    // message sent afterwards.
    a.emit(
        "message",
        json!({"to": b_id, "type": "text", "content": "marker"}),
    )
    .await;
    let m = b.expect("message").await;
    assert_eq!(m[0]["content"], "marker");
    stop(server).await;
}

#[tokio::test]
async fn seq_is_the_smallest_free_number_and_unique_among_sixty_clients() {
    let server = server().await;
    let mut clients = Vec::new();
    let mut last = Vec::new();
    for i in 0..60u64 {
        let (c, id, persons) = Client::tutorial(&server).await;
        let mine = persons.iter().find(|p| p["id"] == id.as_str()).unwrap();
        assert_eq!(mine["seq"], i + 1, "seq of client {i}");
        let unique: HashSet<u64> = seqs(&persons).into_iter().collect();
        assert_eq!(unique.len(), persons.len(), "seqs unique: {persons:?}");
        last = persons;
        clients.push((c, id));
    }
    assert_eq!(last.len(), 60);

    // Free seq 5 and 17; the next two newcomers get exactly those, smallest first.
    let (c17, _) = clients.remove(16);
    let (c5, _) = clients.remove(4);
    c17.disconnect().await;
    c5.disconnect().await;
    let (mut watcher, _) = clients.remove(0);
    // Wait until the watcher has seen both departures.
    loop {
        let change = watcher.expect("change").await;
        if change[0].as_array().unwrap().len() == 58 {
            break;
        }
    }
    let (_n1, id1, persons) = Client::tutorial(&server).await;
    let seq_of = |persons: &[Value], id: &str| {
        persons.iter().find(|p| p["id"] == id).unwrap()["seq"].clone()
    };
    assert_eq!(seq_of(&persons, &id1), 5);
    let (_n2, id2, persons) = Client::tutorial(&server).await;
    assert_eq!(seq_of(&persons, &id2), 17);
    stop(server).await;
}

#[tokio::test]
async fn message_reaches_only_its_addressee_with_from_and_time() {
    let server = server().await;
    let (mut a, a_id, _) = Client::tutorial(&server).await;
    let (mut b, b_id, _) = Client::tutorial(&server).await;
    let (mut c, c_id, _) = Client::tutorial(&server).await;
    a.expect("change").await;
    a.expect("change").await;
    b.expect("change").await;

    a.emit(
        "message",
        json!({"to": b_id, "type": "text", "content": {"sdp": "v=0"}}),
    )
    .await;
    let m = b.expect("message").await;
    assert_eq!(m.len(), 1);
    let m = &m[0];
    assert_eq!(m["to"], b_id.as_str());
    assert_eq!(m["type"], "text");
    assert_eq!(m["content"], json!({"sdp": "v=0"}));
    assert_eq!(m["from"], a_id.as_str());
    let time = m["time"].as_str().unwrap();
    let parts: Vec<u32> = time.split(':').map(|p| p.parse().unwrap()).collect();
    assert_eq!(parts.len(), 3, "time is H:M:S: {time}");
    assert!(parts[0] < 24 && parts[1] < 60 && parts[2] < 61, "{time}");
    for p in time.split(':') {
        assert!(p.len() == 1 || !p.starts_with('0'), "unpadded: {time}");
    }

    // c must not have received it: a's later marker to c is the next thing c sees.
    a.emit(
        "message",
        json!({"to": c_id, "type": "text", "content": "marker"}),
    )
    .await;
    let marker = c.expect("message").await;
    assert_eq!(marker[0]["content"], "marker");
    c.assert_nothing_pending();
    // ... and the sender got nothing back: its acknowledged event is its marker.
    let ack = a
        .ack(
            "message",
            json!({"to": c_id, "type": "text", "content": "m2"}),
        )
        .await;
    assert_eq!(ack, json!({}));
    a.assert_nothing_pending();
    stop(server).await;
}

#[tokio::test]
async fn message_to_unknown_socket_is_an_error_to_the_sender_only() {
    let server = server().await;
    let (mut a, _, _) = Client::tutorial(&server).await;
    let (mut b, b_id, _) = Client::tutorial(&server).await;
    a.expect("change").await;
    a.emit(
        "message",
        json!({"to": "nobody", "type": "text", "content": "x"}),
    )
    .await;
    let err = a.expect_error("unknown_peer").await;
    assert_eq!(err["event"], "message");
    a.emit(
        "message",
        json!({"to": b_id, "type": "text", "content": "marker"}),
    )
    .await;
    assert_eq!(b.expect("message").await[0]["content"], "marker");
    stop(server).await;
}

#[tokio::test]
async fn bye_disconnects_and_the_others_get_change() {
    let server = server().await;
    let (mut a, a_id, _) = Client::tutorial(&server).await;
    let (mut b, b_id, _) = Client::tutorial(&server).await;
    a.expect("change").await;
    b.emit_args("bye", vec![]).await;
    b.expect("close").await;
    let change = a.expect("change").await;
    assert_eq!(ids(change[0].as_array().unwrap()), vec![a_id.clone()]);
    // b's id is no longer a valid addressee.
    a.emit(
        "message",
        json!({"to": b_id, "type": "text", "content": "x"}),
    )
    .await;
    a.expect_error("unknown_peer").await;
    stop(server).await;
}

#[tokio::test]
async fn disconnect_gives_the_others_change() {
    let server = server().await;
    let (mut a, a_id, _) = Client::tutorial(&server).await;
    let (b, _, _) = Client::tutorial(&server).await;
    a.expect("change").await;
    b.disconnect().await;
    let change = a.expect("change").await;
    assert_eq!(ids(change[0].as_array().unwrap()), vec![a_id]);
    stop(server).await;
}

#[tokio::test]
async fn ipaddr_is_refused_unless_the_config_allows_it() {
    let server = server().await;
    let (mut a, _, _) = Client::tutorial(&server).await;
    a.emit_args("ipaddr", vec![]).await;
    let err = a.expect_error("not_allowed").await;
    assert_eq!(err["event"], "ipaddr");
    stop(server).await;
}

#[tokio::test]
async fn ipaddr_announces_each_non_loopback_ipv4_when_allowed() {
    let server = server_with(|c| c.signaling.announce_host_ips = true).await;
    let (mut a, _, _) = Client::tutorial(&server).await;
    let expected: Vec<String> = if_addrs::get_if_addrs()
        .unwrap()
        .into_iter()
        .filter_map(|i| match i.ip() {
            std::net::IpAddr::V4(ip) if !ip.is_loopback() => Some(ip.to_string()),
            _ => None,
        })
        .collect();
    // The acknowledgement follows the last `ipaddr`, so it bounds the wait.
    let ack = a.ack_args("ipaddr", vec![]).await;
    assert_eq!(ack, json!({}));
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        let args = a.expect("ipaddr").await;
        got.push(args[0].as_str().unwrap().to_string());
    }
    a.assert_nothing_pending();
    assert_eq!(got, expected);
    stop(server).await;
}

#[tokio::test]
async fn tutorial_namespace_refuses_sockets_beyond_its_own_cap_and_rooms_are_unaffected() {
    let server = server_with(|c| c.signaling.max_tutorial_sockets = 2).await;
    let (mut a, a_id, _) = Client::tutorial(&server).await;
    let (b, _, _) = Client::tutorial(&server).await;
    a.expect("change").await;

    let mut refused = Client::try_connect(&server, "/").await;
    let (event, args) = refused.next().await;
    assert_eq!(event, "error", "{args:?}");
    let text = args[0].to_string();
    assert!(text.contains("namespace_full"), "{text}");
    assert!(text.contains("signaling.max_tutorial_sockets"), "{text}");
    // `/rooms` has no such cap.
    let r = Client::rooms(&server).await;
    r.join("beside-the-tutorial", "R").await;

    // The refused socket never reached the roster: a's next event is b leaving.
    b.disconnect().await;
    let change = a.expect("change").await;
    assert_eq!(ids(change[0].as_array().unwrap()), vec![a_id.clone()]);
    // b's seat is free once its session has ended (the socket gauge drops after the seat).
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.metrics.sockets.load(Ordering::Relaxed) > 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b's session never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (_d, d_id, persons) = Client::tutorial(&server).await;
    assert_eq!(ids(&persons), vec![a_id, d_id]);
    refused.disconnect().await;
    stop(server).await;
}
