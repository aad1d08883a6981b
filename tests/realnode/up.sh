#!/usr/bin/env bash
# tests/realnode/up.sh [--smoke] [DIR] — a real single-node Kubernetes cluster on this machine for
# the real-node suite (tests/tests/realnode.rs), started by hand (no systemd): etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, containerd (+runc, CRI, CNI bridge), kubelet, kube-proxy
# (iptables) and CoreDNS (a Deployment). Idempotent: reuses DIR, starts what is not running.
# Binaries come from `scripts/k8s-binaries.sh --node` (built from the Go module proxy, cached);
# images (pause, busybox, CoreDNS) are built here from Debian packages with buildah, never pulled.
# Writes DIR/kubeconfig (admin) and DIR/pids/*.pid (what down.sh stops). Prints timings.
#   --smoke       also run the acceptance test: Deployment+Service hello in namespace test (busybox
#                 httpd), reached from pod default/client as http://hello.test:8080/ (CoreDNS+kube-proxy)
# Environment (defaults in brackets):
#   REALNODE_DIR [${TMPDIR:-/tmp}/wasmless-realnode]    state dir (or the positional argument)
#   WASMLESS_K8S_BIN [what scripts/k8s-binaries.sh --node prints: it builds them the first time]
#   REALNODE_NODE_IP [192.0.2.200]  the node's address, on a device of its own (realnode0)
# Network: pods 198.18.0.0/16 (bridge realnode-br0, 198.18.0.1), services 198.19.0.0/16, DNS
# 198.19.0.10. Nothing leaves the machine: CoreDNS has no upstream, pods have no default route, and
# a FORWARD guard drops anything between the pod bridge and another interface.
# Adapted from the measured reference scripts in ../shared/realnode (see ../shared/notes/real-node.md
# for every flag and gotcha below).
set -euo pipefail
. "$(dirname "$0")/../../scripts/lib.sh" # apt_install

SMOKE=${REALNODE_SMOKE:-0}
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) SMOKE=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) break ;;
  esac
done
DIR=$(realpath -m "${1:-${REALNODE_DIR:-${TMPDIR:-/tmp}/wasmless-realnode}}")
CACHE=$HOME/.cache/wasmless/realnode
K8S_BIN=${WASMLESS_K8S_BIN:-$("$(dirname "$0")/../../scripts/k8s-binaries.sh" --node | tail -n 1)}
COREDNS_VERSION=v$("$K8S_BIN/coredns" -version | sed -n 's/^CoreDNS-//p') # e.g. v1.14.7
NODE_IP=${REALNODE_NODE_IP:-192.0.2.200}
NODE_DEV=realnode0
NODE_NAME=realnode
POD_CIDR=198.18.0.0/16
POD_GW=198.18.0.1
SVC_CIDR=198.19.0.0/16
KUBERNETES_SVC_IP=198.19.0.1 # first address of SVC_CIDR
DNS_IP=198.19.0.10
BRIDGE=realnode-br0
CNI_NET=realnode
CLUSTER_DOMAIN=cluster.local
# ports: every listener is bound to NODE_IP or 127.0.0.1, none to 0.0.0.0
APISERVER_PORT=6443
ETCD_CLIENT_PORT=23791 ETCD_PEER_PORT=23801
KUBELET_PORT=10250 KUBELET_HEALTHZ_PORT=10248
SCHED_PORT=10259 KCM_PORT=10257 PROXY_HEALTHZ_PORT=10256 PROXY_METRICS_PORT=10249

ETCD_BIN=$K8S_BIN COREDNS_BIN=$K8S_BIN CRICTL_BIN=$K8S_BIN
IMAGES=$CACHE/images
# images: all built here, never pulled (pods use imagePullPolicy: Never)
PAUSE_IMAGE=localhost/realnode/pause:3.10
BUSYBOX_IMAGE=localhost/realnode/busybox:1.35
COREDNS_IMAGE=localhost/realnode/coredns:${COREDNS_VERSION#v}

T0=$EPOCHREALTIME
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}'; }
log() { printf '[up %6ss] %s\n' "$(since "$T0")" "$*" >&2; }
TIMINGS=()
timing() { TIMINGS+=("$1: $2s"); log "TIMING $1: $2s"; }
die() { log "ERROR: $*"; exit 1; }

