//! `function logs`: what a function wrote to stderr, from the hosts' per-function buffers, each
//! line after the time the host recorded it (RFC 3339, UTC).

use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::jiff::Timestamp;

use crate::target::{Cursors, LogLine, Target};

#[derive(clap::Args)]
pub struct LogsArgs {
    /// Function name.
    name: String,
    /// Keep printing new lines until interrupted.
    #[arg(short, long)]
    follow: bool,
    /// Only lines written since this long ago (`30s`, `10m`, `2h`, `1d`, `1h30m`) or this RFC
    /// 3339 time (`2026-11-30T15:04:05Z`).
    #[arg(long, value_name = "DURATION|TIME")]
    since: Option<String>,
}

pub async fn run(target: &Target, args: LogsArgs) -> anyhow::Result<()> {
    let key = target.key(&args.name);
    let since = args
        .since
        .as_deref()
        .map(|s| since(s, Timestamp::now()))
        .transpose()?;
    target.get(&key).await?;
    let mut cursors = Cursors::new();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        for line in target.logs(&key, &mut cursors).await? {
            if since.is_some_and(|s| millis(&line) < s) {
                continue;
            }
            println!("{}", shown(&line));
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

/// `<time> <line>`, the time in UTC to the millisecond, always as wide (so that the text sorts
/// as the times do), as `kubectl logs --timestamps` prints them.
fn shown(line: &LogLine) -> String {
    let (seconds, millis) = (millis(line).div_euclid(1000), millis(line).rem_euclid(1000));
    match Timestamp::from_second(seconds) {
        Ok(t) => {
            let whole = t.to_string();
            let whole = whole.trim_end_matches('Z');
            format!("{whole}.{millis:03}Z {}", line.line)
        }
        Err(_) => format!("- {}", line.line),
    }
}

/// A line's time in whole milliseconds since the Unix epoch: what is shown and compared.
fn millis(line: &LogLine) -> i64 {
    (line.time * 1e3).floor() as i64
}

/// `--since` as milliseconds since the Unix epoch: an RFC 3339 time, or a duration before `now`.
fn since(value: &str, now: Timestamp) -> anyhow::Result<i64> {
    if let Ok(time) = value.parse::<Timestamp>() {
        return Ok(time.as_millisecond());
    }
    let ago = duration(value).with_context(|| {
        format!("--since {value:?} is neither a duration such as 10m nor an RFC 3339 time")
    })?;
    let ago = i64::try_from(ago.as_millis()).context("--since is too long ago")?;
    Ok(now.as_millisecond().saturating_sub(ago))
}

/// `1h30m`-style durations: numbers each followed by `s`, `m`, `h` or `d`.
fn duration(value: &str) -> anyhow::Result<Duration> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in value.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => bail!("unknown unit {c:?}"),
        };
        let n: u64 = digits
            .parse()
            .context("a number must come before each unit")?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .context("too long")?;
        digits.clear();
    }
    if !digits.is_empty() || value.trim().is_empty() {
        bail!("each number needs a unit (s, m, h or d)");
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_durations_and_times() -> anyhow::Result<()> {
        let now: Timestamp = "2026-11-30T16:00:00Z".parse()?;
        let at = |s: &str| since(s, now).map(|t| t / 1000);
        let epoch = now.as_second();
        assert_eq!(at("10m")?, epoch - 600);
        assert_eq!(at("1h30m")?, epoch - 5400);
        assert_eq!(at("2d")?, epoch - 2 * 86400);
        assert_eq!(at("2026-11-30T15:59:00Z")?, epoch - 60);
        assert_eq!(at("2026-11-30T16:59:00+01:00")?, epoch - 60);
        for bad in ["", "10", "m", "10x", "yesterday", "99999999999999999999d"] {
            assert!(at(bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn lines_carry_their_time() {
        let line = LogLine {
            seq: 1,
            time: 1_796_083_200.25,
            line: "hello".into(),
        };
        assert_eq!(shown(&line), "2026-12-01T00:00:00.250Z hello");
    }
}
