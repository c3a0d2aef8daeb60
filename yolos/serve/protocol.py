"""Request heads (request line and headers) bounded as common proxies bound them.

uvicorn's httptools protocol accepts a head of any size: a 150 MB header is read, parsed and
held, and stalls every other request of the worker. :class:`BoundedHeadProtocol` counts the
bytes of each request's head as they arrive (the chunks read wholly inside an unfinished head:
the first chunk, which also holds the request line, and the last are not counted, so the bound
is met within one read of 256 KB) and answers ``431 Request Header Fields Too Large`` (JSON, as
every error) and closes the connection once they pass :data:`MAX_HEAD_BYTES` (64 KB:
nginx allows 4 x 8 KB header lines plus its 1 KB buffer by default, Apache 8 KB per field;
no browser or HTTP client needs more). Without httptools, uvicorn's h11 protocol with the same
bound is used instead (h11 answers 400).
"""
from __future__ import annotations

import json

MAX_HEAD_BYTES = 64 * 1024


def _response(status: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"connection: close\r\n\r\n").encode() + body


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # uvicorn without httptools ("yolos[serve]" brings it)
    HttpToolsProtocol = None

if HttpToolsProtocol is not None:
    class BoundedHeadProtocol(HttpToolsProtocol):
        """httptools' protocol with a bound on each request's head (see the module doc)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._in_head, self._head_bytes, self._refused = False, 0, False

        def on_message_begin(self) -> None:
            self._in_head, self._head_bytes = True, 0
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            was_in_head = self._in_head
            super().data_received(data)
            if was_in_head and self._in_head:  # a chunk that is all head, and the head goes on
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES:
                    self._refused = True
                    self.transport.write(_response(
                        "431 Request Header Fields Too Large",
                        f"request line and headers above {MAX_HEAD_BYTES} bytes"))
                    self.transport.close()


def uvicorn_http_options() -> dict:
    """The ``uvicorn.run`` options that bound request heads."""
    if HttpToolsProtocol is not None:
        return {"http": BoundedHeadProtocol}
    return {"http": "h11", "h11_max_incomplete_event_size": MAX_HEAD_BYTES}


__all__ = ["MAX_HEAD_BYTES", "uvicorn_http_options"]
