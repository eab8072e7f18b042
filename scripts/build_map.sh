#!/usr/bin/env bash
# Build the MONAI Application Package (MAP, a Docker image) of the PAM MONAI Deploy app, from Debian's packages only.
#
#   bash scripts/build_map.sh [TAG] [MODELS_DIR]     # default pam-map:0.1 and bundle/models
#   bash scripts/build_map.sh --stage-only           # only lay out build/deploy-map/context/app (no Docker)
#
# On a fresh Debian bookworm machine, as root, it:
#   1. installs Docker and debootstrap from Debian's packages (apt-get install docker.io debootstrap) when missing,
#      and starts dockerd when no engine answers (log: build/deploy-map/dockerd.log);
#   2. makes the base image $PAM_MAP_BASE (default pam-map-base:bookworm) when it does not exist: debootstrap
#      --variant=minbase --include=python3,python3-venv with the machine's own Debian mirror (from its APT sources),
#      imported with `docker import`;
#   3. writes the build context (integrations/deploy/map/make_context.py: app, models, /etc/holoscan manifests,
#      entry point, and pip's configuration of this machine: index URLs, CA bundle, local CPU torch wheel) and
#      builds integrations/deploy/map/Dockerfile with a plain `docker build` (no buildx; see the README).
# It prints the image, its size and the build time. PAM_MAP_CONTEXT=folder writes the context elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE_ONLY=0
if [ "${1:-}" = "--stage-only" ]; then STAGE_ONLY=1; shift; fi
TAG=${1:-pam-map:0.1}
MODELS=${2:-bundle/models}
BASE=${PAM_MAP_BASE:-pam-map-base:bookworm}
CONTEXT=${PAM_MAP_CONTEXT:-build/deploy-map/context}
PYTHON=${PYTHON:-python3}
WORK=build/deploy-map
mkdir -p "$WORK"

if [ "$STAGE_ONLY" = 1 ]; then
  exec "$PYTHON" integrations/deploy/map/make_context.py "$CONTEXT" --stage-only
fi
if [ ! -f "$MODELS/model.pt" ]; then
  echo "build_map: error: no $MODELS/model.pt: a MAP needs PropMask (and Box2Mask) weights; pass their folder." >&2
  exit 2
fi
start=$(date +%s)

# 1. Docker (Debian's docker.io) and debootstrap.
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "build_map: error: ${need[*]} missing; run as root (apt-get install ${need[*]})." >&2
    exit 2
  fi
  echo "build_map: installing ${need[*]} from Debian's packages"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  echo "build_map: starting dockerd (log: $WORK/dockerd.log)"
  nohup dockerd >"$WORK/dockerd.log" 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  if ! docker info >/dev/null 2>&1; then
    echo "build_map: error: dockerd did not start; see $WORK/dockerd.log: $(tail -n 1 "$WORK/dockerd.log")" >&2
    exit 1
  fi
fi

# 2. The base image: Debian bookworm minbase + python3 + python3-venv, from this machine's Debian mirror.
debian_mirror() {
  local uri
  uri=$(grep -hs -E '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v -- '-security' | head -n 1)
  [ -n "$uri" ] || uri=$(grep -hs -E '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
    awk '$3 == "bookworm" {print $2}' | head -n 1)
  echo "$uri"
}
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  mirror=$(debian_mirror)
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/pam-map-rootfs.XXXXXX")
  echo "build_map: making the base image $BASE (debootstrap bookworm from ${mirror:-the default mirror})"
  t0=$(date +%s)
  debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" ${mirror:+"$mirror"} \
    >"$WORK/debootstrap.log" 2>&1 || {
    echo "build_map: error: debootstrap failed; see $WORK/debootstrap.log: $(tail -n 1 "$WORK/debootstrap.log")" >&2
    rm -rf "$rootfs"
    exit 1
  }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import - "$BASE" >/dev/null
  rm -rf "$rootfs"
  echo "build_map: base image $BASE in $(( $(date +%s) - t0 )) s"
fi

# 3. The build context and the image.
"$PYTHON" integrations/deploy/map/make_context.py "$CONTEXT" --models "$MODELS"
t0=$(date +%s)
DOCKER_BUILDKIT=0 docker build --build-arg BASE_IMAGE="$BASE" --build-arg TAG="$TAG" -t "$TAG" "$CONTEXT" \
  >"$WORK/docker-build.log" 2>&1 || {
  echo "build_map: error: docker build failed; see $WORK/docker-build.log: $(tail -n 1 "$WORK/docker-build.log")" >&2
  exit 1
}
build_s=$(( $(date +%s) - t0 ))
size_mb=$(( $(docker image inspect -f '{{.Size}}' "$TAG") / 1000000 ))
total_s=$(( $(date +%s) - start ))
echo "build_map: built $TAG, ${size_mb} MB, in ${build_s} s (docker build); ${total_s} s in all"
