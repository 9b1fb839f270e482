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
# One top-level name in site-packages, yolo_kfp, beside its dist-info, and one console script: what the wheel's
# RECORD lists; run outside the repository so that its folders are not importable from the current directory.
(cd "$work" && "$work/venv/bin/python" -c '
import importlib.metadata, importlib.util, sys
files = [str(f) for f in importlib.metadata.distribution("yolo-kfp").files]
names = sorted({f.split("/")[0] for f in files if not f.startswith("..")})
scripts = sorted(f.rsplit("/", 1)[-1] for f in files if f.startswith(".."))
print("site-packages gained:", ", ".join(names), "and bin/" + ", bin/".join(scripts))
bare = [name for name in ("components", "pipeline") if importlib.util.find_spec(name)]
expected = ["yolo_kfp", "yolo_kfp-" + importlib.metadata.version("yolo-kfp") + ".dist-info"]
if names != expected or scripts != ["yolo-kfp"] or bare:
    sys.exit(f"the wheel must add only yolo_kfp, its dist-info and bin/yolo-kfp; importable bare: {bare}")
')
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
echo "base install: $(( $(date +%s) - started )) s; one package; compile equals the committed YAML; submit and schedule answer"
