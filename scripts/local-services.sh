#!/usr/bin/env bash
# Local services for the "local" Dockyard stacks: a private container registry (the CNCF
# distribution registry from Debian's docker-registry package) on 127.0.0.1, with TLS from a
# throwaway CA and htpasswd (bcrypt) auth, plus the offline base images (local-base-images.sh) and
# the offline vulnerability DB (local-vuln-db.sh);
# and PostgreSQL (Debian's postgresql-15) for the team state backend (DOCKYARD_BACKEND=postgres in
# scripts/local-env.sh), on 127.0.0.1 only, TLS with the same CA, scram-sha-256 password auth.
#
#   scripts/local-services.sh start [registry|postgres]
#                                      idempotent: set up state, start the registry if it is not
#                                      running, wait until healthy, log podman in (auth file in the
#                                      state dir), build missing base images, publish the vulnerability
#                                      DB when its records changed; PostgreSQL too when
#                                      DOCKYARD_BACKEND=postgres. With an argument: that service only.
#   scripts/local-services.sh stop [registry|postgres]
#                                      stop them (both without an argument; data and credentials stay)
#   scripts/local-services.sh status [registry|postgres]
#                                      exit 0 running+healthy, 1 running but unhealthy, 3 stopped; without
#                                      an argument the registry's (and with DOCKYARD_BACKEND=postgres the
#                                      worse of the two), PostgreSQL's line printed either way; also
#                                      podman's storage use (each build removes what it leaves behind;
#                                      `prune` frees the rest)
#   scripts/local-services.sh env      print shell exports:  eval "$(scripts/local-services.sh env)"
#   scripts/local-services.sh prune    shrink podman's storage to what a build needs: build containers that
#                                      killed builds left, every image named for a registry on this machine
#                                      (127.0.0.1:PORT/…, localhost:PORT/…: copies of pushes, which the
#                                      registry keeps), then dangling images and earlier builds' step images.
#                                      The base images (localhost/dockyard/…), the Go build cache (a cache
#                                      mount) and the registry's data stay. Waits for running builds (their
#                                      lock, exclusively). scripts/test.sh runs it first: every podman call
#                                      reads the whole image list, which each test run grows by ~500 images.
#
# Settings (environment):
#   DOCKYARD_STATE                 all state: ${HOME}/.cache/dockyard/local by default
#   DOCKYARD_REGISTRY_PORT         overrides the port of scripts/local-registry.env (the one place the local
#                                  registry's address is set; it listens on 127.0.0.1 only). The stack files
#                                  name the registry too (dockyard:registry.server, image references): a lasting
#                                  move changes local-registry.env and those files together.
#   DOCKYARD_REGISTRY_START_TIMEOUT  seconds to wait for a healthy registry (30)
#   DOCKYARD_SKIP_BASE_IMAGES=1    start without building the base images
#   DOCKYARD_POSTGRES_PORT         PostgreSQL's port on 127.0.0.1 (5433: Debian's own cluster keeps 5432)
#   DOCKYARD_BACKEND=postgres      `start` and `status` include PostgreSQL (scripts/local-env.sh reads it too)
#
# State layout (directory 0700; keys, password, config and auth file 0600; nothing is committed):
#   tls/ca.key ca.crt              throwaway CA made at first start (kept to reissue server.crt)
#   tls/server.key server.crt      certificate for IP 127.0.0.1 (and DNS localhost)
#   registry/password htpasswd     user "dockyard", random password, bcrypt hash
#   registry/config.yml http-secret data/ registry.pid registry.log
#   auth.json                      podman/buildah/skopeo auth file (--authfile / REGISTRY_AUTH_FILE)
#   postgres/password pgpass       user "dockyard", random password; the pgpass file (PGPASSFILE) is how
#                                  every client (pulumi's lib/pq, psql, dockyard) gets it: no URL carries it
#   postgres/postgres.log          the server's log
#   PostgreSQL's data directory: $STATE/postgres/data; as root (PostgreSQL refuses to run as root, and
#   its user cannot enter /root) /var/lib/postgresql/dockyard/<hash of STATE and port>, owned by postgres.
# podman, buildah and skopeo trust the CA through /etc/containers/certs.d/127.0.0.1:<port>/ca.crt.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
readonly PROJECT_DIR="${SCRIPT_DIR%/scripts}"
# shellcheck source=scripts/local-registry.env
. "$SCRIPT_DIR/local-registry.env"
readonly STATE="${DOCKYARD_STATE:-${HOME:-/root}/.cache/dockyard/local}"
readonly PORT="${DOCKYARD_REGISTRY_PORT:-$DOCKYARD_LOCAL_REGISTRY_PORT}"
readonly HOST="$DOCKYARD_LOCAL_REGISTRY_HOST"
readonly ADDR="$HOST:$PORT"
readonly USER_NAME="dockyard"
readonly START_TIMEOUT="${DOCKYARD_REGISTRY_START_TIMEOUT:-30}"
readonly TLS_DIR="$STATE/tls"
readonly REG_DIR="$STATE/registry"
readonly CA_CRT="$TLS_DIR/ca.crt" CA_KEY="$TLS_DIR/ca.key"
readonly SRV_CRT="$TLS_DIR/server.crt" SRV_KEY="$TLS_DIR/server.key"
readonly PASSWORD_FILE="$REG_DIR/password"
readonly HTPASSWD_FILE="$REG_DIR/htpasswd"
# The registry checks the bcrypt hash on every authenticated request: 62 ms of CPU each at cost 10, about a tenth of
# a test run's CPU (every push, pull, cosign and trivy call). The cost only slows guessing a weak password from a
# stolen hash; this one is 192 random bits (openssl rand -hex 24) in a 0600 file, so the minimum cost (1 ms) is kept.
readonly BCRYPT_COST=04
readonly SECRET_FILE="$REG_DIR/http-secret"
readonly CONFIG_FILE="$REG_DIR/config.yml"
readonly PID_FILE="$REG_DIR/registry.pid"
readonly LOG_FILE="$REG_DIR/registry.log"
readonly DATA_DIR="$REG_DIR/data"
readonly AUTH_FILE="$STATE/auth.json"
readonly PG_PORT="${DOCKYARD_POSTGRES_PORT:-5433}"
readonly PG_USER="dockyard" PG_DATABASE="dockyard"
readonly PG_DIR="$STATE/postgres"
readonly PG_PASSWORD_FILE="$PG_DIR/password" PG_PASS_FILE="$PG_DIR/pgpass" PG_LOG="$PG_DIR/postgres.log"
readonly PG_START_TIMEOUT="${DOCKYARD_POSTGRES_START_TIMEOUT:-60}"
readonly CERTS_D="/etc/containers/certs.d/$ADDR"

