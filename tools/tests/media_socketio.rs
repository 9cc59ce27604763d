//! End to end through real signaling: headless participants join over Socket.IO (`/rooms`),
//! publish the committed VP8 and Opus fixtures, negotiate both PeerConnections with trickled
//! candidates, and receive each other's media through the SFU.

#[path = "../../tests/common/mod.rs"]
mod common;
mod media_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{base_url, server, stop};
use media_support::*;
use sfu_lite::sfu::Source;
use sfu_lite_tools::client::{HeadlessPeer, MediaSource, PeerOptions, TrackSpec};

fn fixtures() -> PeerOptions {
    PeerOptions {
        tracks: vec![
            TrackSpec {
                source: Source::Camera,
                media: MediaSource::fixture_vp8(),
            },
            TrackSpec {
                source: Source::Microphone,
                media: MediaSource::fixture_opus(),
            },
        ],
        ..Default::default()
    }
}

async fn join(url: &str, room: &str, name: &str, opts: PeerOptions) -> HeadlessPeer {
    tokio::time::timeout(WAIT, HeadlessPeer::join(url, room, name, opts))
        .await
        .expect("join in time")
        .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_participants_over_socketio_receive_real_vp8_and_opus_byte_identical() {
    let server = server().await;
    let url = base_url(&server);
    let mut peers = Vec::new();
    for name in ["alice", "bob", "carol"] {
        peers.push(join(&url, "standup", name, fixtures()).await);
    }
    wait_for_media_between(&peers, 60, 50).await;
    for rx in &peers {
        for tx in &peers {
            if rx.id() != tx.id() {
                assert_contiguous_and_identical(rx, tx, Source::Camera);
                assert_contiguous_and_identical(rx, tx, Source::Microphone);
                let rec = &rx.received()[&(tx.id().to_string(), Source::Camera)];
                assert!(
                    rec.mime_type.eq_ignore_ascii_case("video/VP8"),
                    "{}",
                    rec.mime_type
                );
                assert!(rec.first_keyframe_at.is_some(), "no VP8 keyframe");
            }
        }
        // Every subscriber offer names who and what each track is.
        let last = rx.offers().last().cloned().unwrap();
        assert_eq!(last.len(), 4, "{last:?}");
        assert!(last.iter().all(|t| t.participant != rx.id()));
    }
    let metrics = server.metrics.clone();
    assert_eq!(metrics.subscriptions.load(Ordering::Relaxed), 12);
    assert_eq!(metrics.peer_connections.load(Ordering::Relaxed), 6);
    assert!(metrics.render().contains("sfu_forwarded_packets_total"));
    for p in peers {
        p.leave().await;
    }
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_over_socketio_gets_a_vp8_keyframe_within_a_second() {
    let server = server().await;
    let url = base_url(&server);
    let alice = join(&url, "late", "alice", fixtures()).await;
    let early = join(&url, "late", "early", PeerOptions::default()).await;
    early
        .wait_until(WAIT, "alice's video", |p| {
            packets_from(p, alice.id(), Source::Camera) >= 30
        })
        .await
        .unwrap();
    // The fixture has a single keyframe (frame 0): a keyframe later on exists only because a
    // request restarted the clip.
    let late = join(&url, "late", "late", PeerOptions::default()).await;
    let key = (alice.id().to_string(), Source::Camera);
    late.wait_until(WAIT, "a keyframe", |p| {
        p.received()
            .get(&key)
            .is_some_and(|r| r.first_keyframe_at.is_some())
    })
    .await
    .unwrap();
    let rec = late.received()[&key].clone();
    let waited = rec.first_keyframe_at.unwrap() - rec.offered_at.unwrap();
    assert!(
        waited < Duration::from_secs(1),
        "keyframe {waited:?} after the offer"
    );
    for p in [alice, early, late] {
        p.leave().await;
    }
    stop(server).await;
}
