//! Density: how many functions one host holds, through `wasmless up`.
//!
//! - `wat`: N WAT hellos (one source, so built once; each function loaded as a module of its
//!   own, as distinct functions are), for each N: the time from start to ready on a store that
//!   has the artifact, RSS after loading and after load, and p50 under wrk with every request
//!   to a random one of the N, against one function with the same script (the baseline). A host
//!   not ready within the budget is measured as it stands, and larger counts are skipped.
//! - `python`: N distinct Python hellos (one build each), then a host restarted on that store:
//!   RSS after one request each, against a host with no function; below 1,000 functions, what
//!   1,000 would take by extrapolation.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use wasmless_api::FunctionManifest;
use wasmless_e2e::{Served, wat_manifest};

use crate::local::{self, Phases};
use crate::report::{self, Memory, goal, mib};
use crate::{runtimes, wrk};

const NAMESPACE: &str = "density";
/// Bounds the Python hosts' builds and loads, should one never settle.
const LOAD_LIMIT: Duration = Duration::from_secs(1800);

/// One host of `count` WAT functions, measured.
struct Row {
    count: usize,
    /// From start to ready; none when it was not ready within the budget.
    load: Option<Duration>,
    loaded: Memory,
    after: Memory,
    phases: Phases,
    /// Under wrk (none unless every function loaded).
    load_under: Option<wrk::Load>,
}

impl Row {
    fn complete(&self) -> bool {
        self.load.is_some() && self.phases.ready() == self.count
    }

    fn p50(&self) -> f64 {
        self.load_under.as_ref().map_or(f64::NAN, |l| l.p50_ms)
    }
}

/// `budget`: the longest one host may take to load; a host still loading then is measured as
/// it is (how many functions it loaded, its RSS) and the counts after it are skipped.
pub async fn wat(counts: &[usize], secs: u32, budget: Duration) -> anyhow::Result<()> {
    let store = tempfile::tempdir()?;
    println!(
        "density: WAT hellos in one `wasmless up`, one source (built once, each loaded as its own module); wrk -t2 -c64 -d{secs}s, each request to a random function; load budget {}; vm.max_map_count {}",
        report::secs(budget),
        report::max_map_count().map_or("unknown".into(), report::count)
    );
    // The one build, so that each row measures loading alone.
    host_of(1, store.path(), None, budget)
        .await
        .context("first build")?;
    let baseline = host_of(1, store.path(), Some(secs), budget).await?;
    println!(
        "{:>9} {:>9} {:>10} {:>10} {:>12} {:>9} {:>10} {:>9} {:>8} {:>9}  not loaded",
        "functions",
        "load s",
        "RSS",
        "anon",
        "per function",
        "mappings",
        "req/s",
        "p50 ms",
        "vs one",
        "p99 ms",
    );
    print_row(&baseline, &baseline);
    let mut rows = Vec::new();
    for &count in counts {
        let row = host_of(count, store.path(), Some(secs), budget).await?;
        print_row(&row, &baseline);
        let complete = row.complete();
        rows.push(row);
        if !complete {
            println!("  (stopping here: not every function loaded)");
            break;
        }
    }
    wat_goals(&rows, &baseline);
    Ok(())
}

/// Starts a host of `count` WAT hellos on `store`; with `secs`, also puts it under load.
async fn host_of(
    count: usize,
    store: &Path,
    secs: Option<u32>,
    budget: Duration,
) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let manifests = (0..count).map(|i| wat_manifest(NAMESPACE, &format!("f{i}"), "hello world"));
    local::write_manifests(dir.path(), manifests)?;
    let started = Instant::now();
    let mut up = local::start(dir.path(), store, &[])?;
    let load = match local::until_ready(&up, budget).await {
        Ok(()) => Some(started.elapsed()),
        Err(_) => None,
    };
    let phases = local::phases(&up).await?;
    let loaded = Memory::of(up.process.id())?;
    // Under load only when every function serves: wrk picks any of them.
    let load_under = match secs {
        Some(secs) if load.is_some() && phases.ready() == count => {
            let addr = up.functions;
            Some(
                tokio::task::spawn_blocking(move || wrk::spread(addr, NAMESPACE, count, secs))
                    .await??,
            )
        }
        _ => None,
    };
    let after = Memory::of(up.process.id())?;
    if load.is_some() {
        up.process.terminate()?;
    } else {
        // Still loading: it may take longer than the harness waits to stop (measured with
        // 100,000 functions), and what it holds is measured already.
        up.process.kill();
    }
    Ok(Row {
        count,
        load,
        loaded,
        after,
        phases,
        load_under,
    })
}

