# The real node beside the kwok nodes, sourced by scripts/local-cluster.sh (which defines STATE, BIN, PKI, HOST,
# log/die/launch/pid_of/wait_for/sign/write_kubeconfig/kube): containerd (Debian) with runc and the CNI bridge,
# kubelet and kube-proxy (built by scripts/bootstrap-cluster.sh with the control plane). Its pods run for real:
# images pulled from the local registry with the pull Secret, probes, security contexts, Services through
# kube-proxy's iptables rules. It is labelled and tainted as the node pool "real", so only workloads that choose it
# (dockyard:kubernetes.nodePool: real) run there; everything else stays on kwok.
#
# Host state it makes, and that stop_real_node removes again: the bridge, the route that makes kwok's fake pod IPs
# unreachable, the KUBE-* iptables chains (kubelet, kube-proxy; IPv4 and IPv6), mounts under $NODE_DIR and the pods'
# network namespaces (/run/netns/cni-*), the kubepods cgroups. Everything else lives under $NODE_DIR.
# shellcheck shell=bash

readonly NODE_NAME=real-node NODE_POOL=real
readonly NODE_POOL_KEY=dockyard.dev/node-pool
readonly NODE_DIR="$STATE/node"
# Outside kwok's 10.244.0.0/16 (its fake pod IPs must never be routed anywhere) and podman's 10.88.0.0/16.
readonly NODE_POD_CIDR="${DOCKYARD_CLUSTER_NODE_POD_CIDR:-10.245.0.0/24}"
readonly NODE_BRIDGE="${DOCKYARD_CLUSTER_NODE_BRIDGE:-dockyard0}"
readonly KWOK_POD_CIDR=10.244.0.0/16
readonly KUBELET_PORT="${DOCKYARD_CLUSTER_KUBELET_PORT:-10250}"
readonly PROXY_HEALTH_PORT="${DOCKYARD_CLUSTER_PROXY_HEALTH_PORT:-10256}"
readonly PROXY_METRICS_PORT="${DOCKYARD_CLUSTER_PROXY_METRICS_PORT:-10249}"
readonly CONTAINERD_SOCK="$NODE_DIR/run/containerd.sock"
readonly PAUSE_ARCHIVE="$CACHE/cluster/v$DOCKYARD_K8S_VERSION/pause.oci.tar"
# The registry the node pulls from (scripts/local-registry.env) and the CA of scripts/local-services.sh.
readonly REGISTRY_ADDR="$DOCKYARD_LOCAL_REGISTRY_HOST:${DOCKYARD_REGISTRY_PORT:-$DOCKYARD_LOCAL_REGISTRY_PORT}"
readonly REGISTRY_CA="${DOCKYARD_REGISTRY_CA:-${DOCKYARD_STATE:-${HOME:-/root}/.cache/dockyard/local}/tls/ca.crt}"
readonly NODE_COMPONENTS=(containerd kubelet kube-proxy)

