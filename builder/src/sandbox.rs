//! Each build in a child process of its own: a fresh scratch directory, an environment cleared to
//! an allowlist, rlimits (CPU time, memory, file size, processes), no capabilities, and Linux
//! Landlock confining it to the scratch directory and the tenant's caches (read-write), the
//! toolchains and system files (read-only), and TCP connections to package registries only when
//! the build needs them. The parent kills the child's whole process group at the wall-clock
//! timeout. Landlock needs no privilege, so this works as an unprivileged user in a container.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use landlock::{
    ABI, Access, AccessFs, AccessNet, NetPort, Ruleset, RulesetAttr, RulesetCreated,
    RulesetCreatedAttr, RulesetStatus, Scope, path_beneath_rules,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmless_api::function::{Packaging, Runtime};

use crate::api::{self, Failure};
use crate::builders::{self, BuildError, Source, toolchain};

/// The Landlock ABI whose rights are asked for (7 on this project's kernels; older kernels
/// enforce what they know, and the builder refuses to build without filesystem confinement).
const ABI_WANTED: ABI = ABI::V6;
/// The child's exit code when it wrote a [`Failure`].
const EXIT_FAILED: i32 = 3;
/// How much of the child's own stderr is kept (for the builder's log).
const MAX_STDERR: usize = 8 * 1024;

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("landlock: {0}")]
    Landlock(#[from] landlock::RulesetError),
    #[error(
        "Landlock is not enforced on this kernel: builds are refused rather than run unconfined"
    )]
    NotEnforced,
    #[error("{what}: {source}")]
    Os {
        what: &'static str,
        source: std::io::Error,
    },
}

/// What a build may use: the limits of [`Limits`], enforced on the child and everything it runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Limits {
    /// CPU seconds per process (SIGXCPU, then SIGKILL 5 s later).
    pub cpu_seconds: u64,
    /// Writable private memory per process (RLIMIT_DATA: address space reserved but not used,
    /// as V8, Go and wasmtime do, is not counted).
    pub memory_bytes: u64,
    /// The largest file a build may write.
    pub file_bytes: u64,
    /// Processes of the builder's user (not enforced for root: run the builder as a user).
    pub processes: u64,
    /// Wall-clock time of the whole build, after which its process group is killed.
    pub timeout_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_seconds: 600,
            memory_bytes: 4 << 30,
            file_bytes: 1 << 30,
            processes: 512,
            timeout_seconds: 600,
        }
    }
}

/// Where builds read and write.
#[derive(Clone, Debug)]
pub struct Config {
    /// The cache whose `toolchains/` holds the shared toolchains (read-only to builds).
    pub cache: PathBuf,
    /// Per-tenant state (`tenants/<namespace>/`: dependencies, Rust's target directory, npm's,
    /// pip's, Go's and cargo's caches), written only by that tenant's builds.
    pub state: PathBuf,
    /// Where each build's fresh scratch directory is made.
    pub scratch: PathBuf,
    /// More read-only paths (toolchains installed where [`Sandbox::new`] does not look).
    pub read_only: Vec<PathBuf>,
    pub limits: Limits,
}

/// What the child is confined to; decided by the parent, applied by the child to itself.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Policy {
    pub read_only: Vec<PathBuf>,
    pub read_write: Vec<PathBuf>,
    /// Device files it may read and write (`/dev/null`…).
    pub devices: Vec<PathBuf>,
    /// TCP ports it may connect to; none: no TCP connection at all.
    pub connect_ports: Vec<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Action {
    Build,
    Prepare,
}

/// One build, as the parent hands it to the child on stdin.
#[derive(Debug, Serialize, Deserialize)]
struct Job {
    action: Action,
    runtime: Runtime,
    handler: String,
    deps: String,
    /// base64
    source: String,
    #[serde(default)]
    packaging: Packaging,
    out: PathBuf,
    policy: Policy,
    limits: Limits,
}

