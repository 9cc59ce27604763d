//! Several nodes on one Redis (docs/cluster.md), at the signaling level: where a room is
//! placed, how a joiner on another node is sent to its host, how load spreads rooms, and what
//! a Redis outage does. Real `redis-server`, three in-process nodes on loopback.

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use common::cluster::{node, registered, RedisServer};
use common::{base_url, Client};
use serde_json::{json, Value};
use sfu_lite::config::Secret;
use sfu_lite::server::RunningServer;

const ADMIN_KEY: &str = "cluster-test-admin-key";

async fn three(redis: &RedisServer) -> Vec<RunningServer> {
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        let n = node(redis, id, |c| c.auth.admin_key = Secret(ADMIN_KEY.into())).await;
        registered(&n).await;
        nodes.push(n);
    }
    nodes
}

fn url_of(n: &RunningServer) -> String {
    base_url(n).trim_end_matches('/').to_string()
}

/// Joins `room` through `entry`, following `room_elsewhere` as clients do; returns the client,
/// the URL of the node that took the join, and the hops it needed.
async fn join_via(entry: &RunningServer, room: &str, name: &str) -> (Client, String, usize) {
    let mut url = url_of(entry);
    for hops in 0..3 {
        let c = Client::try_connect_url(format!("{url}/"), "/rooms").await;
        let mut c = c;
        assert_eq!(c.next().await.0, "connect");
        let ack = c.ack("join", json!({"room": room, "name": name})).await;
        match ack.get("error") {
            None => return (c, url, hops),
            Some(err) if err["code"] == "room_elsewhere" => {
                assert_eq!(err["event"], "join");
                url = err["url"]
                    .as_str()
                    .expect("room_elsewhere has a url")
                    .to_string();
                c.disconnect().await;
            }
            Some(err) => panic!("join refused: {err}"),
        }
    }
    panic!("more than 2 hops for room {room}");
}

