//! `sfu-lite-netshape`: the shaped-link helper (`sfu_lite_tools::netshape`) for tests that are
//! not written in Rust (the browser tests). It reads one command per line on stdin and answers
//! each with one line, `ok [n]` or `error: ...`; when stdin closes, every rule it installed is
//! removed. Root in a network namespace of its own, like the library.
//!
//! ```text
//! cap-to PORT KBIT [Q]   cap UDP packets to PORT      -> ok N  (N names the cap)
//! cap-from PORT KBIT [Q] cap UDP packets from PORT    -> ok N
//!                        (Q: drop what does not fit a queue of Q packets)
//! rate N KBIT          change cap N                 -> ok
//! lift N               lift cap N                   -> ok
//! lose P [PORT]        drop P % of UDP arriving (to PORT) -> ok
//! dark-except PORT...  drop all UDP not from/to PORTs -> ok N  (N names the block)
//! undark N             lift block N                 -> ok
//! ```

use std::io::{BufRead, Write};

use sfu_lite_tools::netshape::{Block, Cap, ShapeError, Shaper};

fn main() {
    let mut shaper = Shaper::new();
    let mut caps: Vec<Cap> = Vec::new();
    let mut blocks: Vec<Option<Block>> = Vec::new();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let answer = match run(&mut shaper, &mut caps, &mut blocks, &line) {
            Ok(Some(n)) => format!("ok {n}"),
            Ok(None) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        };
        if writeln!(out, "{answer}").and_then(|_| out.flush()).is_err() {
            break;
        }
    }
    // Dropping the shaper removes its rules.
}

#[derive(Debug, thiserror::Error)]
enum CommandError {
    #[error("{0}")]
    Shape(#[from] ShapeError),
    #[error("usage: {0}")]
    Usage(&'static str),
}

fn run(
    shaper: &mut Shaper,
    caps: &mut Vec<Cap>,
    blocks: &mut Vec<Option<Block>>,
    line: &str,
) -> Result<Option<usize>, CommandError> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let num = |i: usize, usage| -> Result<u32, CommandError> {
        words
            .get(i)
            .and_then(|w| w.parse().ok())
            .ok_or(CommandError::Usage(usage))
    };
    let cap_of = |n: u32, usage| {
        caps.get(n as usize)
            .copied()
            .ok_or(CommandError::Usage(usage))
    };
    match words.first().copied() {
        Some(cmd @ ("cap-to" | "cap-from")) => {
            const USAGE: &str = "cap-to|cap-from PORT KBIT [QUEUE_PACKETS]";
            let port = u16::try_from(num(1, USAGE)?).map_err(|_| CommandError::Usage(USAGE))?;
            let kbit = num(2, USAGE)?;
            let queue = match words.get(3) {
                Some(_) => Some(num(3, USAGE)?),
                None => None,
            };
            let cap = match (cmd == "cap-to", queue) {
                (true, None) => shaper.cap_to_port(port, kbit)?,
                (true, Some(q)) => shaper.cap_to_port_dropping(port, kbit, q)?,
                (false, None) => shaper.cap_from_port(port, kbit)?,
                (false, Some(q)) => shaper.cap_from_port_dropping(port, kbit, q)?,
            };
            caps.push(cap);
            Ok(Some(caps.len() - 1))
        }
        Some("rate") => {
            const USAGE: &str = "rate N KBIT";
            let cap = cap_of(num(1, USAGE)?, USAGE)?;
            shaper.set_rate(cap, num(2, USAGE)?)?;
            Ok(None)
        }
        Some("lift") => {
            const USAGE: &str = "lift N";
            let cap = cap_of(num(1, USAGE)?, USAGE)?;
            shaper.lift(cap)?;
            Ok(None)
        }
        Some("lose") => {
            const USAGE: &str = "lose P [PORT]";
            let p = u8::try_from(num(1, USAGE)?).map_err(|_| CommandError::Usage(USAGE))?;
            let port = match words.get(2) {
                Some(w) => Some(w.parse().map_err(|_| CommandError::Usage(USAGE))?),
                None => None,
            };
            shaper.lose_incoming(p, port)?;
            Ok(None)
        }
        Some("dark-except") => {
            const USAGE: &str = "dark-except PORT...";
            let ports = words[1..]
                .iter()
                .map(|w| w.parse::<u16>().map_err(|_| CommandError::Usage(USAGE)))
                .collect::<Result<Vec<_>, _>>()?;
            if ports.is_empty() {
                return Err(CommandError::Usage(USAGE));
            }
            blocks.push(Some(shaper.block_udp_except(&ports)?));
            Ok(Some(blocks.len() - 1))
        }
        Some("undark") => {
            const USAGE: &str = "undark N";
            let block = blocks
                .get_mut(num(1, USAGE)? as usize)
                .and_then(Option::take)
                .ok_or(CommandError::Usage(USAGE))?;
            shaper.unblock(block)?;
            Ok(None)
        }
        _ => Err(CommandError::Usage(
            "cap-to | cap-from | rate | lift | lose | dark-except | undark (see the source)",
        )),
    }
}
