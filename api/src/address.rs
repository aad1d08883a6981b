//! Which function a request is for. Inside a cluster the Host header names it, exactly as
//! Kubeless's per-function Services did: `<name>.<namespace>[.svc[.cluster.local]][:port]`.
//! Locally, where the Host is `localhost` or an address, the path does: `/fn/<namespace>/<name>/…`.

use crate::function::FunctionKey;

/// Prefix of the path-based route used when the Host names no function.
pub const PATH_PREFIX: &str = "/fn/";

/// The function a Host header names, if it has one of the Service DNS forms.
pub fn key_from_host(host: &str) -> Option<FunctionKey> {
    let mut labels = hostname(host)?.split('.');
    let name = labels.next().filter(|l| !l.is_empty())?;
    let namespace = labels.next().filter(|l| !l.is_empty())?;
    let rest: Vec<&str> = labels.collect();
    let service_suffix = match rest.as_slice() {
        [] => true,
        [svc] => svc.eq_ignore_ascii_case("svc"),
        [svc, cluster, local] => {
            svc.eq_ignore_ascii_case("svc")
                && cluster.eq_ignore_ascii_case("cluster")
                && local.eq_ignore_ascii_case("local")
        }
        _ => false,
    };
    // `127.0.0.1` has four labels and fails above; `10.0` style two-label numbers are no names.
    // Anything but DNS label characters names no Function (found by tests/tests/fuzz.rs).
    let is_dns_label = |l: &str| {
        l.bytes().any(|b| b.is_ascii_alphabetic())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    (service_suffix && is_dns_label(name) && is_dns_label(namespace))
        .then(|| FunctionKey::new(namespace, name))
}

/// A Host header's hostname: without its port or trailing dot; none for an IPv6 literal or
/// an empty name.
pub fn hostname(host: &str) -> Option<&str> {
    if host.starts_with('[') {
        return None;
    }
    let host = host.rsplit_once(':').map_or(host, |(h, _port)| h);
    let host = host.strip_suffix('.').unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

/// The path route of `key`: `/fn/<namespace>/<name>/` (what [`key_from_path`] reads).
pub fn path(key: &FunctionKey) -> String {
    format!("{PATH_PREFIX}{}/{}/", key.namespace, key.name)
}

/// The function a `/fn/<namespace>/<name>/rest` path names, and the path the function sees.
pub fn key_from_path(path_and_query: &str) -> Option<(FunctionKey, String)> {
    let rest = path_and_query.strip_prefix(PATH_PREFIX)?;
    let (namespace, rest) = rest.split_once('/')?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (name, tail) = rest.split_at(end);
    if namespace.is_empty() || name.is_empty() {
        return None;
    }
    let tail = if tail.starts_with('/') {
        tail.to_string()
    } else {
        format!("/{tail}")
    };
    Some((FunctionKey::new(namespace, name), tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, name: &str) -> Option<FunctionKey> {
        Some(FunctionKey::new(ns, name))
    }

    #[test]
    fn every_service_host_form() {
        for host in [
            "hello-world.test",
            "hello-world.test:8080",
            "hello-world.test.svc",
            "hello-world.test.svc:8080",
            "hello-world.test.svc.cluster.local",
            "hello-world.test.svc.cluster.local:8080",
            "Hello-World.TEST.Svc.Cluster.Local:8080",
            "hello-world.test.svc.cluster.local.",
        ] {
            assert_eq!(key_from_host(host), key("test", "hello-world"), "{host}");
        }
    }

    #[test]
    fn hosts_that_name_no_function() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "a.b.c",
            "a.b.svc.cluster",
            "a.b.svc.other.local",
            ".test",
            "",
            "a/fn/.svc",
            "a:b.c:8080",
            "a_b.c",
            "\u{e9}.c",
        ] {
            assert_eq!(key_from_host(host), None, "{host}");
        }
    }

    #[test]
    fn path_routes() {
        assert_eq!(
            key_from_path("/fn/test/hello-world"),
            Some((FunctionKey::new("test", "hello-world"), "/".into()))
        );
        assert_eq!(
            key_from_path("/fn/test/hello-world/a/b?x=1"),
            Some((FunctionKey::new("test", "hello-world"), "/a/b?x=1".into()))
        );
        assert_eq!(
            key_from_path("/fn/test/hello-world?x=1"),
            Some((FunctionKey::new("test", "hello-world"), "/?x=1".into()))
        );
        assert_eq!(key_from_path("/fn/test"), None);
        assert_eq!(key_from_path("/fn//x"), None);
        assert_eq!(key_from_path("/other/test/x"), None);
    }
}
