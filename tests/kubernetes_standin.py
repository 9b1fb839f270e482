"""A Kubernetes API stand-in for the launcher's tests, on 127.0.0.1: one kind of custom object (create, get,
watch, delete) held to its CRD as the API server holds it (``crd_schema``: a body it would refuse or prune is
answered 422 and recorded), and the pods a test gives it. After a create it plays ``script`` (the statuses the
engine's controller would write, a MODIFIED event each); ``drop_first_watch`` breaks the first watch in the
middle of a chunk, as a dropped connection does; ``forbid`` answers every create 403; every pod's log is
``log_text``."""

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import crd_schema
from http_standin import answer_json


class KubernetesStandIn:
    def __init__(self, definition: dict, script: list[dict], pods: list[dict] | None = None,
                 drop_first_watch: bool = False, forbid: bool = False, step_seconds: float = 0.2,
                 log_text: str = ""):
        self.definition, self.script, self.pods, self.log_text = definition, script, pods or [], log_text
        self.logs_read: list[tuple] = []  # (pod, container, follow) of each log read
        self.drop_first_watch, self.forbid, self.step_seconds = drop_first_watch, forbid, step_seconds
        self.plural = definition["spec"]["names"]["plural"]
        self.objects: dict[str, dict] = {}
        self.history: list[tuple[int, str, dict]] = []  # (resourceVersion, event type, object)
        self.version = 100
        self.created: list[dict] = []
        self.refused: list[str] = []
        self.deleted: list[str] = []
        self.watches: list[str] = []  # the resourceVersion each watch started from
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "KubernetesStandIn":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def api_client(self):
        from kubernetes import client

        configuration = client.Configuration(host=self.url)
        return client.ApiClient(configuration)

    def _record(self, kind: str, obj: dict) -> dict:
        with self.lock:
            self.version += 1
            obj = json.loads(json.dumps(obj))
            obj["metadata"]["resourceVersion"] = str(self.version)
            if kind != "DELETED":
                self.objects[obj["metadata"]["name"]] = obj
            self.history.append((self.version, kind, obj))
            return obj

    def _play(self, name: str) -> None:
        for status in self.script:
            time.sleep(self.step_seconds)
            with self.lock:
                current = self.objects.get(name)
            if current is None:
                return
            self._record("MODIFIED", {**current, "status": status})

    def _handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, code: int, body: dict) -> None:
                answer_json(self, code, body)

            def _status(self, code: int, reason: str, message: str) -> None:
                self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                                  "message": message, "code": code})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if standin.forbid:
                    return self._status(403, "Forbidden", f"cannot create resource {standin.plural!r}")
                problems = crd_schema.problems(body, standin.definition)
                if problems:
                    standin.refused += problems
                    return self._status(422, "Invalid", "; ".join(problems))
                if body["metadata"]["name"] in standin.objects:
                    return self._status(409, "AlreadyExists", "exists")
                standin.created.append(body)
                created = standin._record("ADDED", body)
                threading.Thread(target=standin._play, args=(body["metadata"]["name"],), daemon=True).start()
                self._send(201, created)

            def do_DELETE(self) -> None:
                name = urllib.parse.urlsplit(self.path).path.rsplit("/", 1)[1]
                obj = standin.objects.pop(name, None)
                if obj is None:
                    return self._status(404, "NotFound", name)
                standin.deleted.append(name)
                standin._record("DELETED", obj)
                self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parts.query))
                if parts.path.endswith("/pods"):
                    wanted = dict(term.partition("=")[::2] for term in query.get("labelSelector", "").split(","))
                    items = [p for p in standin.pods if wanted.items() <= p["metadata"]["labels"].items()]
                    return self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})
                if parts.path.endswith("/log"):
                    name = parts.path.rsplit("/", 2)[1]
                    standin.logs_read.append((name, query.get("container"), query.get("follow")))
                    data = standin.log_text.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    return self.wfile.write(data)
                if query.get("watch", "").lower() in ("true", "1"):
                    return self._watch(query)
                name = parts.path.rsplit("/", 1)[1]
                if name in standin.objects:
                    return self._send(200, standin.objects[name])
                self._status(404, "NotFound", name)

            def _watch(self, query: dict) -> None:
                since = int(query.get("resourceVersion") or 0)
                name = query.get("fieldSelector", "").partition("metadata.name=")[2]
                drop = standin.drop_first_watch and not standin.watches
                standin.watches.append(str(since))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    with standin.lock:
                        events = [(v, k, o) for v, k, o in standin.history
                                  if v > since and o["metadata"]["name"] == name]
                    for version, kind, obj in events:
                        line = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
                        if drop:  # half a chunk, then the connection goes: urllib3 reads a broken stream
                            self.wfile.write(f"{len(line):x}\r\n".encode() + line[: len(line) // 2])
                            self.wfile.flush()
                            self.connection.shutdown(2)
                            return
                        self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                        self.wfile.flush()
                        since = version
                    time.sleep(0.05)
                self.wfile.write(b"0\r\n\r\n")

        return Handler