/// Runs builds in confined children.
pub struct Sandbox {
    config: Config,
    /// Read-only for every build: system directories and the toolchains' install prefixes.
    system: Vec<PathBuf>,
    /// The environment every build gets (nothing else of the builder's passes).
    env: Vec<(String, String)>,
    /// Rust's toolchain, run directly (rustup's proxies would need its whole home).
    rust_sysroot: Option<PathBuf>,
    /// Where the scripts' WIT files come from (the cargo registry), for `prepare` only.
    cargo_registry: Option<PathBuf>,
    proxy_ports: Vec<u16>,
    prepared: tokio::sync::Mutex<HashSet<Runtime>>,
    /// Process groups of the builds running now.
    active: std::sync::Mutex<HashSet<i32>>,
}

/// Kills a build's process group when the build ends, however it ends (a caller that went
/// away drops the future).
struct Group<'a> {
    sandbox: &'a Sandbox,
    pid: i32,
}

impl Drop for Group<'_> {
    fn drop(&mut self) {
        kill_group(self.pid);
        if let Ok(mut active) = self.sandbox.active.lock() {
            active.remove(&self.pid);
        }
    }
}

/// Variables passed to builds when the builder has them; everything else is dropped (tokens,
/// `KUBERNETES_*`, credentials).
const ENV_ALLOWED: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "GOROOT",
    "GOCACHE",
    "GODEBUG",
    "WASMLESS_NODE_TOOLCHAIN",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
];

/// System files a compiler may read: libraries, certificates, name resolution. Not all of
/// `/etc` (keys, shadow, credentials of the machine).
const SYSTEM_READ_ONLY: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/sys",
    "/etc/alternatives",
    "/etc/ca-certificates",
    "/etc/ca-certificates.conf",
    "/etc/debian_version",
    "/etc/gai.conf",
    "/etc/group",
    "/etc/host.conf",
    "/etc/hosts",
    // The JDK's and Maven's configuration (Debian links them from /usr).
    "/etc/java-17-openjdk",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/maven",
    "/etc/mime.types",
    "/etc/nsswitch.conf",
    "/etc/os-release",
    "/etc/passwd",
    "/etc/pki",
    "/etc/protocols",
    "/etc/resolv.conf",
    "/etc/services",
    "/etc/ssl",
    "/etc/timezone",
    "/run/systemd/resolve",
];

const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// Programs whose install prefix (`<prefix>/bin/<program>`) builds read.
const TOOLCHAIN_PROGRAMS: &[&str] = &["clang-16", "go", "node", "npm", "python3", "bash"];

impl Sandbox {
    /// Looks up the toolchains once (outside any sandbox).
    pub fn new(config: Config) -> Self {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut system: Vec<PathBuf> = SYSTEM_READ_ONLY.iter().map(PathBuf::from).collect();
        for program in TOOLCHAIN_PROGRAMS {
            if let Some(prefix) = install_prefix(&path, program) {
                system.push(prefix);
            }
        }
        let rust_sysroot = rust_sysroot();
        system.extend(rust_sysroot.clone());
        system.extend(config.read_only.iter().cloned());
        system.retain(|p| p.exists());
        system.sort();
        system.dedup();
        let env = ENV_ALLOWED
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        let cargo_registry = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
            .map(|c| c.join("registry/src"))
            .filter(|p| p.is_dir());
        let proxy_ports = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"]
            .iter()
            .filter_map(|k| std::env::var(k).ok())
            .filter_map(|url| proxy_port(&url))
            .collect();
        tracing::info!(read_only = ?system, rust = ?rust_sysroot, "build sandbox");
        Self {
            config,
            system,
            env,
            rust_sysroot,
            cargo_registry,
            proxy_ports,
            prepared: tokio::sync::Mutex::new(HashSet::new()),
            active: std::sync::Mutex::new(HashSet::new()),
        }
    }

