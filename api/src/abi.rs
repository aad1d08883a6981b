//! The ABIs a function's WebAssembly speaks. The binary itself says which: a component speaks
//! WASI HTTP, a core module exporting [`REACTOR_EXPORT`] is a WAGI reactor, any other core
//! module a WAGI command.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The export a WAGI reactor answers each request with.
pub const REACTOR_EXPORT: &str = "wasmless_wagi_handle";

/// Which ABI a loaded function speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Abi {
    /// A WASI command module, a fresh instance per request (CGI over WASI p1).
    #[default]
    Wagi,
    /// A WAGI reactor: started once, then called per request (exports [`REACTOR_EXPORT`]).
    WagiReactor,
    /// A component exporting `wasi:http/incoming-handler`.
    WasiHttp,
}

impl Abi {
    /// The ABI a WebAssembly binary will run under: components speak WASI HTTP.
    pub fn of_wasm(wasm: &[u8]) -> Self {
        if wasmparser::Parser::is_component(wasm) {
            Abi::WasiHttp
        } else if exports(wasm, REACTOR_EXPORT) {
            Abi::WagiReactor
        } else {
            Abi::Wagi
        }
    }

    /// Its name in a status and in logs: `wagi`, `wagi-reactor` or `wasi-http`.
    pub fn as_str(self) -> &'static str {
        match self {
            Abi::Wagi => "wagi",
            Abi::WagiReactor => "wagi-reactor",
            Abi::WasiHttp => "wasi-http",
        }
    }
}

/// Whether a core module exports a function of that name.
fn exports(wasm: &[u8], name: &str) -> bool {
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(wasmparser::Payload::ExportSection(section)) => {
                return section
                    .into_iter()
                    .flatten()
                    .any(|e| e.name == name && e.kind == wasmparser::ExternalKind::Func);
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}
