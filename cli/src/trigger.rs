//! `wasmless trigger http|cronjob|nats create|update|delete|list` (and `nats publish`): Kubeless's trigger verbs, against a
//! cluster (the trigger objects through the API; the controller does the rest). `wasmless up`
//! reads triggers from the manifests in its directory instead: `--local` is refused.

mod cron;
mod http;
mod nats;

use std::fmt::Debug;

use anyhow::{Context as _, anyhow, bail};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::core::NamespaceResourceScope;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use wasmless_api::function::Condition;

use crate::output::{Format, print_value, table};
use crate::target::TargetArgs;
use crate::target::cluster::Cluster;

#[derive(clap::Args)]
pub struct TriggerArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(subcommand)]
    kind: Kind,
}

#[derive(clap::Subcommand)]
enum Kind {
    /// HTTPTriggers: a hostname and path for a function (an Ingress, and the hosts' own routes).
    Http {
        #[command(subcommand)]
        verb: http::Verb,
    },
    /// CronJobTriggers: a function invoked on a schedule.
    Cronjob {
        #[command(subcommand)]
        verb: cron::Verb,
    },
    /// NATSTriggers: functions invoked with each message on a NATS subject.
    Nats {
        #[command(subcommand)]
        verb: nats::Verb,
    },
}

/// What `list` takes, for every kind.
#[derive(clap::Args)]
struct ListArgs {
    /// Triggers of every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    #[arg(short, long, value_enum, default_value = "table")]
    output: Format,
}

#[derive(clap::Args)]
struct NameArg {
    /// Trigger name.
    name: String,
}

pub fn run(args: TriggerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if let Kind::Nats {
        verb: nats::Verb::Publish(publish),
    } = args.kind
    {
        return runtime.block_on(nats::publish(publish));
    }
    if args.target.local.is_some() {
        bail!(
            "`wasmless up` reads triggers from its directory: write the HTTPTrigger, CronJobTrigger or NATSTrigger manifest there (these verbs act on a cluster: drop --local)"
        );
    }
    runtime.block_on(async move {
        let cluster = Cluster::connect(&args.target).await?;
        match args.kind {
            Kind::Http { verb } => http::run(&cluster, verb).await,
            Kind::Cronjob { verb } => cron::run(&cluster, verb).await,
            Kind::Nats { verb } => nats::run(&cluster, verb).await,
        }
    })
}

/// One trigger kind's objects in the cluster, with errors that say what to do.
struct Objects<K> {
    api: Api<K>,
    cluster_api: Api<K>,
    namespace: String,
    /// The chart's CRD file of the kind, for when it is not installed.
    crd_file: &'static str,
}

impl<K> Objects<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + Serialize,
{
    fn new(cluster: &Cluster, crd_file: &'static str) -> Self {
        Self {
            api: Api::namespaced(cluster.client().clone(), cluster.namespace()),
            cluster_api: Api::all(cluster.client().clone()),
            namespace: cluster.namespace().to_string(),
            crd_file,
        }
    }

    fn kind() -> String {
        K::kind(&()).into_owned()
    }

    fn error(&self, e: kube::Error, name: Option<&str>) -> anyhow::Error {
        let kind = Self::kind();
        match (e, name) {
            (kube::Error::Api(s), _)
                if s.code == 404 && s.message.contains("could not find the requested resource") =>
            {
                anyhow!(
                    "the {kind} CRD is not installed: kubectl apply -f charts/wasmless/crds/{}",
                    self.crd_file
                )
            }
            (kube::Error::Api(s), Some(name)) if s.code == 404 => anyhow!(
                "{kind} {name} not found in namespace {}: see `wasmless trigger {} list`",
                self.namespace,
                verb_kind(&kind)
            ),
            (kube::Error::Api(s), Some(name)) if s.code == 409 => anyhow!(
                "{kind} {name} already exists in namespace {}: use `wasmless trigger {} update`",
                self.namespace,
                verb_kind(&kind)
            ),
            (kube::Error::Api(s), _) => anyhow!("{} (HTTP {})", s.message, s.code),
            (other, _) => anyhow!(
                "no cluster reachable ({}): check KUBECONFIG and --context",
                crate::target::root_cause(&other)
            ),
        }
    }

    /// `{Kind} {namespace}/{name} {done}`, what every verb prints once it is done.
    fn done(&self, name: &str, done: &str) {
        println!("{} {}/{name} {done}", Self::kind(), self.namespace);
    }

    async fn create(&self, object: &K) -> anyhow::Result<()> {
        let name = object.name_any();
        self.api
            .create(&PostParams::default(), object)
            .await
            .map_err(|e| self.error(e, Some(&name)))?;
        self.done(&name, "created");
        Ok(())
    }

    async fn get(&self, name: &str) -> anyhow::Result<K> {
        self.api
            .get(name)
            .await
            .map_err(|e| self.error(e, Some(name)))
    }

    /// Replaces `object` (as read, with its resourceVersion: a concurrent change fails it).
    async fn replace(&self, object: &K) -> anyhow::Result<()> {
        let name = object.name_any();
        self.api
            .replace(&name, &PostParams::default(), object)
            .await
            .map_err(|e| self.error(e, Some(&name)))?;
        self.done(&name, "updated");
        Ok(())
    }

    async fn delete(&self, name: &str) -> anyhow::Result<()> {
        self.api
            .delete(name, &DeleteParams::default())
            .await
            .map_err(|e| self.error(e, Some(name)))?;
        self.done(name, "deleted");
        Ok(())
    }

    async fn list(&self, all_namespaces: bool) -> anyhow::Result<Vec<K>> {
        let api = if all_namespaces {
            &self.cluster_api
        } else {
            &self.api
        };
        let mut items = api
            .list(&ListParams::default())
            .await
            .map_err(|e| self.error(e, None))?
            .items;
        items.sort_by_key(|o| (o.namespace(), o.name_any()));
        Ok(items)
    }
}

/// `HTTPTrigger` → `http`, `CronJobTrigger` → `cronjob`, `NATSTrigger` → `nats`.
fn verb_kind(kind: &str) -> &'static str {
    match kind {
        "HTTPTrigger" => "http",
        "NATSTrigger" => "nats",
        _ => "cronjob",
    }
}

/// The Ready condition as a column: `True`, or `False (Reason)`.
fn ready_column(conditions: &[Condition]) -> String {
    match wasmless_api::trigger::condition(conditions, "Ready") {
        Some(c) if c.status == "True" => "True".into(),
        Some(c) => format!("{} ({})", c.status, c.reason),
        None => "Unknown".into(),
    }
}

/// Prints `objects` as a table of `header` and `row`, or whole as JSON or YAML.
fn print_list<K: Serialize>(
    objects: &[K],
    format: Format,
    header: &[&str],
    row: impl Fn(&K) -> Vec<String>,
) -> anyhow::Result<()> {
    match format {
        Format::Json | Format::Yaml => {
            let all = serde_json::to_value(objects)?;
            print_value(&all, format)
        }
        Format::Table | Format::Wide => {
            let rows: Vec<Vec<String>> = objects.iter().map(row).collect();
            print!("{}", table(header, &rows));
            Ok(())
        }
    }
}

/// A spec's problems as one error, naming each field.
fn invalid(kind: &str, problems: &[String]) -> anyhow::Error {
    anyhow!("invalid {kind}: {}", problems.join("; "))
}