    /// Kills every build running now (the builder is stopping).
    pub fn kill_all(&self) {
        if let Ok(active) = self.active.lock() {
            active.iter().for_each(|pid| kill_group(*pid));
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }

    /// Builds `source` for `tenant` in a confined child.
    pub async fn build(
        &self,
        runtime: Runtime,
        tenant: &str,
        source: &Source<'_>,
    ) -> Result<Vec<u8>, BuildError> {
        if !api::valid_tenant(tenant) {
            return Err(BuildError::Internal(format!(
                "tenant {tenant:?} is not a DNS label"
            )));
        }
        let builder = builders::builder(runtime);
        self.prepare(runtime).await?;
        let tenant_dir = self.config.state.join("tenants").join(tenant);
        let home = tenant_dir.join("home");
        make_dir(&home)?;
        let mut ports = Vec::new();
        if builder.needs_registry(source.deps) {
            ports.push(443);
            ports.extend(&self.proxy_ports);
        }
        let policy = Policy {
            read_only: self.read_only(false),
            read_write: vec![tenant_dir.clone()],
            devices: DEVICES.iter().map(PathBuf::from).collect(),
            connect_ports: ports,
        };
        self.run(
            Action::Build,
            runtime,
            source,
            policy,
            &home,
            Some(&tenant_dir),
        )
        .await
    }

    /// Installs a runtime's pinned toolchain once per builder process (a no-op when installed,
    /// as in the builder image, where it is read-only).
    async fn prepare(&self, runtime: Runtime) -> Result<(), BuildError> {
        if !matches!(
            runtime,
            Runtime::Nodejs | Runtime::Python | Runtime::Go | Runtime::Ruby | Runtime::Java
        ) {
            return Ok(());
        }
        let mut prepared = self.prepared.lock().await;
        if prepared.contains(&runtime) {
            return Ok(());
        }
        let home = self.config.state.join("toolchain-home");
        make_dir(&home)?;
        let toolchains = self.config.cache.join("toolchains");
        // Made here (read-write below) unless the cache is read-only, as in the image.
        let _ = std::fs::create_dir_all(toolchains.join(runtime.name()));
        let mut read_only = self.read_only(true);
        read_only.extend(self.cargo_registry.clone());
        let mut ports = vec![443, 80];
        ports.extend(&self.proxy_ports);
        let policy = Policy {
            read_only,
            read_write: vec![toolchains, home.clone()],
            devices: DEVICES.iter().map(PathBuf::from).collect(),
            connect_ports: ports,
        };
        let empty = Source {
            code: b"",
            packaging: Packaging::File,
            handler: "",
            deps: "",
        };
        self.run(Action::Prepare, runtime, &empty, policy, &home, None)
            .await?;
        prepared.insert(runtime);
        Ok(())
    }

    fn read_only(&self, preparing: bool) -> Vec<PathBuf> {
        let mut paths = self.system.clone();
        if !preparing {
            paths.push(self.config.cache.join("toolchains"));
        }
        paths
    }

    async fn run(
        &self,
        action: Action,
        runtime: Runtime,
        source: &Source<'_>,
        mut policy: Policy,
        home: &Path,
        state: Option<&Path>,
    ) -> Result<Vec<u8>, BuildError> {
        make_dir(&self.config.scratch)?;
        let scratch = tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(&self.config.scratch)
            .map_err(|e| BuildError::Internal(format!("cannot make a scratch directory: {e}")))?;
        let (tmp, out) = (scratch.path().join("tmp"), scratch.path().join("out"));
        make_dir(&tmp)?;
        make_dir(&out)?;
        policy.read_write.push(scratch.path().to_path_buf());
        let limits = self.config.limits.clone();
        let job = Job {
            action,
            runtime,
            handler: source.handler.to_string(),
            deps: source.deps.to_string(),
            source: base64::engine::general_purpose::STANDARD.encode(source.code),
            packaging: source.packaging,
            out: out.clone(),
            policy,
            limits: limits.clone(),
        };
        let input = serde_json::to_vec(&job).map_err(|e| BuildError::Internal(e.to_string()))?;

        let exe = std::env::current_exe()
            .map_err(|e| BuildError::Internal(format!("cannot find the builder binary: {e}")))?;
        let mut command = tokio::process::Command::new(exe);
        command
            .arg("sandboxed")
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("HOME", home)
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("TMPDIR", &tmp)
            .env("WASMLESS_CACHE", &self.config.cache)
            .env("WASMLESS_LOG", "warn")
            .current_dir(scratch.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            // Its own process group, so that the timeout kills everything it started.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(state) = state {
            command.env("WASMLESS_BUILD_STATE", state);
        }
        // The scripts copy WIT files from the cargo registry while preparing (read-only).
        if let Some(home) = self
            .cargo_registry
            .as_deref()
            .and_then(|r| r.parent()?.parent())
            && action == Action::Prepare
        {
            command.env("CARGO_HOME", home);
        }
        if let Some(sysroot) = self
            .rust_sysroot
            .as_ref()
            .filter(|_| runtime == Runtime::Rust)
        {
            let bin = sysroot.join("bin");
            let path = self
                .env
                .iter()
                .find(|(k, _)| k == "PATH")
                .map_or_else(String::new, |(_, v)| v.clone());
            command
                .env("PATH", format!("{}:{path}", bin.display()))
                .env("RUSTC", bin.join("rustc"));
        }
        let mut child = command
            .spawn()
            .map_err(|e| BuildError::Internal(format!("cannot start the build process: {e}")))?;
        let group = child.id().map(|pid| {
            let pid = pid as i32;
            if let Ok(mut active) = self.active.lock() {
                active.insert(pid);
            }
            Group { sandbox: self, pid }
        });
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(&input)
                .await
                .map_err(|e| BuildError::Internal(format!("cannot hand the build over: {e}")))?;
        }
        let stderr = child.stderr.take().map(|mut s| {
            tokio::spawn(async move {
                let mut kept = Vec::new();
                let mut buf = [0u8; 8192];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let room = MAX_STDERR.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                String::from_utf8_lossy(&kept).into_owned()
            })
        });
        let timeout = Duration::from_secs(limits.timeout_seconds);
        let waited = tokio::time::timeout(timeout, child.wait()).await;
        // Whatever it left running goes with it.
        drop(group);
        let status = match waited {
            Ok(status) => status
                .map_err(|e| BuildError::Internal(format!("cannot wait for the build: {e}")))?,
            Err(_) => {
                let _ = child.wait().await;
                return Err(BuildError::Limit(format!(
                    "the build did not finish within its timeout of {} s and was stopped",
                    limits.timeout_seconds
                )));
            }
        };
        let stderr = match stderr {
            Some(task) => task.await.unwrap_or_default(),
            None => String::new(),
        };
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(0), _) => read_bounded(&out.join("function.wasm"), api::MAX_WASM)
                .map_err(|e| BuildError::Internal(format!("the build wrote no output: {e}"))),
            (Some(EXIT_FAILED), _) => {
                let bytes = read_bounded(&out.join("failure.json"), 1 << 20)
                    .map_err(|e| BuildError::Internal(format!("the build failed silently: {e}")))?;
                let failure: Failure = serde_json::from_slice(&bytes)
                    .map_err(|e| BuildError::Internal(format!("unreadable failure: {e}")))?;
                Err(failure.into())
            }
            (_, Some(signal)) => Err(BuildError::Limit(format!(
                "the build was stopped by signal {signal} ({})",
                toolchain::limit_hint(signal)
            ))),
            _ => {
                tracing::warn!(%status, stderr = %stderr.trim(), "build process failed");
                Err(BuildError::Internal(format!(
                    "the build process ended with {status}"
                )))
            }
        }
    }
}

