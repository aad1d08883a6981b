//! `up`'s admin listener deploys code and runs it on this machine, with no credential: it listens
//! on loopback only and answers only requests addressed to loopback. A web page the developer
//! opens can still send requests there: the Host check refuses DNS rebinding (a name of the
//! page's that now resolves to 127.0.0.1) and the Origin check any other site's page.

use std::net::{IpAddr, SocketAddr};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{StatusCode, header};
use wasmless_runtime::host::json_error;

/// Refuses an `--admin` address that is not loopback.
pub fn check_bind(admin: &str) -> anyhow::Result<()> {
    let host = admin.rsplit_once(':').map_or(admin, |(host, _port)| host);
    if is_loopback(host) {
        Ok(())
    } else {
        anyhow::bail!(
            "--admin {admin}: the admin API deploys and runs code without a credential, so it listens on loopback only (127.0.0.1, [::1] or localhost)"
        )
    }
}

/// Middleware: 403 unless Host names loopback and Origin, when sent, is a loopback page.
pub async fn guard(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !host.is_some_and(|h| is_loopback(strip_port(h))) {
        return json_error(
            StatusCode::FORBIDDEN,
            "the admin API answers requests for localhost, 127.0.0.1 or [::1] only",
            None,
        );
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let page = origin.to_str().ok().and_then(|o| {
            o.strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
        });
        if !page.is_some_and(|p| is_loopback(strip_port(p))) {
            return json_error(
                StatusCode::FORBIDDEN,
                "the admin API refuses requests from web pages of other sites",
                None,
            );
        }
    }
    next.run(request).await
}

/// `host[:port]` or `[v6][:port]` without the port.
fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map_or(authority, |(ip, _)| ip);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _port)| host)
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        || host
            .parse::<SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_and_binds() {
        for ok in [
            "localhost:9090",
            "127.0.0.1:9090",
            "[::1]:9090",
            "LOCALHOST",
        ] {
            assert!(is_loopback(strip_port(ok)), "{ok}");
        }
        for bad in [
            "evil.example:9090",
            "localhost.evil.example",
            "0.0.0.0:9090",
            "192.168.1.2",
            "[::]:9090",
            "",
        ] {
            assert!(!is_loopback(strip_port(bad)), "{bad}");
        }
        assert!(check_bind("127.0.0.1:0").is_ok());
        assert!(check_bind("[::1]:9090").is_ok());
        assert!(check_bind("localhost:9090").is_ok());
        assert!(check_bind("0.0.0.0:9090").is_err());
        assert!(check_bind("192.168.1.2:9090").is_err());
    }
}
