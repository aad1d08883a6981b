//! What a wasi:http function may call. Closed by default: a Function lists the destinations it
//! may reach in `allowedOutboundHosts` (Spin's idea), as `scheme://host[:port]` patterns. The
//! name is resolved and every address checked, so a name pointing at the host itself, loopback
//! or a cloud metadata address is refused unless the pattern names that host exactly; the host's
//! own listeners are refused always (they would let a tenant call another's `/fn/` route or read
//! the admin API).

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use thiserror::Error;

/// The AWS metadata service's IPv6 address; its IPv4 one is link-local like GCP's and Azure's.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

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
    fn matches(&self, target: &Target) -> bool {
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

    fn is_exact(&self) -> bool {
        matches!(self.host, HostPattern::Exact(_))
    }
}

/// Where a request goes: its scheme, its host (lowercase, brackets off an IPv6 literal) and
/// its port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    pub host: String,
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

/// Why an outbound request was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Refused {
    #[error("{0} is not in the function's allowedOutboundHosts")]
    NotListed(Target),
    #[error("{target} resolves to {ip}, one of this host's own listeners")]
    OwnListener { target: Target, ip: IpAddr },
    #[error(
        "{target} resolves to {ip} ({what}), allowed only when allowedOutboundHosts names that host exactly"
    )]
    Special {
        target: Target,
        ip: IpAddr,
        what: &'static str,
    },
    #[error("cannot resolve {target}: {message}")]
    Resolve { target: Target, message: String },
}

/// A function's outbound rules, parsed once when it loads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allowed: Vec<AllowedHost>,
}

impl OutboundPolicy {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, BadPattern> {
        let allowed = patterns
            .iter()
            .map(|p| p.as_ref().parse())
            .collect::<Result<_, _>>()?;
        Ok(Self { allowed })
    }

    /// The pattern that admits `target`, before any address is looked at.
    fn matching(&self, target: &Target) -> Option<&AllowedHost> {
        self.allowed.iter().find(|a| a.matches(target))
    }

    /// Resolves `target` and checks every address it names; the addresses to connect to.
    pub async fn check(&self, target: &Target) -> Result<Vec<SocketAddr>, Refused> {
        let pattern = self
            .matching(target)
            .ok_or_else(|| Refused::NotListed(target.clone()))?;
        let addrs: Vec<SocketAddr> = match target.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, target.port)],
            Err(_) => tokio::net::lookup_host((target.host.as_str(), target.port))
                .await
                .map_err(|e| Refused::Resolve {
                    target: target.clone(),
                    message: e.to_string(),
                })?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(Refused::Resolve {
                target: target.clone(),
                message: "no addresses".into(),
            });
        }
        for addr in &addrs {
            let ip = canonical(addr.ip());
            if is_own_listener(ip, addr.port()) {
                return Err(Refused::OwnListener {
                    target: target.clone(),
                    ip,
                });
            }
            if let Some(what) = special(ip)
                && !pattern.is_exact()
            {
                return Err(Refused::Special {
                    target: target.clone(),
                    ip,
                    what,
                });
            }
        }
        Ok(addrs)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Addresses no wildcard may reach: this machine, link-local (cloud metadata lives there),
/// unspecified, broadcast and multicast.
fn special(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Some("loopback"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("link-local, where cloud metadata lives"),
        IpAddr::V4(v4) if v4.is_unspecified() || v4 == Ipv4Addr::BROADCAST => {
            Some("not a destination")
        }
        IpAddr::V4(v4) if v4.is_multicast() => Some("multicast"),
        IpAddr::V6(v6) if v6.is_loopback() => Some("loopback"),
        IpAddr::V6(v6) if v6 == METADATA_V6 => Some("the cloud metadata service"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("link-local"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("not a destination"),
        IpAddr::V6(v6) if v6.is_multicast() => Some("multicast"),
        _ => None,
    }
}

/// The addresses this process listens on (recorded by [`crate::server::serve`]).
static OWN_LISTENERS: Mutex<BTreeSet<SocketAddr>> = Mutex::new(BTreeSet::new());

/// Records a listener of this process, so functions can never call it.
pub fn record_own_listener(addr: SocketAddr) {
    OWN_LISTENERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(addr);
}

/// Whether `ip:port` reaches one of this process's listeners: the same address, or any address
/// of this machine when the listener is bound to all of them.
fn is_own_listener(ip: IpAddr, port: u16) -> bool {
    let own: Vec<SocketAddr> = OWN_LISTENERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|a| a.port() == port)
        .copied()
        .collect();
    own.iter().any(|listener| {
        let bound = canonical(listener.ip());
        bound == ip
            || (bound.is_unspecified() && is_local_address(ip))
            || (bound.is_loopback() && ip.is_loopback())
            || (ip.is_unspecified())
    })
}

/// Whether `ip` is an address of this machine: only those can be bound.
fn is_local_address(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || std::net::UdpSocket::bind((ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(https: bool, host: &str, port: u16) -> Target {
        Target {
            https,
            host: host.into(),
            port,
        }
    }

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

    #[test]
    fn matching_by_scheme_host_and_port() {
        let p = OutboundPolicy::new(&["https://api.example.com", "http://*.svc:8080"]).unwrap();
        assert!(p.matching(&target(true, "api.example.com", 443)).is_some());
        assert!(p.matching(&target(false, "api.example.com", 80)).is_none());
        assert!(p.matching(&target(true, "api.example.com", 8443)).is_none());
        assert!(p.matching(&target(false, "a.svc", 8080)).is_some());
        assert!(p.matching(&target(false, "svc", 8080)).is_none());
        assert!(p.matching(&target(false, "evilsvc", 8080)).is_none());
        assert!(p.matching(&target(false, "a.svc", 80)).is_none());
        assert!(
            OutboundPolicy::default()
                .matching(&target(true, "x", 443))
                .is_none()
        );
    }

    #[tokio::test]
    async fn wildcards_never_reach_loopback_or_metadata_but_exact_entries_may() {
        let any = OutboundPolicy::new(&["*://*:*"]).unwrap();
        for (host, port) in [
            ("127.0.0.1", 80),
            ("169.254.169.254", 80),
            ("fd00:ec2::254", 80),
            ("::ffff:127.0.0.1", 80),
            ("0.0.0.0", 80),
            ("localhost", 80),
        ] {
            let r = any.check(&target(false, host, port)).await;
            assert!(matches!(r, Err(Refused::Special { .. })), "{host}: {r:?}");
        }
        let exact = OutboundPolicy::new(&["http://127.0.0.1:1"]).unwrap();
        assert!(exact.check(&target(false, "127.0.0.1", 1)).await.is_ok());
        assert!(matches!(
            OutboundPolicy::default()
                .check(&target(false, "127.0.0.1", 1))
                .await,
            Err(Refused::NotListed(_))
        ));
    }

    #[tokio::test]
    async fn own_listeners_are_refused_even_when_listed() {
        let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        record_own_listener(listener.local_addr().unwrap());
        let listed = OutboundPolicy::new(&[format!("http://127.0.0.1:{port}")]).unwrap();
        let r = listed.check(&target(false, "127.0.0.1", port)).await;
        assert!(matches!(r, Err(Refused::OwnListener { .. })), "{r:?}");
    }
}
