//! Fuzzing on stable Rust: a mutation fuzzer over seed corpora for everything that decodes
//! untrusted input: the Host header and `/fn/` path router, the WAGI response parser, manifest
//! YAML, Function objects as stored (lenient JSON) and Metacontroller hook requests.
//!
//! `cargo test` runs each target for a fixed number of cases from a fixed seed. Longer runs:
//! `WASMLESS_FUZZ_SECONDS=600 cargo test -p wasmless-e2e --test fuzz -- --nocapture TARGET`
//! (or `scripts/fuzz.sh`); `WASMLESS_FUZZ_CASES` and `WASMLESS_FUZZ_SEED` override the count and
//! seed. A failing case prints its seed and input, so it replays.
//!
//! Without nightly there is no coverage feedback; as a cheap stand-in, an input whose outcome
//! (error kind, route, status) is new joins the pool that later cases mutate.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use wasmless_api::address::{key_from_host, key_from_path, path};
use wasmless_api::function::Function;
use wasmless_api::validate::{self, Origin};
use wasmless_api::{FunctionKey, FunctionManifest};
use wasmless_build::manifest;
use wasmless_controller::metacontroller::HookRequest;
use wasmless_runtime::abi::wagi::parse_cgi_response;

const DEFAULT_CASES: u64 = 4_000;
const MAX_POOL: usize = 1_024;
const MAX_INPUT: usize = 16 << 10;

/// splitmix64: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const INTERESTING: &[u8] = b"\0\r\n\t :./?[]{}\"'\\-_*&!%#@,|>\x7f\xff\xc3\xa9";

fn mutate(rng: &mut Rng, pool: &[Vec<u8>], dict: &[&[u8]]) -> Vec<u8> {
    let mut input = rng.pick(pool).clone();
    for _ in 0..=rng.below(8) {
        let at = rng.below(input.len() + 1);
        match rng.below(10) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] = *rng.pick(INTERESTING);
            }
            2 => input.insert(at, *rng.pick(INTERESTING)),
            3 | 4 => {
                let token = *rng.pick(dict);
                input.splice(at..at, token.iter().copied());
            }
            5 if !input.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(input.len());
                input.drain(at.min(end)..end);
            }
            6 if !input.is_empty() => {
                // Repeat a slice: long runs, deep nesting, many headers.
                let start = rng.below(input.len());
                let end = (start + 1 + rng.below(32)).min(input.len());
                let chunk = input[start..end].to_vec();
                for _ in 0..1 + rng.below(64) {
                    input.splice(at..at, chunk.iter().copied());
                }
            }
            7 => {
                // Splice the tail of another input.
                let other = rng.pick(pool);
                let from = rng.below(other.len() + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            8 => input.truncate(at),
            _ => {
                for _ in 0..1 + rng.below(8) {
                    input.insert(at, rng.next() as u8);
                }
            }
        }
    }
    input.truncate(MAX_INPUT);
    input
}

