//! `sfu-lite load --simulcast --cap-subscribers`: the real binary publishes three layers per
//! camera, caps one subscriber's downlink with `netshape`, and its report must show that one
//! moved to the lowest layer while the others stayed on the top one. Alone in its binary: the
//! cap is a `tc` rule on the network namespace's `lo` (run as root under `unshare --net`, as
//! scripts/test.sh does).

#[path = "../../tests/common/gauges.rs"]
mod gauges;

mod load_support;

use load_support::{load_with_output, server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_load_reports_the_capped_subscriber_on_the_low_layer() {
    let server = server().await;
    let url = format!("http://127.0.0.1:{}", server.local_addr.port());
    let (status, r, output) = load_with_output(
        url,
        &[
            "--rooms",
            "1",
            "--peers",
            "3",
            "--simulcast",
            "--cap-subscribers",
            "1",
            "--cap-kbps",
            "400",
            "--duration",
            "8s",
            "--ramp",
            "0",
            // The capped subscriber loses what its link cannot carry until it switches: the
            // run's pass/fail is about the subscriptions, not that loss.
            "--max-loss",
            "1",
        ],
    )
    .await;
    assert!(status.success(), "load failed: {status}\n{output}\n{r:#}");
    assert_eq!(r["peers_joined"], 3, "{r:#}");
    // Each of 3 peers receives the camera of the 2 others.
    assert_eq!(r["subscriptions_expected"], 6, "{r:#}");
    assert_eq!(r["subscriptions_started"], 6, "{r:#}");
    let s = &r["subscribers"];
    assert_eq!(s["simulcast"], true, "{r:#}");
    assert_eq!(s["cap_kbps"], 400, "{r:#}");
    // The last peer to join is the capped one; both cameras it receives end on q, each after
    // at least one switch down from the top layer every subscription starts on.
    let capped = s["capped"].as_array().expect("capped subscribers listed");
    assert_eq!(capped.len(), 1, "{r:#}");
    let who = capped[0]["who"].as_str().unwrap();
    assert!(who.starts_with("peer-2 ("), "{who}");
    assert_eq!(capped[0]["layers_now"]["q"], 2, "{output}");
    assert!(
        capped[0]["layer_switches"].as_u64().unwrap() >= 2,
        "{output}"
    );
    // The two uncapped peers get the top layer of each other and of the capped one.
    let rest = &s["uncapped"];
    assert_eq!(rest["subscribers"], 2, "{r:#}");
    assert_eq!(rest["layers_now"]["f"], 4, "{output}");
    assert_eq!(rest["layers_now"].as_object().unwrap().len(), 1, "{output}");
    for g in capped.iter().chain([rest]) {
        let freeze = g["freeze_ms_max"].as_f64().unwrap();
        assert!(freeze > 0.0, "freeze measured: {g:#}");
        let loss = g["loss_ratio"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&loss), "{g:#}");
    }
    assert!(rest["loss_ratio"].as_f64().unwrap() < 0.05, "{output}");
    assert!(
        output.contains("simulcast, downlink capped at 400 kbit/s"),
        "{output}"
    );
    // The server's per-packet cost is still measured.
    assert!(r["server_forwarded_packets"].as_u64().unwrap() > 0, "{r:#}");
    gauges::assert_gauges_zero(&server.metrics).await;
    server.shutdown().await;
}