# The node's address: the bridge's gateway, so the kubelet listens on the bridge only (never on the host's network).
node_ip() {
    local net=${NODE_POD_CIDR%/*}
    echo "${net%.*}.$((${net##*.} + 1))"
}

real_node_enabled() { [ "${DOCKYARD_CLUSTER_REAL_NODE:-1}" != 0 ]; }

# What the node needs from this machine; one line naming every gap and the two ways out.
real_node_preflight() {
    local missing=() b
    [ "$(id -u)" -eq 0 ] || missing+=("root (bridge, iptables, mounts, cgroups)")
    for b in kubelet kube-proxy; do [ -x "$BIN/$b" ] || missing+=("$BIN/$b"); done
    [ -s "$PAUSE_ARCHIVE" ] || missing+=("$PAUSE_ARCHIVE")
    for b in containerd containerd-shim-runc-v2 ctr runc ip iptables; do
        command -v "$b" >/dev/null 2>&1 || missing+=("$b")
    done
    [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || missing+=("/usr/lib/cni (containernetworking-plugins)")
    [ "${#missing[@]}" -eq 0 ] && return 0
    die "the real node needs: ${missing[*]}; run scripts/bootstrap-cluster.sh (as root), or start without the real node: DOCKYARD_CLUSTER_REAL_NODE=0"
}

# Only one real node per machine: kube-proxy's and the kubelet's iptables chains are global.
foreign_node() {
    local pid cmdline
    for pid in $(pgrep -x kubelet 2>/dev/null) $(pgrep -x kube-proxy 2>/dev/null); do
        cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || continue
        # An empty command line: a process that has exited and is not reaped yet.
        case "$cmdline" in '' | *"$STATE"*) ;; *) echo "$pid: $cmdline" && return 0 ;; esac
    done
    return 1
}

ensure_node_pki() {
    [ -s "$PKI/$NODE_NAME.crt" ] && [ -s "$PKI/kubelet-serving.crt" ] && [ -s "$PKI/kube-proxy.crt" ] && return 0
    log "creating the real node's certificates in $PKI"
    # The Node authorizer knows a kubelet by system:node:<name> in system:nodes.
    client_cert "$NODE_NAME" "system:node:$NODE_NAME" system:nodes
    # kube-proxy: bound to system:node-proxier by the default RBAC policy.
    client_cert kube-proxy system:kube-proxy
    # The kubelet's serving certificate, which the API server checks (logs, exec, port-forward).
    sign kubelet-serving "/CN=$NODE_NAME" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$(node_ip),DNS:$NODE_NAME"
}

ensure_node_kubeconfigs() {
    [ -s "$STATE/kubelet.kubeconfig" ] && [ -s "$STATE/kube-proxy.kubeconfig" ] \
        && grep -q "server: https://$HOST:$API_PORT\$" "$STATE/kubelet.kubeconfig" && return 0
    write_kubeconfig "$STATE/kubelet.kubeconfig" "$NODE_NAME" "$CONTEXT"
    write_kubeconfig "$STATE/kube-proxy.kubeconfig" kube-proxy "$CONTEXT"
}

# The bridge exists before the first pod, with the node's address on it: the kubelet binds there at once, and the
# CNI bridge plugin adopts it (isGateway stays false, so the plugin never turns on the host's ip_forward).
ensure_network() {
    # This state owns the host state from here on (stop_real_node takes it back only then).
    : >"$NODE_DIR/host-state"
    ip link show "$NODE_BRIDGE" >/dev/null 2>&1 || ip link add "$NODE_BRIDGE" type bridge
    ip addr replace "$(node_ip)/${NODE_POD_CIDR#*/}" dev "$NODE_BRIDGE"
    ip link set "$NODE_BRIDGE" up
    # kube-proxy DNATs to every endpoint, kwok's fake pod IPs too: without this they leave by the default route and
    # an outbound proxy answers with empty 404s; unreachable fails them at once.
    ip route replace unreachable "$KWOK_POD_CIDR"
}

write_node_configs() {
    local net
    mkdir -p "$NODE_DIR/cni/net.d" "$NODE_DIR/certs.d/$REGISTRY_ADDR" "$NODE_DIR/run" "$NODE_DIR/kubelet"
    chmod 0700 "$NODE_DIR"
    cat >"$NODE_DIR/containerd.toml" <<EOF
version = 2
root = "$NODE_DIR/containerd"
state = "$NODE_DIR/run"
oom_score = 0

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_DIR/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$DOCKYARD_PAUSE_IMAGE"
  # Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_DIR/cni/net.d"

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$NODE_DIR/certs.d"
EOF
    # The local registry's CA; the pull Secret of each pod carries the credentials.
    cat >"$NODE_DIR/certs.d/$REGISTRY_ADDR/hosts.toml" <<EOF
server = "https://$REGISTRY_ADDR"

[host."https://$REGISTRY_ADDR"]
  capabilities = ["pull", "resolve"]
  ca = "$REGISTRY_CA"
EOF
    net=$(node_ip)
    cat >"$NODE_DIR/cni/net.d/10-dockyard-real.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "dockyard-real",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$NODE_DIR/cni/ipam",
        "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$net"}]],
        "routes": [{"dst": "0.0.0.0/0", "gw": "$net"}]
      }
    }
  ]
}
EOF
    cat >"$NODE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $net
