//! `wasm`: a prebuilt module or component, passed through after a header check.

use super::{BuildError, Builder, Source};

pub struct Wasm;

impl Builder for Wasm {
    fn version(&self) -> &'static str {
        "wasm-1"
    }

    fn build(&self, source: &Source) -> Result<Vec<u8>, BuildError> {
        if !source.code.starts_with(b"\0asm") {
            return Err(BuildError::Compile(
                "not a WebAssembly binary (no \\0asm header): use function-content-type base64 or url for binaries".into(),
            ));
        }
        Ok(source.code.to_vec())
    }
}
