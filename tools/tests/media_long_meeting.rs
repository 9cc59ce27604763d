//! A long meeting with churn: one subscriber stays while publishers come and go. Its SDP must
//! stay at the peak number of tracks it receives at once, and media must keep flowing to it.

mod media_support;

use media_support::*;
use sfu_lite::sfu::Source;

const CYCLES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_sdp_stays_at_peak_mlines_over_200_publish_cycles() {
    let (sfu, metrics) = sfu().await;
    let watcher = join(&sfu, "long", "watcher", publishing(vec![])).await;
    // One publisher stays throughout: its stream must survive every re-offer.
    let steady = join(&sfu, "long", "steady", publishing(vec![video(50, 200)])).await;
    watcher
        .wait_until(WAIT, "steady's video", |p| {
            packets_from(p, "steady", Source::Camera) > 0
        })
        .await
        .unwrap();
    // Each cycle a short-lived publisher's track reaches the watcher, then goes away.
    for i in 0..CYCLES {
        let id = format!("guest{i}");
        let guest = join(&sfu, "long", &id, publishing(vec![video(50, 200)])).await;
        // Media, not just an offer: every recycled m-line must really carry its new track.
        watcher
            .wait_until(WAIT, &format!("video from {id}"), |p| {
                packets_from(p, &id, Source::Camera) > 0
            })
            .await
            .unwrap();
        guest.leave().await;
    }
    let last = join(&sfu, "long", "last", publishing(vec![video(50, 200)])).await;
    let steady_before = packets_from(&watcher, "steady", Source::Camera);
    let flowing = watcher
        .wait_until(
            WAIT,
            "video from the last publisher and still from steady",
            |p| {
                packets_from(p, "last", Source::Camera) >= 20
                    && packets_from(p, "steady", Source::Camera) >= steady_before + 20
            },
        )
        .await;
    if let Err(e) = flowing {
        panic!(
            "{e}: from last {}, from steady {} (was {steady_before}); last offers {:?}",
            packets_from(&watcher, "last", Source::Camera),
            packets_from(&watcher, "steady", Source::Camera),
            watcher.offers().iter().rev().take(3).collect::<Vec<_>>()
        );
    }

    let mlines = watcher.offer_mlines();
    assert!(
        mlines.len() > CYCLES,
        "every cycle was offered: {} offers",
        mlines.len()
    );
    // At most two tracks at once (steady + one guest or the last publisher).
    let peak = mlines.iter().copied().max().unwrap_or(0);
    assert!(peak <= 2, "an offer had {peak} m-lines; offers: {mlines:?}");
    assert_eq!(
        mlines.last(),
        Some(&2),
        "the last offer carries steady and last"
    );

    for peer in [last, steady, watcher] {
        peer.leave().await;
    }
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    sfu.close().await;
}
