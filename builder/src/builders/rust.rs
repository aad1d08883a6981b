//! `rust`: a function `pub fn foo(event: Event, context: Context) -> Result<T, E>` in
//! `file.rs` (handler `file.foo`), built with cargo for `wasm32-wasip1` into a WAGI module.
//! The contract lives in a small crate, `wasmless` (`rust/wasmless/lib.rs`), written once into the
//! tenant's build state so it and its dependencies compile once; a tenant's builds share one
//! target directory there (never another tenant's). `deps` are extra `[dependencies]` lines for
//! Cargo.toml. Without a handler, `main.rs` is a whole CGI program (its own `fn main`), built
//! without the glue.

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmless_api::function::Runtime;

use super::toolchain::{self, run, split_handler};
use super::{BuildError, Builder, Source};

const MAIN: &str = include_str!("rust/main.rs");
const CARGO_TOML: &str = include_str!("rust/Cargo.toml");
const CARGO_LOCK: &str = include_str!("rust/Cargo.lock");
const GLUE: [(&str, &str); 2] = [
    ("Cargo.toml", include_str!("rust/wasmless/Cargo.toml")),
    ("lib.rs", include_str!("rust/wasmless/lib.rs")),
];
const TARGET: &str = "wasm32-wasip1";
const INSTALL: &str = "install Rust with rustup and run `rustup target add wasm32-wasip1` (scripts/toolchains.sh does both)";
/// Bumped whenever the glue changes: it names the glue's directory in the cache.
const VERSION: &str = "rust-1";

pub struct Rust;

impl Builder for Rust {
    fn version(&self) -> &'static str {
        VERSION
    }

    fn needs_registry(&self, _deps: &str) -> bool {
        // The glue crate's own dependencies come from crates.io on a tenant's first build.
        true
    }

    fn build(&self, source: &Source) -> Result<Vec<u8>, BuildError> {
        let handler = if Runtime::Rust.is_program(source.handler) {
            None
        } else {
            let (file, func) = split_handler(source.handler)?;
            toolchain::identifiers(source.handler, "Rust", &[file, func])?;
            Some((file, func))
        };
        target_installed()?;
        let cache = toolchain::state_dir("rust");
        let glue = cache.join(VERSION);
        for (name, contents) in GLUE {
            write_if_changed(&glue.join(name), contents)?;
        }

        let dir = toolchain::workdir()?;
        let d = dir.path();
        // A unique package name keeps concurrent builds' outputs apart in the shared target dir.
        let package = format!("function-{}", random_suffix(d));
        let mut manifest = CARGO_TOML
            .replace("WASMLESS_PACKAGE", &package)
            .replace("WASMLESS_GLUE", &glue.to_string_lossy());
        manifest.push_str(source.deps.trim());
        manifest.push('\n');
        toolchain::write(&d.join("Cargo.toml"), manifest.as_bytes())?;
        toolchain::write(&d.join("Cargo.lock"), CARGO_LOCK.as_bytes())?;
        // (a program is main.rs itself)
        if let Some((file, func)) = handler {
            toolchain::write(
                &d.join("main.rs"),
                MAIN.replace("WASMLESS_FILE", file)
                    .replace("WASMLESS_HANDLER", func)
                    .as_bytes(),
            )?;
        }
        // An archive may hold the handler's file alone (checked): `mod` items of main.rs's
        // glue would not find modules beside it.
        toolchain::write_source(source, Runtime::Rust, d)?;

        let target_dir = cache.join("target");
        let mut cargo = Command::new("cargo");
        cargo
            .args(["build", "--release", "--quiet", "--message-format=short"])
            .args(["--target", TARGET])
            .arg("--target-dir")
            .arg(&target_dir)
            .env("CARGO_TERM_COLOR", "never");
        run(cargo, d, INSTALL)?;
        let out = target_dir.join(TARGET).join("release");
        let wasm = toolchain::read(&out.join(format!("{package}.wasm")));
        remove_outputs(&out, &package);
        wasm
    }
}

/// Fails with how to install it when rustup has no `wasm32-wasip1` standard library.
fn target_installed() -> Result<(), BuildError> {
    let missing = || BuildError::Toolchain {
        tool: format!("Rust's {TARGET} target"),
        hint: INSTALL.into(),
    };
    let output = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .map_err(|_| missing())?;
    let libdir = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if output.status.success() && Path::new(&libdir).is_dir() {
        Ok(())
    } else {
        Err(missing())
    }
}

fn write_if_changed(path: &Path, contents: &str) -> Result<(), BuildError> {
    if std::fs::read(path).is_ok_and(|old| old == contents.as_bytes()) {
        return Ok(());
    }
    // Written whole and renamed, so a concurrent build never reads half a file.
    wasmless_runtime::files::write_atomic(path, contents.as_bytes())
        .map_err(|e| BuildError::Compile(format!("cannot write {}: {e}", path.display())))
}

/// The scratch directory's own random name, made into a package name.
fn random_suffix(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

/// The build's files in the shared target directory: only the dependencies are worth keeping.
fn remove_outputs(out: &Path, package: &str) {
    let crate_name = package.replace('-', "_");
    let mut stale: Vec<PathBuf> = vec![
        out.join(format!("{package}.wasm")),
        out.join(format!("{package}.d")),
    ];
    for dir in [out.join("deps"), out.join(".fingerprint")] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            stale.extend(entries.flatten().map(|e| e.path()).filter(|p| {
                p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with(&crate_name) || n.starts_with(package)
                })
            }));
        }
    }
    for path in stale {
        let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
    }
}
