"""A search's trials for a person to compare: the table and picture, MLflow's parent and nested runs, and
the winner's settings recorded with the published model (manifest, MLflow version, Model Registry version);
against real servers (MLflow, SeaweedFS S3, the Model Registry stand-in)."""

import html.parser
import json
import re
import uuid
import xml.etree.ElementTree as ElementTree
from types import SimpleNamespace

import pytest
import yaml
from mlflow import MlflowClient
from model_registry_standin import ModelRegistryStandIn

from yolo_kfp.infra.storage import S3Url, Storage
from yolo_kfp.model import tracking
from yolo_kfp.model.export import OPSET
from yolo_kfp.model.search_report import search_record, trials_html, trials_markdown
from yolo_kfp.release import registry
from yolo_kfp.release.publish import MANIFEST

SPACE = {"lr0": [0.0005, 0.01], "freeze": [0, 10], "optimizer": ["SGD", "AdamW"]}
PLAN = [(0.0005, 0, "SGD"), (0.01, 0, "AdamW"), (0.0005, 10, "AdamW"), (0.01, 10, "SGD")]
SCORES = [0.21, 0.34, 0.27, 0.34]  # trials 1 and 3 tie: the lower index wins
TOKEN = "sa-token"


def records(run_ids=("", "", "", "")) -> list[dict]:
    return [{"trial": i, "settings": {"lr0": lr0, "freeze": freeze, "optimizer": optimizer}, "epochs": 3,
             "val": {"map50": score + 0.3, "map50_95": score, "precision": 0.7, "recall": 0.6},
             "mlflow_run_id": run_id, "seconds": 40.0 + i}
            for i, ((lr0, freeze, optimizer), score, run_id) in enumerate(zip(PLAN, SCORES, run_ids, strict=True))]


def search(trials: list[dict]) -> dict:
    return {"space": SPACE, "trials": trials, "winner": trials[1]}


def table_rows(markdown: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in markdown.splitlines()
            if line.startswith("| ")]


def test_the_table_has_every_trial_in_order_and_marks_the_winner_alone():
    trials = records()
    header, *rows = table_rows(trials_markdown(trials, trials[1]))
    assert header == ["trial", "lr0", "freeze", "optimizer", "epochs", "val mAP50", "val mAP50-95", "precision",
                      "recall", "time"]
    assert [row[0].strip("*").split()[0] for row in rows] == ["0", "1", "2", "3"]
    assert [row[6].strip("*") for row in rows] == ["0.210", "0.340", "0.270", "0.340"]
    marked = [row for row in rows if "winner" in row[0]]
    assert len(marked) == 1 and marked[0][:4] == ["**1 ★ winner**", "**0.01**", "**0**", "**AdamW**"]
    assert rows[0][1:4] == ["0.0005", "0", "SGD"] and rows[0][-1] == "40 s"


def test_text_from_users_and_the_bucket_renders_as_itself_in_githubs_own_renderer():
    """cmark-gfm, with the extensions that link bare URLs, www. names and e-mail addresses and draw tables."""
    import cmarkgfm

    from yolo_kfp.infra.markdown_text import inert

    for text in ("see http://evil.example/x", "www.evil.example", "mail a@b.example", "<img src=x onerror=y>",
                 "[a](javascript:x)", "![i](http://evil.example/i.png)", "**b** _c_ `d`", "# heading", "a | b"):
        rendered = cmarkgfm.github_flavored_markdown_to_html(f"| h |\n|---|\n| {inert(text)} |\n")
        assert "<a " not in rendered and "<img" not in rendered and "<strong>" not in rendered, text
        assert "<em>" not in rendered and "<code>" not in rendered and "<h1>" not in rendered, text
        assert rendered.count("<td>") == 1, text
        plain = re.sub(r"<[^>]+>", "", rendered).replace("\u200b", "")
        assert html.unescape(plain).split() == "h".split() + text.split(), text


