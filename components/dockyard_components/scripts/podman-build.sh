# shellcheck shell=bash
# Build, test and push one image with podman; print only the pushed manifest digest on stdout.
# Run as `bash -c` under scripts/build_guard.py (its own process group, stopped when the engine or the
# provider goes away) by podman_build.py, the PodmanBuild dynamic resource behind AppImage's podman
# builder. Everything else goes to stderr, which the provider keeps whole in a log file (~/.cache/dockyard/build-logs)
# and quotes from on failure. The provider sets, from the resource's inputs:
#   IMAGE_NAME, TAGS (space separated, the first is the primary), CONTEXT, DOCKERFILE, TARGET, TEST_TARGET (empty: no
#   test stage), PLATFORM (os/arch, or several comma separated: one image index, built with --manifest one platform
#   after another in the order given, and pushed whole; the test stages run on the build platform only), TIMESTAMP
#   (seconds since the epoch, the commit's time: --timestamp sets every history entry's time and every file's mtime
#   in the pushed image's layers to it, so two clean builds of one commit give one digest; empty: the clock),
#   BUILD_ARGS and LABELS (newline separated KEY=VALUE), REGISTRY, REGISTRY_USER,
#   REGISTRY_LOGIN (true: the password is on stdin), CACHE_REPO (a repository without a tag that layers are pulled
#   from and pushed to; empty: the local layer cache only), PASSWORD_SOURCE (where the password is set, named when
#   the registry refuses it), REUSE_DIGEST (a digest a build with the same inputs pushed: reused when the registry
#   still holds it; see build_memo.py), BUILD_SECRETS (newline separated id=file: a 0600 file per build secret,
#   removed by the provider after the build; each is mounted only into the Dockerfile steps that ask for it with
#   --mount=type=secret,id=<id>, so it is in no layer, no history entry and no log line), REPORTS_TARGET (a stage
#   that holds only the test stage's reports; empty: none) and REPORTS_DIR (where that stage is exported, before the
#   test stage runs, so that the reports of a failing test are kept too; see test_reports.py), INTEGRATION_TARGET (a
#   stage holding the integration tests; empty: none), INTEGRATION_COMPOSE (relative to CONTEXT),
#   INTEGRATION_SERVICE, INTEGRATION_ENV (newline separated KEY=VALUE: the Compose file's variables, over the
#   environment) and DOCKYARD_PYTHON (runs dockyard_components.integration: one podman pod per build, removed when the tests end and,
#   by a reaper in a session of its own, when this script is killed).
# From the caller's environment: DOCKYARD_BUILD_NO_CACHE (1: a cold build, for the benchmarks), BUILDAH_ISOLATION,
# DOCKYARD_BUILD_KEEP_IMAGES (1: keep this build's test-stage image and the older local tags of IMAGE_NAME).
# Disk: with vfs every image is a full copy (overlay stores layer diffs), so after a push the test-stage image and the local tags of IMAGE_NAME
# older than this build are removed (the registry keeps what was pushed; the layer cache of the current build
# stays), unless another build into the same storage is running (then the next build cleans up). A pushed image is
# content-addressed: re-running after an interrupted push gives the same digest.
set -euo pipefail
log() { echo "dockyard-build: $*" >&2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Builds into one podman storage hold its lock shared while they build and push; the clean-up below takes it
# exclusively, or is skipped (the next build cleans): it never removes an image another build still uses.
# The storage's root from buildah (the same containers-storage configuration as podman's) where it is installed:
# `podman info` gathers every host fact first, the installed packages' versions among them (0.7 s against 0.05 s).
graph_root=$(buildah info --format '{{.store.GraphRoot}}' 2>/dev/null || true)
[ -n "$graph_root" ] || graph_root=$(podman info --format '{{.Store.GraphRoot}}')
exec 9>>"$graph_root/dockyard-build.lock"
flock -s 9

# The platform podman runs on. podman 4.3 does not define the build platform arg on its own, so it is passed: the
# Dockerfile's stages pinned to it (compilers, tests) then run natively, whatever the target platforms. (A local
# podman's client is the host: its os/arch is the host's.)
build_platform=$(podman version --format '{{.Client.OsArch}}')
flags=(--layers --isolation "${BUILDAH_ISOLATION:-chroot}" -f "$CONTEXT/$DOCKERFILE"
  --build-arg "BUILDPLATFORM=$build_platform")
while IFS= read -r arg; do [ -n "$arg" ] && flags+=(--build-arg "$arg"); done <<<"${BUILD_ARGS:-}"
# Paths only: the values stay in their files (see build_secrets.py).
while IFS='=' read -r id src; do [ -n "$id" ] && flags+=(--secret "id=$id,src=$src"); done <<<"${BUILD_SECRETS:-}"
# Benchmarks measure a cold build with DOCKYARD_BUILD_NO_CACHE=1; normal builds reuse every cached layer.
if [ "${DOCKYARD_BUILD_NO_CACHE:-0}" = 1 ]; then
  flags+=(--no-cache)
fi
if [ -n "${CACHE_REPO:-}" ]; then
  flags+=(--cache-from "$CACHE_REPO" --cache-to "$CACHE_REPO")
fi

if [ "${REGISTRY_LOGIN:-false}" = true ]; then
  log "logging in to $REGISTRY as $REGISTRY_USER"
  # The password arrives on stdin and goes on through stdin: never the command line, environment or log.
  if ! out=$(podman login --username "$REGISTRY_USER" --password-stdin "$REGISTRY" 2>&1); then
    echo "$out" >&2
    case "$out" in
      *"connection refused"* | *"no such host"* | *"i/o timeout"* | *"network is unreachable"* | *"no route to host"*)
        case "$REGISTRY" in
          127.0.0.1:* | localhost:*) hint="start it with scripts/local-services.sh start" ;;
          *) hint="check the network and the registry's address" ;;
        esac
        log "registry $REGISTRY unreachable (connection refused at $REGISTRY) — $hint" ;;
      *)
        log "login to $REGISTRY as $REGISTRY_USER was refused — check ${PASSWORD_SOURCE:-the registry password}" ;;
    esac
    exit 1
  fi
