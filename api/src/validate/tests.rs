use std::path::Path;

use super::*;
use crate::function::{EnvVar, Function, FunctionManifest};

fn spec(runtime: &str, handler: &str) -> FunctionSpec {
    FunctionSpec {
        runtime: runtime.into(),
        handler: handler.into(),
        function: "x".into(),
        ..FunctionSpec::default()
    }
}

/// The messages for a spec named `f` in `t`, or none.
fn errors(spec: &FunctionSpec, origin: Origin) -> Vec<String> {
    errors_named("f", "t", spec, origin)
}

fn errors_named(name: &str, namespace: &str, spec: &FunctionSpec, origin: Origin) -> Vec<String> {
    match object(name, namespace, spec, origin) {
        Ok(_) => Vec::new(),
        Err(Invalid(all)) => all.iter().map(ToString::to_string).collect(),
    }
}

fn refused(spec: &FunctionSpec, field: &str) -> String {
    let all = errors(spec, Origin::Cluster);
    all.iter()
        .find(|e| e.starts_with(&format!("{field}: ")))
        .cloned()
        .unwrap_or_else(|| panic!("{field} not refused: {all:?}"))
}

#[test]
fn a_good_spec_gives_its_limits() {
    let mut s = spec("python3.8", "handler.main");
    s.timeout = Some(IntOrString::String("30".into()));
    s.memory = Some(IntOrString::String("64Mi".into()));
    assert_eq!(
        object("hello-world", "test", &s, Origin::Cluster),
        Ok(Checked {
            runtime: Runtime::Python,
            timeout: Duration::from_secs(30),
            memory_bytes: Some(64 << 20),
        })
    );
    let wat = spec("wat", "");
    let checked =
        object("a", "default", &wat, Origin::Cluster).map(|c| (c.timeout, c.memory_bytes));
    assert_eq!(checked, Ok((DEFAULT_TIMEOUT, None)));
}

#[test]
fn names_are_dns_labels() {
    let s = spec("wat", "");
    for good in ["a", "hello-world", "a1", &"a".repeat(63)] {
        assert!(
            errors_named(good, "t", &s, Origin::Cluster).is_empty(),
            "{good}"
        );
    }
    for bad in ["a.b", &"a".repeat(64), "A", "1a", "-a", "a-", "a_b", ""] {
        let e = errors_named(bad, "t", &s, Origin::Cluster);
        assert!(
            e.iter().any(|e| e.starts_with("metadata.name: ")),
            "{bad}: {e:?}"
        );
    }
    assert!(errors_named("f", "1ns", &s, Origin::Cluster).is_empty());
    let e = errors_named("f", "a.b", &s, Origin::Cluster);
    assert!(e[0].starts_with("metadata.namespace: "), "{e:?}");
    let invalid = object("a.b", "t", &s, Origin::Cluster).err();
    assert!(invalid.is_some_and(|i| i.names_unusable()));
}

#[test]
fn handlers_are_file_dot_function_identifiers() {
    for good in ["handler.main", "_a.B_2", "f.f"] {
        assert!(
            errors(&spec("python", good), Origin::Cluster).is_empty(),
            "{good}"
        );
    }
    for bad in [
        "../../x.y",
        "/abs/x.y",
        "-fplugin=x.y",
        "a.b.c",
        "x",
        ".y",
        "x.",
        "1x.y",
        "x.y ",
        "x/y.z",
        "x.y-z",
    ] {
        let e = refused(&spec("c", bad), "spec.handler");
        assert!(
            e.contains("must be file.function, each an identifier"),
            "{e}"
        );
        assert!(e.contains(&format!("{bad:?}")), "{e}");
    }
    assert_eq!(
        refused(&spec("c", "../x.y"), "spec.handler"),
        r#"spec.handler: "../x.y" must be file.function, each an identifier ([A-Za-z_][A-Za-z0-9_]*)"#
    );
    // Node.js and Python need one; go, rust and c build a whole program without one; wat and
    // wasm take none.
    for runtime in ["nodejs14", "python"] {
        let e = refused(&spec(runtime, ""), "spec.handler");
        assert!(e.contains("required"), "{e}");
    }
    for runtime in ["go1.21", "rust", "c", "wasm"] {
        assert!(
            errors(&spec(runtime, ""), Origin::Cluster).is_empty(),
            "{runtime}"
        );
    }
    assert!(errors(&spec("wat", "handler.main"), Origin::Cluster).is_empty());
}

