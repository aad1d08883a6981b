//! `function deploy` and `function update`: a Function from flags and a source file, then a wait
//! until it is Ready (or the build's error).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use wasmless_controller::source;
use wasmless_runtime::function::{DEFAULT_NAMESPACE, EnvVar, IntOrString};
use wasmless_runtime::validate::{self, Origin};
use wasmless_runtime::{FunctionKey, FunctionSpec};

use crate::output::Format;
use crate::progress::Spinner;
use crate::target::{Desired, Progress, Target};

/// Flags deploy and update share; on update, only the ones given change.
#[derive(clap::Args)]
pub struct SpecArgs {
    /// Kubeless "file.func", for source runtimes.
    #[arg(long)]
    handler: Option<String>,
    /// File whose text is the dependencies (requirements.txt, package.json, go.mod).
    #[arg(long, short = 'd', value_name = "FILE")]
    dependencies: Option<PathBuf>,
    /// Environment variable K=V (repeat the flag for more).
    #[arg(long, short = 'e', value_name = "K=V")]
    env: Vec<String>,
    /// Label K=V (repeat the flag for more; cluster only).
    #[arg(long, short = 'l', value_name = "K=V")]
    label: Vec<String>,
    /// Seconds a request may run before it gets 408 [default: 180].
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Linear-memory cap per instance, a quantity such as 64Mi [default: 256Mi].
    #[arg(long, value_name = "QUANTITY")]
    memory: Option<String>,
    /// Return once the function is accepted, without waiting for its build.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for Ready.
    #[arg(long, default_value = "600", value_name = "SECONDS")]
    wait_timeout: u64,
}

#[derive(clap::Args)]
pub struct DeployArgs {
    /// Function name.
    name: String,
    /// wat, wasm, go, nodejs or python (Kubeless names such as python3.8 too).
    #[arg(long)]
    runtime: String,
    /// The source: text is sent as text, anything else as base64; its sha256 is the checksum.
    #[arg(long, short = 'f', value_name = "FILE")]
    from_file: PathBuf,
    #[command(flatten)]
    spec: SpecArgs,
    /// Print the Function instead of deploying it.
    #[arg(long)]
    pub dryrun: bool,
    /// Output format of --dryrun.
    #[arg(short, long, value_enum, default_value = "yaml")]
    output: Format,
}

#[derive(clap::Args)]
pub struct UpdateArgs {
    /// Function name.
    name: String,
    #[arg(long)]
    runtime: Option<String>,
    #[arg(long, short = 'f', value_name = "FILE")]
    from_file: Option<PathBuf>,
    #[command(flatten)]
    spec: SpecArgs,
}

/// The spec and labels a deploy's flags ask for.
fn new_function(args: &DeployArgs) -> anyhow::Result<(FunctionSpec, BTreeMap<String, String>)> {
    let mut spec = FunctionSpec::default();
    fill(
        &mut spec,
        Some(&args.runtime),
        Some(&args.from_file),
        &args.spec,
    )?;
    Ok((spec, pairs(&args.spec.label, "--label")?))
}

pub fn dry_run(args: &DeployArgs, namespace: Option<&str>) -> anyhow::Result<()> {
    let (spec, labels) = new_function(args)?;
    let key = FunctionKey::new(namespace.unwrap_or(DEFAULT_NAMESPACE), &args.name);
    checked(&key, &spec, Origin::Cluster)?;
    let mut metadata = serde_json::json!({ "name": args.name });
    if let Some(ns) = namespace {
        metadata["namespace"] = ns.into();
    }
    if !labels.is_empty() {
        metadata["labels"] = serde_json::to_value(labels)?;
    }
    let function = serde_json::json!({
        "apiVersion": wasmless_runtime::function::API_VERSION,
        "kind": wasmless_runtime::function::KIND,
        "metadata": metadata,
        "spec": spec,
    });
    crate::output::print_value(&function, args.output)
}

pub async fn deploy(target: &Target, args: DeployArgs) -> anyhow::Result<()> {
    let (spec, labels) = new_function(&args)?;
    let key = target.key(&args.name);
    checked(&key, &spec, origin(target))?;
    let desired = Desired { key, labels, spec };
    let token = target.apply(&desired, true).await?;
    finish(target, &desired, token, &args.spec, "deployed").await
}

pub async fn update(target: &Target, args: UpdateArgs) -> anyhow::Result<()> {
    let key = target.key(&args.name);
    let current = target.get(&key).await?;
    let mut spec = current.spec;
    fill(
        &mut spec,
        args.runtime.as_deref(),
        args.from_file.as_deref(),
        &args.spec,
    )?;
    checked(&key, &spec, origin(target))?;
    let mut labels = current.labels;
    labels.extend(pairs(&args.spec.label, "--label")?);
    let desired = Desired { key, labels, spec };
    let token = target.apply(&desired, false).await?;
    finish(target, &desired, token, &args.spec, "updated").await
}

