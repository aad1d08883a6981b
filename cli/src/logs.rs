//! `function logs`: what a function wrote to stderr, from the hosts' per-function buffers.

use std::time::Duration;

use crate::target::{Cursors, Target};

#[derive(clap::Args)]
pub struct LogsArgs {
    /// Function name.
    name: String,
    /// Keep printing new lines until interrupted.
    #[arg(short, long)]
    follow: bool,
}

pub async fn run(target: &Target, args: LogsArgs) -> anyhow::Result<()> {
    let key = target.key(&args.name);
    target.get(&key).await?;
    let mut cursors = Cursors::new();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        for line in target.logs(&key, &mut cursors).await? {
            println!("{}", line.line);
        }
        if !args.follow {
            return Ok(());
        }
        tokio::select! {
            _ = &mut interrupted => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
