//! The shared host under hostile tenants and clients (issue 12): the real `wasmless up` binary,
//! real HTTP on loopback. Each test says what a well-behaved neighbour got.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wasmless_e2e::hostile::{
    DENIED, hog_manifest, noisy_manifest, open_files_limit, probe_component, probe_manifest,
    quantile, raw_exchange,
};
use wasmless_e2e::{Up, metric, report, wait_until, wat_manifest};

fn write(dir: &std::path::Path, file: &str, text: &str) -> anyhow::Result<()> {
    Ok(std::fs::write(dir.join(file), text)?)
}

fn rejected(metrics: &str, reason: &str) -> f64 {
    metric(
        metrics,
        &format!("wasmless_rejected_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Sends `n` requests at once to the function `host` names; their statuses and bodies.
async fn burst(up: &Up, host: &str, n: usize) -> Vec<(u16, Option<String>, String)> {
    let all = (0..n).map(|_| async {
        match up.request(Method::GET, host, "/").send().await {
            Ok(r) => {
                let retry = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                (
                    r.status().as_u16(),
                    retry,
                    r.text().await.unwrap_or_default(),
                )
            }
            Err(e) => (0, None, e.to_string()),
        }
    });
    join_all(all).await
}

fn count(results: &[(u16, Option<String>, String)], status: u16) -> usize {
    results.iter().filter(|r| r.0 == status).count()
}

#[tokio::test]
async fn two_hundred_requests_to_a_memory_hog_leave_its_neighbour_answering() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    // 16Mi cap, all of it grown and written, held for 200 ms.
    write(
        dir.path(),
        "hog.yaml",
        &hog_manifest("test", "hog", "16Mi", 256, 200),
    )?;
    write(
        dir.path(),
        "neighbour.yaml",
        &wat_manifest("test", "neighbour", "hi"),
    )?;
    let up = Up::start(dir.path(), &[]).await?;

    let started = Instant::now();
    let done = AtomicUsize::new(0);
    let hogs = async {
        let r = burst(&up, "hog.test", 200).await;
        done.store(1, Ordering::SeqCst);
        r
    };
    let neighbour = async {
        let mut latencies = Vec::new();
        let mut failures = Vec::new();
        while done.load(Ordering::SeqCst) == 0 || latencies.len() < 20 {
            let t = Instant::now();
            match up.get("neighbour.test", "/").await {
                Ok((200, body)) if body == "hi" => latencies.push(t.elapsed()),
                other => failures.push(format!("{other:?}")),
            }
        }
        (latencies, failures)
    };
    let (hogs, (mut latencies, failures)) = tokio::join!(hogs, neighbour);
    let elapsed = started.elapsed();

    assert!(failures.is_empty(), "the neighbour failed: {failures:?}");
    let (ok, busy) = (count(&hogs, 200), count(&hogs, 429));
    assert_eq!(ok + busy, 200, "only 200 or 429: {:?}", &hogs[..3]);
    assert!(ok >= 1);
    for (_, retry, body) in hogs.iter().filter(|r| r.0 == 429) {
        assert_eq!(retry.as_deref(), Some("1"));
        assert!(body.contains("already runs 64 instances"), "{body}");
    }
    assert_eq!(up.admin_get("/healthz").await?, "ok");
    wait_until(Duration::from_secs(10), || async {
        let m = up.admin_get("/metrics").await.unwrap_or_default();
        metric(&m, "wasmless_instances_live") == Some(0.0)
    })
    .await?;
    let m = up.admin_get("/metrics").await?;
    assert_eq!(rejected(&m, "function_concurrency"), busy as f64);
    report(&format!(
        "memory hog: 200 concurrent requests (16Mi each, per-function limit 64) in {:.2} s: {ok} ok, {busy} 429; neighbour: {} requests, 0 failed, p50 {:.1} ms, p99 {:.1} ms",
        elapsed.as_secs_f64(),
        latencies.len(),
        quantile(&mut latencies, 0.5).as_secs_f64() * 1e3,
        quantile(&mut latencies, 0.99).as_secs_f64() * 1e3,
    ));
    Ok(())
}

#[tokio::test]
async fn each_admission_limit_refuses_with_its_status_and_reason() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Each holds its slot for 3 s, so requests sent together overlap.
    for (name, memory) in [
        ("a", "1Mi"),
        ("b", "1Mi"),
        ("big", "40Mi"),
        ("huge", "64Mi"),
    ] {
        write(
            dir.path(),
            &format!("{name}.yaml"),
            &hog_manifest("test", name, memory, 1, 3_000),
        )?;
    }
    let long = wat_manifest("test", "long", "x").replace("spec:\n", "spec:\n  timeout: 60\n");
    write(dir.path(), "long.yaml", &long)?;
    let up = Up::start(
        dir.path(),
        &[
            "--max-concurrency-per-function",
            "2",
            "--max-queued-per-function",
            "1",
            "--max-concurrency",
            "3",
            "--queue-timeout-ms",
            "100",
            "--memory-budget",
            "48Mi",
            "--max-timeout",
            "30",
        ],
    )
    .await?;

    // Per function: two run, one waits 100 ms and is refused, one is refused at once.
    let r = burst(&up, "a.test", 4).await;
    assert_eq!((count(&r, 200), count(&r, 429)), (2, 2), "{r:?}");
    for (_, retry, body) in r.iter().filter(|r| r.0 == 429) {
        assert_eq!(retry.as_deref(), Some("1"));
        assert!(
            body.contains("this function already runs 2 instances"),
            "{body}"
        );
    }

    // Per host: three run, the fourth waits and is refused.
    let (ra, rb) = tokio::join!(burst(&up, "a.test", 2), burst(&up, "b.test", 2));
    let r: Vec<_> = ra.into_iter().chain(rb).collect();
    assert_eq!((count(&r, 200), count(&r, 503)), (3, 1), "{r:?}");
    let (_, retry, body) = r.iter().find(|r| r.0 == 503).cloned().unwrap_or_default();
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(
        body.contains("this host already runs 3 instances"),
        "{body}"
    );

    // Memory budget: 40Mi + 40Mi is over 48Mi.
    let r = burst(&up, "big.test", 2).await;
    assert_eq!((count(&r, 200), count(&r, 503)), (1, 1), "{r:?}");
    assert!(
        r.iter()
            .any(|x| x.2.contains("memory budget of 50331648 bytes")),
        "{r:?}"
    );

    // What can never fit is not loaded.
    let (phase, message) = up.phase("test", "huge").await.unwrap_or_default();
    assert_eq!(phase, "Failed");
    assert!(
        message.contains("above this host's memory budget"),
        "{message}"
    );
    let (phase, message) = up.phase("test", "long").await.unwrap_or_default();
    assert_eq!(phase, "Failed");
    assert!(
        message.contains("timeout 60 s is above this host's maximum of 30 s"),
        "{message}"
    );

    let m = up.admin_get("/metrics").await?;
    for (reason, n) in [
        ("function_concurrency", 2.0),
        ("host_concurrency", 1.0),
        ("memory_budget", 1.0),
    ] {
        assert_eq!(rejected(&m, reason), n, "{reason}");
    }
    assert!(up.log_contains("refused: this function already runs 2 instances"));
    Ok(())
}

#[tokio::test]
async fn a_full_instance_pool_answers_503_not_500() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write(
        dir.path(),
        "slow.yaml",
        &hog_manifest("test", "slow", "1Mi", 1, 3_000),
    )?;
    // Fewer core instances in the pool than admission lets run.
    let up = Up::start(dir.path(), &["--total-core-instances", "2"]).await?;
    let r = burst(&up, "slow.test", 4).await;
    assert_eq!((count(&r, 200), count(&r, 503)), (2, 2), "{r:?}");
    for (_, retry, body) in r.iter().filter(|r| r.0 == 503) {
        assert_eq!(retry.as_deref(), Some("1"));
        assert!(body.contains("instance pool is full"), "{body}");
    }
    let m = up.admin_get("/metrics").await?;
    assert_eq!(rejected(&m, "host_concurrency"), 2.0);
    Ok(())
}