#[test]
fn runtimes_are_known() {
    let e = refused(&spec("cobol", ""), "spec.runtime");
    assert!(e.contains("unknown runtime \"cobol\""), "{e}");
    assert!(e.contains("wat, wasm, go, nodejs, python, rust, c"), "{e}");
    assert!(refused(&spec("", ""), "spec.runtime").contains("required"));
}

#[test]
fn content_types_and_checksums() {
    let mut s = spec("wat", "");
    for good in ["", "text", "base64"] {
        s.function_content_type = good.into();
        assert!(errors(&s, Origin::Cluster).is_empty(), "{good}");
    }
    s.function_content_type = "base64+zip".into();
    assert!(refused(&s, "spec.function-content-type").contains("not an archive"));
    s.function_content_type = "base64+compressedtar".into();
    assert!(refused(&s, "spec.function-content-type").contains("use a zip archive"));
    s.function_content_type = "Text".into();
    assert!(refused(&s, "spec.function-content-type").contains("text, base64, url, base64+zip"));
    for runtime in ["python", "nodejs", "go", "c", "rust"] {
        let zip = FunctionSpec {
            function_content_type: "base64+zip".into(),
            ..spec(runtime, "hello.handler")
        };
        assert!(errors(&zip, Origin::Cluster).is_empty(), "{runtime}");
    }

    let mut s = spec("wat", "");
    s.checksum = format!("sha256:{}", "aB".repeat(32));
    assert!(errors(&s, Origin::Cluster).is_empty());
    for bad in [
        "md5:00",
        "sha256:abc",
        &format!("sha256:{}", "g".repeat(64)),
        "sha256",
    ] {
        s.checksum = bad.into();
        assert!(
            refused(&s, "spec.checksum").contains("sha256:<64 hex digits>"),
            "{bad}"
        );
    }
}

#[test]
fn url_sources_depend_on_where_the_manifest_comes_from() {
    let url = |u: &str| FunctionSpec {
        function: u.into(),
        function_content_type: "url".into(),
        ..spec("wasm", "")
    };
    let dir = Origin::Dir(Path::new("/manifests"));
    // In a cluster: never a file; http(s) not fetched yet.
    for file in ["/etc/passwd", "m.wasm", "file:///etc/passwd", "/dev/zero"] {
        let e = refused(&url(file), "spec.function");
        assert!(e.contains("not an http(s) URL"), "{e}");
    }
    assert!(
        refused(&url("https://example.com/m.wasm"), "spec.function").contains("not supported yet")
    );
    // In wasmless up: files inside the manifest's directory only.
    assert!(errors(&url("m.wasm"), dir).is_empty());
    assert!(errors(&url("sub/./m.wasm"), dir).is_empty());
    for (bad, why) in [
        ("../../etc/passwd", "no .."),
        ("a/../../b", "no .."),
        ("/etc/passwd", "relative"),
        ("file:///etc/passwd", "not a URL"),
        ("https://example.com/m.wasm", "not a URL"),
        ("", "required"),
    ] {
        let e = errors(&url(bad), dir);
        assert!(e.len() == 1 && e[0].contains(why), "{bad}: {e:?}");
    }
    assert!(errors(&url("m.wasm"), Origin::Inline)[0].contains("inline"));
}

#[test]
fn timeouts_are_whole_seconds_up_to_an_hour() {
    let with = |t: IntOrString| FunctionSpec {
        timeout: Some(t),
        ..spec("wat", "")
    };
    for good in [
        IntOrString::Int(1),
        IntOrString::Int(3600),
        IntOrString::String("180".into()),
    ] {
        assert!(
            errors(&with(good.clone()), Origin::Cluster).is_empty(),
            "{good}"
        );
    }
    for bad in [
        IntOrString::Int(-1),
        IntOrString::Int(0),
        IntOrString::Int(3601),
        IntOrString::Int(i64::MAX),
        IntOrString::Other((1u64 << 63).into()),
        IntOrString::Other(serde_json::json!(1.5)),
        IntOrString::String("soon".into()),
        IntOrString::String(" 5".into()),
        IntOrString::String("99999999999999999999999".into()),
    ] {
        let e = refused(&with(bad.clone()), "spec.timeout");
        assert!(e.contains("must be whole seconds from 1 to 3600"), "{e}");
    }
    assert_eq!(
        refused(&with(IntOrString::Int(-1)), "spec.timeout"),
        "spec.timeout: -1 must be whole seconds from 1 to 3600"
    );
}

