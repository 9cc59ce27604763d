//! A failed send is a lost packet, not a dead connection: with a firewall rule that refuses 5 %
//! of the server's outgoing UDP (nftables on the output hook, so `sendto` returns EPERM), every
//! subscription of a four-peer meeting starts, on one muxed port and with a port range.
//!
//! The rule covers the whole network namespace, so this file holds one test: run it as root
//! in a namespace of its own (`unshare --net`, as `scripts/test.sh` does).

mod media_support;

use std::sync::atomic::Ordering;

use media_support::*;
use sfu_lite_tools::netshape::Shaper;

/// The server's media ports in the two modes: the muxed port, or the range.
const MUXED_PORT: u16 = 47299;
const RANGE: (u16, u16) = (47300, 47400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sends_count_as_loss_and_every_subscription_starts() {
    // Only the server's sends are refused. Refusing the headless clients' too (they have the
    // same wrapper) fails about one run in three, in webrtc-rs's DTLS rather than here: when
    // the DTLS server's last flight is lost it never sends it again (trace: the client's
    // "Flight 5 retransmit_timer" repeats until the connect timer). The SFU is the DTLS client
    // on both of its connections, so browsers' DTLS stacks (which do resend) are the ones that
    // must, and do.
    let mut shaper = Shaper::new();
    shaper
        .refuse_sends(5, Some((MUXED_PORT, RANGE.1)))
        .expect("an nftables rule (root in a network namespace)");
    for port_range in [String::new(), format!("{}-{}", RANGE.0, RANGE.1)] {
        let mut config = media_config();
        config.udp_port = MUXED_PORT;
        config.port_range = port_range.clone();
        let (sfu, metrics) = sfu_with(config).await;
        let mut peers = Vec::new();
        for name in ["p0", "p1", "p2", "p3"] {
            let tracks = vec![video(50, 800), audio(50, 100)];
            peers.push(join(&sfu, "lossy", name, publishing(tracks)).await);
        }
        // 4 peers x 3 others x 2 tracks: 24 subscriptions, each must deliver.
        wait_for_media_between(&peers, 20, 20).await;
        let errors = metrics.media_send_errors.load(Ordering::Relaxed);
        assert!(
            errors > 0,
            "{port_range:?}: refused sends must be counted ({errors})"
        );
        for p in peers {
            assert!(p.closed_reason().is_none(), "{:?}", p.closed_reason());
            p.leave().await;
        }
        assert_gauges_return_to_zero(&metrics, &sfu).await;
        sfu.close().await;
    }
    drop(shaper);
}
