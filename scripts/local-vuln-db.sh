#!/usr/bin/env bash
# The offline vulnerability DB: built with trivy-db from the OSV advisory records under scripts/vuln-db (the layout
# of github/advisory-database: ghsa/advisories/github-reviewed/YYYY/MM/ID/ID.json), pushed to the local registry as
# the OCI artifact trivy's --db-repository reads (config application/vnd.aquasec.trivy.config.v1+json, one layer
# application/vnd.aquasec.trivy.db.layer.v1.tar+gzip titled db.tar.gz). Idempotent: the artifact carries the hash
# of its records and of trivy-db's version, so a warm run is one manifest read (well under a second).
#
#   scripts/local-vuln-db.sh [publish]   build and push when the records changed (scripts/local-services.sh start)
#   scripts/local-vuln-db.sh ref         print the DB's reference (what dockyard:signing.scan.dbRepository names)
#
# Env:   DOCKYARD_VULN_DB_RECORDS   directory of records (default scripts/vuln-db); tests add a record in a copy
#        DOCKYARD_VULN_DB_REF       where to push (default <local registry>/dockyard/trivy-db:2)
#        DOCKYARD_CACHE             cache root (default ~/.cache/dockyard): the tools, the registry's CA and login
set -Eeuo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=local-registry.env
. "$SCRIPT_DIR/local-registry.env"
# shellcheck source=supply-chain/versions.env
. "$SCRIPT_DIR/supply-chain/versions.env"
CACHE="${DOCKYARD_CACHE:-$HOME/.cache/dockyard}"
BIN="$CACHE/supply-chain/bin"
RECORDS="${DOCKYARD_VULN_DB_RECORDS:-$SCRIPT_DIR/vuln-db}"
PORT="${DOCKYARD_REGISTRY_PORT:-$DOCKYARD_LOCAL_REGISTRY_PORT}"
REF="${DOCKYARD_VULN_DB_REF:-$DOCKYARD_LOCAL_REGISTRY_HOST:$PORT/dockyard/trivy-db:2}"
# The registry's own state (local-services.sh's DOCKYARD_STATE): its CA and podman login.
STATE="${DOCKYARD_STATE:-$CACHE/local}"
CA="$STATE/tls/ca.crt"
AUTH="$STATE/auth.json"
#: Manifest annotation that names what the DB was built from.
SOURCE_ANNOTATION=dev.dockyard.vuln-db.source

log() { printf '[local-vuln-db] %s\n' "$*" >&2; }
die() {
    printf '[local-vuln-db] ERROR: %s\n' "$*" >&2
    exit 1
}

# records_hash: sha256 of trivy-db's version and every record (path and content), so any change rebuilds.
records_hash() {
    {
        printf '%s\n' "$DOCKYARD_TRIVY_DB_VERSION"
        (cd "$RECORDS" && find ghsa -type f -name '*.json' | LC_ALL=C sort | while read -r f; do
            printf '%s\n' "$f"
            cat "$f"
        done)
    } | sha256sum | cut -d' ' -f1
}

# regctl with a private config: the local CA through SSL_CERT_FILE, the registry login as a docker config.
regctl_private() {
    env REGCTL_CONFIG="$WORK/regctl.json" DOCKER_CONFIG="$WORK" SSL_CERT_FILE="$WORK/ca-bundle.pem" \
        "$BIN/regctl" "$@"
}

publish() {
    [ -x "$BIN/trivy-db" ] && [ -x "$BIN/regctl" ] ||
        die "trivy-db or regctl missing in $BIN: run scripts/bootstrap-supply-chain.sh"
    [ -d "$RECORDS/ghsa" ] || die "no advisory records under $RECORDS/ghsa"
    [ -s "$CA" ] && [ -s "$AUTH" ] || die "no local registry CA or login ($CA, $AUTH): run scripts/local-services.sh start"
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
    chmod 0700 "$WORK"
    cat /etc/ssl/certs/ca-certificates.crt "$CA" >"$WORK/ca-bundle.pem" 2>/dev/null || cp "$CA" "$WORK/ca-bundle.pem"
    cp "$AUTH" "$WORK/config.json"
    local want have start=$SECONDS
    want=$(records_hash)
    have=$(regctl_private manifest get "$REF" --format "{{ index .Annotations \"$SOURCE_ANNOTATION\" }}" 2>/dev/null ||
        true)
    if [ "$have" = "$want" ]; then
        log "$REF is current (records ${want:0:12}; $((SECONDS - start))s)"
        return 0
    fi
    # trivy-db reads a vuln-list tree; the GHSA source also reads CocoaPods specs, which may be empty.
    mkdir -p "$WORK/cache/cocoapods-specs/Specs" "$WORK/out"
    cp -R "$RECORDS/ghsa" "$WORK/cache/ghsa"
    "$BIN/trivy-db" build --cache-dir "$WORK/cache" --only-update ghsa --output-dir "$WORK/out" \
        --update-interval 8760h >"$WORK/build.log" 2>&1 || {
        tail -n 20 "$WORK/build.log" >&2
        die "trivy-db build failed"
    }
    tar -C "$WORK/out" -czf "$WORK/db.tar.gz" trivy.db metadata.json
    (cd "$WORK" && regctl_private artifact put \
        --config-type application/vnd.aquasec.trivy.config.v1+json \
        --file-media-type application/vnd.aquasec.trivy.db.layer.v1.tar+gzip \
        --file db.tar.gz --file-title \
        --annotation "$SOURCE_ANNOTATION=$want" \
        "$REF") >"$WORK/push.log" 2>&1 || {
        cat "$WORK/push.log" >&2
        die "pushing the DB to $REF failed"
    }
    log "built and pushed $REF from $(find "$RECORDS/ghsa" -type f -name '*.json' | wc -l) records (${want:0:12}; $((SECONDS - start))s)"
}

case "${1:-publish}" in
    publish) publish ;;
    ref) printf '%s\n' "$REF" ;;
    *) die "unknown command '$1'; allowed: publish, ref" ;;
esac