#[test]
fn memory_is_a_quantity_up_to_the_engine_maximum() {
    let with = |m: IntOrString| FunctionSpec {
        memory: Some(m),
        ..spec("wat", "")
    };
    for (good, bytes) in [
        ("64Mi", 64 << 20),
        ("1Gi", 1 << 30),
        ("64Ki", 64 << 10),
        ("100M", 100_000_000),
        ("1048576", 1 << 20),
    ] {
        let checked = object(
            "f",
            "t",
            &with(IntOrString::String(good.into())),
            Origin::Cluster,
        );
        assert_eq!(checked.map(|c| c.memory_bytes), Ok(Some(bytes)), "{good}");
    }
    assert!(errors(&with(IntOrString::Int(1 << 20)), Origin::Cluster).is_empty());
    for bad in [
        "lots", "100Gi", "2Gi", "0", "1Ki", "64 Mi", "1K", "-1Mi", "",
    ] {
        let e = refused(&with(IntOrString::String(bad.into())), "spec.memory");
        assert!(e.contains("from 64Ki to 1Gi"), "{e}");
    }
    assert!(refused(&with(IntOrString::Int(-5)), "spec.memory").contains("-5"));
}

#[test]
fn deps_by_runtime() {
    let with = |runtime: &str, handler: &str, deps: &str| FunctionSpec {
        deps: deps.into(),
        ..spec(runtime, handler)
    };
    // Python: requirements by name and version; no pip options, paths or URLs.
    let good = "# pinned\nrequests==2.31.0\nsix>=1.16,<2 ; python_version >= \"3.8\"\nattrs[tests]~=23.1\n\nidna --hash=sha256:abc\n";
    assert!(errors(&with("python", "h.f", good), Origin::Cluster).is_empty());
    for bad in [
        "-r /etc/passwd",
        "--index-url https://evil.example/simple",
        "--extra-index-url=https://x",
        "--no-binary :all:",
        "six\n-e .",
        "pkg @ https://evil.example/pkg.whl",
        "pkg @ file:///etc/passwd",
        "./local/pkg",
        "/abs/pkg",
        "git+https://example.com/x.git",
        "pkg==${SECRET}",
        "pkg-1.0-py3-none-any.whl",
        "six \\",
        "six --install-option=--prefix=/",
    ] {
        let e = refused(&with("python", "h.f", bad), "spec.deps");
        assert!(e.contains("line "), "{bad}: {e}");
    }
    // Node: registry ranges in "dependencies" only.
    let pkg = r#"{"name": "f", "private": true, "dependencies": {"left-pad": "^1.3.0", "@scope/x": ">=1 <2 || 3.x", "y": "latest"}}"#;
    assert!(errors(&with("nodejs", "h.f", pkg), Origin::Cluster).is_empty());
    for bad in [
        r#"{"dependencies": {"x": "file:../../etc"}}"#,
        r#"{"dependencies": {"x": "git+ssh://git@github.com/a/b.git"}}"#,
        r#"{"dependencies": {"x": "https://evil.example/x.tgz"}}"#,
        r#"{"dependencies": {"x": "github:a/b"}}"#,
        r#"{"dependencies": {"x": "npm:other@1"}}"#,
        r#"{"dependencies": {"../x": "1"}}"#,
        r#"{"scripts": {"postinstall": "cat /etc/passwd"}}"#,
        r#"{"overrides": {"x": "file:/etc"}}"#,
        r#"{"optionalDependencies": {"x": "file:/etc"}}"#,
        r#"["not", "an", "object"]"#,
        "not json",
    ] {
        refused(&with("nodejs", "h.f", bad), "spec.deps");
    }
    // Rust: [dependencies] lines from crates.io only.
    let crates = "serde = \"1\"\nrand = { version = \"0.8\", default-features = false, features = [\"std\", \"small_rng\"] } # comment\nlog = { version = \"0.4\", optional = true, package = \"log\" }\n";
    assert!(errors(&with("rust", "h.f", crates), Origin::Cluster).is_empty());
    for bad in [
        "x = { path = \"/etc\" }",
        "x = { git = \"https://example.com/x\" }",
        "x = { version = \"1\", registry = \"evil\" }",
        "x.path = \"/etc\"",
        "[build-dependencies]",
        "[patch.crates-io]",
        "x = { version = \"1\" ",
        "x = '1'",
        "x = \"file:/etc\"",
    ] {
        refused(&with("rust", "h.f", bad), "spec.deps");
    }
    // Go: a go.mod's require lines, from the module proxy; no replace (paths, other modules).
    let gomod = "module example.com/f\n\ngo 1.24\n\nrequire github.com/google/uuid v1.6.0\nrequire (\n\tgolang.org/x/text v0.14.0 // indirect\n\tgopkg.in/yaml.v3 v3.0.1\n)\n";
    assert!(errors(&with("go", "h.F", gomod), Origin::Cluster).is_empty());
    assert_eq!(
        super::go_requires(gomod).unwrap_or_default(),
        [
            ("github.com/google/uuid", "v1.6.0"),
            ("golang.org/x/text", "v0.14.0"),
            ("gopkg.in/yaml.v3", "v3.0.1")
        ]
        .map(|(p, v)| (p.to_string(), v.to_string()))
    );
    for bad in [
        "replace github.com/a/b => ../../etc",
        "replace github.com/a/b => github.com/evil/b v1.0.0",
        "require ../x v1.0.0",
        "require /abs v1.0.0",
        "require localmodule v1.0.0",
        "require github.com/a/b latest",
        "require github.com/a/b v1.0.0 extra",
        "require github.com/a/b\n",
        "require (\ngithub.com/a/b v1.0.0\n",
        "exclude github.com/a/b v1.0.0",
        "require github.com/a/$(x) v1",
    ] {
        let e = refused(&with("go", "h.F", bad), "spec.deps");
        assert!(e.contains("go.mod"), "{bad}: {e}");
    }
    // C, wat and wasm build without any.
    for (runtime, handler) in [("c", "h.f"), ("wat", "")] {
        let e = refused(&with(runtime, handler, "x"), "spec.deps");
        assert!(e.contains("take no deps"), "{e}");
    }
    let big = "a\n".repeat(MAX_DEPS_BYTES);
    assert!(refused(&with("python", "h.f", &big), "spec.deps").contains("bytes"));
}

