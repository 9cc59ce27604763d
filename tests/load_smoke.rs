//! `sfu-lite load` end to end: the real binary drives headless peers against a server started
//! here, and its JSON report must describe what happened.

use std::process::Command;

use serde_json::Value;
use sfu_lite::config::Config;

async fn server() -> sfu_lite::server::RunningServer {
    let mut config = Config::embedded();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    sfu_lite::server::start(config)
        .await
        .expect("server starts")
}

/// Runs the load binary on a blocking thread (it has its own runtime) and returns its exit
/// status and JSON report.
async fn load(url: String, extra: &[&str]) -> (std::process::ExitStatus, Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sfu-lite"));
    cmd.args(["load", "--quiet", "--url", &url, "--json"])
        .arg(&json)
        .args(extra);
    let status = tokio::task::spawn_blocking(move || cmd.status().unwrap())
        .await
        .unwrap();
    let report = std::fs::read_to_string(&json)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(Value::Null);
    (status, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_load_reports_every_peer_and_packet() {
    let server = server().await;
    let url = format!("http://127.0.0.1:{}", server.local_addr.port());
    let (status, r) = load(
        url,
        &[
            "--rooms",
            "1",
            "--peers",
            "3",
            "--duration",
            "3s",
            "--ramp",
            "0",
            "--audio",
            "--max-loss",
            "0.05",
        ],
    )
    .await;
    assert!(status.success(), "load failed: {status}\n{r:#}");
    assert_eq!(r["peers_joined"], 3);
    assert_eq!(r["peers_failed"], 0);
    assert!(r["recv_packets"].as_u64().unwrap() > 100, "{r:#}");
    assert!(r["loss_ratio"].as_f64().unwrap() <= 0.05);
    for key in ["latency_ms", "join_ms", "first_frame_ms"] {
        for p in ["p50", "p95", "p99", "max"] {
            assert!(r[key][p].is_number(), "{key}.{p} in {r:#}");
        }
    }
    assert!(
        r["latency_ms"]["count"].as_u64().unwrap() > 0,
        "no latency matched"
    );
    // Each of the 3 peers got a keyframe from each of the other 2 cameras.
    assert_eq!(
        r["first_frame_ms"]["count"], 6,
        "every subscription saw a keyframe"
    );
    // /metrics was reachable, so the server's side is filled in.
    assert!(r["server_forwarded_packets"].as_u64().unwrap() > 0, "{r:#}");
    assert!(r["server_rss_mib"].as_f64().unwrap() > 0.0);
    assert!(r["tool_cpu_s"].as_f64().unwrap() > 0.0);
    // Teardown left nothing behind on the server (leaves finish asynchronously: bounded wait).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.metrics.gauges().iter().any(|(_, v)| *v != 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gauges not back to zero: {:?}",
            server.metrics.gauges()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_only_load_loses_no_message_and_survives_mass_disconnect() {
    let server = server().await;
    let url = format!("http://127.0.0.1:{}", server.local_addr.port());
    let (status, r) = load(
        url,
        &[
            "--signal-only",
            "--rooms",
            "2",
            "--peers",
            "10",
            "--duration",
            "1s",
            "--ramp",
            "0",
        ],
    )
    .await;
    assert!(status.success(), "load failed: {status}\n{r:#}");
    assert_eq!(r["peers_joined"], 10);
    assert_eq!(r["messages_lost"], 0);
    // 20 messages each, to the 4 others of a 5-member room.
    assert_eq!(r["message_latency_ms"]["count"], 10 * 20 * 4);
    assert_eq!(r["server_alive_after_mass_disconnect"], true);
    server.shutdown().await;
}

#[test]
fn remote_target_is_refused_without_allow_remote() {
    let out = Command::new(env!("CARGO_BIN_EXE_sfu-lite"))
        .args(["load", "--url", "http://192.0.2.1:8000", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
}