log() { printf '[local-services] %s\n' "$*" >&2; }
die() { printf '[local-services] ERROR: %s\n' "$*" >&2; exit 1; }

case "$PORT" in
    '' | *[!0-9]*) die "DOCKYARD_REGISTRY_PORT must be a port number, got '$PORT'" ;;
esac
{ [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ]; } || die "DOCKYARD_REGISTRY_PORT out of range: $PORT"
case "$PG_PORT" in
    '' | *[!0-9]*) die "DOCKYARD_POSTGRES_PORT must be a port number, got '$PG_PORT'" ;;
esac
{ [ "$PG_PORT" -ge 1 ] && [ "$PG_PORT" -le 65535 ]; } || die "DOCKYARD_POSTGRES_PORT out of range: $PG_PORT"

# ------------------------------------------------------------------------------ packages

ensure_packages() {
    local missing=() pair cmd pkg
    for pair in docker-registry:docker-registry htpasswd:apache2-utils openssl:openssl \
        curl:curl setsid:util-linux podman:podman; do
        cmd=${pair%%:*} pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]} (run as root, or install them)"
    export DEBIAN_FRONTEND=noninteractive
    log "installing ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=300 update -q >&2
    apt-get -o DPkg::Lock::Timeout=300 install -y -q "${missing[@]}" >&2
}

# ------------------------------------------------------------------------------ process

registry_pid() { # prints the pid when our registry process is alive, else fails
    local pid cmdline
    [ -s "$PID_FILE" ] || return 1
    pid=$(cat "$PID_FILE")
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    [ -r "/proc/$pid/cmdline" ] || return 1
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    case "$cmdline" in
        *docker-registry*"$CONFIG_FILE"*) echo "$pid" ;;
        *) return 1 ;; # a recycled pid
    esac
}

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

# stack_registry_addresses: "<file>: <host:port> ..." for each stack file that names a registry on $HOST.
stack_registry_addresses() {
    local file addresses
    for file in "$PROJECT_DIR"/Pulumi.*.yaml; do
        [ -f "$file" ] || continue
        addresses=$(grep -oE "${HOST//./\\.}:[0-9]+" "$file" | sort -u | tr '\n' ' ') || true
        [ -n "$addresses" ] && printf '%s: %s\n' "${file##*/}" "${addresses% }"
    done
    return 0
}