async fn finish(
    target: &Target,
    desired: &Desired,
    token: Option<i64>,
    args: &SpecArgs,
    done: &str,
) -> anyhow::Result<()> {
    let key = &desired.key;
    if args.no_wait {
        println!("function {key} {done}");
        return Ok(());
    }
    let started = Instant::now();
    let limit = Duration::from_secs(args.wait_timeout);
    let mut spinner = Spinner::new(key);
    loop {
        match target.progress(key, token).await? {
            Progress::Ready { url, artifact } => {
                let loaded = match &artifact {
                    Some(a) => target.serving(key, a).await?,
                    None => true,
                };
                if loaded {
                    spinner.finish(&format!(
                        "ready in {:.1} s",
                        started.elapsed().as_secs_f64()
                    ));
                    println!("function {key} {done}");
                    if let Some(url) = url {
                        println!("{url}");
                    }
                    return Ok(());
                }
                spinner.phase("loading");
            }
            Progress::Failed(message) => {
                spinner.finish("build failed");
                eprintln!("{}", message.trim_end());
                bail!(
                    "the build of {key} failed (above): fix the source and run `wasmless function update {}`",
                    key.name
                );
            }
            Progress::Waiting(phase) => spinner.phase(&phase),
        }
        if started.elapsed() > limit {
            spinner.finish("still waiting");
            bail!(
                "{key} is not ready after {} s: see `wasmless function describe {}`",
                limit.as_secs(),
                key.name
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a `url` source may name where the function goes.
fn origin(target: &Target) -> Origin<'static> {
    match target {
        Target::Cluster(_) => Origin::Cluster,
        Target::Local(_) => Origin::Inline,
    }
}

/// The validator's verdict, before anything is sent: every problem, on one line.
fn checked(key: &FunctionKey, spec: &FunctionSpec, origin: Origin) -> anyhow::Result<()> {
    validate::object(&key.name, &key.namespace, spec, origin)
        .map(|_| ())
        .with_context(|| format!("{key} is not valid, nothing was sent"))
}

/// Applies the flags to `spec`; `None`s leave fields as they are.
fn fill(
    spec: &mut FunctionSpec,
    runtime: Option<&str>,
    from_file: Option<&Path>,
    args: &SpecArgs,
) -> anyhow::Result<()> {
    if let Some(runtime) = runtime {
        spec.runtime = runtime.to_string();
    }
    if let Some(path) = from_file {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        spec.checksum = source::digest(&bytes);
        let (function, content_type) = source::encode(bytes);
        (spec.function, spec.function_content_type) = (function, content_type.into());
    }
    if let Some(handler) = &args.handler {
        spec.handler = handler.clone();
    }
    if let Some(path) = &args.dependencies {
        spec.deps = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    for (name, value) in pairs(&args.env, "--env")? {
        match spec.env.iter_mut().find(|e| e.name == name) {
            Some(e) => *e = EnvVar::new(name, value),
            None => spec.env.push(EnvVar::new(name, value)),
        }
    }
    if let Some(seconds) = args.timeout {
        // Out of range either way: the validator says so.
        spec.timeout = Some(IntOrString::Int(i64::try_from(seconds).unwrap_or(i64::MAX)));
    }
    if let Some(memory) = &args.memory {
        spec.memory = Some(IntOrString::String(memory.clone()));
    }
    Ok(())
}

/// `K=V` flags as a map.
fn pairs(flags: &[String], flag: &str) -> anyhow::Result<BTreeMap<String, String>> {
    flags
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => bail!("{flag} {kv:?} is not K=V"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SpecArgs {
        SpecArgs {
            handler: None,
            dependencies: None,
            env: vec!["A=1".into(), "B=x=y".into()],
            label: vec![],
            timeout: Some(5),
            memory: Some("64Mi".into()),
            no_wait: false,
            wait_timeout: 1,
        }
    }

    #[test]
    fn text_and_binary_sources_with_checksums() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let text = dir.path().join("f.wat");
        std::fs::write(&text, "(module)")?;
        let mut spec = FunctionSpec::default();
        fill(&mut spec, Some("wat"), Some(&text), &args())?;
        assert_eq!(
            (spec.function.as_str(), spec.function_content_type.as_str()),
            ("(module)", "text")
        );
        assert_eq!(spec.checksum, source::digest(b"(module)"));
        assert_eq!(spec.env.len(), 2);
        assert_eq!(spec.env[1].value, "x=y");
        assert_eq!(spec.memory, Some(IntOrString::String("64Mi".into())));

        let binary = dir.path().join("f.wasm");
        std::fs::write(&binary, b"\0asm\x01\0\0\0")?;
        fill(&mut spec, Some("wasm"), Some(&binary), &args())?;
        assert_eq!(spec.function_content_type, "base64");
        assert_eq!(source::decode(&spec, Origin::Cluster)?, b"\0asm\x01\0\0\0");
        assert_eq!(spec.env.len(), 2, "updating env replaces, never duplicates");
        Ok(())
    }

    #[test]
    fn bad_flags_are_one_line_before_anything_is_sent() {
        let key = FunctionKey::new("default", "f");
        let mut bad = args();
        bad.memory = Some("lots".into());
        bad.handler = Some("../../x.y".into());
        bad.timeout = Some(u64::MAX);
        let mut spec = FunctionSpec::default();
        fill(&mut spec, Some("cobol"), None, &bad).unwrap();
        let e = format!("{:#}", checked(&key, &spec, Origin::Cluster).unwrap_err());
        for field in [
            "spec.runtime",
            "spec.handler",
            "spec.timeout",
            "spec.memory",
        ] {
            assert!(e.contains(&format!("{field}: ")), "{field}: {e}");
        }
        assert!(
            e.starts_with("default/f is not valid, nothing was sent: "),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let e = checked(&FunctionKey::new("default", "a.b"), &spec, Origin::Inline);
        assert!(e.is_err());
        assert!(pairs(&["novalue".into()], "--env").is_err());
    }
}