# ----------------------------------------------------------------------------------------- images
# Every image is built here from scratch (buildah, with its own storage under the cache) and kept
# as an OCI archive; containerd imports it into its k8s.io namespace. Nothing is ever pulled.
BUILDAH() { buildah --root "$HOME/.cache/wasmless/buildah/root" --runroot "$HOME/.cache/wasmless/buildah/runroot" --storage-driver vfs "$@"; }
build_image() { # build_image NAME ARCHIVE ROOTFS_TAR CONFIG_ARGS...
  local name=$1 archive=$2 tarball=$3 c; shift 3
  c=$(BUILDAH from scratch)
  BUILDAH add "$c" "$tarball" / >/dev/null
  BUILDAH config "$@" "$c"
  BUILDAH commit --rm -q "$c" "$name" >/dev/null
  rm -f "$archive.tmp"
  BUILDAH push -q "$name" "oci-archive:$archive.tmp:$name"
  mv -f "$archive.tmp" "$archive"
  BUILDAH rmi -f "$name" >/dev/null 2>&1 || true
}
build_images() {
  local t=$EPOCHREALTIME b=$CACHE/build/images
  mkdir -p "$IMAGES" "$b"
  exec 8>"$CACHE/.build.lock"; flock 8
  if [ ! -f "$IMAGES/pause.tar" ]; then
    # a static pause: sleeps until SIGINT/SIGTERM, reaps children (what registry.k8s.io/pause does)
    cat >"$b/pause.c" <<'C'
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void down(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  signal(SIGINT, down); signal(SIGTERM, down); signal(SIGCHLD, reap);
  for (;;) pause();
}
C
    rm -rf "$b/pause" && mkdir -p "$b/pause"
    gcc -static -Os -s -o "$b/pause/pause" "$b/pause.c"
    tar -C "$b/pause" --numeric-owner --owner=0 --group=0 -cf "$b/pause.tar" .
    build_image "$PAUSE_IMAGE" "$IMAGES/pause.tar" "$b/pause.tar" \
      --entrypoint '["/pause"]' --user 65535:65535
    log "built image $PAUSE_IMAGE"
  fi
  if [ ! -f "$IMAGES/busybox.tar" ]; then
    # Debian's busybox-static with a symlink per applet, /etc/passwd, /etc/group, /tmp
    local r=$b/busybox a
    rm -rf "$r" && mkdir -p "$r/bin" "$r/etc" "$r/tmp" && chmod 1777 "$r/tmp"
    cp /bin/busybox "$r/bin/busybox"
    for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$r/bin/$a"; done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$r/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\n' >"$r/etc/group"
    printf 'hosts: files dns\n' >"$r/etc/nsswitch.conf"
    tar -C "$r" --numeric-owner --owner=0 --group=0 -cf "$b/busybox.tar" .
    build_image "$BUSYBOX_IMAGE" "$IMAGES/busybox.tar" "$b/busybox.tar" \
      --cmd '["/bin/sh"]' --env PATH=/bin
    log "built image $BUSYBOX_IMAGE"
  fi
  if [ ! -f "$IMAGES/coredns-$COREDNS_VERSION.tar" ]; then
    rm -rf "$b/coredns" && mkdir -p "$b/coredns/etc/coredns"
    cp "$COREDNS_BIN/coredns" "$b/coredns/coredns"
    tar -C "$b/coredns" --numeric-owner --owner=0 --group=0 -cf "$b/coredns.tar" .
    build_image "$COREDNS_IMAGE" "$IMAGES/coredns-$COREDNS_VERSION.tar" "$b/coredns.tar" \
      --entrypoint '["/coredns"]' --port 53/udp --port 53/tcp
    log "built image $COREDNS_IMAGE"
  fi
  rm -rf "$b"
  flock -u 8
  timing "images (build or cache check)" "$(since "$t")"
}