port_taken_message() {
    local holders
    holders=$(stack_registry_addresses | sed 's/^/    /')
    printf 'port %s on %s is taken by another process.\n' "$PORT" "$HOST"
    if [ -n "$holders" ]; then
        printf '  The registry address is also written in the stack files:\n%s\n' "$holders"
        printf '  Free the port, or move the registry: change DOCKYARD_LOCAL_REGISTRY_PORT in scripts/local-registry.env\n'
        printf '  and dockyard:registry.server and the image references in those files to the same port\n'
        printf '  (DOCKYARD_REGISTRY_PORT alone leaves the stacks pushing to the old address).'
    else
        printf '  Free the port, or set DOCKYARD_REGISTRY_PORT.'
    fi
}

# http_code [with-auth|no-auth|bad-auth]: the HTTP status of GET /v2/ (000 when unreachable).
# Credentials go to curl on stdin (-K -), never on its command line.
http_code() {
    local mode=$1 cred
    case "$mode" in
        no-auth) cred="" ;;
        with-auth) cred="user = \"$USER_NAME:$(cat "$PASSWORD_FILE")\"" ;;
        bad-auth) cred="user = \"$USER_NAME:not-the-password\"" ;;
    esac
    printf '%s\n' "$cred" | curl -K - --noproxy '*' -sS -o /dev/null -w '%{http_code}' --max-time 5 \
        --cacert "$CA_CRT" "https://$ADDR/v2/" 2>/dev/null || true
}

healthy() { # 401 without credentials, 200 with them, TLS verified against our CA
    [ -r "$CA_CRT" ] && [ -r "$PASSWORD_FILE" ] || return 1
    [ "$(http_code no-auth)" = 401 ] && [ "$(http_code with-auth)" = 200 ]
}

# ------------------------------------------------------------------------------ state

make_ca() {
    log "creating a throwaway CA in $TLS_DIR"
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$CA_KEY" -out "$CA_CRT" -days 365 -sha256 \
        -subj "/O=Dockyard local/CN=Dockyard local throwaway CA $(date -u +%Y%m%dT%H%M%SZ)" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" 2>/dev/null
    rm -f "$SRV_CRT" "$SRV_KEY"
}

make_server_cert() {
    log "issuing the registry certificate for IP $HOST"
    local csr ext
    csr=$(mktemp "$TLS_DIR/server.csr.XXXXXX")
    ext=$(mktemp "$TLS_DIR/server.ext.XXXXXX")
    cat >"$ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:$HOST,DNS:localhost
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$SRV_KEY" -out "$csr" -subj "/O=Dockyard local/CN=$HOST" 2>/dev/null
    openssl x509 -req -in "$csr" -CA "$CA_CRT" -CAkey "$CA_KEY" -set_serial "0x$(openssl rand -hex 16)" \
        -days 90 -sha256 -extfile "$ext" -out "$SRV_CRT" 2>/dev/null
    rm -f "$csr" "$ext"
}

ensure_tls() {
    mkdir -p "$TLS_DIR" && chmod 0700 "$TLS_DIR"
    if [ ! -s "$CA_KEY" ] || [ ! -s "$CA_CRT" ] || ! openssl x509 -checkend 172800 -noout -in "$CA_CRT" >/dev/null 2>&1; then
        make_ca
    fi
    if [ ! -s "$SRV_KEY" ] || [ ! -s "$SRV_CRT" ] \
        || ! openssl x509 -checkend 86400 -noout -in "$SRV_CRT" >/dev/null 2>&1 \
        || ! openssl verify -CAfile "$CA_CRT" "$SRV_CRT" >/dev/null 2>&1; then
        make_server_cert
    fi
    chmod 0600 "$CA_KEY" "$SRV_KEY"
    chmod 0644 "$CA_CRT" "$SRV_CRT"
}

ensure_credentials() {
    mkdir -p "$REG_DIR" && chmod 0700 "$REG_DIR"
    if [ ! -s "$PASSWORD_FILE" ]; then
        log "generating the registry password ($PASSWORD_FILE)"
        (umask 077 && openssl rand -hex 24 >"$PASSWORD_FILE")
        rm -f "$HTPASSWD_FILE"
    fi
    chmod 0600 "$PASSWORD_FILE"
    # Rewrite the htpasswd file unless it already verifies against the password file at BCRYPT_COST.
    if [ ! -s "$HTPASSWD_FILE" ] || ! grep -q "^$USER_NAME:\\\$2y\\\$$BCRYPT_COST\\\$" "$HTPASSWD_FILE" \
        || ! htpasswd -v -i "$HTPASSWD_FILE" "$USER_NAME" <"$PASSWORD_FILE" >/dev/null 2>&1; then
        log "writing $HTPASSWD_FILE (bcrypt, cost $BCRYPT_COST)"
        (umask 077 && htpasswd -B -C "$BCRYPT_COST" -i -c "$HTPASSWD_FILE" "$USER_NAME" <"$PASSWORD_FILE" >/dev/null 2>&1) \
            || die "htpasswd failed"
    fi
    chmod 0600 "$HTPASSWD_FILE"
    if [ ! -s "$SECRET_FILE" ]; then
        (umask 077 && openssl rand -hex 32 >"$SECRET_FILE")
    fi
}

