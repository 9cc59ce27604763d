//! Command-line arguments of `sfu-lite load`, and the checks made before any peer starts.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;

/// `sfu-lite load`: drive a server with headless peers and measure it.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Server to load; several cluster nodes as a comma-separated list (peer i enters through
    /// the (i mod n)-th, and follows `room_elsewhere` to its room's host). Server figures are
    /// read from the first.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Number of rooms; peers are spread over them evenly.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Peers in all rooms together.
    #[arg(long, default_value_t = 2)]
    pub peers: usize,
    /// How many of the peers publish (spread over the rooms); the default is all of them.
    #[arg(long)]
    pub publishers: Option<usize>,
    /// How long to keep the media flowing once everyone has joined (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Joins per second while ramping up (e.g. 10/s, or 0 for all at once).
    #[arg(long, default_value = "10/s", value_parser = parse_ramp)]
    pub ramp: f64,
    /// Video each publisher sends: a bitrate such as 500kbps (synthetic VP8-sized packets
    /// paced at that rate; the default), `fixture` (the committed VP8 clip, looped), or `none`.
    /// With --simulcast: the top layer's bitrate (default 1.5mbps).
    #[arg(long)]
    pub video: Option<VideoSpec>,
    /// Publishers also send Opus audio.
    #[arg(long)]
    pub audio: bool,
    /// Socket.IO clients only: join cost, message latency and throughput, mass disconnect.
    #[arg(long)]
    pub signal_only: bool,
    /// Write every figure as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw latency and throughput over time (SVG).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// The server's process id, for its CPU time and RSS (otherwise /metrics only). Several,
    /// comma-separated (a cluster's nodes and its Redis): their sum.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Exit non-zero when the loss ratio is above this (0.01 = 1 %).
    #[arg(long, default_value_t = 0.05)]
    pub max_loss: f64,
    /// Allow a target that is not on this machine's loopback.
    #[arg(long)]
    pub allow_remote: bool,
    /// No progress bar (for logs and CI).
    #[arg(long)]
    pub quiet: bool,
    /// Lose this percentage of the UDP packets to and, independently, from the server's media
    /// port (silent nftables drops on the input hook, via `netshape`). Needs root in a network
    /// namespace of its own, e.g. `unshare --net`, with the server started inside it.
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=50))]
    pub loss: Option<u8>,
    /// The server's media UDP port, for `--loss` (default: the port of `--url`, where the
    /// server listens for media unless `media.udp_port` says otherwise).
    #[arg(long)]
    pub media_port: Option<u16>,
    /// Publishers send their camera as three simulcast layers (q, h, f) in the web client's
    /// proportions (150 / 500 / 1,500 kbit/s; --video sets the top one) and obey the server's
    /// `layers` word; the report gains layer switches and freezes per subscriber.
    #[arg(long)]
    pub simulcast: bool,
    /// Caps the downlink of this many subscribers (the last peers to join) once everyone has
    /// joined, with `netshape` (tc on lo, a 20-packet bottleneck queue). Needs root, and a
    /// network namespace of its own shared with the server (`unshare --net`).
    #[arg(long, default_value_t = 0)]
    pub cap_subscribers: usize,
    /// The downlink cap of --cap-subscribers, in kbit/s.
    #[arg(long, default_value_t = 400)]
    pub cap_kbps: u32,
}

/// What a publisher's video track sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VideoSpec {
    None,
    /// Synthetic VP8 at this many bits per second.
    Bitrate(u64),
    /// The committed fixture clip, looped.
    Fixture,
}

