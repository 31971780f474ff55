#!/usr/bin/env bash
# The local Kubernetes control plane the local stacks deploy to: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and kwok (fake nodes: scheduled Pods become Running/Ready without containers), all on 127.0.0.1,
# built by scripts/bootstrap-cluster.sh. Admission (Pod Security, and each stack's trust policy through the
# webhook dockyard/admission, run from the project's virtualenv), controllers (Deployments, ReplicaSets, HPA,
# EndpointSlices), the scheduler and Pulumi's await logic all run for real on the kwok nodes. Beside them one real
# node (containerd, kubelet, kube-proxy: scripts/cluster/real-node.sh), tainted dockyard.dev/node-pool=real, runs
# the pods of workloads that choose that pool: real pulls, probes, security contexts and Service traffic.
#
#   scripts/local-cluster.sh start    idempotent: certificates and kubeconfigs at first start, start what is not
#                                     running, wait for /readyz and Ready nodes
#   scripts/local-cluster.sh stop     stop every process (etcd data, certificates and kubeconfigs stay) and take
#                                     back the real node's host state (bridge, iptables chains, mounts, cgroups)
#   scripts/local-cluster.sh status   exit 0 running+ready, 1 partly running or not ready, 3 stopped
#   scripts/local-cluster.sh env      print shell exports (KUBECONFIG):  eval "$(scripts/local-cluster.sh env)"
#   scripts/local-cluster.sh reset    stop and delete the cluster's state (every object in it)
#
# Settings (environment):
#   DOCKYARD_CACHE               cache root (default ~/.cache/dockyard); binaries from scripts/bootstrap-cluster.sh
#   DOCKYARD_CLUSTER_STATE       state: $DOCKYARD_CACHE/cluster/state
#   DOCKYARD_CLUSTER_API_PORT    kube-apiserver port (6443); etcd uses DOCKYARD_CLUSTER_ETCD_PORT (23790) and +10
#   DOCKYARD_CLUSTER_KCM_PORT, DOCKYARD_CLUSTER_SCHEDULER_PORT   health ports (10257, 10259)
#   DOCKYARD_CLUSTER_NODES       fake nodes (2)
#   DOCKYARD_CLUSTER_REAL_NODE   1 (default): the real node too; 0: kwok only (a machine without root or containerd)
#   DOCKYARD_CLUSTER_KUBELET_PORT (10250, on the node's bridge address), DOCKYARD_CLUSTER_PROXY_HEALTH_PORT (10256)
#   and DOCKYARD_CLUSTER_PROXY_METRICS_PORT (10249): the real node's ports. Only one real node per machine.
#   DOCKYARD_CLUSTER_NODE_POD_CIDR (10.245.0.0/24, outside kwok's) and DOCKYARD_CLUSTER_NODE_BRIDGE (dockyard0)
#   DOCKYARD_CLUSTER_ADMISSION_PORT  the admission webhook's HTTPS port on 127.0.0.1 (10443)
#   DOCKYARD_CLUSTER_START_TIMEOUT  seconds to wait for a ready cluster (60)
#
# State layout (0700; keys 0600; nothing is committed): pki/ (CA, serving and client certificates, service-account
# key pair), kubeconfig (admin, context "dockyard-local"), <component>.kubeconfig, etcd/, <component>.pid/.log,
# node/ (the real node's configs, containerd's images, the kubelet's root).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=cluster/versions.env
. "$SCRIPT_DIR/cluster/versions.env"
# shellcheck source=local-registry.env
. "$SCRIPT_DIR/local-registry.env"
# ip, iptables and runc live in sbin.
PATH="$PATH:/usr/sbin:/sbin"
readonly CACHE="${DOCKYARD_CACHE:-${HOME:-/root}/.cache/dockyard}"
readonly BIN="$CACHE/cluster/v$DOCKYARD_K8S_VERSION/bin"
readonly STAGES="$CACHE/cluster/v$DOCKYARD_K8S_VERSION/kwok-stages.yaml"
readonly STATE="${DOCKYARD_CLUSTER_STATE:-$CACHE/cluster/state}"
readonly HOST=127.0.0.1
readonly API_PORT="${DOCKYARD_CLUSTER_API_PORT:-6443}"
readonly ETCD_PORT="${DOCKYARD_CLUSTER_ETCD_PORT:-23790}"
readonly ETCD_PEER_PORT=$((ETCD_PORT + 10))
readonly KCM_PORT="${DOCKYARD_CLUSTER_KCM_PORT:-10257}" SCHEDULER_PORT="${DOCKYARD_CLUSTER_SCHEDULER_PORT:-10259}"
readonly NODES="${DOCKYARD_CLUSTER_NODES:-2}"
readonly START_TIMEOUT="${DOCKYARD_CLUSTER_START_TIMEOUT:-60}"
readonly PKI="$STATE/pki"
readonly KUBECONFIG_FILE="$STATE/kubeconfig"
#: The context the local stacks name in Pulumi.local*.yaml (kubernetes.context); dockyard/program/kubernetes.py knows it too.
readonly CONTEXT=dockyard-local
readonly SERVICE_CIDR=10.96.0.0/24 POD_CIDR=10.244.0.0/16
readonly ADMISSION_PORT="${DOCKYARD_CLUSTER_ADMISSION_PORT:-10443}"
PROJECT_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
readonly PROJECT_DIR
readonly COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok admission)

