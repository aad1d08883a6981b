# Shared by the scripts: where builds are cached, and the tools they need.
# Builds are cached outside the repository so a fresh clone (and CI) reuses them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/wasmless/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Every CI run is a fresh clone: incremental state would only pile up on disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# The workspace's own build outputs are keyed by the clone's path, so each fresh clone adds a set
# (~1 GB in debug); removes sets not written for a day. Dependencies' outputs are kept.
prune_stale_builds() {
  local deps="$CARGO_TARGET_DIR/debug/deps"
  [ -d "$deps" ] || return 0
  find "$deps" -maxdepth 1 -type f -mmin +1440 \( -name 'wasmless*' -o -name 'libwasmless*' \
    -o -name 'up-*' -o -name 'kubernetes-*' -o -name 'metacontroller-*' -o -name 'runtimes-*' \
    -o -name 'cli-*' \) -delete
  # Every build of a test or binary leaves a new <name>-<hash> executable (~200 MB each, the only
  # files in deps without an extension). Variants of one name built together (a crate's binary,
  # its tests) are kept: only those two hours older than that name's newest go.
  local f name mtime
  local -A newest=()
  while IFS=' ' read -r mtime f; do
    name=${f%-*}
    if [ -z "${newest[$name]:-}" ]; then
      newest[$name]=$mtime
    elif [ "$mtime" -lt $((newest[$name] - 7200)) ]; then
      rm -f "$deps/$f" "$deps/$f.d"
    fi
  done < <(cd "$deps" && find . -maxdepth 1 -type f -regextype egrep -regex '.*-[0-9a-f]{16}' \
    -printf '%T@ %f\n' | sed 's/\.[0-9]* / /' | sort -rn)
  rm -rf "$CARGO_TARGET_DIR/debug/incremental"
}

# apt_install [--no-install-recommends] PKG... : installs Debian packages that are missing (the
# machine runs as root), waiting for dpkg's lock: test.sh's background steps may install at the
# same time.
apt_install() {
  local opts=() missing=()
  [ "${1:-}" != --no-install-recommends ] || { opts+=("$1"); shift; }
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # One apt at a time from these scripts: DPkg::Lock::Timeout waits for dpkg's lock, but `apt-get
  # update` fails at once on its lists' lock. (flock -o: a daemon a package starts does not
  # inherit the lock.)
  $sudo flock -o /tmp/.wasmless-apt.lock sh -c 'apt-get -o DPkg::Lock::Timeout=600 update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null' \
    apt_install "${opts[@]}" "${missing[@]}"
}

require_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is missing: install Rust with rustup (https://rustup.rs), then run this again" >&2
    exit 1
  fi
  # rustfmt and clippy come with rustup's default profile; add them when a minimal one was used.
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
}