impl FromStr for VideoSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "none" | "off" => return Ok(Self::None),
            "fixture" => return Ok(Self::Fixture),
            _ => {}
        }
        let (number, unit) =
            s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
        let value: f64 = number.trim().parse().map_err(|_| {
            format!("expected a bitrate like 500kbps, `fixture` or `none`, got {s:?}")
        })?;
        let scale = match unit {
            "" | "bps" => 1.0,
            "kbps" | "k" => 1e3,
            "mbps" | "m" => 1e6,
            other => return Err(format!("unknown bitrate unit {other:?} (bps, kbps, mbps)")),
        };
        let bps = value * scale;
        if !(1e3..=50e6).contains(&bps) {
            return Err(format!("bitrate {bps} bps is outside 1kbps..50mbps"));
        }
        Ok(Self::Bitrate(bps as u64))
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d > Duration::from_secs(24 * 3600) {
        return Err("at most 24h".into());
    }
    Ok(d)
}

/// `10/s` or `10` joins per second; 0 means all at once.
fn parse_ramp(s: &str) -> Result<f64, String> {
    let n = s.trim().trim_end_matches("/s");
    let v: f64 = n.parse().map_err(|_| format!("expected N/s, got {s:?}"))?;
    if !(0.0..=100_000.0).contains(&v) {
        return Err("ramp must be between 0 and 100000 per second".into());
    }
    Ok(v)
}

