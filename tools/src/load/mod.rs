//! `sfu-lite load`: headless peers that join rooms like browsers do, publish, subscribe, and
//! measure the server (join time, first frame, per-packet latency, loss, CPU, memory).
//!
//! - [`args`]: the command line and its checks (loopback-only unless `--allow-remote`).
//! - [`stats`]: pure measurement state (send logs, loss/jitter per stream, percentiles).
//! - [`expect`]: the subscriptions a run must see; a silent one counts as lost, not absent.
//! - [`run`]: the media run (headless peers from [`crate::client`]); [`signal_only`]: Socket.IO
//!   clients only.
//! - [`server_probe`]: the server's CPU, RSS, forwarded packets and NACK counters.
//! - [`loss`]: `--loss`, the lossy link (`netshape`) around the run.
//! - [`report`]: the summary (`--json`) and its table; [`plot`]: the SVG.
//! - [`simulcast`]: `--cap-subscribers` (downlink caps) and the per-subscriber layer figures.

pub mod args;
pub mod expect;
pub mod loss;
pub mod plot;
pub mod report;
pub mod run;
pub mod server_probe;
pub mod signal_only;
pub mod simulcast;
pub mod stats;

use std::process::ExitCode;

pub use args::LoadArgs;

/// Runs `sfu-lite load` to the end: the table on stdout, `--json` and `--plot` files, and an
/// exit code that gates a pipeline (1 when peers failed to join, an expected subscription never
/// started or loss passed `--max-loss`; 2 for bad arguments).
pub async fn main(args: LoadArgs) -> ExitCode {
    if let Err(e) = args.validate() {
        eprintln!("sfu-lite load: {e}");
        return ExitCode::from(2);
    }
    let run_id = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    // Bounded: the ramp, the duration and teardown, with a generous margin.
    let ramp_s = if args.ramp > 0.0 {
        args.peers as f64 / args.ramp
    } else {
        0.0
    };
    let bound = args.duration + std::time::Duration::from_secs_f64(ramp_s + 60.0);
    let run = async {
        if args.signal_only {
            signal_only::run(&args, &run_id).await
        } else {
            run::run(&args, &run_id).await
        }
    };
    let summary = match tokio::time::timeout(bound, run).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            eprintln!("sfu-lite load: {e:#}");
            return ExitCode::FAILURE;
        }
        Err(_) => {
            eprintln!("sfu-lite load: did not finish within {bound:?}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", summary.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&summary).unwrap_or_default();
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("sfu-lite load: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "{} peers, {} rooms, {} publishing",
            summary.peers, summary.rooms, summary.publishers
        );
        if let Err(e) = plot::write_svg(path, &title, &summary.timeline) {
            eprintln!("sfu-lite load: cannot draw {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let mut ok = true;
    if summary.peers_failed > 0 || summary.peers_joined == 0 {
        eprintln!(
            "sfu-lite load: {} of {} peers failed to join",
            summary.peers_failed, summary.peers
        );
        ok = false;
    }
    if summary.subscriptions_started < summary.subscriptions_expected {
        eprintln!(
            "sfu-lite load: {} of {} expected subscriptions never started",
            summary.subscriptions_expected - summary.subscriptions_started,
            summary.subscriptions_expected
        );
        ok = false;
    }
    if summary.loss_ratio > args.max_loss {
        eprintln!(
            "sfu-lite load: loss {:.3} % is above --max-loss {:.3} %",
            summary.loss_ratio * 100.0,
            args.max_loss * 100.0
        );
        ok = false;
    }
    if summary.messages_lost.is_some_and(|n| n > 0)
        || summary.server_alive_after_mass_disconnect == Some(false)
    {
        ok = false;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
