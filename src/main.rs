//! The `sfu-lite` binary: `serve` (the default) runs the meeting server; `load` drives a server
//! with headless peers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sfu_lite::config::Config;

#[derive(Parser)]
#[command(
    name = "sfu-lite",
    version,
    about = "Self-hosted video meetings: Socket.IO signaling and a WebRTC selective forwarding unit in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the meeting server (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Load-test a server with headless peers (loopback only unless --allow-remote).
    Load(sfu_lite::load::LoadArgs),
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// TOML file laid over the embedded default config (see configs/default.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address for HTTP and signaling, overriding server.listen (e.g. 127.0.0.1:8000).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Serve the web client from this directory instead of the embedded copy.
    #[arg(long, value_name = "DIR")]
    static_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The load tool prints a table: only problems are logged, and webrtc-rs's teardown chatter
    // (packets for endpoints already closed) is not a problem.
    let default_filter = match cli.command {
        Some(Command::Load(_)) => "warn,webrtc=error,webrtc_ice=error,webrtc_dtls=error,webrtc_srtp=error,webrtc_mdns=error,interceptor=error",
        _ => "info,webrtc=warn,webrtc_ice=warn,webrtc_dtls=warn,webrtc_srtp=warn,webrtc_mdns=warn,interceptor=warn",
    };
    sfu_lite::logging::init(default_filter);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sfu-lite: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Serve(args)) => runtime.block_on(serve(args)),
        Some(Command::Load(args)) => runtime.block_on(sfu_lite::load::main(args)),
        None => runtime.block_on(serve(cli.serve)),
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let mut config = match Config::load(args.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sfu-lite: bad configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(dir) = args.static_dir {
        config.server.static_dir = dir.display().to_string();
    }
    sfu_lite::server::raise_open_file_limit();
    let stop = shutdown_signal();
    let server = match sfu_lite::server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sfu-lite: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // Printed on stdout (not only logged) so people and scripts see where to go.
    println!("sfu-lite listening on {}", server.url());
    stop.await;
    tracing::info!("shutting down");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// Installs the SIGTERM and SIGINT handlers at once, so a signal sent as soon as the address is
/// printed is not lost to the default action, and returns what resolves on either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