/// The child: reads its [`Job`] from stdin, confines itself, builds, and leaves the result in
/// the job's `out` directory. Returns the process's exit code.
pub fn child_main() -> i32 {
    use std::io::Read;
    let mut input = Vec::new();
    let read = std::io::stdin()
        .take(2 * api::MAX_REQUEST as u64)
        .read_to_end(&mut input);
    let job: Job = match read
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_slice(&input).map_err(|e| e.to_string()))
    {
        Ok(job) => job,
        Err(e) => {
            eprintln!("wasmless-builder sandboxed: unreadable job: {e}");
            return 2;
        }
    };
    drop(input);
    // SAFETY: prctl with integer arguments only. The build dies with the builder.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    let result = confine(&job.policy, &job.limits)
        .map_err(|e| BuildError::Internal(format!("cannot confine the build: {e}")))
        .and_then(|()| run_job(&job));
    match result {
        Ok(wasm) => match std::fs::write(job.out.join("function.wasm"), wasm) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("wasmless-builder sandboxed: cannot write the output: {e}");
                2
            }
        },
        Err(e) => {
            let failure = Failure::from(&e);
            let written = serde_json::to_vec(&failure)
                .map_err(std::io::Error::other)
                .and_then(|bytes| std::fs::write(job.out.join("failure.json"), bytes));
            match written {
                Ok(()) => EXIT_FAILED,
                Err(e) => {
                    eprintln!("wasmless-builder sandboxed: cannot write the failure: {e}");
                    2
                }
            }
        }
    }
}