# -------------------------------------------------------------------------------------- processes
pid_of() { # pid_of NAME: the recorded pid, when that process is alive and is ours (cmdline names DIR/)
  local f=$DIR/pids/$1.pid p
  [ -f "$f" ] || return 1
  p=$(cat "$f"); [ -n "$p" ] && [ -r "/proc/$p/cmdline" ] || return 1
  [[ "$(tr '\0' ' ' <"/proc/$p/cmdline")" == *"$DIR/"* ]] || return 1
  echo "$p"
}
# write_config FILE < CONTENT: replaces FILE only when the content differs; status 0 = it changed.
# (kube-proxy watches its config file and exits when it is rewritten, even with the same content.)
write_config() {
  local f=$1 tmp; tmp=$(mktemp "$f.XXXXXX")
  cat >"$tmp"
  if [ -f "$f" ] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; return 1; fi
  mv -f "$tmp" "$f"
}
stop_if_running() { # stop_if_running NAME: its config changed, so stop it (start will start it again)
  local p i; p=$(pid_of "$1") || return 0
  log "config of $1 changed: restarting it"
  kill -TERM "$p"; for i in $(seq 1 100); do [ -d "/proc/$p" ] || return 0; sleep 0.2; done
  kill -KILL "$p"; sleep 0.2
}
STARTED_AT=0 # epoch second at which start last started a process (0: it was running already)
start() { # start NAME BINARY ARGS...: own session, log DIR/logs/NAME.log, pid DIR/pids/NAME.pid
  local name=$1 p; shift
  STARTED_AT=0
  if p=$(pid_of "$name"); then log "$name already running (pid $p)"; return 0; fi
  STARTED_AT=$(date +%s)
  # no job control here, so the child is no process-group leader: setsid execs without forking
  # and $! is the daemon's own pid
  # (fds 8 and 9 hold up.sh's locks: the daemons must not inherit them)
  setsid "$@" >>"$DIR/logs/$name.log" 2>&1 </dev/null 8>&- 9>&- &
  echo $! >"$DIR/pids/$name.pid"
  log "started $name (pid $!)"
}
wait_for() { # wait_for WHAT TIMEOUT_S CMD...
  local what=$1 tmo=$2 t=$EPOCHREALTIME; shift 2
  until "$@" >/dev/null 2>&1; do
    if awk -v a="$t" -v b="$EPOCHREALTIME" -v m="$tmo" 'BEGIN{exit !(b-a > m)}'; then
      log "timed out after ${tmo}s waiting for $what"; return 1
    fi
    sleep 0.2
  done
}
alive() { pid_of "$1" >/dev/null || { log "$1 is not running; last lines of $DIR/logs/$1.log:"; tail -n 30 "$DIR/logs/$1.log" >&2; return 1; }; }

# -------------------------------------------------------------------------------------- host setup
SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys
  kernel.keys.root_maxbytes)
