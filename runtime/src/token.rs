//! Bearer tokens between wasmless's own parts: the builder's API, the artifact server, the
//! Metacontroller hook and the hosts' admin data. Each is a Secret-mounted file read at start;
//! callers send `Authorization: Bearer <token>`, compared in constant time.

use std::path::Path;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// Shorter tokens are refused: a guessable token is no credential.
pub const MIN_LEN: usize = 16;

/// The same token in a header of its own, for callers whose `Authorization` is taken: the API
/// server's pods proxy authenticates the caller with it and removes it before proxying.
pub const HEADER: &str = "wasmless-token";

#[derive(Debug, Error)]
pub enum TokenError {
    #[error("cannot read the token file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the token in {0} is shorter than {MIN_LEN} characters")]
    TooShort(String),
}

/// A shared secret; its `Debug` never shows it.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// The token `text` holds (surrounding white space trimmed); `origin` names it in errors.
    pub fn new(text: &str, origin: &str) -> Result<Self, TokenError> {
        let token = text.trim();
        if token.len() < MIN_LEN {
            return Err(TokenError::TooShort(origin.to_string()));
        }
        Ok(Self(token.to_string()))
    }

    /// The token in a file (a mounted Secret).
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::new(&text, &shown)
    }

    /// The value to send.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Whether `headers` carry this token, as a bearer token or in [`HEADER`].
    pub fn presented_in(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let given = bearer.or_else(|| headers.get(HEADER).and_then(|v| v.to_str().ok()));
        given.is_some_and(|g| bool::from(g.trim().as_bytes().ct_eq(self.0.as_bytes())))
    }
}

/// The answer to a request without the token: nothing of what it asked for.
pub fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "a valid bearer token is required\n",
    )
        .into_response()
}

/// Middleware (`axum::middleware::from_fn_with_state(token, token::require)`): answers 401
/// unless the request carries the token.
pub async fn require(State(token): State<Token>, request: Request, next: Next) -> Response {
    if token.presented_in(request.headers()) {
        next.run(request).await
    } else {
        unauthorized()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        h
    }

    #[test]
    fn only_the_exact_token_is_accepted() {
        let token = Token::new(" 0123456789abcdef\n", "test").unwrap();
        assert!(token.presented_in(&headers("authorization", "Bearer 0123456789abcdef")));
        assert!(token.presented_in(&headers(HEADER, "0123456789abcdef")));
        for (name, value) in [
            ("authorization", "Bearer 0123456789abcde"),
            ("authorization", "Bearer 0123456789abcdefg"),
            ("authorization", "Basic 0123456789abcdef"),
            ("authorization", "0123456789abcdef"),
            ("x-other", "0123456789abcdef"),
        ] {
            assert!(
                !token.presented_in(&headers(name, value)),
                "{name}: {value}"
            );
        }
        assert!(!token.presented_in(&HeaderMap::new()));
        assert!(matches!(
            Token::new("short", "x"),
            Err(TokenError::TooShort(_))
        ));
        assert_eq!(format!("{token:?}"), "Token(..)");
    }
}
