//! `switchboard`: the server, token minting, CLI call clients and the load generator.

mod clients;
mod engine;
mod interrupts;
mod join;
mod load;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use switchboard_server::config::{prepare_data_dir, Config};

#[derive(Parser)]
#[command(name = "switchboard", version, about = "Switchboard: self-hostable real-time call server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. With no config file it runs on embedded defaults: SQLite in the
    /// data dir and a `demo` service whose credentials are generated once and printed.
    Serve(ServeArgs),
    /// Print an access token (JWT HS256) for a user of a service.
    Token(TokenArgs),
    /// Call a user and print every event as a JSON line; exits when the call ends.
    Call(clients::CallArgs),
    /// Answer a call (wait for one with a token, or take one with a cc_param) and
    /// print every event as a JSON line; exits when the call ends.
    Answer(clients::AnswerArgs),
    /// Join a room and print every event as a JSON line; exits when this participant
    /// leaves (Ctrl-C leaves properly) or the room ends.
    Join(join::JoinArgs),
    /// The call-engine face (seed 004): call one user or several (`--call bob,carol`),
    /// or answer the first call that rings (`--on-ring accept`); prints every
    /// TUICallEvent as a JSON line and exits when the call is over for this user.
    Engine(engine::EngineArgs),
    /// Signaling benchmark: concurrent 1-to-1 calls against a spawned server and a
    /// local app server; prints setup latency, calls/s and RSS per idle client.
    Load(load::LoadArgs),
    /// Callback delivery benchmark: queues N call records in a fresh database (as
    /// after an app-server outage), starts a server on it and times how fast the
    /// backlog reaches a local app server.
    LoadCallbacks(load::BacklogArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML config file (see docs/operations.md).
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// Data dir (database, generated secrets); overrides the config's.
    #[arg(long, env = "SWITCHBOARD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Listen address, e.g. 127.0.0.1:7880; overrides the config's.
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    listen: Option<SocketAddr>,
}

#[derive(clap::Args)]
struct TokenArgs {
    /// TOML config file holding the service (default: the demo service of the data dir).
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// Data dir of the embedded defaults (default: ./data, as `serve`); read only.
    #[arg(long, env = "SWITCHBOARD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Service ID.
    #[arg(long, default_value = clients::DEFAULT_SERVICE)]
    service: String,
    /// User ID.
    #[arg(long)]
    user: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
}

/// The effective config: file or defaults, with command-line overrides and, when
/// there is no service, the demo service.
pub(crate) fn load_config(
    file: Option<&PathBuf>,
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
) -> Result<Config> {
    let mut config = match file {
        Some(path) => Config::load(path).with_context(|| format!("loading {}", path.display()))?,
        None => Config::default(),
    };
    if let Some(d) = data_dir {
        config.data_dir = d;
    }
    if let Some(l) = listen {
        config.listen = l;
    }
    prepare_data_dir(&mut config).context("preparing the data dir")?;
    Ok(config)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Serve(_)) { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or journald gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(async move {
        // The call clients decide what Ctrl-C and SIGTERM do from the start.
        if matches!(
            cli.command,
            Command::Call(_) | Command::Answer(_) | Command::Join(_) | Command::Engine(_)
        ) {
            interrupts::listen();
        }
        match cli.command {
            Command::Serve(a) => serve(a).await.map(|()| 0),
            Command::Token(a) => token(a).map(|()| 0),
            Command::Call(a) => clients::call(a).await.map(clients::Outcome::exit_code),
            Command::Answer(a) => clients::answer(a).await.map(clients::Outcome::exit_code),
            Command::Join(a) => join::join(a).await.map(clients::Outcome::exit_code),
            Command::Engine(a) => engine::engine(a).await.map(clients::Outcome::exit_code),
            Command::Load(a) => load::run(a).await.map(|()| 0),
            Command::LoadCallbacks(a) => load::run_backlog(a).await.map(|()| 0),
        }
    });
    match result {
        Ok(0) => Ok(()),
        // The call ended, but not the way this side meant it (declined by the peer,
        // busy, no answer, network): its disconnected line says which.
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let config = load_config(args.config.as_ref(), args.data_dir, args.listen)?;
    // Every connection is a file descriptor: the common soft limit of 1,024 is far
    // below what one server serves.
    load::raise_fd_limit();
    if config.demo {
        let demo = &config.services[0];
        eprintln!("Switchboard is running on embedded defaults.");
        eprintln!("  data dir:     {}", config.data_dir.display());
        // The secret stays in its owner-only file: the log is no place for it.
        eprintln!(
            "  demo service: id={} api_key={} (api_secret in {})",
            demo.id,
            demo.api_key,
            config.data_dir.join("demo-service.json").display()
        );
        eprintln!("  a token:      switchboard token --data-dir {} --user alice", config.data_dir.display());
    }
    let drain_timeout = Duration::from_secs(config.drain_timeout_secs);
    // Listening from the start: a signal that comes while the server starts or drains
    // is not lost.
    let mut signals = Signals::new();
    let server = switchboard_server::start(config).await?;
    let ws = if server.url().starts_with("https:") { "wss" } else { "ws" };
    eprintln!("  listening on: {} (signaling at {ws}://{}/v1/signal)", server.url(), server.addr);
    if signals.next().await == SignalKind::terminate() {
        drain(&server, drain_timeout, &mut signals).await;
    } else {
        tracing::info!("shutting down");
    }
    server.shutdown().await;
    Ok(())
}

use tokio::signal::unix::SignalKind;

/// SIGTERM and SIGINT (Ctrl-C), each one stream for the whole run.
struct Signals {
    terminate: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        let listen = |kind| tokio::signal::unix::signal(kind).ok();
        Signals { terminate: listen(SignalKind::terminate()), interrupt: listen(SignalKind::interrupt()) }
    }

    /// The next of them to come.
    async fn next(&mut self) -> SignalKind {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            _ = recv(&mut self.terminate) => SignalKind::terminate(),
            _ = recv(&mut self.interrupt) => SignalKind::interrupt(),
        }
    }
}

