//! Forwarding benchmark: 1 publisher → N subscribers through a running sfu-lite server, all
//! headless participants joined over Socket.IO. Reports the server's CPU per forwarded packet
//! (from /proc/PID/stat and /metrics), loss, and per-packet latency matched by RTP sequence
//! number on one clock. Not a test: see docs/benchmarks.md for the command and figures.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use sfu_lite::procstat;
use sfu_lite::sfu::Source;
use sfu_lite_tools::client::{HeadlessPeer, Hooks, MediaSource, PeerOptions, TrackSpec};

#[derive(Parser)]
struct Args {
    /// Server URL, e.g. http://127.0.0.1:8000/
    #[arg(long)]
    url: String,
    /// The server's process id, for its CPU time.
    #[arg(long)]
    server_pid: u32,
    #[arg(long, default_value_t = 16)]
    subscribers: usize,
    #[arg(long, default_value_t = 1000)]
    pps: u32,
    #[arg(long, default_value_t = 1200)]
    size: usize,
    /// Measurement window.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    warmup: u64,
}

async fn forwarded(url: &str) -> anyhow::Result<u64> {
    counter(url, "sfu_forwarded_packets_total").await
}

async fn counter(url: &str, name: &str) -> anyhow::Result<u64> {
    let text = reqwest::get(format!(
        "{}metrics",
        url.trim_end_matches('/').to_string() + "/"
    ))
    .await?
    .text()
    .await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {name} in /metrics"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let t0 = Instant::now();
    let sent_ns: Arc<Vec<AtomicU64>> = Arc::new((0..65536).map(|_| AtomicU64::new(0)).collect());
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 10_000_000, 3,
    )?));
    let measuring = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));

    let on_sent = {
        let sent_ns = sent_ns.clone();
        Arc::new(move |_: Source, seq: u16, at: Instant| {
            sent_ns[seq as usize].store((at - t0).as_nanos() as u64, Ordering::Relaxed);
        })
    };
    let on_packet = {
        let (sent_ns, hist, measuring, received) = (
            sent_ns.clone(),
            hist.clone(),
            measuring.clone(),
            received.clone(),
        );
        Arc::new(
            move |_: &str, _: Source, pkt: &webrtc::rtp::packet::Packet, at: Instant| {
                if !measuring.load(Ordering::Relaxed) {
                    return;
                }
                received.fetch_add(1, Ordering::Relaxed);
                let sent = sent_ns[pkt.header.sequence_number as usize].load(Ordering::Relaxed);
                let now = (at - t0).as_nanos() as u64;
                if sent > 0 && now >= sent && now - sent < 5_000_000_000 {
                    let _ = hist.lock().unwrap().record(((now - sent) / 1000).max(1));
                }
            },
        )
    };
    let publisher = HeadlessPeer::join(
        &args.url,
        "bench",
        "publisher",
        PeerOptions {
            tracks: vec![TrackSpec {
                source: Source::Camera,
                media: MediaSource::SyntheticVideo {
                    packets_per_second: args.pps,
                    payload_len: args.size,
                },
            }],
            record_packets: false,
            hooks: Hooks {
                on_sent: Some(on_sent),
                on_packet: None,
            },
            ..Default::default()
        },
    )
    .await?;
    let mut subs = Vec::new();
    for i in 0..args.subscribers {
        let opts = PeerOptions {
            record_packets: false,
            hooks: Hooks {
                on_packet: Some(on_packet.clone()),
                on_sent: None,
            },
            ..Default::default()
        };
        subs.push(HeadlessPeer::join(&args.url, "bench", &format!("sub{i}"), opts).await?);
    }
    let pub_id = publisher.id().to_string();
    for s in &subs {
        s.wait_until(Duration::from_secs(20), "first packets", |p| {
            p.received()
                .get(&(pub_id.clone(), Source::Camera))
                .is_some_and(|r| r.packets > 0)
        })
        .await?;
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;

    let cpu0 = procstat::sample(args.server_pid).ok_or_else(|| anyhow::anyhow!("no such pid"))?;
    let self0 = procstat::sample_self();
    let fwd0 = forwarded(&args.url).await?;
    let dropped0 = counter(&args.url, "sfu_dropped_packets_total").await?;
    let sent0 = publisher.published()[0].log.packets.load(Ordering::Relaxed);
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let cpu1 = procstat::sample(args.server_pid).ok_or_else(|| anyhow::anyhow!("server gone"))?;
    let self1 = procstat::sample_self();
    let fwd1 = forwarded(&args.url).await?;
    let dropped1 = counter(&args.url, "sfu_dropped_packets_total").await?;
    let sent1 = publisher.published()[0].log.packets.load(Ordering::Relaxed);

    let forwarded = fwd1 - fwd0;
    let cpu = cpu1.cpu - cpu0.cpu;
    let expected = (sent1 - sent0) * args.subscribers as u64;
    let got = received.load(Ordering::Relaxed);
    let loss = if expected > 0 {
        1.0 - got as f64 / expected as f64
    } else {
        0.0
    };
    let (p50, p99) = {
        let h = hist.lock().unwrap();
        (h.value_at_quantile(0.5), h.value_at_quantile(0.99))
    };
    println!(
        "| 1 → {} | {} pkt/s × {} B | {:.1} s | {} | {:.2} µs | {:.1} % | {:.2} % | {:.2} ms | {:.2} ms | {} | {:.1} MiB | {:.2} µs |",
        args.subscribers,
        args.pps,
        args.size,
        elapsed.as_secs_f64(),
        forwarded,
        cpu.as_secs_f64() * 1e6 / forwarded.max(1) as f64,
        cpu.as_secs_f64() * 100.0 / elapsed.as_secs_f64(),
        loss.max(0.0) * 100.0,
        p50 as f64 / 1000.0,
        p99 as f64 / 1000.0,
        dropped1 - dropped0,
        cpu1.rss_bytes as f64 / (1024.0 * 1024.0),
        match (self0, self1) {
            (Some(a), Some(b)) => (b.cpu - a.cpu).as_secs_f64() * 1e6 / got.max(1) as f64,
            _ => 0.0,
        },
    );
    publisher.leave().await;
    for s in subs {
        s.leave().await;
    }
    Ok(())
}
