//! `wat`: WebAssembly text, compiled in-process.

use super::{BuildError, Builder, Source};

pub struct Wat;

impl Builder for Wat {
    fn version(&self) -> &'static str {
        "wat-1"
    }

    fn build(&self, source: &Source) -> Result<Vec<u8>, BuildError> {
        wat::parse_bytes(source.code)
            .map(|b| b.into_owned())
            .map_err(|e| BuildError::Compile(e.to_string()))
    }
}
