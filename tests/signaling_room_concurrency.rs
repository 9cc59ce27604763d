//! Rooms under concurrent joins and leaves, with real Socket.IO clients: every member's roster
//! (its join ack plus the deltas after it) never overlaps or misses a change and ends equal to
//! the room's true member list; the room and member limits are exact; a join racing the leave
//! that empties a room is never refused.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use common::{assert_gauges_zero, server, server_with, stop, Client};
use futures_util::future::join_all;
use serde_json::{json, Value};
use sfu_lite::server::RunningServer;

/// A connected member and the roster it has built from its ack and deltas.
struct Member {
    client: Client,
    id: String,
    roster: Vec<String>,
}

fn ids(members: &Value) -> Vec<String> {
    members
        .as_array()
        .expect("members is an array")
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// Connects one after the other (what must be concurrent here is the joins, not the
/// handshakes, which would only test this machine's load).
async fn connect_all(server: &RunningServer, n: usize) -> Vec<Client> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(Client::rooms(server).await);
    }
    clients
}

/// Joins every client to its room at once.
async fn join_all_at_once(clients: Vec<(Client, String)>) -> Vec<(Member, String)> {
    join_all(
        clients
            .into_iter()
            .enumerate()
            .map(|(i, (client, room))| async move {
                let ack = client.join(&room, &format!("m{i}")).await;
                let member = Member {
                    id: ack["id"].as_str().unwrap().to_string(),
                    roster: ids(&ack["members"]),
                    client,
                };
                (member, room)
            }),
    )
    .await
}

/// Applies `member`'s deltas until it has seen `last` join; asserts that none overlaps its
/// roster or names someone it does not know.
async fn follow_until_joined(member: &mut Member, last: &str) {
    loop {
        let (event, args) = member.client.next().await;
        let id = args[0]["id"].as_str().unwrap_or_default().to_string();
        match event.as_str() {
            "joined" => {
                assert!(
                    !member.roster.contains(&id),
                    "{id} joined twice for {}",
                    member.id
                );
                assert_ne!(id, member.id, "a member is told of its own join");
                member.roster.push(id.clone());
                if id == last {
                    return;
                }
            }
            "left" => {
                let at = member.roster.iter().position(|m| *m == id);
                let at = at.unwrap_or_else(|| panic!("{id} left but {} never saw it", member.id));
                member.roster.remove(at);
            }
            other => panic!("unexpected {other} {args:?}"),
        }
    }
}

