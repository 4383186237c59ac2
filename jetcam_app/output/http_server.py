"""A small threaded HTTP server that stays robust: a socket timeout on every connection, a bound on concurrent
clients (the rest get 503 at once) and an optional access token.

The standard library's ThreadingMixIn server is used rather than a framework: MJPEG is a long blocking write per
viewer, which a thread per client serves simply, and with the bound and the timeouts the threads are few and
short-lived; no dependency is added to a Jetson's image."""

import dataclasses
import hmac
import logging
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from typing import Mapping, Optional
from urllib.parse import parse_qs, urlsplit

from ..errors import ConfigError

log = logging.getLogger(__name__)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
TOKEN_HEADER = "X-Jetcam-Token"
TOKEN_ENV = "JETCAM_HTTP_TOKEN"  # the token's ways in that no other user sees in `ps`: this, or output.http_token_file
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


def resolve_token(token: Optional[str], token_file: Optional[str], environ: Mapping[str, str]) -> Optional[str]:
    """The page's token: output.http_token (--http-token), else the first line of output.http_token_file
    (--http-token-file), else $JETCAM_HTTP_TOKEN; None when none is set."""
    if token and token_file:
        raise ConfigError("output.http_token and output.http_token_file are both set; keep the file (a flag's value "
                          "shows in ps)")
    if not token_file:
        return token or environ.get(TOKEN_ENV) or None
    try:
        with open(os.path.expanduser(token_file), encoding="utf-8") as f:
            line = f.readline().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("cannot read output.http_token_file %s (%s); fix: give a readable file whose first line "
                          "is the token" % (token_file, getattr(e, "strerror", None) or e)) from e
    if not line:
        raise ConfigError("output.http_token_file %s is empty; fix: write the token on its first line" % token_file)
    return line


def with_resolved_token(config, environ: Mapping[str, str]):
    """The config with output.http_token resolved (resolve_token) when the page is on: read once, before the run,
    so a missing file fails at once and summary.json and --check know a token is required."""
    out = config.output
    if not out.http_port:
        return config
    token = resolve_token(out.http_token, out.http_token_file, environ)
    return config if token == out.http_token else dataclasses.replace(
        config, output=dataclasses.replace(out, http_token=token))
