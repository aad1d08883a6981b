//! `go`: a Kubeless Go function (`func Foo(event functions.Event, context functions.Context)
//! (string, error)` in `package kubeless`), built with Go's own `GOOS=wasip1 GOARCH=wasm` into a
//! WAGI reactor (`runtime/src/abi/reactor.rs`: Go's runtime starts once per instance, and warm
//! instances answer many requests). Generated glue (`go/main.go`) turns the CGI request into
//! Kubeless's event and context; `github.com/kubeless/kubeless/pkg/functions` is provided
//! (`go/functions.go`). `deps` are a go.mod's require lines, fetched from the Go module proxy
//! into the tenant's own module cache (checked against the checksum database, through the
//! proxy). Without a handler, the source is a `package main` CGI program: built
//! as is into a WAGI command (Go's runtime starts for each request).

use std::path::Path;
use std::process::Command;

use wasmless_api::function::{Packaging, Runtime};
use wasmless_api::validate::go_requires;

use super::toolchain::{self, run, split_handler};
use super::{BuildError, Builder, Source};

const MAIN: &str = include_str!("go/main.go");
const FUNCTIONS: &str = include_str!("go/functions.go");
const HELLO: &str = "package kubeless\n\nimport \"github.com/kubeless/kubeless/pkg/functions\"\n\nfunc Hello(event functions.Event, context functions.Context) (string, error) {\n\treturn \"hello\", nil\n}\n";
const INSTALL: &str = "install Go 1.24 or newer (scripts/toolchains.sh)";
/// Where `deps` come from (the go command's default, without its `direct` fallback to version
/// control: a build reaches TCP port 443 only).
const PROXY: &str = "https://proxy.golang.org";

pub struct Go;

impl Builder for Go {
    fn version(&self) -> &'static str {
        "go-2"
    }

    /// With a shared `GOCACHE` (the builder image's, under the toolchains), compiles the
    /// standard library for wasip1 into it once, and a hello reactor with the glue's imports:
    /// tenants' builds only read it. Without one, each tenant's builds keep a cache of their
    /// own, and there is nothing to share.
    fn prepare(&self) -> Result<(), BuildError> {
        if std::env::var_os("GOCACHE").is_none() {
            return Ok(());
        }
        let stamp = toolchain::cache_dir("go").join(".std-wasip1-reactor");
        if stamp.exists() {
            return Ok(());
        }
        let dir = toolchain::workdir()?;
        let mut go = Command::new("go");
        go.args(["build", "std"]);
        wasip1(&mut go);
        run(go, dir.path(), INSTALL)?;
        self.build(&Source {
            code: HELLO.as_bytes(),
            packaging: Packaging::File,
            handler: "handler.Hello",
            deps: "",
        })?;
        toolchain::write(&stamp, b"")
    }

    fn needs_registry(&self, deps: &str) -> bool {
        !deps.trim().is_empty()
    }

    fn build(&self, source: &Source) -> Result<Vec<u8>, BuildError> {
        let requires = go_requires(source.deps).map_err(BuildError::Compile)?;
        if Runtime::Go.is_program(source.handler) {
            return program(source, &requires);
        }
        let (_, func) = split_handler(source.handler)?;
        let dir = toolchain::workdir()?;
        let d = dir.path();
        let kubeless = "require github.com/kubeless/kubeless v0.0.0\n\nreplace github.com/kubeless/kubeless => ./kubeless\n";
        toolchain::write(&d.join("go.mod"), go_mod(kubeless, &requires).as_bytes())?;
        toolchain::write(
            &d.join("kubeless/go.mod"),
            b"module github.com/kubeless/kubeless\n\ngo 1.21\n",
        )?;
        toolchain::write(
            &d.join("kubeless/pkg/functions/functions.go"),
            FUNCTIONS.as_bytes(),
        )?;
        toolchain::write(
            &d.join("main.go"),
            MAIN.replace("WASMLESS_HANDLER", func).as_bytes(),
        )?;
        // An archive's files join the handler's in package kubeless.
        toolchain::write_source(source, Runtime::Go, &d.join("function"))?;
        go_build(d, &requires, Output::Reactor)
    }
}

/// A `package main` program (main.go and, from an archive, the files beside it) as a WAGI
/// command.
fn program(source: &Source, requires: &[(String, String)]) -> Result<Vec<u8>, BuildError> {
    let dir = toolchain::workdir()?;
    let d = dir.path();
    toolchain::write(&d.join("go.mod"), go_mod("", requires).as_bytes())?;
    toolchain::write_source(source, Runtime::Go, d)?;
    go_build(d, requires, Output::Command)
}

/// What `go build` makes of the module.
enum Output {
    /// `_initialize` and `//go:wasmexport` functions: started once per instance.
    Reactor,
    /// `_start`: started for each request.
    Command,
}

/// The build's go.mod: its own lines (`extra`), then the tenant's requirements, checked
/// ([`go_requires`]).
fn go_mod(extra: &str, requires: &[(String, String)]) -> String {
    let mut gomod = format!("module wasmless.dev/function\n\ngo 1.24\n\n{extra}");
    for (path, version) in requires {
        gomod.push_str(&format!("require {path} {version}\n"));
    }
    gomod
}

/// `go build` of the module in `dir` into `function.wasm`.
fn go_build(
    dir: &Path,
    requires: &[(String, String)],
    output: Output,
) -> Result<Vec<u8>, BuildError> {
    let mut go = Command::new("go");
    go.arg("build");
    if let Output::Reactor = output {
        go.arg("-buildmode=c-shared");
    }
    go.args(["-trimpath", "-ldflags=-s -w", "-o", "function.wasm", "."])
        .env("GOFLAGS", "-mod=mod");
    wasip1(&mut go);
    modules(&mut go, requires);
    run(go, dir, INSTALL)?;
    toolchain::read(&dir.join("function.wasm"))
}

/// With requirements, the go command fetches them (and what they require) from the module proxy
/// alone, never from their repositories, into the tenant's own module cache.
fn modules(go: &mut Command, requires: &[(String, String)]) {
    if requires.is_empty() {
        return;
    }
    go.env("GOPROXY", PROXY)
        .env("GOMODCACHE", toolchain::state_dir("go").join("mod"));
}

/// The go command for WASI preview 1, offline, with the Go that is installed.
fn wasip1(go: &mut Command) {
    go.env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0");
}
