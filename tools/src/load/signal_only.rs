//! `--signal-only`: Socket.IO clients without media. Measures join cost, room message latency
//! and loss, and that the server survives every client disconnecting at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::Payload;
use serde_json::json;

use crate::client::{first_value, join_rooms};

use super::args::LoadArgs;
use super::report::Summary;
use super::server_probe::ServerProbe;
use super::stats::Samples;
use crate::sync::lock;

const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Room messages each client sends during the steady state, spread over `--duration`.
const MESSAGES_PER_CLIENT: u64 = 20;

#[derive(Default)]
struct Received {
    count: AtomicU64,
    latency_us: Mutex<Samples>,
}

/// Connects to `/rooms`, joins, and returns the client once the join is acknowledged.
async fn join(
    url: &str,
    room: &str,
    name: &str,
    received: Arc<Received>,
) -> anyhow::Result<Client> {
    let epoch = super::stats::epoch();
    let builder = |url: &str| {
        let received = received.clone();
        ClientBuilder::new(url).on("message", move |payload: Payload, _c: Client| {
            let received = received.clone();
            async move {
                let sent_ns = first_value(payload)
                    .and_then(|v| v.get("content")?.as_str()?.parse::<u64>().ok());
                if let Some(sent_ns) = sent_ns {
                    let now_ns = epoch.elapsed().as_nanos() as u64;
                    received.count.fetch_add(1, Ordering::Relaxed);
                    lock(&received.latency_us).record(now_ns.saturating_sub(sent_ns) / 1000);
                }
            }
            .boxed()
        })
    };
    let (client, _id) = tokio::time::timeout(JOIN_TIMEOUT, join_rooms(url, builder, room, name))
        .await
        .map_err(|_| anyhow::anyhow!("no join within {JOIN_TIMEOUT:?}"))??;
    Ok(client)
}

pub async fn run(args: &LoadArgs, run_id: &str) -> anyhow::Result<Summary> {
    let probe = ServerProbe::new(&args.urls(), &args.server_pid);
    let tool_start = crate::procstat::sample_self();
    let received = Arc::new(Received::default());
    let mut clients = Vec::new();
    let mut rooms_of = Vec::new();
    let mut join_ms = Samples::default();
    let mut failed = 0usize;
    let server_start = probe.sample().await;
    let started = Instant::now();
    // One by one (or at --ramp), as people arrive.
    for i in 0..args.peers {
        if args.ramp > 0.0 {
            let at = started + Duration::from_secs_f64(i as f64 / args.ramp);
            tokio::time::sleep_until(at.into()).await;
        }
        let room = i % args.rooms;
        let t0 = Instant::now();
        match join(
            &args.entry(i),
            &format!("load-{run_id}-{room}"),
            &format!("peer-{i}"),
            received.clone(),
        )
        .await
        {
            Ok(c) => {
                join_ms.record(t0.elapsed().as_millis() as u64);
                clients.push(c);
                rooms_of.push(room);
            }
            Err(e) => {
                failed += 1;
                tracing::warn!("peer {i}: {e:#}");
            }
        }
    }
    let after_joins = probe.sample().await;

    // Room messages: every client sends MESSAGES_PER_CLIENT, paced over the duration; each
    // reaches the other members of its room.
    let mut members = vec![0u64; args.rooms];
    for r in &rooms_of {
        members[*r] += 1;
    }
    let expected: u64 = rooms_of
        .iter()
        .map(|r| MESSAGES_PER_CLIENT * (members[*r] - 1))
        .sum();
    let epoch = super::stats::epoch();
    let gap = args.duration / MESSAGES_PER_CLIENT as u32;
    let steady = Instant::now();
    for _ in 0..MESSAGES_PER_CLIENT {
        for c in &clients {
            let now_ns = epoch.elapsed().as_nanos() as u64;
            let _ = c
                .emit("message", json!({ "content": now_ns.to_string() }))
                .await;
        }
        tokio::time::sleep(gap).await;
    }
    // Let the last messages land: wait until all arrived, bounded.
    let deadline = Instant::now() + Duration::from_secs(5);
    while received.count.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let server_end = probe.sample().await;

    let mut summary = Summary {
        url: args.url.clone(),
        rooms: args.rooms,
        peers: args.peers,
        signal_only: true,
        duration_s: steady.elapsed().as_secs_f64(),
        peers_joined: clients.len(),
        peers_failed: failed,
        join_ms: join_ms.percentiles(1.0),
        ..Summary::default()
    };
    let got = received.count.load(Ordering::Relaxed);
    summary.message_latency_ms = Some(lock(&received.latency_us).percentiles(1000.0));
    summary.messages_lost = Some(expected.saturating_sub(got));
    summary.recv_packets = got;
    if let (Some(a), Some(b)) = (server_start, after_joins) {
        summary.server_join_cpu_ms = a
            .cpu_s
            .zip(b.cpu_s)
            .filter(|_| !clients.is_empty())
            .map(|(a, b)| (b - a) * 1000.0 / clients.len() as f64);
    }
    if let (Some(a), Some(b)) = (after_joins, server_end) {
        summary.apply_server(&a, &b);
        summary.server_cpu_us_per_message = a
            .cpu_s
            .zip(b.cpu_s)
            .filter(|_| got > 0)
            .map(|(a, b)| (b - a) * 1e6 / got as f64);
    }

    // Everyone leaves at once; the server must stay up and let go of every socket.
    let all = futures_util::future::join_all(clients.iter().map(|c| c.disconnect()));
    let _ = tokio::time::timeout(Duration::from_secs(15), all).await;
    summary.server_alive_after_mass_disconnect = Some(probe.sample().await.is_some());
    if let (Some(a), Some(b)) = (tool_start, crate::procstat::sample_self()) {
        summary.tool_cpu_s = (b.cpu - a.cpu).as_secs_f64();
    }
    Ok(summary)
}
