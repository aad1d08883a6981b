//! `wasmless trigger nats`: Kubeless's flags (`--trigger-topic`, `--function-selector`, and
//! `publish --url --topic --message`), plus `--function` (one function by name),
//! `--queue-group` and `publish --request` (wait for the functions' first answer).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use wasmless_api::trigger::{NatsTrigger, NatsTriggerSpec};

use super::{ListArgs, NameArg, Objects, invalid, print_list, ready_column};
use crate::target::cluster::Cluster;

#[derive(clap::Subcommand)]
pub enum Verb {
    /// Invoke functions of the namespace with each message on a NATS subject.
    Create(CreateArgs),
    /// Change a trigger (only the flags given).
    Update(UpdateArgs),
    /// Delete a trigger.
    Delete(NameArg),
    /// List triggers, with their counts of messages delivered and failed.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Publish a message on a subject (no cluster needed).
    Publish(PublishArgs),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// Trigger name.
    name: String,
    /// The subject whose messages invoke the functions.
    #[arg(long, visible_alias = "topic")]
    trigger_topic: String,
    #[command(flatten)]
    fields: Fields,
}

#[derive(clap::Args)]
pub struct UpdateArgs {
    /// Trigger name.
    name: String,
    /// The subject whose messages invoke the functions.
    #[arg(long, visible_alias = "topic")]
    trigger_topic: Option<String>,
    #[command(flatten)]
    fields: Fields,
}

#[derive(clap::Args)]
struct Fields {
    /// The functions invoked: those of the namespace with these labels (key=value,...).
    #[arg(long, conflicts_with = "function")]
    function_selector: Option<String>,
    /// The function invoked, by name (instead of a selector).
    #[arg(long, visible_alias = "function-name")]
    function: Option<String>,
    /// The NATS queue group within the namespace [default: the trigger's name].
    #[arg(long)]
    queue_group: Option<String>,
}

impl Fields {
    fn apply(self, spec: &mut NatsTriggerSpec) -> anyhow::Result<()> {
        if let Some(selector) = self.function_selector {
            spec.function_selector = Some(match_labels(&selector)?);
            spec.function_name.clear();
        }
        if let Some(name) = self.function {
            spec.function_name = name;
            spec.function_selector = None;
        }
        if let Some(group) = self.queue_group {
            spec.queue_group = group;
        }
        Ok(())
    }
}

/// `a=b,c=d` as a selector's matchLabels.
fn match_labels(text: &str) -> anyhow::Result<LabelSelector> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--function-selector: {pair:?} is not key=value");
        };
        labels.insert(key.trim().to_string(), value.trim().to_string());
    }
    if labels.is_empty() {
        bail!("--function-selector: no key=value");
    }
    Ok(LabelSelector {
        match_labels: Some(labels),
        ..LabelSelector::default()
    })
}

#[derive(clap::Args)]
pub struct PublishArgs {
    /// The NATS server.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    url: String,
    /// The subject.
    #[arg(long)]
    topic: String,
    /// The message.
    #[arg(long)]
    message: String,
    /// Send it as a NATS request and print the first answer (its Status and Function headers
    /// on stderr).
    #[arg(long)]
    request: bool,
    /// How long `--request` waits, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// `publish`: no cluster involved.
pub async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout);
    let client = async_nats::ConnectOptions::new()
        .name("wasmless")
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(timeout))
        .connect(args.url.as_str())
        .await
        .with_context(|| format!("cannot connect to NATS at {}", args.url))?;
    if args.request {
        let answer = client
            .request(args.topic.clone(), args.message.into_bytes().into())
            .await
            .with_context(|| format!("no answer on {:?}", args.topic))?;
        if let Some(headers) = &answer.headers {
            for name in ["Status", "Function"] {
                if let Some(value) = headers.get(name) {
                    eprintln!("{name}: {value}");
                }
            }
        }
        println!("{}", String::from_utf8_lossy(&answer.payload));
    } else {
        client
            .publish(args.topic.clone(), args.message.into_bytes().into())
            .await
            .context("cannot publish")?;
        client.flush().await.context("cannot publish")?;
        println!("published on {}", args.topic);
    }
    Ok(())
}

fn check(spec: &NatsTriggerSpec) -> anyhow::Result<()> {
    match spec.check() {
        Ok(_) => Ok(()),
        Err(problems) => Err(invalid("NATSTrigger", &problems)),
    }
}

pub async fn run(cluster: &Cluster, verb: Verb) -> anyhow::Result<()> {
    let objects = Objects::<NatsTrigger>::new(cluster, "natstriggers.yaml");
    match verb {
        Verb::Create(args) => {
            let mut spec = NatsTriggerSpec {
                topic: args.trigger_topic,
                ..NatsTriggerSpec::default()
            };
            args.fields.apply(&mut spec)?;
            check(&spec)?;
            let trigger = NatsTrigger::new(cluster.namespace(), &args.name, spec);
            objects.create(&trigger).await?;
        }
        Verb::Update(args) => {
            let mut trigger = objects.get(&args.name).await?;
            if let Some(topic) = args.trigger_topic {
                trigger.spec.topic = topic;
            }
            args.fields.apply(&mut trigger.spec)?;
            check(&trigger.spec)?;
            objects.replace(&trigger).await?;
        }
        Verb::Delete(n) => {
            objects.delete(&n.name).await?;
        }
        Verb::List(args) => {
            let triggers = objects.list(args.all_namespaces).await?;
            print_list(
                &triggers,
                args.output,
                &[
                    "NAME",
                    "NAMESPACE",
                    "TOPIC",
                    "FUNCTIONS",
                    "DELIVERED",
                    "FAILED",
                    "READY",
                ],
                |t| {
                    let status = t.status.clone().unwrap_or_default();
                    vec![
                        t.key().name,
                        t.key().namespace,
                        t.spec.topic.clone(),
                        status.functions.join(","),
                        status.delivered.to_string(),
                        status.failed.to_string(),
                        ready_column(&status.conditions),
                    ]
                },
            )?;
        }
        Verb::Publish(args) => publish(args).await?,
    }
    Ok(())
}