#[tokio::test]
async fn each_connection_and_output_limit_holds() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write(
        dir.path(),
        "hello.yaml",
        &wat_manifest("test", "hello", "hi"),
    )?;
    write(
        dir.path(),
        "loud.yaml",
        &noisy_manifest("test", "loud", 200_000, 0),
    )?;
    write(
        dir.path(),
        "chatty.yaml",
        &noisy_manifest("test", "chatty", 2, 1_000),
    )?;
    let up = Up::start(
        dir.path(),
        &[
            "--max-connections",
            "20",
            "--header-timeout-ms",
            "3000",
            "--max-header-bytes",
            "8Ki",
            "--max-headers",
            "20",
            "--body-timeout-ms",
            "500",
            "--max-body",
            "64Ki",
            "--max-stdout",
            "64Ki",
            "--max-log-bytes",
            "4Ki",
        ],
    )
    .await?;
    let addr = up.functions;

    // Connections: 20 held open, the 21st is answered 503 and closed.
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(addr).await?);
    }
    let (reply, closed) = raw_exchange(addr, b"", Duration::from_secs(10)).await?;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(reply.contains("retry-after: 1") && closed, "{reply}");
    drop(held);
    wait_until(Duration::from_secs(10), || async {
        matches!(up.get("hello.test", "/").await, Ok((200, _)))
    })
    .await?;

    // A head that never ends, and a connection that sends nothing, are closed.
    let started = Instant::now();
    let (_, closed) = raw_exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: hello.test\r\n",
        Duration::from_secs(20),
    )
    .await?;
    assert!(closed, "a slow head is closed");
    let (_, closed) = raw_exchange(addr, b"", Duration::from_secs(20)).await?;
    assert!(closed, "an idle connection is closed");
    let header_timeout = started.elapsed();

    // Heads too large, with too many fields: 431.
    let big = "a".repeat(10_000);
    let r = up
        .request(Method::GET, "hello.test", "/")
        .header("x-big", &big)
        .send()
        .await?;
    assert_eq!(r.status(), 431);
    let mut many = up.request(Method::GET, "hello.test", "/");
    for i in 0..30 {
        many = many.header(format!("x-h{i}"), "v");
    }
    assert_eq!(many.send().await?.status(), 431);

    // Bodies too large (413) or too slow (408).
    let r = up
        .request(Method::POST, "hello.test", "/")
        .body(vec![b'x'; 100_000])
        .send()
        .await?;
    assert_eq!(r.status(), 413);
    let (reply, _) = raw_exchange(
        addr,
        b"POST / HTTP/1.1\r\nHost: hello.test\r\nContent-Length: 100\r\n\r\n0123456789",
        Duration::from_secs(10),
    )
    .await?;
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("did not arrive within 500 ms"), "{reply}");

    // A response larger than --max-stdout never leaves whole; stderr is capped per request and
    // in the log buffer.
    let (status, body) = up.get("loud.test", "/").await?;
    assert_eq!(status, 500);
    assert!(
        body.contains("the response is larger than this host's limit of 65536 bytes"),
        "{body}"
    );
    up.get("chatty.test", "/").await?;
    let logs: Vec<serde_json::Value> =
        serde_json::from_str(&up.admin_get("/functions/test/chatty/logs").await?)?;
    let kept: usize = logs
        .iter()
        .map(|l| l["line"].as_str().unwrap_or_default().len())
        .sum();
    assert!(
        !logs.is_empty() && kept <= 4 << 10,
        "{kept} bytes of log kept"
    );

    let m = up.admin_get("/metrics").await?;
    for reason in ["connections", "body_too_large", "body_timeout"] {
        assert!(rejected(&m, reason) >= 1.0, "{reason}: {m}");
    }
    report(&format!(
        "connection limits: 21st of 20 connections 503, slow and idle heads closed (header timeout 3 s, both in {:.1} s), 431 for 10 KB of headers and for 30 fields, 413 and 408 bodies, a 200 KB response answered {status} ({} bytes of error), 64 KB of stderr kept as {kept} bytes",
        header_timeout.as_secs_f64(),
        body.len(),
    ));
    Ok(())
}