impl LoadArgs {
    /// Consistency checks, and the loopback-only rule unless `--allow-remote`.
    pub fn validate(&self) -> Result<(), String> {
        if self.rooms == 0 || self.peers == 0 {
            return Err("--rooms and --peers must be at least 1".into());
        }
        if self.peers > 10_000 {
            return Err("--peers is at most 10000".into());
        }
        if self.publishers.is_some_and(|p| p > self.peers) {
            return Err("--publishers cannot exceed --peers".into());
        }
        if self.simulcast && !matches!(self.video(), VideoSpec::Bitrate(_)) {
            return Err(
                "--simulcast needs synthetic video: --video BITRATE (the top layer)".into(),
            );
        }
        if self.cap_subscribers > self.peers {
            return Err("--cap-subscribers cannot exceed --peers".into());
        }
        if self.cap_subscribers > 0 && self.signal_only {
            return Err("--cap-subscribers shapes media: not with --signal-only".into());
        }
        if !(8..=10_000_000).contains(&self.cap_kbps) {
            return Err("--cap-kbps is between 8 and 10000000".into());
        }
        if !(0.0..=1.0).contains(&self.max_loss) {
            return Err("--max-loss is a ratio between 0 and 1".into());
        }
        for given in self.urls() {
            let url = url::Url::parse(given).map_err(|e| format!("--url {given}: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err("--url must be http:// or https://".into());
            }
            if !self.allow_remote && !is_loopback_host(url.host_str().unwrap_or("")) {
                return Err(format!(
                    "{given} is not on this machine's loopback; pass --allow-remote to load another host"
                ));
            }
        }
        Ok(())
    }

    /// The URLs of `--url`, in order.
    pub fn urls(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// Where peer `i` enters: the URLs in turn.
    pub fn entry(&self, i: usize) -> String {
        let urls = self.urls();
        urls.get(i % urls.len().max(1)).unwrap_or(&"").to_string()
    }

    /// The first URL: where the media port comes from.
    pub fn probed_url(&self) -> String {
        self.entry(0)
    }

    /// The media port `--loss` shapes.
    pub fn media_port(&self) -> Option<u16> {
        self.media_port.or_else(|| {
            url::Url::parse(&self.probed_url())
                .ok()?
                .port_or_known_default()
        })
    }

    pub fn publisher_count(&self) -> usize {
        self.publishers.unwrap_or(self.peers)
    }

    /// What publishers send: --video, or its default (1.5 Mbit/s at the top of a simulcast,
    /// 500 kbit/s otherwise).
    pub fn video(&self) -> VideoSpec {
        let default = if self.simulcast { 1_500_000 } else { 500_000 };
        self.video.unwrap_or(VideoSpec::Bitrate(default))
    }

    /// Whether peer `i` (in join order) gets a capped downlink: the last `cap_subscribers`.
    pub fn is_capped(&self, i: usize) -> bool {
        i + self.cap_subscribers >= self.peers
    }
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: LoadArgs,
    }

    fn parse(argv: &[&str]) -> Result<LoadArgs, String> {
        let mut all = vec!["load"];
        all.extend_from_slice(argv);
        let args = Wrap::try_parse_from(all).map_err(|e| e.to_string())?.args;
        args.validate()?;
        Ok(args)
    }

    #[test]
    fn defaults_are_bounded_and_local() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.duration, Duration::from_secs(30));
        assert_eq!(a.video(), VideoSpec::Bitrate(500_000));
        assert_eq!(a.publisher_count(), 2);
    }

    #[test]
    fn parses_units() {
        let a = parse(&["--video", "1.5mbps", "--ramp", "25/s", "--duration", "2m"]).unwrap();
        assert_eq!(a.video(), VideoSpec::Bitrate(1_500_000));
        assert_eq!(a.ramp, 25.0);
        assert_eq!(a.duration, Duration::from_secs(120));
        assert_eq!(
            parse(&["--video", "fixture"]).unwrap().video(),
            VideoSpec::Fixture
        );
        assert!(parse(&["--video", "fast"]).is_err());
    }

    #[test]
    fn remote_targets_need_allow_remote() {
        assert!(parse(&["--url", "http://[::1]:8000"]).is_ok());
        assert!(parse(&["--url", "http://localhost:8000"]).is_ok());
        let err = parse(&["--url", "http://192.0.2.1:8000"]).unwrap_err();
        assert!(err.contains("--allow-remote"), "{err}");
        assert!(parse(&["--url", "http://192.0.2.1:8000", "--allow-remote"]).is_ok());
    }

    #[test]
    fn several_urls_take_peers_in_turn_and_each_is_checked() {
        let a = parse(&["--url", "http://127.0.0.1:8001,http://127.0.0.1:8002"]).unwrap();
        assert_eq!(a.entry(0), "http://127.0.0.1:8001");
        assert_eq!(a.entry(1), "http://127.0.0.1:8002");
        assert_eq!(a.entry(2), "http://127.0.0.1:8001");
        assert_eq!(a.probed_url(), "http://127.0.0.1:8001");
        assert!(parse(&["--url", "http://127.0.0.1:8001,http://192.0.2.1:8002"]).is_err());
    }

    #[test]
    fn loss_is_a_bounded_percentage_on_the_urls_port_by_default() {
        let a = parse(&["--url", "http://127.0.0.1:8123", "--loss", "5"]).unwrap();
        assert_eq!((a.loss, a.media_port()), (Some(5), Some(8123)));
        let a = parse(&["--loss", "5", "--media-port", "9000"]).unwrap();
        assert_eq!(a.media_port(), Some(9000));
        assert!(parse(&["--loss", "0"]).is_err());
        assert!(parse(&["--loss", "80"]).is_err());
    }

    #[test]
    fn simulcast_tops_at_the_web_rate_or_at_video_and_caps_the_last_peers() {
        let a = parse(&["--simulcast", "--peers", "8", "--cap-subscribers", "2"]).unwrap();
        assert_eq!(a.video(), VideoSpec::Bitrate(1_500_000));
        assert_eq!(a.cap_kbps, 400);
        let capped: Vec<usize> = (0..8).filter(|&i| a.is_capped(i)).collect();
        assert_eq!(capped, vec![6, 7]);
        assert!(!parse(&["--peers", "8"]).unwrap().is_capped(7));
        let b = parse(&["--simulcast", "--video", "3mbps"]).unwrap();
        assert_eq!(b.video(), VideoSpec::Bitrate(3_000_000));
        assert!(parse(&["--simulcast", "--video", "fixture"]).is_err());
        assert!(parse(&["--peers", "2", "--cap-subscribers", "3"]).is_err());
        assert!(parse(&["--cap-kbps", "0"]).is_err());
    }

    #[test]
    fn inconsistent_counts_are_refused() {
        assert!(parse(&["--peers", "2", "--publishers", "3"]).is_err());
        assert!(parse(&["--rooms", "0"]).is_err());
    }
}