sysctl_get() { cat "/proc/sys/${1//.//}"; }
sysctl_set() { [ "$(sysctl_get "$1")" = "$2" ] || echo "$2" >"/proc/sys/${1//.//}"; }
host_setup() {
  local need=()
  command -v iptables >/dev/null || need+=(iptables)
  command -v containerd >/dev/null || need+=(containerd)
  command -v runc >/dev/null || need+=(runc)
  [ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
  command -v buildah >/dev/null || need+=(buildah)
  [ -x /bin/busybox ] || need+=(busybox-static)
  command -v openssl >/dev/null || need+=(openssl)
  command -v curl >/dev/null || need+=(curl)
  command -v jq >/dev/null || need+=(jq)
  command -v gcc >/dev/null || need+=(gcc libc6-dev)
  if [ ${#need[@]} -gt 0 ]; then
    log "apt-get install ${need[*]}"
    apt_install "${need[@]}"
  fi
}
host_net() {
  # Kernel state the cluster changes, saved once so that down.sh restores it. kubelet itself sets
  # vm.overcommit_memory=1 kernel.panic=10 kernel.panic_on_oops=1 (its only alternative,
  # protectKernelDefaults, turns a difference into a startup error).
  if [ ! -f "$DIR/saved-sysctls" ]; then
    local k; for k in "${SYSCTLS[@]}"; do echo "$k=$(sysctl_get "$k")"; done >"$DIR/saved-sysctls.tmp"
    mv "$DIR/saved-sysctls.tmp" "$DIR/saved-sysctls"
    # Host paths that are hard-coded in kubelet (/var/log/containers: symlinks to the pod logs;
    # /var/lib/kubelet/device-plugins/kubelet.sock), CNI (/var/lib/cni), containerd (/run/netns) and
    # libmount (/run/mount): recorded when missing, so that down.sh removes them again.
    local d; for d in /var/lib/cni /run/netns /var/log/containers /var/lib/kubelet /run/mount; do
      [ -e "$d" ] || echo "$d"
    done >"$DIR/created-dirs"
    # nftables tables that exist now (iptables-nft creates ip/ip6 filter, nat, mangle on first use)
    nft list tables 2>/dev/null >"$DIR/nft-tables-before" || true
  fi
  sysctl_set net.ipv4.ip_forward 1                 # pod -> service -> pod on one bridge is routed
  sysctl_set net.bridge.bridge-nf-call-iptables 1  # replies between pods on the bridge must meet conntrack
  sysctl_set net.bridge.bridge-nf-call-ip6tables 1
  # The node's address, on a device of its own. This kernel has no CONFIG_DUMMY: an empty bridge
  # serves as well (an address on an admin-up device is local, carrier or not). /32: no subnet route.
  if ! ip link show "$NODE_DEV" >/dev/null 2>&1; then
    ip link add "$NODE_DEV" type dummy 2>/dev/null || ip link add "$NODE_DEV" type bridge
  fi
  ip link set "$NODE_DEV" up
  [[ "$(ip -4 addr show dev "$NODE_DEV")" == *" $NODE_IP/32 "* ]] || ip addr add "$NODE_IP/32" dev "$NODE_DEV"
  # Guard: nothing is forwarded between the pod bridge and any other interface. In a chain of its
  # own, so that down.sh removes exactly this.
  if ! iptables -w -t filter -nL REALNODE-GUARD >/dev/null 2>&1; then
    iptables -w -t filter -N REALNODE-GUARD
    iptables -w -t filter -A REALNODE-GUARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
    iptables -w -t filter -A REALNODE-GUARD -o "$BRIDGE" ! -i "$BRIDGE" -j DROP
  fi
  iptables -w -t filter -C FORWARD -j REALNODE-GUARD 2>/dev/null || iptables -w -t filter -I FORWARD 1 -j REALNODE-GUARD
}
guard_first() { # kube-proxy prepends its FORWARD jumps (KUBE-FORWARD accepts ESTABLISHED and
  # masquerade-marked packets): put the guard back in front, first the new rule, then the old one out
  local n
  n=$(iptables -w -t filter -S FORWARD | grep -v '^-P' | grep -nxF -- '-A FORWARD -j REALNODE-GUARD' | head -1 | cut -d: -f1)
  [ "${n:-1}" = 1 ] && return 0
  iptables -w -t filter -I FORWARD 1 -j REALNODE-GUARD
  iptables -w -t filter -D FORWARD "$((n + 1))"
}

# -------------------------------------------------------------------------------------------- pki
P=$DIR/pki
mkcert() { # mkcert NAME CN O SAN: a client+server cert signed by the cluster CA
  [ -f "$P/$1.crt" ] && return 0
  openssl ecparam -name prime256v1 -genkey -noout -out "$P/$1.key" 2>/dev/null
  openssl req -new -key "$P/$1.key" -subj "/CN=$2${3:+/O=$3}" -out "$P/$1.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [ -z "$4" ] || echo "subjectAltName=$4"
  } >"$P/$1.ext"
  openssl x509 -req -in "$P/$1.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -days 3650 \
    -extfile "$P/$1.ext" -out "$P/$1.crt" 2>/dev/null
  rm -f "$P/$1.csr" "$P/$1.ext"
}
kubeconfig() { # kubeconfig FILE CERTNAME
  cat >"$1.tmp" <<KC
apiVersion: v1
kind: Config
clusters:
- name: realnode
  cluster:
    server: https://$NODE_IP:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$P/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$P/$2.crt")
    client-key-data: $(base64 -w0 "$P/$2.key")
contexts:
- name: realnode
  context: {cluster: realnode, user: $2}
current-context: realnode
KC
  mv -f "$1.tmp" "$1"
}
pki() {
  if [ ! -f "$P/ca.crt" ]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$P/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$P/ca.key" -subj "/CN=realnode-ca" -days 3650 -out "$P/ca.crt" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
  fi
  [ -f "$P/sa.key" ] || { openssl ecparam -name prime256v1 -genkey -noout -out "$P/sa.key" 2>/dev/null &&
    openssl ec -in "$P/sa.key" -pubout -out "$P/sa.pub" 2>/dev/null; }
  mkcert apiserver kube-apiserver "" "IP:$NODE_IP,IP:$KUBERNETES_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:$NODE_NAME,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN"
  mkcert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters ""
  mkcert admin realnode-admin system:masters ""
  mkcert controller-manager system:kube-controller-manager "" ""
  mkcert scheduler system:kube-scheduler "" ""
  mkcert kubelet "system:node:$NODE_NAME" system:nodes ""
  mkcert kubelet-serving "system:node:$NODE_NAME" system:nodes "IP:$NODE_IP,DNS:$NODE_NAME"
  mkcert kube-proxy system:kube-proxy "" ""
  [ -f "$DIR/kubeconfig" ] || kubeconfig "$DIR/kubeconfig" admin
  local n; for n in controller-manager scheduler kubelet kube-proxy; do
    [ -f "$DIR/config/$n.kubeconfig" ] || kubeconfig "$DIR/config/$n.kubeconfig" "$n"
  done
}

# ------------------------------------------------------------------------------------ control plane
KUBECTL() { "$K8S_BIN/kubectl" --kubeconfig "$DIR/kubeconfig" --cache-dir "$DIR/kube-cache" "$@"; }
apiserver_ready() { [ "$(curl -sf --max-time 2 --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key" \
  "https://$NODE_IP:$APISERVER_PORT/readyz")" = ok ]; }
start_etcd() {
  start etcd "$ETCD_BIN/etcd" --name realnode --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "realnode=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --log-level warn
  wait_for "etcd /health" 60 curl -sf --max-time 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health" || { alive etcd; exit 1; }
}
start_apiserver() {
  start kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
    --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$APISERVER_PORT" \
    --service-cluster-ip-range "$SVC_CIDR" \
    --client-ca-file "$P/ca.crt" --tls-cert-file "$P/apiserver.crt" --tls-private-key-file "$P/apiserver.key" \
    --kubelet-client-certificate "$P/apiserver-kubelet-client.crt" --kubelet-client-key "$P/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$P/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file "$P/sa.pub" --service-account-signing-key-file "$P/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --profiling=false --cert-dir "$DIR/pki/apiserver-generated" \
    --v=1
  wait_for "kube-apiserver /readyz" 120 apiserver_ready || { alive kube-apiserver; exit 1; }
}
start_controllers() {
  start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$DIR/config/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$DIR/config/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$DIR/config/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
    --service-cluster-ip-range "$SVC_CIDR" --cluster-cidr "$POD_CIDR" --allocate-node-cidrs=false \
    --root-ca-file "$P/ca.crt" --service-account-private-key-file "$P/sa.key" --use-service-account-credentials=true \
    --cluster-signing-cert-file "$P/ca.crt" --cluster-signing-key-file "$P/ca.key" \
    --flex-volume-plugin-dir "$DIR/kcm-volume-plugins" \
    --cert-dir "$DIR/pki/kcm-generated" --profiling=false --v=1
  start kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$DIR/config/scheduler.kubeconfig" \
    --authentication-kubeconfig "$DIR/config/scheduler.kubeconfig" \
    --authorization-kubeconfig "$DIR/config/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false \
    --cert-dir "$DIR/pki/scheduler-generated" --profiling=false --v=1
}

# ------------------------------------------------------------------------------------------- node
CTR() { ctr --address "$DIR/containerd/containerd.sock" --namespace k8s.io "$@"; }
start_containerd() {
  write_config "$DIR/containerd/config.toml" <<TOML && stop_if_running containerd
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$DIR/containerd/containerd.sock"
[ttrpc]
  address = "$DIR/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE_IMAGE"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    # This VM's processes lack CAP_SYS_RESOURCE (not in the bounding set), so runc cannot lower
    # oom_score_adj (the sandbox asks for -998): "nsexec: failed to update /proc/self/oom_score_adj:
    # Permission denied" / "can't get final child's PID from pipe: EOF". Clamp to containerd's own.
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "$(command -v runc)"
          Root = "$DIR/containerd/runc"
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$DIR/cni/net.d"
      max_conf_num = 1
  [plugins."io.containerd.internal.v1.opt"]
    path = "$DIR/containerd/opt"
TOML
  printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 20\n' \
    "$DIR/containerd/containerd.sock" "$DIR/containerd/containerd.sock" | write_config "$DIR/config/crictl.yaml" || true
  start containerd containerd --config "$DIR/containerd/config.toml" --log-level warn
  wait_for "containerd socket" 60 CTR version || { alive containerd; exit 1; }
  local img f have
  have=$(CTR images ls -q)
  for f in pause busybox "coredns-$COREDNS_VERSION"; do
    case $f in pause) img=$PAUSE_IMAGE ;; busybox) img=$BUSYBOX_IMAGE ;; *) img=$COREDNS_IMAGE ;; esac
    grep -qxF "$img" <<<"$have" && continue
    CTR images import "$IMAGES/$f.tar" >/dev/null
    log "imported $img"
  done
}
write_cni() {
  # bridge + host-local. ipMasq off (nothing leaves); routes only to the services and to the node:
  # pods have no default route at all.
  write_config "$DIR/cni/net.d/10-$CNI_NET.conflist" <<JSON || true
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NET",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GW"}]],
        "routes": [{"dst": "$SVC_CIDR"}, {"dst": "$NODE_IP/32"}]
      }
    }
  ]
}
JSON
}
start_kubelet() {
  write_config "$DIR/config/kubelet.yaml" <<YAML && stop_if_running kubelet
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $P/kubelet-serving.crt
tlsPrivateKeyFile: $P/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$DIR/containerd/containerd.sock
cgroupDriver: cgroupfs
# this VM has cgroup v1 (hybrid): kubelet 1.35 refuses to start on v1 unless told
failCgroupV1: false
failSwapOn: false
# no CAP_SYS_RESOURCE here: -999 (the default) cannot be written
oomScoreAdj: 0
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: [$DNS_IP]
# no host resolv.conf: ClusterFirst pods get only the cluster DNS, dnsPolicy Default pods none
resolvConf: ""
podLogsDir: $DIR/pod-logs
volumePluginDir: $DIR/kubelet/volume-plugins
rotateCertificates: false
serverTLSBootstrap: false
registerNode: true
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
fileCheckFrequency: 10s
YAML
  start kubelet "$K8S_BIN/kubelet" --config "$DIR/config/kubelet.yaml" \
    --kubeconfig "$DIR/config/kubelet.kubeconfig" --root-dir "$DIR/kubelet" --cert-dir "$DIR/kubelet/pki" \
    --node-ip "$NODE_IP" --hostname-override "$NODE_NAME" --v=1
  KUBELET_STARTED_AT=$STARTED_AT
}
start_kube_proxy() {
  write_config "$DIR/config/kube-proxy.yaml" <<YAML && stop_if_running kube-proxy
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $DIR/config/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
detectLocalMode: ClusterCIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
nodePortAddresses: ["$NODE_IP/32"]
iptables:
  # no net.ipv4.conf.all.route_localnet flip and no NodePorts on 127.0.0.1
  localhostNodePorts: false
  minSyncPeriod: 0s
  syncPeriod: 30s
oomScoreAdj: 0
# leave the host's conntrack sysctls alone
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
  start kube-proxy "$K8S_BIN/kube-proxy" --config "$DIR/config/kube-proxy.yaml" --v=1
}
KUBELET_STARTED_AT=0
node_ready() { # Ready, and (after a kubelet (re)start) reported by this kubelet, not left in etcd
  local r s hb
  r=$(KUBECTL get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}' 2>/dev/null) || return 1
  s=${r%% *}; hb=${r#* }
  [ "$s" = True ] && [ "$(date -d "$hb" +%s 2>/dev/null || echo 0)" -ge "$KUBELET_STARTED_AT" ]
}

# ---------------------------------------------------------------------------------------- coredns
apply_coredns() {
  KUBECTL apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  # No forward plugin: nothing leaves the machine. Names outside the cluster get NXDOMAIN from the
  # catch-all block (with one block for "." and no next plugin they would get SERVFAIL).
  Corefile: |
    $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
        errors
        health {
            lameduck 2s
        }
        ready
        kubernetes $CLUSTER_DOMAIN in-addr.arpa ip6.arpa {
            pods insecure
            ttl 30
        }
        cache 30
        reload
        loadbalance
    }
    . {
        errors
        template ANY ANY {
            rcode NXDOMAIN
        }
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      tolerations: [{key: CriticalAddonsOnly, operator: Exists}]
      containers:
      - name: coredns
        image: $COREDNS_IMAGE
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        resources: {requests: {cpu: 50m, memory: 50Mi}, limits: {memory: 170Mi}}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
        ports:
        - {name: dns, containerPort: 53, protocol: UDP}
        - {name: dns-tcp, containerPort: 53, protocol: TCP}
        - {name: metrics, containerPort: 9153, protocol: TCP}
        securityContext:
          allowPrivilegeEscalation: false
          capabilities: {add: [NET_BIND_SERVICE], drop: [ALL]}
          readOnlyRootFilesystem: true
        livenessProbe:
          httpGet: {path: /health, port: 8080}
          initialDelaySeconds: 10
          periodSeconds: 10
        readinessProbe:
          httpGet: {path: /ready, port: 8181}
          periodSeconds: 1
      volumes:
      - name: config
        configMap: {name: coredns, items: [{key: Corefile, path: Corefile}]}
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  selector: {k8s-app: kube-dns}
  clusterIP: $DNS_IP
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
  - {name: metrics, port: 9153, protocol: TCP}
YAML
}

# ------------------------------------------------------------------------------------------ smoke
smoke() { # the acceptance test: a Deployment reached from another pod as hello.test:8080
  local t=$EPOCHREALTIME t2 out
  KUBECTL apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: test}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello, namespace: test}
