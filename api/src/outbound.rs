//! The destinations a wasi:http Function may call (`allowedOutboundHosts`), as
//! `scheme://host[:port]` patterns (Spin's idea). The hosts enforce them (resolving names and
//! refusing special addresses); this module only reads and matches them.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use thiserror::Error;

/// Which schemes a pattern admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SchemePattern {
    Http,
    Https,
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// `*`: any name or address.
    Any,
    /// `*.example.com`: names under it, not the domain itself.
    Suffix(String),
    /// One name, or an address literal: "explicitly listed".
    Exact(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortPattern {
    /// No port: the scheme's default.
    Default,
    Any,
    Port(u16),
}

/// One entry of `allowedOutboundHosts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: SchemePattern,
    host: HostPattern,
    port: PortPattern,
}

/// A text that is not a pattern, as written.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error(
    "{0:?} must be scheme://host[:port] with scheme http, https or *, host a name, *.domain, * or an address, port a number or *, and no path"
)]
pub struct BadPattern(pub String);

impl FromStr for AllowedHost {
    type Err = BadPattern;

    fn from_str(text: &str) -> Result<Self, BadPattern> {
        let bad = || BadPattern(text.to_string());
        let (scheme, rest) = text.split_once("://").ok_or_else(bad)?;
        let scheme = match scheme {
            "http" => SchemePattern::Http,
            "https" => SchemePattern::Https,
            "*" => SchemePattern::Any,
            _ => return Err(bad()),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(bad());
        }
        // `[v6]:port`, `[v6]`, `host:port`, `host`.
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (addr, after) = v6.split_once(']').ok_or_else(bad)?;
                addr.parse::<Ipv6Addr>().map_err(|_| bad())?;
                let port = match after {
                    "" => None,
                    p => Some(p.strip_prefix(':').ok_or_else(bad)?),
                };
                (addr.to_string(), port)
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
                None => (authority.to_ascii_lowercase(), None),
            },
        };
        let port = match port {
            None => PortPattern::Default,
            Some("*") => PortPattern::Any,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                PortPattern::Port(p.parse().map_err(|_| bad())?)
            }
            Some(_) => return Err(bad()),
        };
        let is_name = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        };
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if !is_name(suffix) {
                return Err(bad());
            }
            HostPattern::Suffix(suffix.to_string())
        } else if host.parse::<IpAddr>().is_ok() || is_name(&host) {
            HostPattern::Exact(host)
        } else {
            return Err(bad());
        };
        Ok(Self { scheme, host, port })
    }
}

impl AllowedHost {
    /// Whether a request to `target` fits this pattern.
    pub fn matches(&self, target: &Target) -> bool {
        let scheme = match self.scheme {
            SchemePattern::Http => !target.https,
            SchemePattern::Https => target.https,
            SchemePattern::Any => true,
        };
        let port = match self.port {
            PortPattern::Any => true,
            PortPattern::Port(p) => p == target.port,
            PortPattern::Default => target.port == if target.https { 443 } else { 80 },
        };
        let host = match &self.host {
            HostPattern::Any => true,
            HostPattern::Suffix(s) => target
                .host
                .strip_suffix(s.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            HostPattern::Exact(h) => *h == target.host,
        };
        scheme && port && host
    }

    /// Whether it names one host, which is allowed to be special (loopback, metadata).
    pub fn is_exact(&self) -> bool {
        matches!(self.host, HostPattern::Exact(_))
    }
}

/// Where a request goes: its scheme, its host (lowercase, brackets off an IPv6 literal) and
/// its port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Whether the scheme is https (else http).
    pub https: bool,
    /// A name or address, lowercase, without an IPv6 literal's brackets.
    pub host: String,
    /// The port, the scheme's default when the URI names none.
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        match self.host.parse::<Ipv6Addr>() {
            Ok(_) => write!(f, "{scheme}://[{}]:{}", self.host, self.port),
            Err(_) => write!(f, "{scheme}://{}:{}", self.host, self.port),
        }
    }
}

impl Target {
    /// The destination of an absolute request URI.
    pub fn of_uri(uri: &http::Uri) -> Option<Self> {
        let https = match uri.scheme_str()? {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let host = uri.host()?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        Some(Self {
            https,
            host: host.to_ascii_lowercase(),
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_parse_or_say_why_not() {
        for good in [
            "https://api.example.com",
            "http://*.svc:8080",
            "*://*:*",
            "http://127.0.0.1:9000",
            "http://[::1]:80",
            "https://example.com/",
        ] {
            assert!(good.parse::<AllowedHost>().is_ok(), "{good}");
        }
        for bad in [
            "api.example.com",
            "ftp://example.com",
            "https://example.com/path",
            "https://user@example.com",
            "https://example.com:http",
            "https://exa mple.com",
            "https://*example.com",
            "https://[::1",
            "https://",
            "https://example.com:99999",
        ] {
            assert!(bad.parse::<AllowedHost>().is_err(), "{bad}");
        }
    }
}
