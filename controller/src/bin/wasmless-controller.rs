//! `wasmless-controller`: turns Function manifests into artifacts.
//!
//! This build has the `build` command (manifest file → artifacts in a store, one JSON line per
//! function). The Kubernetes reconciler, the artifact server and the Metacontroller webhook arrive
//! with their issues.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wasmless_controller::{DirStore, Pipeline, manifest};
use wasmless_runtime::EngineConfig;

#[derive(Parser)]
#[command(
    name = "wasmless-controller",
    version,
    about = "Builds wasmless Functions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the Function CustomResourceDefinition (YAML).
    Crd,
    /// Build every Function in a manifest file into the artifact store.
    Build {
        /// Manifest file (YAML, several documents allowed).
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// Artifact store directory.
        #[arg(long, env = "WASMLESS_STORE", default_value = "artifacts")]
        store: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    wasmless_runtime::init_tracing();
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", wasmless_controller::crd::yaml());
            Ok(())
        }
        Command::Build { file, store } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let manifests = manifest::parse(&text).with_context(|| file.display().to_string())?;
            let engine = EngineConfig::default().build()?;
            let pipeline = Pipeline::new(engine, DirStore::new(store));
            for m in &manifests {
                let artifact = pipeline
                    .build(&m.key(), &m.spec, file.parent())
                    .with_context(|| format!("function {}", m.key()))?;
                let line =
                    serde_json::json!({ "function": m.key().to_string(), "artifact": artifact });
                println!("{line}");
            }
            Ok(())
        }
    }
}