port: $KUBELET_PORT
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
failSwapOn: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
registerWithTaints: [{key: $NODE_POOL_KEY, value: $NODE_POOL, effect: NoSchedule}]
maxPods: 30
podPidsLimit: 1024
serializeImagePulls: false
# The pause image is imported, not pullable: image GC must never remove it. cadvisor cannot map the root device
# here, so disk-based eviction and ephemeral-storage accounting are off; memory eviction stays.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: false
evictionHard: {memory.available: 100Mi}
EOF
    cat >"$NODE_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
bindAddress: $net
mode: iptables
clusterCIDR: $NODE_POD_CIDR
healthzBindAddress: 127.0.0.1:$PROXY_HEALTH_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
# NodePorts on the bridge only: on 127.0.0.1 kube-proxy would set route_localnet host-wide.
nodePortAddresses: ["$net/32"]
# Leave the host's conntrack limits and timeouts as they are.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

ctr_k8s() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# has_pause_image: containerd holds the pause image. The list is read whole before grep looks: `ctr … | grep -q`
# under pipefail fails when grep exits at its match while ctr still writes (SIGPIPE), which the node's growing image
# list (every session's app images) made happen: every cluster start of a CI run died on "holds no pause image".
has_pause_image() {
    local listed
    listed=$(ctr_k8s images ls -q) && grep -qxF "$DOCKYARD_PAUSE_IMAGE" <<<"$listed"
}

# cri_ready: containerd's CRI answers the call the kubelet validates it with (runtime.v1 Version). containerd serves
# `ctr version` while its CRI plugin still loads its state, and a kubelet started then exits with "server is not
# initialized yet". A gRPC call by curl: HTTP/2 over the socket, an empty request frame, the status in the trailers
# (which --dump-header writes after the headers).
cri_ready() {
    printf '\0\0\0\0\0' | curl -sS -D - -o /dev/null --max-time 2 --unix-socket "$CONTAINERD_SOCK" --http2-prior-knowledge \
        -H 'content-type: application/grpc' -H 'te: trailers' --data-binary @- \
        http://localhost/runtime.v1.RuntimeService/Version | tr -d '\r' | grep -qx 'grpc-status: 0'
}

start_containerd() {
    if ! pid_of containerd >/dev/null; then
        log "starting containerd (real node)"
        launch containerd "$(command -v containerd)" --config "$NODE_DIR/containerd.toml"
    fi
    wait_for containerd containerd ctr --address "$CONTAINERD_SOCK" version
    wait_for "containerd's CRI" containerd cri_ready
    if ! has_pause_image 2>/dev/null; then
        ctr_k8s images import "$PAUSE_ARCHIVE" >/dev/null || die "importing $PAUSE_ARCHIVE into containerd failed"
        has_pause_image || die "$PAUSE_ARCHIVE holds no $DOCKYARD_PAUSE_IMAGE"
    fi
}

# node_ready_since TIME: Ready, as posted by a kubelet started at TIME: a Node from an earlier start still says Ready
# until its lease runs out. A kubelet that finds its Node renews the Lease at once; one that registers the Node
# anew posts a fresh heartbeat (its Lease may be the old Node's, which the garbage collector is about to delete).
node_ready_since() {
    local ready renewed
    ready=$(kube get node "$NODE_NAME" \
        -o jsonpath='{range .status.conditions[?(@.type=="Ready")]}{.status} {.lastHeartbeatTime}{end}' 2>/dev/null) || return 1
    case "$ready" in "True "*) ;; *) return 1 ;; esac
    [[ ! "${ready#True }" < "${1%.*}Z" ]] && return 0
    renewed=$(kube -n kube-node-lease get lease "$NODE_NAME" -o jsonpath='{.spec.renewTime}' 2>/dev/null)
    [ -n "$renewed" ] && [[ ! "$renewed" < "$1" ]]
}

# An API server started by a local-cluster.sh from before the real node lacks the Node authorizer and the kubelet
# client certificate: the node would never become Ready. It needs a restart (etcd's data stays).
api_server_knows_nodes() {
    local pid
    pid=$(pid_of kube-apiserver) || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- '--kubelet-client-certificate' && return 0
    die "the running kube-apiserver was started without the real node's flags (Node authorization, kubelet client certificate); restart the cluster: $0 stop && $0 start (its objects and etcd data are kept), or DOCKYARD_CLUSTER_REAL_NODE=0"
}

