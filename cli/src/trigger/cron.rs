//! `wasmless trigger cronjob`: Kubeless's flags (`--function`, `--schedule`, `--payload`,
//! `--payload-from-file`), with Kubernetes CronJob's `--time-zone` and
//! `--starting-deadline-seconds`.

use anyhow::Context as _;
use wasmless_api::function::Preserved;
use wasmless_api::trigger::schedule::Schedule;
use wasmless_api::trigger::{CronJobTrigger, CronJobTriggerSpec};

use super::{ListArgs, NameArg, Objects, invalid, print_list, ready_column};
use crate::target::cluster::Cluster;

#[derive(clap::Subcommand)]
pub enum Verb {
    /// Invoke a function of the namespace on a schedule.
    Create(CreateArgs),
    /// Change a trigger (only the flags given).
    Update(UpdateArgs),
    /// Delete a trigger.
    Delete(NameArg),
    /// List triggers, with their last tick and result.
    #[command(visible_alias = "ls")]
    List(ListArgs),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// Trigger name.
    name: String,
    /// The function invoked (of the trigger's namespace).
    #[arg(long, visible_alias = "function-name")]
    function: String,
    /// When: "*/5 * * * *", 6 fields with seconds first, @hourly, or @every 30s.
    #[arg(long)]
    schedule: String,
    #[command(flatten)]
    fields: Fields,
}

#[derive(clap::Args)]
pub struct UpdateArgs {
    /// Trigger name.
    name: String,
    /// The function invoked (of the trigger's namespace).
    #[arg(long, visible_alias = "function-name")]
    function: Option<String>,
    /// When (see `create`).
    #[arg(long)]
    schedule: Option<String>,
    #[command(flatten)]
    fields: Fields,
}

#[derive(clap::Args)]
struct Fields {
    /// The IANA time zone of the schedule, such as Europe/Berlin [default: UTC].
    #[arg(long)]
    time_zone: Option<String>,
    /// JSON sent as the request body (POST); without it the function gets a GET.
    #[arg(long, conflicts_with = "payload_from_file")]
    payload: Option<String>,
    /// A file of JSON sent as the request body.
    #[arg(long)]
    payload_from_file: Option<std::path::PathBuf>,
    /// A tick missed while no controller led runs late only within this many seconds.
    #[arg(long)]
    starting_deadline_seconds: Option<i64>,
    /// Stop (true) or resume (false) invocations.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    suspend: Option<bool>,
}

impl Fields {
    fn apply(self, spec: &mut CronJobTriggerSpec) -> anyhow::Result<()> {
        if let Some(zone) = self.time_zone {
            spec.time_zone = zone;
        }
        let text = match (self.payload, self.payload_from_file) {
            (Some(text), _) => Some(text),
            (None, Some(file)) => Some(
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?,
            ),
            (None, None) => None,
        };
        if let Some(text) = text {
            let payload: Preserved =
                serde_json::from_str(&text).context("--payload must be JSON")?;
            spec.payload = Some(payload);
        }
        if let Some(seconds) = self.starting_deadline_seconds {
            spec.starting_deadline_seconds = Some(seconds);
        }
        if let Some(suspend) = self.suspend {
            spec.suspend = suspend;
        }
        Ok(())
    }
}

fn check(spec: &CronJobTriggerSpec) -> anyhow::Result<()> {
    let mut problems = spec.check().err().unwrap_or_default();
    if let Err(e) = Schedule::parse(&spec.schedule, &spec.time_zone) {
        problems.push(format!("spec.schedule: {e}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(invalid("CronJobTrigger", &problems))
    }
}

pub async fn run(cluster: &Cluster, verb: Verb) -> anyhow::Result<()> {
    let objects = Objects::<CronJobTrigger>::new(cluster, "cronjobtriggers.yaml");
    match verb {
        Verb::Create(args) => {
            let mut spec = CronJobTriggerSpec {
                function_name: args.function,
                schedule: args.schedule,
                ..CronJobTriggerSpec::default()
            };
            args.fields.apply(&mut spec)?;
            check(&spec)?;
            let trigger = CronJobTrigger::new(cluster.namespace(), &args.name, spec);
            objects.create(&trigger).await?;
        }
        Verb::Update(args) => {
            let mut trigger = objects.get(&args.name).await?;
            if let Some(f) = args.function {
                trigger.spec.function_name = f;
            }
            if let Some(s) = args.schedule {
                trigger.spec.schedule = s;
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
                    "FUNCTION",
                    "SCHEDULE",
                    "LAST SCHEDULE",
                    "LAST RESULT",
                    "READY",
                ],
                |t| {
                    let status = t.status.clone().unwrap_or_default();
                    let result = status.last_result.as_ref().map(|r| match r.status_code {
                        Some(code) if r.error.is_empty() => code.to_string(),
                        Some(code) => {
                            format!("{code}: {}", r.error.lines().next().unwrap_or_default())
                        }
                        None => r.error.lines().next().unwrap_or_default().to_string(),
                    });
                    vec![
                        t.key().name,
                        t.key().namespace,
                        t.spec.function_name.clone(),
                        t.spec.schedule.clone(),
                        status.last_schedule_time.clone().unwrap_or_default(),
                        result.unwrap_or_default(),
                        ready_column(&status.conditions),
                    ]
                },
            )?;
        }
    }
    Ok(())
}