/// Joins `per_room` members to each room at once, then has the first `leaving` of each leave
/// while `late` more join, all at once; finally an observer joins each room and every member's
/// roster must equal the observer's view.
async fn churn(server: &RunningServer, rooms: usize, per_room: usize, leaving: usize, late: usize) {
    let names: Vec<String> = (0..rooms).map(|r| format!("room-{r}")).collect();
    let first: Vec<(Client, String)> = connect_all(server, rooms * per_room)
        .await
        .into_iter()
        .enumerate()
        .map(|(i, c)| (c, names[i % rooms].clone()))
        .collect();
    let mut members = join_all_at_once(first).await;

    let mut leavers = Vec::new();
    let mut stayers = Vec::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for (m, room) in members.drain(..) {
        let n = counts.entry(room.clone()).or_default();
        *n += 1;
        if *n <= leaving {
            leavers.push(m);
        } else {
            stayers.push((m, room));
        }
    }
    let late: Vec<(Client, String)> = connect_all(server, rooms * late)
        .await
        .into_iter()
        .enumerate()
        .map(|(i, c)| (c, names[i % rooms].clone()))
        .collect();
    let leaving = join_all(leavers.iter().map(|m| m.client.ack_args("leave", vec![])));
    let (left, joined) = tokio::join!(leaving, join_all_at_once(late));
    assert!(left.iter().all(|ack| *ack == json!({})), "{left:?}");
    stayers.extend(joined);

    for room in &names {
        let observer = Client::rooms(server).await;
        let ack = observer.join(room, "observer").await;
        let truth = ids(&ack["members"]);
        let observer_id = ack["id"].as_str().unwrap().to_string();
        let mut in_room = 0;
        for (m, _) in stayers.iter_mut().filter(|(_, r)| r == room) {
            follow_until_joined(m, &observer_id).await;
            m.roster.pop();
            let mut expected: Vec<String> =
                truth.iter().filter(|id| **id != m.id).cloned().collect();
            expected.sort();
            let mut got = m.roster.clone();
            got.sort();
            assert_eq!(got, expected, "{}'s roster of {room}", m.id);
            in_room += 1;
        }
        assert_eq!(in_room, truth.len(), "everyone who should be in {room} is");
    }
    assert_eq!(
        server.metrics.rooms.load(Ordering::Relaxed),
        rooms as i64,
        "one room each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_and_leaves_across_many_rooms_keep_every_roster_true() {
    let server = server().await;
    churn(&server, 8, 5, 2, 2).await;
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_and_leaves_in_one_room_keep_every_roster_true() {
    let server = server().await;
    churn(&server, 1, 20, 10, 8).await;
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_and_member_limits_are_exact_under_concurrent_joins() {
    let server = server_with(|c| {
        c.signaling.max_members_per_room = 5;
        c.signaling.max_rooms = 3;
    })
    .await;
    let clients = connect_all(&server, 12).await;
    let acks = join_all(
        clients
            .iter()
            .map(|c| c.ack("join", json!({"room": "full", "name": "n"}))),
    )
    .await;
    let refused: Vec<_> = acks.iter().filter(|a| a.get("error").is_some()).collect();
    assert_eq!(acks.len() - refused.len(), 5, "{acks:?}");
    assert!(
        refused.iter().all(|a| a["error"]["code"] == "room_full"),
        "{refused:?}"
    );

    // One room exists: two more may be created, not six.
    let more = connect_all(&server, 6).await;
    let acks = join_all(
        more.iter()
            .enumerate()
            .map(|(i, c)| c.ack("join", json!({"room": format!("x{i}"), "name": "n"}))),
    )
    .await;
    let refused: Vec<_> = acks.iter().filter(|a| a.get("error").is_some()).collect();
    assert_eq!(acks.len() - refused.len(), 2, "{acks:?}");
    assert!(
        refused
            .iter()
            .all(|a| a["error"]["code"] == "too_many_rooms"),
        "{refused:?}"
    );
    assert_eq!(server.metrics.rooms.load(Ordering::Relaxed), 3);
    assert_eq!(server.metrics.participants.load(Ordering::Relaxed), 7);
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_racing_the_last_leave_is_never_refused() {
    // max_rooms = 4 and four rooms in use: a join that found a room being removed and then
    // counted it as a new one, or a stale entry, would be refused with `too_many_rooms`.
    let server = server_with(|c| c.signaling.max_rooms = 4).await;
    let rounds = 25;
    let races = (0..4).map(|r| {
        let server = &server;
        async move {
            let room = format!("race-{r}");
            let a = Client::rooms(server).await;
            let b = Client::rooms(server).await;
            for _ in 0..rounds {
                a.join(&room, "A").await;
                let (left, joined) = tokio::join!(
                    a.ack_args("leave", vec![]),
                    b.ack("join", json!({"room": room, "name": "B"}))
                );
                assert_eq!(left, json!({}));
                assert!(joined.get("error").is_none(), "spurious refusal: {joined}");
                assert!(joined["members"].as_array().unwrap().len() <= 1);
                assert_eq!(b.ack_args("leave", vec![]).await, json!({}));
            }
            (a, b)
        }
    });
    let clients = join_all(races).await;
    assert_eq!(server.metrics.rooms.load(Ordering::Relaxed), 0);
    for (a, b) in clients {
        a.disconnect().await;
        b.disconnect().await;
    }
    assert_gauges_zero(&server.metrics).await;
    stop(server).await;
}
