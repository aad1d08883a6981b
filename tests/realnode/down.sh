#!/usr/bin/env bash
# tests/realnode/down.sh [--purge] [DIR] — stops the cluster that up.sh started in DIR and undoes its host changes:
#   * processes: only the PIDs up.sh recorded in DIR/pids (each checked to be alive and to name DIR
#     on its command line), plus the containerd shims and pod processes that this containerd made
#     (their pids from DIR/containerd/state, and from the kubepods cgroups kubelet made)
#   * pods: `crictl rmp -fa` first, so CNI DEL runs for each sandbox (veth, IP lease, netns)
#   * mounts under DIR (kubelet's rshared root-dir bind, volumes, overlay rootfs, shm) and the
#     sandboxes' netns files in /run/netns
#   * iptables: kube-proxy --cleanup, kubelet's KUBE-* chains, CNI-* chains, REALNODE-GUARD
#   * links realnode-br0, realnode0; kubepods cgroups; /var/lib/cni entries for network "realnode"
#   * sysctls: restored from DIR/saved-sysctls
#   --purge  also delete DIR (the cache in ~/.cache/wasmless is kept)
# Prints the processes before and after. Never kills by name.
set -uo pipefail
PURGE=0
[ "${1:-}" = "--purge" ] && { PURGE=1; shift; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shared settings and helpers (paths, names, pid_of, CTR, ...)
REALNODE_SOURCE_ONLY=1 source "$HERE/up.sh" "$@"
set +e
log() { printf '[down %6ss] %s\n' "$(since "$T0")" "$*" >&2; }
[ "$(id -u)" -eq 0 ] || { log "run as root"; exit 1; }
[ -d "$DIR" ] || { log "$DIR does not exist: nothing to do"; exit 0; }
exec 9>"$DIR/.lock"; flock -w 60 9 || { log "$DIR is locked by another up.sh/down.sh"; exit 1; }

SOCK=$DIR/containerd/containerd.sock
CRICTL() { "$CRICTL_BIN/crictl" --config "$DIR/config/crictl.yaml" "$@"; }
is_our_shim() { # a containerd-shim that this containerd started: -address names our socket
  local c; c=$({ tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null) || return 1
  [[ "$c" == *containerd-shim*" -address $SOCK "* ]]
}
shim_pids() { # the shims of this containerd
  local f p pp
  {
    # each container's init (pid recorded by containerd in our state dir) is a child of its shim
    for f in "$DIR"/containerd/state/io.containerd.runtime.v2.task/*/*/init.pid; do
      [ -f "$f" ] || continue
      p=$(cat "$f"); [ -r "/proc/$p/stat" ] || continue
      pp=$(sed 's/.*) //' "/proc/$p/stat" | awk '{print $2}')
      is_our_shim "$pp" && echo "$pp"
    done
    # a shim whose containers are gone already: found by our socket path on its command line
    for f in /proc/[0-9]*; do is_our_shim "${f#/proc/}" && echo "${f#/proc/}"; done
  } | sort -un
}
pod_pids() { # processes in the cgroups kubelet made (kubepods), in any hierarchy
  local h
  for h in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice /sys/fs/cgroup/kubepods; do
    [ -d "$h" ] && find "$h" -name cgroup.procs -exec cat {} + 2>/dev/null
  done | sort -un
}
show_processes() {
  local n p any=0
  for n in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy; do
    p=$(pid_of "$n") && { any=1; ps -o pid=,etime=,rss=,args= -p "$p" | cut -c1-150 | sed "s/^/  [$n] /"; }
  done
  for p in $(shim_pids); do any=1; ps -o pid=,etime=,rss=,args= -p "$p" | cut -c1-150 | sed 's/^/  [shim] /'; done
  for p in $(pod_pids); do any=1; ps -o pid=,etime=,rss=,args= -p "$p" | cut -c1-150 | sed 's/^/  [pod] /'; done
  [ "$any" = 1 ] || echo "  (none)"
}
stop_pid() { # stop_pid LABEL PID: TERM, up to 15 s, then KILL
  local what=$1 p=$2 i
  [ -d "/proc/$p" ] || return 0
  kill -TERM "$p" 2>/dev/null
  for i in $(seq 1 75); do [ -d "/proc/$p" ] || { log "stopped $what ($p)"; return 0; }; sleep 0.2; done
  kill -KILL "$p" 2>/dev/null; sleep 0.2
  log "killed $what ($p)"
}
stop() { # stop NAME...: the recorded pids, all at once
  local n p
  for n in "$@"; do p=$(pid_of "$n") && stop_pid "$n" "$p" & done
  wait
  for n in "$@"; do rm -f "$DIR/pids/$n.pid"; done
}

echo "---- processes before"
show_processes

# 1. nothing may recreate or restart pods: controllers, scheduler, kubelet
stop kube-controller-manager kube-scheduler kubelet

# 2. pod sandboxes through CRI, so that the CNI plugin's DEL runs (veth, IP lease) and netns go
NETNS=()
if pid_of containerd >/dev/null && [ -x "$CRICTL_BIN/crictl" ]; then
  mapfile -t NETNS < <(CRICTL inspectp -o json $(CRICTL pods -q 2>/dev/null) 2>/dev/null |
    jq -r '.info.runtimeSpec.linux.namespaces[]? | select(.type=="network") | .path // empty' 2>/dev/null | sort -u)
  CRICTL stopp $(CRICTL pods -q) >/dev/null 2>&1
  CRICTL rmp -fa >/dev/null 2>&1 && log "removed all pod sandboxes (crictl rmp -fa)"
fi

# 3. kube-proxy and the control plane (etcd last: kube-apiserver's graceful shutdown needs it,
#    else it hangs until KILLed); then kube-proxy's rules (all modes, both families)
stop kube-proxy kube-apiserver
stop etcd
[ -x "$K8S_BIN/kube-proxy" ] && "$K8S_BIN/kube-proxy" --cleanup --v=0 >/dev/null 2>&1 && log "kube-proxy --cleanup done"

# 4. containerd and whatever it left: shims, then any process still in kubepods
SHIMS=$(shim_pids)
stop containerd
for p in $SHIMS; do stop_pid shim "$p"; done
for p in $(pod_pids); do kill -KILL "$p" 2>/dev/null && log "killed leftover pod process $p"; done

# 5. mounts under DIR (deepest first), and our sandboxes' netns
mapfile -t MOUNTS < <(awk -v d="$DIR/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r -u)
for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
[ ${#MOUNTS[@]} -eq 0 ] || log "unmounted ${#MOUNTS[@]} mounts under $DIR"
for n in "${NETNS[@]}"; do
  [ -n "$n" ] && [ -e "$n" ] || continue
  umount "$n" 2>/dev/null; rm -f "$n" && log "removed leftover netns $n"
done

# 6. cgroups made by kubelet (and runc under them): deepest first
for h in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
  [ -d "$h" ] || continue
  find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null
  [ -d "$h" ] && log "could not remove cgroup $h" || log "removed cgroup $h"
done

# 7. iptables: our guard; kubelet's and any CNI chains that kube-proxy --cleanup does not own
for ipt in iptables ip6tables; do
  command -v $ipt >/dev/null || continue
  while $ipt -w -t filter -D FORWARD -j REALNODE-GUARD 2>/dev/null; do :; done
  $ipt -w -t filter -F REALNODE-GUARD 2>/dev/null && $ipt -w -t filter -X REALNODE-GUARD 2>/dev/null
  for table in filter nat mangle raw; do
    # rules in any chain that jump to a KUBE-*/CNI-* chain, then those chains themselves
    $ipt -w -t $table -S 2>/dev/null | grep -E '^-A .* -j (KUBE|CNI)-' | sed 's/^-A /-D /' |
      while read -r rule; do eval "$ipt -w -t $table $rule" 2>/dev/null; done
    for c in $($ipt -w -t $table -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
      $ipt -w -t $table -F "$c" 2>/dev/null
    done
    for c in $($ipt -w -t $table -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ {print $2}'); do
      $ipt -w -t $table -X "$c" 2>/dev/null
    done
  done
done
log "iptables: removed REALNODE-GUARD and KUBE-*/CNI-* chains"
# nftables tables that iptables-nft (or kube-proxy) created for us and that are empty now
if [ -f "$DIR/nft-tables-before" ] && command -v nft >/dev/null; then
  nft list tables 2>/dev/null | while read -r _ fam name; do
    grep -qxF "table $fam $name" "$DIR/nft-tables-before" && continue
    rules=$(nft -j list table "$fam" "$name" 2>/dev/null | jq '[.nftables[] | select(.rule)] | length' 2>/dev/null)
    [ "$rules" = 0 ] && nft delete table "$fam" "$name" 2>/dev/null && log "deleted empty nft table $fam $name"
  done
  rm -f "$DIR/nft-tables-before"
fi

# 8. links, CNI state, host dirs, sysctls
for l in "$BRIDGE" "$NODE_DEV"; do ip link show "$l" >/dev/null 2>&1 && ip link del "$l" && log "deleted link $l"; done
rm -rf /var/lib/cni/results/"$CNI_NET"-* /var/lib/cni/networks/"$CNI_NET" 2>/dev/null
# kubelet's hard-coded host paths: /var/log/containers/*.log -> DIR/pod-logs/..., and the
# device-plugin socket (removed only when /var/lib/kubelet did not exist before up.sh)
for l in /var/log/containers/*.log; do
  [ -L "$l" ] && case $(readlink "$l") in "$DIR"/*) rm -f "$l" ;; esac
done
grep -qx /var/lib/kubelet "$DIR/created-dirs" 2>/dev/null &&
  rm -f /var/lib/kubelet/device-plugins/kubelet.sock /var/lib/kubelet/device-plugins/kubelet_internal_checkpoint
if [ -f "$DIR/created-dirs" ]; then
  while read -r d; do
    [ -n "$d" ] && [ -d "$d" ] && find "$d" -depth -type d -empty -delete 2>/dev/null && [ ! -e "$d" ] && log "removed $d"
  done <"$DIR/created-dirs"
  rm -f "$DIR/created-dirs"
fi
if [ -f "$DIR/saved-sysctls" ]; then
  while IFS='=' read -r k v; do
    [ -n "$k" ] && [ "$(sysctl_get "$k")" != "$v" ] && echo "$v" >"/proc/sys/${k//.//}" && log "restored $k=$v"
  done <"$DIR/saved-sysctls"
  rm -f "$DIR/saved-sysctls"
fi

echo "---- processes after"
show_processes
left=$(awk -v d="$DIR/" 'index($5, d) == 1' /proc/self/mountinfo | wc -l)
[ "$left" = 0 ] || log "WARNING: $left mounts left under $DIR"
if [ "$PURGE" = 1 ]; then rm -rf "$DIR" && log "removed $DIR"; fi
log "done"
