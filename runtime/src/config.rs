//! The host's and engine's settings as flags (each with a `WASMLESS_…` environment variable),
//! flattened by both `wasmless-host` and `wasmless up` so there is one copy of them.

use std::time::Duration;

use crate::engine::EngineConfig;
use crate::host::HostConfig;
use crate::limits::parse_quantity;

/// Every [`HostConfig`] and [`EngineConfig`] field a user may set; the defaults are theirs.
#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "Host and engine")]
pub struct HostArgs {
    /// Largest request body, a quantity such as 8Mi; larger ones get 413.
    #[arg(long, env = "WASMLESS_MAX_BODY", default_value = "8Mi", value_parser = quantity_usize)]
    pub max_body: usize,
    /// Lines of stderr kept per function (`wasmless function logs`).
    #[arg(long, env = "WASMLESS_LOG_LINES", default_value_t = 1_000)]
    pub log_lines: usize,
    /// The port functions are told they serve on (FUNC_PORT).
    #[arg(long, env = "WASMLESS_FUNC_PORT", default_value_t = 8080)]
    pub func_port: u16,
    /// Largest linear memory of any instance, a quantity; a function's `memory` above it is
    /// refused.
    #[arg(long, env = "WASMLESS_MAX_MEMORY", default_value = "1Gi", value_parser = quantity)]
    pub max_memory: u64,
    /// Core instances alive at once across all functions (a Python component holds ~75 per
    /// request).
    #[arg(long, env = "WASMLESS_TOTAL_CORE_INSTANCES", default_value_t = 10_000)]
    pub total_core_instances: u32,
    /// Component instances alive at once across all functions.
    #[arg(
        long,
        env = "WASMLESS_TOTAL_COMPONENT_INSTANCES",
        default_value_t = 1_000
    )]
    pub total_component_instances: u32,
    /// Linear memories alive at once across all functions.
    #[arg(long, env = "WASMLESS_TOTAL_MEMORIES", default_value_t = 2_000)]
    pub total_memories: u32,
    /// Tables alive at once across all functions.
    #[arg(long, env = "WASMLESS_TOTAL_TABLES", default_value_t = 4_000)]
    pub total_tables: u32,
    /// Requests in flight at once (one async stack each).
    #[arg(long, env = "WASMLESS_TOTAL_STACKS", default_value_t = 1_000)]
    pub total_stacks: u32,
    /// Bytes of each pooled memory and table slot kept mapped between requests, a quantity.
    #[arg(long, env = "WASMLESS_KEEP_RESIDENT", default_value = "64Ki", value_parser = quantity_usize)]
    pub keep_resident: usize,
    /// Milliseconds between the engine's epoch ticks: how precisely timeouts fire.
    #[arg(long, env = "WASMLESS_EPOCH_TICK_MS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub epoch_tick_ms: u64,
}

impl HostArgs {
    /// The host configuration these flags describe (no compile cache: callers that compile set
    /// one).
    pub fn host_config(&self) -> HostConfig {
        HostConfig {
            engine: EngineConfig {
                max_memory_bytes: self.max_memory,
                total_core_instances: self.total_core_instances,
                total_component_instances: self.total_component_instances,
                total_memories: self.total_memories,
                total_tables: self.total_tables,
                total_stacks: self.total_stacks,
                keep_resident_bytes: self.keep_resident,
                epoch_tick: Duration::from_millis(self.epoch_tick_ms),
                compile_cache: None,
            },
            max_body_bytes: self.max_body,
            log_lines: self.log_lines,
            port: self.func_port,
        }
    }
}

fn quantity(text: &str) -> Result<u64, String> {
    parse_quantity(text).map_err(|e| e.to_string())
}

fn quantity_usize(text: &str) -> Result<usize, String> {
    usize::try_from(quantity(text)?).map_err(|_| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        host: HostArgs,
    }

    fn parse(args: &[&str]) -> Result<HostConfig, clap::Error> {
        Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied()))
            .map(|cli| cli.host.host_config())
    }

    #[test]
    fn no_flags_is_the_default_config() {
        let parsed = parse(&[]).expect("no flags parse");
        assert_eq!(
            format!("{parsed:?}"),
            format!("{:?}", HostConfig::default())
        );
    }

    #[test]
    fn flags_reach_the_config() {
        let c = parse(&[
            "--max-body",
            "1Ki",
            "--max-memory",
            "512Mi",
            "--keep-resident",
            "0",
            "--total-stacks",
            "10",
            "--epoch-tick-ms",
            "5",
            "--func-port",
            "80",
            "--log-lines",
            "7",
        ])
        .expect("flags parse");
        assert_eq!(c.max_body_bytes, 1024);
        assert_eq!(c.engine.max_memory_bytes, 512 << 20);
        assert_eq!(c.engine.keep_resident_bytes, 0);
        assert_eq!(c.engine.total_stacks, 10);
        assert_eq!(c.engine.epoch_tick, Duration::from_millis(5));
        assert_eq!((c.port, c.log_lines), (80, 7));
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["--max-body", "8MB"][..],
            &["--max-memory", "lots"],
            &["--epoch-tick-ms", "0"],
            &["--total-stacks", "-1"],
        ] {
            assert!(parse(args).is_err(), "{args:?} should be refused");
        }
    }

    /// Hosts load what the controller precompiled with the default engine: these flags must not
    /// change the engine's compatibility key.
    #[test]
    fn pool_settings_keep_precompiled_artifacts_valid() {
        let key = |c: &EngineConfig| {
            let engine = c.build().expect("engine builds");
            crate::engine::compatibility_key(&engine)
        };
        let tuned = parse(&[
            "--max-memory",
            "64Mi",
            "--total-core-instances",
            "100",
            "--total-component-instances",
            "10",
            "--total-memories",
            "20",
            "--total-tables",
            "40",
            "--total-stacks",
            "10",
            "--keep-resident",
            "0",
            "--epoch-tick-ms",
            "50",
        ])
        .expect("flags parse");
        assert_eq!(key(&tuned.engine), key(&EngineConfig::default()));
    }
}