write_config() {
    mkdir -p "$DATA_DIR"
    local tmp
    tmp=$(mktemp "$REG_DIR/config.yml.XXXXXX")
    cat >"$tmp" <<EOF
# Generated by scripts/local-services.sh at each start; edits are overwritten.
version: 0.1
log:
  level: info
  formatter: text
  fields:
    service: dockyard-local-registry
storage:
  filesystem:
    rootdirectory: $DATA_DIR
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $ADDR
  secret: $(cat "$SECRET_FILE")
  tls:
    certificate: $SRV_CRT
    key: $SRV_KEY
    minimumtls: tls1.2
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: dockyard-local
    path: $HTPASSWD_FILE
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
EOF
    chmod 0600 "$tmp"
    mv "$tmp" "$CONFIG_FILE"
}

trust_ca() {
    if [ "$(id -u)" -ne 0 ]; then
        if ! cmp -s "$CA_CRT" "$CERTS_D/ca.crt" 2>/dev/null; then
            log "WARNING: not root: cannot install the CA at $CERTS_D/ca.crt; podman will not trust the registry"
        fi
        return 0
    fi
    if ! cmp -s "$CA_CRT" "$CERTS_D/ca.crt" 2>/dev/null; then
        log "trusting the CA for $ADDR: $CERTS_D/ca.crt"
        mkdir -p "$CERTS_D"
        install -m 0644 "$CA_CRT" "$CERTS_D/ca.crt"
    fi
}

podman_login() { # writes $AUTH_FILE; the password goes through stdin
    command -v podman >/dev/null 2>&1 || return 0
    local out
    if ! out=$(podman login --authfile "$AUTH_FILE" --username "$USER_NAME" --password-stdin "$ADDR" \
        <"$PASSWORD_FILE" 2>&1); then
        die "podman login to $ADDR failed: $out"
    fi
    chmod 0600 "$AUTH_FILE"
    log "podman credentials for $ADDR in $AUTH_FILE"
}

# ------------------------------------------------------------------------------ PostgreSQL (team state backend)

pg_bin_dir() { # the newest Debian PostgreSQL's bin directory; fails when none is installed
    local dir
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
    [ -n "$dir" ] && [ -x "$dir/postgres" ] && echo "$dir"
}

ensure_postgres_packages() {
    pg_bin_dir >/dev/null && command -v psql >/dev/null 2>&1 && return 0
    [ "$(id -u)" -eq 0 ] || die "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): install postgresql-15 as root, or run this as root"
    export DEBIAN_FRONTEND=noninteractive
    log "installing postgresql-15"
    apt-get -o DPkg::Lock::Timeout=300 update -q >&2
    # policy-rc.d: the package's own cluster (5432) is not wanted; only Dockyard's server runs.
    apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends postgresql-15 postgresql-client-15 >&2
    pg_bin_dir >/dev/null || die "postgresql-15 installed, but no /usr/lib/postgresql/*/bin/postgres"
}

# PostgreSQL refuses to run as root, and its user cannot enter root's home: as root the server runs as the
# Debian package's postgres user, on a data directory of its own (one per state directory and port).
pg_data_dir() {
    if [ "$(id -u)" -eq 0 ]; then
        printf '/var/lib/postgresql/dockyard/%s\n' "$(printf '%s:%s' "$STATE" "$PG_PORT" | sha256sum | cut -c1-12)"
    else
        printf '%s\n' "$PG_DIR/data"
    fi
}

as_pg() { # run a server-side command as the user that owns the data directory
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_write() { # pg_write MODE PATH < content: a file the server's user owns (stdin read as is: no reopen of /dev/stdin)
    # shellcheck disable=SC2016
    as_pg sh -c 'umask 077 && cat >"$2" && chmod "$1" "$2"' sh "$1" "$2"
}

pg_port_in_use() { (exec 3<>"/dev/tcp/$HOST/$PG_PORT") 2>/dev/null; }

postgres_pid() { # prints the postmaster's pid when our server is alive, else fails
    local data pid cmdline
    data=$(pg_data_dir)
    [ -s "$data/postmaster.pid" ] || return 1
    pid=$(head -n 1 "$data/postmaster.pid")
    case "$pid" in '' | *[!0-9]*) return 1 ;; esac
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    case "$cmdline" in
        *postgres*"$data"*) echo "$pid" ;;
        *) return 1 ;; # a recycled pid
    esac
}

