//! `wasmless`: local all-in-one mode (`up`) and, later, Kubeless's function verbs.

mod up;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wasmless",
    version,
    about = "Kubeless-style functions on WebAssembly"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build and serve every Function manifest in a directory, reloading on change.
    Up(up::UpArgs),
    /// Print the version.
    Version,
}

fn main() -> std::process::ExitCode {
    wasmless_runtime::init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up::run(args),
        Command::Version => {
            println!("wasmless {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
