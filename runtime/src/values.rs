//! Secret and ConfigMap values, resolved by a host when it loads a function (never by the
//! controller, never at build time): a changed value makes a new [`crate::FunctionDef`], so the
//! host loads it anew and no idle instance keeps the old value. Values never reach a log, a
//! status or a metric: [`Resolved`]'s `Debug` shows names only, and errors name objects and keys.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;

use thiserror::Error;

use wasmless_api::function::{EnvSource, ObjectName, Settings};

/// An object's data: each key's bytes (a ConfigMap's `data` as UTF-8, its `binaryData` too).
pub type Data = BTreeMap<String, Vec<u8>>;

/// What a host knows of the objects a function reads: `None` for one that does not exist.
pub type Known = BTreeMap<ObjectName, Option<Data>>;

/// A function's environment and mounted files, values included.
#[derive(Clone, Default, PartialEq)]
pub struct Resolved {
    pub env: Vec<(String, String)>,
    /// Guest path (`/db`) and the files under it.
    pub mounts: Vec<(String, Data)>,
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(n, _)| n.as_str()).collect();
        let mounts: Vec<&str> = self.mounts.iter().map(|(p, _)| p.as_str()).collect();
        f.debug_struct("Resolved")
            .field("env", &names)
            .field("mounts", &mounts)
            .finish()
    }
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error(
        "{field}: {object} does not exist in namespace {namespace:?}, or this host may not read it (a Function reads its own namespace's only; the chart's host.secretNamespaces grants hosts the reads)"
    )]
    MissingObject {
        field: String,
        object: ObjectName,
        namespace: String,
    },
    #[error("{field}: {object} has no key {key:?}")]
    MissingKey {
        field: String,
        object: ObjectName,
        key: String,
    },
    #[error("{field}: the value of key {key:?} of {object} is not UTF-8 text")]
    NotText {
        field: String,
        object: ObjectName,
        key: String,
    },
}

/// Resolves `settings` against what is known of the objects of `namespace`. An object absent
/// from `known` is treated as missing. Optional references that are missing leave the variable
/// unset or the mount empty.
pub fn resolve(
    settings: &Settings,
    namespace: &str,
    known: &Known,
) -> Result<Resolved, ResolveError> {
    let data = |object: &ObjectName| known.get(object).and_then(Option::as_ref);
    let missing_object = |field: String, object: &ObjectName| ResolveError::MissingObject {
        field,
        object: object.clone(),
        namespace: namespace.to_string(),
    };
    let mut resolved = Resolved::default();
    for env in &settings.env {
        let value = match &env.source {
            EnvSource::Value(v) => v.clone(),
            EnvSource::Key(k) => {
                let field = format!("env {}", env.name);
                let Some(data) = data(&k.object) else {
                    if k.optional {
                        continue;
                    }
                    return Err(missing_object(field, &k.object));
                };
                let Some(bytes) = data.get(&k.key) else {
                    if k.optional {
                        continue;
                    }
                    return Err(ResolveError::MissingKey {
                        field,
                        object: k.object.clone(),
                        key: k.key.clone(),
                    });
                };
                match String::from_utf8(bytes.clone()) {
                    Ok(text) if !text.contains('\0') => text,
                    _ => {
                        return Err(ResolveError::NotText {
                            field,
                            object: k.object.clone(),
                            key: k.key.clone(),
                        });
                    }
                }
            }
        };
        resolved.env.push((env.name.clone(), value));
    }
    for mount in &settings.mounts {
        let files = match data(&mount.object) {
            Some(data) => data.clone(),
            None if mount.optional => Data::new(),
            None => {
                return Err(missing_object(
                    format!("mount {}", mount.path),
                    &mount.object,
                ));
            }
        };
        resolved.mounts.push((mount.path.clone(), files));
    }
    Ok(resolved)
}

/// A function's mounts written out: one directory per mount, removed when the last instance
/// using it is gone. Preopened read-only into each instance.
#[derive(Debug)]
pub struct MountDirs {
    /// Guest path and host directory.
    pub dirs: Vec<(String, PathBuf)>,
    _root: Option<tempfile::TempDir>,
}