# pg_query SQL: one authenticated query over TLS (verify-full against our CA), as any client connects;
# the password comes from the pgpass file, never from a command line or URL.
pg_query() {
    PGPASSFILE="$PG_PASS_FILE" PGCONNECT_TIMEOUT=5 psql -X -q -t -A -v ON_ERROR_STOP=1 \
        "host=$HOST port=$PG_PORT user=$PG_USER dbname=${2:-$PG_DATABASE} sslmode=verify-full sslrootcert=$CA_CRT" \
        -c "$1"
}

postgres_healthy() {
    [ -r "$PG_PASS_FILE" ] && [ "$(pg_query 'select 1' 2>/dev/null)" = 1 ]
}

ensure_postgres_credentials() {
    mkdir -p "$PG_DIR" && chmod 0700 "$PG_DIR"
    if [ ! -s "$PG_PASSWORD_FILE" ]; then
        log "generating the PostgreSQL password ($PG_PASSWORD_FILE)"
        (umask 077 && openssl rand -hex 24 >"$PG_PASSWORD_FILE")
    fi
    chmod 0600 "$PG_PASSWORD_FILE"
    # libpq and lib/pq (pulumi) read it; both refuse a pgpass file others can read.
    (umask 077 && printf '*:%s:*:%s:%s\n' "$PG_PORT" "$PG_USER" "$(cat "$PG_PASSWORD_FILE")" >"$PG_PASS_FILE.tmp")
    mv -f "$PG_PASS_FILE.tmp" "$PG_PASS_FILE"
}

init_postgres() {
    local data=$1 bin=$2
    log "initialising PostgreSQL in $data"
    mkdir -p "$(dirname "$data")"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$(dirname "$data")"
        chmod 0700 "$(dirname "$data")"
    fi
    # The password reaches initdb in a file of the server's user, removed at once (the state's copy is root's).
    local pwfile
    pwfile="$(dirname "$data")/.pwfile.$$"
    pg_write 0600 "$pwfile" <"$PG_PASSWORD_FILE"
    if ! as_pg "$bin/initdb" -D "$data" -U "$PG_USER" --pwfile="$pwfile" \
        --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 >>"$PG_LOG" 2>&1; then
        rm -f "$pwfile"
        tail -n 20 "$PG_LOG" >&2
        die "initdb failed (log: $PG_LOG)"
    fi
    rm -f "$pwfile"
}

write_postgres_config() {
    local data=$1
    # The server's own copies of the certificate (PostgreSQL wants its key owned by itself, 0600).
    pg_write 0600 "$data/server.key" <"$SRV_KEY"
    pg_write 0644 "$data/server.crt" <"$SRV_CRT"
    as_pg mkdir -p "$data/socket"
    pg_write 0600 "$data/dockyard.conf" <<CONF
# Generated by scripts/local-services.sh at each start; edits are overwritten.
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$data/socket'
ssl = on
ssl_cert_file = '$data/server.crt'
ssl_key_file = '$data/server.key'
ssl_min_protocol_version = 'TLSv1.2'
password_encryption = 'scram-sha-256'
max_connections = 50
shared_buffers = 32MB
CONF
    # Only TLS connections from 127.0.0.1 with the password; no plain host line, so unencrypted ones are refused.
    pg_write 0600 "$data/pg_hba.conf" <<HBA
# Generated by scripts/local-services.sh at each start; edits are overwritten.
local   all  $PG_USER                scram-sha-256
hostssl all  $PG_USER  $HOST/32      scram-sha-256
HBA
    grep -q "^include_if_exists = 'dockyard.conf'" "$data/postgresql.conf" \
        || printf "\ninclude_if_exists = 'dockyard.conf'\n" | as_pg tee -a "$data/postgresql.conf" >/dev/null
}

