#!/usr/bin/env bash
# A base image made here, since no image registry is reachable from CI: a minimal Debian 12 with
# Python 3.11 (debootstrap into `buildah from scratch`). Its pip trusts the host's CA bundle, which
# includes the proxy that intercepts HTTPS on these machines, and takes PIP_EXTRA_INDEX_URL from here
# when set (package indexes on the host's disk that the builds mount).
#   [PIP_EXTRA_INDEX_URL=...] .ci/debian-base.sh NAME
set -euo pipefail
name=${1:-localhost/yolo-kfp-ci-base:bookworm}
if buildah inspect --type image "$name" >/dev/null 2>&1; then
    echo "$name exists"
    exit 0
fi
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" \
    http://deb.debian.org/debian >/dev/null
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/host-ca-certificates.crt"
env=(--env PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt --env SSL_CERT_FILE=/etc/ssl/certs/host-ca-certificates.crt)
[ -n "${PIP_EXTRA_INDEX_URL:-}" ] && env+=(--env "PIP_EXTRA_INDEX_URL=$PIP_EXTRA_INDEX_URL")
container=$(buildah from scratch)
buildah add "$container" "$rootfs" / >/dev/null
buildah config "${env[@]}" --cmd /bin/sh "$container"
buildah commit --quiet --rm "$container" "$name" >/dev/null
echo "$name built"
