"""An HTTP server that answers praw like Reddit's API does, from fixtures.

Endpoints (the ones a read-only praw crawler calls):

* ``POST /api/v1/access_token`` — application-only OAuth
  (``grant_type=client_credentials``, HTTP basic auth with the client id and
  secret); answers a bearer token as Reddit does.
* ``GET /r/{sub[+sub...]|all}/new`` and ``/r/{...}/comments`` — listings of
  t3 / t1 things, newest first, with ``limit`` (max 100), ``after`` and
  ``before`` pagination.
* ``GET /user/{name}/submitted`` and ``/user/{name}/comments`` — a user's
  history, newest first, cut at Reddit's 1000-item listing cap; a suspended
  user answers 403.

Every API answer carries ``X-Ratelimit-Used``, ``-Remaining`` and ``-Reset``
for a fixed window (Reddit: 1000 requests per 600 s window for OAuth
clients; tests shorten the window). A request made with no budget left is
answered 429 and counted in ``violations``. The clock of the "live" listings
moves on by ``step`` things at every listing request, so a stream sees new
writings arriving. ``served`` records every thing handed out.

Not covered: authenticated user endpoints, submission comment trees
(``/comments/{id}``), ``/api/info``, search, 5xx and network faults,
``before`` anchors that Reddit forgets (deleted things), HTML/JSON escaping
differences of ``raw_json``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from tests.fake_reddit.fixtures import FixtureData

LISTING_CAP = 1000


class FakeReddit:
    """The server's state; ``with FakeReddit(...) as fake: fake.url``."""

    def __init__(self, data: FixtureData, client_id: str = "fake-client",
                 client_secret: str = "fake-secret", step: int = 8,
                 window_s: float = 600.0, window_requests: int = 1000,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.data = data
        self.client_id = client_id
        self.client_secret = client_secret
        self.step = step
        self.window_s = window_s
        self.window_requests = window_requests
        self.present = data.live_start_index  # things[:present] exist "now"
        self.lock = threading.Lock()
        self.served: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.user_agents: set[str] = set()
        self.violations = 0
        self.tokens: set[str] = set()
        self._window_start = time.monotonic()
        self._window_used = 0
        self.subreddits = {t["data"]["subreddit"].casefold() for t in data.things}
        self._by_author: dict[str, list[dict]] = {}
        for t in data.things:
            self._by_author.setdefault(t["data"]["author"].casefold(), []).append(t)
        self._server = ThreadingHTTPServer((host, port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeReddit:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- rate limit -----------------------------------------------------------
    def charge(self) -> tuple[bool, dict[str, str]]:
        """Count one request; (allowed, X-Ratelimit headers)."""
        with self.lock:
            now = time.monotonic()
            if now - self._window_start >= self.window_s:
                self._window_start, self._window_used = now, 0
            allowed = self._window_used < self.window_requests
            if allowed:
                self._window_used += 1
            else:
                self.violations += 1
            reset = max(0, int(self._window_start + self.window_s - now))
            headers = {
                "x-ratelimit-used": str(self._window_used),
                "x-ratelimit-remaining": f"{self.window_requests - self._window_used:.1f}",
                "x-ratelimit-reset": str(reset),
            }
        return allowed, headers

    # -- listings -------------------------------------------------------------
    def live_listing(self, subs: str, kind: str) -> list[dict]:
        with self.lock:
            present = self.present
            self.present = min(len(self.data.things), self.present + self.step)
        wanted = None if subs.lower() == "all" else {s.casefold() for s in subs.split("+")}
        items = [t for t in self.data.things[:present] if t["kind"] == kind
                 and (wanted is None or t["data"]["subreddit"].casefold() in wanted)]
        return items[::-1]

    def user_listing(self, name: str, kind: str) -> list[dict] | None:
        if name.casefold() == self.data.suspended.casefold():
            return None
        with self.lock:
            present = self.present
        visible = {id(t) for t in self.data.things[:present]}
        items = [t for t in self._by_author.get(name.casefold(), [])
                 if t["kind"] == kind and id(t) in visible]
        return items[::-1][:LISTING_CAP]

    def page(self, items: list[dict], query: dict[str, list[str]]) -> dict:
        limit = min(max(int(query.get("limit", ["25"])[0] or 25), 1), 100)
        names = [t["data"]["name"] for t in items]
        after = query.get("after", [None])[0]
        before = query.get("before", [None])[0]
        if before:
            if before not in names:
                chunk: list[dict] = []  # Reddit answers nothing for an unknown anchor
            else:
                i = names.index(before)
                chunk = items[max(0, i - limit):i]
        else:
            start = names.index(after) + 1 if after in names else (0 if not after else
                                                                     len(items))
            chunk = items[start:start + limit]
        more = bool(chunk) and names.index(chunk[-1]["data"]["name"]) + 1 < len(items)
        with self.lock:
            for t in chunk:
                self.served[t["data"]["name"]] += 1
        return {
            "kind": "Listing",
            "data": {
                "after": chunk[-1]["data"]["name"] if chunk and more and not before else None,
                "dist": len(chunk),
                "modhash": None,
                "geo_filter": "",
                "children": chunk,
                "before": chunk[0]["data"]["name"] if chunk and (after or before) else None,
            },
        }


def _make_handler(fake: FakeReddit):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Buffered writes: headers and body leave in one segment (flushed by
        # handle_one_request), avoiding Nagle / delayed-ACK stalls per request.
        wbufsize = -1

        def log_message(self, fmt, *args) -> None:  # quiet: tests read counters instead
            pass

        def _send(self, status: int, body: dict, headers: dict[str, str] | None = None
                  ) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            fake.user_agents.add(self.headers.get("User-Agent", ""))
            fake.requests[url.path] += 1
            if url.path.rstrip("/") != "/api/v1/access_token":
                self._send(404, {"message": "Not Found", "error": 404})
                return
            auth = self.headers.get("Authorization", "")
            expected = base64.b64encode(
                f"{fake.client_id}:{fake.client_secret}".encode()).decode()
            if auth != f"Basic {expected}":
                self._send(401, {"message": "Unauthorized", "error": 401})
                return
            if form.get("grant_type") != ["client_credentials"]:
                self._send(200, {"error": "unsupported_grant_type"})
                return
            token = f"fake-{len(fake.tokens)}-{time.monotonic_ns()}"
            fake.tokens.add(token)
            self._send(200, {"access_token": token, "token_type": "bearer",
                             "expires_in": 86400, "scope": "*"})

        def do_GET(self) -> None:
            url = urlparse(self.path)
            fake.user_agents.add(self.headers.get("User-Agent", ""))
            fake.requests[url.path] += 1
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("bearer ") or auth[7:] not in fake.tokens:
                self._send(401, {"message": "Unauthorized", "error": 401},
                           {"www-authenticate": 'Bearer realm="reddit", error="invalid_token"'})
                return
            allowed, rl = fake.charge()
            if not allowed:
                self._send(429, {"message": "Too Many Requests", "error": 429}, rl)
                return
            parts = [p for p in url.path.split("/") if p]
            query = parse_qs(url.query)
            if (len(parts) == 3 and parts[0] == "r" and parts[1].lower() != "all"
                    and not {x.casefold() for x in parts[1].split("+")} <= fake.subreddits):
                # Reddit redirects a listing of an unknown subreddit to its search page.
                self._send(302, {}, {**rl, "Location": f"/subreddits/search?q={parts[1]}"})
            elif len(parts) == 3 and parts[0] == "r" and parts[2] in ("new", "comments"):
                items = fake.live_listing(parts[1], "t3" if parts[2] == "new" else "t1")
                self._send(200, fake.page(items, query), rl)
            elif len(parts) == 3 and parts[0] == "user" and parts[2] in ("submitted",
                                                                          "comments"):
                items = fake.user_listing(parts[1], "t3" if parts[2] == "submitted" else "t1")
                if items is None:
                    self._send(403, {"reason": "suspended", "message": "Forbidden",
                                     "error": 403}, rl)
                else:
                    self._send(200, fake.page(items, query), rl)
            else:
                self._send(404, {"message": "Not Found", "error": 404}, rl)

    return Handler