start_postgres() {
    ensure_postgres_packages
    mkdir -p "$STATE" && chmod 0700 "$STATE"
    local data bin pid
    data=$(pg_data_dir)
    bin=$(pg_bin_dir)
    if pid=$(postgres_pid); then
        postgres_healthy || die "PostgreSQL process $pid is running but does not answer (see $PG_LOG); try: $0 stop postgres && $0 start postgres"
        log "PostgreSQL already running on $HOST:$PG_PORT (pid $pid)"
        return 0
    fi
    pg_port_in_use && die "port $PG_PORT on $HOST is taken by another process: free it, or set DOCKYARD_POSTGRES_PORT"
    ensure_tls
    ensure_postgres_credentials
    : >>"$PG_LOG" && chmod 0600 "$PG_LOG"
    [ -s "$data/PG_VERSION" ] || init_postgres "$data" "$bin"
    write_postgres_config "$data"
    log "starting PostgreSQL on $HOST:$PG_PORT (data $data)"
    # pg_ctl's postmaster detaches and outlives this shell; its output goes to a log only it can write, copied to ours.
    if ! as_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t "$PG_START_TIMEOUT" start >/dev/null 2>&1; then
        cat "$data/server.log" >>"$PG_LOG" 2>/dev/null || true
        tail -n 20 "$data/server.log" >&2 2>/dev/null || true
        die "PostgreSQL did not start on $HOST:$PG_PORT (log: $data/server.log)"
    fi
    local deadline=$((SECONDS + PG_START_TIMEOUT))
    until PGPASSFILE="$PG_PASS_FILE" psql -X -q -t -A "host=$data/socket port=$PG_PORT user=$PG_USER dbname=postgres" \
        -c 'select 1' >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "PostgreSQL started but refuses the password (log: $data/server.log)"
        sleep 0.3
    done
    if [ "$(PGPASSFILE="$PG_PASS_FILE" psql -X -q -t -A "host=$data/socket port=$PG_PORT user=$PG_USER dbname=postgres" \
        -c "select 1 from pg_database where datname = '$PG_DATABASE'")" != 1 ]; then
        PGPASSFILE="$PG_PASS_FILE" psql -X -q "host=$data/socket port=$PG_PORT user=$PG_USER dbname=postgres" \
            -c "create database $PG_DATABASE" >/dev/null
    fi
    postgres_healthy || die "PostgreSQL answers on its socket but not over TLS on $HOST:$PG_PORT (log: $data/server.log)"
    log "PostgreSQL healthy on $HOST:$PG_PORT (pid $(postgres_pid)): TLS verified against the local CA, password auth"
}

stop_postgres() {
    local pid bin
    if ! pid=$(postgres_pid); then
        log "PostgreSQL not running"
        return 0
    fi
    bin=$(pg_bin_dir) || die "PostgreSQL runs (pid $pid) but its binaries are gone"
    log "stopping PostgreSQL (pid $pid)"
    as_pg "$bin/pg_ctl" -D "$(pg_data_dir)" -m fast -w -t 30 stop >/dev/null 2>&1 \
        || { kill -KILL "$pid" 2>/dev/null || true; log "PostgreSQL did not stop in 30s; killed it"; }
    log "PostgreSQL stopped"
}

status_postgres() {
    local pid
    if ! pid=$(postgres_pid); then
        echo "postgres: stopped (data $(pg_data_dir))"
        return 3
    fi
    if postgres_healthy; then
        echo "postgres: running, healthy, $HOST:$PG_PORT database $PG_DATABASE pid $pid (data $(pg_data_dir))"
        return 0
    fi
    echo "postgres: running but UNHEALTHY, $HOST:$PG_PORT pid $pid (log $(pg_data_dir)/server.log)"
    return 1
}

# ------------------------------------------------------------------------------ commands

launch() {
    : >>"$LOG_FILE"
    chmod 0600 "$LOG_FILE"
    # Keep the log bounded across restarts.
    if [ "$(stat -c %s "$LOG_FILE")" -gt 10485760 ]; then mv -f "$LOG_FILE" "$LOG_FILE.1"; : >"$LOG_FILE"; fi
    rm -f "$PID_FILE"
    # setsid + nohup: the registry gets its own session and survives the shell that started it.
    # The inner shell writes its own pid and then execs the registry, so the pid stays valid.
    # env -i: the registry reads every REGISTRY_* variable as configuration (podman's REGISTRY_AUTH_FILE would
    # make it fail to start), so it gets a clean environment; its config file says everything else.
    # shellcheck disable=SC2016
    env -i PATH="$PATH" HOME="${HOME:-/root}" \
        setsid nohup sh -c 'echo $$ >"$1"; exec docker-registry serve "$2"' sh "$PID_FILE" "$CONFIG_FILE" \
        >>"$LOG_FILE" 2>&1 </dev/null &
    disown 2>/dev/null || true
}

