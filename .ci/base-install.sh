#!/usr/bin/env bash
# The base install (what a workbench or a CI job that only submits runs needs): compile equals the
# committed YAML, and the cluster commands answer, without torch, Ultralytics, FiftyOne or pandas.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
started=$(date +%s)
if ! "$work/venv/bin/pip" install -q . >"$work/pip.log" 2>&1; then
    cat "$work/pip.log" >&2
    exit 1
fi
"$work/venv/bin/yolo-kfp" compile --output "$work/pipeline.yaml" >/dev/null
cmp "$work/pipeline.yaml" pipeline/yolo_pipeline.yaml
"$work/venv/bin/yolo-kfp" submit --help >/dev/null
"$work/venv/bin/yolo-kfp" schedule --help >/dev/null
for heavy in torch ultralytics fiftyone pandas cv2; do
    if "$work/venv/bin/python" -c "import $heavy" 2>/dev/null; then
        echo "base install pulled in $heavy" >&2
        exit 1
    fi
done
echo "base install: $(( $(date +%s) - started )) s; compile equals the committed YAML; submit and schedule answer"
