//! Imperfect links on loopback, for the tests and the load tool: "this port's traffic is capped
//! at R kbit/s", "P % of the UDP packets arriving are lost", "P % of UDP sends are refused".
//!
//! This kernel has no netem, so caps are `tc` htb classes on `lo` selected by u32 filters on
//! the UDP source port, loss is nftables `numgen random` drops, and a blocked port (a network
//! gone dark, then back) drops everything from or to it: on the *input* hook a drop
//! is silent (real loss), on the *output* hook `sendto` fails with EPERM. Needs root, and
//! changes the whole network namespace: run it in a namespace of its own
//! (`unshare --net`), one shaping test per test binary. Everything installed is removed when
//! the [`Shaper`] is dropped.

use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    #[error("cannot run {tool}: {source}")]
    Spawn {
        tool: &'static str,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
}

/// The rate of the default class: anything not capped passes as if unshaped.
const UNCAPPED: &str = "10gbit";
/// Bursts of the uncapped classes: left to tc, a 10 Gbit/s class gets a burst of 0 bytes.
const UNCAPPED_BURST: &str = "1m";
const DEV: &str = "lo";

/// A blocked set of ports, to unblock them again.
#[derive(Debug, PartialEq, Eq)]
pub struct Block(String);

/// A capped port's class, to lift the cap again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap(u16);

/// The shaping rules installed on `lo`; removed on drop.
#[derive(Debug, Default)]
pub struct Shaper {
    htb: bool,
    next_class: u16,
    nft_table: Option<String>,
    /// One nftables table per [`Block`], so each can be lifted alone.
    blocks: Vec<String>,
}

