"""The platform's web service in a thread of the test process, on a free loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from dicomflow.config import Settings
from dicomflow.stack.isolated import free_port
from dicomflow.web.app import create_app


@contextmanager
def running_web(settings: Settings) -> Iterator[str]:
    """Serve ``create_app(settings)``; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


def sign_in(page: Any, base_url: str, user: str, password: str) -> Any:
    """Sign a Playwright ``page`` in through the sign-in form (as a person would); return it."""
    page.goto(f"{base_url}/signin")
    page.fill("#username", user)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("#signin-button")
    if "/signin" in page.url:
        error = page.locator("#signin-error")
        raise AssertionError(f"sign-in of {user} failed: {error.inner_text()}")
    return page
