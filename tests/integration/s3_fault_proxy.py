#!/usr/bin/python3
"""An HTTP proxy in front of an S3 server that injects faults at a set rate.

  s3_fault_proxy.py --listen PORT --upstream http://127.0.0.1:UPSTREAM
                    [--rate 0.2] [--seed N] [--delay-ms 200] [--stats FILE]

Each request, with probability --rate, gets one fault instead of (or on top
of) the real answer, chosen evenly among:
  500       HTTP 500 InternalError (S3's XML error body)
  503       HTTP 503 SlowDown
  429       HTTP 429 (throttling the way some compatibles do it)
  drop      the connection is closed before any answer
  truncate  a real answer whose body is cut short, then the connection closed
  delay     the real answer, --delay-ms late
Every other request is forwarded unchanged (keep-alive both sides).
GET /__fault_proxy_stats answers the counts as JSON; --stats FILE gets them
at exit too. Traffic goes only to the loopback upstream given.

A test can also hold chosen PUTs, the way a slow network would:
GET /__fault_proxy_hold?match=SUBSTRING&ms=N&count=K makes the next K PUTs
whose path contains SUBSTRING wait N ms after their body has arrived and
before they are forwarded (so the object lands late). The stats count them
("held", and "holding" while they wait).
"""
import argparse
import http.client
import json
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

FAULTS = ["500", "503", "429", "drop", "truncate", "delay"]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}

stats_lock = threading.Lock()
stats = {"requests": 0, "forwarded": 0, "held": 0, "holding": 0, **{f: 0 for f in FAULTS}}
hold = {"match": None, "ms": 0, "count": 0}  # armed by /__fault_proxy_hold; guarded by stats_lock


def bump(name):
    with stats_lock:
        stats[name] += 1


def error_xml(code, message):
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>").encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = None
    rate = 0.0
    faults = FAULTS
    delay_s = 0.2
    rng = random.Random(0)
    rng_lock = threading.Lock()

    def log_message(self, *args):  # quiet: the test reads the stats instead
        pass

    def _pick_fault(self):
        with self.rng_lock:
            if self.rng.random() >= self.rate:
                return None
            return self.rng.choice(self.faults)

    def _send(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path == "/__fault_proxy_stats":
            with stats_lock:
                payload = json.dumps(stats).encode()
            self._send(200, payload, [("Content-Type", "application/json")])
            return
        if self.path.startswith("/__fault_proxy_hold?"):
            q = parse_qs(urlsplit(self.path).query)
            with stats_lock:
                hold.update(match=q["match"][0], ms=int(q["ms"][0]), count=int(q.get("count", ["1"])[0]))
            self._send(200, b"armed\n")
            return
        bump("requests")
        self._hold_if_armed()
        fault = self._pick_fault()
        if fault and fault != "truncate":
            bump(fault)  # a truncation counts only when there was a body to cut
        if fault == "500":
            self._send(500, error_xml("InternalError", "injected"), [("Content-Type", "application/xml")])
            return
        if fault == "503":
            self._send(503, error_xml("SlowDown", "Please reduce your request rate (injected)"),
                       [("Content-Type", "application/xml")])
            return
        if fault == "429":
            self._send(429, error_xml("TooManyRequests", "injected"), [("Content-Type", "application/xml")])
            return
        if fault == "drop":
            self.close_connection = True
            return
        if fault == "delay":
            time.sleep(self.delay_s)

        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=120)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None,
                         headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out_headers = [(k, v) for k, v in resp.getheaders()
                           if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"]
        finally:
            conn.close()
        bump("forwarded")
        if fault == "truncate" and len(data) > 1 and self.command != "HEAD":
            bump("truncate")
            self.send_response(resp.status)
            for k, v in out_headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        if self.command == "HEAD":
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP:
                    self.send_header(k, v)
            self.end_headers()
            return
        self._send(resp.status, data, out_headers)

    def _hold_if_armed(self):
        with stats_lock:
            if self.command != "PUT" or hold["count"] <= 0 or hold["match"] not in self.path:
                return
            hold["count"] -= 1
            stats["held"] += 1
            stats["holding"] += 1
            ms = hold["ms"]
        time.sleep(ms / 1000.0)
        with stats_lock:
            stats["holding"] -= 1

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--rate", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--delay-ms", type=int, default=200)
    ap.add_argument("--faults", default=",".join(FAULTS), help="comma-separated subset of " + ",".join(FAULTS))
    ap.add_argument("--stats")
    args = ap.parse_args()
    up = urlsplit(args.upstream)
    if up.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("upstream must be on loopback")
    Handler.upstream = up
    Handler.rate = args.rate
    Handler.faults = [f for f in args.faults.split(",") if f]
    if not Handler.faults or any(f not in FAULTS for f in Handler.faults):
        sys.exit("--faults must name some of " + ",".join(FAULTS))
    Handler.delay_s = args.delay_ms / 1000.0
    Handler.rng = random.Random(args.seed)
    server = ThreadingHTTPServer(("127.0.0.1", args.listen), Handler)
    server.daemon_threads = True

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
    finally:
        if args.stats:
            with stats_lock, open(args.stats, "w") as f:
                json.dump(stats, f)


if __name__ == "__main__":
    main()
