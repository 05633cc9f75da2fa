"""Load a local HTML file in headless Chromium and report what a reader would see.

Drives Chromium through the DevTools protocol over ``--remote-debugging-pipe``
(JSON messages separated by NUL bytes on file descriptors 3 and 4), so no
Python package beyond the standard library is needed.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# move both ends out of the way first: either may already be 3 or 4
_WIRE = """import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1:3]]
r, w = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds)
os.dup2(r, 3)
os.dup2(w, 4)
for fd in {r, w, *fds} - {3, 4}:
    os.close(fd)
os.execv(sys.argv[3], sys.argv[3:])
"""
CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class PipeBrowser:
    """A headless Chromium process spoken to over the DevTools pipe."""

    def __init__(self, executable: str, *, timeout: float = 60.0):
        self.timeout = timeout
        self._next_id = 0
        self._buffer = b""
        self.events: list[dict] = []
        self._profile = tempfile.TemporaryDirectory(prefix="bayescale-chromium-")
        # child reads commands on fd 3 and writes replies on fd 4; a fresh Python
        # maps the pipe ends there and execs Chromium, which avoids running code in
        # a forked child of this multithreaded (JAX) process (no preexec_fn)
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WIRE,
                str(cmd_r),
                str(out_w),
                executable,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                f"--user-data-dir={self._profile.name}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(cmd_r, out_w),
        )
        os.close(cmd_r)
        os.close(out_w)

    # -- protocol ----------------------------------------------------------------
    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from Chromium")
            ready, _, _ = select.select([self._out_r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._out_r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and wait for its reply, recording events meanwhile."""
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float | None = None) -> dict:
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            ev = self._read_message(deadline)
            self.events.append(ev)
            if ev.get("method") == method:
                return ev

    def close(self):
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd_w, self._out_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_IMAGES_JS = """JSON.stringify(Array.from(document.images).map(i => ({
  alt: i.alt, complete: i.complete, naturalWidth: i.naturalWidth,
  naturalHeight: i.naturalHeight, src: i.src.slice(0, 40)})))"""


def inspect_page(
    html_path, screenshot=None, *, width=1200, height=900, timeout=60.0, boxes=(), first_screen=None
) -> dict:
    """Open ``html_path`` and return images, console errors, network requests and text.

    Returns
    -------
    dict
        ``images`` (alt, complete, naturalWidth, naturalHeight, src prefix),
        ``errors`` (console errors, uncaught exceptions, failed loads),
        ``requests`` (URLs the page asked for), ``text`` (``innerText``) and
        ``status`` (the ``data-status`` of the report's checks, if any) and
        ``boxes``: for each element id in ``boxes``, its ``top`` and ``bottom``
        in page pixels (None when absent). ``first_screen`` saves a PNG of the
        first ``height`` pixels, what a reader sees before scrolling.
    """
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found")
    url = Path(html_path).resolve().as_uri()
    with PipeBrowser(exe, timeout=timeout) as b:
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            b.send(f"{domain}.enable", session=sid)
        b.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=sid,
        )
        b.send("Page.navigate", {"url": url}, session=sid)
        b.wait_event("Page.loadEventFired")

        def evaluate(expr):
            res = b.send(
                "Runtime.evaluate", {"expression": expr, "returnByValue": True}, session=sid
            )
            return res["result"].get("value")

        images = json.loads(evaluate(_IMAGES_JS))
        text = evaluate("document.body.innerText")
        status = evaluate(
            "(document.querySelector('[data-status]') || {dataset: {}}).dataset.status || null"
        )
        found = {}
        for ident in boxes:
            box = evaluate(
                f"(e => e ? JSON.stringify(e.getBoundingClientRect()) : null)"
                f"(document.getElementById({json.dumps(ident)}))"
            )
            found[ident] = json.loads(box) if box else None
        if first_screen is not None:
            shot = b.send("Page.captureScreenshot", {"format": "png"}, session=sid)
            Path(first_screen).write_bytes(base64.b64decode(shot["data"]))
        if screenshot is not None:
            size = b.send("Page.getLayoutMetrics", session=sid)["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": width, "height": min(size["height"], 20000)}
            shot = b.send(
                "Page.captureScreenshot",
                {"format": "png", "captureBeyondViewport": True, "clip": {**clip, "scale": 1}},
                session=sid,
            )
            Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        errors, requests = [], []
        for ev in b.events:
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(
                    "console: " + " ".join(str(a.get("value")) for a in params.get("args", []))
                )
            elif method == "Runtime.exceptionThrown":
                errors.append("exception: " + json.dumps(params.get("exceptionDetails", {}))[:300])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                errors.append("log: " + params["entry"].get("text", ""))
            elif method == "Network.loadingFailed":
                errors.append("load failed: " + params.get("errorText", ""))
            elif method == "Network.requestWillBeSent":
                requests.append(params.get("request", {}).get("url", ""))
    return {
        "images": images,
        "errors": errors,
        "requests": requests,
        "text": text,
        "status": status,
        "boxes": found,
    }
