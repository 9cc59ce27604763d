//! ICE restart without rejoining (issue 11): a participant whose UDP goes dark and comes back
//! restarts ICE on both connections and gets media again as the same participant; one whose
//! UDP stays dark is removed once `media.ice_failed_timeout_ms` has passed.
//!
//! The network is cut with nftables on the input hook (`netshape::Shaper::block_ports`), by the
//! blocked participant's own UDP ports, so signaling (TCP) keeps working, as it does when a
//! network drops UDP or a Wi-Fi link stalls. Needs root; changes the whole network namespace,
//! so run it alone under `unshare --net`.

#[path = "../../tests/common/mod.rs"]
mod common;
mod media_support;

use std::time::{Duration, Instant};

use common::{base_url, server_with, stop, Client};
use media_support::*;
use serde_json::json;
use sfu_lite::metrics::Metrics;
use sfu_lite::sfu::Source;
use sfu_lite_tools::client::{HeadlessPeer, PeerOptions};
use sfu_lite_tools::netshape::Shaper;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState as State;

/// How long the participant's network stays dark in the recovery test.
const BLACKOUT: Duration = Duration::from_secs(8);
/// The bound from unblock to media again.
const RESUME: Duration = Duration::from_secs(3);

async fn join(url: &str, name: &str) -> HeadlessPeer {
    let opts = PeerOptions {
        tracks: vec![video(50, 600), audio(50, 100)],
        ..Default::default()
    };
    tokio::time::timeout(WAIT, HeadlessPeer::join(url, "dark", name, opts))
        .await
        .expect("join in time")
        .expect("join")
}

/// The media gauges that must not move while a participant recovers.
fn media_gauges(metrics: &Metrics) -> Vec<(String, i64)> {
    gauges::gauges(metrics)
        .into_iter()
        .filter(|(n, _)| {
            [
                "participants",
                "peer_connections",
                "published_tracks",
                "subscriptions",
                "tasks",
            ]
            .contains(&n.as_str())
        })
        .collect()
}