fn run_job(job: &Job) -> Result<Vec<u8>, BuildError> {
    let runtime = job.runtime;
    let builder = builders::builder(runtime);
    match job.action {
        Action::Prepare => builder.prepare().map(|()| Vec::new()),
        Action::Build => {
            let code = base64::engine::general_purpose::STANDARD
                .decode(&job.source)
                .map_err(|e| BuildError::Internal(format!("source is not base64: {e}")))?;
            builder.build(&Source {
                code: &code,
                packaging: job.packaging,
                handler: &job.handler,
                deps: &job.deps,
            })
        }
    }
}

/// Applies `limits` and `policy` to this process and everything it starts: rlimits, no
/// capabilities, no new privileges, Landlock.
pub fn confine(policy: &Policy, limits: &Limits) -> Result<(), SandboxError> {
    set_limits(limits)?;
    drop_capabilities()?;
    restrict(ruleset(policy)?)
}

/// The Landlock ruleset of `policy`, ready to apply.
pub fn ruleset(policy: &Policy) -> Result<RulesetCreated, SandboxError> {
    let abi = ABI_WANTED;
    let existing = |paths: &[PathBuf]| -> Vec<PathBuf> {
        paths.iter().filter(|p| p.exists()).cloned().collect()
    };
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .handle_access(AccessNet::from_all(abi))?
        .scope(Scope::from_all(abi))?
        .create()?
        .add_rules(path_beneath_rules(
            existing(&policy.read_only),
            AccessFs::from_read(abi),
        ))?
        .add_rules(path_beneath_rules(
            existing(&policy.read_write),
            AccessFs::from_all(abi),
        ))?
        .add_rules(path_beneath_rules(
            existing(&policy.devices),
            AccessFs::ReadFile | AccessFs::WriteFile,
        ))?;
    for port in &policy.connect_ports {
        ruleset = ruleset.add_rule(NetPort::new(*port, AccessNet::ConnectTcp))?;
    }
    Ok(ruleset)
}

/// Applies a ruleset to this thread (and, before any other starts, the process).
pub fn restrict(ruleset: RulesetCreated) -> Result<(), SandboxError> {
    let status = ruleset.restrict_self()?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(SandboxError::NotEnforced);
    }
    Ok(())
}

