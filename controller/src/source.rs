//! A manifest's source: decoding `function` by `function-content-type` and verifying `checksum`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use thiserror::Error;

use wasmless_runtime::FunctionSpec;

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("function-content-type {0:?} is not supported: use text, base64 or url")]
    ContentType(String),
    #[error(
        "function-content-type {0:?}: zip and compressed-tar archives are not supported yet; inline the source"
    )]
    Archive(String),
    #[error("function is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("url {0:?}: only file paths and file:// URLs are supported")]
    Url(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checksum {0:?} is not of the form sha256:<64 hex digits>")]
    ChecksumFormat(String),
    #[error("checksum mismatch: the manifest says {expected}, the source is {actual}")]
    Checksum { expected: String, actual: String },
}

/// `sha256:<hex>` of some bytes: how wasmless names sources, builds and artifacts.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Decodes the source bytes of `spec`. `base_dir` resolves relative `url` paths (the manifest's
/// directory in local mode).
pub fn decode(spec: &FunctionSpec, base_dir: Option<&Path>) -> Result<Vec<u8>, SourceError> {
    let content_type = spec.function_content_type.trim();
    let (kind, archive) = content_type
        .split_once('+')
        .map_or((content_type, None), |(k, a)| (k, Some(a)));
    if archive.is_some() {
        return Err(SourceError::Archive(content_type.into()));
    }
    let bytes = match kind {
        "" | "text" => spec.function.as_bytes().to_vec(),
        "base64" => {
            let compact: String = spec.function.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD.decode(compact)?
        }
        "url" => read_url(spec.function.trim(), base_dir)?,
        other => return Err(SourceError::ContentType(other.into())),
    };
    verify_checksum(&spec.checksum, &bytes)?;
    Ok(bytes)
}

/// The inverse of [`decode`] for a file's bytes: `(function, function-content-type)`, text when
/// they are UTF-8 without NUL (what a user can read in the manifest), else base64.
pub fn encode(bytes: Vec<u8>) -> (String, &'static str) {
    let base64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    match String::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => (text, "text"),
        Ok(text) => (base64(text.as_bytes()), "base64"),
        Err(e) => (base64(e.as_bytes()), "base64"),
    }
}

fn read_url(url: &str, base_dir: Option<&Path>) -> Result<Vec<u8>, SourceError> {
    let path = match url.strip_prefix("file://") {
        Some(p) => PathBuf::from(p),
        None if url.contains("://") => return Err(SourceError::Url(url.into())),
        None => PathBuf::from(url),
    };
    let path = match base_dir {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    };
    std::fs::read(&path).map_err(|source| SourceError::Read { path, source })
}

fn verify_checksum(checksum: &str, bytes: &[u8]) -> Result<(), SourceError> {
    let checksum = checksum.trim();
    if checksum.is_empty() {
        return Ok(());
    }
    let well_formed = checksum
        .strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        return Err(SourceError::ChecksumFormat(checksum.into()));
    }
    let actual = digest(bytes);
    if !actual.eq_ignore_ascii_case(checksum) {
        return Err(SourceError::Checksum {
            expected: checksum.into(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(content_type: &str, function: &str, checksum: &str) -> FunctionSpec {
        FunctionSpec {
            function: function.into(),
            function_content_type: content_type.into(),
            checksum: checksum.into(),
            ..Default::default()
        }
    }

    #[test]
    fn text_base64_and_checksums() {
        assert_eq!(decode(&spec("text", "abc", ""), None).unwrap(), b"abc");
        assert_eq!(decode(&spec("", "abc", ""), None).unwrap(), b"abc");
        assert_eq!(decode(&spec("base64", "YW\nJj", ""), None).unwrap(), b"abc");
        let sum = digest(b"abc");
        assert_eq!(
            sum,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(decode(&spec("text", "abc", &sum), None).is_ok());
        assert!(matches!(
            decode(&spec("text", "abd", &sum), None),
            Err(SourceError::Checksum { .. })
        ));
        assert!(matches!(
            decode(&spec("text", "abc", "md5:00"), None),
            Err(SourceError::ChecksumFormat(_))
        ));
        assert!(matches!(
            decode(&spec("base64", "***", ""), None),
            Err(SourceError::Base64(_))
        ));
        assert!(matches!(
            decode(&spec("text+zip", "x", ""), None),
            Err(SourceError::Archive(_))
        ));
        assert!(matches!(
            decode(&spec("yaml", "x", ""), None),
            Err(SourceError::ContentType(_))
        ));
    }

    #[test]
    fn urls_are_files_relative_to_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.wasm"), b"\0asm").unwrap();
        assert_eq!(
            decode(&spec("url", "m.wasm", ""), Some(dir.path())).unwrap(),
            b"\0asm"
        );
        let abs = format!("file://{}", dir.path().join("m.wasm").display());
        assert_eq!(decode(&spec("url", &abs, ""), None).unwrap(), b"\0asm");
        assert!(matches!(
            decode(&spec("url", "https://example.invalid/x", ""), None),
            Err(SourceError::Url(_))
        ));
        assert!(matches!(
            decode(&spec("url", "missing.wasm", ""), Some(dir.path())),
            Err(SourceError::Read { .. })
        ));
    }
}
