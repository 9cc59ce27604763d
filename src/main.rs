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
    /// Reads a room password from stdin (one line) and prints its Argon2 hash, for
    /// `password = "..."` in a `[rooms."name"]` table.
    HashPassword,
    /// Prints an access token signed with an HS256 key of `[auth.keys]`.
    Token(TokenArgs),
}

#[derive(Args)]
struct TokenArgs {
    /// The room, or a room-name prefix ending in `*`.
    #[arg(long)]
    room: String,
    /// The display name the token fixes (also its identity, for bans).
    #[arg(long)]
    name: Option<String>,
    /// viewer, participant, presenter or moderator.
    #[arg(long, default_value = "participant")]
    role: sfu_lite::access::Role,
    /// Lifetime: seconds, or with a unit (90s, 30m, 2h, 7d).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: u64,
    /// The key to sign with (its `kid`); needed when several HS256 keys are configured.
    #[arg(long)]
    kid: Option<String>,
    /// The config that holds the key (laid over the embedded default, like `serve`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn parse_ttl(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: expected e.g. 90s, 30m, 2h"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{text:?}: unit must be s, m, h or d")),
    };
    n.checked_mul(scale)
        .filter(|t| *t > 0)
        .ok_or_else(|| format!("{text:?}: out of range"))
}

fn hash_password() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        eprintln!("sfu-lite: cannot read the password from stdin");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        eprintln!("sfu-lite: empty password");
        return ExitCode::from(2);
    }
    match sfu_lite::access::password::hash(password) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sfu-lite: {e}");
            ExitCode::FAILURE
        }
    }
}

fn token(args: TokenArgs) -> ExitCode {
    let config = match Config::load(args.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sfu-lite: bad configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let keys = match sfu_lite::access::Keys::from_config(&config.auth.keys, 0) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("sfu-lite: {e}");
            return ExitCode::from(2);
        }
    };
    let claims = sfu_lite::access::Claims::new(&args.room, args.name, args.role, args.ttl);
    match keys.mint(args.kid.as_deref(), &claims) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sfu-lite: {e}");
            ExitCode::from(2)
        }
    }
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
        Some(Command::HashPassword) => return hash_password(),
        Some(Command::Token(args)) => return token(args),
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
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sfu-lite: cannot install the SIGHUP handler: {e}");
            return ExitCode::FAILURE;
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
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(()) = hangup.recv() => reload(&server, args.config.as_deref()),
        }
    }
    tracing::info!("shutting down");
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// SIGHUP: re-reads the config file and puts its access rules in force; a bad file changes
/// nothing and is reported.
fn reload(server: &sfu_lite::server::RunningServer, path: Option<&std::path::Path>) {
    match Config::load(path, std::env::vars()) {
        Ok(config) => {
            if let Err(e) = server.reload(&config) {
                tracing::warn!(error = %e, "SIGHUP: access rules not reloaded");
            }
        }
        Err(e) => tracing::warn!(error = %e, "SIGHUP: configuration not reloaded"),
    }
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
