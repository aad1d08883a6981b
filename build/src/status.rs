//! The status a build outcome gives a Function: the same shape from the native reconciler and
//! from the Metacontroller hook.

use wasmless_api::function::{ArtifactRef, Condition, FunctionStatus, Phase};
use wasmless_api::validate::Invalid;

use crate::pipeline::Artifact;

/// How many of the ready hosts serve an artifact, and why one refused to load it, if one did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Count {
    pub serving: usize,
    pub hosts: usize,
    pub refused: Option<String>,
}

impl Count {
    /// Every ready host serves it, and there is one.
    pub fn all(&self) -> bool {
        self.hosts > 0 && self.serving == self.hosts
    }
}

/// Longest message kept in a condition: a compiler's first lines say what is wrong.
const MAX_MESSAGE: usize = 2_000;

/// The current time as Kubernetes writes it (RFC 3339).
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

pub fn trim(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE) {
        Some((i, _)) => format!("{}…", &message[..i]),
        None => message.to_string(),
    }
}

fn condition(
    type_: &str,
    ok: Option<bool>,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: &[Condition],
    now: &str,
) -> Condition {
    let status = match ok {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    };
    // The transition time moves only when the status does.
    let since = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: trim(&message),
        last_transition_time: Some(since),
        observed_generation: generation,
    }
}

/// While a build runs: the serving artifact (if any) stays. `note` says why it takes longer
/// (waiting for a slot, a retry), if it does.
pub fn building(
    previous: &FunctionStatus,
    generation: Option<i64>,
    url: String,
    note: Option<&str>,
    now: &str,
) -> FunctionStatus {
    let serving = previous.artifact.as_ref();
    FunctionStatus {
        observed_generation: previous.observed_generation,
        phase: Phase::Building,
        conditions: vec![
            condition(
                "Built",
                None,
                "Building",
                match note {
                    Some(note) => format!("building the new generation: {note}"),
                    None => "building the new generation".into(),
                },
                generation,
                &previous.conditions,
                now,
            ),
            ready(serving, generation, &previous.conditions, now),
        ],
        url: Some(url),
        artifact: serving.cloned(),
    }
}

/// After a build: Ready with the new artifact, or Failed with the compiler's message and the
/// previous artifact still serving.
pub fn built(
    previous: &FunctionStatus,
    generation: Option<i64>,
    url: String,
    outcome: Result<&Artifact, String>,
    now: &str,
) -> FunctionStatus {
    match outcome {
        Ok(artifact) => {
            let reference = artifact.reference();
            let reason = if artifact.cached { "Cached" } else { "Built" };
            FunctionStatus {
                observed_generation: generation,
                phase: Phase::Ready,
                conditions: vec![
                    condition(
                        "Built",
                        Some(true),
                        reason,
                        format!("built {}", reference.digest),
                        generation,
                        &previous.conditions,
                        now,
                    ),
                    ready(Some(&reference), generation, &previous.conditions, now),
                ],
                url: Some(url),
                artifact: Some(reference),
            }
        }
        Err(message) => failed(
            previous,
            generation,
            url,
            Failure::BuildFailed,
            message,
            now,
        ),
    }
}

/// Why a generation was not built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The validator refused the spec: nothing was built.
    InvalidSpec,
    /// The build ran and failed.
    BuildFailed,
    /// A Service of the Function's name exists and is not the Function's: it is left alone and
    /// the Function is not served at its name.
    ServiceConflict,
}

impl Failure {
    pub fn reason(self) -> &'static str {
        match self {
            Failure::InvalidSpec => "InvalidSpec",
            Failure::BuildFailed => "BuildFailed",
            Failure::ServiceConflict => "ServiceConflict",
        }
    }

    /// Whether `status` failed for this reason.
    pub fn is_why(self, status: &FunctionStatus) -> bool {
        status.phase == Phase::Failed
            && status
                .conditions
                .iter()
                .any(|c| c.type_ == "Built" && c.reason == self.reason())
    }
}

/// An invalid spec: Failed before any build, with every problem found; the previous artifact
/// (if any) keeps serving.
pub fn invalid(
    previous: &FunctionStatus,
    generation: Option<i64>,
    url: String,
    invalid: &Invalid,
    now: &str,
) -> FunctionStatus {
    failed(
        previous,
        generation,
        url,
        Failure::InvalidSpec,
        invalid.to_string(),
        now,
    )
}

