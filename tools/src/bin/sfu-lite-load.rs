//! `sfu-lite-load` (also run as `sfu-lite load`): drive a server with headless peers and
//! measure it. See `sfu_lite_tools::load`.

use std::process::ExitCode;

use clap::Parser;
use sfu_lite_tools::load::LoadArgs;

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
    sfu_lite::logging::init(default_filter);
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(sfu_lite_tools::load::main(cli.args)),
        Err(e) => {
            eprintln!("sfu-lite load: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
