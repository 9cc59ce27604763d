//! Members that stop reading: socketioxide's per-socket buffer fills (a raw long-polling client
//! that sends no more GETs) and `emit` returns `Full`. A delta it cannot take, or a subscriber
//! offer the SFU waits on, must not be lost silently: the member is removed from the room (the
//! others get `left`), the bystanders carry on.

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../../tests/stalled_reader/mod.rs"]
mod stalled_reader;

use std::time::Duration;

use common::{base_url, server_with, stop, Client};
use serde_json::{json, Value};
use sfu_lite::sfu::Source;
use sfu_lite_tools::client::{HeadlessPeer, MediaSource, PeerOptions, TrackSpec};
use stalled_reader::PollingClient;

/// The next event that is not media negotiation (offers and candidates to this observer).
async fn next_room_event(c: &mut Client) -> (String, Vec<Value>) {
    loop {
        let (event, args) = c.next().await;
        if !["subscribe_offer", "candidate"].contains(&event.as_str()) {
            return (event, args);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_cannot_take_a_delta_is_removed_from_the_room() {
    let server = server_with(|_| {}).await;
    let mut stalled = PollingClient::connect(server.local_addr).await;
    let ack_id = stalled
        .emit_with_ack("join", json!({"room": "r", "name": "S"}))
        .await;
    let s_id = stalled.read_ack(ack_id).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // From here on the stalled client never polls again.

    let mut b = Client::rooms(&server).await;
    b.join("r", "B").await;
    // 160 real changes: the stalled member's buffer (128 packets) cannot hold their deltas.
    // Sent in bursts of 20, each closed by an acknowledged no-op, so B's own session queue is
    // drained between bursts and none of B's events is dropped.
    for burst in 0..8 {
        for i in 0..20 {
            b.emit("state", json!({"audio_muted": (burst * 20 + i) % 2 == 0}))
                .await;
        }
        assert_eq!(b.ack("state", json!({})).await, json!({}));
    }
    let (event, args) = next_room_event(&mut b).await;
    assert_eq!((event.as_str(), &args[0]), ("left", &json!({"id": s_id})));

    // The room goes on without it: a newcomer sees B only, and B hears of the newcomer.
    let c = Client::rooms(&server).await;
    let members = c.join("r", "C").await["members"].clone();
    assert_eq!(members.as_array().unwrap().len(), 1, "{members}");
    assert_eq!(next_room_event(&mut b).await.0, "joined");
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_offer_that_cannot_be_delivered_removes_the_member() {
    // The SFU's own connect timer would also remove the stalled member, after 60 s: the removal
    // within the wait below can only come from the relay giving up on the undeliverable offer.
    let server = server_with(|c| c.media.connect_timeout_secs = 60).await;
    let url = base_url(&server);
    let mut observer = Client::rooms(&server).await;
    observer.join("r", "O").await;
    let publisher = tokio::time::timeout(
        common::WAIT,
        HeadlessPeer::join(
            &url,
            "r",
            "P",
            PeerOptions {
                tracks: vec![TrackSpec {
                    source: Source::Camera,
                    media: MediaSource::fixture_vp8(),
                }],
                ..Default::default()
            },
        ),
    )
    .await
    .expect("publisher joins in time")
    .expect("publisher joins");
    assert_eq!(next_room_event(&mut observer).await.0, "joined");

    // Fill the stalled client's buffer before it joins: each unknown event is answered at once
    // (before any queue) with an `error` it never reads. Then it joins; the SFU offers it the
    // publisher's track, and that offer finds the buffer full.
    let mut stalled = PollingClient::connect(server.local_addr).await;
    stalled.emit_many(150, "no_such_event", json!({})).await;
    stalled
        .emit_with_ack("join", json!({"room": "r", "name": "S"}))
        .await;

    let (event, args) = next_room_event(&mut observer).await;
    assert_eq!(event, "joined", "{args:?}");
    let s_id = args[0]["id"].as_str().unwrap().to_string();
    assert_eq!(args[0]["name"], "S");
    let bound = media_relay_stall_limit() + common::WAIT;
    let (event, args) = tokio::time::timeout(bound, next_room_event(&mut observer))
        .await
        .expect("the stalled member is removed well before the SFU's own 60 s timer");
    assert_eq!((event.as_str(), &args[0]), ("left", &json!({"id": s_id})));

    publisher.leave().await;
    stop(server).await;
}

/// The relay retries an undeliverable event for 5 s (`signal::media::STALL_LIMIT`).
fn media_relay_stall_limit() -> Duration {
    Duration::from_secs(5)
}
