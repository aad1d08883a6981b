//! `function top`: Kubeless's columns (calls, failures, total and average duration per function
//! and method), summed over every host's Prometheus metrics.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::output::{Format, print_value, table};
use crate::target::Target;

#[derive(clap::Args)]
pub struct TopArgs {
    /// Only these functions.
    names: Vec<String>,
    /// Functions of every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    #[arg(short, long, value_enum, default_value = "table")]
    output: Format,
}

/// One function and method, as Kubeless's `top` printed it.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Row {
    pub function: String,
    pub namespace: String,
    pub method: String,
    pub total_calls: f64,
    pub total_failures: f64,
    pub total_duration_seconds: f64,
    pub avg_duration_seconds: f64,
}

pub async fn run(target: &Target, args: TopArgs) -> anyhow::Result<()> {
    let texts = target.metrics().await?;
    let namespace = (!args.all_namespaces).then(|| target.namespace());
    let rows: Vec<Row> = aggregate(&texts)
        .into_iter()
        .filter(|r| namespace.is_none_or(|ns| r.namespace == ns))
        .filter(|r| args.names.is_empty() || args.names.contains(&r.function))
        .collect();
    match args.output {
        Format::Json | Format::Yaml => print_value(&serde_json::to_value(&rows)?, args.output),
        Format::Table | Format::Wide => {
            let header = [
                "NAME",
                "NAMESPACE",
                "METHOD",
                "TOTAL_CALLS",
                "TOTAL_FAILURES",
                "TOTAL_DURATION_SECONDS",
                "AVG_DURATION_SECONDS",
            ];
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.function.clone(),
                        r.namespace.clone(),
                        r.method.clone(),
                        r.total_calls.to_string(),
                        r.total_failures.to_string(),
                        format!("{:.6}", r.total_duration_seconds),
                        format!("{:.6}", r.avg_duration_seconds),
                    ]
                })
                .collect();
            print!("{}", table(&header, &cells));
            Ok(())
        }
    }
}

/// Sums the per-function series of several hosts' metrics.
pub fn aggregate(texts: &[String]) -> Vec<Row> {
    let mut rows: BTreeMap<(String, String, String), Row> = BTreeMap::new();
    for text in texts {
        for line in text.lines() {
            let Some(Sample {
                name,
                labels,
                value,
            }) = sample(line)
            else {
                continue;
            };
            let label = |k: &str| {
                labels
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default()
            };
            let id = (label("namespace"), label("function"), label("method"));
            let row = rows.entry(id.clone()).or_insert_with(|| Row {
                namespace: id.0,
                function: id.1,
                method: id.2,
                ..Row::default()
            });
            match name {
                "function_calls_total" => row.total_calls += value,
                "function_failures_total" => row.total_failures += value,
                "function_duration_seconds_sum" => row.total_duration_seconds += value,
                _ => {}
            }
        }
    }
    rows.into_values()
        .filter(|r| r.total_calls > 0.0)
        .map(|mut r| {
            r.avg_duration_seconds = r.total_duration_seconds / r.total_calls;
            r
        })
        .collect()
}

/// One line of Prometheus text: `name{k="v",...} value`.
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, &'a str)>,
    value: f64,
}

/// The per-function series' samples; anything else is `None`.
fn sample(line: &str) -> Option<Sample<'_>> {
    let (name, rest) = line.split_once('{')?;
    if !name.starts_with("function_") {
        return None;
    }
    let (labels, value) = rest.rsplit_once('}')?;
    let value = value.split_whitespace().next()?.parse().ok()?;
    // Namespaces, names and methods never hold quotes or commas, so a plain split is exact.
    let labels = labels
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim(), v.trim().trim_matches('"')))
        })
        .collect();
    Some(Sample {
        name,
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_hosts_and_averages() {
        let host = |calls: u32, sum: f64| {
            format!(
                "# TYPE function_calls counter\nfunction_calls_total{{namespace=\"test\",function=\"hello\",method=\"GET\"}} {calls}\nfunction_failures_total{{namespace=\"test\",function=\"hello\",method=\"GET\"}} 1\nfunction_duration_seconds_sum{{namespace=\"test\",function=\"hello\",method=\"GET\"}} {sum}\nfunction_duration_seconds_bucket{{le=\"0.1\",namespace=\"test\",function=\"hello\",method=\"GET\"}} {calls}\nwasmless_functions_loaded 1\n"
            )
        };
        let rows = aggregate(&[host(3, 0.3), host(1, 0.1)]);
        assert_eq!(rows.len(), 1, "{rows:?}");
        let r = &rows[0];
        assert_eq!(
            (
                r.function.as_str(),
                r.method.as_str(),
                r.total_calls,
                r.total_failures
            ),
            ("hello", "GET", 4.0, 2.0)
        );
        assert!((r.avg_duration_seconds - 0.1).abs() < 1e-9);
    }
}