#[tokio::test]
async fn connections_that_never_finish_their_headers_leave_neighbours_answering()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write(
        dir.path(),
        "neighbour.yaml",
        &wat_manifest("test", "neighbour", "hi"),
    )?;
    let up = Up::start(dir.path(), &[]).await?;
    // This process and the host each hold one descriptor per connection.
    let limit = open_files_limit().unwrap_or(1024);
    let n = 2_000.min(limit.saturating_sub(512) / 2) as usize;

    let started = Instant::now();
    let mut slow = Vec::with_capacity(n);
    while slow.len() < n {
        let batch = (slow.len()..n.min(slow.len() + 100)).map(|_| async {
            let mut s = TcpStream::connect(up.functions).await?;
            s.write_all(b"GET / HTTP/1.1\r\nHost: neighbour.test\r\nX-Slow: ")
                .await?;
            anyhow::Ok(s)
        });
        for s in join_all(batch).await {
            slow.push(s?);
        }
    }
    let opened = started.elapsed();

    let mut latencies = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        assert_eq!(up.get("neighbour.test", "/").await?, (200, "hi".into()));
        latencies.push(t.elapsed());
    }
    // The slow connections are still held (the default header timeout is 10 s): each is
    // answered nothing yet.
    let mut still_open = 0;
    for s in slow.iter_mut().take(50) {
        let mut buf = [0u8; 1];
        // Nothing to read yet, and not closed.
        if tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf))
            .await
            .is_err()
        {
            still_open += 1;
        }
    }
    assert_eq!(up.admin_get("/healthz").await?, "ok");
    report(&format!(
        "slow connections: {n} held open without finishing their headers (opened in {:.2} s, {still_open}/50 sampled still open); neighbour: 200 requests, 0 failed, p50 {:.1} ms, p99 {:.1} ms",
        opened.as_secs_f64(),
        quantile(&mut latencies, 0.5).as_secs_f64() * 1e3,
        quantile(&mut latencies, 0.99).as_secs_f64() * 1e3,
    ));
    Ok(())
}

