//! `wasmless trigger http`: Kubeless's flags (`--function-name`, `--hostname`, `--path`,
//! `--tls-secret`, `--enableTLSAcme`, `--gateway`).

use wasmless_api::trigger::{HttpTrigger, HttpTriggerSpec};

use super::{ListArgs, NameArg, Objects, invalid, print_list, ready_column};
use crate::target::cluster::Cluster;

#[derive(clap::Subcommand)]
pub enum Verb {
    /// Route a hostname and path to a function of the namespace.
    Create(CreateArgs),
    /// Change a trigger (only the flags given).
    Update(UpdateArgs),
    /// Delete a trigger (and its Ingress).
    Delete(NameArg),
    /// List triggers.
    #[command(visible_alias = "ls")]
    List(ListArgs),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// Trigger name.
    name: String,
    /// The function requests go to (of the trigger's namespace).
    #[arg(long, visible_alias = "function")]
    function_name: String,
    /// The hostname routed, such as hello.example.com.
    #[arg(long, visible_alias = "host-name")]
    hostname: String,
    #[command(flatten)]
    fields: Fields,
}

#[derive(clap::Args)]
pub struct UpdateArgs {
    /// Trigger name.
    name: String,
    /// The function requests go to (of the trigger's namespace).
    #[arg(long, visible_alias = "function")]
    function_name: Option<String>,
    /// The hostname routed.
    #[arg(long, visible_alias = "host-name")]
    hostname: Option<String>,
    #[command(flatten)]
    fields: Fields,
}

#[derive(clap::Args)]
struct Fields {
    /// The path prefix routed [default: /].
    #[arg(long)]
    path: Option<String>,
    /// A Secret of the namespace with the TLS certificate for the Ingress.
    #[arg(long)]
    tls_secret: Option<String>,
    /// Ask for a certificate through ACME (the Ingress's kubernetes.io/tls-acme annotation).
    #[arg(long = "enableTLSAcme", visible_alias = "tls", num_args = 0..=1, default_missing_value = "true")]
    tls: Option<bool>,
    /// The Ingress class (Kubeless's gateway: nginx, traefik, kong…).
    #[arg(long)]
    gateway: Option<String>,
}

impl Fields {
    fn apply(self, spec: &mut HttpTriggerSpec) {
        if let Some(path) = self.path {
            spec.path = path;
        }
        if let Some(secret) = self.tls_secret {
            spec.tls_secret = secret;
        }
        if let Some(tls) = self.tls {
            spec.tls = tls;
        }
        if let Some(gateway) = self.gateway {
            spec.gateway = gateway;
        }
    }
}

pub async fn run(cluster: &Cluster, verb: Verb) -> anyhow::Result<()> {
    let objects = Objects::<HttpTrigger>::new(cluster, "httptriggers.yaml");
    match verb {
        Verb::Create(args) => {
            let mut spec = HttpTriggerSpec {
                function_name: args.function_name,
                host_name: args.hostname,
                ..HttpTriggerSpec::default()
            };
            args.fields.apply(&mut spec);
            spec.check().map_err(|p| invalid("HTTPTrigger", &p))?;
            let trigger = HttpTrigger::new(cluster.namespace(), &args.name, spec);
            objects.create(&trigger).await?;
        }
        Verb::Update(args) => {
            let mut trigger = objects.get(&args.name).await?;
            if let Some(f) = args.function_name {
                trigger.spec.function_name = f;
            }
            if let Some(h) = args.hostname {
                trigger.spec.host_name = h;
            }
            args.fields.apply(&mut trigger.spec);
            trigger
                .spec
                .check()
                .map_err(|p| invalid("HTTPTrigger", &p))?;
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
                    "FUNCTION",
                    "HOST",
                    "PATH",
                    "READY",
                    "URL",
                ],
                |t| {
                    let status = t.status.clone().unwrap_or_default();
                    vec![
                        t.key().name,
                        t.key().namespace,
                        t.spec.function_name.clone(),
                        t.spec.host_name.clone(),
                        t.spec
                            .check()
                            .map(|r| r.path)
                            .unwrap_or_else(|_| t.spec.path.clone()),
                        ready_column(&status.conditions),
                        status.url.unwrap_or_default(),
                    ]
                },
            )?;
        }
    }
    Ok(())
}
