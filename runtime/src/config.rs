//! The host's and engine's settings as flags (each with a `WASMLESS_…` environment variable),
//! flattened by both `wasmless-host` and `wasmless up` so there is one copy of them.

use std::time::Duration;

use crate::admission::AdmissionLimits;
use crate::engine::EngineConfig;
use crate::host::HostConfig;
use crate::server::{ConnectionLimits, Drain, MIN_HEADER_BYTES};
use crate::warm::WarmLimits;
use wasmless_api::limits::parse_quantity;

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
    #[arg(long, env = "WASMLESS_FUNC_PORT", default_value_t = wasmless_api::cluster::FUNCTION_PORT)]
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
    /// Map each module's initial memory copy-on-write (true) or copy it into each instance
    /// (false: faster for many small functions and fresh instances, more memory per instance of
    /// a large image such as Python's).
    #[arg(long, env = "WASMLESS_MEMORY_INIT_COW", default_value_t = true, action = clap::ArgAction::Set)]
    pub memory_init_cow: bool,
    /// Milliseconds between the engine's epoch ticks: how precisely timeouts fire.
    #[arg(long, env = "WASMLESS_EPOCH_TICK_MS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub epoch_tick_ms: u64,
    /// Functions whose compiled code stays loaded (0: every one). Past it, the least recently
    /// used are dropped and loaded again from their artifact at their next request: each
    /// loaded module holds ~2 of the kernel's vm.max_map_count mappings, ~33 KiB and, with
    /// --memory-init-cow, a file descriptor (keep it under half the open-files limit).
    #[arg(long, env = "WASMLESS_MAX_RESIDENT_FUNCTIONS", default_value_t = crate::host::DEFAULT_MAX_RESIDENT)]
    pub max_resident_functions: usize,
    /// Instances running at once across all functions; more wait in the queue, then get 503.
    /// At most --total-stacks.
    #[arg(long, env = "WASMLESS_MAX_CONCURRENCY", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: u32,
    /// Instances of one function running at once; more wait in the queue, then get 429.
    #[arg(long, env = "WASMLESS_MAX_CONCURRENCY_PER_FUNCTION", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency_per_function: u32,
    /// Requests waiting for an instance across all functions; more are refused at once.
    #[arg(long, env = "WASMLESS_MAX_QUEUED", default_value_t = 128)]
    pub max_queued: u32,
    /// Requests of one function waiting for an instance; more are refused at once.
    #[arg(long, env = "WASMLESS_MAX_QUEUED_PER_FUNCTION", default_value_t = 16)]
    pub max_queued_per_function: u32,
    /// Milliseconds a request may wait in the queue before it is refused.
    #[arg(long, env = "WASMLESS_QUEUE_TIMEOUT_MS", default_value_t = 1_000)]
    pub queue_timeout_ms: u64,
    /// The most linear memory the running instances may have between them, a quantity: the sum
    /// of their `memory` caps never exceeds it (more wait, then get 503).
    #[arg(long, env = "WASMLESS_MEMORY_BUDGET", default_value = "8Gi", value_parser = quantity)]
    pub memory_budget: u64,
    /// The longest `timeout` a function may have on this host, in seconds; longer ones are not
    /// loaded.
    #[arg(long, env = "WASMLESS_MAX_TIMEOUT", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_timeout: u64,
    /// What a WAGI function may write to stdout (its response) per request, a quantity.
    #[arg(long, env = "WASMLESS_MAX_STDOUT", default_value = "16Mi", value_parser = quantity_usize)]
    pub max_stdout: usize,
    /// What an instance may write to stderr per request, and what a function's log buffer
    /// keeps, a quantity.
    #[arg(long, env = "WASMLESS_MAX_LOG_BYTES", default_value = "1Mi", value_parser = quantity_usize)]
    pub max_log_bytes: usize,
    /// Milliseconds a request body may take to arrive; slower ones get 408.
    #[arg(long, env = "WASMLESS_BODY_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_ms: u64,
    /// Milliseconds a connection may take to send a request head (the first, or the next on a
    /// kept-alive connection) before it is closed.
    #[arg(long, env = "WASMLESS_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_ms: u64,
    /// Largest request head (request line and headers), a quantity of at least 8Ki; larger
    /// ones get 431.
    #[arg(long, env = "WASMLESS_MAX_HEADER_BYTES", default_value = "64Ki", value_parser = header_bytes)]
    pub max_header_bytes: usize,
    /// Most header fields in one request; more get 431.
    #[arg(long, env = "WASMLESS_MAX_HEADERS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_headers: u64,
    /// Idle instances kept across all functions for later requests (each function keeps at most
    /// its `warmInstances`).
    #[arg(long, env = "WASMLESS_MAX_WARM_INSTANCES", default_value_t = 256)]
    pub max_warm_instances: usize,
    /// The linear memory idle instances may hold between them, a quantity.
    #[arg(long, env = "WASMLESS_WARM_MEMORY", default_value = "2Gi", value_parser = quantity)]
    pub warm_memory: u64,
    /// Connections open at once on the function listener; more are answered 503 and closed.
    #[arg(long, env = "WASMLESS_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// On SIGTERM, the function listener goes on accepting until no connection has come for
    /// this many milliseconds (what sends clients here is updated after the stop), then stops
    /// listening while requests in flight finish; 0 stops it at once.
    #[arg(long, env = "WASMLESS_DRAIN_QUIET_MS", default_value_t = 0)]
    pub drain_quiet_ms: u64,
    /// The longest such drain, in milliseconds.
    #[arg(long, env = "WASMLESS_DRAIN_MAX_MS", default_value_t = 30_000)]
    pub drain_max_ms: u64,
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
                memory_init_cow: self.memory_init_cow,
                epoch_tick: Duration::from_millis(self.epoch_tick_ms),
                compile_cache: None,
            },
            max_body_bytes: self.max_body,
            log_lines: self.log_lines,
            port: self.func_port,
            admission: AdmissionLimits {
                // One async stack per running instance: more could only fail inside wasmtime.
                max_in_flight: self.max_concurrency.min(self.total_stacks),
                max_in_flight_per_function: self.max_concurrency_per_function,
                max_queued: self.max_queued,
                max_queued_per_function: self.max_queued_per_function,
                queue_timeout: Duration::from_millis(self.queue_timeout_ms),
                memory_budget_bytes: self.memory_budget,
            },
            max_timeout: Duration::from_secs(self.max_timeout),
            max_stdout_bytes: self.max_stdout,
            max_log_bytes: self.max_log_bytes,
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            connections: ConnectionLimits {
                max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
                header_timeout: Duration::from_millis(self.header_timeout_ms),
                max_header_bytes: self.max_header_bytes,
                max_headers: usize::try_from(self.max_headers).unwrap_or(usize::MAX),
                drain: Drain {
                    quiet: Duration::from_millis(self.drain_quiet_ms),
                    max: Duration::from_millis(self.drain_max_ms),
                },
            },
            warm: WarmLimits {
                max_instances: self.max_warm_instances,
                max_bytes: self.warm_memory,
            },
            max_resident: self.max_resident_functions,
            path_routing: false,
        }
    }
}

