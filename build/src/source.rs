//! A manifest's source: decoding `function` by `function-content-type` and verifying `checksum`.
//! A `url` source is a file beside a manifest of `wasmless up`, read only from inside that
//! manifest's directory; in a cluster it is never a file (the controller's disk is not the
//! tenant's), and fetching http(s) is not supported yet. A zip archive (`base64+zip`,
//! `url+zip`) is checked from its directory alone ([`wasmless_builder::archive::check`]): it
//! is never extracted here, only in the builder's sandbox.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use thiserror::Error;
use wasmless_api::digest::Sha256Digest;

use wasmless_api::FunctionSpec;
use wasmless_api::function::content;
use wasmless_api::function::{ContentType, Packaging, Runtime};
use wasmless_api::validate::Origin;
use wasmless_builder::archive::{self, ArchiveError};

/// Largest file a `url` source may name.
pub const MAX_URL_SOURCE_BYTES: u64 = 64 << 20;

#[derive(Debug, Error)]
pub enum SourceError {
    #[error("function-content-type {0}")]
    ContentType(String),
    #[error("the zip archive in function: {0}")]
    Archive(#[from] ArchiveError),
    #[error("spec.runtime {0:?} is not a runtime: an archive is checked against its runtime")]
    Runtime(String),
    #[error("function is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error(
        "url {0:?}: in a cluster a url source is never a file, and fetching http(s) is not supported yet; inline the source"
    )]
    NotInCluster(String),
    #[error(
        "url {0:?}: url sources are files beside a manifest in wasmless up's directory; inline the source"
    )]
    NoDirectory(String),
    #[error("url {url:?} must name a file inside the manifest's directory {}, symlinks followed", dir.display())]
    Escapes { url: String, dir: PathBuf },
    #[error("url {url:?}: {} is not a regular file", path.display())]
    NotAFile { url: String, path: PathBuf },
    #[error("url {url:?}: {} is larger than {MAX_URL_SOURCE_BYTES} bytes", path.display())]
    TooLarge { url: String, path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checksum {0:?} is not of the form sha256:<64 hex digits>")]
    ChecksumFormat(String),
    #[error("checksum mismatch: the manifest says {expected}, the source is {actual}")]
    Checksum { expected: String, actual: String },
}

/// Decodes the source bytes of `spec` (for an archive, the zip, checked against the runtime
/// and handler); `origin` says what a `url` may name.
pub fn decode(spec: &FunctionSpec, origin: Origin) -> Result<Vec<u8>, SourceError> {
    let content_type =
        ContentType::parse(spec.function_content_type.trim()).map_err(SourceError::ContentType)?;
    let bytes = match content::decode_inline(&spec.function, content_type) {
        Some(decoded) => decoded?,
        None => read_url(spec.function.trim(), origin)?,
    };
    verify_checksum(&spec.checksum, &bytes)?;
    if content_type.packaging() == Packaging::Zip {
        let runtime = Runtime::parse(&spec.runtime)
            .ok_or_else(|| SourceError::Runtime(spec.runtime.clone()))?;
        archive::check(&bytes, runtime, &spec.handler)?;
    }
    Ok(bytes)
}

fn read_url(url: &str, origin: Origin) -> Result<Vec<u8>, SourceError> {
    match origin {
        Origin::Cluster => Err(SourceError::NotInCluster(url.into())),
        Origin::Inline => Err(SourceError::NoDirectory(url.into())),
        Origin::Dir(dir) => read_inside(dir, url),
    }
}