/// Failed for `failure` with `message`, the previous artifact still serving.
pub fn failed(
    previous: &FunctionStatus,
    generation: Option<i64>,
    url: String,
    failure: Failure,
    message: String,
    now: &str,
) -> FunctionStatus {
    let serving = previous.artifact.as_ref();
    FunctionStatus {
        observed_generation: generation,
        phase: Phase::Failed,
        conditions: vec![
            condition(
                "Built",
                Some(false),
                failure.reason(),
                message,
                generation,
                &previous.conditions,
                now,
            ),
            ready(serving, generation, &previous.conditions, now),
        ],
        url: Some(url),
        artifact: serving.cloned(),
    }
}

/// The native controller's word on a stored artifact: `Ready` once every ready host serves it,
/// `Loading` until then (or while no host runs). Other phases pass through.
pub fn serving(
    status: FunctionStatus,
    count: Count,
    previous: &FunctionStatus,
    now: &str,
) -> FunctionStatus {
    let Some(digest) = status.artifact.as_ref().map(|a| a.revision()) else {
        return status;
    };
    if !matches!(status.phase, Phase::Ready | Phase::Loading) {
        return status;
    }
    let (ok, reason, message) = if let Some(why) = &count.refused {
        (
            false,
            "HostRefused",
            format!("{why} (what a host loaded before, if anything, keeps serving)"),
        )
    } else if count.all() {
        (
            true,
            "Serving",
            format!(
                "{}/{} ready hosts serve {digest}",
                count.serving, count.hosts
            ),
        )
    } else if count.hosts == 0 {
        (
            false,
            "NoHosts",
            "no wasmless host pod is ready: nothing serves it".to_string(),
        )
    } else {
        (
            false,
            "Loading",
            format!(
                "{}/{} ready hosts serve {digest}",
                count.serving, count.hosts
            ),
        )
    };
    let ready = condition(
        "Ready",
        Some(ok),
        reason,
        message,
        status.observed_generation,
        &previous.conditions,
        now,
    );
    let mut conditions: Vec<Condition> = status
        .conditions
        .into_iter()
        .filter(|c| c.type_ != "Ready")
        .collect();
    conditions.push(ready);
    FunctionStatus {
        phase: if ok { Phase::Ready } else { Phase::Loading },
        conditions,
        ..status
    }
}

/// The condition that lists the fields of a Kubeless manifest wasmless does not honour.
pub const FIELDS_HONOURED: &str = "FieldsHonoured";

/// `status` with a `FieldsHonoured` condition (False, `FieldsIgnored`, every ignored field and
/// why) when `ignored` says some are, and none otherwise: a ported manifest never loses a field
/// silently.
pub fn with_ignored(
    mut status: FunctionStatus,
    ignored: Option<String>,
    previous: &FunctionStatus,
    now: &str,
) -> FunctionStatus {
    status.conditions.retain(|c| c.type_ != FIELDS_HONOURED);
    if let Some(message) = ignored {
        status.conditions.push(condition(
            FIELDS_HONOURED,
            Some(false),
            "FieldsIgnored",
            message,
            status.observed_generation,
            &previous.conditions,
            now,
        ));
    }
    status
}

