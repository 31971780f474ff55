# Build, test and push one image with podman; print only the pushed manifest digest on stdout.
# Run as `bash -c` by components/podman_build.py (the PodmanBuild dynamic resource behind AppImage's podman builder),
# which sets from the resource's inputs:
#   IMAGE_NAME, TAGS (space separated, the first is the primary), CONTEXT, DOCKERFILE, TARGET, TEST_TARGET (empty: no
#   test stage), PLATFORM, BUILD_ARGS and LABELS (newline separated KEY=VALUE), REGISTRY, REGISTRY_USER,
#   REGISTRY_LOGIN (true: the password is on stdin), CACHE_REPO (the cache_repo input: a repository without a tag
#   that layers are pulled from and pushed to; empty: the local layer cache only).
# From the caller's environment: DOCKYARD_BUILD_NO_CACHE (1: a cold build, for the benchmarks), BUILDAH_ISOLATION.
set -euo pipefail
log() { echo "dockyard-build: $*" >&2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

flags=(--layers --isolation "${BUILDAH_ISOLATION:-chroot}" --platform "$PLATFORM" -f "$CONTEXT/$DOCKERFILE")
while IFS= read -r arg; do [ -n "$arg" ] && flags+=(--build-arg "$arg"); done <<<"${BUILD_ARGS:-}"
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
  if ! podman login --username "$REGISTRY_USER" --password-stdin "$REGISTRY" >&2; then
    log "login to $REGISTRY as $REGISTRY_USER was refused: check dockyard:registryPassword / registry.passwordEnv"
    exit 1
  fi
fi

if [ -n "${TEST_TARGET:-}" ]; then
  log "running the $TEST_TARGET stage"
  podman build "${flags[@]}" --target "$TEST_TARGET" "$CONTEXT" >&2
fi

label_flags=()
while IFS= read -r label; do [ -n "$label" ] && label_flags+=(--label "$label"); done <<<"${LABELS:-}"
read -r -a tags <<<"$TAGS"
log "building $TARGET as $IMAGE_NAME:${tags[0]}"
podman build "${flags[@]}" "${label_flags[@]}" --target "$TARGET" --iidfile "$work/iid" \
  --tag "$IMAGE_NAME:${tags[0]}" "$CONTEXT" >&2

digest=""
for tag in "${tags[@]}"; do
  podman tag "$(cat "$work/iid")" "$IMAGE_NAME:$tag"
  log "pushing $IMAGE_NAME:$tag"
  podman push --digestfile "$work/digest" "$IMAGE_NAME:$tag" >&2
  pushed=$(cat "$work/digest")
  if [ -n "$digest" ] && [ "$pushed" != "$digest" ]; then
    log "tag $tag was pushed as $pushed, expected $digest"
    exit 1
  fi
  digest=$pushed
done
printf '%s' "$digest"