/// A loopback server answering 204 to anything, counting requests.
async fn counting_server() -> anyhow::Result<(SocketAddr, Arc<AtomicUsize>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    Ok((addr, hits))
}

#[tokio::test]
async fn outbound_requests_are_closed_by_default_and_never_reach_the_host_itself()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write(
        dir.path(),
        "secret.yaml",
        &wat_manifest("tenant-b", "secret", "b's data"),
    )?;
    let up = Up::start(dir.path(), &[]).await?;
    let (server, hits) = counting_server().await?;
    let (admin, functions) = (up.admin.port(), up.functions.port());
    std::fs::write(dir.path().join("probe.wasm"), probe_component()?)?;
    let listed = [
        format!("http://127.0.0.1:{admin}"),
        format!("http://127.0.0.1:{functions}"),
        format!("http://{server}"),
    ];
    for (name, allowed) in [
        ("closed", vec![]),
        ("wild", vec!["*://*:*".to_string()]),
        ("listed", listed.to_vec()),
    ] {
        write(
            dir.path(),
            &format!("{name}.yaml"),
            &probe_manifest("test", name, &allowed),
        )?;
    }
    wait_until(Duration::from_secs(60), || async {
        let mut ready = true;
        for name in ["closed", "wild", "listed"] {
            ready &= up
                .phase("test", name)
                .await
                .is_some_and(|(p, _)| p == "Ready");
        }
        ready
    })
    .await?;

    let call = |probe: &'static str, authority: String, path: &'static str| {
        let up = &up;
        async move {
            let r = up
                .request(Method::GET, &format!("{probe}.test"), "/")
                .header("x-target-authority", authority)
                .header("x-target-path", path)
                .send()
                .await?;
            anyhow::Ok(r.status().as_u16())
        }
    };
    let refusals = [
        ("closed", format!("127.0.0.1:{admin}"), "/functions"),
        ("closed", server.to_string(), "/"),
        ("wild", format!("127.0.0.1:{admin}"), "/functions"),
        ("wild", "169.254.169.254".into(), "/"),
        ("wild", "[fd00:ec2::254]".into(), "/"),
        ("wild", format!("localhost:{}", server.port()), "/"),
        ("listed", format!("127.0.0.1:{admin}"), "/functions"),
        (
            "listed",
            format!("127.0.0.1:{functions}"),
            "/fn/tenant-b/secret/",
        ),
    ];
    for (probe, authority, path) in refusals.clone() {
        let status = call(probe, authority.clone(), path).await?;
        assert_eq!(status, DENIED, "{probe} → http://{authority}{path}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing reached the test server"
    );
    // Listed exactly, an address outside the host is reachable: the probe does send.
    assert_eq!(call("listed", server.to_string(), "/").await?, 204);
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    let logs = |name: &'static str| {
        let path = format!("/functions/test/{name}/logs");
        let up = &up;
        async move { up.admin_get(&path).await }
    };
    assert!(
        logs("closed")
            .await?
            .contains("is not in the function's allowedOutboundHosts")
    );
    let wild = logs("wild").await?;
    assert!(
        wild.contains("169.254.169.254 (link-local, where cloud metadata lives)"),
        "{wild}"
    );
    assert!(wild.contains("the cloud metadata service"), "{wild}");
    assert!(wild.contains("(loopback)"), "{wild}");
    let listed_logs = logs("listed").await?;
    assert!(
        listed_logs.contains("one of this host's own listeners"),
        "{listed_logs}"
    );
    let m = up.admin_get("/metrics").await?;
    assert_eq!(rejected(&m, "outbound"), refusals.len() as f64);
    assert!(
        !m.contains(r#"function="secret""#),
        "the other tenant's function never ran"
    );
    report(&format!(
        "outbound: {} calls refused (closed by default, loopback, 169.254.169.254, fd00:ec2::254, a name resolving to loopback, the admin port and another tenant's /fn/ route, listed or not), 1 listed call answered",
        refusals.len()
    ));
    Ok(())
}
