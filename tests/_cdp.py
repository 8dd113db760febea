"""A small Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (standard library only).

Why this and not Selenium or Playwright: the browser test needs console errors, script
exceptions, dialogs, image decoding and a screenshot, which CDP gives directly. Chromium speaks
CDP on two inherited file descriptors (3: commands in, 4: replies and events out; JSON messages
ended by a NUL byte) when started with ``--remote-debugging-pipe``, so the client is a subprocess
and two pipes: no chromedriver, no Python or npm package, no open port.

    with Browser("/usr/bin/chromium", user_data_dir) as browser:
        page = browser.new_page(width=1366, height=768)
        page.navigate("file:///.../index.html")
        value = page.evaluate("document.title")
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

#: Chromium flags for a quiet, isolated, offline-friendly headless run.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--remote-debugging-pipe")


def _above_four(fd: int) -> int:
    """``fd`` moved to a descriptor above 4 (which the child's 3 and 4 then cannot clash with)."""
    if fd > 4:
        return fd
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class CDPError(RuntimeError):
    """Chromium answered a command with an error, died, or did not answer in time."""


class Browser:
    """A headless Chromium driven over the CDP pipe. Every event received is kept in :attr:`events`."""

    def __init__(self, executable: str, user_data_dir: Path, *, timeout: float = 60.0):
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        self._buffer = b""
        self.log_path = Path(user_data_dir) / "chromium-stderr.log"  # a file: a full pipe would block Chromium
        Path(user_data_dir).mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        commands_r, self._commands = map(_above_four, os.pipe())
        self._replies, replies_w = map(_above_four, os.pipe())
        # bash (dash takes no descriptor above 9) puts the pipe ends on the descriptors Chromium reads (3) and writes (4), then execs it
        self.process = subprocess.Popen(
            [shutil.which("bash") or "/bin/bash", "-c", f'exec "$0" "$@" 3<&{commands_r} 4>&{replies_w} {commands_r}<&- {replies_w}>&-',
             executable, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            pass_fds=(commands_r, replies_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=self._log)
        os.close(commands_r)
        os.close(replies_w)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("Browser.close", timeout=10)
            except (CDPError, OSError):
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for fd in (self._commands, self._replies):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()

    # -- the protocol ---------------------------------------------------------------------------------

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile go to :attr:`events`."""
        self._next_id += 1
        wanted = self._next_id
        message: dict[str, Any] = {"id": wanted, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            reply = self._read(deadline)
            if reply is None:
                raise CDPError(f"no answer to {method} within the timeout")
            if reply.get("id") == wanted:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def wait_until(self, condition: Any, what: str, *, timeout: float | None = None) -> None:
        """Read messages until ``condition()`` holds (CDPError naming ``what`` at the timeout)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not condition():
            if self._read(deadline) is None and time.monotonic() >= deadline:
                raise CDPError(f"no {what} within the timeout")

    def drain(self, seconds: float) -> None:
        """Keep reading events for ``seconds`` (late console messages, exceptions)."""
        deadline = time.monotonic() + seconds
        while self._read(deadline) is not None:
            pass

    def _read(self, deadline: float) -> dict[str, Any] | None:
        """The next message (events are also appended to :attr:`events`), or None at the deadline."""
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._replies], [], [], left)
            if not ready:
                return None
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                err = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
                raise CDPError(f"chromium closed the pipe (exit status {self.process.poll()}): {err}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self.events.append(message)
            if message["method"] == "Page.javascriptDialogOpening":  # never leave a page blocked on alert()
                self._dismiss(message.get("sessionId"))
        return message

    def _dismiss(self, session: str | None) -> None:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": "Page.handleJavaScriptDialog",
                                   "params": {"accept": False}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")

    # -- pages ----------------------------------------------------------------------------------------

    def new_page(self, *, width: int, height: int) -> Page:
        """A new tab with a ``width`` x ``height`` viewport, console and log events on."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for method in ("Page.enable", "Runtime.enable", "Log.enable"):
            page.send(method)
        page.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        return page


class Page:
    """One tab of a :class:`Browser` (a flattened CDP session)."""

    def __init__(self, browser: Browser, session: str):
        self.browser, self.session = browser, session

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session)

    def navigate(self, url: str, *, settle: float = 1.0) -> None:
        """Load ``url``, wait for its load event, then ``settle`` seconds more for late events."""
        def loads() -> int:
            return sum(1 for e in self.browser.events
                       if e.get("method") == "Page.loadEventFired" and e.get("sessionId") == self.session)

        before = loads()
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"navigation to {url} failed: {result['errorText']}")
        self.browser.wait_until(lambda: loads() > before, f"load event of {url}")
        self.browser.drain(settle)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression (promises awaited); a thrown exception raises."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise CDPError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        """A PNG of the viewport (or of the whole page) at ``path``."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.send("Page.captureScreenshot", params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions, browser log errors and dialogs of this page, in words."""
        out = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append("console." + params["type"] + ": " + " ".join(
                    str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                out.append("exception: " + str(details.get("exception", {}).get("description", details.get("text"))))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                out.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
            elif method == "Page.javascriptDialogOpening":
                out.append(f"dialog ({params.get('type')}): {params.get('message')}")
        return out
