//! A function's files, apart from its code: how many functions share one interpreter's compiled
//! code. A Python build yields the interpreter's component, the same for every function, with
//! the function's own files (a zip: its modules and dependencies) in a trailing custom section
//! [`SECTION`]. The build splits the two ([`split`]): the code is stored, precompiled and loaded
//! once however many functions run it, and each function gets its files read-only at
//! [`DIR`]`/`[`ARCHIVE`], where the interpreter imports them from.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::digest::Sha256Digest;

/// The custom section a build appends to carry the function's files.
pub const SECTION: &str = "wasmless.files";
/// Where a function finds its files: Kubeless's own path for a function's source.
pub const DIR: &str = "/kubeless";
/// The one file there: the archive of the function's files.
pub const ARCHIVE: &str = "function.zip";

/// A function's files in the artifact store.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilesRef {
    /// "sha256:<hex>" of the archive.
    pub digest: Sha256Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// What names a build of a function whose code is `code`: that digest, or with `files`, a
/// digest of both (the code alone is the same for many functions).
pub fn revision(code: &Sha256Digest, files: Option<&FilesRef>) -> Sha256Digest {
    match files {
        None => code.clone(),
        Some(files) => Sha256Digest::of(format!("{code}\n{}", files.digest).as_bytes()),
    }
}

/// The digests a build of code `code` with `files` is stored under: the code's, then the files'.
pub fn digests<'a>(
    code: &'a Sha256Digest,
    files: Option<&'a Sha256Digest>,
) -> impl Iterator<Item = &'a Sha256Digest> {
    std::iter::once(code).chain(files)
}

/// A build's output that is not a WebAssembly binary.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("not a WebAssembly binary: {0}")]
pub struct NotWasm(&'static str);

/// `wasm`'s code and, when its last section is [`SECTION`], the files it carries.
pub fn split(wasm: &[u8]) -> Result<(&[u8], Option<&[u8]>), NotWasm> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(NotWasm("no \\0asm header"));
    }
    let mut at = 8;
    let mut last = None;
    while at < wasm.len() {
        let start = at;
        let id = wasm[at];
        let (size, len) = leb_u32(&wasm[at + 1..]).ok_or(NotWasm("a section's size"))?;
        let body = at + 1 + len;
        at = body
            .checked_add(size as usize)
            .filter(|end| *end <= wasm.len())
            .ok_or(NotWasm("a section past the end"))?;
        last = Some((start, id, body, at));
    }
    let Some((start, 0, body, end)) = last else {
        return Ok((wasm, None));
    };
    let section = &wasm[body..end];
    let (name_len, len) = leb_u32(section).ok_or(NotWasm("a custom section's name"))?;
    let name_end = len + name_len as usize;
    if section.get(len..name_end) != Some(SECTION.as_bytes()) {
        return Ok((wasm, None));
    }
    Ok((&wasm[..start], Some(&section[name_end..])))
}

/// `code` with `files` in a trailing [`SECTION`]: what a build of an interpreted function yields.
pub fn append(code: &[u8], files: &[u8]) -> Vec<u8> {
    let mut name = Vec::new();
    leb_write(&mut name, SECTION.len() as u32);
    name.extend_from_slice(SECTION.as_bytes());
    let mut out = Vec::with_capacity(code.len() + files.len() + 32);
    out.extend_from_slice(code);
    out.push(0);
    leb_write(&mut out, (name.len() + files.len()) as u32);
    out.extend_from_slice(&name);
    out.extend_from_slice(files);
    out
}

/// An unsigned LEB128 of at most 5 bytes, and how many it took.
fn leb_u32(bytes: &[u8]) -> Option<(u32, usize)> {
    let mut value: u64 = 0;
    for (i, b) in bytes.iter().take(5).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u32::try_from(value).ok().map(|v| (v, i + 1));
        }
    }
    None
}

fn leb_write(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module with one function and a custom section of its own (`name`).
    const MODULE: &[u8] = &[
        0, b'a', b's', b'm', 1, 0, 0, 0, // header
        1, 4, 1, 0x60, 0, 0, // type section: () -> ()
        0, 5, 4, b'n', b'a', b'm', b'e', // custom section "name", empty
    ];

    #[test]
    fn files_appended_are_split_off_and_the_code_is_what_it_was() {
        let files = vec![7u8; 300]; // a size that takes two LEB bytes
        let built = append(MODULE, &files);
        assert_eq!(split(&built), Ok((MODULE, Some(files.as_slice()))));
        assert!(wasmparser::Validator::new().validate_all(&built).is_ok());
        // No files section: all of it is code, another custom section included.
        assert_eq!(split(MODULE), Ok((MODULE, None)));
    }

    #[test]
    fn a_truncated_or_foreign_binary_is_refused() {
        let built = append(MODULE, b"zip");
        assert!(split(&built[..built.len() - 1]).is_err());
        assert!(split(b"PK\x03\x04 not wasm").is_err());
        let mut huge = MODULE[..8].to_vec();
        huge.extend_from_slice(&[0, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(split(&huge).is_err());
    }
}