spec:
  replicas: 1
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: $BUSYBOX_IMAGE
        imagePullPolicy: Never
        command: [sh, -c, 'mkdir -p /www && echo "hello from realnode pod \$(hostname)" >/www/index.html && exec httpd -f -v -p 8080 -h /www']
        ports: [{containerPort: 8080}]
        readinessProbe:
          tcpSocket: {port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: hello, namespace: test}
spec:
  selector: {app: hello}
  ports: [{port: 8080, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: client
    image: $BUSYBOX_IMAGE
    imagePullPolicy: Never
    command: [sleep, "3600"]
YAML
  KUBECTL -n test rollout status deployment/hello --timeout=180s >/dev/null || die "hello not available"
  timing "smoke: hello Deployment applied -> Available" "$(since "$t")"
  KUBECTL wait --for=condition=Ready pod/client --timeout=180s >/dev/null || die "pod client not Ready"
  t2=$EPOCHREALTIME
  # (not wget -T: Debian 12's busybox-static 1.35 wget segfaults with -T; busybox timeout bounds it)
  out=$(KUBECTL exec client -- timeout 20 wget -qO- http://hello.test:8080/) || die "wget http://hello.test:8080/ failed"
  timing "smoke: exec wget http://hello.test:8080/ from pod default/client" "$(since "$t2")"
  log "smoke: got: $out"
  case $out in "hello from realnode pod hello-"*) log "SMOKE OK" ;; *) die "unexpected answer: $out" ;; esac
}

