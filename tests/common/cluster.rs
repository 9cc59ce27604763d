//! For the cluster tests: a real `redis-server` (Debian's) on a free loopback port, started,
//! stopped and restarted by the test and killed when dropped (nothing is saved to disk), and
//! sfu-lite nodes registered in it.
#![allow(dead_code)]

use sfu_lite::config::Config;
use sfu_lite::server::RunningServer;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long redis-server may take to answer its first PING.
const READY: Duration = Duration::from_secs(10);

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            child: None,
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL: as if its host went away).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Runs one command (inline protocol) and returns the raw reply.
    pub fn command(&self, line: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("redis reachable");
        stream.set_read_timeout(Some(READY)).unwrap();
        stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (apt install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + READY;
        // No event says "ready": ask until it answers, within a bound.
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 16];
                if s.write_all(b"PING\r\n").is_ok()
                    && matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer within {READY:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback TCP port free at this instant.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Heartbeat and ttl of the test nodes: short, so a dead node is noticed within a second.
pub const HEARTBEAT_MS: u64 = 200;
pub const NODE_TTL_MS: u64 = 1000;

/// A node of the cluster on `redis`, on a free loopback port, named `id`.
pub async fn node(redis: &RedisServer, id: &str, tweak: impl FnOnce(&mut Config)) -> RunningServer {
    let port = free_port();
    let mut c = Config::embedded();
    c.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    c.server.shutdown_grace_secs = 1;
    c.cluster.redis_url = sfu_lite::config::Secret(redis.url());
    c.cluster.node_id = id.to_string();
    c.cluster.url = format!("http://127.0.0.1:{port}");
    c.cluster.heartbeat_ms = HEARTBEAT_MS;
    c.cluster.node_ttl_ms = NODE_TTL_MS;
    tweak(&mut c);
    sfu_lite::server::start(c).await.expect("node starts")
}

/// Waits (bounded) until `node` reports that it reaches Redis.
pub async fn registered(node: &RunningServer) {
    let metrics = node.metrics.clone();
    let deadline = Instant::now() + READY;
    while metrics
        .cluster_redis_up
        .load(std::sync::atomic::Ordering::Relaxed)
        != 1
    {
        assert!(
            Instant::now() < deadline,
            "node not registered within {READY:?}"
        );
        tokio::time::sleep(Duration::from_millis(HEARTBEAT_MS / 4)).await;
    }
}
