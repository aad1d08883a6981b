//! Zip archives of a function's files (`function-content-type: base64+zip`, Kubeless's).
//!
//! [`check`] reads only the archive's directory (names, kinds, declared sizes): the controller,
//! the Metacontroller hook and `wasmless up` run it before a build, so a hostile archive is
//! refused with a clear message and never reaches a builder. [`extract`] runs in the builder's
//! sandboxed child, checks again and writes the files, counting the bytes it really
//! decompresses (a declared size can lie).

use std::io::{Read, Write};
use std::path::Path;

use thiserror::Error;
use wasmless_api::function::{ArchiveFiles, Runtime};

/// Most entries (files and directories) an archive may hold.
pub const MAX_ENTRIES: usize = 1000;
/// Most bytes its files may hold once decompressed, in all.
pub const MAX_TOTAL_BYTES: u64 = 64 << 20;
/// Longest entry name.
pub const MAX_NAME_LEN: usize = 512;

/// How much an archive may hold.
#[derive(Clone, Copy, Debug)]
struct Limits {
    entries: usize,
    total_bytes: u64,
}

const LIMITS: Limits = Limits {
    entries: MAX_ENTRIES,
    total_bytes: MAX_TOTAL_BYTES,
};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ArchiveError {
    #[error("not a readable zip archive: {0}")]
    Unreadable(String),
    #[error("{count} entries, at most {max} are allowed")]
    TooManyEntries { count: usize, max: usize },
    #[error(
        "its files hold more than {max} bytes once decompressed (a zip bomb?), at most {max} are allowed"
    )]
    TooLarge { max: u64 },
    #[error(
        "entry {0:?}: names must be relative paths of plain names (no leading /, no .., no \\)"
    )]
    BadName(String),
    #[error("entry {0:?} appears twice")]
    Duplicate(String),
    #[error("entry {0:?} is a symlink: archives may hold regular files and directories only")]
    Symlink(String),
    #[error("entry {0:?} is not a regular file or directory")]
    Special(String),
    #[error("entry {0:?} is encrypted")]
    Encrypted(String),
    #[error("the handler's file {file:?} is not at the archive's root{hint}")]
    NoHandlerFile { file: String, hint: String },
    #[error("{runtime} functions are one file, not an archive")]
    Refused { runtime: Runtime },
    #[error(
        "{runtime} builds the handler's file alone: the archive may hold only {file:?}, not {other:?}"
    )]
    OnlyHandler {
        runtime: Runtime,
        file: String,
        other: String,
    },
    #[error("entry {name:?} is a name the {runtime} build uses itself: rename it")]
    Reserved { runtime: Runtime, name: String },
    #[error("entry {0:?} holds more bytes than it declares")]
    Lying(String),
    #[error("the handler {0:?} is not of the form file.function")]
    Handler(String),
    #[error("cannot write {path}: {message}")]
    Write { path: String, message: String },
}

/// What a valid archive holds: its files' names, in archive order.
#[derive(Debug, PartialEq, Eq)]
pub struct Listing {
    pub files: Vec<String>,
}

/// Names the build writes beside a function's files, per runtime, at the archive's root: an entry
/// of that name (or a directory of that name) is refused.
fn reserved(runtime: Runtime) -> &'static [&'static str] {
    match runtime {
        // The interpreter's own modules and what componentize-py generates (imported before the
        // function's: a file of the name would never be).
        Runtime::Python => &[
            "wasmless_glue.py",
            "wasmless_app.py",
            "wasmless_stdlib.py",
            "wit_world",
            "wit_world.py",
            "componentize_py_types.py",
            "componentize_py_runtime.py",
            "componentize_py_async_support",
            "componentize_py_async_support.py",
            "poll_loop.py",
        ],
        // The glue's module is the build's; a nested go.mod would split the package off it.
        Runtime::Go => &["go.mod", "go.sum", "vendor"],
        _ => &[],
    }
}

