//! Media across a cluster (docs/cluster.md): headless participants entering one room through
//! three different nodes are sent to the room's host, and all their PeerConnections end there;
//! they receive each other's media, and keep it while Redis stops and comes back. Real
//! `redis-server`, in-process nodes on loopback.

#[path = "../../tests/common/mod.rs"]
mod common;
mod media_support;

use std::sync::atomic::Ordering;

use common::cluster::{node, registered, RedisServer};
use common::{base_url, stop};
use media_support::*;
use sfu_lite::server::RunningServer;
use sfu_lite::sfu::Source;
use sfu_lite_tools::client::{HeadlessPeer, PeerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_entering_through_three_nodes_get_each_others_media_from_one_host() {
    init_tracing();
    let redis = RedisServer::start();
    let nodes = start_nodes(&redis, &["a", "b", "c"]).await;
    let peers = enter(&nodes, "standup", &["alice", "bob", "carol"]).await;
    wait_for_media_between(&peers, 60, 50).await;
    assert_everyone_intact(&peers);
    // Alice entered first, on an idle cluster: node a hosts the room, and every
    // PeerConnection (two per participant) ends there.
    assert_eq!(peer_connections(&nodes), [6, 0, 0]);
    end(peers, nodes).await;
}

/// Media of a room already hosted needs no Redis: with Redis stopped, then restarted empty,
/// every stream keeps flowing, nothing is lost, and the host takes its room back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_room_keeps_its_media_while_redis_stops_and_comes_back() {
    init_tracing();
    let mut redis = RedisServer::start();
    let nodes = start_nodes(&redis, &["a", "b"]).await;
    let peers = enter(&nodes, "steady", &["alice", "bob"]).await;
    wait_for_media_between(&peers, 30, 30).await;

    redis.stop();
    // Two more seconds of every stream (50 packets/s) with Redis gone.
    wait_for_more_media_between(&peers, 100).await;
    redis.restart();
    for n in &nodes {
        registered(n).await;
    }
    let deadline = std::time::Instant::now() + WAIT;
    while !redis.command("GET sfu-lite:room:steady").contains('a') {
        assert!(std::time::Instant::now() < deadline, "room not reclaimed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    wait_for_more_media_between(&peers, 100).await;

    // Not a packet lost across the outage, and the host never changed.
    assert_everyone_intact(&peers);
    assert_eq!(peer_connections(&nodes), [4, 0]);
    end(peers, nodes).await;
}

async fn start_nodes(redis: &RedisServer, ids: &[&str]) -> Vec<RunningServer> {
    let mut nodes = Vec::new();
    for id in ids {
        let n = node(redis, id, |_| {}).await;
        registered(&n).await;
        nodes.push(n);
    }
    nodes
}

/// Participant i enters room `room` through node i, publishing camera and microphone.
async fn enter(nodes: &[RunningServer], room: &str, names: &[&str]) -> Vec<HeadlessPeer> {
    let mut peers = Vec::new();
    for (node, name) in nodes.iter().zip(names) {
        let opts = PeerOptions {
            tracks: vec![video(50, 600), audio(50, 80)],
            ..Default::default()
        };
        let url = base_url(node);
        let peer = tokio::time::timeout(WAIT, HeadlessPeer::join(&url, room, name, opts))
            .await
            .expect("join in time")
            .expect("join");
        peers.push(peer);
    }
    peers
}

/// Every participant got every other one's camera and microphone contiguous and identical.
fn assert_everyone_intact(peers: &[HeadlessPeer]) {
    for rx in peers {
        for tx in peers {
            if rx.id() != tx.id() {
                assert_contiguous_and_identical(rx, tx, Source::Camera);
                assert_contiguous_and_identical(rx, tx, Source::Microphone);
            }
        }
    }
}

fn peer_connections(nodes: &[RunningServer]) -> Vec<i64> {
    nodes
        .iter()
        .map(|n| n.metrics.peer_connections.load(Ordering::Relaxed))
        .collect()
}

async fn end(peers: Vec<HeadlessPeer>, nodes: Vec<RunningServer>) {
    for p in peers {
        p.leave().await;
    }
    for n in nodes {
        stop(n).await;
    }
}
