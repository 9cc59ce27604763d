//! The floor: the unavoidable work per forwarded packet on this machine, so every load figure
//! can be read as a multiple of it. A forwarded copy costs at least one SRTP encrypt and one
//! loopback UDP send; each received packet costs one SRTP decrypt and one UDP receive, shared
//! by all its copies. Run: `cargo bench --bench floor`.

use std::net::UdpSocket;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use webrtc::srtp::context::Context;
use webrtc::srtp::option::srtp_no_replay_protection;
use webrtc::srtp::protection_profile::ProtectionProfile;

const PAYLOAD: usize = 1200;

/// A plain RTP packet: 12-byte header (version 2, PT 96) + payload.
fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; 12 + PAYLOAD];
    p[0] = 0x80;
    p[1] = 96;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    for (i, b) in p[12..].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

fn context(profile: ProtectionProfile) -> Context {
    let key = vec![7u8; profile.key_len()];
    let salt = vec![9u8; profile.salt_len()];
    Context::new(
        &key,
        &salt,
        profile,
        Some(srtp_no_replay_protection()),
        None,
    )
    .expect("valid key and salt")
}

fn srtp(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp");
    group.throughput(Throughput::Elements(1));
    for (name, profile) in [
        ("aead_aes_128_gcm", ProtectionProfile::AeadAes128Gcm),
        (
            "aes128_cm_hmac_sha1_80",
            ProtectionProfile::Aes128CmHmacSha1_80,
        ),
    ] {
        let plain = rtp_packet(1);
        let mut enc = context(profile);
        group.bench_with_input(BenchmarkId::new("protect", name), &plain, |b, p| {
            b.iter(|| enc.encrypt_rtp(p).expect("encrypt"))
        });
        let cipher = context(profile).encrypt_rtp(&plain).expect("encrypt");
        let mut dec = context(profile);
        group.bench_with_input(BenchmarkId::new("unprotect", name), &cipher, |b, p| {
            b.iter(|| dec.decrypt_rtp(p).expect("decrypt"))
        });
    }
    group.finish();
}

fn udp(c: &mut Criterion) {
    let mut group = c.benchmark_group("udp_loopback");
    group.throughput(Throughput::Elements(1));
    let packet = vec![0u8; 12 + PAYLOAD + 16];

    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(rx.local_addr().unwrap()).unwrap();
    // A reader thread keeps the receive buffer drained, as the subscriber's stack would.
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let drain = rx.try_clone().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = drain.recv(&mut buf);
        }
    });
    group.bench_function("send", |b| b.iter(|| tx.send(&packet).expect("send")));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reader.join().unwrap();

    // Receive: each iteration sends one datagram to itself first, and subtracting the send
    // figure above leaves the receive cost.
    let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    echo.connect(echo.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 2048];
    group.bench_function("send_then_recv", |b| {
        b.iter(|| {
            echo.send(&packet).expect("send");
            echo.recv(&mut buf).expect("recv")
        })
    });
    group.finish();
}

criterion_group! {
    name = floor;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = srtp, udp
}
criterion_main!(floor);
