//! Content digests as they name artifacts: `sha256:<64 lowercase hex>`. A digest read from a
//! Function's status is checked here before it names a file or a URL, so no status can point
//! outside the cache (`sha256:../../x`).

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use thiserror::Error;

/// A well-formed `sha256:<64 lowercase hex>` digest; on the wire, that text (reading checks it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Sha256Digest(String);

/// Not a digest: the text, cut to 100 characters (it is shown in logs).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{0:?} is not a digest: sha256:<64 lowercase hex digits>")]
pub struct BadDigest(pub String);

impl Sha256Digest {
    /// Reads `sha256:<64 lowercase hex>`; anything else is refused.
    pub fn parse(text: &str) -> Result<Self, BadDigest> {
        let ok = text.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if ok {
            Ok(Self(text.to_string()))
        } else {
            // Shown in logs: keep a hostile value short.
            Err(BadDigest(text.chars().take(100).collect()))
        }
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hash(&Sha256::digest(bytes))
    }

    /// The digest of a file's contents, read in pieces (artifacts are tens of MB).
    pub fn of_file(path: &std::path::Path) -> std::io::Result<Self> {
        let mut hasher = Sha256::new();
        std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
        Ok(Self::from_hash(&hasher.finalize()))
    }

    fn from_hash(hash: &[u8]) -> Self {
        Self(format!("sha256:{}", hex::encode(hash)))
    }

    /// Whether `bytes` are what this digest names.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        Self::of(bytes) == *self
    }

    /// A file name for what it names: `sha256-<hex>`.
    pub fn file_name(&self) -> String {
        self.0.replace(':', "-")
    }

    /// As written: `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a digest matches, as the CRDs state it (so the API server refuses any other).
pub const PATTERN: &str = "^sha256:[0-9a-f]{64}$";

impl schemars::JsonSchema for Sha256Digest {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Sha256Digest".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": PATTERN })
    }
}

impl From<Sha256Digest> for String {
    fn from(digest: Sha256Digest) -> Self {
        digest.0
    }
}

impl TryFrom<String> for Sha256Digest {
    type Error = BadDigest;

    fn try_from(text: String) -> Result<Self, BadDigest> {
        Sha256Digest::parse(&text)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sha256_lowercase_hex_is_a_digest() {
        let good = Sha256Digest::of(b"x");
        assert_eq!(Sha256Digest::parse(good.as_str()), Ok(good.clone()));
        assert!(good.matches(b"x") && !good.matches(b"y"));
        assert_eq!(
            good.file_name(),
            good.as_str().replace("sha256:", "sha256-")
        );
        for bad in [
            String::new(),
            "sha256:".into(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}/", "a".repeat(64)),
            format!("sha512:{}", "a".repeat(64)),
            "sha256:../../../etc/passwd".into(),
            format!("sha256:{}/../../x", "a".repeat(55)),
        ] {
            assert!(Sha256Digest::parse(&bad).is_err(), "{bad}");
        }
    }

    /// A status naming anything but a digest never reads, so never names a file or a URL (and
    /// the CRD's pattern keeps the API server from storing one).
    #[test]
    fn a_poisoned_artifact_never_reads() {
        use crate::function::ArtifactRef;
        let good = Sha256Digest::of(b"x").to_string();
        let read = |digest: &str, precompiled: Option<&str>| {
            let mut status = serde_json::json!({ "digest": digest, "size": 1, "abi": "wagi" });
            if let Some(p) = precompiled {
                status["precompiled"] = p.into();
            }
            serde_json::from_value::<ArtifactRef>(status)
        };
        let artifact = read(&good, Some(&good)).unwrap();
        assert_eq!(artifact.precompiled, Some(artifact.digest.clone()));
        assert_eq!(read(&good, None).unwrap().precompiled, None);
        for (digest, precompiled) in [
            ("sha256:../../escaped".to_string(), None),
            (format!("{good}/../../escaped"), None),
            (good.to_uppercase(), None),
            (good.clone(), Some("sha256:../../escaped")),
        ] {
            let e = read(&digest, precompiled).unwrap_err();
            assert!(e.to_string().contains("is not a digest"), "{e}");
        }
        let schema = serde_json::to_value(schemars::schema_for!(ArtifactRef)).unwrap();
        assert_eq!(schema["properties"]["digest"]["pattern"], PATTERN);
    }
}
