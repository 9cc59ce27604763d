//! A Socket.IO client on `/rooms` over raw Engine.IO long-polling (EIO4) that can stop reading:
//! while it sends no GET, the server queues what it emits to it, until socketioxide's per-socket
//! buffer (`max_buffer_size`, 128 packets) is full and `emit` returns `Full`. The way a real
//! client behaves when its tab is frozen or its network stalls. Plain HTTP/1.1 on a TcpStream,
//! one request per connection, so nothing here buffers on the client's behalf.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(10);
const SEP: char = '\u{1e}';

pub struct PollingClient {
    addr: SocketAddr,
    sid: String,
    acks: u64,
}

impl PollingClient {
    /// Opens an Engine.IO session and connects namespace `/rooms`.
    pub async fn connect(addr: SocketAddr) -> PollingClient {
        let (_, body) = request(addr, "GET", "/socket.io/?EIO=4&transport=polling", "").await;
        let open: Value = serde_json::from_str(body.strip_prefix('0').expect("open packet"))
            .expect("open packet is JSON");
        let c = PollingClient {
            addr,
            sid: open["sid"].as_str().expect("sid").to_string(),
            acks: 0,
        };
        c.post("40/rooms,").await;
        // engineioxide queues its first ping as soon as the session opens, and closes a session
        // whose queue is full when a ping is due. Answer that first ping here, so the next one
        // is a whole `ping_interval` away (25 s by default) and filling the queue afterwards
        // cannot race it.
        let (mut connected, mut pinged) = (false, false);
        let deadline = tokio::time::Instant::now() + WAIT;
        while !(connected && pinged) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "namespace connect and first ping within the wait (connected {connected}, pinged {pinged})"
            );
            for p in c.poll().await {
                connected |= p.starts_with("40/rooms,");
                pinged |= p == "2";
            }
        }
        c.post("3").await;
        c
    }

    fn path(&self) -> String {
        format!("/socket.io/?EIO=4&transport=polling&sid={}", self.sid)
    }

    /// Sends raw Engine.IO packets (joined with the record separator) in one POST.
    pub async fn post(&self, packets: &str) {
        let (status, body) = request(self.addr, "POST", &self.path(), packets).await;
        assert_eq!(status, 200, "POST refused: {body}");
    }

    /// One long-poll GET: the packets the server had queued (or sends within the wait).
    pub async fn poll(&self) -> Vec<String> {
        let (status, body) = request(self.addr, "GET", &self.path(), "").await;
        assert_eq!(status, 200, "GET refused: {body}");
        body.split(SEP).map(str::to_string).collect()
    }

    /// Emits `event(payload)` on `/rooms` without an ack.
    pub async fn emit(&self, event: &str, payload: Value) {
        self.post(&event_packet(None, event, &payload)).await;
    }

    /// Emits the same event `n` times in one POST.
    pub async fn emit_many(&self, n: usize, event: &str, payload: Value) {
        let one = event_packet(None, event, &payload);
        let all = vec![one; n].join(&SEP.to_string());
        self.post(&all).await;
    }

    /// Emits `event(payload)` asking for an ack, without reading it; returns the ack id.
    pub async fn emit_with_ack(&mut self, event: &str, payload: Value) -> u64 {
        self.acks += 1;
        self.post(&event_packet(Some(self.acks), event, &payload))
            .await;
        self.acks
    }

    /// Polls until the ack `id` arrives; returns its first argument.
    pub async fn read_ack(&self, id: u64) -> Value {
        let prefix = format!("43/rooms,{id}");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            assert!(tokio::time::Instant::now() < deadline, "no ack {id}");
            for p in self.poll().await {
                if let Some(json) = p.strip_prefix(&prefix) {
                    let args: Vec<Value> = serde_json::from_str(json).expect("ack is JSON");
                    return args.into_iter().next().unwrap_or(Value::Null);
                }
            }
        }
    }
}

fn event_packet(ack: Option<u64>, event: &str, payload: &Value) -> String {
    let ack = ack.map(|a| a.to_string()).unwrap_or_default();
    format!("42/rooms,{ack}{}", serde_json::json!([event, payload]))
}

/// One HTTP/1.1 request on its own connection; returns the status and the body.
async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        tcp.write_all(head.as_bytes()).await.expect("write");
        tcp.write_all(body.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await.expect("read");
        raw
    };
    let raw = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("HTTP exchange within the wait bound");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}