/// The handler's file name: `hello.handler` is `hello.py` for Python; with no handler, a
/// program's is `main.c`, `main.rs` or `main.go` ([`Runtime::builds_programs`]).
pub fn handler_file(runtime: Runtime, handler: &str) -> Result<String, ArchiveError> {
    if runtime.is_program(handler) {
        return Ok(format!("main.{}", runtime.extension()));
    }
    let file = handler
        .trim()
        .rsplit_once('.')
        .map(|(file, _)| file)
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ArchiveError::Handler(handler.into()))?;
    Ok(format!("{file}.{}", runtime.extension()))
}

/// Checks an archive for `runtime` and `handler` from its directory alone: every rule but the
/// sizes the entries really decompress to, which [`extract`] counts.
pub fn check(zip: &[u8], runtime: Runtime, handler: &str) -> Result<Listing, ArchiveError> {
    check_within(zip, runtime, handler, LIMITS)
}

fn check_within(
    zip: &[u8],
    runtime: Runtime,
    handler: &str,
    limits: Limits,
) -> Result<Listing, ArchiveError> {
    let mut archive = open(zip)?;
    if archive.len() > limits.entries {
        return Err(ArchiveError::TooManyEntries {
            count: archive.len(),
            max: limits.entries,
        });
    }
    let handler_file = handler_file(runtime, handler)?;
    let mut seen = std::collections::HashSet::new();
    let mut files = Vec::new();
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let entry = archive
            .by_index_raw(i)
            .map_err(|e| ArchiveError::Unreadable(e.to_string()))?;
        let raw = entry.name().to_string();
        let name = plain_name(&raw)?;
        if !seen.insert(name.clone()) {
            return Err(ArchiveError::Duplicate(raw));
        }
        if entry.encrypted() {
            return Err(ArchiveError::Encrypted(raw));
        }
        let directory = entry.is_dir();
        match entry.unix_mode().map(|m| m & 0o170000) {
            None | Some(0) | Some(0o100000) | Some(0o040000) => {}
            Some(0o120000) => return Err(ArchiveError::Symlink(raw)),
            Some(_) => return Err(ArchiveError::Special(raw)),
        }
        let root = name.split('/').next().unwrap_or_default();
        if reserved(runtime)
            .iter()
            .any(|r| *r == root || *r == name.as_str())
        {
            return Err(ArchiveError::Reserved { runtime, name });
        }
        if directory {
            continue;
        }
        total = total.saturating_add(entry.size());
        if total > limits.total_bytes {
            return Err(ArchiveError::TooLarge {
                max: limits.total_bytes,
            });
        }
        files.push(name);
    }
    match runtime.archive_files() {
        ArchiveFiles::Refused => return Err(ArchiveError::Refused { runtime }),
        ArchiveFiles::HandlerOnly => {
            if let Some(other) = files.iter().find(|f| **f != handler_file) {
                return Err(ArchiveError::OnlyHandler {
                    runtime,
                    file: handler_file,
                    other: other.clone(),
                });
            }
        }
        ArchiveFiles::Beside => {}
    }
    if !files.contains(&handler_file) {
        let nested = files
            .iter()
            .find(|f| f.ends_with(&format!("/{handler_file}")));
        let hint = match nested {
            Some(path) => {
                format!(" (it is at {path:?}: archive the directory's contents, not the directory)")
            }
            None => String::new(),
        };
        return Err(ArchiveError::NoHandlerFile {
            file: handler_file,
            hint,
        });
    }
    Ok(Listing { files })
}

/// Writes the archive's files under `dir` (which must exist), after [`check`]; at most
/// [`MAX_TOTAL_BYTES`] really decompressed, whatever the entries declare.
pub fn extract(
    zip: &[u8],
    runtime: Runtime,
    handler: &str,
    dir: &Path,
) -> Result<Listing, ArchiveError> {
    extract_within(zip, runtime, handler, dir, LIMITS)
}

