#!/usr/bin/env bash
# `make image`: builds the lungseg image with podman (no daemon, no registry needed).
#
# The base is Debian bookworm's python3 (3.11) made by mmdebstrap from the Debian mirror, kept
# as a tarball in the cache folder and imported into podman once; pass BASE_IMAGE to use another
# (e.g. python:3.11-slim where a registry is reachable). The host's CA bundle is mounted for pip.
#
#   IMAGE=lungseg:cpu DOCKERFILE=docker/Dockerfile BASE_IMAGE=... docker/build-image.sh
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/lungseg:cpu}
DOCKERFILE=${DOCKERFILE:-docker/Dockerfile}
CACHE=${LUNGSEG_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lungseg}
LOCAL_BASE=localhost/lungseg-base:bookworm
BASE_IMAGE=${BASE_IMAGE:-$LOCAL_BASE}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

if [ "$BASE_IMAGE" = "$LOCAL_BASE" ] && ! podman image exists "$LOCAL_BASE"; then
    tarball="$CACHE/bookworm-python3-rootfs.tar"
    if [ ! -s "$tarball" ]; then
        mkdir -p "$CACHE"
        echo "making the base image's root filesystem with mmdebstrap: $tarball"
        mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/info/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
            --format=tar bookworm "$tarball.part"
        mv "$tarball.part" "$tarball"
    fi
    podman import --change 'CMD ["/usr/bin/python3"]' "$tarball" "$LOCAL_BASE"
fi

version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
source=$(git remote get-url origin 2>/dev/null || echo unknown)

ca_args=()
if [ -s "$CA_BUNDLE" ]; then
    ca_args=(--volume "$CA_BUNDLE:/run/host-ca-bundle.crt:ro" --build-arg PIP_CA_BUNDLE=/run/host-ca-bundle.crt)
fi

previous=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
# --format docker keeps the HEALTHCHECK (the OCI image format has none); chroot isolation
# builds without the user namespaces and runtimes this machine may not offer.
podman build --isolation=chroot --format docker --layers \
    --file "$DOCKERFILE" --tag "$IMAGE" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" --build-arg SOURCE="$source" \
    "${ca_args[@]}" .
# The image this one replaces, not the cached layers of the build stage (a later build reuses
# them: only the service layer is rebuilt after a code change).
current=$(podman image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    podman rmi "$previous" >/dev/null 2>&1 || true
fi
podman image inspect "$IMAGE" --format "built {{index .RepoTags 0}}: {{.Size}} bytes"
