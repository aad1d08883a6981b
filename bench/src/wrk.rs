//! Load from `wrk` (Debian's), spread over many functions: each request goes to one of
//! `f0.<namespace>` … `f<count-1>.<namespace>`, picked at random by a Lua script, so that a host
//! of many functions is measured on all of them, and one function with the same script is the
//! baseline.

use std::net::SocketAddr;
use std::process::Command;

use anyhow::{Context, bail};

/// What one wrk run measured.
#[derive(Clone, Debug, Default)]
pub struct Load {
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// wrk's lines about non-2xx answers and socket errors, if any.
    pub errors: String,
}

const SCRIPT: &str = r#"
local count = 1
local namespace = "default"
function init(args)
  count = tonumber(args[1])
  namespace = args[2]
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end
function request()
  local host = "f" .. (math.random(count) - 1) .. "." .. namespace
  return wrk.format("GET", "/", {Host = host})
end
"#;

/// `wrk -t2 -c64 -d<secs>s --latency` against `addr`, each request to a random one of `count`
/// functions of `namespace`.
pub fn spread(addr: SocketAddr, namespace: &str, count: usize, secs: u32) -> anyhow::Result<Load> {
    let script = tempfile::Builder::new().suffix(".lua").tempfile()?;
    std::fs::write(script.path(), SCRIPT)?;
    let out = Command::new("wrk")
        .args(["-t2", "-c64", &format!("-d{secs}s"), "--latency", "-s"])
        .arg(script.path())
        .arg(format!("http://{addr}/"))
        .args(["--", &count.to_string(), namespace])
        .output()
        .context("run wrk (Debian package wrk)")?;
    if !out.status.success() {
        bail!(
            "wrk failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// Reads requests/s, the 50th and 99th percentiles and errors from wrk's `--latency` output.
pub fn parse(text: &str) -> anyhow::Result<Load> {
    let field = |name: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let requests_per_second = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .context("no Requests/sec in wrk's output")?;
    let percentile = |p: &str| {
        field(p)
            .and_then(millis)
            .with_context(|| format!("no {p} in wrk's output"))
    };
    let errors = text
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    Ok(Load {
        requests_per_second,
        p50_ms: percentile("50%")?,
        p99_ms: percentile("99%")?,
        errors,
    })
}

/// A wrk duration (`812.00us`, `1.21ms`, `2.01s`) in milliseconds.
fn millis(text: &str) -> Option<f64> {
    let unit_at = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(unit_at);
    let n: f64 = number.parse().ok()?;
    match unit {
        "us" => Some(n / 1e3),
        "ms" => Some(n),
        "s" => Some(n * 1e3),
        "m" => Some(n * 60e3),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_latency_output() -> anyhow::Result<()> {
        let text = "  Latency Distribution\n     50%  812.00us\n     75%    1.10ms\n     90%    1.50ms\n     99%    2.01s\n  100 requests in 1.00s, 10.00KB read\n  Non-2xx or 3xx responses: 3\nRequests/sec:  12345.67\n";
        let load = parse(text)?;
        assert!((load.requests_per_second - 12345.67).abs() < 1e-9);
        assert!((load.p50_ms - 0.812).abs() < 1e-9);
        assert!((load.p99_ms - 2010.0).abs() < 1e-9);
        assert_eq!(load.errors, "Non-2xx or 3xx responses: 3");
        Ok(())
    }
}