def test_a_setting_value_cannot_break_the_table_or_inject_markup():
    trials = records()
    trials[2]["settings"]["optimizer"] = "<img src=x onerror=alert(1)>|[a](javascript:x)"
    markdown = trials_markdown(trials, trials[1])
    rows = table_rows(markdown)
    assert {len(row) for row in rows} == {10}, "a | in a value split a cell"
    assert "<img" not in markdown and "&lt;img" in markdown
    assert "[a](" not in markdown and "\\[a\\](" in markdown, "a link's brackets were not escaped"
    page = trials_html(trials, trials[1])
    assert "<img" not in page and "&lt;img" in page


class Elements(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.found = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


def test_the_page_is_well_formed_self_contained_and_shows_each_trial_per_setting():
    trials = records()
    page = trials_html(trials, trials[1])
    root = ElementTree.fromstring(page.removeprefix("<!DOCTYPE html>\n"))  # well-formed XML
    parser = Elements()
    parser.feed(page)
    tags = {tag for tag, _ in parser.found}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "image", "use", "a", "foreignObject"}
    assert not re.search(r"(https?:|//[a-z]|url\(|@import|src=|href=)", page, re.IGNORECASE), \
        "the page names something outside itself"
    panels = root.findall(".//svg")
    assert len(panels) == len(SPACE)
    for panel in panels:
        circles = panel.findall("circle")
        assert len(circles) == len(trials)
        winners = [c for c in circles if c.get("class") == "winner"]
        assert len(winners) == 1 and winners[0].find("title").text.startswith("trial 1 (winner)")
    lr0_panel = next(p for p in panels if p.find("text").text.startswith("lr0"))
    assert "log axis" in lr0_panel.find("text").text  # 0.0005..0.01 spans 20x
    assert len(root.findall(".//table/tr")) == len(trials) + 1


def test_a_manifest_records_only_a_search_written_as_agreed():
    summary = search_record(search(records()))
    assert summary == {"space": SPACE, "trials": 4, "winner": {"trial": 1, "settings": records()[1]["settings"],
                                                               "val": records()[1]["val"]}}
    with pytest.raises(ValueError, match="search.json in /m is not a search's record"):
        search_record({"space": SPACE, "trials": [], "winner": {"trial": "1"}}, "search.json in /m")


def test_trials_nest_under_the_parent_run_which_holds_the_winner_and_the_table(mlflow_server):
    client = MlflowClient(mlflow_server.url)
    experiment = client.create_experiment(f"search-{uuid.uuid4().hex[:6]}")
    parent = client.create_run(experiment).info.run_id
    children = [client.create_run(experiment).info.run_id for _ in range(3)]
    trials = records((*children, ""))  # the last trial ran without MLflow
    tracking.nest_runs(tracking_uri=mlflow_server.url, parent_run_id=parent, child_run_ids=[*children, ""])
    tracking.log_search(tracking_uri=mlflow_server.url, run_id=parent, search=search(trials))

    nested = client.search_runs([experiment], f"tags.`{tracking.PARENT_TAG}` = '{parent}'")
    assert sorted(r.info.run_id for r in nested) == sorted(children)
    params = client.get_run(parent).data.params
    assert params == {"search.lr0": "0.01", "search.freeze": "0", "search.optimizer": "AdamW",
                      "search.trial_count": "4", "search.winner_trial": "1"}
    assert {a.path for a in client.list_artifacts(parent, "search")} == \
        {"search/space.json", "search/trials.md", "search/trials.html"}
    space = client.download_artifacts(parent, "search/space.json")
    with open(space) as f:
        assert json.load(f) == SPACE


@pytest.fixture
def published_model(tmp_path):
    """What a searched training, its export and evaluation and the convert step hand to publish."""
    model = tmp_path / "model"
    (model / "weights").mkdir(parents=True)
    (model / "weights" / "best.pt").write_bytes(b"w" * 100)
    (model / "args.yaml").write_text(yaml.safe_dump({"epochs": 3, "lr0": 0.01, "freeze": 0}))
    (model / "search.json").write_text(json.dumps(search(records())))
    onnx = tmp_path / "onnx"
    (onnx / "yolo-kfp" / "1").mkdir(parents=True)
    (onnx / "yolo-kfp" / "1" / "model.onnx").write_bytes(b"onnx")
    (onnx / "export.json").write_text(json.dumps({"path": "yolo-kfp/1/model.onnx", "opset": OPSET, "imgsz": 160}))
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"map50": 0.6, "map50_95": 0.3, "precision": 0.7, "recall": 0.5}))
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"classes": ["Car"], "seed": 42}))
    return {"model": model, "onnx": onnx, "metrics": metrics, "stats": stats}


