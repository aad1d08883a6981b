//! The admin routes `wasmless function … --local` uses: deploy, update and delete a function
//! through the same build-and-load path as the directory's files, list what is deployed, and say
//! where functions answer.
//!
//! Functions deployed this way live in memory: they are gone when `up` stops (a manifest in
//! `--dir` is the way to keep one). A function defined by a file is changed by editing the file,
//! so the API refuses to replace or delete it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use tokio::sync::mpsc;
use wasmless_api::admin::{self, ManifestEntry, UpInfo};

use wasmless_api::function::{Phase, SourceStatus};
use wasmless_api::validate::{self, Origin};
use wasmless_api::{FunctionKey, FunctionManifest};
use wasmless_build::manifest;
use wasmless_runtime::Host;
use wasmless_runtime::host::json_error;

use super::Change;

/// What the API and the directory loader share.
pub struct Deployed {
    host: Arc<Host>,
    /// Manifests deployed through the API.
    api: Mutex<BTreeMap<FunctionKey, FunctionManifest>>,
    /// The directory's manifests as of the last sync, with their files.
    files: Mutex<BTreeMap<FunctionKey, (FunctionManifest, PathBuf)>>,
    /// Wakes the loader, as a file change does.
    wake: mpsc::UnboundedSender<Change>,
    functions_addr: SocketAddr,
}

impl Deployed {
    pub fn new(
        host: Arc<Host>,
        wake: mpsc::UnboundedSender<Change>,
        functions_addr: SocketAddr,
    ) -> Arc<Self> {
        Arc::new(Self {
            host,
            api: Mutex::default(),
            files: Mutex::default(),
            wake,
            functions_addr,
        })
    }

    pub fn api_manifests(&self) -> BTreeMap<FunctionKey, FunctionManifest> {
        self.api
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_files(&self, files: BTreeMap<FunctionKey, (FunctionManifest, PathBuf)>) {
        *self.files.lock().unwrap_or_else(PoisonError::into_inner) = files;
    }

    fn file_of(&self, key: &FunctionKey) -> Option<PathBuf> {
        let files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        files.get(key).map(|(_, f)| f.clone())
    }
}

pub fn router(deployed: Arc<Deployed>) -> Router {
    Router::new()
        .route(admin::UP_INFO_PATH, get(info))
        .route(admin::UP_MANIFESTS_PATH, get(manifests))
        .route(
            "/functions/{namespace}/{name}",
            put(put_function).delete(delete_function),
        )
        .with_state(deployed)
}

async fn info(State(d): State<Arc<Deployed>>) -> impl IntoResponse {
    Json(UpInfo {
        functions: format!("http://{}", d.functions_addr),
    })
}

async fn manifests(State(d): State<Arc<Deployed>>) -> impl IntoResponse {
    let files = d
        .files
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let api = d.api_manifests();
    let mut list: Vec<_> = files
        .iter()
        .map(|(_, (m, file))| ManifestEntry {
            manifest: m.clone(),
            origin: file.display().to_string(),
        })
        .collect();
    list.extend(
        api.iter()
            .filter(|(k, _)| !files.contains_key(*k))
            .map(|(_, m)| ManifestEntry {
                manifest: m.clone(),
                origin: "api".into(),
            }),
    );
    Json(list)
}

fn conflict(key: &FunctionKey, file: &std::path::Path) -> Response {
    json_error(
        StatusCode::CONFLICT,
        &format!(
            "{key} is defined in {}: edit that file instead",
            file.display()
        ),
        Some(key),
    )
}

/// `PUT` with a Function manifest (YAML or JSON). `If-None-Match: *` only creates and
/// `If-Match: *` only replaces (412 otherwise), which is what deploy and update need.
async fn put_function(
    State(d): State<Arc<Deployed>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let key = FunctionKey::new(&namespace, &name);
    let m = match manifest::parse(&body) {
        Ok(mut all) if all.len() == 1 => all.remove(0),
        Ok(_) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "send exactly one Function manifest",
                Some(&key),
            );
        }
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string(), Some(&key)),
    };
    // Refused at the door, as a cluster's API server would: nothing is deployed.
    if let Err(invalid) = validate::manifest(&m, Origin::Inline) {
        return json_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("{key} is not valid: {invalid}"),
            Some(&key),
        );
    }
    if m.key() != key {
        return json_error(
            StatusCode::BAD_REQUEST,
            &format!("the manifest is {}, the path {key}", m.key()),
            Some(&key),
        );
    }
    if let Some(file) = d.file_of(&key) {
        return conflict(&key, &file);
    }
    let mut api = d.api.lock().unwrap_or_else(PoisonError::into_inner);
    let existing = api.get(&key);
    let precondition = |name: header::HeaderName| headers.get(name).is_some_and(|v| v == "*");
    if existing.is_some() && precondition(header::IF_NONE_MATCH) {
        return json_error(
            StatusCode::PRECONDITION_FAILED,
            &format!("{key} already exists"),
            Some(&key),
        );
    }
    if existing.is_none() && precondition(header::IF_MATCH) {
        return json_error(
            StatusCode::NOT_FOUND,
            &format!("{key} does not exist"),
            Some(&key),
        );
    }
    let created = existing.is_none();
    if existing != Some(&m) {
        // Pending until the loader picks it up, so a caller polling /status never mistakes the
        // previous revision's Ready for this one's.
        let serving = d.host.registry().get(&key).map(|f| f.def.served());
        d.host.set_status(
            &key,
            Some(SourceStatus {
                phase: Phase::Pending,
                message: String::new(),
                serving,
            }),
        );
        api.insert(key.clone(), m);
        let _ = d.wake.send(Change::Api);
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(serde_json::json!({ "created": created }))).into_response()
}

async fn delete_function(
    State(d): State<Arc<Deployed>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let key = FunctionKey::new(&namespace, &name);
    if let Some(file) = d.file_of(&key) {
        return conflict(&key, &file);
    }
    let removed = d
        .api
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&key);
    if removed.is_none() {
        return json_error(
            StatusCode::NOT_FOUND,
            &format!("{key} does not exist"),
            Some(&key),
        );
    }
    // Gone at once for the caller; the loader then forgets it.
    d.host.unload(&key);
    d.host.set_status(&key, None);
    let _ = d.wake.send(Change::Api);
    StatusCode::NO_CONTENT.into_response()
}