start_real_node() {
    local other started=$EPOCHREALTIME since=""
    real_node_preflight
    api_server_knows_nodes
    if other=$(foreign_node); then
        die "another real node runs on this machine (its iptables chains are global): $other; stop it, or DOCKYARD_CLUSTER_REAL_NODE=0"
    fi
    ensure_node_pki
    ensure_node_kubeconfigs
    write_node_configs
    # Before the port checks: the kubelet's address is the bridge's, which is not local until then (and a probe of
    # a non-local address may be answered by an outbound proxy).
    ensure_network
    port_in_use_unless kubelet "$KUBELET_PORT" "$(node_ip)" DOCKYARD_CLUSTER_KUBELET_PORT
    port_in_use_unless kube-proxy "$PROXY_HEALTH_PORT" "$HOST" DOCKYARD_CLUSTER_PROXY_HEALTH_PORT
    port_in_use_unless kube-proxy "$PROXY_METRICS_PORT" "$HOST" DOCKYARD_CLUSTER_PROXY_METRICS_PORT
    start_containerd
    if ! pid_of kubelet >/dev/null; then
        since=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ) # the Lease's MicroTime format, so the strings compare
        log "starting kubelet ($NODE_NAME, pods in $NODE_POD_CIDR)"
        launch kubelet "$BIN/kubelet" --config "$NODE_DIR/kubelet.yaml" --kubeconfig "$STATE/kubelet.kubeconfig" \
            --root-dir "$NODE_DIR/kubelet" --hostname-override "$NODE_NAME" --node-ip "$(node_ip)" \
            --node-labels "$NODE_POOL_KEY=$NODE_POOL,type=real"
    fi
    if ! pid_of kube-proxy >/dev/null; then
        log "starting kube-proxy"
        launch kube-proxy "$BIN/kube-proxy" --config "$NODE_DIR/kube-proxy.yaml"
    fi
    wait_for "the real node" kubelet node_ready_since "$since"
    wait_for kube-proxy kube-proxy curl -fsS --max-time 2 "http://$HOST:$PROXY_HEALTH_PORT/healthz"
    log "real node $NODE_NAME ready in $(took "$started")s (taint $NODE_POOL_KEY=$NODE_POOL:NoSchedule)"
}

# port_in_use_unless COMPONENT PORT ADDRESS VARIABLE: a port taken by anything but our running COMPONENT is an error.
port_in_use_unless() {
    pid_of "$1" >/dev/null && return 0
    (exec 3<>"/dev/tcp/$3/$2") 2>/dev/null || return 0
    die "port $2 on $3 is taken by another process ($1; set $4)"
}

# stop_component NAME: TERM, then KILL after 5 s.
stop_component() {
    local pid
    pid=$(pid_of "$1") || { rm -f "$STATE/$1.pid"; return 1; }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do pid_of "$1" >/dev/null || break; sleep 0.1; done
    pid_of "$1" >/dev/null && kill -KILL "$pid" 2>/dev/null || true
    rm -f "$STATE/$1.pid"
}

# The kubepods cgroup trees, in every hierarchy (cgroup v1 here; v2 has one).
kubepods_cgroups() {
    local d
    for d in /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods; do
        [ -d "$d" ] && echo "$d"
    done
    return 0
}

