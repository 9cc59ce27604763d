//! Shared set-up for the `sfu-lite load` tests: a server in this process, and the real load
//! binary run against it with its JSON report read back.
#![allow(dead_code)]

use std::process::Command;

use serde_json::Value;
use sfu_lite::config::Config;

pub async fn server() -> sfu_lite::server::RunningServer {
    let mut config = Config::embedded();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    sfu_lite::server::start(config)
        .await
        .expect("server starts")
}

/// Runs the load binary on a blocking thread (it has its own runtime) and returns its exit
/// status, its JSON report and what it printed.
pub async fn load(url: String, extra: &[&str]) -> (std::process::ExitStatus, Value) {
    let (status, report, _) = load_with_output(url, extra).await;
    (status, report)
}

/// [`load`], with the table it printed (stdout) and its complaints (stderr).
pub async fn load_with_output(
    url: String,
    extra: &[&str],
) -> (std::process::ExitStatus, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sfu-lite-load"));
    cmd.args(["--quiet", "--url", &url, "--json"])
        .arg(&json)
        .args(extra);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let report = std::fs::read_to_string(&json)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(Value::Null);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, report, text)
}
