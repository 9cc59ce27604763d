//! A subscriber whose downlink is capped at 400 kbit/s moves to the lowest simulcast layer and
//! back to the top once the cap is lifted, while an uncapped one stays on the top layer. Alone in
//! its binary: it shapes the whole network namespace (`netshape`).

mod media_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use media_support::*;
use sfu_lite::sfu::Source;
use sfu_lite_tools::client::{Hooks, MediaSource, PeerOptions, SimLayer, TrackSpec};
use sfu_lite_tools::netshape::Shaper;

const CAP_KBIT: u32 = 400;

type Arrivals = Arc<Mutex<Vec<(u16, Instant)>>>;

fn recording() -> (PeerOptions, Arrivals) {
    let arrivals = Arrivals::default();
    let log = arrivals.clone();
    let hooks = Hooks {
        on_packet: Some(Arc::new(move |_from, source, pkt, at| {
            if source == Source::Camera {
                log.lock().unwrap().push((pkt.header.sequence_number, at));
            }
        })),
        on_sent: None,
    };
    (
        PeerOptions {
            hooks,
            ..Default::default()
        },
        arrivals,
    )
}

/// The longest pause between packets arriving in `[from, to)`, and the share of the sequence
/// numbers in their range that never arrived, counting retransmissions that came later (a
/// packet NACKed near `to` arrives after it): residual loss, what the decoder misses.
fn freeze_and_loss(arrivals: &[(u16, Instant)], from: Instant, to: Instant) -> (Duration, f64) {
    let window: Vec<&(u16, Instant)> = arrivals
        .iter()
        .filter(|(_, at)| *at >= from && *at < to)
        .collect();
    let freeze = window
        .windows(2)
        .map(|w| w[1].1 - w[0].1)
        .max()
        .unwrap_or(to - from);
    let Some(&&(base, _)) = window.first() else {
        return (freeze, 1.0);
    };
    let span = window
        .iter()
        .map(|(s, _)| s.wrapping_sub(base))
        .filter(|d| *d < 0x8000)
        .max()
        .unwrap_or(0);
    let mut seen: Vec<u16> = arrivals
        .iter()
        .map(|(s, _)| s.wrapping_sub(base))
        .filter(|d| *d <= span)
        .collect();
    seen.sort_unstable();
    seen.dedup();

    (freeze, 1.0 - seen.len() as f64 / (f64::from(span) + 1.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_subscriber_moves_to_q_and_back_to_f_while_the_uncapped_stays_on_f() {
    let mut config = media_config();
    config.port_range = "47700-47800".into();
    let (sfu, metrics) = sfu_with(config).await;
    let alice = join(
        &sfu,
        "simcap",
        "alice",
        publishing(vec![TrackSpec {
            source: Source::Camera,
            media: MediaSource::SimulcastVideo(SimLayer::web_three()),
        }]),
    )
    .await;
    let free = join(&sfu, "simcap", "free", PeerOptions::default()).await;
    let (opts, arrivals) = recording();
    let capped = join(&sfu, "simcap", "capped", opts).await;
    for p in [&free, &capped] {
        p.wait_until(WAIT, "alice on f", |p| {
            p.current_rid("alice", Source::Camera).as_deref() == Some("f")
        })
        .await
        .unwrap();
    }
    let port = capped.subscriber_server_addr().await.unwrap().port();
    let mut shaper = Shaper::new();
    let capped_at = Instant::now();
    let cap = shaper
        .cap_from_port_dropping(port, CAP_KBIT, 20)
        .expect("tc works (run as root under unshare --net)");
    capped
        .wait_until(Duration::from_secs(5), "the capped subscriber on q", |p| {
            p.current_rid("alice", Source::Camera).as_deref() == Some("q")
        })
        .await
        .unwrap();
    let on_q = Instant::now();
    let to_q = on_q - capped_at;
    // Freeze and loss on q: measured over 4 s, from 2 s after the switch. The first two
    // seconds still lose packets: what the 20-packet bottleneck queue held of f when the
    // switch happened, and (measured: 12 packets in a row, 1.0-1.4 s after the switch, in 1
    // run of 3) a later burst that is not understood yet; see docs/sfu.md.
    let measure_from = on_q + Duration::from_secs(2);
    let measure_until = on_q + Duration::from_secs(6);
    let more = arrivals.lock().unwrap().len() + 1;
    capped
        .wait_until(WAIT, "6 s on q and 1 s for retransmissions", |_| {
            Instant::now() >= measure_until + Duration::from_secs(1)
                && arrivals.lock().unwrap().len() > more
        })
        .await
        .unwrap();
    let (freeze, loss) = freeze_and_loss(&arrivals.lock().unwrap(), measure_from, measure_until);
    shaper.lift(cap).unwrap();
    let lifted = Instant::now();
    capped
        .wait_until(
            Duration::from_secs(15),
            "the capped subscriber back on f",
            |p| p.current_rid("alice", Source::Camera).as_deref() == Some("f"),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}; layer events {:?}",
                capped
                    .layer_events()
                    .iter()
                    .map(|e| e.1.clone())
                    .collect::<Vec<_>>()
            )
        });
    let back = lifted.elapsed();
    println!(
        "to q {to_q:?}, freeze on q {freeze:?}, loss on q {:.2} %, back to f {back:?}",
        loss * 100.0
    );
    assert!(freeze < Duration::from_secs(1), "freeze {freeze:?}");
    assert!(
        loss < 0.01,
        "loss {:.2} %; layer events (ms from the switch to q): {:?}",
        loss * 100.0,
        capped
            .layer_events()
            .iter()
            .map(|(_, rid, at)| (rid.clone(), at.saturating_duration_since(on_q).as_millis()))
            .collect::<Vec<_>>()
    );
    stayed_on_once_reached(&free, "f")
        .unwrap_or_else(|e| panic!("the uncapped subscriber left f: {e:?}"));
    drop(shaper);
    for p in [alice, free, capped] {
        p.leave().await;
    }
    assert_gauges_return_to_zero(&metrics, &sfu).await;
    sfu.close().await;
}
