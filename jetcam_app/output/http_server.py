"""A small threaded HTTP server that stays robust: a socket timeout on every connection, a bound on concurrent
clients (the rest get 503 at once) and an optional access token.

The standard library's ThreadingMixIn server is used rather than a framework: MJPEG is a long blocking write per
viewer, which a thread per client serves simply, and with the bound and the timeouts the threads are few and
short-lived; no dependency is added to a Jetson's image."""

import hmac
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from typing import Optional
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
TOKEN_HEADER = "X-Jetcam-Token"
_REFUSAL = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 17\r\n"
            b"Retry-After: 5\r\nConnection: close\r\n\r\ntoo many clients\n")


class BoundedHTTPServer(ThreadingMixIn, HTTPServer):
    """At most `max_clients` connections are served at once, each by a daemon thread whose socket times out after
    the handler's `timeout`; a connection beyond the bound is answered 503 and closed on the accepting thread."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, handler, max_clients: int = 32):
        self.max_clients = int(max_clients)
        self._slots = threading.BoundedSemaphore(self.max_clients)
        self.refused = 0
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request) -> None:
        try:
            request.settimeout(0.5)  # a fresh socket's send buffer takes these bytes at once; never wait long
            request.sendall(_REFUSAL)
        except OSError as e:
            log.debug("refused client went away: %s", e)
        finally:
            self.shutdown_request(request)


def token_ok(handler: BaseHTTPRequestHandler, token: Optional[str]) -> bool:
    """True when no token is set, or the request carries it (?token=..., X-Jetcam-Token or Authorization: Bearer)."""
    if not token:
        return True
    given = parse_qs(urlsplit(handler.path).query).get("token", [""])[0]
    given = given or handler.headers.get(TOKEN_HEADER, "")
    auth = handler.headers.get("Authorization", "")
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))
