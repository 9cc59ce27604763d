//! `--simulcast` and `--cap-subscribers`: the downlink caps (through [`crate::netshape`]) and
//! the figures per capped subscriber and for the rest: layer switches (from the server's
//! `layer` events), the longest freeze, loss.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::args::LoadArgs;
use crate::client::HeadlessPeer;
use crate::netshape::Shaper;

/// Packets the capped link's bottleneck queue holds: what does not fit is lost, as on a real
/// slow link (the test `media_simulcast_capped` uses the same).
const CAP_QUEUE_PACKETS: u32 = 20;
/// How long a capped peer's subscriber connection may take to be up.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Refuses caps where they cannot work or would shape more than this run: they need root and a
/// network namespace of their own (the caps are `tc` rules on its `lo`).
pub fn preflight(args: &LoadArgs) -> anyhow::Result<()> {
    if args.cap_subscribers == 0 {
        return Ok(());
    }
    let how = "run the server and the tool inside one network namespace of their own, as root: \
               unshare --net sh -c 'ip link set lo up && ...' (see docs/benchmarks.md)";
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|ids| ids.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        anyhow::bail!("--cap-subscribers shapes loopback with tc and needs root; {how}");
    }
    let ns = |p| std::fs::read_link(p).ok();
    if ns("/proc/self/ns/net").is_some() && ns("/proc/self/ns/net") == ns("/proc/1/ns/net") {
        anyhow::bail!(
            "--cap-subscribers would shape this machine's own loopback (the tool runs in the \
             initial network namespace); {how}"
        );
    }
    Ok(())
}

/// The caps of one run; lifted when dropped.
pub struct Caps {
    _shaper: Shaper,
}

/// Caps each of `peers`' downlink at `kbps`: the UDP packets to its subscriber connection's
/// port, which is what the server sends it whether it uses one socket or one per connection.
pub async fn cap_downlinks(peers: &[&HeadlessPeer], kbps: u32) -> anyhow::Result<Caps> {
    let mut shaper = Shaper::new();
    for p in peers {
        let deadline = Instant::now() + CONNECT_WAIT;
        let port = loop {
            if let Some(port) = p.subscriber_local_port().await {
                break port;
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{}: no subscriber connection within {CONNECT_WAIT:?}",
                    p.id()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        shaper
            .cap_to_port_dropping(port, kbps, CAP_QUEUE_PACKETS)
            .map_err(|e| anyhow::anyhow!("cannot cap {}'s downlink: {e}", p.id()))?;
        tracing::debug!(peer = %p.id(), port, kbps, "downlink capped");
    }
    Ok(Caps { _shaper: shaper })
}

/// What one subscriber received, as the run's observer recorded it.
pub struct SubscriberSample {
    pub id: String,
    pub capped: bool,
    /// The server's `layer` events: (mid, rid).
    pub layer_events: Vec<(String, String)>,
    /// Per video stream: the longest pause between two packets, in ms.
    pub video_gaps_ms: Vec<f64>,
    pub received: u64,
    pub lost: u64,
}

/// The figures of one capped subscriber, or of all the others together.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Group {
    pub who: String,
    pub subscribers: usize,
    /// Completed switches between layers (the first layer of a subscription is no switch).
    pub layer_switches: u64,
    /// The video subscriptions on each rid at the end.
    pub layers_now: BTreeMap<String, usize>,
    /// The longest pause between two frames of one video subscription.
    pub freeze_ms_max: f64,
    /// The median over subscriptions of their longest pause.
    pub freeze_ms_p50: f64,
    pub loss_ratio: f64,
}

/// The simulcast section of the report.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SimulcastSummary {
    pub simulcast: bool,
    pub cap_kbps: Option<u32>,
    pub capped: Vec<Group>,
    pub uncapped: Group,
}

/// Sums up the samples: one group per capped subscriber, one for the rest.
pub fn summarize(args: &LoadArgs, samples: &[SubscriberSample]) -> SimulcastSummary {
    let capped = samples
        .iter()
        .filter(|s| s.capped)
        .map(|s| group(s.id.clone(), &[s]))
        .collect();
    let rest: Vec<&SubscriberSample> = samples.iter().filter(|s| !s.capped).collect();
    SimulcastSummary {
        simulcast: args.simulcast,
        cap_kbps: (args.cap_subscribers > 0).then_some(args.cap_kbps),
        capped,
        uncapped: group(format!("{} uncapped", rest.len()), &rest),
    }
}