cmd_start() {
    case "${1:-}" in
        postgres) start_postgres; return 0 ;;
        registry | '') ;;
        *) die "unknown service '$1'; allowed: registry, postgres" ;;
    esac
    start_registry
    # PostgreSQL only where it is the backend: a registry of a test's own state must not contend for its port.
    if [ -z "${1:-}" ] && [ "${DOCKYARD_BACKEND:-file}" = postgres ]; then start_postgres; fi
}

start_registry() {
    ensure_packages
    mkdir -p "$STATE" && chmod 0700 "$STATE"
    local pid
    if pid=$(registry_pid); then
        if healthy; then
            log "registry already running on https://$ADDR (pid $pid)"
        else
            die "registry process $pid is running but unhealthy (see $LOG_FILE); try: $0 stop && $0 start"
        fi
    else
        port_in_use && die "$(port_taken_message)"
        local named
        named=$(stack_registry_addresses | tr '\n' ' ')
        case " $named" in
            ' ' | *" $ADDR "*) ;;
            *) log "WARNING: the registry starts on $ADDR, but the stack files name another address: $named" ;;
        esac
        ensure_tls
        ensure_credentials
        write_config
        log "starting docker-registry on https://$ADDR (state $STATE)"
        launch
        local deadline=$((SECONDS + START_TIMEOUT))
        until healthy; do
            if ! registry_pid >/dev/null && [ -s "$PID_FILE" ]; then
                tail -n 20 "$LOG_FILE" >&2 || true
                die "docker-registry exited during start-up (log: $LOG_FILE)"
            fi
            if [ "$SECONDS" -ge "$deadline" ]; then
                tail -n 20 "$LOG_FILE" >&2 || true
                die "registry not healthy after ${START_TIMEOUT}s (GET /v2/: anonymous $(http_code no-auth), authenticated $(http_code with-auth); log: $LOG_FILE)"
            fi
            sleep 0.3
        done
        log "registry healthy on https://$ADDR (pid $(registry_pid)): /v2/ answers 401 anonymous, 200 authenticated"
    fi
    trust_ca
    if [ "${DOCKYARD_SKIP_BASE_IMAGES:-0}" != 1 ]; then
        "$SCRIPT_DIR/local-base-images.sh" build
    fi
    podman_login
    # The base images by digest (an image index for the runtime base): what a fresh storage pulls, what pins a build.
    if [ "${DOCKYARD_SKIP_BASE_IMAGES:-0}" != 1 ]; then
        REGISTRY_AUTH_FILE="$AUTH_FILE" DOCKYARD_REGISTRY="$ADDR" DOCKYARD_STATE="$STATE" \
            "$SCRIPT_DIR/local-base-images.sh" publish
    fi
    # The offline vulnerability DB that scans read (--db-repository): a manifest read when its records are unchanged.
    if [ -x "${DOCKYARD_CACHE:-$HOME/.cache/dockyard}/supply-chain/bin/trivy-db" ]; then
        "$SCRIPT_DIR/local-vuln-db.sh" publish
    else
        log "no vulnerability DB: trivy-db is not built (scripts/bootstrap-supply-chain.sh), scans will find no DB"
    fi
}

cmd_stop() {
    case "${1:-}" in
        postgres) stop_postgres ;;
        registry) stop_registry ;;
        '') stop_registry; stop_postgres ;;
        *) die "unknown service '$1'; allowed: registry, postgres" ;;
    esac
}

stop_registry() {
    local pid
    if ! pid=$(registry_pid); then
        rm -f "$PID_FILE"
        log "registry not running"
        return 0
    fi
    log "stopping registry (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        registry_pid >/dev/null || break
        sleep 0.2
    done
    if registry_pid >/dev/null; then
        log "registry did not stop in 10s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$PID_FILE"
    log "registry stopped"
}

# podman_storage: "podman storage: <MB> MB in <graph root>" (du of the graph root).
podman_storage() {
    command -v podman >/dev/null 2>&1 || return 0
    local root
    root=$(podman info --format '{{.Store.GraphRoot}}' 2>/dev/null) || return 0
    printf 'podman storage: %s MB in %s (free it: %s prune)\n' "$(storage_mb "$root")" "$root" "$0"
}

# storage_mb DIR: its size in MB, "?" when it cannot be read. du gives up without a total when a build removes a
# directory under it ("fts_read failed"): read it again.
storage_mb() {
    local size=""
    for _ in 1 2 3; do
        size=$(du -sm "$1" 2>/dev/null | cut -f1) && [ -n "$size" ] && break
    done
    echo "${size:-?}"
}

