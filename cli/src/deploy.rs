//! `function deploy` and `function update`: a Function from flags and a source file, a `.zip` or
//! a directory, then a wait until it is Ready (or the build's error).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use wasmless_api::digest::Sha256Digest;
use wasmless_api::function::content::{self, ContentType};
use wasmless_api::function::{DEFAULT_NAMESPACE, EnvVar, IntOrString, Packaging, Runtime};
use wasmless_api::validate::{self, Origin};
use wasmless_api::{FunctionKey, FunctionSpec};
use wasmless_builder::archive;

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
    /// A Secret of the function's namespace whose keys the function reads as files under
    /// /NAME (Kubeless's; repeat the flag for more; cluster only).
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    secrets: Vec<String>,
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
    /// The source: a file (text is sent as text, anything else as base64), or a `.zip` or a
    /// directory of the handler's file and the files beside it (base64+zip); the sha256 of
    /// what is sent is the checksum.
    #[arg(long, short = 'f', value_name = "FILE|DIR")]
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
    archive_checked(&key, &spec)?;
    let mut metadata = serde_json::json!({ "name": args.name });
    if let Some(ns) = namespace {
        metadata["namespace"] = ns.into();
    }
    if !labels.is_empty() {
        metadata["labels"] = serde_json::to_value(labels)?;
    }
    let function = serde_json::json!({
        "apiVersion": wasmless_api::function::API_VERSION,
        "kind": wasmless_api::function::KIND,
        "metadata": metadata,
        "spec": spec,
    });
    crate::output::print_value(&function, args.output)
}

pub async fn deploy(target: &Target, args: DeployArgs) -> anyhow::Result<()> {
    let (spec, labels) = new_function(&args)?;
    let key = target.key(&args.name);
    checked(&key, &spec, origin(target))?;
    archive_checked(&key, &spec)?;
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
    archive_checked(&key, &spec)?;
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

/// An inline archive's check (names, links, sizes, the handler's file), before anything is
/// sent: the builder's own rules, which its sandbox applies again.
fn archive_checked(key: &FunctionKey, spec: &FunctionSpec) -> anyhow::Result<()> {
    let invalid = || format!("{key} is not valid, nothing was sent");
    let content_type = ContentType::parse(spec.function_content_type.trim());
    let (Ok(content_type), Some(runtime)) = (content_type, Runtime::parse(&spec.runtime)) else {
        return Ok(()); // the validator has said why
    };
    if content_type.packaging() == Packaging::Zip
        && let Some(zip) = content::decode_inline(&spec.function, content_type)
    {
        let zip = zip.with_context(invalid)?;
        archive::check(&zip, runtime, &spec.handler)
            .map_err(anyhow::Error::from)
            .with_context(invalid)?;
    }
    Ok(())
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
        let (bytes, packaging) = crate::archive::read(path)?;
        spec.checksum = Sha256Digest::of(&bytes).to_string();
        let (function, content_type) = match packaging {
            Packaging::File => content::encode(bytes),
            Packaging::Zip => content::encode_zip(&bytes),
        };
        (spec.function, spec.function_content_type) = (function, content_type.name().into());
    }
    for secret in &args.secrets {
        mount_secret(spec, secret)?;
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

/// Kubeless's `--secrets NAME`: in `spec.deployment`'s first container, a volume `NAME-vol` of
/// the Secret mounted at `/NAME` (what hosts honour: its keys as read-only files). Mounting a
/// Secret twice changes nothing.
fn mount_secret(spec: &mut FunctionSpec, name: &str) -> anyhow::Result<()> {
    use serde_json::{Value, json};
    let name = name.trim();
    if name.is_empty() || name.contains('/') {
        bail!("--secrets {name:?} is not a Secret's name");
    }
    let volume = format!("{name}-vol");
    let mut deployment = spec
        .deployment
        .take()
        .map(|p| p.value)
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let pod = object_at(&mut deployment, &["spec", "template", "spec"]);
    let volumes = array_at(pod, "volumes");
    if !volumes.iter().any(|v| v["name"] == volume.as_str()) {
        volumes.push(json!({"name": volume, "secret": {"secretName": name}}));
    }
    let containers = array_at(pod, "containers");
    if containers.is_empty() {
        containers.push(json!({}));
    }
    let first = &mut containers[0];
    if !first.is_object() {
        *first = json!({});
    }
    let mounts = array_at(first, "volumeMounts");
    if !mounts.iter().any(|m| m["name"] == volume.as_str()) {
        mounts.push(json!({"name": volume, "mountPath": format!("/{name}")}));
    }
    spec.deployment = Some(deployment.into());
    Ok(())
}

/// The object at `path` under `value`, made (replacing anything that is not an object) if need be.
fn object_at<'a>(value: &'a mut serde_json::Value, path: &[&str]) -> &'a mut serde_json::Value {
    let mut at = value;
    for key in path {
        if !at.is_object() {
            *at = serde_json::json!({});
        }
        at = &mut at[*key];
    }
    if !at.is_object() {
        *at = serde_json::json!({});
    }
    at
}