fn group(who: String, samples: &[&SubscriberSample]) -> Group {
    let mut g = Group {
        who,
        subscribers: samples.len(),
        ..Group::default()
    };
    let (mut received, mut lost) = (0u64, 0u64);
    let mut gaps = Vec::new();
    for s in samples {
        let (switches, now) = layer_history(&s.layer_events);
        g.layer_switches += switches;
        for rid in now {
            *g.layers_now.entry(rid).or_default() += 1;
        }
        gaps.extend_from_slice(&s.video_gaps_ms);
        received += s.received;
        lost += s.lost;
    }
    gaps.sort_by(f64::total_cmp);
    g.freeze_ms_max = gaps.last().copied().unwrap_or(0.0);
    g.freeze_ms_p50 = gaps.get(gaps.len() / 2).copied().unwrap_or(0.0);
    g.loss_ratio = if received + lost > 0 {
        lost as f64 / (received + lost) as f64
    } else {
        0.0
    };
    g
}

/// From one subscriber's `layer` events in order: the switches (a change of rid on a mid) and
/// the rid each mid is on at the end.
fn layer_history(events: &[(String, String)]) -> (u64, Vec<String>) {
    let mut now: BTreeMap<&str, &str> = BTreeMap::new();
    let mut switches = 0;
    for (mid, rid) in events {
        if let Some(prev) = now.insert(mid, rid) {
            if prev != rid {
                switches += 1;
            }
        }
    }
    (switches, now.into_values().map(str::to_string).collect())
}

impl SimulcastSummary {
    /// Table lines, one per group.
    pub fn write_table(&self, out: &mut String) {
        let title = match (self.simulcast, self.cap_kbps) {
            (true, Some(k)) => format!("simulcast, downlink capped at {k} kbit/s"),
            (true, None) => "simulcast".to_string(),
            (false, Some(k)) => format!("downlink capped at {k} kbit/s"),
            (false, None) => "subscribers".to_string(),
        };
        let _ = writeln!(out, "  {title}");
        for g in self.capped.iter().chain(std::iter::once(&self.uncapped)) {
            let layers = g
                .layers_now
                .iter()
                .map(|(rid, n)| format!("{rid}×{n}"))
                .collect::<Vec<_>>()
                .join(" ");
            let layers = if layers.is_empty() {
                "-".into()
            } else {
                layers
            };
            let _ = writeln!(
                out,
                "    {:<30} switches {:>3}, layers now {layers}, freeze max {:.0} ms (p50 {:.0}), loss {:.3} %",
                g.who,
                g.layer_switches,
                g.freeze_ms_max,
                g.freeze_ms_p50,
                g.loss_ratio * 100.0
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(m, r)| (m.to_string(), r.to_string()))
            .collect()
    }

    #[test]
    fn the_first_layer_is_no_switch_and_the_last_one_counts() {
        let (switches, now) = layer_history(&ev(&[
            ("1", "f"),
            ("2", "f"),
            ("1", "q"),
            ("1", "f"),
            ("2", "f"),
        ]));
        assert_eq!(switches, 2);
        assert_eq!(now, vec!["f".to_string(), "f".to_string()]);
    }

    #[test]
    fn capped_subscribers_are_reported_one_by_one_and_the_rest_together() {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            args: LoadArgs,
        }
        let args = Wrap::parse_from([
            "load",
            "--simulcast",
            "--peers",
            "3",
            "--cap-subscribers",
            "1",
        ])
        .args;
        let sample = |id: &str, capped, events, gaps: Vec<f64>, lost| SubscriberSample {
            id: id.into(),
            capped,
            layer_events: ev(events),
            video_gaps_ms: gaps,
            received: 90,
            lost,
        };
        let s = summarize(
            &args,
            &[
                sample("a", false, &[("1", "f")], vec![40.0], 0),
                sample("b", false, &[("1", "f")], vec![60.0], 0),
                sample("c", true, &[("1", "f"), ("1", "q")], vec![900.0], 10),
            ],
        );
        assert_eq!(s.cap_kbps, Some(400));
        assert_eq!(s.capped.len(), 1);
        let c = &s.capped[0];
        assert_eq!((c.layer_switches, c.freeze_ms_max), (1, 900.0));
        assert_eq!(c.layers_now.get("q"), Some(&1));
        assert!((c.loss_ratio - 0.1).abs() < 1e-9);
        assert_eq!(s.uncapped.subscribers, 2);
        assert_eq!(s.uncapped.layers_now.get("f"), Some(&2));
        assert_eq!(
            (s.uncapped.freeze_ms_max, s.uncapped.loss_ratio),
            (60.0, 0.0)
        );
        let mut table = String::new();
        s.write_table(&mut table);
        assert!(table.contains("capped at 400"), "{table}");
    }
}
