//! Running the `wasmless` command line as a user does: a subprocess per verb, its exit code,
//! stdout and stderr.

use std::ffi::OsString;
use std::process::Command;

use crate::binary;

/// `wasmless` with fixed leading arguments (the target: `--local=…` or `--kubeconfig …`).
pub struct Wasmless {
    pub target: Vec<OsString>,
}

/// What one run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == 0
    }

    /// The last stderr line that starts with `error:`, if any.
    pub fn error(&self) -> Option<&str> {
        self.stderr.lines().rev().find(|l| l.starts_with("error:"))
    }
}

impl Wasmless {
    pub fn new<I: IntoIterator<Item = S>, S: Into<OsString>>(target: I) -> Self {
        Self {
            target: target.into_iter().map(Into::into).collect(),
        }
    }

    /// `wasmless function <args> <target>`.
    pub fn function(&self, args: &[&str]) -> Run {
        let mut all: Vec<OsString> = vec!["function".into()];
        all.extend(args.iter().map(OsString::from));
        all.extend(self.target.iter().cloned());
        run(&all)
    }
}

/// `wasmless <args>`, logging only warnings so stderr holds what a user reads.
pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let out = Command::new(binary("wasmless"))
        .args(args)
        .env("WASMLESS_LOG", "warn")
        .env_remove("KUBECONFIG")
        .output();
    match out {
        Ok(o) => Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        },
        Err(e) => Run {
            code: -1,
            stdout: String::new(),
            stderr: format!("error: cannot start wasmless (did cargo build the binaries?): {e}"),
        },
    }
}

/// A WAT module (WAGI) that writes `cgi` (headers, a blank line, the body) to stdout and
/// `log` to stderr. `\n` in either is a newline.
pub fn wat_cgi(cgi: &str, log: &str) -> String {
    let len = |s: &str| s.replace("\\n", "\n").len();
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "{cgi}")
  (data (i32.const 4096) "{log}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const {out_len}))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 4096))
    (i32.store (i32.const 4) (i32.const {log_len}))
    (drop (call $w (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#,
        out_len = len(cgi),
        log_len = len(log)
    )
}
