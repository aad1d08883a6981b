//! `c`: a function `int foo(const struct wasmless_event *, const struct wasmless_context *,
//! struct wasmless_reply *)` in `file.c` (handler `file.foo`), built by Debian's clang-16 against
//! wasi-libc into a WAGI module. The contract is `c/wasmless.h`; the glue (`c/main.c`) reads the
//! CGI request and writes the reply. Without a handler, `main.c` is a whole CGI program, built
//! without the glue. Standard library only: `deps` are refused.

use std::process::Command;

use wasmless_api::function::{Packaging, Runtime};

use super::toolchain::{self, run, split_handler};
use super::{BuildError, Builder, Source};

const MAIN: &str = include_str!("c/main.c");
const HEADER: &str = include_str!("c/wasmless.h");
const INSTALL: &str = "install Debian's clang-16 lld-16 wasi-libc libclang-rt-16-dev-wasm32 (scripts/toolchains.sh does)";

pub struct C;

impl Builder for C {
    fn version(&self) -> &'static str {
        "c-1"
    }

    fn build(&self, source: &Source) -> Result<Vec<u8>, BuildError> {
        let func = if Runtime::C.is_program(source.handler) {
            None
        } else {
            let (_, func) = split_handler(source.handler)?;
            toolchain::identifiers(source.handler, "C", &[func])?;
            Some(func)
        };
        toolchain::no_deps(source, "C functions build with wasi-libc only")?;
        let dir = toolchain::workdir()?;
        let d = dir.path();
        if func.is_some() {
            toolchain::write(&d.join("wasmless.h"), HEADER.as_bytes())?;
            toolchain::write(&d.join("wasmless_main.c"), MAIN.as_bytes())?;
        }
        // An archive's files go to src/: its `.c` files at the root are compiled with the
        // handler's, and `#include "x.h"` finds headers beside them.
        let src = match source.packaging {
            Packaging::File => d.to_path_buf(),
            Packaging::Zip => d.join("src"),
        };
        let user = toolchain::write_source(source, Runtime::C, &src)?;
        let mut sources = Vec::new();
        if source.packaging == Packaging::Zip {
            let entries = std::fs::read_dir(&src).map_err(|e| {
                BuildError::Compile(format!("cannot list the archive's files: {e}"))
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path != user && path.extension().is_some_and(|e| e == "c") && path.is_file() {
                    sources.push(path);
                }
            }
            sources.sort();
        }
        // Relative, so that compiler messages name the files as the user does.
        let relative = |p: &std::path::Path| p.strip_prefix(d).unwrap_or(p).to_path_buf();

        let mut clang = Command::new("clang-16");
        clang
            .args([
                "--target=wasm32-wasi",
                "--sysroot=/usr",
                "-Oz",
                "-fuse-ld=lld",
            ])
            .args(["-Wl,--strip-all", "-fno-color-diagnostics", "-I."])
            // A crashing compiler would write reproducers (the preprocessed source) and a
            // long report: the message is enough.
            .arg("-fno-crash-diagnostics");
        if let Some(func) = func {
            clang
                .arg(format!("-DWASMLESS_HANDLER={func}"))
                .arg("wasmless_main.c");
        }
        clang
            .arg(relative(&user))
            .args(sources.iter().map(|p| relative(p)))
            .args(["-o", "function.wasm"]);
        run(clang, d, INSTALL)?;
        toolchain::read(&d.join("function.wasm"))
    }
}
