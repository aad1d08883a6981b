//! The form of `deps` per runtime: packages by name and version from the registry the build
//! uses, nothing that points an installer at a path, a URL, another index or an option of its
//! own (`-r /abs/file`, `file:../..`, `path = "/"`, `--index-url`).

use serde_json::Value;

use crate::function::{Deps, Runtime};

/// Why `deps` are refused for `runtime`, if they are.
pub(super) fn check(runtime: Runtime, deps: &str) -> Result<(), String> {
    if deps.trim().is_empty() {
        return Ok(());
    }
    match runtime.deps() {
        Deps::Refused if runtime == Runtime::Ruby => Err(
            "ruby functions take no deps: gems come from RubyGems, which the builder cannot \
             reach; put pure-Ruby code in the function's source"
                .into(),
        ),
        Deps::Refused => Err(format!("{runtime} functions take no deps")),
        Deps::Requirements => lines(deps, requirement),
        Deps::PackageJson => package_json(deps),
        Deps::CargoDependencies => lines(deps, cargo_dependency),
        Deps::GoMod => go_requires(deps).map(|_| ()),
    }
}

/// The requirements (module path, version) of a go.mod given as a Go function's `deps`: its
/// `require` lines, alone or in blocks. `module`, `go` and `toolchain` lines are skipped (the
/// build writes its own); any other directive is refused: `replace` can point the go command at
/// a path or at another module.
pub fn go_requires(deps: &str) -> Result<Vec<(String, String)>, String> {
    let mut requires = Vec::new();
    let mut in_block = false;
    for (i, raw) in deps.lines().enumerate() {
        let line = raw.split("//").next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let at = |why: String| format!("go.mod line {}: {why}", i + 1);
        if in_block {
            if line == ")" {
                in_block = false;
            } else {
                requires.push(go_require(line).map_err(at)?);
            }
            continue;
        }
        let (directive, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match directive {
            "module" | "go" | "toolchain" => {}
            "require" if rest.trim() == "(" => in_block = true,
            "require" => requires.push(go_require(rest.trim()).map_err(at)?),
            other => {
                return Err(at(format!(
                    "{other:?} is not supported: deps are a go.mod's require lines"
                )));
            }
        }
    }
    if in_block {
        return Err("go.mod: a require block is not closed".into());
    }
    Ok(requires)
}

/// `example.com/module v1.2.3`, as go.mod spells a requirement.
fn go_require(line: &str) -> Result<(String, String), String> {
    let mut words = line.split_whitespace();
    let (Some(path), Some(version), None) = (words.next(), words.next(), words.next()) else {
        return Err(format!("{line:?} is not `module/path v1.2.3`"));
    };
    let element_ok = |e: &str| {
        !e.is_empty()
            && !e.starts_with(['.', '-'])
            && e.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
    };
    let path_ok = path.split('/').all(element_ok)
        && path
            .split('/')
            .next()
            .is_some_and(|host| host.contains('.'));
    if !path_ok {
        return Err(format!("{path:?} is not a module path (example.com/name)"));
    }
    let version_ok = version.len() > 1
        && version.starts_with('v')
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-+".contains(c));
    if !version_ok {
        return Err(format!("{path}: {version:?} is not a version (v1.2.3)"));
    }
    Ok((path.into(), version.into()))
}

/// Checks each line that is not blank or a comment; errors name the line.
fn lines(deps: &str, check: fn(&str) -> Result<(), String>) -> Result<(), String> {
    for (i, line) in deps.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        check(line).map_err(|why| format!("line {}: {why}", i + 1))?;
    }
    Ok(())
}

/// One pip requirement: `name[extras] <version specifiers> ; <markers>`, optionally with
/// `--hash=…`.
fn requirement(line: &str) -> Result<(), String> {
    let line = match line.find(" #") {
        Some(i) => line[..i].trim_end(),
        None => line,
    };
    if line.ends_with('\\') {
        return Err("line continuations are not allowed".into());
    }
    if let Some(option) = line
        .split_whitespace()
        .find(|t| t.starts_with('-') && !t.starts_with("--hash=sha256:"))
    {
        return Err(format!(
            "pip options such as {option:?} are not allowed: one package per line, by name and version"
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || " \t._-[],<>=!~*+;'\"()".contains(c);
    let requirement: String = line
        .split_whitespace()
        .filter(|t| !t.starts_with("--hash="))
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(bad) = requirement.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "{line:?}: {bad:?} is not allowed: packages come from the index by name and version (no paths, URLs, `name @ url` or variables)"
        ));
    }
    let name: String = requirement
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    let archive = [".whl", ".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz"]
        .iter()
        .any(|ext| name.to_ascii_lowercase().ends_with(ext));
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) || archive {
        return Err(format!("{line:?} does not start with a package name"));
    }
    Ok(())
}

