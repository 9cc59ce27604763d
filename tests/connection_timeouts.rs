//! Connections that hold a descriptor without doing anything are cut: one that never sends a
//! request (idle timeout), one that trickles its headers (header-read timeout, slowloris), and a
//! keep-alive connection after its last request. Raw TCP.

mod common;

use std::time::{Duration, Instant};

use common::{server_with, stop, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection; how long that took, or `None` past `bound`.
async fn time_to_close(conn: &mut TcpStream, bound: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(bound, closed)
        .await
        .ok()
        .map(|()| started.elapsed())
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
    let server = server_with(|c| c.server.idle_timeout_secs = 1).await;
    let mut conn = TcpStream::connect(server.local_addr).await.unwrap();
    let took = time_to_close(&mut conn, WAIT).await;
    assert!(
        took.is_some(),
        "an idle connection stayed open past {WAIT:?}"
    );
    assert!(took.unwrap() >= Duration::from_millis(900), "{took:?}");
    stop(server).await;
}

#[tokio::test]
async fn headers_trickled_byte_by_byte_are_cut_at_the_header_timeout() {
    let server = server_with(|c| {
        c.server.header_read_timeout_secs = 1;
        c.server.idle_timeout_secs = 60;
    })
    .await;
    let mut conn = TcpStream::connect(server.local_addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (mut read, mut write) = conn.into_split();
    // A slowloris: one more header byte every 200 ms, never the blank line.
    let trickle = tokio::spawn(async move {
        while write.write_all(b"X").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a trickling request stayed open past {WAIT:?}"
    );
    trickle.abort();
    stop(server).await;
}

#[tokio::test]
async fn a_keep_alive_connection_is_closed_once_idle_and_can_be_used_until_then() {
    let server = server_with(|c| c.server.idle_timeout_secs = 1).await;
    let mut conn = TcpStream::connect(server.local_addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("ok\n") {
        let n = tokio::time::timeout(WAIT, conn.read(&mut buf))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&got).to_string();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        time_to_close(&mut conn, WAIT).await.is_some(),
        "an idle keep-alive connection stayed open"
    );
    stop(server).await;
}
