//! Prometheus metrics. Per-function series keep Kubeless's names (`function_calls_total`,
//! `function_failures_total`, `function_duration_seconds`) so existing dashboards keep working.

use std::sync::OnceLock;
use std::time::Duration;

use http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::admission::{Reason, RejectedLabels};
use wasmless_api::function::FunctionKey;

const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    namespace: String,
    function: String,
    method: String,
}

type HistogramFamily = Family<CallLabels, Histogram, fn() -> Histogram>;

/// The host's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    failures: Family<CallLabels, Counter>,
    duration: HistogramFamily,
    pub functions_loaded: Gauge,
    /// Of those that may be dropped, the ones whose code is loaded now.
    pub functions_resident: Gauge,
    pub instances_live: Gauge,
    pub unrouted: Counter,
    rejected: Family<RejectedLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let calls = Family::<CallLabels, Counter>::default();
        let failures = Family::<CallLabels, Counter>::default();
        let duration: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        let functions_loaded = Gauge::default();
        let functions_resident = Gauge::default();
        let instances_live = Gauge::default();
        let unrouted = Counter::default();
        let rejected = Family::<RejectedLabels, Counter>::default();
        registry.register(
            "function_calls",
            "Number of calls to the function",
            calls.clone(),
        );
        registry.register(
            "function_failures",
            "Number of failed calls (5xx or timeout)",
            failures.clone(),
        );
        registry.register(
            "function_duration_seconds",
            "Duration of the function's calls",
            duration.clone(),
        );
        registry.register(
            "wasmless_functions_loaded",
            "Functions this host serves",
            functions_loaded.clone(),
        );
        registry.register(
            "wasmless_functions_resident",
            "Functions whose compiled code is loaded now, of those that may be dropped past --max-resident-functions",
            functions_resident.clone(),
        );
        registry.register(
            "wasmless_instances_live",
            "WebAssembly instances running a request now",
            instances_live.clone(),
        );
        registry.register(
            "wasmless_unrouted_requests",
            "Requests that named no loaded function (404)",
            unrouted.clone(),
        );
        registry.register(
            "wasmless_rejected",
            "Requests refused before running, and outbound calls refused, by reason",
            rejected.clone(),
        );
        Self {
            registry,
            rejected,
            calls,
            failures,
            duration,
            functions_loaded,
            functions_resident,
            instances_live,
            unrouted,
        }
    }
}

impl Metrics {
    /// Prometheus text exposition of everything.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("cannot encode metrics: {e}");
        }
        out
    }

    /// Counts one refusal.
    pub fn reject(&self, reason: Reason) {
        self.rejected_counter(reason).inc();
    }

    /// The counter of one reason, for code that counts without the registry at hand.
    pub fn rejected_counter(&self, reason: Reason) -> Counter {
        self.rejected
            .get_or_create(&RejectedLabels { reason })
            .clone()
    }

    /// One function's handles. Each common method's series is looked up in the family once,
    /// on its first call (so idle methods export nothing); after that a call touches only atomics.
    pub fn for_function(&self, key: &FunctionKey) -> FunctionMetrics {
        FunctionMetrics {
            key: key.clone(),
            common: Default::default(),
        }
    }

    fn series(&self, key: &FunctionKey, method: &str) -> MethodSeries {
        let labels = CallLabels {
            namespace: key.namespace.clone(),
            function: key.name.clone(),
            method: method.to_string(),
        };
        MethodSeries {
            calls: self.calls.get_or_create(&labels).clone(),
            failures: self.failures.get_or_create(&labels).clone(),
            duration: self.duration.get_or_create(&labels).clone(),
        }
    }

    /// Records one call of `f`.
    pub fn observe(&self, f: &FunctionMetrics, method: &Method, elapsed: Duration, failed: bool) {
        let index = COMMON_METHODS.iter().position(|m| m == method);
        let rare;
        let series = match index.and_then(|i| f.common.get(i)) {
            Some(cell) => cell.get_or_init(|| self.series(&f.key, method.as_str())),
            None => {
                rare = self.series(&f.key, method.as_str());
                &rare
            }
        };
        series.calls.inc();
        if failed {
            series.failures.inc();
        }
        series.duration.observe(elapsed.as_secs_f64());
    }
}

const COMMON_METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
];

#[derive(Clone)]
struct MethodSeries {
    calls: Counter,
    failures: Counter,
    duration: Histogram,
}

/// One function's series, resolved when it loads.
#[derive(Clone)]
pub struct FunctionMetrics {
    key: FunctionKey,
    common: [OnceLock<MethodSeries>; COMMON_METHODS.len()],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_calls_and_failures_with_kubeless_names() {
        let m = Metrics::default();
        let f = m.for_function(&FunctionKey::new("test", "hello"));
        m.observe(&f, &Method::GET, Duration::from_millis(3), false);
        m.observe(&f, &Method::GET, Duration::from_millis(3), true);
        m.observe(&f, &Method::OPTIONS, Duration::from_millis(3), true);
        let text = m.encode();
        let get = r#"{namespace="test",function="hello",method="GET"}"#;
        assert!(
            text.contains(&format!("function_calls_total{get} 2")),
            "{text}"
        );
        assert!(
            text.contains(&format!("function_failures_total{get} 1")),
            "{text}"
        );
        assert!(
            text.contains(&format!("function_duration_seconds_count{get} 2")),
            "{text}"
        );
        assert!(
            text.contains(
                r#"function_failures_total{namespace="test",function="hello",method="OPTIONS"} 1"#
            ),
            "{text}"
        );
        m.reject(Reason::function_concurrency);
        assert!(
            m.encode()
                .contains(r#"wasmless_rejected_total{reason="function_concurrency"} 1"#)
        );
    }
}
