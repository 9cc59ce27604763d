//! `sfu-lite-load` (also run as `sfu-lite load`): drive a server with headless peers and
//! measure it. See `sfu_lite_tools::load`.

use std::process::ExitCode;

use clap::Parser;
use sfu_lite_tools::load::LoadArgs;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "sfu-lite load",
    version,
    about = "Load-test a server with headless peers (loopback only unless --allow-remote)"
)]
struct Cli {
    #[command(flatten)]
    args: LoadArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The tool prints a table: only problems are logged, and webrtc-rs's teardown chatter
    // (packets for endpoints already closed) is not a problem.
    let default_filter = "warn,webrtc=error,webrtc_ice=error,webrtc_dtls=error,webrtc_srtp=error,webrtc_mdns=error,interceptor=error";
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(sfu_lite_tools::load::main(cli.args)),
        Err(e) => {
            eprintln!("sfu-lite load: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