/// Waits (bounded) until the media gauges read `expected` again: tasks come and go around a
/// restart (the recovery timer, a keyframe request), the connections and tracks must not.
async fn assert_gauges_settle_to(metrics: &Metrics, expected: &[(String, i64)]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = media_gauges(metrics);
        if now == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gauges {now:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Packets `rx` has from `tx`, video and audio together.
fn from(rx: &HeadlessPeer, tx: &HeadlessPeer) -> u64 {
    packets_from(rx, tx.id(), Source::Camera) + packets_from(rx, tx.id(), Source::Microphone)
}

/// A room observer that never answers its subscriber offers, joined first: it sees every
/// `joined` and `left`. (The server's `connect_timeout_secs` must outlast the test.)
async fn observer(server: &sfu_lite::server::RunningServer) -> Client {
    let obs = Client::rooms(server).await;
    let ack = obs
        .ack("join", json!({ "room": "dark", "name": "observer" }))
        .await;
    assert!(ack.to_string().contains("\"id\""), "{ack}");
    obs
}

/// The observer's next room event, past the media negotiation it ignores.
async fn room_event(obs: &mut Client) -> (String, Vec<serde_json::Value>) {
    loop {
        let (name, args) = obs.next().await;
        if name != "subscribe_offer" && name != "candidate" {
            return (name, args);
        }
    }
}

/// An observer, then alice and bob, joined and exchanging media both ways.
async fn meeting_of_two(server: &sfu_lite::server::RunningServer) -> (Client, Vec<HeadlessPeer>) {
    let url = base_url(server);
    let mut obs = observer(server).await;
    let peers = vec![join(&url, "alice").await, join(&url, "bob").await];
    for _ in 0..2 {
        assert_eq!(room_event(&mut obs).await.0, "joined");
    }
    wait_for_media_between(&peers, 20, 20).await;
    (obs, peers)
}

/// Lets the observer stand by without media for the whole test.
fn patient_observer(c: &mut sfu_lite::config::Config) {
    c.media.connect_timeout_secs = 600;
}

/// Waits until `rx` has more than `seen` packets from `tx`; returns when that happened.
async fn media_again(rx: &HeadlessPeer, tx: &HeadlessPeer, seen: u64, bound: Duration) -> Instant {
    let what = format!("media from {} again", tx.id());
    rx.wait_until(bound, &what, |p| from(p, tx) > seen)
        .await
        .unwrap();
    Instant::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_whose_udp_goes_dark_for_8_s_gets_media_again_as_the_same_participant() {
    init_tracing();
    let server = server_with(patient_observer).await;
    let (mut obs, peers) = meeting_of_two(&server).await;
    let (alice, bob) = (&peers[0], &peers[1]);
    let metrics = server.metrics.clone();
    let before = media_gauges(&metrics);
    let ufrags_before = bob.server_ufrags().await;
    let offers_before = alice.offers().len();

    let mut shaper = Shaper::new();
    let ports = bob.media_ports().await;
    assert_eq!(ports.len(), 2, "bob has a socket per connection: {ports:?}");
    let dark = shaper.block_ports(&ports).expect("nft block");
    let blocked_at = tokio::time::Instant::now();
    let at_block = (from(alice, bob), from(bob, alice));
    // The cut is real: both of bob's connections notice it.
    bob.wait_until(BLACKOUT, "bob's connections to go down", |p| {
        p.publisher_state() != State::Connected && p.subscriber_state() != State::Connected
    })
    .await
    .unwrap();
    // The blackout lasts its whole length whatever happens meanwhile: it is the scenario, not a
    // synchronisation.
    tokio::time::sleep_until(blocked_at + BLACKOUT).await;
    let (alice_had, bob_had) = (from(alice, bob), from(bob, alice));
    // In the dark too, nothing was torn down or added (tasks: a recovery timer per connection).
    let no_tasks = |g: Vec<(String, i64)>| {
        g.into_iter()
            .filter(|(n, _)| n != "tasks")
            .collect::<Vec<_>>()
    };
    assert_eq!(no_tasks(media_gauges(&metrics)), no_tasks(before.clone()));
    eprintln!(
        "received (alice from bob, bob from alice): at block {at_block:?}, at unblock {:?}",
        (alice_had, bob_had)
    );
    // Taken before the rule goes: `nft` takes a few ms, and packets flow as soon as it is gone.
    let unblocked = Instant::now();
    shaper.unblock(dark).expect("nft unblock");

    // Bound generously so a slow run reports its time instead of only failing.
    let bob_again = media_again(bob, alice, bob_had, WAIT).await;
    let alice_again = media_again(alice, bob, alice_had, WAIT).await;
    let (down, up) = (bob_again - unblocked, alice_again - unblocked);
    eprintln!("unblock -> media: to bob (subscriber) {down:?}, from bob (publisher) {up:?}");
    assert!(
        down <= RESUME && up <= RESUME,
        "media resumed after {down:?} / {up:?}"
    );

    // It came back through restarts: the server's credentials changed on both connections.
    let ufrags_after = bob.server_ufrags().await;
    assert_ne!(ufrags_after.0, ufrags_before.0, "publisher ICE restarted");
    assert_ne!(ufrags_after.1, ufrags_before.1, "subscriber ICE restarted");
    // The same participant: no one saw it leave or join, no offer named new tracks, and the
    // counts of connections, tracks, subscriptions and tasks are those of before.
    assert!(bob.closed_reason().is_none());
    assert_gauges_settle_to(&metrics, &before).await;
    let offers = alice.offers();
    assert_eq!(
        offers.len(),
        offers_before,
        "alice got no new subscriber offer"
    );
    let last = offers.last().unwrap();
    assert_eq!(last.len(), 2, "bob's two tracks only: {last:?}");
    assert!(last.iter().all(|t| t.participant == bob.id()));
    let marker = obs.ack("state", json!({ "audio_muted": true })).await;
    assert!(!marker.to_string().contains("error"), "{marker}");
    while let Ok((name, args)) = tokio::time::timeout(Duration::from_millis(1), obs.next()).await {
        assert!(
            name == "subscribe_offer" || name == "candidate",
            "the observer saw {name} {args:?}"
        );
    }

    drop(shaper);
    for p in peers {
        p.leave().await;
    }
    obs.sio.disconnect().await.ok();
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_whose_udp_stays_dark_is_removed_after_ice_failed_timeout() {
    const FAILED: Duration = Duration::from_secs(4);
    init_tracing();
    let server = server_with(|c| {
        patient_observer(c);
        // Above the 2 s keepalive interval, or a healthy idle link would flap to Disconnected.
        c.media.ice_disconnected_timeout_ms = 3000;
        c.media.ice_failed_timeout_ms = FAILED.as_millis() as u64;
    })
    .await;
    let (mut obs, peers) = meeting_of_two(&server).await;
    let bob = &peers[1];
    // `restart_ice` is strict about its payload, and harmless on a connection never negotiated.
    let refused = obs.ack("restart_ice", json!({ "pc": "sideways" })).await;
    assert!(refused.to_string().contains("bad_request"), "{refused}");
    let (name, err) = room_event(&mut obs).await;
    assert!(
        name == "error" && err[0]["code"] == "bad_request",
        "{name} {err:?}"
    );
    let ok = obs.ack("restart_ice", json!({ "pc": "subscriber" })).await;
    assert!(!ok.to_string().contains("error"), "{ok}");

    let mut shaper = Shaper::new();
    let _dark = shaper
        .block_ports(&bob.media_ports().await)
        .expect("nft block");
    let blocked_at = Instant::now();
    let (name, left) = tokio::time::timeout(WAIT * 2, room_event(&mut obs))
        .await
        .expect("bob is removed");
    assert_eq!(name, "left", "{left:?}");
    let after = blocked_at.elapsed();
    eprintln!("blocked -> removed: {after:?}");
    assert_eq!(left[0]["id"], bob.id(), "{left:?}");
    // Not at the first sign of trouble: only once restarting has failed for the whole timeout.
    assert!(after >= FAILED, "removed after {after:?}");
    bob.wait_until(WAIT, "bob to hear it was removed", |p| {
        p.closed_reason().is_some() || !p.errors().is_empty()
    })
    .await
    .unwrap();
    assert!(
        bob.errors().iter().any(|e| e.code == "media_error"),
        "{:?}",
        bob.errors()
    );

    drop(shaper);
    for p in peers {
        p.leave().await;
    }
    obs.sio.disconnect().await.ok();
    stop(server).await;
}