fn extract_within(
    zip: &[u8],
    runtime: Runtime,
    handler: &str,
    dir: &Path,
    limits: Limits,
) -> Result<Listing, ArchiveError> {
    let listing = check_within(zip, runtime, handler, limits)?;
    let mut archive = open(zip)?;
    let mut budget = limits.total_bytes;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| ArchiveError::Unreadable(e.to_string()))?;
        let name = plain_name(entry.name())?;
        let path = dir.join(&name);
        let write_err = |e: std::io::Error| ArchiveError::Write {
            path: name.clone(),
            message: e.to_string(),
        };
        if entry.is_dir() {
            std::fs::create_dir_all(&path).map_err(write_err)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_err)?;
        }
        // create_new: an entry never replaces or follows anything already there.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(write_err)?;
        // The reader does not stop at the declared size: at most that, and the budget, is read.
        let declared = entry.size();
        let mut limited = entry.by_ref().take(declared.min(budget) + 1);
        let written = std::io::copy(&mut limited, &mut file).map_err(|e| {
            // The zip crate reports a corrupt stream or a wrong checksum as an I/O error.
            ArchiveError::Unreadable(format!("entry {name:?}: {e}"))
        })?;
        if written > budget {
            return Err(ArchiveError::TooLarge {
                max: limits.total_bytes,
            });
        }
        if written > declared {
            return Err(ArchiveError::Lying(name));
        }
        budget -= written;
        file.flush().map_err(write_err)?;
    }
    Ok(listing)
}

fn open(zip: &[u8]) -> Result<zip::ZipArchive<std::io::Cursor<&[u8]>>, ArchiveError> {
    zip::ZipArchive::new(std::io::Cursor::new(zip))
        .map_err(|e| ArchiveError::Unreadable(e.to_string()))
}

/// The entry's name as a relative path of plain components (`a/b.py`; a directory's trailing
/// `/` dropped), or why not.
fn plain_name(raw: &str) -> Result<String, ArchiveError> {
    let bad = || ArchiveError::BadName(raw.into());
    let trimmed = raw.strip_suffix('/').unwrap_or(raw);
    if trimmed.is_empty()
        || raw.len() > MAX_NAME_LEN
        || raw.starts_with('/')
        || raw.contains(['\\', '\0', ':'])
    {
        return Err(bad());
    }
    let plain = trimmed
        .split('/')
        .all(|c| !c.is_empty() && c != "." && c != ".." && !c.chars().any(char::is_control));
    if plain {
        Ok(trimmed.to_string())
    } else {
        Err(bad())
    }
}

