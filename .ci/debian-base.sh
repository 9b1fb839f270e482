#!/usr/bin/env bash
# A base image made here, since no image registry is reachable from CI: a minimal Debian 12 with
# Python 3.11 (debootstrap into `buildah from scratch`). Its pip trusts the host's CA bundle, which
# includes the proxy that intercepts HTTPS on these machines.
#   .ci/debian-base.sh NAME
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
container=$(buildah from scratch)
buildah add "$container" "$rootfs" / >/dev/null
buildah config --env PIP_CERT=/etc/ssl/certs/host-ca-certificates.crt \
    --env SSL_CERT_FILE=/etc/ssl/certs/host-ca-certificates.crt --cmd /bin/sh "$container"
buildah commit --quiet --rm "$container" "$name" >/dev/null
echo "$name built"
