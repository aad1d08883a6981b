//! `function-content-type`: how `function` is encoded, in Kubeless's words, and whether the
//! decoded bytes are one source file or a zip archive of files.

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// A manifest's `function-content-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentType {
    /// The source itself (the default).
    Text,
    /// The source, base64-encoded.
    Base64,
    /// In a cluster an http(s) URL (not fetched yet); in `wasmless up` a file beside the manifest.
    Url,
    /// A zip archive, base64-encoded (Kubeless's `--from-file` of a `.zip` or a directory).
    Base64Zip,
    /// A zip archive at a `url`.
    UrlZip,
}

/// What the decoded bytes are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Packaging {
    /// One source file: the handler's.
    #[default]
    File,
    /// A zip archive holding the handler's file and the files beside it.
    Zip,
}

impl ContentType {
    /// Every spelling a manifest may use (empty means text), as the CRD lists them.
    pub const NAMES: [&'static str; 6] = ["", "text", "base64", "url", "base64+zip", "url+zip"];

    /// Reads a manifest's spelling; an error says what to use instead.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "" | "text" => Ok(ContentType::Text),
            "base64" => Ok(ContentType::Base64),
            "url" => Ok(ContentType::Url),
            "base64+zip" => Ok(ContentType::Base64Zip),
            "url+zip" => Ok(ContentType::UrlZip),
            other if other.ends_with("+compressedtar") => Err(format!(
                "{other:?}: compressed tar archives are not supported: use a zip archive (base64+zip)"
            )),
            other => Err(format!(
                "{other:?} is not supported: use text, base64, url, base64+zip or url+zip"
            )),
        }
    }

    /// Its spelling in a manifest (`text` for the default).
    pub fn name(self) -> &'static str {
        match self {
            ContentType::Text => "text",
            ContentType::Base64 => "base64",
            ContentType::Url => "url",
            ContentType::Base64Zip => "base64+zip",
            ContentType::UrlZip => "url+zip",
        }
    }

    /// Whether `function` names where the source is (`url`, `url+zip`) rather than holding it.
    pub fn is_url(self) -> bool {
        matches!(self, ContentType::Url | ContentType::UrlZip)
    }

    /// Whether the decoded bytes are one file or a zip archive.
    pub fn packaging(self) -> Packaging {
        match self {
            ContentType::Base64Zip | ContentType::UrlZip => Packaging::Zip,
            _ => Packaging::File,
        }
    }
}

/// The bytes an inline `function` holds (`text`, `base64`, `base64+zip`; base64 may be split
/// over lines); `None` for a `url` source, which says where they are instead.
pub fn decode_inline(
    function: &str,
    content_type: ContentType,
) -> Option<Result<Vec<u8>, base64::DecodeError>> {
    match content_type {
        ContentType::Text => Some(Ok(function.as_bytes().to_vec())),
        ContentType::Base64 | ContentType::Base64Zip => {
            let compact: String = function.split_whitespace().collect();
            Some(base64::engine::general_purpose::STANDARD.decode(compact))
        }
        ContentType::Url | ContentType::UrlZip => None,
    }
}

/// A file's bytes as a spec's `(function, function-content-type)`: text when they are UTF-8
/// without NUL (what a user can read in the manifest), else base64.
pub fn encode(bytes: Vec<u8>) -> (String, ContentType) {
    let base64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    match String::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => (text, ContentType::Text),
        Ok(text) => (base64(text.as_bytes()), ContentType::Base64),
        Err(e) => (base64(e.as_bytes()), ContentType::Base64),
    }
}

/// A zip archive's bytes as a spec's `(function, function-content-type)`.
pub fn encode_zip(zip: &[u8]) -> (String, ContentType) {
    (
        base64::engine::general_purpose::STANDARD.encode(zip),
        ContentType::Base64Zip,
    )
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeless_names() {
        for name in ContentType::NAMES {
            let parsed = ContentType::parse(name);
            assert!(parsed.is_ok(), "{name}");
            if let Ok(c) = parsed
                && !name.is_empty()
            {
                assert_eq!(c.name(), name);
            }
        }
        assert_eq!(ContentType::parse(""), Ok(ContentType::Text));
        assert_eq!(
            ContentType::parse("base64+zip").map(ContentType::packaging),
            Ok(Packaging::Zip)
        );
        assert!(
            ContentType::parse("base64+compressedtar")
                .is_err_and(|e| e.contains("compressed tar archives are not supported"))
        );
        assert!(ContentType::parse("Text").is_err_and(|e| e.contains("base64+zip")));
    }
}