log() { printf '[local-cluster] %s\n' "$*" >&2; }
# took START: seconds since START (an $EPOCHREALTIME), to a tenth: what bench/real_node.py reads.
took() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}'; }
die() { printf '[local-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

for p in "$API_PORT" "$ETCD_PORT" "$KCM_PORT" "$SCHEDULER_PORT" "${DOCKYARD_CLUSTER_KUBELET_PORT:-10250}" \
    "${DOCKYARD_CLUSTER_PROXY_HEALTH_PORT:-10256}" "${DOCKYARD_CLUSTER_PROXY_METRICS_PORT:-10249}"; do
    case "$p" in '' | *[!0-9]*) die "ports must be numbers, got '$p'" ;; esac
done

# ------------------------------------------------------------------------------ processes

pid_of() { # prints the pid when COMPONENT runs from our state, else fails
    local file="$STATE/$1.pid" pid cmdline
    [ -s "$file" ] || return 1
    pid=$(cat "$file")
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    # A PID file from an earlier boot names a pid that is gone (or recycled): quietly not ours. The redirection
    # comes after 2>/dev/null, so a process that vanishes between the test and the read stays quiet too.
    [ -r "/proc/$pid/cmdline" ] || return 1
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    case "$cmdline" in
        *"$1"*"$STATE"*) echo "$pid" ;;
        *) return 1 ;; # a recycled pid
    esac
}

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# launch COMPONENT ARGS...: start in its own session (survives this shell), pid file, bounded log.
launch() {
    local name=$1 log_file="$STATE/$1.log"
    shift
    : >>"$log_file"
    chmod 0600 "$log_file"
    if [ "$(stat -c %s "$log_file")" -gt 10485760 ]; then mv -f "$log_file" "$log_file.1"; : >"$log_file"; fi
    rm -f "$STATE/$name.pid"
    # A clean environment: no caller variable (KUBECONFIG, ETCD_*, proxies) changes what the component does.
    # shellcheck disable=SC2016
    setsid nohup env -i PATH="$BIN:/usr/bin:/bin:/usr/sbin:/sbin" HOME="$STATE" \
        sh -c 'echo $$ >"$1"; shift; exec "$@"' sh "$STATE/$name.pid" "$@" >>"$log_file" 2>&1 </dev/null &
    disown 2>/dev/null || true
    # On busy cores the pid file can come after the first health check, which would read a missing pid as a crash.
    for _ in $(seq 1 50); do [ -s "$STATE/$name.pid" ] && break; sleep 0.1; done
}

# wait_for WHAT COMPONENT CHECK...: poll CHECK until it succeeds; fail with the component's log if it dies.
wait_for() {
    local what=$1 component=$2 deadline=$((SECONDS + START_TIMEOUT))
    shift 2
    until "$@" >/dev/null 2>&1; do
        if ! pid_of "$component" >/dev/null; then
            tail -n 15 "$STATE/$component.log" >&2 || true
            die "$component exited during start-up (log: $STATE/$component.log)"
        fi
        [ "$SECONDS" -lt "$deadline" ] || die "$what not ready after ${START_TIMEOUT}s (log: $STATE/$component.log)"
        sleep 0.2
    done
}

