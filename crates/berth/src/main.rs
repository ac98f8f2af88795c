//! `berth`: the Berth server and the command-line client in one binary.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

mod cli;

/// jemalloc gives freed memory back where glibc's malloc keeps it pinned
/// between live allocations: a server holding 100,000 tasks after a burst
/// of launches sits about 30 MiB lower (docs/decisions.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // Parsing first means usage errors exit with clap's code 2.
    let cli = cli::Cli::parse();
    init_logging(cli.default_log_filter());
    match cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(cli::exit_status(&err))
        }
    }
}

/// Logs go to stderr so that stdout stays the command's output.
fn init_logging(default: &str) {
    let filter = match std::env::var("BERTH_LOG") {
        Ok(spec) => EnvFilter::try_new(&spec).unwrap_or_else(|err| {
            eprintln!("warning: ignoring BERTH_LOG={spec:?}: {err}");
            EnvFilter::new(default)
        }),
        Err(_) => EnvFilter::new(default),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
