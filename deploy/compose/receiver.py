"""A webhook receiver for the compose setup: verifies signatures, prints deliveries.

Every POST with an X-WC-Webhook-Signature header is checked against
HOOK_SECRET (base64 of HMAC-SHA256 over the exact body) and printed with its
topic, webhook id and delivery id. Pings (form-encoded webhook_id=<id>, not
signed) are answered 200.

To watch walhook's failure handling, make the receiver answer every signed
delivery with another status, then go back to normal:

    curl -X PUT --data 503 http://localhost:8080/_status
    curl -X PUT --data 200 http://localhost:8080/_status
"""

import base64
import hashlib
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ.get("HOOK_SECRET", "").encode()
PORT = int(os.environ.get("PORT", "8080"))


class Receiver(BaseHTTPRequestHandler):
    status = 200  # answer for signed deliveries; set with PUT /_status

    def _reply(self, code, body=b""):
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_PUT(self):
        if self.path != "/_status":
            return self._reply(404)
        try:
            code = int(self._body().strip())
            if not 200 <= code <= 599:
                raise ValueError(code)
        except ValueError:
            return self._reply(400, b"want a status code between 200 and 599\n")
        Receiver.status = code
        log("receiver now answers deliveries with HTTP %d" % code)
        self._reply(200, b"%d\n" % code)

    def do_GET(self):
        if self.path == "/_status":
            return self._reply(200, b"%d\n" % Receiver.status)
        self._reply(200, b"ok\n")

    def do_POST(self):
        body = self._body()
        sig = self.headers.get("X-WC-Webhook-Signature")
        if sig is None:
            log("ping %s %s" % (self.path, body.decode("utf-8", "replace")))
            return self._reply(200)
        want = base64.b64encode(hmac.new(SECRET, body, hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(sig, want):
            log("BAD SIGNATURE webhook=%s delivery=%s" % (
                self.headers.get("X-WC-Webhook-ID"), self.headers.get("X-WC-Webhook-Delivery-ID")))
            return self._reply(401, b"bad signature\n")
        try:
            payload = json.dumps(json.loads(body), sort_keys=True)
        except ValueError:
            payload = body.decode("utf-8", "replace")
        log("%s webhook=%s topic=%s delivery=%s -> %d %s" % (
            self.path, self.headers.get("X-WC-Webhook-ID"), self.headers.get("X-WC-Webhook-Topic"),
            self.headers.get("X-WC-Webhook-Delivery-ID"), Receiver.status, payload))
        self._reply(Receiver.status)

    def log_message(self, fmt, *args):  # one line per delivery is printed above
        pass


def log(line):
    sys.stdout.write(line + "\n")  # one write per line: handler threads do not interleave
    sys.stdout.flush()


if __name__ == "__main__":
    if not SECRET:
        sys.exit("receiver: set HOOK_SECRET to the webhooks' secret")
    log("receiver listening on :%d" % PORT)
    ThreadingHTTPServer(("", PORT), Receiver).serve_forever()