fi

read -r -a tags <<<"$TAGS"
if [ -n "${REUSE_DIGEST:-}" ]; then
  # skopeo reads podman's login and certs.d; a registry that lost the image gets a full build below.
  if skopeo inspect --raw "docker://$IMAGE_NAME@$REUSE_DIGEST" >/dev/null 2>&1; then
    log "reusing $IMAGE_NAME@$REUSE_DIGEST, pushed by a build with the same inputs"
    # A tag is "what the last build of these inputs pushed": another build may have moved it since, so each tag
    # is pointed at the reused digest again (a manifest put within the repository; no layer moves).
    for tag in "${tags[@]}"; do
      # --all: an image index is copied whole (a no-op for one image).
      skopeo copy --quiet --all --preserve-digests "docker://$IMAGE_NAME@$REUSE_DIGEST" "docker://$IMAGE_NAME:$tag" >&2
    done
    printf '%s' "$REUSE_DIGEST"
    exit 0
  fi
  log "$IMAGE_NAME@$REUSE_DIGEST is gone from the registry: building again"
fi

if [ -n "${TEST_TARGET:-}" ] && [ -n "${REPORTS_TARGET:-}" ]; then
  # The tests run here; the test stage below finds them in the layer cache and only fails or passes on their status.
  log "running the tests and exporting the $REPORTS_TARGET stage to $REPORTS_DIR"
  podman build "${flags[@]}" --platform "$build_platform" --target "$REPORTS_TARGET" \
    --output "type=local,dest=$REPORTS_DIR" --iidfile "$work/reports-iid" "$CONTEXT" >&2
fi
if [ -n "${TEST_TARGET:-}" ]; then
  log "running the $TEST_TARGET stage on $build_platform"
  podman build "${flags[@]}" --platform "$build_platform" --target "$TEST_TARGET" --iidfile "$work/test-iid" \
    "$CONTEXT" >&2
fi

if [ -n "${INTEGRATION_TARGET:-}" ]; then
  log "building the $INTEGRATION_TARGET stage"
  podman build "${flags[@]}" --platform "$build_platform" --target "$INTEGRATION_TARGET" --iidfile "$work/integration-iid" "$CONTEXT" >&2
  project="dockyard-it-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
  # The reaper outlives a SIGKILL of this process group (setsid: a session of its own) and removes the project once
  # this shell is gone; the run below removes it itself when the tests end.
  setsid -f "$DOCKYARD_PYTHON" -m dockyard_components.integration reap --project "$project" --owner "$$" \
    </dev/null >/dev/null 2>&1
  log "running the integration tests: service $INTEGRATION_SERVICE of $INTEGRATION_COMPOSE (podman pod $project)"
  INTEGRATION_ENV="${INTEGRATION_ENV:-}" "$DOCKYARD_PYTHON" -m dockyard_components.integration run \
    --compose "$CONTEXT/$INTEGRATION_COMPOSE" --service "$INTEGRATION_SERVICE" --image "$(cat "$work/integration-iid")" --project "$project" --owner "$$" \
    --reports "${REPORTS_DIR:-}" >&2
fi