fn print_row(row: &Row, baseline: &Row) {
    let loaded = row.phases.ready();
    let per_function = per_function(row, baseline);
    let not_loaded = row.count.saturating_sub(loaded);
    let failure = match (&row.phases.first_failure, not_loaded) {
        (_, 0) => String::new(),
        (Some(f), n) => format!("{n}: {f}"),
        (None, n) => format!("{n} (still loading)"),
    };
    let load = row.load.map_or(String::from("> budget"), |d| {
        format!("{:.2}", d.as_secs_f64())
    });
    let (rps, p50, vs_one, p99, errors) = match &row.load_under {
        Some(l) => (
            format!("{:.0}", l.requests_per_second),
            format!("{:.2}", l.p50_ms),
            format!("{:.2}x", l.p50_ms / baseline.p50()),
            format!("{:.2}", l.p99_ms),
            l.errors.clone(),
        ),
        None => (
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            String::new(),
        ),
    };
    println!(
        "{:>9} {:>9} {:>10} {:>10} {:>12} {:>9} {:>10} {:>9} {:>8} {:>9}  {}{}",
        report::count(row.count),
        load,
        mib(row.after.rss),
        mib(row.after.anon),
        if row.count > 1 {
            report::kib(per_function)
        } else {
            "-".into()
        },
        row.after.maps,
        rps,
        p50,
        vs_one,
        p99,
        failure,
        if errors.is_empty() {
            String::new()
        } else {
            format!(" [{errors}]")
        }
    );
    if row.loaded.rss != row.after.rss {
        println!(
            "{:>9} RSS right after loading {}, after the load {}",
            "",
            mib(row.loaded.rss),
            mib(row.after.rss)
        );
    }
}

/// RSS a function adds, from the host with one function to this one.
fn per_function(row: &Row, baseline: &Row) -> f64 {
    let added = row.phases.ready().saturating_sub(1).max(1);
    row.after.rss.saturating_sub(baseline.after.rss) as f64 / added as f64
}

/// The goals: 100,000 WAT functions within 2 GiB, p50 within 10 % of one function.
fn wat_goals(rows: &[Row], baseline: &Row) {
    const GOAL: usize = 100_000;
    let Some(largest) = rows.last() else {
        return;
    };
    let loaded = largest.phases.ready();
    let at_goal = baseline.after.rss as f64 + per_function(largest, baseline) * GOAL as f64;
    let measured = format!(
        "{} with {} loaded",
        mib(largest.after.rss),
        report::count(loaded)
    );
    let (figure, met) = if largest.complete() && loaded >= GOAL {
        (measured, largest.after.rss <= 2 << 30)
    } else {
        (
            format!(
                "{measured} of {} (EXTRAPOLATED to 100,000: {})",
                report::count(largest.count),
                mib(at_goal as u64)
            ),
            false,
        )
    };
    let one = format!("{} with one function", mib(baseline.after.rss));
    goal(
        "density: 100,000 WAT functions, host RSS",
        "≤ 2 GiB",
        &figure,
        &one,
        met,
    );
    if let Some(row) = rows.iter().rev().find(|r| r.complete()) {
        let ratio = row.p50() / baseline.p50();
        goal(
            "density: WAT p50 with many functions",
            "within 10 % of one function, at 100,000",
            &format!(
                "{:.2} ms at {} ({:.2}x)",
                row.p50(),
                report::count(row.count),
                ratio
            ),
            &format!("{:.2} ms with one function", baseline.p50()),
            row.count >= GOAL && ratio <= 1.10,
        );
    }
    let loads: Vec<String> = rows
        .iter()
        .map(|r| match r.load {
            Some(d) => format!("{} for {}", report::secs(d), report::count(r.count)),
            None => format!(
                "{} of {} within the budget",
                report::count(r.phases.ready()),
                report::count(r.count)
            ),
        })
        .collect();
    goal(
        "density: load time of many WAT functions",
        "linear in the count (10,000: 20 s when the issue was filed)",
        &loads.join(", "),
        &format!(
            "{} for one",
            report::secs(baseline.load.unwrap_or_default())
        ),
        linear(rows),
    );
}

/// Whether load time grew at most 1.5 times faster than the count between the complete rows.
fn linear(rows: &[Row]) -> bool {
    let complete: Vec<(usize, Duration)> = rows
        .iter()
        .filter_map(|r| Some((r.count, r.load?)))
        .collect();
    complete.len() == rows.len()
        && complete.windows(2).all(|w| {
            let counts = w[1].0 as f64 / w[0].0 as f64;
            let times = w[1].1.as_secs_f64() / w[0].1.as_secs_f64().max(1e-6);
            times <= counts * 1.5
        })
}