fn ready(
    serving: Option<&ArtifactRef>,
    generation: Option<i64>,
    previous: &[Condition],
    now: &str,
) -> Condition {
    match serving {
        Some(a) => condition(
            "Ready",
            Some(true),
            "ArtifactAvailable",
            format!("hosts serve {}", a.digest),
            generation,
            previous,
            now,
        ),
        None => condition(
            "Ready",
            Some(false),
            "NoArtifact",
            "no build has succeeded yet".into(),
            generation,
            previous,
            now,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmless_api::Abi;
    use wasmless_api::digest::Sha256Digest;

    /// An artifact whose wasm is the bytes of `wasm`.
    fn artifact(wasm: &str) -> Artifact {
        Artifact {
            digest: Sha256Digest::of(wasm.as_bytes()),
            size: 10,
            abi: Abi::Wagi,
            precompiled: None,
            precompiled_digest: Sha256Digest::of(b"p"),
            files: None,
            cached: false,
        }
    }

    fn url() -> String {
        "http://f.t:8080".to_string()
    }

    /// Generation 1 built the artifact `a` at t1.
    fn first_build() -> FunctionStatus {
        built(
            &FunctionStatus::default(),
            Some(1),
            url(),
            Ok(&artifact("a")),
            "t1",
        )
    }

    #[test]
    fn ready_means_every_ready_host_serves_the_artifact() {
        let stored = first_build();
        let ready_of = |s: &FunctionStatus| {
            let c = s.conditions.iter().find(|c| c.type_ == "Ready").cloned();
            c.map(|c| {
                (
                    c.status,
                    c.reason,
                    c.last_transition_time.unwrap_or_default(),
                )
            })
        };
        let count = |serving, hosts| Count {
            serving,
            hosts,
            refused: None,
        };

        let none = serving(stored.clone(), count(0, 0), &stored, "t2");
        assert_eq!(none.phase, Phase::Loading);
        assert_eq!(
            ready_of(&none),
            Some(("False".into(), "NoHosts".into(), "t2".into()))
        );
        let one_of_two = serving(stored.clone(), count(1, 2), &none, "t3");
        assert_eq!(one_of_two.phase, Phase::Loading);
        assert_eq!(
            ready_of(&one_of_two),
            Some(("False".into(), "Loading".into(), "t2".into())),
            "still False: the transition time stays"
        );
        let all = serving(one_of_two.clone(), count(2, 2), &one_of_two, "t4");
        assert_eq!(all.phase, Phase::Ready);
        assert_eq!(
            ready_of(&all),
            Some(("True".into(), "Serving".into(), "t4".into()))
        );
        assert_eq!(all.conditions.len(), 2, "Built and Ready, once each");
        assert_eq!(all.artifact, stored.artifact);

        let refused = Count {
            refused: Some("host h: env P: Secret \"db\" has no key \"p\"".into()),
            ..count(2, 2)
        };
        let refused = serving(all.clone(), refused, &all, "t5");
        assert_eq!(refused.phase, Phase::Loading);
        let c = refused.conditions.iter().find(|c| c.type_ == "Ready");
        assert!(c.is_some_and(|c| c.reason == "HostRefused" && c.message.contains("no key")));

        let ported = with_ignored(all.clone(), Some("ignored: a: b".into()), &all, "t5");
        let c = ported
            .conditions
            .iter()
            .find(|c| c.type_ == FIELDS_HONOURED);
        assert!(c.is_some_and(|c| c.status == "False" && c.message == "ignored: a: b"));
        assert_eq!(
            with_ignored(ported, None, &all, "t6"),
            all,
            "gone once none is"
        );

        let failed = built(&all, Some(2), url(), Err("bad".into()), "t5");
        assert_eq!(
            serving(failed.clone(), count(0, 2), &all, "t6"),
            failed,
            "a failed build's status is the build's to say"
        );
    }

    #[test]
    fn an_invalid_spec_fails_with_every_reason_and_keeps_the_artifact() {
        let ok = first_build();
        let reasons = wasmless_api::validate::Invalid(vec![
            wasmless_api::validate::FieldError {
                field: wasmless_api::validate::Field::Timeout,
                message: "-1 must be whole seconds from 1 to 3600".into(),
            },
            wasmless_api::validate::FieldError {
                field: wasmless_api::validate::Field::Handler,
                message: "bad".into(),
            },
        ]);
        let refused = invalid(&ok, Some(2), url(), &reasons, "t2");
        assert_eq!(
            (refused.phase, refused.observed_generation),
            (Phase::Failed, Some(2))
        );
        assert_eq!(refused.artifact, ok.artifact);
        let c = &refused.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            ("Built", "False", "InvalidSpec")
        );
        assert_eq!(
            c.message,
            "spec.timeout: -1 must be whole seconds from 1 to 3600; spec.handler: bad"
        );
        // The same verdict again changes nothing (no status write, no new Event).
        assert_eq!(invalid(&refused, Some(2), url(), &reasons, "t3"), refused);
    }

    #[test]
    fn a_failed_build_keeps_the_previous_artifact() {
        let ok = first_build();
        assert_eq!(ok.phase, Phase::Ready);
        assert_eq!(
            ok.artifact.as_ref().map(|a| a.digest.clone()),
            Some(artifact("a").digest)
        );

        let during = building(&ok, Some(2), url(), None, "t2");
        assert_eq!(
            (during.phase, during.observed_generation),
            (Phase::Building, Some(1))
        );
        assert_eq!(during.artifact, ok.artifact);

        let failed = built(
            &during,
            Some(2),
            url(),
            Err("line 3: expected `)`".into()),
            "t3",
        );
        assert_eq!(
            (failed.phase, failed.observed_generation),
            (Phase::Failed, Some(2))
        );
        assert_eq!(
            failed.artifact, ok.artifact,
            "the previous artifact keeps serving"
        );
        let built_c = &failed.conditions[0];
        assert_eq!(
            (built_c.status.as_str(), built_c.reason.as_str()),
            ("False", "BuildFailed")
        );
        assert!(built_c.message.contains("expected"));
        let ready_c = &failed.conditions[1];
        assert_eq!(ready_c.status, "True");
        assert_eq!(
            ready_c.last_transition_time.as_deref(),
            Some("t1"),
            "Ready never changed"
        );
    }
}