# ------------------------------------------------------------------------------------------- main
main() {
  [ "$(id -u)" -eq 0 ] || die "run as root"
  local t t_start n
  host_setup
  for n in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl coredns crictl; do
    [ -x "$K8S_BIN/$n" ] || die "$K8S_BIN/$n is missing: run scripts/k8s-binaries.sh --node"
  done
  build_images
  mkdir -p "$DIR"/{pki,etcd,logs,pids,config,cni/net.d,cni/ipam,kubelet,pod-logs,containerd}
  exec 9>"$DIR/.lock"; flock -n 9 || die "another up.sh or down.sh is running on $DIR"
  host_net
  pki
  t_start=$EPOCHREALTIME
  t=$EPOCHREALTIME; start_etcd; timing "etcd healthy" "$(since "$t")"
  t=$EPOCHREALTIME; start_apiserver; timing "kube-apiserver ready" "$(since "$t")"
  start_controllers
  t=$EPOCHREALTIME; start_containerd; timing "containerd up (+ image import)" "$(since "$t")"
  write_cni
  t=$EPOCHREALTIME
  start_kubelet
  start_kube_proxy
  wait_for "node $NODE_NAME Ready" 180 node_ready || { alive kubelet; die "node not Ready"; }
  timing "kubelet start -> node Ready" "$(since "$t")"
  timing "cluster start (etcd) -> node Ready" "$(since "$t_start")"
  t=$EPOCHREALTIME
  apply_coredns
  KUBECTL -n kube-system rollout status deployment/coredns --timeout=180s >/dev/null || die "coredns not available"
  timing "CoreDNS applied -> Available" "$(since "$t")"
  guard_first
  for n in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy; do
    alive "$n" || die "$n is not running"
  done
  [ "$SMOKE" = 1 ] && smoke
  timing "up.sh total" "$(since "$T0")"
  echo "---- timings"; printf '%s\n' "${TIMINGS[@]}"
  echo "---- export KUBECONFIG=$DIR/kubeconfig  (kubectl: $K8S_BIN/kubectl)"
}

if [ "${REALNODE_SOURCE_ONLY:-0}" = 1 ]; then return 0 2>/dev/null || exit 0; fi
main
