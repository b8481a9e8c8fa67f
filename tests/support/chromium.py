"""Open a page in headless Chromium and report what a person would see: the DevTools protocol over a pipe.

``--remote-debugging-pipe`` makes Chromium read protocol commands on fd 3 and write answers and
events on fd 4 (JSON, each message ending in a NUL byte): no port, no websocket library, and every
console message, uncaught exception and network request of the page comes back as an event, so a
check cannot miss one the way scraping ``--enable-logging`` output can. Debian's ``chromium``
package; :func:`find_chromium` is None where it is not installed.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


@dataclass
class PageCheck:
    """What the page did: its own ready flag, errors of every kind, and the URLs it asked for."""

    ready: str | None = None
    page_errors: str | None = None
    exceptions: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    chart_svgs: int = 0
    screenshot: Path | None = None


class _Pipe:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self.proc = proc
        self.write_fd = proc.stdin.fileno()
        self.read_fd = proc.stdout.fileno()
        self.buf = b""
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def _next_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the pipe (exit {self.proc.poll()})")
                self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:  # fmt: skip
        msg_id = next(self.ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._next_message(deadline)
            if answer.get("id") == msg_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result
            self.events.append(answer)

    def wait_event(self, method: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        if any(e.get("method") == method for e in self.events):
            return
        while True:
            event = self._next_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return


def check_page(page: Path, screenshot: Path, *, width: int = 1280, timeout: float = 60.0) -> PageCheck:
    """Load ``page`` (a file), wait until it says its charts are drawn (or fails), screenshot it whole."""
    chromium = find_chromium()
    assert chromium is not None, "chromium is not installed"
    args = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
        "--disable-extensions", "--remote-debugging-pipe", f"--window-size={width},1000", "about:blank",
    ]  # fmt: skip
    # fd 3 <- our commands (the child's stdin), fd 4 -> its messages (the child's stdout).
    proc = subprocess.Popen(
        ["sh", "-c", 'exec "$@" 3<&0 4>&1 </dev/null >/dev/null', "sh", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    pipe = _Pipe(proc)
    check = PageCheck()
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            pipe.call(f"{domain}.enable", session=session)
        pipe.call("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        pipe.wait_event("Page.loadEventFired", timeout)
        deadline = time.monotonic() + timeout

        def evaluate(expr: str) -> Any:
            answer = pipe.call(
                "Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=session
            )
            return answer.get("result", {}).get("value")

        while time.monotonic() < deadline:
            check.ready = evaluate("document.body.dataset.charts || null")
            check.page_errors = evaluate("document.body.dataset.errors || null")
            if check.ready or check.page_errors:
                break
            time.sleep(0.1)  # polling the page's own flag; the deadline bounds it
        check.chart_svgs = int(
            evaluate("document.querySelectorAll('.js-plotly-plot svg.main-svg').length") or 0
        )
        height = int(evaluate("document.documentElement.scrollHeight") or 1000)
        pipe.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        shot = pipe.call("Page.captureScreenshot", {"format": "png"}, session=session)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        check.screenshot = screenshot
        for event in pipe.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                check.exceptions.append(
                    str(details.get("exception", {}).get("description") or details.get("text"))
                )
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                check.console_errors.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                )
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                check.log_errors.append(str(params["entry"].get("text")))
            elif method == "Network.requestWillBeSent":
                check.requests.append(str(params.get("request", {}).get("url")))
        with contextlib.suppress(RuntimeError, TimeoutError):
            pipe.call("Browser.close", timeout=5)
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
    return check
