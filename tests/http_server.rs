//! HTTP behaviour of the server: health, metrics, the embedded web client, caching,
//! compression, TLS, and the binary's start-up and shutdown contract.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use sfu_lite::config::Config;
use sfu_lite::server::{self, RunningServer};

fn loopback_config() -> Config {
    let mut config = Config::embedded();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config
}

async fn start(config: Config) -> (RunningServer, String) {
    let server = server::start(config).await.expect("server starts");
    let base = format!("{}://127.0.0.1:{}", server.scheme, server.local_addr.port());
    (server, base)
}

#[tokio::test]
async fn healthz_answers_ok() {
    let (server, base) = start(loopback_config()).await;
    let resp = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok\n");
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let (server, base) = start(loopback_config()).await;
    let resp = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let body = resp.text().await.unwrap();
    for name in [
        "sfu_rooms 0",
        "sfu_participants 0",
        "sfu_peer_connections 0",
        "sfu_forwarded_packets_total 0",
    ] {
        assert!(body.contains(name), "missing {name} in\n{body}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn embedded_page_is_served_with_etag_and_revalidates() {
    let (server, base) = start(loopback_config()).await;
    let client = reqwest::Client::new();
    let resp = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let etag = resp.headers()["etag"].clone();
    let embedded = resp.text().await.unwrap();
    assert_eq!(
        embedded,
        std::fs::read_to_string("static/index.html").unwrap()
    );

    let again = client
        .get(format!("{base}/index.html"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    let missing = client
        .get(format!("{base}/no/such/file.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    server.shutdown().await;
}

#[tokio::test]
async fn responses_are_compressed_when_asked() {
    let (server, base) = start(loopback_config()).await;
    let resp = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    server.shutdown().await;
}

#[tokio::test]
async fn static_dir_serves_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "from disk").unwrap();
    let mut config = loopback_config();
    config.server.static_dir = dir.path().display().to_string();
    let (server, base) = start(config).await;
    let body = reqwest::get(format!("{base}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "from disk");
    server.shutdown().await;
}

#[tokio::test]
async fn self_signed_tls_serves_https() {
    let mut config = loopback_config();
    config.tls.self_signed = true;
    let (server, base) = start(config).await;
    assert!(base.starts_with("https://"));
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let resp = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // Plain http on the TLS port is not served.
    let plain = format!("http://127.0.0.1:{}/healthz", server.local_addr.port());
    assert!(reqwest::get(plain)
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true));
    server.shutdown().await;
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sfu-lite"))
}

#[test]
fn help_lists_serve_and_its_flags() {
    let out = binary().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "--config", "--listen", "--static-dir"] {
        assert!(text.contains(word), "{word} missing from help:\n{text}");
    }
}

#[test]
fn bad_config_exits_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[signaling]\nmax_members_per_room = \"lots\"\n").unwrap();
    let out = binary().arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("signaling") && err.contains("max_members_per_room"),
        "{err}"
    );

    let out = binary()
        .env("SFU_LITE_SERVER_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.listen"));
}

#[test]
fn sigterm_stops_the_server() {
    let mut child = binary()
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("sfu-lite listening on http://localhost:"),
        "{line}"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // The contract is "exit within 5 s"; wait a little longer before calling it a hang.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("server still running 10 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn the_page_has_a_strict_content_security_policy() {
    let (server, base) = start(loopback_config()).await;
    let resp = reqwest::get(format!("{base}/")).await.unwrap();
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    let directive = |name: &str| {
        csp.split(';')
            .map(str::trim)
            .find(|d| d.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {csp}"))
            .to_string()
    };
    assert_eq!(directive("default-src"), "default-src 'none'");
    assert_eq!(directive("script-src"), "script-src 'self'");
    assert!(!directive("style-src").contains("'unsafe-inline'"), "{csp}");
    assert_eq!(directive("frame-ancestors"), "frame-ancestors 'none'");
    // Every script the page loads is a file of its own: nothing inline to allow.
    let page = std::fs::read_to_string("static/index.html").unwrap();
    for tag in page.split("<script").skip(1) {
        let open = tag.split('>').next().unwrap();
        assert!(
            open.contains("src="),
            "inline script in index.html: <script{open}>"
        );
    }
    // The tutorial's page is served as published, inline script included.
    let tutorial = reqwest::get(format!("{base}/tutorial.html")).await.unwrap();
    let policy = tutorial.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_on_the_main_port_need_loopback_or_the_key() {
    let mut config = loopback_config();
    // The test reaches the server from loopback; a trusted proxy lets it speak for others.
    config.server.trusted_proxies = vec!["127.0.0.1".into()];
    config.server.metrics_key = sfu_lite::config::Secret("k3y-for-tests".into());
    let (server, base) = start(config).await;
    let client = reqwest::Client::new();
    let get = |from: &'static str, key: Option<&'static str>| {
        let mut req = client.get(format!("{base}/metrics"));
        if !from.is_empty() {
            req = req.header("x-forwarded-for", from);
        }
        if let Some(key) = key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get("", None).await, 200, "loopback reads without a key");
    assert_eq!(get("203.0.113.5", None).await, 401);
    assert_eq!(get("203.0.113.5", Some("wrong")).await, 401);
    assert_eq!(get("203.0.113.5", Some("k3y-for-tests")).await, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_can_move_to_their_own_listener() {
    let mut config = loopback_config();
    config.server.metrics_listen = "127.0.0.1:0".into();
    let (server, base) = start(config).await;
    let own = server.metrics_addr.expect("metrics listener bound");
    let resp = reqwest::get(format!("http://{own}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("sfu_rooms 0"));
    let main = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(main.status(), 404, "not on the main port any more");
    server.shutdown().await;
}

#[test]
fn start_up_raises_the_open_file_limit_to_the_hard_limit() {
    use std::os::unix::process::CommandExt;
    let mut cmd = binary();
    cmd.args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: only setrlimit between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            lim.rlim_cur = lim.rlim_max.min(256);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("sfu-lite listening"), "{line}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let row = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect::<Vec<_>>();
    assert_eq!(row[0], row[1], "soft limit raised to the hard one: {row:?}");
}