label_flags=()
while IFS= read -r label; do [ -n "$label" ] && label_flags+=(--label "$label"); done <<<"${LABELS:-}"
# No TARGET: the Dockerfile's last stage, as `podman build` does by default.
target_flags=()
[ -n "${TARGET:-}" ] && target_flags=(--target "$TARGET")
# Every time in the pushed image (history, config, file mtimes in its layers) is the commit's: one commit, one digest.
[ -n "${TIMESTAMP:-}" ] && label_flags+=(--timestamp "$TIMESTAMP")
primary="$IMAGE_NAME:${tags[0]}"
index=false
if [[ "$PLATFORM" == *,* ]]; then
  index=true
  # One image per platform, gathered in a local manifest list (an image index) that is pushed whole. `--manifest`
  # adds to a list of that name, so an earlier build's list (or image) under the name goes first.
  podman manifest rm "$primary" >/dev/null 2>&1 || podman untag "$primary" >/dev/null 2>&1 || true
  log "building ${TARGET:-the last stage} for $PLATFORM as the image index $primary"
  output_flags=(--manifest "$primary")
else
  log "building ${TARGET:-the last stage} as $primary"
  output_flags=(--tag "$primary")
fi
if [ "$index" = true ]; then
  # One platform at a time, in the order given: `--platform a,b` builds them side by side and adds each to the list
  # as it finishes, so the index's order, and its digest, changed from run to run. The tests and everything before
  # the cross-compile are in the layer cache after the first.
  for platform in ${PLATFORM//,/ }; do
    log "building ${TARGET:-the last stage} for $platform"
    podman build "${flags[@]}" "${label_flags[@]}" "${target_flags[@]}" --platform "$platform" "${output_flags[@]}" \
      --iidfile "$work/iid" "$CONTEXT" >&2
  done
else
  podman build "${flags[@]}" "${label_flags[@]}" "${target_flags[@]}" --platform "$PLATFORM" "${output_flags[@]}" \
    --iidfile "$work/iid" "$CONTEXT" >&2
fi
iid=$(cat "$work/iid")
# With --manifest the iidfile names the list's manifest digest, no local image: the list's own image ID is what the
# clean-up below compares and filters on.
[ "$index" = true ] && iid=$(podman image inspect --format '{{.Id}}' "$primary")

digest=""
for tag in "${tags[@]}"; do
  if [ "$index" = true ]; then
    log "pushing the image index $IMAGE_NAME:$tag"
    podman manifest push --all --format oci --digestfile "$work/digest" "$primary" "docker://$IMAGE_NAME:$tag" >&2
  else
    podman tag "$iid" "$IMAGE_NAME:$tag"
    log "pushing $IMAGE_NAME:$tag"
    podman push --digestfile "$work/digest" "$IMAGE_NAME:$tag" >&2
  fi
  pushed=$(cat "$work/digest")
  if [ -n "$digest" ] && [ "$pushed" != "$digest" ]; then
    log "tag $tag was pushed as $pushed, expected $digest"
    exit 1
  fi
  digest=$pushed
done

flock -u 9
if [ "${DOCKYARD_BUILD_KEEP_IMAGES:-0}" != 1 ] && flock -n -x 9; then
  log "removing what this build leaves behind"
  # The test stage is only run, never pushed; removing it also frees its untagged parent layers.
  if [ -s "$work/test-iid" ] && [ "$(cat "$work/test-iid")" != "$iid" ]; then
    podman rmi "$(cat "$work/test-iid")" >/dev/null 2>&1 || true
  fi
  # The integration tests' image is only run, never pushed.
  if [ -s "$work/integration-iid" ] && [ "$(cat "$work/integration-iid")" != "$iid" ]; then
    podman rmi "$(cat "$work/integration-iid")" >/dev/null 2>&1 || true
  fi
  # The exported reports' image (a few files on scratch): the reports are in REPORTS_DIR.
  if [ -s "$work/reports-iid" ]; then
    podman rmi "$(cat "$work/reports-iid")" >/dev/null 2>&1 || true
  fi
  # Earlier builds' local tags: pushed already, so only the registry needs them. "before=" spares builds that
  # finished after this one started (a concurrent build is still pushing its tags). Untagged, not removed: an
  # earlier image and its step images are the layer cache that gives a rebuild of its inputs the same digest (a
  # clean build after a failed one must come back as the digest that was signed); `local-services.sh prune` frees
  # them.
  # Best effort, like the removals above: another build's clean-up on the same storage can remove an image while
  # this lists them ("locating item named manifest … file does not exist"); the pushed digest stands either way.
  earlier=$(podman images --filter "reference=$IMAGE_NAME" --filter "before=$iid" --format '{{.ID}}' 2>/dev/null) ||
    { log "earlier local tags not listed (the storage changed meanwhile): left for local-services.sh prune"; earlier=""; }
  printf '%s\n' "$earlier" | sort -u |
    while read -r old; do
      [ -z "$old" ] || [ "$old" = "${iid:0:12}" ] || podman untag "$old" >/dev/null 2>&1 || true
    done
  # A pushed image index: the registry holds it; its per-platform images stay, untagged, as the layer cache. Last:
  # "before=" above names the list.
  if [ "$index" = true ]; then
    podman manifest rm "$primary" >/dev/null 2>&1 || true
  fi
fi
printf '%s' "$digest"
