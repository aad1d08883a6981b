//! `wasmless-builder` as a child process on loopback, with a random port and token: how
//! `wasmless up` and `wasmless-controller build` build, through the same [`crate::Client`] as a
//! cluster's controller.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use thiserror::Error;

/// What the builder prints once it listens.
pub const ANNOUNCE: &str = "wasmless-builder: builds on ";

#[derive(Debug, Error)]
pub enum LocalError {
    #[error(
        "cannot start {binary}: {source} (build it with `cargo build -p wasmless-builder`, or name it with --builder-bin / WASMLESS_BUILDER_BIN)"
    )]
    Start {
        binary: String,
        source: std::io::Error,
    },
    #[error("wasmless-builder did not say where it listens: {0}")]
    Announce(String),
    #[error("cannot make a token: {0}")]
    Token(std::io::Error),
}

/// A running `wasmless-builder`, killed on drop (and when this process dies).
pub struct LocalBuilder {
    child: Child,
    pub url: String,
    pub token: String,
}

impl LocalBuilder {
    /// Starts `binary` (else `wasmless-builder` beside this executable, else on `PATH`) with
    /// `args` (`--build-timeout` …) on a free loopback port.
    pub fn spawn(binary: Option<&Path>, args: &[String]) -> Result<Self, LocalError> {
        let binary = binary.map_or_else(beside_this_executable, Path::to_path_buf);
        let token = random_token().map_err(LocalError::Token)?;
        let mut command = Command::new(&binary);
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("WASMLESS_BUILDER_TOKEN", &token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: prctl with integer arguments only, between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|source| LocalError::Start {
            binary: binary.display().to_string(),
            source,
        })?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| LocalError::Announce("no stdout".into()))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
                if let Some(url) = line.trim().strip_prefix(ANNOUNCE) {
                    let _ = tx.send(url.to_string());
                    break;
                }
                line.clear();
            }
            // Keep draining, so that the builder never blocks on a full pipe.
            let _ = std::io::copy(&mut lines.into_inner().take(u64::MAX), &mut std::io::sink());
        });
        let mut local = Self {
            child,
            url: String::new(),
            token,
        };
        local.url = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|e| LocalError::Announce(e.to_string()))?;
        Ok(local)
    }
}

impl Drop for LocalBuilder {
    fn drop(&mut self) {
        // SIGTERM first: the builder kills the builds it runs before it exits.
        // SAFETY: kill with the child's pid; nothing is dereferenced.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `wasmless-builder` beside this executable, else on `PATH`.
fn beside_this_executable() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("wasmless-builder")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("wasmless-builder"))
}

fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
