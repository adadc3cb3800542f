"""A minimal headless-Chromium driver over the DevTools protocol (--remote-debugging-pipe), for page checks.

No Playwright or Selenium: Chromium reads JSON commands on fd 3 and writes replies and events on fd 4,
each message ended by a NUL byte. `open_page` loads a file at a given viewport width, collects console
errors, uncaught exceptions and failed loads, evaluates a JavaScript expression and takes a full-page
screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BINARIES = (
    "chromium-headless-shell",
    "chromium",
    "chromium-browser",
    "google-chrome",
    "chrome-headless-shell",
)


def find_chromium() -> str | None:
    """Path of a Chromium binary on PATH (Debian's chromium-headless-shell first), or None."""
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageResult:
    """What a page load produced: the evaluated value, errors seen, and a PNG screenshot."""

    value: Any
    errors: list[str] = field(default_factory=list)
    screenshot: bytes = b""


class _Pipe:
    def __init__(self, binary: str, width: int, height: int, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds() -> None:  # in the child: the protocol's fixed descriptors 3 (commands) and 4 (replies)
            # via fresh copies: a pipe end may already be 3 or 4, and dup2(fd, fd) keeps close-on-exec
            read, write = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(read, 3)
            os.dup2(write, 4)

        args = [
            binary,
            "--headless",
            "--remote-debugging-pipe",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--allow-file-access-from-files",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        # close_fds would close 3 and 4 after preexec_fn; Python's own descriptors are close-on-exec anyway
        self.proc = subprocess.Popen(
            args, preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            if time.monotonic() > deadline:
                raise TimeoutError("no reply from Chromium")
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium closed the pipe (exit {self.proc.poll()})")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(
        self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60.0
    ) -> dict:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._read(deadline)
            if event.get("method") == method:
                return event
            self.events.append(event)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def _errors(events: list[dict]) -> list[str]:
    out = []
    for e in events:
        p, method = e.get("params", {}), e.get("method")
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(
                "console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"])
            )
        elif method == "Runtime.exceptionThrown":
            details = p["exceptionDetails"]
            out.append(
                "exception: " + details.get("exception", {}).get("description", details.get("text", ""))
            )
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            out.append(
                f"log ({p['entry'].get('source')}): {p['entry'].get('text')} {p['entry'].get('url', '')}"
            )
        elif method == "Network.loadingFailed":
            out.append(f"load failed: {p.get('errorText')}")
    return out


def open_page(
    binary: str, page: Path, script: str, profile: Path, width: int = 1400, height: int = 900
) -> PageResult:
    """Load `page` at `width` x `height` CSS pixels, evaluate `script` (JSON value), screenshot the page."""
    pipe = _Pipe(binary, width, height, profile)
    try:
        target = pipe.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            pipe.send(f"{domain}.enable", session=session)
        pipe.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        pipe.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        pipe.wait_for("Page.loadEventFired")
        value = pipe.send(
            "Runtime.evaluate",
            {"expression": script, "returnByValue": True, "awaitPromise": True},
            session=session,
        )
        if "exceptionDetails" in value:
            raise RuntimeError(f"the check script failed: {value['exceptionDetails']}")
        metrics = pipe.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
        shot = pipe.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": metrics["height"], "scale": 1},
            },
            session=session,
        )
        return PageResult(value["result"].get("value"), _errors(pipe.events), base64.b64decode(shot["data"]))
    finally:
        pipe.close()