pub async fn python(functions: &Path, count: usize) -> anyhow::Result<()> {
    let hello = runtimes::hello_of(&functions.join("python/functions.yaml"))?;
    let store = tempfile::tempdir()?;
    let dir = tempfile::tempdir()?;
    let names: Vec<String> = (0..count).map(|i| format!("py{i}")).collect();
    let manifests = names
        .iter()
        .enumerate()
        .map(|(i, name)| distinct(&hello, name, i));
    local::write_manifests(
        dir.path(),
        manifests.collect::<anyhow::Result<Vec<_>>>()?.into_iter(),
    )?;
    println!("density: {count} distinct Python hellos in one `wasmless up` (each its own build)");

    let started = Instant::now();
    let (mut builder_run, _) =
        local::start_ready(dir.path(), store.path(), &[], LOAD_LIMIT).await?;
    let phases = local::phases(&builder_run).await?;
    anyhow::ensure!(
        phases.ready() == count,
        "not every Python function built: {:?} {}",
        phases.counts,
        phases.first_failure.unwrap_or_default()
    );
    println!("  built all {count} in {}", report::secs(started.elapsed()));
    builder_run.process.terminate()?;

    // The host as it runs on: restarted on its store, so no compiler's memory is in it.
    let empty = tempfile::tempdir()?;
    let (mut none, _) = local::start_ready(empty.path(), store.path(), &[], LOAD_LIMIT).await?;
    let base = Memory::of(none.process.id())?;
    none.process.terminate()?;
    let (mut up, load) = local::start_ready(dir.path(), store.path(), &[], LOAD_LIMIT).await?;
    let loaded = Memory::of(up.process.id())?;
    call_each(&up, &names).await?;
    let after = Memory::of(up.process.id())?;
    up.process.terminate()?;
    python_report(
        count,
        load,
        base,
        loaded,
        after,
        artifact_bytes(store.path()),
    );
    Ok(())
}

/// `hello` as function `name`, its source made distinct by a comment.
fn distinct(hello: &FunctionManifest, name: &str, i: usize) -> anyhow::Result<String> {
    let mut m = hello.clone();
    m.metadata.name = name.to_string();
    m.metadata.namespace = Some(NAMESPACE.into());
    m.spec.function = format!("{}\n# distinct function {i}\n", m.spec.function);
    Ok(serde_yaml::to_string(&m)?)
}

/// One request to each function (each keeps a warm instance afterwards, as it would serving).
async fn call_each(up: &Served, names: &[String]) -> anyhow::Result<()> {
    let client = local::client()?;
    for name in names {
        let host = format!("{name}.{NAMESPACE}");
        anyhow::ensure!(
            local::answers(&client, up.functions, &host).await,
            "{host} did not answer 200"
        );
    }
    Ok(())
}

/// Bytes the store keeps: (wasm, precompiled, files) summed over every function (a Python
/// function's wasm and precompiled code are the interpreter's, stored once).
fn artifact_bytes(store: &Path) -> (u64, u64, u64) {
    let sum = |dir: &Path| -> u64 {
        wasmless_e2e::files_under(dir)
            .iter()
            .map(|(_, size)| size)
            .sum()
    };
    (
        sum(&store.join("wasm")),
        sum(&store.join("precompiled")),
        sum(&store.join("files")),
    )
}

fn python_report(
    count: usize,
    load: Duration,
    base: Memory,
    loaded: Memory,
    after: Memory,
    (wasm, precompiled, files): (u64, u64, u64),
) {
    let n = count.max(1) as f64;
    let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / n;
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "host", "RSS", "anon", "file-backed"
    );
    for (label, m) in [
        ("no function (baseline)".to_string(), base),
        (format!("{count} loaded, before any request"), loaded),
        (format!("{count} after one request each"), after),
    ] {
        println!(
            "{label:<44} {:>10} {:>10} {:>10}",
            mib(m.rss),
            mib(m.anon),
            mib(m.file())
        );
    }
    let per_function = per(after.rss, base.rss);
    println!(
        "  per function after one request: {} RSS ({} anonymous, {} file-backed); loaded in {}; store: {} wasm + {} precompiled in all, {} of files per function",
        report::mib_f(per_function),
        report::mib_f(per(after.anon, base.anon)),
        report::mib_f(per(after.file(), base.file())),
        report::secs(load),
        mib(wasm),
        mib(precompiled),
        report::kib(files as f64 / n),
    );
    // Measured at 1,000 or more; below, a line through the measured count.
    let (at_1000, how) = if count >= 1000 {
        (after.rss as f64, format!("measured with {count}"))
    } else {
        let extrapolated = base.rss as f64 + per_function * 1000.0;
        println!(
            "  EXTRAPOLATED (not measured) to 1,000 distinct Python functions: {} RSS",
            mib(extrapolated as u64),
        );
        (extrapolated, format!("extrapolated from {count}"))
    };
    goal(
        "density: 1,000 distinct Python functions, host RSS",
        "≤ 4 GiB",
        &format!(
            "{} {how} ({} per function)",
            mib(at_1000 as u64),
            report::mib_f(per_function)
        ),
        &format!("{} with no function", mib(base.rss)),
        at_1000 <= 4.0 * f64::from(1u32 << 30),
    );
}
