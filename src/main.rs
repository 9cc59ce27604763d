//! The `sfu-lite` binary: `serve` (the default) runs the meeting server; `load` runs the load
//! tool `sfu-lite-load` (package `tools/`, built beside this binary) with the same arguments.

use std::ffi::OsString;
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
    /// Load-test a server with headless peers (loopback only unless --allow-remote); runs
    /// `sfu-lite-load`, see `sfu-lite load --help`.
    #[command(disable_help_flag = true)]
    Load {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
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
    let args = match cli.command {
        Some(Command::Load { args }) => return load(args),
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    sfu_lite::logging::init(
        "info,webrtc=warn,webrtc_ice=warn,webrtc_dtls=warn,webrtc_srtp=warn,webrtc_mdns=warn,interceptor=warn",
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sfu-lite: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(args))
}

/// Replaces this process with `sfu-lite-load` from this binary's directory (where
/// `cargo build --workspace` puts it), so its exit code is the load run's.
fn load(args: Vec<OsString>) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.join("sfu-lite-load")))
        .filter(|p| p.exists());
    let Some(exe) = exe else {
        eprintln!(
            "sfu-lite: the load tool `sfu-lite-load` is not beside this binary; build it with \
             `cargo build --workspace` (with --release for a release build)"
        );
        return ExitCode::from(2);
    };
    let err = std::process::Command::new(&exe).args(args).exec();
    eprintln!("sfu-lite: cannot run {}: {err}", exe.display());
    ExitCode::FAILURE
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
