//! Forwarding through the SFU core with headless webrtc-rs peers joined in-process (no
//! Socket.IO): byte-identical contiguous streams, keyframes on subscription, removal of a
//! leaver's tracks, isolation from a stalled subscriber, NACK recovery, and every video codec
//! the server offers.

mod media_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use media_support::*;
use sfu_lite::sfu::Source;
use sfu_lite_tools::client::{LossSpec, PeerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_participants_receive_every_track_contiguous_and_byte_identical() {
    let (sfu, metrics) = sfu().await;
    let mut peers = Vec::new();
    for id in ["alice", "bob", "carol"] {
        let opts = publishing(vec![video(100, 1000), audio(50, 160)]);
        peers.push(join(&sfu, "three", id, opts).await);
    }
    wait_for_media_between(&peers, 100, 50).await;
    for rx in &peers {
        for tx in &peers {
            if rx.id() != tx.id() {
                assert!(assert_contiguous_and_identical(rx, tx, Source::Camera) >= 100);
                assert!(assert_contiguous_and_identical(rx, tx, Source::Microphone) >= 50);
            }
        }
    }
    assert!(metrics.forwarded_packets.load(Ordering::Relaxed) >= 900);
    assert_eq!(metrics.subscriptions.load(Ordering::Relaxed), 12);
    assert_eq!(metrics.published_tracks.load(Ordering::Relaxed), 6);
    for p in peers {
        p.leave().await;
    }
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    sfu.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_receives_keyframe_promptly_after_subscribing() {
    let (sfu, metrics) = sfu().await;
    // Synthetic video sends a keyframe only at start and when asked (PLI/FIR).
    let alice = join(&sfu, "late", "alice", publishing(vec![video(50, 600)])).await;
    let early = join(&sfu, "late", "early", PeerOptions::default()).await;
    early
        .wait_until(WAIT, "alice's video", |p| {
            packets_from(p, "alice", Source::Camera) >= 50
        })
        .await
        .unwrap();
    let requests_before = alice.published()[0]
        .log
        .keyframe_requests
        .load(Ordering::Relaxed);
    let late = join(&sfu, "late", "late", PeerOptions::default()).await;
    late.wait_until(WAIT, "a keyframe from alice", |p| {
        p.received()
            .get(&("alice".to_string(), Source::Camera))
            .is_some_and(|r| r.first_keyframe_at.is_some())
    })
    .await
    .unwrap();
    let rec = late.received()[&("alice".to_string(), Source::Camera)].clone();
    let waited = rec.first_keyframe_at.unwrap() - rec.offered_at.unwrap();
    assert!(
        waited < Duration::from_secs(1),
        "keyframe {waited:?} after the offer"
    );
    // The keyframe was produced by a request made for the new subscription.
    assert!(
        alice.published()[0]
            .log
            .keyframe_requests
            .load(Ordering::Relaxed)
            > requests_before
    );
    assert!(metrics.plis_sent.load(Ordering::Relaxed) >= 1);
    for p in [alice, early, late] {
        p.leave().await;
    }
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    sfu.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaver_tracks_disappear_from_every_subscriber() {
    let (sfu, metrics) = sfu().await;
    let a = join(&sfu, "leave", "a", publishing(vec![audio(50, 100)])).await;
    let b = join(&sfu, "leave", "b", publishing(vec![audio(50, 100)])).await;
    let c = join(
        &sfu,
        "leave",
        "c",
        publishing(vec![video(50, 500), audio(50, 100)]),
    )
    .await;
    for (p, other) in [(&a, "b"), (&b, "a")] {
        p.wait_until(WAIT, "c's tracks and the other's", |p| {
            packets_from(p, "c", Source::Camera) > 0
                && packets_from(p, "c", Source::Microphone) > 0
                && packets_from(p, other, Source::Microphone) > 0
        })
        .await
        .unwrap();
    }
    c.leave().await;
    for p in [&a, &b] {
        p.wait_until(WAIT, "an offer without c", |p| {
            p.offers()
                .last()
                .is_some_and(|tracks| tracks.iter().all(|t| t.participant != "c"))
        })
        .await
        .unwrap();
        // The other member's track is still offered.
        let last = p.offers().last().cloned().unwrap();
        assert_eq!(last.len(), 1, "{last:?}");
    }
    assert_eq!(metrics.published_tracks.load(Ordering::Relaxed), 2);
    a.leave().await;
    b.leave().await;
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    sfu.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_lost_towards_a_subscriber_come_back_through_nack() {
    let (sfu, metrics) = sfu().await;
    let alice = join(&sfu, "nack", "alice", publishing(vec![video(100, 800)])).await;
    let loss = LossSpec::every(10);
    let bob = join(
        &sfu,
        "nack",
        "bob",
        PeerOptions {
            inbound_loss: Some(loss.clone()),
            ..Default::default()
        },
    )
    .await;
    bob.wait_until(WAIT, "300 packets", |p| {
        packets_from(p, "alice", Source::Camera) >= 300
    })
    .await
    .unwrap();
    let dropped = loss.dropped.load(Ordering::Relaxed);
    assert!(dropped >= 20, "only {dropped} packets dropped");
    // Every sequence number up to shortly before the newest has arrived, some of them late.
    let rec = bob.received()[&("alice".to_string(), Source::Camera)].clone();
    let first = rec.log[0].0;
    let mut seen: Vec<u16> = rec.log.iter().map(|(s, _)| s.wrapping_sub(first)).collect();
    seen.sort_unstable();
    seen.dedup();
    let newest = *seen.last().unwrap();
    let settled = newest.saturating_sub(50);
    let missing: Vec<u16> = (0..settled)
        .filter(|s| seen.binary_search(s).is_err())
        .collect();
    assert!(missing.is_empty(), "never recovered: {missing:?}");
    assert!(metrics.nacks_received.load(Ordering::Relaxed) > 0);
    let sent: std::collections::HashMap<u16, u64> = alice.published()[0]
        .log
        .packets()
        .into_iter()
        .map(|p| (p.seq, p.hash))
        .collect();
    for (seq, hash) in &rec.log {
        assert_eq!(sent.get(seq), Some(hash), "retransmitted seq {seq} differs");
    }
    alice.leave().await;
    bob.leave().await;
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    sfu.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp9_and_h264_publishers_reach_subscribers_in_their_own_codec() {
    use webrtc::api::media_engine::{MIME_TYPE_H264, MIME_TYPE_VP9};
    let (sfu, metrics) = sfu().await;
    let mut publishers = Vec::new();
    for (id, mime) in [("vp9", MIME_TYPE_VP9), ("h264", MIME_TYPE_H264)] {
        let opts = PeerOptions {
            video_mime: mime,
            ..publishing(vec![video(50, 600)])
        };
        publishers.push((join(&sfu, "codecs", id, opts).await, mime));
    }
    let viewer = join(&sfu, "codecs", "viewer", PeerOptions::default()).await;
    for (publisher, mime) in &publishers {
        let who = publisher.id().to_string();
        viewer
            .wait_until(WAIT, &format!("{who}'s video"), |p| {
                packets_from(p, &who, Source::Camera) >= 50
            })
            .await
            .unwrap();
        let got = viewer.received()[&(who.clone(), Source::Camera)]
            .mime_type
            .clone();
        assert!(got.eq_ignore_ascii_case(mime), "{who}: received as {got}");
        assert!(assert_contiguous_and_identical(&viewer, publisher, Source::Camera) >= 50);
    }
    viewer.leave().await;
    for (p, _) in publishers {
        p.leave().await;
    }
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    sfu.close().await;
}