fn quantity(text: &str) -> Result<u64, String> {
    parse_quantity(text).map_err(|e| e.to_string())
}

fn quantity_usize(text: &str) -> Result<usize, String> {
    usize::try_from(quantity(text)?).map_err(|_| format!("{text:?} is too large"))
}

fn header_bytes(text: &str) -> Result<usize, String> {
    let n = quantity_usize(text)?;
    if n < MIN_HEADER_BYTES {
        return Err(format!(
            "{text:?} is below 8Ki, the least the HTTP server can apply"
        ));
    }
    Ok(n)
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
    fn admission_and_connection_flags_reach_the_config() {
        let c = parse(&[
            "--max-concurrency",
            "20",
            "--max-concurrency-per-function",
            "5",
            "--max-queued",
            "7",
            "--max-queued-per-function",
            "3",
            "--queue-timeout-ms",
            "250",
            "--memory-budget",
            "1Gi",
            "--max-timeout",
            "60",
            "--max-stdout",
            "1Mi",
            "--max-log-bytes",
            "4Ki",
            "--body-timeout-ms",
            "500",
            "--header-timeout-ms",
            "1500",
            "--max-header-bytes",
            "16Ki",
            "--max-headers",
            "20",
            "--max-connections",
            "50",
            "--drain-quiet-ms",
            "2000",
            "--drain-max-ms",
            "20000",
        ])
        .expect("flags parse");
        let a = &c.admission;
        assert_eq!(
            (a.max_in_flight, a.max_in_flight_per_function, a.max_queued),
            (20, 5, 7)
        );
        assert_eq!(a.max_queued_per_function, 3);
        assert_eq!(a.queue_timeout, Duration::from_millis(250));
        assert_eq!(a.memory_budget_bytes, 1 << 30);
        assert_eq!(c.max_timeout, Duration::from_secs(60));
        assert_eq!((c.max_stdout_bytes, c.max_log_bytes), (1 << 20, 4 << 10));
        assert_eq!(c.body_timeout, Duration::from_millis(500));
        assert_eq!(
            c.connections,
            ConnectionLimits {
                max_connections: 50,
                header_timeout: Duration::from_millis(1500),
                max_header_bytes: 16 << 10,
                max_headers: 20,
                drain: Drain {
                    quiet: Duration::from_secs(2),
                    max: Duration::from_secs(20),
                },
            }
        );
        // No more instances than async stacks.
        let c = parse(&["--total-stacks", "10"]).expect("flags parse");
        assert_eq!(c.admission.max_in_flight, 10);
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["--max-body", "8MB"][..],
            &["--max-memory", "lots"],
            &["--epoch-tick-ms", "0"],
            &["--total-stacks", "-1"],
            &["--max-header-bytes", "4Ki"],
            &["--max-concurrency", "0"],
            &["--memory-budget", "8GB"],
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