/// Runs `check` on mutated inputs; `check` panics on a broken property and returns the outcome
/// class of the input. Prints and returns the number of cases run.
fn fuzz(target: &str, seeds: Vec<Vec<u8>>, dict: &[&[u8]], check: impl Fn(&[u8]) -> String) {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let seconds = env("WASMLESS_FUZZ_SECONDS");
    let cases = env("WASMLESS_FUZZ_CASES").unwrap_or(if seconds.is_some() {
        u64::MAX
    } else {
        DEFAULT_CASES
    });
    let seed = env("WASMLESS_FUZZ_SEED").unwrap_or(0x5eed);
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut rng = Rng(seed);
    let mut pool = seeds;
    let mut outcomes = HashSet::new();
    let started = Instant::now();
    let mut run = 0u64;
    // Every seed as it is first, then mutations.
    let mut queue: Vec<Vec<u8>> = pool.clone();
    while run < cases && deadline.is_none_or(|d| !run.is_multiple_of(64) || Instant::now() < d) {
        let input = queue.pop().unwrap_or_else(|| mutate(&mut rng, &pool, dict));
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
        run += 1;
        match outcome {
            Ok(class) => {
                if outcomes.insert(class) && pool.len() < MAX_POOL {
                    pool.push(input);
                }
            }
            Err(panic) => {
                eprintln!(
                    "fuzz {target}: case {run} with WASMLESS_FUZZ_SEED={seed} panicked on input {:?}",
                    String::from_utf8_lossy(&input)
                );
                resume_unwind(panic);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fuzz {target}: {run} cases in {secs:.1} s ({:.0}/s), seed {seed}, {} outcome classes, pool {}",
        run as f64 / secs.max(1e-9),
        outcomes.len(),
        pool.len()
    );
}

fn text(input: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(input)
}

fn seeds(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// The names a routed key may hold: what a Function's name and namespace may be made of.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[test]
fn host_header_and_path_routing() {
    let seeds = seeds(&[
        "hello-world.test",
        "hello-world.test:8080",
        "hello-world.test.svc.cluster.local.",
        "Hello-World.TEST.Svc:80",
        "localhost:8080",
        "127.0.0.1",
        "[::1]:8080",
        "/fn/test/hello-world/a/b?x=1",
        "/fn/test/hello-world?x=1",
        "/fn//x",
    ]);
    let dict: &[&[u8]] = &[
        b".svc",
        b".cluster.local",
        b":8080",
        b"/fn/",
        b"%2e",
        b"..",
        b"[::1]",
        b"\xe2\x80\xae",
        b"K",
    ];
    fuzz("host_header_and_path_routing", seeds, dict, |input| {
        let s = text(input);
        let mut class = String::new();
        if let Some(key) = key_from_host(&s) {
            assert!(
                is_label(&key.name) && is_label(&key.namespace),
                "Host {s:?} routed to {key:?}, which no Function can be named"
            );
            let again = key_from_host(&format!("{}.{}", key.name, key.namespace));
            assert_eq!(again.as_ref(), Some(&key), "Host {s:?}");
            class.push_str("host");
        }
        if let Some((key, tail)) = key_from_path(&s) {
            assert!(tail.starts_with('/'), "{s:?} gave the path {tail:?}");
            assert!(!key.namespace.contains('/'), "{s:?} gave {key:?}");
            let (back, rest) = key_from_path(&path(&key)).expect("a route reads back");
            assert_eq!((back, rest.as_str()), (key.clone(), "/"), "{s:?}");
            class.push_str(if tail == "/" { "path/" } else { "path+" });
        }
        class
    });
}

#[test]
fn wagi_response_parser() {
    let seeds = seeds(&[
        "Content-Type: text/plain\nX-A: 1\n\nhello\n\nworld",
        "Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope",
        "Location: /elsewhere\n\n",
        "\nbody only",
        "Status: 200\n\n",
        "hello world",
    ]);
    let dict: &[&[u8]] = &[
        b"Status: ",
        b"Location: ",
        b"Content-Length: 99999\n",
        b"Transfer-Encoding: chunked\n",
        b"\r\n\r\n",
        b"\n\n",
        b"999",
        b"1000",
        b"0",
        b"Set-Cookie: a=b\n",
    ];
    fuzz("wagi_response_parser", seeds, dict, |input| {
        let out = bytes::Bytes::copy_from_slice(input);
        match parse_cgi_response(out) {
            Ok(response) => {
                let status = response.status().as_u16();
                assert!((100..1000).contains(&status), "status {status}");
                format!("ok {}", status / 100)
            }
            Err(message) => {
                // Errors reach logs and the client: never the function's whole output.
                assert!(message.len() <= 1024, "an error of {} bytes", message.len());
                message
                    .split([' ', ':'])
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        }
    });
}

/// Every example manifest in the repository, as YAML, and as stored objects (JSON).
fn example_manifests() -> Vec<(String, Vec<FunctionManifest>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs = vec![root.join("functions"), root.join("examples")];
    let mut out = Vec::new();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                let parsed = manifest::parse(&text).unwrap_or_default();
                out.push((text, parsed));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn stored_objects() -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = example_manifests()
        .into_iter()
        .flat_map(|(_, all)| all)
        .filter_map(|m| serde_json::to_value(&m).ok())
        .collect();
    out.push(serde_json::json!({
        "metadata": {"name": "a", "namespace": "b", "managedFields": [{"manager": "x"}]},
        "spec": {"runtime": "wat", "function": "(module)", "timeout": 1.5, "memory": [1],
                 "deployment": {"spec": {"template": {"a": {"b": {"c": [[[[1]]]]}}}}},
                 "allowedOutboundHosts": "https://x"},
        "status": {"phase": "Ready", "artifact": {"digest": "sha256:../../etc"}}
    }));
    out
}

const MANIFEST_DICT: &[&[u8]] = &[
    b"kind: Function\n",
    b"apiVersion: wasmless.dev/v1alpha1\n",
    b"\n---\n",
    b"&a [*a, *a, *a]",
    b"*a",
    b"<<: *a\n",
    b"!!binary ",
    b"timeout: 18446744073709551616\n",
    b"memory: 1Ei\n",
    b"[[[[[[[[[[[[[[[[",
    b"{{{{{{{{{{{{{{{{",
    b"\"runtime\": \"wat\"",
    b"\"timeout\": -1",
    b"\"memory\": \"1Gi\"",
    b"\"deployment\": {\"a\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
    b"null",
    b"1e999",
    b"\"\\ud800\"",
];

#[test]
fn manifest_decoding() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let seeds = example_manifests()
        .into_iter()
        .map(|(text, _)| text.into_bytes())
        .collect();
    fuzz(
        "manifest_decoding",
        seeds,
        MANIFEST_DICT,
        |input| match manifest::parse(&text(input)) {
            Ok(all) => {
                let mut valid = 0;
                for m in &all {
                    valid += usize::from(validate::manifest(m, Origin::Dir(dir.path())).is_ok());
                }
                format!("ok {} {valid}", all.len().min(4))
            }
            Err(e) => e.to_string().chars().take(24).collect(),
        },
    );
}

/// What the controller, hosts and hook read from the API server: one Function, or a list.
#[test]
fn stored_function_decoding() {
    let mut seeds: Vec<Vec<u8>> = stored_objects()
        .iter()
        .filter_map(|v| serde_json::to_vec(v).ok())
        .collect();
    let items: Vec<_> = stored_objects();
    seeds.push(serde_json::to_vec(&serde_json::json!({"items": items})).unwrap_or_default());
    fuzz("stored_function_decoding", seeds, MANIFEST_DICT, |input| {
        let mut class = String::new();
        if let Ok(f) = serde_json::from_slice::<Function>(input) {
            let valid = validate::function(&f, Origin::Cluster).is_ok();
            // What is read is written back (status patches) and read again.
            let written = serde_json::to_vec(&f).expect("a Function serializes");
            let again: Function = serde_json::from_slice(&written)
                .unwrap_or_else(|e| panic!("a Function written back does not read: {e}"));
            assert_eq!(again.metadata, f.metadata);
            class.push_str(if valid { "fn-valid " } else { "fn-invalid " });
        }
        if let Ok(m) = serde_json::from_slice::<FunctionManifest>(input) {
            let _ = validate::manifest(&m, Origin::Cluster);
            class.push_str("manifest ");
        }
        if let Ok(list) = serde_json::from_slice::<Items>(input) {
            class.push_str(&format!("list {}", list.items.len().min(4)));
        }
        class
    });
}

#[derive(serde::Deserialize)]
struct Items {
    items: Vec<Function>,
}

#[test]
fn metacontroller_hook_decoding() {
    let seeds = stored_objects()
        .into_iter()
        .map(|parent| {
            let key = FunctionKey::new("test", "x");
            serde_json::to_vec(&serde_json::json!({
                "controller": {"metadata": {"name": "wasmless"}},
                "parent": parent,
                "children": {"Service.v1": {key.name.clone(): {"metadata": {"name": "x"}}},
                             "EndpointSlice.discovery.k8s.io/v1": {}},
                "related": {},
                "finalizing": false
            }))
            .unwrap_or_default()
        })
        .collect();
    let dict: &[&[u8]] = &[
        b"\"finalizing\": true",
        b"\"children\": {\"Service.v1\": {\"test/x\": {}}}",
        b"\"labels\": {\"wasmless.dev/controller\": \"metacontroller\"}",
        b"\"parent\": null",
    ];
    let dict: Vec<&[u8]> = dict.iter().chain(MANIFEST_DICT).copied().collect();
    fuzz(
        "metacontroller_hook_decoding",
        seeds,
        &dict,
        |input| match serde_json::from_slice::<HookRequest>(input) {
            Ok(request) => {
                let valid = validate::function(&request.parent, Origin::Cluster).is_ok();
                let children: usize = request.children.values().map(|c| c.len()).sum();
                format!("ok {valid} {} {}", request.finalizing, children.min(3))
            }
            Err(e) => format!("{:?}", e.classify()),
        },
    );
}