fn set_limits(limits: &Limits) -> Result<(), SandboxError> {
    let set = |resource, soft: u64, hard: u64, what| {
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit reads the struct it is given and nothing else.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(SandboxError::Os {
                what,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    };
    let cpu = limits.cpu_seconds;
    set(libc::RLIMIT_CPU, cpu, cpu + 5, "RLIMIT_CPU")?;
    let memory = limits.memory_bytes;
    set(libc::RLIMIT_DATA, memory, memory, "RLIMIT_DATA")?;
    let file = limits.file_bytes;
    set(libc::RLIMIT_FSIZE, file, file, "RLIMIT_FSIZE")?;
    let procs = limits.processes;
    set(libc::RLIMIT_NPROC, procs, procs, "RLIMIT_NPROC")?;
    set(libc::RLIMIT_CORE, 0, 0, "RLIMIT_CORE")
}

/// A builder running as root would otherwise keep the power to raise its limits, read any
/// file its uid owns regardless of mode bits, or signal anything: drop every capability, now
/// and across exec.
fn drop_capabilities() -> Result<(), SandboxError> {
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments only. EINVAL past the last capability.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
    }
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset reads one header and two data structs of the v3 layout.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if rc != 0 {
        return Err(SandboxError::Os {
            what: "capset",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn kill_group(pid: i32) {
    // SAFETY: kill with a negative pid signals that process group; nothing is dereferenced.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
}

fn make_dir(dir: &Path) -> Result<(), BuildError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| BuildError::Internal(format!("cannot create {}: {e}", dir.display())))
}

fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    if file.metadata()?.len() > max {
        return Err(std::io::Error::other(format!("larger than {max} bytes")));
    }
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `<prefix>` of `<prefix>/bin/<program>` found on `path`, symlinks followed (Go in
/// /usr/local/go, a pyenv Python, a Node from nvm).
fn install_prefix(path: &std::ffi::OsStr, program: &str) -> Option<PathBuf> {
    let found = std::env::split_paths(path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())?;
    let real = std::fs::canonicalize(found).ok()?;
    real.parent()?.parent().map(Path::to_path_buf)
}

/// The active Rust toolchain's sysroot, when Rust is installed.
fn rust_sysroot() -> Option<PathBuf> {
    let out = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && dir.is_dir()).then_some(dir)
}

/// The port of a proxy URL (`http://proxy:3128`).
fn proxy_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host_port = rest.split('/').next()?;
    let host_port = host_port.rsplit_once('@').map_or(host_port, |(_, h)| h);
    match host_port.rsplit_once(':') {
        Some((_, port)) => port.parse().ok(),
        None => Some(if url.starts_with("https") { 443 } else { 80 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    /// `program args` in a child confined by `policy` (the ruleset made before the fork; only
    /// the restriction runs in it).
    fn confined(policy: &Policy, program: &str, args: &[&str]) -> std::process::Output {
        let mut ruleset = Some(ruleset(policy).expect("a ruleset"));
        let mut command = Command::new(program);
        command.args(args);
        // SAFETY: between fork and exec the closure makes only the Landlock system calls.
        unsafe {
            command.pre_exec(move || {
                let r = ruleset
                    .take()
                    .ok_or_else(|| std::io::Error::other("twice"))?;
                restrict(r).map_err(std::io::Error::other)
            });
        }
        command.output().expect("the confined child runs")
    }

    fn system_policy(read_write: Vec<PathBuf>) -> Policy {
        Policy {
            read_only: SYSTEM_READ_ONLY.iter().map(PathBuf::from).collect(),
            read_write,
            devices: DEVICES.iter().map(PathBuf::from).collect(),
            connect_ports: Vec::new(),
        }
    }

    #[test]
    fn a_confined_child_reads_only_what_it_is_allowed() {
        let secret = tempfile::tempdir().unwrap();
        let secret_file = secret.path().join("secret");
        std::fs::write(&secret_file, "the-secret-content").unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let mine = scratch.path().join("mine");
        std::fs::write(&mine, "my own file").unwrap();
        let policy = system_policy(vec![scratch.path().to_path_buf()]);

        let denied = confined(&policy, "/bin/cat", &[secret_file.to_str().unwrap()]);
        assert!(!denied.status.success());
        assert!(
            !String::from_utf8_lossy(&denied.stdout).contains("the-secret-content"),
            "the secret was read"
        );
        assert!(
            String::from_utf8_lossy(&denied.stderr).contains("Permission denied"),
            "{}",
            String::from_utf8_lossy(&denied.stderr)
        );
        let allowed = confined(&policy, "/bin/cat", &[mine.to_str().unwrap()]);
        assert_eq!(String::from_utf8_lossy(&allowed.stdout), "my own file");
        // Read-only really is read-only, and the scratch directory is writable.
        let written = scratch.path().join("written");
        let script = format!(
            "echo x > /usr/wasmless-test-$$ 2>/dev/null && exit 1; echo ok > {}",
            written.display()
        );
        let wrote = confined(&policy, "/bin/sh", &["-c", &script]);
        assert!(wrote.status.success(), "{wrote:?}");
        assert_eq!(
            std::fs::read_to_string(&written).unwrap_or_default(),
            "ok\n"
        );
    }

    #[test]
    fn a_confined_child_cannot_connect_unless_allowed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
        let denied = confined(&system_policy(Vec::new()), "/bin/bash", &["-c", &connect]);
        assert!(!denied.status.success());
        let allowed_policy = Policy {
            connect_ports: vec![port],
            ..system_policy(Vec::new())
        };
        let allowed = confined(&allowed_policy, "/bin/bash", &["-c", &connect]);
        assert!(allowed.status.success(), "{allowed:?}");
    }

    #[test]
    fn proxy_ports_are_read_from_urls() {
        assert_eq!(proxy_port("http://proxy:3128"), Some(3128));
        assert_eq!(proxy_port("http://u:p@proxy:8080/"), Some(8080));
        assert_eq!(proxy_port("https://proxy"), Some(443));
    }
}
