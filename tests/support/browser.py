"""Headless Chromium driven over the Chrome DevTools protocol (Debian's `chromium`, `make browser`).

A fresh profile per browser, no network beyond what a page asks for, no background services. Pages are
loaded and forms submitted the way a person would (navigation, typing into inputs, clicking buttons);
`html()` returns what the browser rendered, `screenshot()` writes a full-page PNG.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    "--window-size=1440,1000",
)


def chromium_path() -> str | None:
    """Debian's chromium (or $CHROMIUM)."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


class BrowserError(AssertionError):
    """The browser did not do what the test asked (a page did not load, an element is missing)."""


class Browser:
    def __init__(self, executable: str, *, timeout: float = 20.0) -> None:
        self._profile = Path(tempfile.mkdtemp(prefix="calehr-chromium-"))
        self._timeout = timeout
        self._process = subprocess.Popen(
            [
                executable,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={self._profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._exits = ExitStack()
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []
        self._socket = self._connect()
        self.call("Page.enable")
        self.call("Runtime.enable")

    def _connect(self) -> ClientConnection:
        port_file = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + self._timeout
        while not port_file.exists() or not port_file.read_text().strip():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise BrowserError("chromium did not start its DevTools endpoint")
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", trust_env=False, timeout=5).json()
        page = next(t for t in targets if t["type"] == "page")
        return self._exits.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, open_timeout=self._timeout)
        )

    # -- the protocol -----------------------------------------------------------------------------------
    def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + self._timeout
        while True:
            message = json.loads(self._socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == message_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return dict(message.get("result") or {})
            if "method" in message:
                self._events.append(message)

    def _wait_for(self, event: str) -> dict[str, Any]:
        deadline = time.monotonic() + self._timeout
        while True:
            for index, message in enumerate(self._events):
                if message["method"] == event:
                    del self._events[: index + 1]
                    return message
            self._events.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"no {event} within {self._timeout} s")
            message = json.loads(self._socket.recv(timeout=remaining))
            if "method" in message:
                self._events.append(message)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    # -- what a person does -------------------------------------------------------------------------------
    def open(self, url: str) -> None:
        self._events.clear()
        self.call("Page.navigate", url=url)
        self._wait_for("Page.loadEventFired")

    def type_into(self, selector: str, text: str) -> None:
        """Focus the element and type `text` as keyboard input."""
        found = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
            "if (!e) return false; e.focus(); e.value = ''; return true; })()"
        )
        if not found:
            raise BrowserError(f"no element {selector}")
        self.call("Input.insertText", text=text)

    def select(self, selector: str, value: str) -> None:
        ok = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
            f"if (!e) return false; e.value = {json.dumps(value)}; return e.value === {json.dumps(value)}; }})()"
        )
        if not ok:
            raise BrowserError(f"cannot choose {value} in {selector}")

    def click(self, selector: str) -> None:
        """Click an element (a link or a submit button) and wait for the page it leads to."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null; "
            "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
            "return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        if not box:
            raise BrowserError(f"no element {selector}")
        self._events.clear()
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)
        self._wait_for("Page.loadEventFired")

    def url(self) -> str:
        return str(self.evaluate("location.href"))

    def html(self) -> str:
        return str(self.evaluate("document.documentElement.outerHTML"))

    def text(self) -> str:
        return str(self.evaluate("document.body.innerText"))

    def screenshot(self, path: Path) -> Path:
        """A PNG of the whole page."""
        metrics = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"], "scale": 1}
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        try:
            self._exits.close()
        finally:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