cmd_status() {
    local code=0 pg=0
    case "${1:-}" in
        postgres) status_postgres; return ;;
        registry) status_registry; return ;;
        '') ;;
        *) die "unknown service '$1'; allowed: registry, postgres" ;;
    esac
    status_registry || code=$?
    status_postgres || pg=$?
    [ "${DOCKYARD_BACKEND:-file}" = postgres ] || return "$code"
    # The worse of the two: unhealthy (1) before stopped (3) before healthy (0).
    if [ "$code" -eq 1 ] || [ "$pg" -eq 1 ]; then return 1; fi
    if [ "$code" -ne 0 ]; then return "$code"; fi
    return "$pg"
}

status_registry() {
    podman_storage
    local pid
    if ! pid=$(registry_pid); then
        echo "registry: stopped (state $STATE)"
        return 3
    fi
    if healthy; then
        echo "registry: running, healthy, https://$ADDR pid $pid (state $STATE)"
        return 0
    fi
    echo "registry: running but UNHEALTHY, https://$ADDR pid $pid (log $LOG_FILE)"
    return 1
}

cmd_env() {
    local q
    for pair in \
        "DOCKYARD_STATE=$STATE" \
        "DOCKYARD_REGISTRY=$ADDR" \
        "DOCKYARD_REGISTRY_USER=$USER_NAME" \
        "DOCKYARD_REGISTRY_PASSWORD_FILE=$PASSWORD_FILE" \
        "DOCKYARD_REGISTRY_CA=$CA_CRT" \
        "DOCKYARD_REGISTRY_AUTHFILE=$AUTH_FILE" \
        "DOCKYARD_POSTGRES_HOST=$HOST" \
        "DOCKYARD_POSTGRES_PORT=$PG_PORT" \
        "DOCKYARD_POSTGRES_USER=$PG_USER" \
        "DOCKYARD_POSTGRES_DATABASE=$PG_DATABASE" \
        "DOCKYARD_POSTGRES_PASSFILE=$PG_PASS_FILE" \
        "DOCKYARD_POSTGRES_URL=postgres://$PG_USER@$HOST:$PG_PORT/$PG_DATABASE?sslmode=verify-full&sslrootcert=$CA_CRT"; do
        printf -v q '%q' "${pair#*=}"
        printf 'export %s=%s\n' "${pair%%=*}" "$q"
    done
    "$SCRIPT_DIR/local-base-images.sh" print
    registry_pid >/dev/null || log "note: the registry is not running (scripts/local-services.sh start)"
}
# DOCKYARD_POSTGRES_URL names no password: clients read it from DOCKYARD_POSTGRES_PASSFILE (as PGPASSFILE), so
# the URL can be logged, printed and stored as it is.

cmd_prune() {
    command -v podman >/dev/null 2>&1 || { log "podman not installed: nothing to prune"; return 0; }
    local root before started=$SECONDS wait="${DOCKYARD_PRUNE_WAIT:-900}"
    root=$(podman info --format '{{.Store.GraphRoot}}')
    # The lock every build holds shared (podman-build.sh): exclusive, no build runs while images go.
    exec 8>>"$root/dockyard-build.lock"
    flock -x -w "$wait" 8 || die "a build still holds $root/dockyard-build.lock after ${wait}s: prune when it ends"
    before=$(podman images --all --quiet | wc -l)
    # With the lock ours, no build owns a working container: these are what killed builds left.
    buildah containers --quiet | xargs -r buildah rm >/dev/null
    # Copies of pushed images (the registry keeps them) and the temporary images of interrupted builds.
    # By name (an image index is removed by name only), by ID when untagged.
    podman images --format '{{.ID}} {{.Repository}} {{.Tag}}' |
        awk '$2 ~ /^(127\.0\.0\.1|localhost):[0-9]+\// || $2 ~ /^docker\.io\/library\/[0-9a-f]+-tmp$/ {
            print ($3 == "<none>" ? $1 : $2 ":" $3) }' |
        sort -u | xargs -r podman rmi --force >/dev/null || log "some images were not removed (above): the next prune retries"
    podman image prune --force >/dev/null
    log "pruned podman's storage in $((SECONDS - started))s: ${before} -> $(podman images --all --quiet | wc -l) images," \
        "$(storage_mb "$root") MB in $root"
}

case "${1:-}" in
    start) cmd_start "${2:-}" ;;
    prune) cmd_prune ;;
    stop) cmd_stop "${2:-}" ;;
    status) cmd_status "${2:-}" ;;
    env) cmd_env ;;
    -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
    *) echo "usage: $0 start|stop|status [registry|postgres] | env | prune" >&2; exit 2 ;;
esac