/// SIGTERM: no new calls or rooms, and a stop once the live ones are over and the
/// callbacks this node holds are delivered (or at `timeout`, or at a second SIGTERM or
/// a Ctrl-C). Callbacks still failing after 10 s stay queued for the next start.
async fn drain(server: &switchboard_server::ServerHandle, timeout: Duration, signals: &mut Signals) {
    server.drain().await;
    eprintln!(
        "  draining: no new calls; stopping when the live ones are over (at most {} s)",
        timeout.as_secs()
    );
    let deadline = tokio::time::Instant::now() + timeout;
    let mut flush_until = None;
    loop {
        if flush_until.is_none() && server.owns_nothing().await {
            tracing::info!("drained: no call or room left; delivering what is queued, then shutting down");
            flush_until = Some(deadline.min(tokio::time::Instant::now() + Duration::from_secs(10)));
        }
        if let Some(until) = flush_until {
            // The last steps written (their callbacks queued), then delivered.
            let written = server.flushed(until.saturating_duration_since(tokio::time::Instant::now())).await;
            let pending = server.store().pending_here().await.unwrap_or(0);
            if !written {
                tracing::warn!("stopping with steps not yet written: the next start closes their calls");
            }
            if pending == 0 || tokio::time::Instant::now() >= until {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!("drain timeout: shutting down with calls still live");
                return;
            }
            _ = signals.next() => return,
        }
    }
}

fn token(args: TokenArgs) -> Result<()> {
    // Reads the service's credentials; creates nothing (only `serve` does): a token
    // signed with fresh credentials the server does not have would be refused.
    let mut config = match &args.config {
        Some(path) => Config::load(path).with_context(|| format!("loading {}", path.display()))?,
        None => Config::default(),
    };
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    switchboard_server::config::load_demo_service(&mut config)
        .context("finding the service to sign the token for")?;
    let Some(service) = config.service(&args.service) else {
        bail!("no service {:?} in this config", args.service);
    };
    if !switchboard_protocol::ids::is_valid_user_id(&args.user) {
        bail!("user ID {:?} must match [A-Za-z0-9_-]{{1,64}}", args.user);
    }
    let now = switchboard_server::server::now_ms() / 1000;
    let claims =
        switchboard_server::auth::Claims::new(&service.id, &args.user, &service.api_key, now, args.ttl);
    println!("{}", switchboard_server::auth::mint_token(&service.api_secret, &claims));
    Ok(())
}
