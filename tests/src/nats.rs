//! A real NATS server (built from the Go module proxy by `scripts/nats-server.sh`) on a free
//! loopback port, for the NATSTrigger suite.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::{Process, wait_until};

pub struct NatsServer {
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    _process: Process,
}

impl NatsServer {
    /// Builds it the first time (~35 s), then starts it and waits until it takes connections.
    pub async fn start() -> anyhow::Result<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/nats-server.sh");
        let built = Command::new(&script)
            .output()
            .with_context(|| format!("run {}", script.display()))?;
        if !built.status.success() {
            bail!(
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&built.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&built.stdout);
        let binary = stdout
            .lines()
            .last()
            .context("nats-server.sh printed no path")?
            .to_string();
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = Command::new(&binary);
        command.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        let process = Process::spawn(command, "nats-server")?;
        wait_until(Duration::from_secs(30), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await
        .context("nats-server did not listen")?;
        Ok(Self {
            url: format!("nats://127.0.0.1:{port}"),
            _process: process,
        })
    }
}
