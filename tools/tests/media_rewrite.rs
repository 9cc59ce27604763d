//! The down track's own rewriting (`src/sfu/rewrite.rs`): one continuous stream per m-line, and
//! NACKs answered on an m-line's second track too.

mod media_support;

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use media_support::*;
use sfu_lite::sfu::Source;
use sfu_lite_tools::client::{LossSpec, PeerOptions};

/// Before the rewrite moved ahead of `write_rtp`, webrtc-rs's sequence transformer renumbered
/// after the NACK responder: on a recycled m-line's second track a NACK named numbers the
/// responder did not hold, and those packets never came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacks_are_answered_on_a_recycled_mline() {
    let (sfu, metrics) = sfu().await;
    let loss = LossSpec::every(10);
    let bob = join(
        &sfu,
        "recycle",
        "bob",
        PeerOptions {
            inbound_loss: Some(loss.clone()),
            ..Default::default()
        },
    )
    .await;
    let alice = join(&sfu, "recycle", "alice", publishing(vec![video(100, 800)])).await;
    bob.wait_until(WAIT, "alice's video", |p| {
        packets_from(p, "alice", Source::Camera) >= 100
    })
    .await
    .unwrap();
    // Alice's payloads tell her packets from carol's.
    let alice_sent: HashSet<u64> = sent_hashes(&alice, Source::Camera).into_values().collect();
    alice.leave().await;
    // Carol's track takes over alice's m-line (same mid, same SSRC).
    // A different payload length: synthetic payloads depend on a counter both start at 0.
    let carol = join(&sfu, "recycle", "carol", publishing(vec![video(100, 700)])).await;
    bob.wait_until(WAIT, "300 packets from carol", |p| {
        packets_from(p, "carol", Source::Camera) >= 300
    })
    .await
    .unwrap();
    let peak = bob.offer_mlines().into_iter().max().unwrap_or(0);
    assert_eq!(peak, 1, "carol's track reused alice's m-line");
    assert!(loss.dropped.load(Ordering::Relaxed) >= 30);

    // The client files packets by the mid map of the latest offer, so a few of alice's last
    // ones may be filed under carol: tell them apart by payload.
    let received = bob.received();
    let mut all: Vec<(u16, u64)> = Vec::new();
    for who in ["alice", "carol"] {
        all.extend(&received[&(who.to_string(), Source::Camera)].log);
    }
    let carol_sent: HashSet<u64> = sent_hashes(&carol, Source::Camera).into_values().collect();
    let of = |set: &HashSet<u64>| -> Vec<u16> {
        all.iter()
            .filter(|(_, h)| set.contains(h))
            .map(|(s, _)| *s)
            .collect()
    };
    let (from_alice, from_carol) = (of(&alice_sent), of(&carol_sent));
    assert_eq!(
        from_alice.len() + from_carol.len(),
        all.len(),
        "every packet is alice's or carol's"
    );
    // One continuous stream: carol's numbers go on from alice's.
    let alice_last = *from_alice
        .iter()
        .max_by_key(|s| s.wrapping_sub(from_alice[0]))
        .unwrap();
    let first = alice_last.wrapping_add(1);
    let mut seen: Vec<u16> = from_carol.iter().map(|s| s.wrapping_sub(first)).collect();
    seen.sort_unstable();
    seen.dedup();
    let newest = *seen.last().unwrap();
    assert!(
        newest < 2000,
        "carol's stream does not continue alice's: {newest}"
    );
    let settled = newest.saturating_sub(50);
    let missing: Vec<u16> = (0..settled)
        .filter(|s| seen.binary_search(s).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "lost on the recycled m-line and never recovered: {} of {settled}: {missing:?}",
        missing.len()
    );
    carol.leave().await;
    bob.leave().await;
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    sfu.close().await;
}
