//! Java: Kubeless's `public class Foo { public String foo(io.kubeless.Event event,
//! io.kubeless.Context context) }` in `package io.kubeless`, compiled by the JDK's javac, then
//! to a WASI module by TeaVM 0.10.2 (Maven Central; the last release with a WASI target and a
//! command-line compiler). The glue (`java/`) reads the request as a CGI program does and writes
//! a WAGI response; it also gives `io.kubeless` a `System` whose `getenv` reads WASI's
//! environment (TeaVM's returns null) and whose `out` is stderr (stdout is the response).

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmless_api::function::Runtime;

use super::toolchain::{self, run};
use super::{BuildError, Builder, Source};

const TEAVM: &str = "0.10.2";
const INSTALL: &str = "install a JDK 11+ (javac) and Maven (the build fetches TeaVM itself)";
const DEPENDENCY_PLUGIN: &str =
    "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies";

/// The glue's sources, by their path under the build's `glue/`.
const GLUE: [(&str, &str); 7] = [
    ("io/kubeless/Event.java", include_str!("java/Event.java")),
    (
        "io/kubeless/Context.java",
        include_str!("java/Context.java"),
    ),
    (
        "io/kubeless/Response.java",
        include_str!("java/Response.java"),
    ),
    ("io/kubeless/System.java", include_str!("java/System.java")),
    ("dev/wasmless/Main.java", include_str!("java/Main.java")),
    (
        "dev/wasmless/Environ.java",
        include_str!("java/Environ.java"),
    ),
    ("dev/wasmless/Json.java", include_str!("java/Json.java")),
];

pub struct Java;

/// TeaVM's jars and their dependencies, in the toolchain directory.
fn lib_dir() -> PathBuf {
    toolchain::cache_dir("java").join(format!("teavm-{TEAVM}"))
}

impl Builder for Java {
    fn version(&self) -> &'static str {
        "java-1"
    }

    fn prepare(&self) -> Result<(), BuildError> {
        let lib = lib_dir();
        if lib.join(".complete").exists() {
            return Ok(());
        }
        let dir = toolchain::workdir()?;
        let d = dir.path();
        toolchain::write(&d.join("pom.xml"), include_str!("java/pom.xml").as_bytes())?;
        let partial = lib.with_extension("partial");
        let _ = std::fs::remove_dir_all(&partial);
        let mut mvn = Command::new("mvn");
        // The plugin pinned too, and checksums enforced (Maven only warns by default).
        mvn.args(["-q", "-B", "--strict-checksums", DEPENDENCY_PLUGIN])
            .arg(format!("-Dmaven.repo.local={}", d.join("m2").display()))
            .arg(format!("-DoutputDirectory={}", partial.display()));
        run(mvn, d, INSTALL)?;
        toolchain::write(&partial.join(".complete"), b"")?;
        std::fs::rename(&partial, &lib)
            .map_err(|e| BuildError::Internal(format!("cannot write {}: {e}", lib.display())))
    }

    fn build(&self, source: &Source) -> Result<Vec<u8>, BuildError> {
        toolchain::no_deps(
            source,
            "Java functions build with TeaVM's class library only",
        )?;
        let (class, method) = toolchain::split_handler(source.handler)?;
        toolchain::identifiers(source.handler, "Java", &[class, method])?;
        let dir = toolchain::workdir()?;
        let d = dir.path();
        let handler = toolchain::write_source(source, Runtime::Java, &d.join("src"))?;
        let mut sources = vec![handler];
        for (path, contents) in GLUE {
            let path = d.join("glue").join(path);
            toolchain::write(&path, contents.as_bytes())?;
            sources.push(path);
        }
        // The one call the glue makes: the class and method are identifiers (checked above).
        let call = format!(
            "package dev.wasmless;\n\nfinal class Handler {{\n    static Object call(io.kubeless.Event event, io.kubeless.Context context) throws Throwable {{\n        return new io.kubeless.{class}().{method}(event, context);\n    }}\n}}\n"
        );
        let generated = d.join("glue/dev/wasmless/Handler.java");
        toolchain::write(&generated, call.as_bytes())?;
        sources.push(generated);

        let lib = lib_dir();
        let jar = |name: &str| lib.join(format!("{name}-{TEAVM}.jar"));
        let classpath = std::env::join_paths([jar("teavm-interop"), jar("teavm-core")])
            .map_err(|e| BuildError::Internal(e.to_string()))?;
        let mut javac = Command::new("javac");
        javac
            .args(["-J-Xmx512m", "-J-XX:-UsePerfData", "--release", "11"])
            // No annotation processors: nothing on the class path runs while javac does.
            .args(["-encoding", "UTF-8", "-nowarn", "-proc:none"])
            .arg("-cp")
            .arg(&classpath)
            .args(["-d", "classes"])
            .args(relative(&sources, d));
        run(javac, d, INSTALL)?;

        let mut teavm = Command::new("java");
        teavm
            .args(["-Xmx1g", "-XX:+UseSerialGC", "-XX:-UsePerfData", "-cp"])
            .arg(format!("{}/*", lib.display()))
            .args(["org.teavm.cli.TeaVMRunner", "-t", "wasi", "-O", "2"])
            .args(["-p", "classes", "-d", "out", "dev.wasmless.Main"]);
        run(teavm, d, INSTALL)?;
        toolchain::read(&d.join("out/classes.wasm"))
    }
}

/// Paths as javac is given them: relative to the build directory, so that its messages name
/// the user's file (`src/Foo.java:3: error: …`), not the scratch directory.
fn relative(paths: &[PathBuf], dir: &Path) -> Vec<PathBuf> {
    paths
        .iter()
        .map(|p| {
            p.strip_prefix(dir)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| p.clone())
        })
        .collect()
}
