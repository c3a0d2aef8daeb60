"""What bounds the server's memory per request: the body limit (ASGI middleware) and the budget
of decoded pixels in flight."""
from __future__ import annotations

import json
import threading
import time

DRAIN_BYTES = 256 * 2**20  # an oversized body is read and thrown away up to this much before the 413
DRAIN_SECONDS = 30.0


class PixelBudget:
    """A count of decoded pixels in flight, at most ``limit``: ``acquire(n)`` reserves n pixels
    or answers False at once (the server then says 503, as for a full queue); ``release(n)``
    returns them. Requests never wait for it, so it cannot hold connections open."""

    def __init__(self, limit: int):
        self.limit, self.used = int(limit), 0
        self._lock = threading.Lock()

    def acquire(self, pixels: int) -> bool:
        with self._lock:
            if self.used + pixels > self.limit:
                return False
            self.used += pixels
            return True

    def release(self, pixels: int) -> None:
        with self._lock:
            self.used -= pixels


class BodyLimit:
    """ASGI middleware: 413 for a body above ``limit`` bytes, by Content-Length before reading
    anything, or while it streams in (chunked uploads carry no length). The body is read here,
    bounded, and replayed to the app, which then never holds more than ``limit`` bytes.

    Before a 413 the rest of the body is read and discarded (up to :data:`DRAIN_BYTES` or
    :data:`DRAIN_SECONDS`, as nginx's lingering close): a client that sends its whole body before
    reading the answer (Python's urllib, requests) then sees the 413, not a reset connection."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _drain(receive)
            return await send_error(send, 413, f"request body is {length.decode(errors='replace')[:20]} bytes, "
                                               f"above the limit of {self.limit} (--max-image-mb)")
        parts, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            parts.append(message.get("body", b""))
            seen += len(parts[-1])
            if seen > self.limit:
                parts.clear()
                if message.get("more_body", False):
                    await _drain(receive)
                return await send_error(send, 413, f"request body above the limit of {self.limit} bytes "
                                                   f"(--max-image-mb)")
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()  # after the body: wait for a disconnect as usual
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _drain(receive) -> None:
    seen, deadline = 0, time.monotonic() + DRAIN_SECONDS
    while seen < DRAIN_BYTES and time.monotonic() < deadline:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["PixelBudget", "BodyLimit", "send_error"]