# Stop the node and take back everything it made on the host (the pods' containers too: a kubelet that starts again
# recreates them from the API). Safe to run when nothing of the node is there; the host-wide parts (cgroups, bridge,
# iptables) only when this state's node made them and no other node runs.
stop_real_node() {
    local stopped=0 c tree pid other
    for c in kubelet kube-proxy; do stop_component "$c" && stopped=$((stopped + 1)); done
    if [ ! -e "$NODE_DIR/host-state" ] || other=$(foreign_node); then
        [ -z "${other:-}" ] || log "another real node runs ($other): its host state is left alone"
        stop_component containerd && stopped=$((stopped + 1))
        [ "$stopped" -eq 0 ] || log "stopped the real node ($stopped process(es))"
        return 0
    fi
    # The pods' processes: every one is in a kubepods cgroup.
    for tree in $(kubepods_cgroups); do
        find "$tree" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    done
    if pid_of containerd >/dev/null; then
        # Tasks and containers go while containerd runs, so each shim exits with its task.
        for c in $(ctr_k8s tasks ls -q 2>/dev/null); do ctr_k8s tasks delete --force "$c" >/dev/null 2>&1 || true; done
        for c in $(ctr_k8s containers ls -q 2>/dev/null); do ctr_k8s containers delete "$c" >/dev/null 2>&1 || true; done
        stop_component containerd && stopped=$((stopped + 1))
    fi
    # Shims that outlived containerd name its socket on their command line.
    for pid in $(pgrep -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    teardown_host_state
    local left
    left=$(real_node_leftovers)
    [ -z "$left" ] || die "the real node left on the host: $(printf '%s' "$left" | tr '\n' ';')"
    [ "$stopped" -eq 0 ] || log "stopped the real node ($stopped process(es)); its host state is removed"
}

teardown_host_state() {
    local m tree
    # Mounts: the containers' root filesystems, /dev/shm of sandboxes, volumes, and the pods' network namespaces
    # (containerd 1.6 pins them at /run/netns/cni-*; podman names its own netns-*). Deepest first.
    for m in $(node_mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    rm -f /run/netns/cni-* 2>/dev/null || true
    # host-local's leases belong to pods that are gone.
    rm -rf "$NODE_DIR/cni/ipam"
    for tree in $(kubepods_cgroups); do
        find "$tree" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then ip link delete "$NODE_BRIDGE" || true; fi
    ip route del unreachable "$KWOK_POD_CIDR" 2>/dev/null || true
    remove_kube_chains iptables
    remove_kube_chains ip6tables
    rm -f "$NODE_DIR/host-state"
}

node_mounts() {
    awk -v dir="$NODE_DIR/" 'index($5, dir) == 1 || index($5, "/run/netns/cni-") == 1 {print $5}' /proc/self/mountinfo
}

# remove_kube_chains iptables|ip6tables: the rules that jump to KUBE-* chains, then the chains themselves (kubelet's
# and kube-proxy's; no other program on this machine names a chain KUBE-*).
remove_kube_chains() {
    local tool=$1 table rule chain
    command -v "$tool" >/dev/null 2>&1 || return 0
    for table in filter nat mangle raw; do
        "$tool" -w 5 -t "$table" -S >/dev/null 2>&1 || continue
        while read -r rule; do
            # shellcheck disable=SC2086 # a rule printed by -S is re-read as words
            eval "\"$tool\" -w 5 -t $table -D ${rule#-A }" 2>/dev/null || true
        done < <("$tool" -w 5 -t "$table" -S | grep -E '^-A [A-Z]+ .*-j KUBE-' | grep -vE '^-A KUBE-')
        for chain in $("$tool" -w 5 -t "$table" -S | sed -n 's/^-N \(KUBE-[^ ]*\)$/\1/p'); do
            "$tool" -w 5 -t "$table" -F "$chain" 2>/dev/null || true
        done
        for chain in $("$tool" -w 5 -t "$table" -S | sed -n 's/^-N \(KUBE-[^ ]*\)$/\1/p'); do
            "$tool" -w 5 -t "$table" -X "$chain" 2>/dev/null || true
        done
    done
}

# What of the node is left on the host, one line each (empty: nothing): for `status` and the teardown test.
real_node_leftovers() {
    local c pid tool
    for c in "${NODE_COMPONENTS[@]}"; do pid=$(pid_of "$c") && echo "process $c $pid"; done
    pgrep -af "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null | sed 's/^/process /'
    ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && echo "bridge $NODE_BRIDGE"
    ip route show type unreachable 2>/dev/null | grep -q "^unreachable $KWOK_POD_CIDR" && echo "route unreachable $KWOK_POD_CIDR"
    for tool in iptables ip6tables; do
        command -v "$tool" >/dev/null 2>&1 || continue
        for c in filter nat mangle raw; do
            "$tool" -w 5 -t "$c" -S 2>/dev/null | sed -n "s/^-N \(KUBE-[^ ]*\)\$/$tool $c chain \1/p"
        done
    done
    node_mounts | sed 's/^/mount /'
    kubepods_cgroups | sed 's/^/cgroup /'
}