#[test]
fn env_and_preserved_fields() {
    let mut s = spec("wat", "");
    s.env = vec![EnvVar::new("A=B", "x")];
    assert!(refused(&s, "spec.env").contains("'='"));
    let mut s = spec("wat", "");
    let mut deep = serde_json::json!("x");
    for _ in 0..200 {
        deep = serde_json::json!({ "a": deep });
    }
    s.deployment = serde_json::from_value(deep).ok();
    assert!(refused(&s, "spec.deployment").contains("nested deeper than 32"));
}

#[test]
fn allowed_outbound_hosts_are_patterns() {
    let mut s = spec("wasm", "");
    s.allowed_outbound_hosts = StringList::List(vec![
        "https://api.example.com".into(),
        "http://*.svc:8080".into(),
    ]);
    assert_eq!(errors(&s, Origin::Cluster), Vec::<String>::new());
    s.allowed_outbound_hosts =
        StringList::List(vec!["https://ok.example.com".into(), "example.com".into()]);
    let e = refused(&s, "spec.allowedOutboundHosts");
    assert!(
        e.contains("[1] \"example.com\" must be scheme://host"),
        "{e}"
    );
    // As read from a stored object that is not a list: refused, never a failed read.
    let read: FunctionSpec =
        serde_json::from_value(serde_json::json!({"runtime": "wasm", "allowedOutboundHosts": 7}))
            .unwrap();
    assert!(refused(&read, "spec.allowedOutboundHosts").contains("list of strings"));
    s.allowed_outbound_hosts = StringList::List(vec!["http://a".into(); MAX_OUTBOUND_HOSTS + 1]);
    assert!(refused(&s, "spec.allowedOutboundHosts").contains("at most 64"));
}

