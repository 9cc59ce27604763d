//! Media across a cluster (docs/cluster.md): headless participants entering one room through
//! three different nodes are sent to the room's host, and all their PeerConnections end there;
//! they receive each other's media. Real `redis-server`, three in-process nodes on loopback.

#[path = "../../tests/common/mod.rs"]
mod common;
mod media_support;

use std::sync::atomic::Ordering;

use common::cluster::{node, registered, RedisServer};
use common::{base_url, stop};
use media_support::*;
use sfu_lite::sfu::Source;
use sfu_lite_tools::client::{HeadlessPeer, PeerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_entering_through_three_nodes_get_each_others_media_from_one_host() {
    init_tracing();
    let redis = RedisServer::start();
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        let n = node(&redis, id, |_| {}).await;
        registered(&n).await;
        nodes.push(n);
    }
    let mut peers = Vec::new();
    for (i, name) in ["alice", "bob", "carol"].into_iter().enumerate() {
        let opts = PeerOptions {
            tracks: vec![video(50, 600), audio(50, 80)],
            ..Default::default()
        };
        let url = base_url(&nodes[i]);
        let peer = tokio::time::timeout(WAIT, HeadlessPeer::join(&url, "standup", name, opts))
            .await
            .expect("join in time")
            .expect("join");
        peers.push(peer);
    }
    wait_for_media_between(&peers, 60, 50).await;
    for rx in &peers {
        for tx in &peers {
            if rx.id() != tx.id() {
                assert_contiguous_and_identical(rx, tx, Source::Camera);
                assert_contiguous_and_identical(rx, tx, Source::Microphone);
            }
        }
    }
    // Alice entered first, on an idle cluster: node a hosts the room, and every
    // PeerConnection (two per participant) ends there.
    let pcs: Vec<i64> = nodes
        .iter()
        .map(|n| n.metrics.peer_connections.load(Ordering::Relaxed))
        .collect();
    assert_eq!(pcs, [6, 0, 0]);
    for p in peers {
        p.leave().await;
    }
    for n in nodes {
        stop(n).await;
    }
}