/// Keys of package.json the build reads or that change nothing; others (`scripts`,
/// `overrides`, `workspaces`, other dependency kinds) can point npm elsewhere.
const PACKAGE_KEYS: [&str; 10] = [
    "name",
    "version",
    "description",
    "private",
    "license",
    "author",
    "keywords",
    "type",
    "main",
    "dependencies",
];

fn package_json(deps: &str) -> Result<(), String> {
    let json: Value =
        serde_json::from_str(deps).map_err(|e| format!("package.json is not valid JSON: {e}"))?;
    let Value::Object(fields) = json else {
        return Err("package.json must be a JSON object".into());
    };
    if let Some(key) = fields.keys().find(|k| !PACKAGE_KEYS.contains(&k.as_str())) {
        return Err(format!(
            "package.json key {key:?} is not supported (allowed: {})",
            PACKAGE_KEYS.join(", ")
        ));
    }
    let dependencies = match fields.get("dependencies") {
        None => return Ok(()),
        Some(Value::Object(d)) => d,
        Some(_) => return Err("package.json \"dependencies\" must be an object".into()),
    };
    for (name, range) in dependencies {
        if !npm_name(name) {
            return Err(format!("dependency {name:?} is not an npm package name"));
        }
        let range_ok = range.as_str().is_some_and(|r| {
            r.chars()
                .all(|c| c.is_ascii_alphanumeric() || " .^~*<>=|-+".contains(c))
        });
        if !range_ok {
            return Err(format!(
                "dependency {name:?}: {range} must be a version range or tag from the registry (no file:, link:, git, URL or npm: alias)"
            ));
        }
    }
    Ok(())
}

/// `name` or `@scope/name`, as npm spells them.
fn npm_name(name: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._~".contains(c))
    };
    match name.strip_prefix('@') {
        Some(scoped) => scoped
            .split_once('/')
            .is_some_and(|(scope, n)| part(scope) && part(n)),
        None => part(name),
    }
}

const CARGO_FORM: &str = "each line is name = \"version\" or name = { version = \"…\", features = [\"…\"], default-features = false, optional = true, package = \"…\" } (no path, git or registry)";

/// One line of Cargo.toml's `[dependencies]`.
fn cargo_dependency(line: &str) -> Result<(), String> {
    let line = strip_toml_comment(line);
    let (name, value) = line.split_once('=').ok_or(CARGO_FORM)?;
    if !crate_name(name.trim()) {
        return Err(format!(
            "{:?} is not a crate name; {CARGO_FORM}",
            name.trim()
        ));
    }
    let value = value.trim();
    if let Some(version) = quoted(value) {
        return version_req(version);
    }
    let inner = value
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .ok_or(CARGO_FORM)?;
    for item in split_top_level(inner) {
        let (key, v) = item.split_once('=').ok_or(CARGO_FORM)?;
        let v = v.trim();
        let ok = match key.trim() {
            "version" => quoted(v).is_some_and(|r| version_req(r).is_ok()),
            "package" => quoted(v).is_some_and(crate_name),
            "default-features" | "optional" => v == "true" || v == "false",
            "features" => v
                .strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .is_some_and(|a| {
                    split_top_level(a).iter().all(|f| {
                        quoted(f).is_some_and(|f| {
                            !f.is_empty()
                                && f.chars()
                                    .all(|c| c.is_ascii_alphanumeric() || "_-+./".contains(c))
                        })
                    })
                }),
            other => {
                return Err(format!("key {other:?} is not allowed; {CARGO_FORM}"));
            }
        };
        if !ok {
            return Err(format!("{:?}: {CARGO_FORM}", item.trim()));
        }
    }
    Ok(())
}

fn crate_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn version_req(req: &str) -> Result<(), String> {
    if !req.is_empty()
        && req
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " .^~*<>=,-+".contains(c))
    {
        Ok(())
    } else {
        Err(format!("{req:?} is not a version requirement"))
    }
}

/// The text between double quotes, when that is all there is (no escapes).
fn quoted(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains(['"', '\\'])).then_some(inner)
}

/// Splits at commas outside strings and arrays; a trailing comma leaves no empty item.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut items, mut start, mut depth, mut in_string) = (Vec::new(), 0, 0i32, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '[' | '{' if !in_string => depth += 1,
            ']' | '}' if !in_string => depth -= 1,
            ',' if !in_string && depth == 0 => {
                items.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&s[start..]);
    items.retain(|item| !item.trim().is_empty());
    items
}

fn strip_toml_comment(line: &str) -> &str {
    let mut in_string = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => return line[..i].trim_end(),
            _ => {}
        }
    }
    line
}
