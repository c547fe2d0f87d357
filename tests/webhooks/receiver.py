"""A webhook receiver, run as its own process by the tests.

    python -m tests.webhooks.receiver PORT LOG SECRET MODE

MODE: ``ok`` (200), ``fail-twice`` (500, 500, then 200), ``hang`` (never answers).
Each request is appended to LOG as one JSON line, with what the ``standardwebhooks``
verifier said about it and about a copy with one byte of the body changed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

PORT, LOG, SECRET, MODE = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
lock = threading.Lock()
seen = 0


def verifies(body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(SECRET).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        global seen
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        tampered = body.replace(b"task.", b"tusk.", 1)
        with lock:
            seen += 1
            number = seen
            record = {
                "n": number,
                "path": self.path,
                "headers": headers,
                "body": body.decode(),
                "verified": verifies(body, headers),
                "tampered_verified": verifies(tampered, headers),
            }
            with open(LOG, "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
        if MODE == "hang":
            time.sleep(3600)
        status = 500 if MODE == "fail-twice" and number <= 2 else 200
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