impl MountDirs {
    pub fn none() -> Self {
        Self {
            dirs: Vec::new(),
            _root: None,
        }
    }

    /// Writes `mounts` under a fresh private directory of the system's temporary directory
    /// (`TMPDIR`; the chart points it at memory, so values never reach a node's disk).
    pub fn write(mounts: &[(String, Data)]) -> std::io::Result<Self> {
        if mounts.is_empty() {
            return Ok(Self::none());
        }
        let root = tempfile::Builder::new()
            .prefix("wasmless-mounts-")
            .tempdir()?;
        let mut dirs = Vec::new();
        for (i, (guest, files)) in mounts.iter().enumerate() {
            let dir = root.path().join(i.to_string());
            std::fs::create_dir(&dir)?;
            for (key, bytes) in files {
                // Keys were checked as plain names when the spec was read; the API server
                // checks them again for Secrets and ConfigMaps.
                if wasmless_api::function::config_key(key).is_err() {
                    continue;
                }
                let mut file = private_file(&dir.join(key))?;
                file.write_all(bytes)?;
            }
            dirs.push((guest.clone(), dir));
        }
        Ok(Self {
            dirs,
            _root: Some(root),
        })
    }
}

fn private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::File::options();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmless_api::function::{EnvVar, FunctionSpec, ObjectKind, Preserved};

    fn secret(name: &str) -> ObjectName {
        ObjectName {
            kind: ObjectKind::Secret,
            name: name.into(),
        }
    }

    fn settings(optional: bool) -> Settings {
        let mut spec = FunctionSpec {
            env: vec![EnvVar::new("PLAIN", "v")],
            deployment: Some(Preserved::from(
                serde_json::json!({"spec": {"template": {"spec": {
                    "containers": [{"volumeMounts": [{"name": "db-vol", "mountPath": "/db"}]}],
                    "volumes": [{"name": "db-vol", "secret": {"secretName": "db"}}]
                }}}}),
            )),
            ..FunctionSpec::default()
        };
        spec.env.push(
            serde_json::from_value(serde_json::json!({"name": "PASSWORD", "valueFrom":
                {"secretKeyRef": {"name": "db", "key": "password", "optional": optional}}}))
            .unwrap(),
        );
        Settings::of(&spec)
    }

    #[test]
    fn resolves_in_order_and_never_shows_values() {
        let data = Data::from([("password".to_string(), b"s3cret".to_vec())]);
        let known = Known::from([(secret("db"), Some(data.clone()))]);
        let resolved = resolve(&settings(false), "t", &known).unwrap();
        assert_eq!(
            resolved.env,
            [
                ("PLAIN".to_string(), "v".to_string()),
                ("PASSWORD".to_string(), "s3cret".to_string())
            ]
        );
        assert_eq!(resolved.mounts, [("/db".to_string(), data)]);
        assert!(!format!("{resolved:?}").contains("s3cret"));

        let dirs = MountDirs::write(&resolved.mounts).unwrap();
        let file = dirs.dirs[0].1.join("password");
        assert_eq!(std::fs::read(&file).unwrap(), b"s3cret");
        let root = dirs.dirs[0].1.parent().unwrap().to_path_buf();
        drop(dirs);
        assert!(!root.exists(), "removed with the last user");
    }

    #[test]
    fn missing_keys_and_objects_say_which_without_values() {
        let wrong = Data::from([("user".to_string(), b"s3cret".to_vec())]);
        let known = Known::from([(secret("db"), Some(wrong))]);
        let e = resolve(&settings(false), "t", &known).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"env PASSWORD: Secret "db" has no key "password""#
        );
        let e = resolve(&settings(false), "t", &Known::new()).unwrap_err();
        assert!(
            e.to_string()
                .contains(r#"Secret "db" does not exist in namespace "t""#),
            "{e}"
        );
        // Optional: unset, and the mount... still required here (its own optional is false).
        let known = Known::from([(secret("db"), Some(Data::new()))]);
        let resolved = resolve(&settings(true), "t", &known).unwrap();
        assert_eq!(resolved.env.len(), 1);
        assert_eq!(resolved.mounts[0].1.len(), 0);
    }
}
