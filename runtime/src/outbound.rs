//! What a wasi:http function may call. Closed by default: a Function lists the destinations it
//! may reach in `allowedOutboundHosts` (Spin's idea), as `scheme://host[:port]` patterns. The
//! name is resolved and every address checked, so a name pointing at the host itself, loopback
//! or a cloud metadata address is refused unless the pattern names that host exactly; the host's
//! own listeners are refused always (they would let a tenant call another's `/fn/` route or read
//! the admin API).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};

use thiserror::Error;
use wasmless_api::outbound::{AllowedHost, BadPattern, Target};

/// The AWS metadata service's IPv6 address; its IPv4 one is link-local like GCP's and Azure's.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

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
