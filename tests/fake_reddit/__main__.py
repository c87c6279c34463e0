"""Run the fake Reddit API by hand: ``python -m tests.fake_reddit --port 8765``."""

from __future__ import annotations

import argparse
import time

from tests.fake_reddit.fixtures import build
from tests.fake_reddit.server import FakeReddit

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--window", type=float, default=600.0, help="rate-limit window (s)")
    args = ap.parse_args()
    with FakeReddit(build(), port=args.port, window_s=args.window) as fake:
        print(f"fake Reddit at {fake.url} (client id fake-client, secret fake-secret)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
