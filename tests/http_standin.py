"""What the tests' HTTP stand-ins share: a threaded server on 127.0.0.1 (HTTPS with a given certificate)
that hands every request of the named methods to one function, and a JSON answer."""

import json
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Recorded:
    """A request as a stand-in received it."""

    method: str
    path: str
    query: dict
    headers: dict  # names in lower case
    body: object


class Served:
    """Serves ``handle(request, method)`` until ``close``; ``url`` names it by ``hostname``."""

    def __init__(self, handle, methods: tuple[str, ...], tls: tuple[str, str] | None = None,
                 hostname: str = "127.0.0.1"):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

        for method in methods:
            setattr(Handler, f"do_{method}", lambda request, method=method: handle(request, method))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://{hostname}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def answer_json(request: BaseHTTPRequestHandler, status: int, payload) -> None:
    data = json.dumps(payload).encode()
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)


class StandIn:
    """A stand-in server's life: ``start``/``stop`` or ``with``; a subclass names its ``methods`` and
    ``_handle(request, method)`` and has ``tls`` and ``hostname``."""

    methods: tuple[str, ...] = ()

    def start(self):
        self._served = Served(self._handle, self.methods, self.tls, self.hostname)
        self.url = self._served.url
        return self

    def stop(self) -> None:
        self._served.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
