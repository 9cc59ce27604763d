//! Simulcast through the SFU core with headless peers: a three-layer publisher, and the layer
//! each subscriber gets from its tile (`view`), with the publisher told which layers nobody needs
//! (it stops sending them, as a browser does, and resumes when someone needs one again).

mod media_support;

use media_support::*;
use sfu_lite::sfu::{Source, TileView};
use sfu_lite_tools::client::{
    HeadlessPeer, LayerStats, MediaSource, PeerOptions, SimLayer, TrackSpec,
};

fn three_layers() -> PeerOptions {
    publishing(vec![TrackSpec {
        source: Source::Camera,
        media: MediaSource::SimulcastVideo(SimLayer::web_three()),
    }])
}

async fn rid_of(p: &HeadlessPeer, rid: &str) {
    p.wait_until(WAIT, &format!("alice's camera on layer {rid}"), |p| {
        p.current_rid("alice", Source::Camera).as_deref() == Some(rid)
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}; layer events {:?}",
            p.layer_events()
                .iter()
                .map(|(m, r, _)| (m.clone(), r.clone()))
                .collect::<Vec<_>>()
        )
    });
}

/// Alice's camera layer `rid` as her side sees it (what it sent, what the server reported).
fn layer(alice: &HeadlessPeer, rid: &str) -> LayerStats {
    alice
        .layer_stats(Source::Camera)
        .into_iter()
        .find(|l| l.rid == rid)
        .expect("alice publishes the layer")
}

/// The highest sequence number of layer `rid` the server's receiver reports acknowledge.
fn at_server(alice: &HeadlessPeer, rid: &str) -> u64 {
    layer(alice, rid).server_highest_seq.unwrap_or(0)
}

/// Waits until the server's reports show `packets` more of layer `rid` than `from`.
async fn server_gets(alice: &HeadlessPeer, rid: &str, from: u64, packets: u64) {
    alice
        .wait_until(
            WAIT,
            &format!("{packets} more packets of {rid} at the server"),
            |p| at_server(p, rid) >= from + packets,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}; layers {:?}", alice.layer_stats(Source::Camera)));
}

async fn show(p: &HeadlessPeer, width: u32, height: u32, visible: bool) {
    p.wait_until(WAIT, "alice's camera offered", |p| {
        p.mid_of("alice", Source::Camera).is_some()
    })
    .await
    .unwrap();
    let mid = p.mid_of("alice", Source::Camera).unwrap();
    p.send_view(vec![TileView {
        mid,
        width,
        height,
        visible,
    }])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tile_size_picks_the_layer_and_unneeded_layers_are_paused() {
    let (sfu, metrics) = sfu().await;
    let alice = join(&sfu, "sim", "alice", three_layers()).await;
    let big = join(&sfu, "sim", "big", publishing(vec![])).await;
    let small = join(&sfu, "sim", "small", publishing(vec![])).await;
    let hidden = join(&sfu, "sim", "hidden", publishing(vec![])).await;
    // A track never reported: the top layer the (uncapped) estimate allows.
    rid_of(&big, "f").await;
    show(&small, 320, 180, true).await;
    rid_of(&small, "q").await;
    show(&hidden, 1280, 720, false).await;
    // Nobody wants h: alice is told to pause it, q and f stay on.
    alice
        .wait_until(WAIT, "layers {q, f} without h", |p| {
            p.layers_events().last().is_some_and(|e| {
                e.active.get("q") == Some(&true)
                    && e.active.get("h") == Some(&false)
                    && e.active.get("f") == Some(&true)
            })
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; layers events {:?}", alice.layers_events()));
    // Alice obeys: h stops at her end and at the server's (its receiver reports for h stand
    // still while those for f, sent on the same one-second timer, move on).
    alice
        .wait_until(WAIT, "h paused at alice", |p| !layer(p, "h").active)
        .await
        .unwrap();
    let sent_at_pause = layer(&alice, "h").sent;
    // One report interval after the pause, so the last h packets sent before it are counted.
    server_gets(&alice, "f", at_server(&alice, "f"), 150).await;
    let h_paused = at_server(&alice, "h");
    assert!(h_paused > 0, "the server reported h before the pause");
    server_gets(&alice, "f", at_server(&alice, "f"), 300).await;
    assert_eq!(
        at_server(&alice, "h"),
        h_paused,
        "h still reaches the server"
    );
    assert!(
        layer(&alice, "h").sent <= sent_at_pause + 1,
        "alice sent {} packets of h while paused",
        layer(&alice, "h").sent - sent_at_pause
    );
    // The hidden tile gets nothing more.
    let before = packets_from(&hidden, "alice", Source::Camera);
    let big_before = packets_from(&big, "alice", Source::Camera);
    big.wait_until(WAIT, "100 more packets at big", |p| {
        packets_from(p, "alice", Source::Camera) >= big_before + 100
    })
    .await
    .unwrap();
    let after = packets_from(&hidden, "alice", Source::Camera);
    assert!(
        after <= before + 2,
        "hidden tile got {} packets",
        after - before
    );
    // The big tile stayed on f throughout, once it got there (it starts on whichever of
    // alice's layers reached the server first).
    stayed_on_once_reached(&big, "f").unwrap_or_else(|e| panic!("big's layers {e:?}"));
    // A mid-sized tile needs h again: alice is told at once, resumes it, and the switch to h
    // (which waits for a keyframe of h at the server) completes.
    show(&small, 640, 360, true).await;
    rid_of(&small, "h").await;
    assert!(layer(&alice, "h").active);
    server_gets(&alice, "h", h_paused, 30).await;
    for p in [alice, big, small, hidden] {
        p.leave().await;
    }
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    sfu.close().await;
}
