"""Opens a page in Debian's headless Chromium and reports how it rendered and what it asked the network for.

Chromium is driven over the DevTools protocol on a pipe (fds 3 and 4, NUL-separated JSON), so no port is
opened. It is kept from the network twice: every name resolves to nothing and every proxied request goes to
a closed loopback port; the protocol's request log still names anything the page tried to fetch.
"""

import fcntl
import json
import os
import pathlib
import re
import select
import shutil
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass

import pytest

BROWSERS = ("chromium-headless-shell", "chromium")  # Debian's packages: the shell is the smaller
REQUIRE_ENV = "YOLO_KFP_REQUIRE_BROWSER"  # set by .ci/run, which installs the browser
MISSING = f"no headless browser ({' or '.join(BROWSERS)}; apt-get install chromium-headless-shell)"
# Every image's decoded size, the per-class table's rows and the figures as shown (innerText: "" if hidden),
# read once the page has loaded.
INSPECT = """JSON.stringify({
  images: Array.from(document.images, i => ({src: i.src.slice(0, 40), width: i.naturalWidth,
                                            height: i.naturalHeight})),
  table_rows: document.querySelectorAll('#per-class tr').length,
  headline: Array.from(document.querySelectorAll('.kpi b'), b => b.innerText),
  coco: Array.from(document.querySelectorAll('#coco tr td:last-child'), td => td.innerText)})"""
SHOWN_FIGURE = re.compile(r"[01]\.\d{3}|–")  # a figure as the report writes it: three decimals, or none


@dataclass
class Rendering:
    requests: list[str]  # every URL the page asked for, itself included
    images: list[dict]  # each <img>: the start of its src, its natural width and height (0 if it did not decode)
    table_rows: int  # rows of the table with id "per-class", its header included
    headline: list[str]  # Ultralytics' figures at the top, as shown
    coco: list[str]  # COCO's figures (the table with id "coco"), as shown


def browser_or_skip() -> str:
    """The browser's path; without one the test is skipped, or fails where CI requires it."""
    found = _browser()
    if not found:
        pytest.skip(MISSING)
    return found


def check_report(page: str, figures: int, classes: int, coco: int = 0) -> None:
    """For a test that makes its report by a long way (the demo): without a browser it warns and goes on."""
    found = _browser()
    if not found:
        warnings.warn(f"the report was not opened in a browser: {MISSING}", stacklevel=2)
        return
    assert problems(render(page, found), page, figures, classes, coco) == []


def _browser() -> str | None:
    found = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if not found and os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{MISSING}, and {REQUIRE_ENV}=1 requires one")
    return found


def render(page: str, browser: str, timeout: float = 60) -> Rendering:
    """Loads the file ``page`` and reads what rendered; the browser's files live and die in a folder of its own."""
    with tempfile.TemporaryDirectory(prefix="yolo-kfp-browser-") as home:
        to_browser, from_browser, process = _start(browser, home)
        try:
            return _Session(to_browser, from_browser, time.monotonic() + timeout).load(page)
        finally:
            to_browser.close()
            from_browser.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def problems(rendering: Rendering, page: str, figures: int, classes: int, coco: int = 0) -> list[str]:
    """What keeps ``page`` from being a self-contained report that shows its plots, its per-class table,
    Ultralytics' four figures and ``coco`` of COCO's."""
    own = pathlib.Path(page).resolve().as_uri()
    found = [f"requested {url[:80]}" for url in rendering.requests if url != own and not url.startswith("data:")]
    found += [f"image {image['src']}... did not render ({image['width']}x{image['height']})"
              for image in rendering.images if not (image["width"] > 0 and image["height"] > 0)]
    if len(rendering.images) != figures:
        found.append(f"{len(rendering.images)} images, not {figures}")
    if rendering.table_rows != classes + 1:
        found.append(f"per-class table has {rendering.table_rows} rows, not {classes} classes and a header")
    for name, shown, expected in (("Ultralytics'", rendering.headline, 4), ("COCO's", rendering.coco, coco)):
        if len(shown) != expected or not all(SHOWN_FIGURE.fullmatch(text) for text in shown):
            found.append(f"{name} figures shown are {shown}, not {expected} figures")
    return found


def _start(browser: str, home: str):
    to_read, to_browser = os.pipe()
    from_browser, to_write = os.pipe()

    def on_fds_3_and_4():  # in the child, before exec: the protocol's fixed descriptors, the only ones inherited
        high_read, high_write = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_read, to_write))
        os.dup2(high_read, 3)
        os.dup2(high_write, 4)

    args = [browser, "--headless", "--remote-debugging-pipe", "--no-sandbox", f"--user-data-dir={home}/profile",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--disable-background-networking",
            "--no-first-run", "about:blank"]
    with open(os.path.join(home, "browser.log"), "w") as log:
        process = subprocess.Popen(args, close_fds=False, preexec_fn=on_fds_3_and_4, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=log, env=dict(os.environ, TMPDIR=home, HOME=home))
    os.close(to_read)
    os.close(to_write)
    return os.fdopen(to_browser, "wb"), os.fdopen(from_browser, "rb", buffering=0), process


class _Session:
    """One page target, attached in flat mode: each command waits for its answer and keeps the events between."""

    def __init__(self, to_browser, from_browser, deadline: float):
        self.to_browser, self.from_browser, self.deadline = to_browser, from_browser, deadline
        self.buffer, self.events, self.last_id, self.session = b"", [], 0, None

    def load(self, page: str) -> Rendering:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Network.enable")
        self.call("Page.enable")
        self.call("Page.navigate", url=pathlib.Path(page).resolve().as_uri())
        while not any(event.get("method") == "Page.loadEventFired" for event in self.events):
            self.events.append(self.receive())
        seen = json.loads(self.call("Runtime.evaluate", expression=INSPECT, returnByValue=True)["result"]["value"])
        requests = [event["params"]["request"]["url"] for event in self.events
                    if event.get("method") == "Network.requestWillBeSent"]
        self.session = None
        self.call("Browser.close")
        return Rendering(requests, seen["images"], seen["table_rows"], seen["headline"], seen["coco"])

    def call(self, method: str, **params) -> dict:
        self.last_id += 1
        message = {"id": self.last_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        self.to_browser.write(json.dumps(message).encode() + b"\0")
        self.to_browser.flush()
        while True:
            answer = self.receive()
            if answer.get("id") == self.last_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def receive(self) -> dict:
        while b"\0" not in self.buffer:
            readable, _, _ = select.select([self.from_browser], [], [], max(0.0, self.deadline - time.monotonic()))
            if not readable:
                raise TimeoutError("the headless browser did not answer in time")
            chunk = self.from_browser.read(1 << 16)
            if not chunk:
                raise EOFError("the headless browser closed its DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)
