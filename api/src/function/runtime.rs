//! The runtimes wasmless builds, and what each needs of a manifest: the validator and the
//! controller's builders read the same table.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A manifest's `runtime`, mapped to ours. On the wire (the builder's API, its sandbox's job)
/// it is its [`Runtime::name`]; reading one takes any spelling [`Runtime::parse`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Runtime {
    /// WebAssembly text, compiled in-process.
    Wat,
    /// A prebuilt WebAssembly module or component, passed through.
    Wasm,
    /// Go, built by Go's own `wasip1` port into a WAGI reactor.
    Go,
    /// JavaScript (Kubeless's `nodejs`), built into a wasi:http component.
    Nodejs,
    /// Python, built into a wasi:http component.
    Python,
    /// Rust, built with cargo for `wasm32-wasip1` into a WAGI module.
    Rust,
    /// C, built by clang against wasi-libc into a WAGI module.
    C,
    /// Ruby, run by CRuby built for WASI.
    Ruby,
    /// Java, compiled by javac, then to a WASI module by TeaVM.
    Java,
}

/// What a runtime's `deps` are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deps {
    /// None: the runtime builds with its standard library only.
    Refused,
    /// The lines of a pip requirements.txt.
    Requirements,
    /// An npm package.json whose `dependencies` are installed.
    PackageJson,
    /// Lines of Cargo.toml's `[dependencies]` table.
    CargoDependencies,
    /// A go.mod's `require` lines, from the Go module proxy.
    GoMod,
}

/// What a runtime's build takes from a zip archive (`function-content-type: base64+zip`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFiles {
    /// No archives: the source is one module (`wat`, `wasm`).
    Refused,
    /// Only the handler's file: the glue cannot take modules beside it (`rust`).
    HandlerOnly,
    /// The handler's file and every file beside it, as a directory the function imports from.
    Beside,
}

impl Runtime {
    /// Every runtime, in the order messages list them.
    pub const ALL: [Runtime; 9] = [
        Runtime::Wat,
        Runtime::Wasm,
        Runtime::Go,
        Runtime::Nodejs,
        Runtime::Python,
        Runtime::Rust,
        Runtime::C,
        Runtime::Ruby,
        Runtime::Java,
    ];

    /// Ours for a manifest's `runtime`. Kubeless names carry a version (`python3.8`, `nodejs14`,
    /// `go1.14`), ours do not.
    pub fn parse(runtime: &str) -> Option<Runtime> {
        let lower = runtime.trim().to_ascii_lowercase();
        let name = lower.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        match name {
            "node" | "nodejs_distroless" => Some(Runtime::Nodejs),
            other => Runtime::ALL.into_iter().find(|r| r.name() == other),
        }
    }

    /// Its name in a manifest, without a version.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Wat => "wat",
            Runtime::Wasm => "wasm",
            Runtime::Go => "go",
            Runtime::Nodejs => "nodejs",
            Runtime::Python => "python",
            Runtime::Rust => "rust",
            Runtime::C => "c",
            Runtime::Ruby => "ruby",
            Runtime::Java => "java",
        }
    }

    /// Source runtimes name the file and function to call (`handler: file.function`), except
    /// those that also build whole programs ([`Runtime::builds_programs`]).
    pub fn needs_handler(self) -> bool {
        !matches!(self, Runtime::Wat | Runtime::Wasm) && !self.builds_programs()
    }

    /// Without a handler, the source is a whole WASI program (`main`) that speaks CGI on stdin
    /// and stdout, as a CGI program does (WAGI), in the file `main.<extension>`.
    pub fn builds_programs(self) -> bool {
        matches!(self, Runtime::Go | Runtime::Rust | Runtime::C)
    }

    /// Whether a source with this `handler` is a whole program: none given, and the runtime
    /// builds programs.
    pub fn is_program(self, handler: &str) -> bool {
        handler.trim().is_empty() && self.builds_programs()
    }

    /// The extension of the handler's file (`hello.handler` is `hello.py` in Python).
    pub fn extension(self) -> &'static str {
        match self {
            Runtime::Wat => "wat",
            Runtime::Wasm => "wasm",
            Runtime::Go => "go",
            Runtime::Nodejs => "js",
            Runtime::Python => "py",
            Runtime::Rust => "rs",
            Runtime::C => "c",
            Runtime::Ruby => "rb",
            Runtime::Java => "java",
        }
    }

    /// What its build takes from a zip archive.
    pub fn archive_files(self) -> ArchiveFiles {
        match self {
            Runtime::Wat | Runtime::Wasm => ArchiveFiles::Refused,
            // Ruby's source is evaluated from memory (no file system to require from), and
            // Java's glue calls one class.
            Runtime::Rust | Runtime::Ruby | Runtime::Java => ArchiveFiles::HandlerOnly,
            Runtime::Go | Runtime::Nodejs | Runtime::Python | Runtime::C => ArchiveFiles::Beside,
        }
    }

    /// What its `deps` are.
    pub fn deps(self) -> Deps {
        match self {
            Runtime::Wat | Runtime::Wasm | Runtime::C | Runtime::Ruby | Runtime::Java => {
                Deps::Refused
            }
            Runtime::Go => Deps::GoMod,
            Runtime::Python => Deps::Requirements,
            Runtime::Nodejs => Deps::PackageJson,
            Runtime::Rust => Deps::CargoDependencies,
        }
    }

    /// `wat, wasm, go, …`: for messages.
    pub fn supported() -> String {
        Runtime::ALL.map(Runtime::name).join(", ")
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Runtime> for &'static str {
    fn from(runtime: Runtime) -> Self {
        runtime.name()
    }
}

impl TryFrom<String> for Runtime {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        Runtime::parse(&name).ok_or_else(|| format!("{name:?} is not a runtime"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_the_wire_a_runtime_is_its_name() {
        assert_eq!(
            serde_json::to_string(&Runtime::Nodejs).unwrap(),
            r#""nodejs""#
        );
        let read: Runtime = serde_json::from_str(r#""python3.12""#).unwrap();
        assert_eq!(read, Runtime::Python);
        let unknown = serde_json::from_str::<Runtime>(r#""cobol""#).unwrap_err();
        assert!(
            unknown.to_string().contains("\"cobol\" is not a runtime"),
            "{unknown}"
        );
    }

    #[test]
    fn kubeless_runtime_names_map_to_ours() {
        for (kubeless, ours) in [
            ("python3.8", Runtime::Python),
            ("python2.7", Runtime::Python),
            ("nodejs14", Runtime::Nodejs),
            ("nodejs_distroless8", Runtime::Nodejs),
            ("node", Runtime::Nodejs),
            ("go1.14", Runtime::Go),
            ("WAT", Runtime::Wat),
            ("wasm", Runtime::Wasm),
            ("rust", Runtime::Rust),
            ("c", Runtime::C),
            ("ruby2.4", Runtime::Ruby),
            ("ruby3.4", Runtime::Ruby),
            ("java11", Runtime::Java),
            ("java1.8", Runtime::Java),
        ] {
            assert_eq!(Runtime::parse(kubeless), Some(ours), "{kubeless}");
        }
        for unknown in ["cobol", "rubyx", "", "3.8", "python/3"] {
            assert_eq!(Runtime::parse(unknown), None, "{unknown}");
        }
        assert_eq!(
            Runtime::supported(),
            "wat, wasm, go, nodejs, python, rust, c, ruby, java"
        );
    }
}
