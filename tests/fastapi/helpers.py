"""Helpers of the FastAPI tests: the test client, and a raw ASGI call that looks at the
server at the moment the response starts (what a client reading right after the response
would see)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

__all__ = ["AsgiResult", "TestClient", "call_asgi"]


@dataclass
class AsgiResult:
    status: int = 0
    body: bytes = b""
    seen_at_start: Any = None
    messages: list[str] = field(default_factory=list)


async def call_asgi(
    app: Callable[..., Awaitable[None]],
    path: str,
    *,
    method: str = "GET",
    at_response_start: Callable[[], Any] | None = None,
) -> AsgiResult:
    """Send one request to ``app``; ``at_response_start()`` runs when the app sends
    ``http.response.start``, before the response leaves, and its value is kept."""
    result = AsgiResult()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        result.messages.append(message["type"])
        if message["type"] == "http.response.start":
            result.status = message["status"]
            if at_response_start is not None:
                result.seen_at_start = at_response_start()
        elif message["type"] == "http.response.body":
            result.body += message.get("body", b"")

    await app(scope, receive, send)
    return result
