"""HTTP plumbing: a threaded keep-alive server that hands each request to an app and delivers
its Reply, including the deliberately broken deliveries (dropped connection, short body).

Two details keep it from ever being a benchmark's bottleneck: TCP_NODELAY on every connection
and each small reply written in one send, so Nagle's algorithm and delayed ACKs cannot add
40 ms per request; and no per-request logging unless asked for.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, TypeVar, overload
from urllib.parse import urlsplit

from nebula_core.testing._wire import Reply, error_reply, status_phrase

__all__ = ["App", "EmulatorServer", "Headers", "Request"]

_T = TypeVar("_T")
_MAX_BODY_BYTES = 256 * 1024 * 1024


class Headers(dict[str, str]):
    """HTTP headers whose names ignore case, as in HTTP: `h["authorization"] == h["Authorization"]`.

    Names are stored lower-cased.
    """

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__((name.lower(), value) for name, value in items)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name.lower() if isinstance(name, str) else name)

    @overload
    def get(self, name: str, default: None = None, /) -> str | None: ...
    @overload
    def get(self, name: str, default: str, /) -> str: ...
    @overload
    def get(self, name: str, default: _T, /) -> str | _T: ...
    def get(self, name: str, default: object = None, /) -> object:
        return super().get(name.lower(), default)


@dataclass(frozen=True)
class Request:
    """One parsed HTTP request; `path` has no query string."""

    method: str
    path: str
    headers: Headers
    body: bytes


App = Callable[[Request], Reply]


class EmulatorServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that stops at once, even while clients hold keep-alive sockets.

    Instead of serve_forever (which polls for shutdown every half second), the accept loop
    waits on the listening socket and a wake-up socket, so close() takes milliseconds.
    """

    request_queue_size = 128  # 32+ clients connecting at once must not be refused

    def __init__(self, host: str, port: int, app: App, *, quiet: bool) -> None:
        self.app = app
        self.quiet = quiet
        self.stopping = threading.Event()
        #: Seconds a keep-alive connection may sit idle before the server closes it (None: never).
        self.idle_timeout: float | None = None
        self.connections_opened = 0
        self.connections_closed_idle = 0
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        self._accept_thread = threading.Thread(target=self._accept, daemon=True)
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)
        self._wakeup = socket.socketpair()  # after the bind, which may fail

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup of the host, which can take seconds.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def start(self) -> None:
        """Accept connections in a background thread."""
        self._accept_thread.name = f"nebula-emulator:{self.server_port}"
        self._accept_thread.start()

    def _accept(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wakeup[0], selectors.EVENT_READ)
            while not self.stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self.socket and not self.stopping.is_set():
                        self._accept_one()

    def _accept_one(self) -> None:
        try:
            connection, client_address = self.get_request()
        except OSError:  # the client gave up between connect and accept
            return
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(connection, client_address),
            name=f"nebula-emulator:{self.server_port} {client_address[0]}:{client_address[1]}",
            daemon=True,
        )
        thread.start()  # one thread per connection, named so a leak would be easy to trace

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (read timeouts, dropped faults, stop()) is normal.
        if isinstance(sys.exc_info()[1], OSError) or self.stopping.is_set():
            return
        super().handle_error(request, client_address)

    def track(self, connection: socket.socket) -> bool:
        """Remember an open connection so close() can end it; False once closing began."""
        with self._connections_lock:
            if self.stopping.is_set():
                return False
            self._connections[connection] = threading.current_thread()
            self.connections_opened += 1
            return True

    def count_idle_close(self) -> None:
        with self._connections_lock:
            self.connections_closed_idle += 1

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.pop(connection, None)

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting, release the port, end open connections and wait for their threads."""
        with self._connections_lock:
            self.stopping.set()
            connections = dict(self._connections)
        self._wakeup[1].send(b"\0")
        if self._accept_thread.is_alive():
            self._accept_thread.join()
        self.server_close()
        for end in self._wakeup:
            end.close()
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its client
                connection.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading
        for thread in connections.values():
            thread.join(timeout)


class _Handler(BaseHTTPRequestHandler):
    server: EmulatorServer
    protocol_version = "HTTP/1.1"
    server_version = "NebulaEmulator"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.server.track(self.connection):
            self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def handle_one_request(self) -> None:
        idle = self.server.idle_timeout
        if idle is not None and not self._readable_within(idle):
            # Like a server's keep-alive timeout: close quietly, between requests, with no
            # answer. A client that reuses the socket meets a closed or reset connection.
            self.close_connection = True
            self.server.count_idle_close()
            return
        super().handle_one_request()

    def _readable_within(self, seconds: float) -> bool:
        """Whether the client sent something (or hung up) within `seconds`.

        Peeks at the socket, so nothing is consumed; clients do not pipeline, so the read
        buffer is empty between requests and the socket tells the whole story.
        """
        self.connection.settimeout(seconds)
        try:
            self.connection.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            return False
        except OSError:
            return True  # reset or shut down: the normal read path reports it
        finally:
            self.connection.settimeout(self.timeout)
        return True

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._deliver(error_reply(400, f"Unreadable request body: {exc}"))
            return
        headers = Headers(self.headers.items())
        request = Request(self.command, urlsplit(self.path).path, headers, body)
        try:
            reply = self.server.app(request)
        except Exception as exc:
            traceback.print_exc()
            reply = error_reply(500, f"The emulator failed: {exc!r}")
        self._deliver(reply)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= _MAX_BODY_BYTES:
            raise ValueError(f"Content-Length {length} is out of range")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"x", 16)
            if size == 0:
                while self.rfile.readline(65536).strip():  # trailers, then the blank line
                    pass
                return b"".join(chunks)
            total += size
            if total > _MAX_BODY_BYTES:
                raise ValueError("chunked body is too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(3)  # the CRLF after each chunk

    def _deliver(self, reply: Reply) -> None:
        if reply.delivery == "drop":
            self.close_connection = True
            return
        body = reply.body
        truncate = reply.delivery == "truncate"
        fields = {
            "Date": self.date_time_string(),
            "Server": self.server_version,
            "Content-Type": reply.content_type,
            "Content-Length": str(len(body)),
        }
        lines = [f"HTTP/1.1 {reply.status} {status_phrase(reply.status)}"]
        overridden = {name.lower() for name, _ in reply.headers}
        lines += [
            f"{name}: {value}" for name, value in fields.items() if name.lower() not in overridden
        ]
        lines += [f"{name}: {value}" for name, value in reply.headers]
        if truncate or self.close_connection:
            lines.append("Connection: close")
            self.close_connection = True
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + (body[: len(body) // 2] if truncate else body))
        self.log_request(reply.status, len(body))
