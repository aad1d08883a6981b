//! `function ls`: NAME, NAMESPACE, RUNTIME, HANDLER, STATUS, URL (Kubeless's columns, with the
//! build phase as STATUS).

use wasmless_api::validate;

use crate::output::{Format, print_value, table};
use crate::target::{Target, View};

#[derive(clap::Args)]
pub struct LsArgs {
    /// Only these functions.
    names: Vec<String>,
    /// Functions of every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    #[arg(short, long, value_enum, default_value = "table")]
    output: Format,
}

pub async fn run(target: &Target, args: LsArgs) -> anyhow::Result<()> {
    let namespace = (!args.all_namespaces).then(|| target.namespace());
    let mut views = target.list(namespace).await?;
    if !args.names.is_empty() {
        views.retain(|v| args.names.contains(&v.key.name));
        if let Some(missing) = args
            .names
            .iter()
            .find(|n| !views.iter().any(|v| &&v.key.name == n))
        {
            return Err(crate::target::not_found(&target.key(missing)));
        }
    }
    match args.output {
        Format::Json | Format::Yaml => {
            let all: Vec<_> = views.into_iter().map(|v| v.raw).collect();
            print_value(&serde_json::Value::Array(all), args.output)
        }
        Format::Table | Format::Wide => {
            print!("{}", render(&views, args.output == Format::Wide));
            Ok(())
        }
    }
}

fn render(views: &[View], wide: bool) -> String {
    let mut header = vec!["NAME", "NAMESPACE", "RUNTIME", "HANDLER", "STATUS", "URL"];
    if wide {
        header.extend(["MEMORY", "TIMEOUT", "LABELS", "ORIGIN", "MESSAGE"]);
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let mut row = vec![
                v.key.name.clone(),
                v.key.namespace.clone(),
                v.spec.runtime.clone(),
                v.spec.handler.clone(),
                v.phase.clone(),
                v.url.clone().unwrap_or_default(),
            ];
            if wide {
                let timeout = v
                    .spec
                    .timeout
                    .as_ref()
                    .map(|t| match validate::timeout(Some(t)) {
                        Ok(d) => d.as_secs().to_string(),
                        Err(_) => "?".into(),
                    });
                let labels: Vec<String> =
                    v.labels.iter().map(|(k, l)| format!("{k}={l}")).collect();
                row.extend([
                    v.spec
                        .memory
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    timeout.unwrap_or_default(),
                    labels.join(","),
                    v.origin.clone(),
                    v.message.lines().next().unwrap_or_default().to_string(),
                ]);
            }
            row
        })
        .collect();
    table(&header, &rows)
}
