"""Each library private API the project uses, behind its one function, pinned to the library version it was
read in: an upgrade fails here first, and what the code relies on is exercised against real local servers."""

import json
import os

import pytest
import tomllib
from http_standin import Served
from kfp_standin import API, KfpStandIn

from yolo_kfp.cluster import kfp_internals
from yolo_kfp.data import fiftyone_openimages
from yolo_kfp.data import openimages as oi
from yolo_kfp.params import run_parameters

PYPROJECT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyproject.toml")


def pinned(distribution: str) -> str:
    """The version pyproject.toml pins ``distribution`` to (``name==version`` in any dependency list)."""
    with open(PYPROJECT, "rb") as f:
        project = tomllib.load(f)["project"]
    extras = project["optional-dependencies"].values()
    requirements = [*project["dependencies"], *(r for extra in extras for r in extra)]
    (version,) = {r.split("==")[1] for r in requirements if r.split("==")[0].strip() == distribution}
    return version


@pytest.mark.parametrize("wrapper, distribution, checked", [
    (fiftyone_openimages, "fiftyone", fiftyone_openimages.FIFTYONE_VERSION),
    (kfp_internals, "kfp", kfp_internals.KFP_VERSION),
])
def test_the_private_apis_were_read_in_the_installed_and_pinned_version(wrapper, distribution, checked):
    assert wrapper.installed_version() == checked, (
        f"{distribution} {wrapper.installed_version()} is installed, {wrapper.__name__} was checked against "
        f"{checked}: read its private calls in the new version, then update the version there")
    assert pinned(distribution) == checked


class Files:
    """Files served over HTTP on 127.0.0.1 (as Open Images' servers would), counting the requests."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requested = files, []
        self.served = Served(self._answer, ("GET",))

    def _answer(self, request, method):
        self.requested.append(request.path)
        body = self.files[request.path]
        request.send_response(200)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def url(self, path: str) -> str:
        return self.served.url + path


@pytest.fixture
def files():
    served = Files({"/image_ids.csv": b"ImageID,Subset\n0001,train\n",
                    "/hierarchy.json": json.dumps({"LabelName": "/m/0bl9f", "Subcategory": [
                        {"LabelName": "/m/0k4j"}, {"LabelName": "/m/0199g", "Subcategory": [{"LabelName": "/m/0k4j"}]}]
                    }).encode()})
    yield served
    served.served.close()


def test_fiftyone_has_metadata_urls_for_every_split():
    for split in run_parameters.SPLITS:
        assert fiftyone_openimages.has_metadata_helpers(split), split
        for kind in ("image_ids", "detections"):
            assert fiftyone_openimages.annotation_url(split, kind).startswith("https://"), (split, kind)
    assert not fiftyone_openimages.has_metadata_helpers("nosuch")


def test_fiftyone_fetches_a_missing_file_once(files, tmp_path):
    path = str(tmp_path / "split" / oi.IMAGE_IDS_CSV)  # its folder does not exist yet
    fiftyone_openimages.download_file_if_missing(path, files.url("/image_ids.csv"), quiet=0)
    fiftyone_openimages.download_file_if_missing(path, files.url("/image_ids.csv"), quiet=-1)
    assert files.requested == ["/image_ids.csv"]
    with open(path, "rb") as f:
        assert f.read() == files.files["/image_ids.csv"]


def test_fiftyone_reads_class_names_and_writes_the_hierarchy_in_them(files, tmp_path, monkeypatch):
    import fiftyone.utils.openimages as fouo

    os.makedirs(tmp_path / "metadata")
    (tmp_path / oi.CLASSES_CSV).write_text("/m/0k4j,Car\n/m/0199g,Bicycle\n")  # no header, as Open Images
    classes = fiftyone_openimages.class_names(str(tmp_path))
    assert classes == {"/m/0k4j": "Car", "/m/0199g": "Bicycle"}
    monkeypatch.setitem(fouo._ANNOTATION_DOWNLOAD_URLS["general"], "hierarchy", files.url("/hierarchy.json"))
    fiftyone_openimages.fetch_hierarchy(str(tmp_path), classes)
    fiftyone_openimages.fetch_hierarchy(str(tmp_path), classes)  # there: not fetched again
    assert files.requested == ["/hierarchy.json"]
    with open(tmp_path / oi.HIERARCHY_JSON) as f:
        assert json.load(f) == {"LabelName": "Entity", "Subcategory": [
            {"LabelName": "Car"}, {"LabelName": "Bicycle", "Subcategory": [{"LabelName": "Car"}]}]}


@pytest.fixture
def kfp_client():
    from yolo_kfp.cluster.client import Server

    with KfpStandIn() as standin:
        yield standin, Server(host=standin.url, token="t", allow_plain_http_token=True).client()


def test_kfp_sdk_still_wants_a_version_for_a_recurring_run(kfp_client):
    """Why the private call: were this to pass, the public ``create_recurring_run`` would do."""
    _, client = kfp_client
    with pytest.raises(ValueError, match="both `pipeline_id` and `version_id` are required"):
        client.create_recurring_run(experiment_id="e1", job_name="weekly", cron_expression="0 0 3 * * 1",
                                    pipeline_id="p1")


def test_kfp_recurring_run_without_a_version_is_sent_as_the_server_wants_it(kfp_client):
    standin, client = kfp_client
    created = kfp_internals.create_recurring_run_on_latest_version(
        client, name="weekly", experiment_id="e1", pipeline_id="p1", cron="0 0 3 * * 1", params={"epochs": 5},
        catch_up=False)
    (sent,) = standin.calls("POST", f"{API}/recurringruns")
    assert sent.body["pipeline_version_reference"] == {"pipeline_id": "p1"}
    assert sent.body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * 1"}}
    assert (sent.body["display_name"], sent.body["experiment_id"], sent.body["mode"]) == ("weekly", "e1", "ENABLE")
    assert sent.body["runtime_config"]["parameters"] == {"epochs": 5}
    assert sent.body["no_catchup"] is True and sent.body["max_concurrency"] in (1, "1")
    assert created.recurring_run_id in standin.recurring
