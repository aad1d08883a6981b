//! The reconciler's own status writes. A status write is itself a watch event, and the cache
//! that starts the next reconcile can still hold the object as it was before this controller's
//! later write (e.g. `Building` when `Failed` is already written): such a reconcile would redo
//! the generation's build. The resourceVersions this controller has replaced are remembered
//! per object, and a reconcile that starts from one of them waits for the newer event instead.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use wasmless_api::function::{Function, FunctionStatus};

/// Per object uid, the resourceVersions replaced by this controller's own writes.
#[derive(Default)]
pub struct OwnWrites {
    replaced: Mutex<HashMap<String, HashSet<String>>>,
}

impl OwnWrites {
    /// Whether `function` is a version this controller has already written over. A version it
    /// has not replaced is newer than every one it has (the cache only moves forward), so the
    /// remembered ones are dropped then.
    pub fn is_replaced(&self, function: &Function) -> bool {
        let (Some(uid), Some(version)) = (function.uid(), function.resource_version()) else {
            return false;
        };
        let mut replaced = self.replaced.lock().unwrap_or_else(|e| e.into_inner());
        if replaced.get(&uid).is_some_and(|set| set.contains(&version)) {
            return true;
        }
        replaced.remove(&uid);
        false
    }

    fn record(&self, uid: &str, before: &str, after: &str) {
        if before == after {
            return;
        }
        let mut replaced = self.replaced.lock().unwrap_or_else(|e| e.into_inner());
        let set = replaced.entry(uid.to_string()).or_default();
        set.insert(before.to_string());
        set.remove(after);
    }
}

/// Writes one Function's status during one reconcile, following the resourceVersion it moves.
pub struct StatusWriter<'a> {
    api: Api<Function>,
    name: String,
    uid: Option<String>,
    version: Option<String>,
    own: &'a OwnWrites,
}

impl<'a> StatusWriter<'a> {
    pub fn new(api: Api<Function>, function: &Function, own: &'a OwnWrites) -> Self {
        Self {
            api,
            name: function.name_any(),
            uid: function.uid(),
            version: function.meta().resource_version.clone(),
            own,
        }
    }

    pub async fn write(&mut self, status: &FunctionStatus) -> Result<(), kube::Error> {
        let patch = serde_json::json!({ "status": status });
        let written = self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        if let (Some(uid), Some(before), Some(after)) =
            (&self.uid, &self.version, written.resource_version())
        {
            self.own.record(uid, before, &after);
        }
        self.version = written.resource_version();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(uid: &str, version: &str) -> Function {
        let mut function = Function::new("f", Default::default());
        function.metadata.uid = Some(uid.into());
        function.metadata.resource_version = Some(version.into());
        function
    }

    #[test]
    fn versions_written_over_are_replaced_until_a_newer_one_is_seen() {
        let own = OwnWrites::default();
        // Reconcile started at 1, wrote Building (2) then Failed (3).
        own.record("u", "1", "2");
        own.record("u", "2", "3");
        assert!(own.is_replaced(&at("u", "1")));
        assert!(own.is_replaced(&at("u", "2")));
        assert!(!own.is_replaced(&at("u", "3")));
        // Having seen 3, nothing older can come back: the set is gone.
        assert!(!own.is_replaced(&at("u", "2")));
        // Another object is unaffected; a write that changed nothing replaces nothing.
        own.record("u", "3", "3");
        assert!(!own.is_replaced(&at("u", "3")));
        assert!(!own.is_replaced(&at("v", "1")));
    }
}
