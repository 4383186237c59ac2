"""Events POSTed as JSON to a webhook (Home Assistant, Node-RED, a chat bot), off the frame's path through an Outbox:
a server that is down or slow costs queued (then dropped and counted) events, never frames. Transient failures
(connection, timeout, 5xx, 408, 429) are retried with backoff; other answers are refused at once."""

import http.client
import json
import logging
import urllib.error
import urllib.request
from typing import Any, Dict, Optional, Set
from urllib.parse import urlsplit, urlunsplit

from ... import __version__
from ...notify_config import WebhookSpec
from .outbox import Closing, Outbox, finite

log = logging.getLogger(__name__)

BACKOFF_S = 0.5  # the first retry's wait; doubled each time
MAX_WAIT_S = 30.0  # for the backoff and for a server's Retry-After
RETRY_STATUSES = (408, 429)  # and every 5xx


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # a redirect would carry the token headers to wherever it points (and turn the POST into a GET): not followed
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())


def _urls(url: str) -> Any:
    """(the URL sent to: without user info, which urllib would take for part of the host name;
    the URL shown: also without the query string, where tokens often ride)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host)), urlunsplit((parts.scheme, host, parts.path, "", ""))


def _json_default(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)  # numpy scalars as numbers, the rest as text


def _retry_after(error: urllib.error.HTTPError) -> Optional[float]:
    try:
        return min(MAX_WAIT_S, max(0.0, float(error.headers.get("Retry-After", ""))))
    except (TypeError, ValueError):  # absent, or an HTTP date: the usual backoff
        return None


class WebhookOutput:
    def __init__(self, spec: WebhookSpec):
        self.spec = spec
        self._send_url, self.url = _urls(spec.url)
        self.retries = 0  # retry attempts, over all events
        self._down = False  # in an outage: its first failure was logged, the next success logs the recovery
        self._refused = set()  # type: Set[int]  # statuses already warned about
        for name, value in spec.headers:
            if value.startswith("${") and not spec.header_values().get(name):
                log.warning("webhook %s: header %s is empty: $%s is not set", self.url, name, value[2:-1])
        self._outbox = Outbox("webhook %s" % urlsplit(self._send_url).netloc, self._deliver, spec.queue_size)

    def event(self, event: Dict[str, Any]) -> None:
        if not self.spec.events or event.get("event") in self.spec.events:
            # encoded now: the dict may change after this call, and a bad value fails here, once
            try:
                body = json.dumps(event, default=_json_default, allow_nan=False)
            except ValueError:  # NaN or infinity: null, as events.jsonl writes it
                body = json.dumps(finite(event), default=_json_default)
            self._outbox.put(body.encode("utf-8"))

    def _post(self, body: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "jetcam_app/%s" % __version__}
        headers.update(self.spec.header_values())  # read now, so a rotated token is picked up
        request = urllib.request.Request(self._send_url, data=body, headers=headers, method="POST")
        # within close()'s drain time, so a hung server cannot hold the end of the run
        timeout = max(0.1, min(self.spec.timeout_s, self._outbox.time_left()))
        with _OPENER.open(request, timeout=timeout) as response:
            response.read()

    def _deliver(self, body: bytes) -> bool:
        attempt = 0
        while True:
            if self._outbox.time_left() <= 0:  # close()'s drain time is up: the outbox would still call us
                raise Closing()
            wait = None  # type: Optional[float]
            try:
                self._post(body)
                self._recovered()
                return True
            except urllib.error.HTTPError as e:
                e.close()
                if not (e.code >= 500 or e.code in RETRY_STATUSES):
                    self._recovered()  # it answered: reachable, but it refuses this
                    self._refuse(e.code)
                    return False
                reason, wait = "HTTP %d" % e.code, _retry_after(e)
            except urllib.error.URLError as e:  # before OSError: it is one
                reason = str(getattr(e.reason, "strerror", None) or e.reason)
            except (OSError, http.client.HTTPException) as e:  # a timeout or reset while reading the answer
                reason = str(e) or type(e).__name__
            if not self._down:
                self._down = True
                log.warning("webhook %s: not reachable (%s), retrying with backoff; events wait in a queue of %d",
                            self.url, reason, self.spec.queue_size)
            if attempt >= self.spec.retries:
                return False  # counted failed; the outage goes on for the next event
            self._outbox.wait(wait if wait is not None else min(MAX_WAIT_S, BACKOFF_S * 2 ** attempt))
            attempt += 1
            self.retries += 1

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            counts = self._outbox.counts()
            log.info("webhook %s: reachable again (%d retries, %d events given up, %d dropped so far)",
                     self.url, self.retries, counts["failed"], counts["dropped"])

    def _refuse(self, status: int) -> None:
        if status not in self._refused:
            self._refused.add(status)
            hint = "redirects are not followed; give the final URL" if 300 <= status < 400 else \
                "check the URL and the token"
            log.warning("webhook %s: the server answered HTTP %d; events it refuses are given up (%s)",
                        self.url, status, hint)

    def close(self, timeout_s: float = 5.0) -> None:
        self._outbox.close(timeout_s)

    def summary(self) -> Dict[str, Any]:
        counts = self._outbox.counts()
        return {"url": self.url, "published": counts["published"], "dropped": counts["dropped"],
                "failed": counts["failed"], "retries": self.retries}