/// A regular file at `url`, relative to `dir` and inside it once symlinks are resolved, of at
/// most [`MAX_URL_SOURCE_BYTES`].
fn read_inside(dir: &Path, url: &str) -> Result<Vec<u8>, SourceError> {
    let escapes = || SourceError::Escapes {
        url: url.into(),
        dir: dir.to_path_buf(),
    };
    let relative = Path::new(url);
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if url.is_empty() || !plain {
        return Err(escapes());
    }
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SourceError::Read { path, source }
    };
    let root = dir.canonicalize().map_err(read_err(dir))?;
    let joined = root.join(relative);
    let path = joined.canonicalize().map_err(read_err(&joined))?;
    if !path.starts_with(&root) {
        return Err(escapes());
    }
    let not_a_file = || SourceError::NotAFile {
        url: url.into(),
        path: path.clone(),
    };
    // Checked before opening: opening a FIFO would wait for a writer.
    let metadata = std::fs::metadata(&path).map_err(read_err(&path))?;
    if !metadata.is_file() {
        return Err(not_a_file());
    }
    let file = std::fs::File::open(&path).map_err(read_err(&path))?;
    if !file.metadata().map_err(read_err(&path))?.is_file() {
        return Err(not_a_file());
    }
    let mut bytes = Vec::new();
    file.take(MAX_URL_SOURCE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err(&path))?;
    if bytes.len() as u64 > MAX_URL_SOURCE_BYTES {
        return Err(SourceError::TooLarge {
            url: url.into(),
            path,
        });
    }
    Ok(bytes)
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
    let actual = Sha256Digest::of(bytes).to_string();
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
        assert_eq!(
            decode(&spec("text", "abc", ""), Origin::Cluster).unwrap(),
            b"abc"
        );
        assert_eq!(
            decode(&spec("", "abc", ""), Origin::Cluster).unwrap(),
            b"abc"
        );
        assert_eq!(
            decode(&spec("base64", "YW\nJj", ""), Origin::Cluster).unwrap(),
            b"abc"
        );
        let sum = Sha256Digest::of(b"abc").to_string();
        assert_eq!(
            sum,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(decode(&spec("text", "abc", &sum), Origin::Cluster).is_ok());
        assert!(matches!(
            decode(&spec("text", "abd", &sum), Origin::Cluster),
            Err(SourceError::Checksum { .. })
        ));
        assert!(matches!(
            decode(&spec("text", "abc", "md5:00"), Origin::Cluster),
            Err(SourceError::ChecksumFormat(_))
        ));
        assert!(matches!(
            decode(&spec("base64", "***", ""), Origin::Cluster),
            Err(SourceError::Base64(_))
        ));
        assert!(matches!(
            decode(&spec("text+zip", "x", ""), Origin::Cluster),
            Err(SourceError::ContentType(_))
        ));
        assert!(matches!(
            decode(&spec("yaml", "x", ""), Origin::Cluster),
            Err(SourceError::ContentType(_))
        ));
    }

    #[test]
    fn zip_archives_are_checked_never_extracted() {
        let zip = archive::write(&[
            ("hello.py".into(), b"import helper\n".to_vec()),
            ("helper.py".into(), b"X = 1\n".to_vec()),
        ])
        .unwrap();
        let (function, content_type) = wasmless_api::function::content::encode_zip(&zip);
        let python = |function: &str, handler: &str| FunctionSpec {
            runtime: "python3.8".into(),
            handler: handler.into(),
            function: function.into(),
            function_content_type: content_type.name().into(),
            checksum: Sha256Digest::of(&zip).to_string(),
            ..Default::default()
        };
        let spec = python(&function, "hello.handler");
        assert_eq!(decode(&spec, Origin::Cluster).unwrap(), zip);
        assert_eq!(spec.packaging(), Packaging::Zip);
        assert!(matches!(
            decode(&python(&function, "other.handler"), Origin::Cluster),
            Err(SourceError::Archive(ArchiveError::NoHandlerFile { .. }))
        ));
        // A zip beside a manifest of wasmless up.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fn.zip"), &zip).unwrap();
        let mut local = python("fn.zip", "hello.handler");
        local.function_content_type = "url+zip".into();
        assert_eq!(decode(&local, Origin::Dir(dir.path())).unwrap(), zip);
        assert!(matches!(
            decode(&local, Origin::Cluster),
            Err(SourceError::NotInCluster(_))
        ));
    }

    #[test]
    fn urls_are_files_inside_the_manifests_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("manifests");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/m.wasm"), b"\0asm").unwrap();
        std::fs::write(root.path().join("secret"), b"secret").unwrap();
        let at = Origin::Dir(&dir);
        let read = |url: &str| decode(&spec("url", url, ""), at);
        assert_eq!(read("sub/m.wasm").unwrap(), b"\0asm");
        assert_eq!(read("./sub/m.wasm").unwrap(), b"\0asm");

        for escaping in [
            "../secret",
            "sub/../../secret",
            &root.path().join("secret").display().to_string(),
            "",
        ] {
            assert!(
                matches!(read(escaping), Err(SourceError::Escapes { .. })),
                "{escaping}"
            );
        }
        // Symlinks are followed, then must still be inside.
        std::os::unix::fs::symlink(root.path().join("secret"), dir.join("link")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).unwrap();
        assert!(matches!(read("link"), Err(SourceError::Escapes { .. })));
        assert!(matches!(read("zero"), Err(SourceError::Escapes { .. })));
        std::os::unix::fs::symlink(dir.join("sub/m.wasm"), dir.join("inside")).unwrap();
        assert_eq!(read("inside").unwrap(), b"\0asm");
        // Regular files only, and not too large.
        assert!(matches!(read("sub"), Err(SourceError::NotAFile { .. })));
        let big = std::fs::File::create(dir.join("big")).unwrap();
        big.set_len(MAX_URL_SOURCE_BYTES + 1).unwrap();
        assert!(matches!(read("big"), Err(SourceError::TooLarge { .. })));
        assert!(matches!(
            read("missing.wasm"),
            Err(SourceError::Read { .. })
        ));

        // Nowhere else is a url a file.
        for origin in [Origin::Cluster, Origin::Inline] {
            let abs = dir.join("sub/m.wasm").display().to_string();
            for url in [abs.as_str(), "sub/m.wasm", "https://example.invalid/x"] {
                let e = decode(&spec("url", url, ""), origin);
                assert!(
                    matches!(
                        e,
                        Err(SourceError::NotInCluster(_) | SourceError::NoDirectory(_))
                    ),
                    "{url}"
                );
            }
        }
    }
}
