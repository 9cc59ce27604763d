//! `sfu-lite load`: headless peers that join rooms like browsers do, publish, subscribe, and
//! measure the server (join time, first frame, per-packet latency, loss, CPU, memory).
//!
//! - [`args`]: the command line and its checks (loopback-only unless `--allow-remote`).
//! - [`stats`]: pure measurement state (send logs, loss/jitter per stream, percentiles).
//! - [`report`]: the summary (`--json`) and its table; [`plot`]: the SVG.

pub mod args;
pub mod plot;
pub mod report;
pub mod stats;