async fn stop_all(nodes: Vec<RunningServer>) {
    for n in nodes {
        common::stop(n).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiners_through_three_nodes_meet_on_one_host() {
    let redis = RedisServer::start();
    let nodes = three(&redis).await;
    // The first join claims the room: every node is idle, so the one it arrived on wins.
    let (mut first, host, hops) = join_via(&nodes[1], "standup", "Ann").await;
    assert_eq!((host.as_str(), hops), (url_of(&nodes[1]).as_str(), 0));
    // Through the two other nodes: told where the room is, one hop.
    let (second, at, hops) = join_via(&nodes[0], "standup", "Bob").await;
    assert_eq!((at.as_str(), hops), (host.as_str(), 1));
    let (third, at, hops) = join_via(&nodes[2], "standup", "Cid").await;
    assert_eq!((at.as_str(), hops), (host.as_str(), 1));
    // They are in one room: the first hears of both.
    let mut names = Vec::new();
    for _ in 0..2 {
        let joined = first.skip_to("joined").await;
        names.push(joined[0]["name"].as_str().unwrap().to_string());
    }
    assert_eq!(names, ["Bob", "Cid"]);
    let rooms: Vec<i64> = nodes
        .iter()
        .map(|n| n.metrics.rooms.load(Ordering::Relaxed))
        .collect();
    assert_eq!(rooms, [0, 1, 0], "the room lives on its host only");
    // The claim names the host while it is in use, and is freed when the room empties.
    assert!(redis.command("GET sfu-lite:room:standup").contains('b'));
    for c in [first, second, third] {
        let _ = c.ack("leave", json!({})).await;
        c.disconnect().await;
    }
    let deadline = std::time::Instant::now() + common::WAIT;
    while !redis
        .command("EXISTS sfu-lite:room:standup")
        .starts_with(":0")
    {
        assert!(std::time::Instant::now() < deadline, "claim not released");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_rooms_spread_over_three_nodes_by_load() {
    let redis = RedisServer::start();
    let nodes = three(&redis).await;
    // All at once, through the same node (a burst at the top of the hour): placement, not the
    // entry, spreads them, and faster than heartbeats report load.
    let rooms: Vec<String> = (0..30).map(|i| format!("room-{i}")).collect();
    let joins = rooms.iter().map(|room| join_via(&nodes[0], room, "P"));
    let joined = futures_util::future::join_all(joins).await;
    let mut per_host: HashMap<String, usize> = HashMap::new();
    let mut clients = Vec::new();
    for (c, host, _) in joined {
        *per_host.entry(host).or_default() += 1;
        clients.push(c);
    }
    let counts: Vec<usize> = nodes
        .iter()
        .map(|n| per_host.get(&url_of(n)).copied().unwrap_or(0))
        .collect();
    eprintln!("rooms per node: {counts:?}");
    let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
    assert!(min > 0 && max <= 2 * min, "rooms per node {counts:?}");
    for c in clients {
        c.disconnect().await;
    }
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_racing_for_one_room_agree_on_one_host() {
    let redis = RedisServer::start();
    let nodes = three(&redis).await;
    for round in 0..10 {
        let room = format!("race-{round}");
        let (a, b) = tokio::join!(
            join_via(&nodes[0], &room, "A"),
            join_via(&nodes[2], &room, "B")
        );
        assert_eq!(a.1, b.1, "round {round}: both joiners end on one host");
        a.0.disconnect().await;
        b.0.disconnect().await;
    }
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_spares_hosted_rooms_and_refuses_new_placements() {
    let mut redis = RedisServer::start();
    let nodes = three(&redis).await;
    let (mut ann, host, _) = join_via(&nodes[0], "kept", "Ann").await;
    assert_eq!(host, url_of(&nodes[0]));
    redis.stop();
    // The hosted room takes joins and chat without Redis.
    let (bob, at, hops) = join_via(&nodes[0], "kept", "Bob").await;
    assert_eq!((at.as_str(), hops), (host.as_str(), 0));
    assert_eq!(ann.skip_to("joined").await[0]["name"], "Bob");
    let ok = bob.ack("message", json!({"content": "still here"})).await;
    assert!(ok.get("error").is_none(), "{ok}");
    assert_eq!(ann.skip_to("message").await[0]["content"], "still here");
    // A room no node hosts cannot be placed: a clear refusal, not a hang.
    let c = Client::rooms(&nodes[1]).await;
    let ack = c.ack("join", json!({"room": "new", "name": "Cid"})).await;
    assert_eq!(ack["error"]["code"], "cluster_unavailable", "{ack}");
    c.disconnect().await;
    // Redis comes back empty: the nodes register again and the host takes its room back, so a
    // joiner elsewhere is sent to it.
    redis.restart();
    for n in &nodes {
        registered(n).await;
    }
    let deadline = std::time::Instant::now() + common::WAIT;
    while !redis.command("GET sfu-lite:room:kept").contains('a') {
        assert!(std::time::Instant::now() < deadline, "room not reclaimed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (cid, at, hops) = join_via(&nodes[2], "kept", "Cid").await;
    assert_eq!((at.as_str(), hops), (host.as_str(), 1));
    assert_eq!(ann.skip_to("joined").await[0]["name"], "Cid");
    for c in [ann, bob, cid] {
        c.disconnect().await;
    }
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_shuts_down_frees_its_rooms_at_once() {
    let redis = RedisServer::start();
    let mut nodes = three(&redis).await;
    let (ann, host, _) = join_via(&nodes[2], "moving", "Ann").await;
    assert_eq!(host, url_of(&nodes[2]));
    // Ann is told `server_shutdown` and disconnected meanwhile.
    common::stop(nodes.pop().unwrap()).await;
    drop(ann);
    // No ttl to wait out: the next joiner gets a live host straight away.
    let (bob, at, _) = join_via(&nodes[0], "moving", "Bob").await;
    assert!(at == url_of(&nodes[0]) || at == url_of(&nodes[1]), "{at}");
    let listed: Value = reqwest_nodes(&nodes[0]).await;
    assert_eq!(
        listed["nodes"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    bob.disconnect().await;
    stop_all(nodes).await;
}

/// `GET /api/v1/cluster`: the live nodes as the admin API shows them.
async fn reqwest_nodes(n: &RunningServer) -> Value {
    reqwest::Client::new()
        .get(format!("{}api/v1/cluster", base_url(n)))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("admin API answers")
        .text()
        .await
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .expect("JSON")
}
