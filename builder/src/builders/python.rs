//! Python: one interpreter for every function. `prepare` builds it once with componentize-py
//! (`python/build.sh --prepare`): CPython with the standard library imported and the glue
//! (`python/wasmless_app.py`), a wasi:http component that imports a function's module from its
//! files at `/kubeless/function.zip`. A build zips the function's files (its module, the files
//! beside it, its requirements as pure-Python wheels), checks that its handler imports
//! ([`check`]), and yields the interpreter with the files appended ([`wasmless_api::files`]):
//! hosts load the interpreter's code once, however many Python functions they serve.

mod check;

use std::path::PathBuf;
use std::process::Command;

use wasmless_api::function::{Packaging, Runtime};

use super::toolchain::{self, run};
use super::{BuildError, Builder, Source};

pub struct Python;

/// Part of the build key: a change to the glue or the build changes it.
const BUILDER_VERSION: &str = "python-2";
const INSTALL: &str =
    "install Python 3 with venv and pip (the build installs componentize-py itself)";

/// The files `build.sh` runs with; all of them make the interpreter.
const FILES: &[(&str, &str)] = &[
    ("build.sh", include_str!("python/build.sh")),
    ("function.wit", include_str!("python/function.wit")),
    ("wasmless_app.py", include_str!("python/wasmless_app.py")),
    ("wasmless_glue.py", include_str!("python/wasmless_glue.py")),
    (
        "wasmless_stdlib.py",
        include_str!("python/wasmless_stdlib.py"),
    ),
];

/// The interpreter in the toolchain directory, named by what makes it: new glue, a new one.
fn interpreter_path() -> PathBuf {
    let mut made = Vec::new();
    for (name, contents) in FILES {
        made.extend_from_slice(name.as_bytes());
        made.extend_from_slice(contents.as_bytes());
    }
    let digest = wasmless_api::digest::Sha256Digest::of(&made);
    toolchain::cache_dir("python").join(format!("interpreter-{}.wasm", &digest.as_str()[7..23]))
}

fn write_files(dir: &std::path::Path) -> Result<(), BuildError> {
    for (name, contents) in FILES {
        toolchain::write(&dir.join(name), contents.as_bytes())?;
    }
    Ok(())
}

impl Builder for Python {
    fn version(&self) -> &'static str {
        BUILDER_VERSION
    }

    fn prepare(&self) -> Result<(), BuildError> {
        let engine = check::engine();
        // Its compiled form, for the build's check.
        let interpreter = interpreter_path();
        let compiled = toolchain::compiled_path(&interpreter, &engine);
        if compiled.exists() {
            return Ok(());
        }
        let dir = toolchain::workdir()?;
        write_files(dir.path())?;
        let mut command = Command::new("bash");
        command
            .arg(dir.path().join("build.sh"))
            .arg("--prepare")
            .arg(&interpreter);
        run(command, dir.path(), INSTALL)?;
        let wasm = toolchain::read(&interpreter)?;
        let bytes = engine
            .precompile_component(&wasm)
            .map_err(|e| BuildError::Internal(format!("compiling the interpreter: {e:?}")))?;
        wasmless_runtime::files::write_atomic(&compiled, &bytes)
            .map_err(|e| BuildError::Internal(format!("cannot write {}: {e}", compiled.display())))
    }

    fn needs_registry(&self, deps: &str) -> bool {
        !deps.trim().is_empty()
    }

    fn build(&self, source: &Source) -> Result<Vec<u8>, BuildError> {
        let dir = toolchain::workdir()?;
        let d = dir.path();
        write_files(d)?;
        let src = toolchain::write_source(source, Runtime::Python, &d.join("src"))?;
        let zip = d.join("function.zip");
        let mut command = Command::new("bash");
        command
            .arg(d.join("build.sh"))
            .arg(&src)
            .arg(source.handler.trim())
            .arg(&zip);
        if source.packaging == Packaging::Zip {
            // The files beside the handler's: build.sh zips them with it.
            command.env("WASMLESS_SRC_DIR", d.join("src"));
        }
        if !source.deps.trim().is_empty() {
            let deps = d.join("requirements.txt");
            toolchain::write(&deps, source.deps.as_bytes())?;
            command.arg(deps);
        }
        // A tenant's dependencies are installed into its own state, never the shared toolchain.
        command.env(
            "WASMLESS_DEPS_DIR",
            toolchain::state_dir(Runtime::Python.name()).join("deps"),
        );
        run(command, d, INSTALL)?;
        let files = toolchain::read(&zip)?;
        let interpreter_file = interpreter_path();
        let interpreter = std::fs::read(&interpreter_file).map_err(|e| BuildError::Toolchain {
            tool: format!("the Python interpreter ({})", interpreter_file.display()),
            hint: format!("{e}; {INSTALL}"),
        })?;
        check::handler(
            &interpreter_file,
            &interpreter,
            &files,
            source.handler.trim(),
        )?;
        Ok(wasmless_api::files::append(&interpreter, &files))
    }
}