# ------------------------------------------------------------------------------ certificates

# sign NAME SUBJECT EXTENSIONS: a key and a certificate signed by the cluster CA.
sign() {
    local name=$1 subject=$2 ext csr
    ext=$(mktemp "$PKI/$name.ext.XXXXXX")
    csr=$(mktemp "$PKI/$name.csr.XXXXXX")
    printf '%s\n' "$3" >"$ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$PKI/$name.key" \
        -out "$csr" -subj "$subject" 2>/dev/null
    openssl x509 -req -in "$csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
        -days 365 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
    rm -f "$ext" "$csr"
    chmod 0600 "$PKI/$name.key"
}

client_cert() { # client_cert NAME CN [ORG]
    local subject="/CN=$2"
    [ -z "${3:-}" ] || subject="/O=$3$subject"
    sign "$1" "$subject" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
}

ensure_pki() {
    mkdir -p "$PKI" && chmod 0700 "$PKI"
    [ -s "$PKI/ca.key" ] && [ -s "$PKI/ca.crt" ] && { ensure_kubelet_client_cert; return 0; }
    log "creating the cluster CA, certificates and service-account keys in $PKI"
    rm -f "$PKI"/*
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$PKI/ca.key" \
        -out "$PKI/ca.crt" -days 3650 -sha256 -subj "/O=Dockyard local/CN=dockyard-local-cluster-ca" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    chmod 0600 "$PKI/ca.key"
    sign apiserver "/CN=kube-apiserver" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$HOST,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    client_cert admin dockyard-admin system:masters
    client_cert kube-controller-manager system:kube-controller-manager
    client_cert kube-scheduler system:kube-scheduler
    # kwok updates Node and Pod status like a kubelet of every fake node.
    client_cert kwok kwok-controller system:masters
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    chmod 0600 "$PKI/sa.key"
    ensure_kubelet_client_cert
}

# The API server's client certificate towards kubelets (logs, exec, port-forward). Made when missing, so a state
# from before the real node keeps its CA, its other certificates and its etcd data.
ensure_kubelet_client_cert() {
    [ -s "$PKI/apiserver-kubelet-client.crt" ] || client_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
}

# write_kubeconfig FILE CERT CONTEXT: a kubeconfig with embedded credentials.
write_kubeconfig() {
    local file=$1 cert=$2 context=$3
    rm -f "$file"
    (
        umask 077
        kubectl config --kubeconfig "$file" set-cluster "$context" --server "https://$HOST:$API_PORT" \
            --certificate-authority "$PKI/ca.crt" --embed-certs >/dev/null
        kubectl config --kubeconfig "$file" set-credentials "$context" --client-certificate "$PKI/$cert.crt" \
            --client-key "$PKI/$cert.key" --embed-certs >/dev/null
        kubectl config --kubeconfig "$file" set-context "$context" --cluster "$context" --user "$context" >/dev/null
        kubectl config --kubeconfig "$file" use-context "$context" >/dev/null
    )
}

ensure_kubeconfigs() {
    local server
    server=$(kubectl config --kubeconfig "$KUBECONFIG_FILE" view -o jsonpath='{.clusters[0].cluster.server}' 2>/dev/null || true)
    [ "$server" = "https://$HOST:$API_PORT" ] && [ -s "$STATE/kwok.kubeconfig" ] && return 0
    write_kubeconfig "$KUBECONFIG_FILE" admin "$CONTEXT"
    local c
    for c in kube-controller-manager kube-scheduler kwok; do
        write_kubeconfig "$STATE/$c.kubeconfig" "$c" "$CONTEXT"
    done
}

# ------------------------------------------------------------------------------ components

start_etcd() {
    pid_of etcd >/dev/null && return 0
    port_in_use "$ETCD_PORT" && die "port $ETCD_PORT on $HOST is taken by another process (set DOCKYARD_CLUSTER_ETCD_PORT)"
    log "starting etcd on $HOST:$ETCD_PORT"
    mkdir -p "$STATE/etcd" && chmod 0700 "$STATE/etcd"
    launch etcd "$(command -v etcd)" --name dockyard-local --data-dir "$STATE/etcd" \
        --listen-client-urls "http://$HOST:$ETCD_PORT" --advertise-client-urls "http://$HOST:$ETCD_PORT" \
        --listen-peer-urls "http://$HOST:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://$HOST:$ETCD_PEER_PORT" \
        --initial-cluster "dockyard-local=http://$HOST:$ETCD_PEER_PORT" --listen-metrics-urls "" \
        --quota-backend-bytes 1073741824 --auto-compaction-retention 1
    wait_for etcd etcd curl -fsS --max-time 2 "http://$HOST:$ETCD_PORT/health"
}

api_ready() { curl -fsS --max-time 2 --cacert "$PKI/ca.crt" "https://$HOST:$API_PORT/readyz"; }

start_apiserver() {
    pid_of kube-apiserver >/dev/null && return 0
    port_in_use "$API_PORT" && die "port $API_PORT on $HOST is taken by another process (set DOCKYARD_CLUSTER_API_PORT)"
    log "starting kube-apiserver on https://$HOST:$API_PORT"
    # WatchList=false: Debian's etcd 3.4 cannot serve watch-list streams (rollouts would wait for re-lists).
    # endpoint-reconciler none: on loopback the reconciler would publish 127.0.0.1 as the kubernetes Service.
    # The real node: the Node authorizer (else it goes NotReady), a client certificate towards its kubelet (logs,
    # exec) and its InternalIP, the bridge address its kubelet listens on.
    launch kube-apiserver "$BIN/kube-apiserver" --bind-address "$HOST" --advertise-address "$HOST" \
        --secure-port "$API_PORT" --etcd-servers "http://$HOST:$ETCD_PORT" --endpoint-reconciler-type none \
        --client-ca-file "$PKI/ca.crt" --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
        --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --authorization-mode Node,RBAC --service-cluster-ip-range "$SERVICE_CIDR" --allow-privileged=false \
        --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$PKI/apiserver-kubelet-client.key" --kubelet-certificate-authority "$PKI/ca.crt" \
        --kubelet-preferred-address-types InternalIP \
        --feature-gates WatchList=false --enable-priority-and-fairness=false --profiling=false \
        --cert-dir "$STATE/apiserver-certs"
    wait_for kube-apiserver kube-apiserver api_ready
}

start_controllers() {
    if ! pid_of kube-controller-manager >/dev/null; then
        port_in_use "$KCM_PORT" && die "port $KCM_PORT on $HOST is taken (kube-controller-manager's health port)"
        log "starting kube-controller-manager"
        launch kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$STATE/kube-controller-manager.kubeconfig" \
            --authentication-kubeconfig "$STATE/kube-controller-manager.kubeconfig" \
            --authorization-kubeconfig "$STATE/kube-controller-manager.kubeconfig" \
            --bind-address "$HOST" --secure-port "$KCM_PORT" --leader-elect=false --use-service-account-credentials \
            --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
            --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
            --service-cluster-ip-range "$SERVICE_CIDR" --cluster-cidr "$POD_CIDR" --profiling=false \
            --horizontal-pod-autoscaler-sync-period 5s
    fi
    if ! pid_of kube-scheduler >/dev/null; then
        port_in_use "$SCHEDULER_PORT" && die "port $SCHEDULER_PORT on $HOST is taken (kube-scheduler's health port)"
        log "starting kube-scheduler"
        launch kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$STATE/kube-scheduler.kubeconfig" \
            --authentication-kubeconfig "$STATE/kube-scheduler.kubeconfig" \
            --authorization-kubeconfig "$STATE/kube-scheduler.kubeconfig" \
            --bind-address "$HOST" --secure-port "$SCHEDULER_PORT" --leader-elect=false --profiling=false
    fi
    if ! pid_of kwok >/dev/null; then
        log "starting kwok (fake nodes)"
        launch kwok "$BIN/kwok" --kubeconfig "$STATE/kwok.kubeconfig" --config "$STAGES" \
            --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
            --cidr 10.244.0.0/16 --node-lease-duration-seconds 40
    fi
    wait_for kube-controller-manager kube-controller-manager \
        curl -fsS --max-time 2 -k "https://$HOST:$KCM_PORT/healthz"
    wait_for kube-scheduler kube-scheduler curl -fsS --max-time 2 -k "https://$HOST:$SCHEDULER_PORT/healthz"
}

kube() { kubectl --kubeconfig "$KUBECONFIG_FILE" --context "$CONTEXT" "$@"; }

# The admission webhook (dockyard/admission): Pods in namespaces whose stack has a trust policy run only images that
# policy trusts. It runs from the project's virtualenv, reached by the API server by URL (no in-cluster Service:
# kwok nodes run no Pods), with a serving certificate from the cluster CA.
start_admission() {
    local python="$PROJECT_DIR/.venv/bin/python"
    [ -x "$python" ] || die "the admission webhook runs from the project's virtualenv: run scripts/setup-venv.sh first"
    if ! openssl verify -CAfile "$PKI/ca.crt" "$PKI/admission.crt" >/dev/null 2>&1; then
        sign admission "/CN=dockyard-admission" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:$HOST"
    fi
    if ! pid_of admission >/dev/null; then
        port_in_use "$ADMISSION_PORT" && die "port $ADMISSION_PORT on $HOST is taken (the admission webhook's port)"
        log "starting the admission webhook (trust policies)"
        launch admission env DOCKYARD_CACHE="$CACHE" "$python" -m dockyard.admission serve --port "$ADMISSION_PORT" \
            --cert "$PKI/admission.crt" --key "$PKI/admission.key" --kubeconfig "$KUBECONFIG_FILE" \
            --work-dir "$STATE/admission"
    fi
    wait_for "admission webhook" admission curl -fsS --max-time 2 --cacert "$PKI/ca.crt" \
        "https://$HOST:$ADMISSION_PORT/healthz"
    "$python" -m dockyard.admission registration --url "https://$HOST:$ADMISSION_PORT/validate" \
        --ca-file "$PKI/ca.crt" | kube apply -f - >/dev/null
}

# shellcheck source=cluster/real-node.sh
. "$SCRIPT_DIR/cluster/real-node.sh"

ensure_nodes() {
    local i manifest=""
    for ((i = 0; i < NODES; i++)); do
        manifest+="---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: \"0\"}
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: kwok-node-$i
    topology.kubernetes.io/zone: local-$i
    type: kwok
spec:
  podCIDR: 10.244.$i.0/24
  podCIDRs: [10.244.$i.0/24]
status:
  allocatable: {cpu: \"8\", memory: 32Gi, pods: \"110\"}
  capacity: {cpu: \"8\", memory: 32Gi, pods: \"110\"}
  nodeInfo: {architecture: amd64, operatingSystem: linux, kubeletVersion: fake}
"
    done
    printf '%s' "$manifest" | kube apply -f - >/dev/null
    wait_for "fake nodes" kwok kube wait --for condition=Ready node --all --timeout 2s
}

# ------------------------------------------------------------------------------ commands

cmd_start() {
    local missing=() b
    for b in kube-apiserver kube-controller-manager kube-scheduler kwok; do
        [ -x "$BIN/$b" ] || missing+=("$b")
    done
    [ -s "$STAGES" ] || missing+=("kwok stages")
    command -v etcd >/dev/null 2>&1 || missing+=(etcd)
    command -v kubectl >/dev/null 2>&1 || missing+=(kubectl)
    [ "${#missing[@]}" -eq 0 ] || die "missing: ${missing[*]} in $BIN; run scripts/bootstrap-cluster.sh first"
    mkdir -p "$STATE" && chmod 0700 "$STATE"
    local started=$EPOCHREALTIME
    ensure_pki
    ensure_kubeconfigs
    start_etcd
    start_apiserver
    start_controllers
    ensure_nodes
    log "control plane ready in $(took "$started")s"
    if real_node_enabled; then
        start_real_node
    else
        # A node left from an earlier start would stay NotReady with its pods: without it they are Pending.
        stop_real_node
        kube delete node "$NODE_NAME" --ignore-not-found >/dev/null
    fi
    start_admission
    log "cluster ready in $(took "$started")s: https://$HOST:$API_PORT, context $CONTEXT, KUBECONFIG=$KUBECONFIG_FILE"
}

cmd_stop() {
    local c pid stopped=0
    # The node first, while its containerd can still remove the pods' containers.
    stop_real_node
    # Reverse order: the API server outlives its clients, etcd outlives the API server.
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
        c=${COMPONENTS[$i]}
        pid=$(pid_of "$c") || { rm -f "$STATE/$c.pid"; continue; }
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do pid_of "$c" >/dev/null || break; sleep 0.1; done
        pid_of "$c" >/dev/null && kill -KILL "$pid" 2>/dev/null || true
        rm -f "$STATE/$c.pid"
        stopped=$((stopped + 1))
    done
    log "stopped $stopped process(es); state kept in $STATE"
}

cmd_status() {
    local c pid running=0 line="" components=("${COMPONENTS[@]}")
    real_node_enabled && components+=("${NODE_COMPONENTS[@]}")
    for c in "${components[@]}"; do
        if pid=$(pid_of "$c"); then
            running=$((running + 1))
            line+=" $c=$pid"
        else
            line+=" $c=stopped"
        fi
    done
    if [ "$running" -eq 0 ]; then
        echo "cluster: stopped (state $STATE)"
        return 3
    fi
    if [ "$running" -eq "${#components[@]}" ] && api_ready >/dev/null 2>&1; then
        local rss
        rss=$(for c in "${components[@]}"; do ps -o rss= -p "$(pid_of "$c")"; done | awk '{s += $1} END {printf "%d", s / 1024}')
        echo "cluster: running, ready, https://$HOST:$API_PORT context $CONTEXT, ${rss} MiB RSS ($line )"
        return 0
    fi
    echo "cluster: NOT READY ($line ); logs in $STATE; try: $0 stop && $0 start"
    return 1
}

cmd_env() {
    printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_FILE"
    printf 'export DOCKYARD_CLUSTER_CONTEXT=%q\n' "$CONTEXT"
    # The admission webhook's own trust cache (tests remember stand-in releases there, as for the program's).
    printf 'export DOCKYARD_ADMISSION_CACHE=%q\n' "$STATE/admission/trust"
    pid_of kube-apiserver >/dev/null || log "note: the cluster is not running (scripts/local-cluster.sh start)"
}

cmd_reset() {
    cmd_stop
    rm -rf "$STATE"
    # kubectl's discovery cache of this address (six hours) would still list the deleted cluster's custom resources:
    # `kubectl get all` then fails on one the new cluster lacks.
    rm -rf "${KUBECACHEDIR:-$HOME/.kube/cache}/discovery/${HOST}_$API_PORT"
    log "deleted $STATE and kubectl's discovery cache of https://$HOST:$API_PORT"
}

# One start, stop or reset at a time (two terminals, or test workers starting the cluster side by side): a stop
# between another start's containerd and its kubelet left that kubelet without a runtime. flock -o: the daemons a
# start launches do not inherit the lock.
readonly LIFECYCLE_LOCK="$CACHE/cluster/lifecycle.lock" LIFECYCLE_WAIT=900
case "${1:-}" in
    start | stop | reset)
        if [ -z "${DOCKYARD_CLUSTER_LIFECYCLE_LOCKED:-}" ]; then
            mkdir -p "$(dirname "$LIFECYCLE_LOCK")"
            rc=0
            DOCKYARD_CLUSTER_LIFECYCLE_LOCKED=1 flock -o -E 75 -w "$LIFECYCLE_WAIT" "$LIFECYCLE_LOCK" "$0" "$@" || rc=$?
            [ "$rc" != 75 ] || die "another $0 start, stop or reset held $LIFECYCLE_LOCK for ${LIFECYCLE_WAIT}s; see: pgrep -af local-cluster.sh"
            exit "$rc"
        fi
        ;;
esac

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    reset) cmd_reset ;;
    -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
    *) echo "usage: $0 start|stop|status|env|reset" >&2; exit 2 ;;
esac