impl Shaper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Caps UDP packets *from* `port` at `kbit` kbit/s: for a server socket that carries one
    /// subscriber connection, that subscriber's downlink. A sender at a higher rate sees its
    /// socket buffer fill and its sends block, as behind a slow link.
    pub fn cap_from_port(&mut self, port: u16, kbit: u32) -> Result<Cap, ShapeError> {
        self.cap("sport", port, kbit)
    }

    /// Caps UDP packets *to* `port` at `kbit` kbit/s: the downlink of a client (a browser)
    /// whose socket has that port, when the server sends every connection from one port.
    pub fn cap_to_port(&mut self, port: u16, kbit: u32) -> Result<Cap, ShapeError> {
        self.cap("dport", port, kbit)
    }

    fn cap(&mut self, field: &str, port: u16, kbit: u32) -> Result<Cap, ShapeError> {
        self.ensure_htb()?;
        self.next_class += 1;
        let class = 10 + self.next_class;
        let id = format!("1:{class}");
        let rate = format!("{kbit}kbit");
        tc(&[
            "class", "add", "dev", DEV, "parent", "1:", "classid", &id, "htb", "rate", &rate,
            "ceil", &rate,
        ])?;
        let port = port.to_string();
        tc(&[
            "filter", "add", "dev", DEV, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
            "match", "ip", "protocol", "17", "0xff", "match", "ip", field, &port, "0xffff",
            "flowid", &id,
        ])?;
        Ok(Cap(class))
    }

    /// Caps UDP packets from `port` at `kbit` kbit/s behind a queue of only `packets`
    /// packets: what does not fit is dropped silently, as at a real bottleneck, instead of
    /// filling the sender's socket buffer (the receiver sees loss, the sender's estimate can
    /// react to it).
    pub fn cap_from_port_dropping(
        &mut self,
        port: u16,
        kbit: u32,
        packets: u32,
    ) -> Result<Cap, ShapeError> {
        let cap = self.cap_from_port(port, kbit)?;
        self.short_queue(cap, packets)
    }

    /// Caps UDP packets *to* `port` at `kbit` kbit/s behind a queue of `packets` packets: one
    /// client's downlink when the server sends every connection from one socket. The short
    /// queue matters there: a long one would hold that socket's send buffer and slow every
    /// other subscriber down with the capped one.
    pub fn cap_to_port_dropping(
        &mut self,
        port: u16,
        kbit: u32,
        packets: u32,
    ) -> Result<Cap, ShapeError> {
        let cap = self.cap_to_port(port, kbit)?;
        self.short_queue(cap, packets)
    }

    fn short_queue(&mut self, cap: Cap, packets: u32) -> Result<Cap, ShapeError> {
        let parent = format!("1:{}", cap.0);
        let handle = format!("{}:", cap.0);
        tc(&[
            "qdisc",
            "add",
            "dev",
            DEV,
            "parent",
            &parent,
            "handle",
            &handle,
            "pfifo",
            "limit",
            &packets.to_string(),
        ])?;
        Ok(cap)
    }

    /// Lifts a cap: its class runs at full speed again, so what is queued drains at once
    /// instead of being dropped.
    pub fn lift(&mut self, cap: Cap) -> Result<(), ShapeError> {
        self.change(cap, UNCAPPED, UNCAPPED_BURST)
    }

    /// Changes a cap to `kbit` kbit/s: a link that gets better (or worse) without the burst of
    /// a lifted one, whose backlog arrives all at once.
    pub fn set_rate(&mut self, cap: Cap, kbit: u32) -> Result<(), ShapeError> {
        self.change(cap, &format!("{kbit}kbit"), "64k")
    }

    fn change(&mut self, cap: Cap, rate: &str, burst: &str) -> Result<(), ShapeError> {
        let id = format!("1:{}", cap.0);
        tc(&[
            "class", "change", "dev", DEV, "parent", "1:", "classid", &id, "htb", "rate", rate,
            "ceil", rate, "burst", burst, "cburst", burst,
        ])
    }

    /// Silently drops `percent` % of the UDP packets arriving (to `port` only, if given).
    pub fn lose_incoming(&mut self, percent: u8, port: Option<u16>) -> Result<(), ShapeError> {
        self.nft_drop("input", percent, port.map(|p| format!("udp dport {p}")))
    }

    /// Silently drops `percent` % of the UDP packets to `port` and, independently, `percent` %
    /// of those from it: on loopback both directions pass the input hook, so a server's media
    /// port loses that share each way, as behind a lossy link, with no error to either side.
    pub fn lose_both_ways(&mut self, percent: u8, port: u16) -> Result<(), ShapeError> {
        self.nft_drop("input", percent, Some(format!("udp dport {port}")))?;
        self.nft_drop("input", percent, Some(format!("udp sport {port}")))
    }

    /// Makes `percent` % of UDP sends fail (`sendto` returns EPERM), as a local firewall does;
    /// only sends from source ports `lo..=hi`, if given.
    pub fn refuse_sends(
        &mut self,
        percent: u8,
        from_ports: Option<(u16, u16)>,
    ) -> Result<(), ShapeError> {
        let matching = from_ports.map(|(lo, hi)| format!("udp sport {lo}-{hi}"));
        self.nft_drop("output", percent, matching)
    }

    /// Silently drops every UDP packet from or to any of `ports` (input hook: the sender sees
    /// no error), until [`Shaper::unblock`]: a participant whose network goes dark. On loopback
    /// both directions pass the input hook, so this cuts them both.
    pub fn block_ports(&mut self, ports: &[u16]) -> Result<Block, ShapeError> {
        let set = port_set(ports);
        self.install_block(&[
            format!("meta l4proto udp udp sport {{ {set} }} drop"),
            format!("meta l4proto udp udp dport {{ {set} }} drop"),
        ])
    }

    /// Silently drops every UDP packet that is neither from nor to any of `ports`, until
    /// [`Shaper::unblock`]: everyone else's network goes dark, whatever ports they open
    /// meanwhile (a browser's ICE restart gathers new ones).
    pub fn block_udp_except(&mut self, ports: &[u16]) -> Result<Block, ShapeError> {
        let set = port_set(ports);
        self.install_block(&[format!(
            "meta l4proto udp udp sport != {{ {set} }} udp dport != {{ {set} }} drop"
        )])
    }

    /// A table of its own (unique in the namespace: tests of one binary may block at the same
    /// time) with `rules` on the input hook.
    fn install_block(&mut self, rules: &[String]) -> Result<Block, ShapeError> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let table = format!("sfu_block_{}_{n}", std::process::id());
        nft(&format!("add table inet {table}"))?;
        self.blocks.push(table.clone());
        nft(&format!(
            "add chain inet {table} input {{ type filter hook input priority -10 ; }}"
        ))?;
        for rule in rules {
            nft(&format!("add rule inet {table} input {rule}"))?;
        }
        Ok(Block(table))
    }

    /// Lifts a [`Shaper::block_ports`] or [`Shaper::block_udp_except`]: the packets pass again.
    pub fn unblock(&mut self, block: Block) -> Result<(), ShapeError> {
        self.blocks.retain(|t| *t != block.0);
        nft(&format!("delete table inet {}", block.0))
    }

    fn ensure_htb(&mut self) -> Result<(), ShapeError> {
        if self.htb {
            return Ok(());
        }
        tc(&[
            "qdisc", "add", "dev", DEV, "root", "handle", "1:", "htb", "default", "10",
        ])?;
        self.htb = true;
        tc(&[
            "class",
            "add",
            "dev",
            DEV,
            "parent",
            "1:",
            "classid",
            "1:10",
            "htb",
            "rate",
            UNCAPPED,
            "burst",
            UNCAPPED_BURST,
            "cburst",
            UNCAPPED_BURST,
        ])
    }

    fn nft_drop(
        &mut self,
        hook: &str,
        percent: u8,
        matching: Option<String>,
    ) -> Result<(), ShapeError> {
        let table = match &self.nft_table {
            Some(t) => t.clone(),
            None => {
                let t = format!("sfu_shape_{}", std::process::id());
                nft(&format!("add table inet {t}"))?;
                self.nft_table = Some(t.clone());
                t
            }
        };
        nft(&format!(
            "add chain inet {table} {hook} {{ type filter hook {hook} priority 0 ; }}"
        ))?;
        nft(&format!(
            "add rule inet {table} {hook} meta l4proto udp {} numgen random mod 100 < {percent} drop",
            matching.unwrap_or_default()
        ))
    }
}

impl Drop for Shaper {
    fn drop(&mut self) {
        if self.htb {
            let _ = tc(&["qdisc", "del", "dev", DEV, "root"]);
        }
        if let Some(t) = self.nft_table.take() {
            let _ = nft(&format!("delete table inet {t}"));
        }
        for t in self.blocks.drain(..) {
            let _ = nft(&format!("delete table inet {t}"));
        }
    }
}

fn tc(args: &[&str]) -> Result<(), ShapeError> {
    run("tc", args.iter().map(|s| s.to_string()).collect())
}

/// `ports` as the elements of an nftables set.
fn port_set(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(" , ")
}

fn nft(rule: &str) -> Result<(), ShapeError> {
    run("nft", rule.split_whitespace().map(str::to_string).collect())
}

fn run(tool: &'static str, args: Vec<String>) -> Result<(), ShapeError> {
    let out = Command::new(tool)
        .args(&args)
        .output()
        .map_err(|source| ShapeError::Spawn { tool, source })?;
    if out.status.success() {
        return Ok(());
    }
    Err(ShapeError::Failed {
        command: format!("{tool} {}", args.join(" ")),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}
