//! The children this controller has server-side applied in its term. Every reconcile of a
//! Function applies its Service, Endpoints and EndpointSlices again, and an apply that changes
//! nothing still costs the API server a full merge: with 10,000 Functions those were most of
//! its CPU. An apply is skipped when the object is still the version this controller's last
//! apply of the same content left; anything else (another writer, a deletion, new content, a
//! new term) applies as before.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// Kind, namespace and name.
type ObjectKey = (String, String, String);

/// What an apply left: the applied content's sha256 and the resourceVersion it returned.
#[derive(Clone, PartialEq, Eq)]
struct Left {
    content: [u8; 32],
    version: String,
}

#[derive(Default)]
pub struct Applied {
    left: Mutex<HashMap<ObjectKey, Left>>,
}

impl Applied {
    /// Server-side applies `desired` unless `live_version`, the object's resourceVersion as just
    /// read, is the one this controller's last apply of the same content returned. Whether it
    /// wrote.
    pub async fn apply<K>(
        &self,
        api: &Api<K>,
        params: &PatchParams,
        desired: &K,
        live_version: Option<&str>,
    ) -> Result<bool, kube::Error>
    where
        K: Resource + Serialize + DeserializeOwned + Clone + Debug,
        K::DynamicType: Default,
    {
        let key = (
            K::kind(&K::DynamicType::default()).into_owned(),
            desired.namespace().unwrap_or_default(),
            desired.name_any(),
        );
        let content: [u8; 32] =
            Sha256::digest(serde_json::to_vec(desired).map_err(kube::Error::SerdeError)?).into();
        if let Some(version) = live_version {
            let unchanged = Left {
                content,
                version: version.to_string(),
            };
            if self.lock().get(&key) == Some(&unchanged) {
                return Ok(false);
            }
        }
        let written = api
            .patch(&desired.name_any(), params, &Patch::Apply(desired))
            .await?;
        match written.resource_version() {
            Some(version) => self.lock().insert(key, Left { content, version }),
            None => self.lock().remove(&key),
        };
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Left>> {
        self.left.lock().unwrap_or_else(|e| e.into_inner())
    }
}
