//! `function describe`: a function's spec and status, as Kubeless's describe listed them.

use wasmless_api::validate;

use crate::output::{Format, print_value};
use crate::target::Target;

#[derive(clap::Args)]
pub struct DescribeArgs {
    /// Function name.
    name: String,
    /// Output format (json or yaml print the whole object).
    #[arg(short, long, value_enum, default_value = "table")]
    output: Format,
}

pub async fn run(target: &Target, args: DescribeArgs) -> anyhow::Result<()> {
    let v = target.get(&target.key(&args.name)).await?;
    if matches!(args.output, Format::Json | Format::Yaml) {
        return print_value(&v.raw, args.output);
    }
    let or_none = |s: String| if s.is_empty() { "-".to_string() } else { s };
    let joined = |pairs: Vec<String>| or_none(pairs.join(", "));
    let spec = &v.spec;
    let timeout = spec
        .timeout
        .as_ref()
        .map(|t| match validate::timeout(Some(t)) {
            Ok(d) => format!("{} s", d.as_secs()),
            Err(e) => e,
        });
    let fields = [
        ("Name", v.key.name.clone()),
        ("Namespace", v.key.namespace.clone()),
        ("Runtime", spec.runtime.clone()),
        ("Handler", or_none(spec.handler.clone())),
        ("Content type", or_none(spec.function_content_type.clone())),
        ("Checksum", or_none(spec.checksum.clone())),
        (
            "Labels",
            joined(v.labels.iter().map(|(k, l)| format!("{k}={l}")).collect()),
        ),
        (
            "Environment",
            joined(
                spec.env
                    .iter()
                    .map(|e| format!("{}={}", e.name, e.value))
                    .collect(),
            ),
        ),
        (
            "Memory",
            or_none(
                spec.memory
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ),
        ),
        ("Timeout", or_none(timeout.unwrap_or_default())),
        ("Dependencies", or_none(spec.deps.trim().to_string())),
        ("Origin", v.origin.clone()),
        ("Status", v.phase.clone()),
        ("URL", or_none(v.url.clone().unwrap_or_default())),
        (
            "Serving",
            or_none(
                v.artifact
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ),
        ),
        ("Message", or_none(v.message.trim_end().to_string())),
    ];
    for (label, value) in fields {
        // Multi-line values (dependencies, a compiler's message) stay readable, indented.
        let value = value.replace('\n', "\n              ");
        println!("{:<14}{value}", format!("{label}:"));
    }
    Ok(())
}
