//! Reading Function manifests from YAML (several documents per file) with clear errors.

use serde::Deserialize;
use thiserror::Error;

use wasmless_api::FunctionManifest;
use wasmless_api::function::{API_VERSION, KIND};

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("document {index}: {message}")]
    Yaml { index: usize, message: String },
    #[error("document {index} ({name}): {message}")]
    Invalid {
        index: usize,
        name: String,
        message: String,
    },
}

/// Parses every `Function` document in `text`. Documents of other kinds are skipped, so a file
/// can keep a Function next to, say, a ConfigMap. Names and specs are not checked here: callers
/// validate each function, so that one bad function does not hide the others.
pub fn parse(text: &str) -> Result<Vec<FunctionManifest>, ManifestError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let yaml_err = |e: serde_yaml::Error| ManifestError::Yaml {
            index,
            message: e.to_string(),
        };
        let value = serde_yaml::Value::deserialize(doc).map_err(yaml_err)?;
        if value.is_null() {
            continue;
        }
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        if kind != KIND {
            tracing::debug!("document {index}: skipping kind {kind:?}");
            continue;
        }
        let manifest: FunctionManifest = serde_yaml::from_value(value).map_err(yaml_err)?;
        validate(&manifest).map_err(|message| ManifestError::Invalid {
            index,
            name: manifest.metadata.name.clone(),
            message,
        })?;
        out.push(manifest);
    }
    Ok(out)
}

/// What makes a document a manifest at all; what it asks for is [`wasmless_api::validate`]'s
/// to judge, per function.
fn validate(m: &FunctionManifest) -> Result<(), String> {
    if m.api_version != API_VERSION {
        return Err(format!(
            "apiVersion {:?} is not {API_VERSION:?} (a Kubeless manifest ports by changing apiVersion only)",
            m.api_version
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmless_api::function::IntOrString;

    const TWO: &str = r#"
apiVersion: wasmless.dev/v1alpha1
kind: Function
metadata: {name: a, namespace: test}
spec: {runtime: wat, function: "(module)", timeout: "5"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
---
apiVersion: wasmless.dev/v1alpha1
kind: Function
metadata: {name: b}
spec: {runtime: wat, function: "(module)", timeout: 7}
"#;

    #[test]
    fn several_documents_and_defaults() {
        let all = parse(TWO).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].key().to_string(), "test/a");
        assert_eq!(all[1].key().to_string(), "default/b");
        assert_eq!(all[1].spec.timeout, Some(IntOrString::Int(7)));
    }

    #[test]
    fn errors_name_the_document() {
        let e = parse(
            "kind: Function\napiVersion: wasmless.dev/v1alpha1\nmetadata: {name: x}\nspec: [",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("document 1:"), "{e}");
        let e =
            parse(&TWO.replacen("wasmless.dev/v1alpha1", "kubeless.io/v1beta1", 1)).unwrap_err();
        assert!(e.to_string().contains("document 1 (a)"), "{e}");
        assert!(e.to_string().contains("changing apiVersion"), "{e}");
        // Bad names and specs parse: each function's validation says what is wrong with it.
        let parsed = parse(
            &TWO.replace("name: b", "name: B_b")
                .replace("timeout: 7", "timeout: -1"),
        );
        assert_eq!(parsed.map(|all| all.len()).ok(), Some(2));
    }

    #[test]
    fn every_example_manifest_is_valid() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut dirs = vec![root.join("functions"), root.join("examples")];
        let mut checked = 0;
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "yaml") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for m in parse(&text).unwrap() {
                    let origin = wasmless_api::validate::Origin::Dir(&dir);
                    let verdict = wasmless_api::validate::manifest(&m, origin);
                    assert!(verdict.is_ok(), "{}: {verdict:?}", path.display());
                    checked += 1;
                }
            }
        }
        assert!(checked > 20, "{checked} examples");
    }
}