/// The array `key` of an object, made (replacing anything that is not an array) if need be.
fn array_at<'a>(object: &'a mut serde_json::Value, key: &str) -> &'a mut Vec<serde_json::Value> {
    let slot = &mut object[key];
    if !slot.is_array() {
        *slot = serde_json::Value::Array(Vec::new());
    }
    match slot {
        serde_json::Value::Array(items) => items,
        _ => unreachable!("made an array above"),
    }
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
            secrets: vec![],
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
        assert_eq!(spec.checksum, Sha256Digest::of(b"(module)").to_string());
        assert_eq!(spec.env.len(), 2);
        assert_eq!(spec.env[1].value, "x=y");
        assert_eq!(spec.memory, Some(IntOrString::String("64Mi".into())));

        let binary = dir.path().join("f.wasm");
        std::fs::write(&binary, b"\0asm\x01\0\0\0")?;
        fill(&mut spec, Some("wasm"), Some(&binary), &args())?;
        assert_eq!(spec.function_content_type, "base64");
        let decoded = content::decode_inline(&spec.function, ContentType::Base64);
        assert_eq!(
            decoded.transpose()?.as_deref(),
            Some(&b"\0asm\x01\0\0\0"[..])
        );
        assert_eq!(spec.env.len(), 2, "updating env replaces, never duplicates");
        Ok(())
    }

    #[test]
    fn secrets_mount_as_kubeless_writes_them() -> anyhow::Result<()> {
        let mut spec = FunctionSpec {
            runtime: "python".into(),
            handler: "hello.handler".into(),
            ..Default::default()
        };
        let mut flags = args();
        flags.secrets = vec!["db".into(), "api-keys".into()];
        fill(&mut spec, None, None, &flags)?;
        // Twice changes nothing.
        fill(&mut spec, None, None, &flags)?;
        let settings = wasmless_api::function::Settings::of(&spec);
        let mounts: Vec<(String, String)> = settings
            .mounts
            .iter()
            .map(|m| (m.path.clone(), m.object.name.clone()))
            .collect();
        assert_eq!(
            mounts,
            [
                ("/db".to_string(), "db".to_string()),
                ("/api-keys".into(), "api-keys".into())
            ]
        );
        assert!(settings.problems.is_empty(), "{:?}", settings.problems);
        assert!(settings.ignored.is_empty(), "{:?}", settings.ignored);
        let key = FunctionKey::new("default", "f");
        assert!(checked(&key, &spec, Origin::Cluster).is_ok());
        let e = format!("{:#}", checked(&key, &spec, Origin::Inline).unwrap_err());
        assert!(e.contains("wasmless up has none"), "{e}");
        flags.secrets = vec!["../x".into()];
        assert!(fill(&mut spec, None, None, &flags).is_err());
        Ok(())
    }

    #[test]
    fn directories_go_as_zip_archives_checked_before_sending() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("hello.py"), "import helper\n")?;
        std::fs::write(dir.path().join("helper.py"), "")?;
        let mut spec = FunctionSpec::default();
        let mut flags = args();
        flags.handler = Some("hello.handler".into());
        fill(&mut spec, Some("python"), Some(dir.path()), &flags)?;
        assert_eq!(spec.function_content_type, "base64+zip");
        let key = FunctionKey::new("default", "f");
        checked(&key, &spec, Origin::Cluster)?;
        archive_checked(&key, &spec)?;
        flags.handler = Some("missing.handler".into());
        fill(&mut spec, None, None, &flags)?;
        let e = format!("{:#}", archive_checked(&key, &spec).unwrap_err());
        assert!(
            e.contains("nothing was sent") && e.contains("\"missing.py\""),
            "{e}"
        );
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
