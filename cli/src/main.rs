//! `wasmless`: local all-in-one mode (`up`) and Kubeless's function verbs, against a cluster
//! (kubeconfig) or a local `wasmless up` (`--local`).

#![forbid(unsafe_code)]

mod archive;
mod call;
mod deploy;
mod describe;
mod logs;
mod ls;
mod output;
mod progress;
mod target;
mod top;
mod trigger;
mod up;

use clap::{CommandFactory, Parser, Subcommand};

/// `wasmless up` serves functions: the same allocator as `wasmless-host` (its comment says why).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Up(Box<up::UpArgs>),
    /// Deploy, call and inspect functions, in a cluster or in a local `wasmless up`.
    #[command(visible_alias = "fn")]
    Function(Box<FunctionArgs>),
    /// Kubeless's triggers in a cluster: `http` (a hostname and path) and `cronjob` (a schedule).
    Trigger(Box<trigger::TriggerArgs>),
    /// Print a shell completion script (e.g. `source <(wasmless completion bash)`).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the version.
    Version,
}

#[derive(clap::Args)]
struct FunctionArgs {
    #[command(flatten)]
    target: target::TargetArgs,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Deploy a new function from a source file and wait until it is ready.
    Deploy(deploy::DeployArgs),
    /// Change a function (only the flags given) and wait until it is ready.
    Update(deploy::UpdateArgs),
    /// Delete a function.
    Delete(NameArg),
    /// List functions.
    #[command(visible_alias = "list")]
    Ls(ls::LsArgs),
    /// Show a function's spec and status.
    Describe(describe::DescribeArgs),
    /// Call a function and print its answer.
    Call(call::CallArgs),
    /// Print what a function wrote to stderr.
    Logs(logs::LogsArgs),
    /// Calls, failures and durations per function and method.
    Top(top::TopArgs),
}

#[derive(clap::Args)]
struct NameArg {
    /// Function name.
    name: String,
}

fn main() -> std::process::ExitCode {
    wasmless_runtime::init_tracing();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up::run(*args),
        Command::Function(args) => function(*args),
        Command::Trigger(args) => trigger::run(*args),
        Command::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "wasmless",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Version => {
            println!("wasmless {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of contexts, most general first, then what to do.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn function(args: FunctionArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // A dry run prints the manifest without contacting anything.
        if let Verb::Deploy(d) = &args.verb
            && d.dryrun
        {
            return deploy::dry_run(d, args.target.namespace.as_deref());
        }
        let target = target::Target::connect(&args.target).await?;
        match args.verb {
            Verb::Deploy(d) => deploy::deploy(&target, d).await,
            Verb::Update(u) => deploy::update(&target, u).await,
            Verb::Delete(n) => {
                let key = target.key(&n.name);
                target.delete(&key).await?;
                println!("function {key} deleted");
                Ok(())
            }
            Verb::Ls(a) => ls::run(&target, a).await,
            Verb::Describe(a) => describe::run(&target, a).await,
            Verb::Call(a) => call::run(&target, a).await,
            Verb::Logs(a) => logs::run(&target, a).await,
            Verb::Top(a) => top::run(&target, a).await,
        }
    })
}
