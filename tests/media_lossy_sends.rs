//! A failed send is a lost packet, not a dead connection: with a firewall rule that refuses 5 %
//! of outgoing UDP (nftables on the output hook, so `sendto` returns EPERM), every
//! subscription of a four-peer meeting starts, on one muxed port and with a port range.
//!
//! The rule covers the whole network namespace, so this file holds one test: run it as root
//! in a namespace of its own (`unshare --net`, as `scripts/test.sh` does).

mod media_support;

use std::sync::atomic::Ordering;

use media_support::*;
use sfu_lite::netshape::Shaper;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sends_count_as_loss_and_every_subscription_starts() {
    let mut shaper = Shaper::new();
    shaper
        .refuse_sends(5)
        .expect("an nftables rule (root in a network namespace)");
    for port_range in ["", "47300-47400"] {
        let mut config = media_config();
        config.port_range = port_range.into();
        let (sfu, metrics) = sfu_with(config).await;
        let mut peers = Vec::new();
        for name in ["p0", "p1", "p2", "p3"] {
            let tracks = vec![video(50, 800), audio(50, 100)];
            peers.push(join(&sfu, "lossy", name, publishing(tracks)).await);
        }
        // 4 peers x 3 others x 2 tracks: 24 subscriptions, each must deliver.
        wait_for_media_between(&peers, 20, 20).await;
        let server_errors = metrics.media_send_errors.load(Ordering::Relaxed);
        let client_errors: u64 = peers.iter().map(|p| p.send_errors()).sum();
        assert!(
            server_errors > 0 && client_errors > 0,
            "{port_range:?}: refused sends must be counted (server {server_errors}, clients {client_errors})"
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