#[test]
fn warm_instances_are_a_small_whole_number() {
    let mut s = spec("python", "handler.f");
    s.warm_instances = Some(IntOrString::Int(0));
    assert_eq!(errors(&s, Origin::Cluster), Vec::<String>::new());
    s.warm_instances = Some(IntOrString::Int(i64::from(MAX_WARM_INSTANCES)));
    assert_eq!(errors(&s, Origin::Cluster), Vec::<String>::new());
    for bad in [
        IntOrString::Int(-1),
        IntOrString::Int(17),
        IntOrString::String("4".into()),
    ] {
        s.warm_instances = Some(bad);
        assert!(refused(&s, "spec.warmInstances").contains("from 0 to 16"));
    }
    // As read from a stored object, whatever it holds: refused, never a failed read.
    let read: FunctionSpec = serde_json::from_value(
        serde_json::json!({"runtime": "python", "handler": "h.f", "warmInstances": [1]}),
    )
    .unwrap();
    assert!(refused(&read, "spec.warmInstances").contains("from 0 to 16"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut s = spec("cobol", "../x.y");
    s.timeout = Some(IntOrString::Int(-1));
    s.memory = Some(IntOrString::String("lots".into()));
    s.checksum = "md5:1".into();
    let invalid = object("a.b", "t", &s, Origin::Cluster)
        .err()
        .map(|i| i.to_string());
    let message = invalid.unwrap_or_default();
    for field in [
        "metadata.name",
        "spec.runtime",
        "spec.handler",
        "spec.checksum",
        "spec.timeout",
        "spec.memory",
    ] {
        assert!(
            message.contains(&format!("{field}: ")),
            "{field}: {message}"
        );
    }
}

#[test]
fn objects_and_manifests_use_their_metadata() {
    let mut f = Function::new("a.b", spec("wat", ""));
    f.metadata.namespace = Some("t".into());
    assert!(function(&f, Origin::Cluster).is_err_and(|i| i.names_unusable()));
    let m: FunctionManifest = serde_json::from_value(serde_json::json!({
        "apiVersion": "wasmless.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": "ok"},
        "spec": {"runtime": "wat", "function": "(module)"}
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        manifest(&m, Origin::Inline).is_ok(),
        "namespace defaults to default"
    );
}

#[test]
fn references_and_kubeless_deployments() {
    let read = |json: serde_json::Value| -> FunctionSpec { serde_json::from_value(json).unwrap() };
    let with_secret = read(
        serde_json::json!({"runtime": "wat", "function": "x", "env": [
            {"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}
        ]}),
    );
    assert_eq!(errors(&with_secret, Origin::Cluster), Vec::<String>::new());
    // wasmless up has no Secrets: refused, never run without.
    let local = errors(&with_secret, Origin::Inline);
    assert!(
        local.iter().any(|e| e.contains("wasmless up has none")),
        "{local:?}"
    );

    // A malformed valueFrom is read (no failed list) and refused here.
    let bad = read(
        serde_json::json!({"runtime": "wat", "function": "x", "env": [
            {"name": "P", "valueFrom": {"secretKeyRef": 7}}
        ]}),
    );
    assert!(refused(&bad, "spec.env").contains("[0]: P: valueFrom must be"));

    // The container's memory limit is the cap, checked as spec.memory is, and named.
    let limits = |memory: &str| {
        read(
            serde_json::json!({"runtime": "wat", "function": "x", "deployment": {"spec": {"template":
            {"spec": {"containers": [{"resources": {"limits": {"memory": memory}}}]}}}}}),
        )
    };
    assert_eq!(
        errors(&limits("64Mi"), Origin::Cluster),
        Vec::<String>::new()
    );
    let e = refused(&limits("2Gi"), "spec.deployment");
    assert!(
        e.contains("containers[0].resources.limits.memory: \"2Gi\" must be"),
        "{e}"
    );
    let mut own = limits("2Gi");
    own.memory = Some(IntOrString::String("64Mi".into()));
    assert_eq!(
        errors(&own, Origin::Cluster),
        Vec::<String>::new(),
        "spec wins"
    );
}
