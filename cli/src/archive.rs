//! What `--from-file` sends: a file as it is, a `.zip` as an archive, a directory zipped (its
//! regular files, sorted, reproducibly: an unchanged directory keeps its build key).

use std::path::Path;

use anyhow::{Context, bail};

use wasmless_api::function::Packaging;
use wasmless_builder::archive::{self, MAX_ENTRIES, MAX_TOTAL_BYTES};

/// The bytes of `path` and what they are.
pub fn read(path: &Path) -> anyhow::Result<(Vec<u8>, Packaging)> {
    let metadata =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if metadata.is_dir() {
        let mut files = Vec::new();
        collect(path, "", &mut files)?;
        if files.is_empty() {
            bail!("{} has no files to send", path.display());
        }
        let zip =
            archive::write(&files).with_context(|| format!("cannot zip {}", path.display()))?;
        return Ok((zip, Packaging::Zip));
    }
    if !metadata.is_file() {
        bail!("{} is not a file or a directory", path.display());
    }
    if metadata.len() > MAX_TOTAL_BYTES {
        bail!("{} is larger than {MAX_TOTAL_BYTES} bytes", path.display());
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let named_zip = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"));
    let packaging = if named_zip || bytes.starts_with(b"PK\x03\x04") {
        Packaging::Zip
    } else {
        Packaging::File
    };
    Ok((bytes, packaging))
}

/// The regular files under `dir`, named from the directory given (`prefix`), sorted; a
/// symlink or special file is an error rather than a surprise in the build.
fn collect(dir: &Path, prefix: &str, files: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            bail!("{}: file names must be UTF-8", path.display());
        };
        let name = format!("{prefix}{name}");
        let kind = std::fs::symlink_metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .file_type();
        if kind.is_symlink() {
            bail!(
                "{} is a symlink: archives hold regular files only (copy the file instead)",
                path.display()
            );
        } else if kind.is_dir() {
            collect(&path, &format!("{name}/"), files)?;
        } else if kind.is_file() {
            if files.len() >= MAX_ENTRIES {
                bail!("more than {MAX_ENTRIES} files, at most {MAX_ENTRIES} can be sent");
            }
            let total: u64 = files.iter().map(|(_, b)| b.len() as u64).sum();
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            if total + bytes.len() as u64 > MAX_TOTAL_BYTES {
                bail!(
                    "the files hold more than {MAX_TOTAL_BYTES} bytes, at most {MAX_TOTAL_BYTES} can be sent"
                );
            }
            files.push((name, bytes));
        } else {
            bail!("{} is not a regular file", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_zips_and_directories() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let src = dir.path().join("fn");
        std::fs::create_dir_all(src.join("lib"))?;
        std::fs::write(src.join("hello.py"), "import helper\n")?;
        std::fs::write(src.join("helper.py"), "X = 1\n")?;
        std::fs::write(src.join("lib/util.py"), "")?;
        let (zip, packaging) = read(&src)?;
        assert_eq!(packaging, Packaging::Zip);
        let listing = archive::check(&zip, wasmless_api::function::Runtime::Python, "hello.h")?;
        assert_eq!(listing.files, ["hello.py", "helper.py", "lib/util.py"]);
        // The same directory, the same bytes.
        assert_eq!(read(&src)?.0, zip);

        let file = dir.path().join("fn.zip");
        std::fs::write(&file, &zip)?;
        assert_eq!(read(&file)?, (zip, Packaging::Zip));
        assert_eq!(read(&src.join("hello.py"))?.1, Packaging::File);

        std::os::unix::fs::symlink("/etc/passwd", src.join("passwd"))?;
        let e = format!("{:#}", read(&src).unwrap_err());
        assert!(e.contains("is a symlink"), "{e}");
        Ok(())
    }
}