def test_the_published_model_carries_the_winner_in_its_manifest_and_both_registries(
        s3, bucket, mlflow_server, oci_registry, published_model, tmp_path, monkeypatch):
    """The publish step's component, with a search's winner, MLflow, the Model Registry and an image pushed."""
    from yolo_kfp.components.publish import publish

    image_registry, modelcar_base = oci_registry
    for key, value in {"AWS_S3_ENDPOINT": s3.endpoint, "AWS_ACCESS_KEY_ID": s3.access_key,
                       "AWS_SECRET_ACCESS_KEY": s3.secret_key, **image_registry.environment()}.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "token").write_text(TOKEN)
    monkeypatch.setenv(registry.TOKEN_PATH_VARIABLE, str(tmp_path / "token"))
    client = MlflowClient(mlflow_server.url)
    training_run = client.create_run(client.create_experiment(f"publish-{uuid.uuid4().hex[:6]}")).info.run_id
    name, run_id = f"model-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex

    def artifact(path, **metadata):
        return SimpleNamespace(path=str(path), metadata=metadata)

    with ModelRegistryStandIn(token=TOKEN) as standin:
        url = publish.python_func(
            model=artifact(published_model["model"], mlflow_run_id=training_run),
            onnx_model=artifact(published_model["onnx"]), metrics_json=artifact(published_model["metrics"]),
            dataset_stats=artifact(published_model["stats"]), publish_to=f"s3://{bucket}/yolo-kfp", run_id=run_id,
            mlflow_tracking_uri=mlflow_server.url, registered_model_name=name, model_registry_url=standin.url,
            publish_oci=f"{image_registry.host}/team/{name}", modelcar_base=modelcar_base)
        properties = standin.versions_of(name)[run_id]["customProperties"]
        (artifact,) = standin.artifacts_of(standin.versions_of(name)[run_id]["id"])
        assert standin.problems() == []

    storage = Storage.from_env()
    manifest = json.loads(storage.get_bytes(S3Url.parse(url).join(MANIFEST)))
    assert manifest["search"] == {"space": SPACE, "trials": 4,
                                  "winner": {"trial": 1, "settings": {"lr0": 0.01, "freeze": 0, "optimizer": "AdamW"},
                                             "val": records()[1]["val"]}}
    assert "search.json" in manifest["files"]
    assert json.loads(storage.get_bytes(S3Url.parse(url).join("search.json"))) == search(records())
    (version,) = client.search_model_versions(f"name = '{name}'")
    assert {k: v for k, v in version.tags.items() if k.startswith("search.")} == \
        {"search.lr0": "0.01", "search.freeze": "0", "search.optimizer": "AdamW"}
    assert {k: v["string_value"] for k, v in properties.items() if k.startswith("search.")} == \
        {"search.lr0": "0.01", "search.freeze": "0", "search.optimizer": "AdamW"}
    image = manifest["oci"]["uri"]  # the pushed image, by digest, in the manifest and both registries
    assert image.startswith(f"oci://{image_registry.host}/team/{name}@sha256:")
    assert version.tags["oci_image"] == artifact["uri"] == image


def test_without_a_search_the_manifest_holds_no_search(s3, bucket, published_model, monkeypatch):
    from yolo_kfp.release.publish import publish_model

    (published_model["model"] / "search.json").unlink()
    storage = Storage(endpoint=s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key)
    published = publish_model(publish_to=f"s3://{bucket}/yolo-kfp", model_dir=str(published_model["model"]),
                              metrics_path=str(published_model["metrics"]), stats_path=str(published_model["stats"]),
                              storage=storage)
    assert "search" not in published["manifest"] and "search.json" not in published["manifest"]["files"]