/// A zip of `files` (name, bytes), in the given order, reproducible: the same files make the same
/// bytes (no times, fixed permissions), so an unchanged directory keeps its build key.
pub fn write(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, ArchiveError> {
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    let failed = |e: &dyn std::fmt::Display| ArchiveError::Write {
        path: "the archive".into(),
        message: e.to_string(),
    };
    for (name, bytes) in files {
        out.start_file(name.as_str(), options)
            .map_err(|e| failed(&e))?;
        out.write_all(bytes).map_err(|e| failed(&e))?;
    }
    let cursor = out.finish().map_err(|e| failed(&e))?;
    Ok(cursor.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(n, b)| (n.to_string(), b.as_bytes().to_vec()))
            .collect()
    }

    fn zip_of(list: &[(&str, &str)]) -> Vec<u8> {
        write(&files(list)).unwrap_or_default()
    }

    /// A zip whose entries are written with raw options (names, modes) the writer would allow.
    fn raw_zip(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, mode, bytes) in entries {
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(*mode);
            if mode & 0o170000 == 0o120000 {
                out.add_symlink(*name, String::from_utf8_lossy(bytes), options)
                    .unwrap();
            } else {
                out.start_file(*name, options).unwrap();
                out.write_all(bytes).unwrap();
            }
        }
        out.finish().unwrap().into_inner()
    }

    #[test]
    fn a_python_function_with_a_helper_module() {
        let zip = zip_of(&[
            ("hello.py", "import helper\n"),
            ("helper.py", "X = 1\n"),
            ("pkg/__init__.py", ""),
        ]);
        let listing = check(&zip, Runtime::Python, "hello.handler").unwrap();
        assert_eq!(listing.files, ["hello.py", "helper.py", "pkg/__init__.py"]);
        let dir = tempfile::tempdir().unwrap();
        extract(&zip, Runtime::Python, "hello.handler", dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("pkg/__init__.py")).unwrap(),
            ""
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("helper.py")).unwrap(),
            "X = 1\n"
        );
        // Reproducible: the same files, the same bytes (and build key).
        assert_eq!(
            zip,
            zip_of(&[
                ("hello.py", "import helper\n"),
                ("helper.py", "X = 1\n"),
                ("pkg/__init__.py", ""),
            ])
        );
    }

    #[test]
    fn a_program_is_main() {
        assert_eq!(handler_file(Runtime::C, "").ok().as_deref(), Some("main.c"));
        assert_eq!(
            handler_file(Runtime::Go, " ").ok().as_deref(),
            Some("main.go")
        );
        assert!(matches!(
            handler_file(Runtime::Python, ""),
            Err(ArchiveError::Handler(_))
        ));
        let zip = zip_of(&[("main.c", ""), ("util.c", "")]);
        assert!(check(&zip, Runtime::C, "").is_ok());
        let e = check(&zip_of(&[("util.c", "")]), Runtime::C, "").unwrap_err();
        assert!(matches!(e, ArchiveError::NoHandlerFile { .. }), "{e}");
    }

    #[test]
    fn the_handler_file_and_what_each_runtime_takes() {
        let zip = zip_of(&[("other.py", "")]);
        let e = check(&zip, Runtime::Python, "hello.handler").unwrap_err();
        assert!(matches!(e, ArchiveError::NoHandlerFile { .. }), "{e}");
        let nested = zip_of(&[("fn/hello.py", "")]);
        let e = check(&nested, Runtime::Python, "hello.handler")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not the directory"), "{e}");
        let rust = zip_of(&[("hello.rs", ""), ("util.rs", "")]);
        assert!(matches!(
            check(&rust, Runtime::Rust, "hello.handler"),
            Err(ArchiveError::OnlyHandler { .. })
        ));
        assert!(check(&zip_of(&[("hello.rs", "")]), Runtime::Rust, "hello.h").is_ok());
        assert!(matches!(
            check(&zip_of(&[("m.wat", "")]), Runtime::Wat, "m.x"),
            Err(ArchiveError::Refused { .. })
        ));
        let glue = zip_of(&[("hello.py", ""), ("wasmless_glue.py", "")]);
        assert!(matches!(
            check(&glue, Runtime::Python, "hello.handler"),
            Err(ArchiveError::Reserved { .. })
        ));
        let gomod = zip_of(&[("hello.go", ""), ("go.mod", "")]);
        assert!(matches!(
            check(&gomod, Runtime::Go, "hello.Handler"),
            Err(ArchiveError::Reserved { .. })
        ));
        assert!(matches!(
            check(b"not a zip", Runtime::Python, "hello.handler"),
            Err(ArchiveError::Unreadable(_))
        ));
    }

    #[test]
    fn hostile_names_links_and_bombs_are_refused_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("inside");
        std::fs::create_dir(&inside).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "dot-dot",
                raw_zip(&[("hello.py", 0o644, b""), ("../escaped.py", 0o644, b"x")]),
            ),
            (
                "nested dot-dot",
                raw_zip(&[
                    ("hello.py", 0o644, b""),
                    ("a/../../escaped.py", 0o644, b"x"),
                ]),
            ),
            (
                "absolute",
                raw_zip(&[("hello.py", 0o644, b""), ("/tmp/escaped.py", 0o644, b"x")]),
            ),
            (
                "symlink",
                raw_zip(&[
                    ("hello.py", 0o644, b""),
                    ("escaped.py", 0o120777, b"/etc/passwd"),
                ]),
            ),
            (
                "backslash",
                raw_zip(&[("hello.py", 0o644, b""), ("..\\escaped.py", 0o644, b"x")]),
            ),
        ];
        for (what, zip) in cases {
            let e = extract(&zip, Runtime::Python, "hello.handler", &inside);
            assert!(
                matches!(
                    e,
                    Err(ArchiveError::BadName(_)
                        | ArchiveError::Symlink(_)
                        | ArchiveError::Special(_))
                ),
                "{what}: {e:?}"
            );
            assert_eq!(std::fs::read_dir(&inside).unwrap().count(), 0, "{what}");
        }
        assert!(!dir.path().join("escaped.py").exists());

        // 4 MiB of zeros compress to a few KiB: over a 1 MiB limit, refused from the
        // directory alone (the end-to-end suite sends a 100 MiB one against the real limit).
        let small = Limits {
            entries: MAX_ENTRIES,
            total_bytes: 1 << 20,
        };
        let zeros = vec![0u8; 4 << 20];
        let bomb = raw_zip(&[("hello.py", 0o644, b""), ("zeros.py", 0o644, &zeros)]);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let too_large = Err(ArchiveError::TooLarge { max: 1 << 20 });
        assert_eq!(
            check_within(&bomb, Runtime::Python, "hello.handler", small),
            too_large
        );
        assert_eq!(
            extract_within(&bomb, Runtime::Python, "hello.handler", &inside, small),
            too_large
        );
        assert_eq!(std::fs::read_dir(&inside).unwrap().count(), 0);

        let many: Vec<(String, Vec<u8>)> = (0..=MAX_ENTRIES)
            .map(|i| (format!("f{i}.py"), Vec::new()))
            .collect();
        let many = write(&many).unwrap();
        assert!(matches!(
            check(&many, Runtime::Python, "f0.handler"),
            Err(ArchiveError::TooManyEntries { .. })
        ));
        let twice = raw_zip(&[
            ("hello.py", 0o644, b""),
            ("a/", 0o755, b""),
            ("a", 0o644, b""),
        ]);
        assert!(check(&twice, Runtime::Python, "hello.handler").is_err());
    }

    #[test]
    fn a_lying_declared_size_is_caught_while_extracting() {
        // The entry's sizes in the local header and the directory say 1 byte; the deflated
        // stream holds 2 MiB, which the zip reader would write whole.
        let zeros = vec![0u8; 2 << 20];
        let mut zip = raw_zip(&[("hello.py", 0o644, &zeros)]);
        let size = (zeros.len() as u32).to_le_bytes();
        let mut patched = 0;
        for i in 0..zip.len().saturating_sub(4) {
            if zip[i..i + 4] == size {
                zip[i..i + 4].copy_from_slice(&1u32.to_le_bytes());
                patched += 1;
            }
        }
        assert!(patched >= 2, "{patched}");
        assert!(check(&zip, Runtime::Python, "hello.handler").is_ok());
        let written = |dir: &Path| {
            std::fs::metadata(dir.join("hello.py"))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            extract(&zip, Runtime::Python, "hello.handler", dir.path()),
            Err(ArchiveError::Lying("hello.py".into()))
        );
        assert!(written(dir.path()) <= 2, "{}", written(dir.path()));
        // Within a budget smaller than the stream, the budget holds too.
        let small = Limits {
            entries: MAX_ENTRIES,
            total_bytes: 1,
        };
        let dir = tempfile::tempdir().unwrap();
        assert!(extract_within(&zip, Runtime::Python, "hello.handler", dir.path(), small).is_err());
        assert!(written(dir.path()) <= 2);
    }
}
