"""A stand-in for the KFP v2beta1 REST API on 127.0.0.1 that records every request.

It answers what ``kfp.Client`` asks when it submits runs, uploads pipelines and versions and manages
recurring runs, keeps what it is given, and plays a run's life: each read of a run moves it one state
on (PENDING, RUNNING, then ``final_state``). Tests read ``requests`` to check what a server receives.
"""

import email
import email.policy
import json
import re
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse

from http_standin import Recorded, StandIn, answer_json

API = "/apis/v2beta1"
DSPA_API = "/apis/datasciencepipelinesapplications.opendatahub.io/v1"
NOW = "2026-11-26T08:00:00Z"


@dataclass
class KfpStandIn(StandIn):
    final_state: str = "SUCCEEDED"
    requests: list[Recorded] = field(default_factory=list)
    experiments: dict = field(default_factory=dict)
    pipelines: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)
    recurring: dict = field(default_factory=dict)
    on_run_created: object = None  # called with the run: plays the cluster running it
    namespace: str = "yolo-project"
    tls: tuple[str, str] | None = None  # (certificate chain, key): serve HTTPS
    hostname: str = "127.0.0.1"  # the name its URL has (the tests' network guard resolves it to 127.0.0.1)
    route: str | None = None  # what the DSPA's status gives as its route (default: the URL it serves)

    methods = ("GET", "POST", "DELETE")

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.fullmatch(pattern, r.path)]

    # -- request handling -------------------------------------------------------------------------

    def _handle(self, handler, method):
        url = urlparse(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self._body(handler)
        headers = {name.lower(): value for name, value in handler.headers.items()}
        self.requests.append(Recorded(method, url.path, query, headers, body))
        answer_json(handler, *self._route(method, url.path, query, body))

    @staticmethod
    def _body(handler):
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        kind = handler.headers.get("Content-Type", "")
        if kind.startswith("multipart/form-data"):
            message = email.message_from_bytes(f"Content-Type: {kind}\r\n\r\n".encode() + raw,
                                               policy=email.policy.HTTP)
            return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True).decode()
                    for part in message.iter_parts()}
        return json.loads(raw) if raw else None

    def _route(self, method, path, query, body):
        routes = [
            ("GET", f"{API}/healthz", lambda m: {"multi_user": False}),
            ("GET", f"{API}/experiments", lambda m: self._list("experiments", self.experiments, query)),
            ("POST", f"{API}/experiments", lambda m: self._create_experiment(body)),
            ("GET", f"{API}/experiments/([^/]+)", lambda m: self.experiments[m[1]]),
            ("POST", f"{API}/runs", lambda m: self._create_run(body)),
            ("GET", f"{API}/runs/([^/:]+)", lambda m: self._read_run(m[1])),
            ("GET", f"{API}/pipelines", lambda m: self._list("pipelines", self.pipelines, query)),
            ("POST", f"{API}/pipelines/upload", lambda m: self._upload(query, body)),
            ("POST", f"{API}/pipelines/upload_version", lambda m: self._upload_version(query, body)),
            ("GET", f"{API}/pipelines/([^/]+)/versions", lambda m: self._list_versions(m[1], query)),
            ("POST", f"{API}/recurringruns", lambda m: self._create_recurring(body)),
            ("GET", f"{API}/recurringruns", lambda m: self._list("recurringRuns", self.recurring, query)),
            ("POST", f"{API}/recurringruns/([^/:]+):disable", lambda m: self._set_status(m[1], "DISABLED")),
            ("POST", f"{API}/recurringruns/([^/:]+):enable", lambda m: self._set_status(m[1], "ENABLED")),
            ("DELETE", f"{API}/recurringruns/([^/:]+)", lambda m: self.recurring.pop(m[1]) and {}),
            # the Kubernetes API's view of the DataSciencePipelinesApplication that serves this API
            ("GET", f"{DSPA_API}/namespaces/([^/]+)/datasciencepipelinesapplications", lambda m: self._dspa(m[1])),
        ]
        for verb, pattern, action in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                try:
                    return 200, action(match)
                except KeyError as missing:
                    return 404, {"error": f"not found: {missing}", "code": 5}
        return 404, {"error": f"no route {method} {path}", "code": 5}

    @staticmethod
    def _matches(item, query):
        if "filter" not in query:
            return True
        predicates = json.loads(query["filter"]).get("predicates", [])
        return all(item.get(p["key"]) == (p.get("string_value") or p.get("stringValue")) for p in predicates
                   if p.get("operation", p.get("op")) in ("EQUALS", 1))

    def _list(self, key, items, query):
        found = [i for i in items.values() if self._matches(i, query)]
        return {key: found, "total_size": len(found)}

    def _create_experiment(self, body):
        experiment = {"experiment_id": str(uuid.uuid4()), "display_name": body["display_name"], "created_at": NOW,
                      "storage_state": "AVAILABLE"}
        self.experiments[experiment["experiment_id"]] = experiment
        return experiment

    def _create_run(self, body):
        run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING", "created_at": NOW}
        self.runs[run["run_id"]] = run
        if self.on_run_created:
            self.on_run_created(run)
        return run

    def _read_run(self, run_id):
        run = self.runs[run_id]
        answer = dict(run)
        run["state"] = {"PENDING": "RUNNING", "RUNNING": self.final_state}.get(run["state"], run["state"])
        return answer

    def _upload(self, query, body):
        pipeline = {"pipeline_id": str(uuid.uuid4()), "display_name": query["name"],
                    "description": query.get("description", ""), "created_at": NOW}
        self.pipelines[pipeline["pipeline_id"]] = pipeline
        self._add_version(pipeline["pipeline_id"], query["name"], body["uploadfile"])
        return pipeline

    def _upload_version(self, query, body):
        if query["pipelineid"] not in self.pipelines:
            raise KeyError(query["pipelineid"])
        return self._add_version(query["pipelineid"], query["name"], body["uploadfile"])

    def _add_version(self, pipeline_id, name, spec):
        version = {"pipeline_id": pipeline_id, "pipeline_version_id": str(uuid.uuid4()), "display_name": name,
                   "created_at": NOW, "spec": spec, "order": len(self.versions)}
        self.versions[version["pipeline_version_id"]] = version
        return {k: v for k, v in version.items() if k not in ("spec", "order")}

    def _list_versions(self, pipeline_id, query):
        versions = sorted((v for v in self.versions.values() if v["pipeline_id"] == pipeline_id),
                          key=lambda v: v["order"], reverse="desc" in query.get("sort_by", ""))
        versions = versions[:int(query.get("page_size", len(versions)) or len(versions))]
        return {"pipeline_versions": [{k: v for k, v in x.items() if k not in ("spec", "order")} for x in versions],
                "total_size": len(versions)}

    def _dspa(self, namespace):
        items = [] if namespace != self.namespace else [{
            "apiVersion": "datasciencepipelinesapplications.opendatahub.io/v1",
            "kind": "DataSciencePipelinesApplication", "metadata": {"name": "dspa", "namespace": namespace},
            "status": {"components": {"apiServer": {"url": self.url, "externalUrl": self.route or self.url}}}}]
        return {"apiVersion": "datasciencepipelinesapplications.opendatahub.io/v1",
                "kind": "DataSciencePipelinesApplicationList", "items": items}

    def _create_recurring(self, body):
        recurring = {**body, "recurring_run_id": str(uuid.uuid4()), "status": "ENABLED", "created_at": NOW}
        self.recurring[recurring["recurring_run_id"]] = recurring
        return recurring

    def _set_status(self, recurring_id, status):
        self.recurring[recurring_id]["status"] = status
        return {}
