//! Builders whose toolchain is driven by a script shipped in the binary (`nodejs/build.sh`):
//! the script and its files are written to a scratch directory with the user's source, and run
//! as `build.sh <src> <handler> <out.wasm> [deps file]`. `build.sh --prepare` installs its pinned
//! toolchain once into `~/.cache/wasmless/toolchains/` (read-only to tenants' builds).

use std::process::Command;

use wasmless_api::function::{Packaging, Runtime};

use super::toolchain::{self, run};
use super::{BuildError, Builder, Source};

pub struct Script {
    /// The runtime (its name is its directory in a tenant's build state).
    pub runtime: Runtime,
    pub version: &'static str,
    /// Files written next to `build.sh` (and `build.sh` itself).
    pub files: &'static [(&'static str, &'static str)],
    /// Name of the dependency file the script takes (`package.json`).
    pub deps_file: &'static str,
    pub install: &'static str,
}

impl Builder for Script {
    fn version(&self) -> &'static str {
        self.version
    }

    fn prepare(&self) -> Result<(), BuildError> {
        let dir = toolchain::workdir()?;
        let d = dir.path();
        for (name, contents) in self.files {
            toolchain::write(&d.join(name), contents.as_bytes())?;
        }
        let mut command = Command::new("bash");
        command.arg(d.join("build.sh")).arg("--prepare");
        run(command, d, self.install)
    }

    fn needs_registry(&self, deps: &str) -> bool {
        !deps.trim().is_empty()
    }

    fn build(&self, source: &Source) -> Result<Vec<u8>, BuildError> {
        let dir = toolchain::workdir()?;
        let d = dir.path();
        for (name, contents) in self.files {
            toolchain::write(&d.join(name), contents.as_bytes())?;
        }
        let src = toolchain::write_source(source, self.runtime, &d.join("src"))?;
        let mut command = Command::new("bash");
        command
            .arg(d.join("build.sh"))
            .arg(&src)
            .arg(source.handler.trim())
            .arg(d.join("function.wasm"));
        if source.packaging == Packaging::Zip {
            // The files beside the handler's: build.sh copies them beside it.
            command.env("WASMLESS_SRC_DIR", d.join("src"));
        }
        if !source.deps.trim().is_empty() {
            let deps = d.join(self.deps_file);
            toolchain::write(&deps, source.deps.as_bytes())?;
            command.arg(deps);
        }
        // A tenant's dependencies are installed into its own state, never the shared toolchain.
        command.env(
            "WASMLESS_DEPS_DIR",
            toolchain::state_dir(self.runtime.name()).join("deps"),
        );
        run(command, d, self.install)?;
        toolchain::read(&d.join("function.wasm"))
    }
}

pub const NODEJS: Script = Script {
    runtime: Runtime::Nodejs,
    version: "nodejs-1",
    files: &[
        ("build.sh", include_str!("nodejs/build.sh")),
        ("glue.js", include_str!("nodejs/glue.js")),
        ("componentize.mjs", include_str!("nodejs/componentize.mjs")),
        (
            "toolchain.package.json",
            include_str!("nodejs/toolchain.package.json"),
        ),
        (
            "toolchain.package-lock.json",
            include_str!("nodejs/toolchain.package-lock.json"),
        ),
    ],
    deps_file: "package.json",
    install: "install Node.js 18+ and npm (the build installs componentize-js itself)",
};
