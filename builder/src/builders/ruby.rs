//! Ruby: CRuby 3.4 built for WASI, as npm's `@ruby/3.4-wasm-wasi` ships it (`ruby+stdlib.wasm`,
//! the standard library inside). `prepare` fetches it once (pinned by digest) and patches it
//! into a WAGI reactor ([`interpreter`]); each build starts that interpreter, loads the glue and
//! the function's source, and snapshots it ([`snapshot`]): every instance of the function
//! starts with the interpreter up and the handler defined.

mod interpreter;
mod snapshot;

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmless_api::digest::Sha256Digest;
use wasmless_api::function::{Packaging, Runtime};

use super::toolchain::{self, run};
use super::{BuildError, Builder, Source};

const PACKAGE: &str = "@ruby/3.4-wasm-wasi";
const VERSION: &str = "2.10.1";
/// `ruby+stdlib.wasm` in that package.
const WASM_DIGEST: &str = "sha256:4b814fc9d13505ea5b4c1f3bd3a7cc7ccca137f551196b9b21f0a7caf9cc5878";
const INSTALL: &str = "install npm (the build fetches @ruby/3.4-wasm-wasi itself)";

pub struct Ruby;

/// Part of the build key, and of the patched interpreter's name: a change to the patch or the
/// glue changes it.
const BUILDER_VERSION: &str = "ruby-1";

/// The patched interpreter in the toolchain directory.
fn patched_path() -> PathBuf {
    toolchain::cache_dir("ruby").join(format!(
        "ruby-{VERSION}-{}-{BUILDER_VERSION}.wasm",
        &WASM_DIGEST[7..19]
    ))
}

/// Its instrumented form compiled for `engine`: every build runs that same code, so none
/// compiles it.
fn compiled_path(engine: &wasmtime::Engine) -> PathBuf {
    toolchain::compiled_path(&patched_path(), engine)
}

fn internal(what: &'static str) -> impl Fn(anyhow::Error) -> BuildError {
    move |e| BuildError::Internal(format!("{what}: {e:#}"))
}

/// The instrumented interpreter compiled for `engine`.
fn compile(engine: &wasmtime::Engine, interpreter: &[u8]) -> Result<wasmtime::Module, BuildError> {
    let instrumented =
        snapshot::instrumented(interpreter).map_err(internal("instrumenting ruby.wasm"))?;
    wasmtime::Module::new(engine, instrumented)
        .map_err(|e| BuildError::Internal(format!("compiling ruby.wasm: {e:?}")))
}

impl Builder for Ruby {
    fn version(&self) -> &'static str {
        BUILDER_VERSION
    }

    fn prepare(&self) -> Result<(), BuildError> {
        let engine = wasmtime::Engine::default();
        let (path, compiled) = (patched_path(), compiled_path(&engine));
        if compiled.exists() {
            return Ok(());
        }
        let patched = match std::fs::read(&path) {
            Ok(patched) => patched,
            Err(_) => {
                let dir = toolchain::workdir()?;
                let wasm = fetch(dir.path())?;
                let patched = interpreter::patch(&wasm).map_err(internal("patching ruby.wasm"))?;
                write_whole(&path, &patched)?;
                patched
            }
        };
        let module = compile(&engine, &patched)?;
        let bytes = module
            .serialize()
            .map_err(|e| BuildError::Internal(format!("serializing ruby.wasm: {e:?}")))?;
        write_whole(&compiled, &bytes)
    }

    fn build(&self, source: &Source) -> Result<Vec<u8>, BuildError> {
        toolchain::no_deps(
            source,
            "gems come from RubyGems, which the builder cannot reach",
        )?;
        let (file, function) = toolchain::split_handler(source.handler)?;
        toolchain::identifiers(source.handler, "Ruby", &[file, function])?;
        let code = match source.packaging {
            Packaging::File => source.code.to_vec(),
            Packaging::Zip => {
                let dir = toolchain::workdir()?;
                let path = toolchain::write_source(source, Runtime::Ruby, dir.path())?;
                toolchain::read(&path)?
            }
        };
        let path = patched_path();
        let interpreter = std::fs::read(&path).map_err(|e| BuildError::Toolchain {
            tool: format!("{PACKAGE} {VERSION} ({})", path.display()),
            hint: format!("{e}; {INSTALL}"),
        })?;
        let engine = wasmtime::Engine::default();
        // SAFETY: `prepare` wrote this file with this builder's wasmtime, in the toolchain
        // directory no tenant's build can write; wasmtime refuses one of another version or
        // configuration (then the build compiles its own).
        let cached = unsafe { wasmtime::Module::deserialize_file(&engine, compiled_path(&engine)) };
        let compiled = match cached {
            Ok(module) => module,
            Err(_) => compile(&engine, &interpreter)?,
        };
        snapshot::function(&engine, &interpreter, &compiled, &code, (file, function)).map_err(|e| {
            match e {
                snapshot::SnapshotError::Source(m) => {
                    BuildError::Compile(m.chars().take(toolchain::MAX_MESSAGE).collect())
                }
                snapshot::SnapshotError::Internal(e) => {
                    BuildError::Internal(format!("snapshotting the function: {e:#}"))
                }
            }
        })
    }
}

/// Writes `bytes` to `path` whole or not at all (a build never reads half a file).
fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    wasmless_runtime::files::write_atomic(path, bytes)
        .map_err(|e| BuildError::Internal(format!("cannot write {}: {e}", path.display())))
}

/// `ruby+stdlib.wasm` of the pinned package, checked against its digest.
fn fetch(dir: &Path) -> Result<Vec<u8>, BuildError> {
    let mut npm = Command::new("npm");
    npm.args(["pack", "--silent", &format!("{PACKAGE}@{VERSION}")]);
    run(npm, dir, INSTALL)?;
    let tarball = format!("ruby-3.4-wasm-wasi-{VERSION}.tgz");
    let mut tar = Command::new("tar");
    tar.args(["xzf", &tarball, "package/dist/ruby+stdlib.wasm"]);
    run(tar, dir, "install tar")?;
    let wasm = toolchain::read(&dir.join("package/dist/ruby+stdlib.wasm"))?;
    let digest = Sha256Digest::of(&wasm);
    if digest.as_str() != WASM_DIGEST {
        return Err(BuildError::Internal(format!(
            "{PACKAGE}@{VERSION}'s ruby+stdlib.wasm is {digest}, expected {WASM_DIGEST}"
        )));
    }
    Ok(wasm)
}
