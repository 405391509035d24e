#!/usr/bin/python3
"""A counting HTTP proxy in front of an S3 server, for bench/s3_compare.sh
and (as a model of a remote store) bench/journal_compare.sh.

  s3_count_proxy.py --listen PORT --upstream http://127.0.0.1:UPSTREAM
                    [--remote] [--latency-ms MS] [--bandwidth-mib-s N]

Forwards every request unchanged (Host header included, so virtual-hosted
requests stay virtual-hosted) and counts, per HTTP method, the requests and
the body bytes sent up (request bodies) and down (response bodies). A GET on
a bucket (no key, or a list-type query) counts as LIST, not GET.
GET /__count_proxy_stats answers {"inflight": N, "by_kind": {KIND: {requests,
bytes_up, bytes_down, errors, upstream_ms_sum, upstream_ms_max, extra_ms_max}}}
with running totals; callers diff two snapshots, and wait for inflight == 0 to
know uploads have settled. upstream_ms is how long the S3 server took to
answer (request sent to response body read); extra_ms what a request spent in
the proxy beyond that and the model's sleep (reading the client's body,
writing the reply, waiting for a thread): a late answer is the server's when
upstream_ms_max shows it, the proxy's when extra_ms_max does. KIND
"canceled" counts request bodies the client abandoned (not forwarded).
Only loopback upstreams are accepted.

Remote-store model (off by default, so s3_compare.sh measures loopback):
--remote turns it on with 25 ms a request and 80 MiB/s a stream, the least
distance to any real S3; --latency-ms and --bandwidth-mib-s set either (and
turn the model on alone). Each forwarded request, once s3rver has answered,
sleeps latency + (request body + response body bytes) / bandwidth before the
reply goes out. A stream is one client connection: its requests run one after
another, so the sleep per request is the connection's bandwidth; connections
do not share a total (a remote S3 scales with connections). The model counts
as in flight.

Threads: one per client connection (ThreadingHTTPServer), each with its own
keep-alive connection upstream; the totals are guarded by one lock.
"""
import argparse
import http.client
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}

totals_lock = threading.Lock()
totals = {}  # kind -> {"requests", "bytes_up", "bytes_down", "errors"}
inflight = 0  # requests forwarded upstream and not yet answered
model = {"latency_ms": 0.0, "bandwidth_mib_s": 0.0}  # the remote-store model; 0 = off


def model_delay_s(bytes_moved):
    """What a remote store adds to one request moving BYTES_MOVED body bytes."""
    delay = model["latency_ms"] / 1000.0
    if model["bandwidth_mib_s"] > 0:
        delay += bytes_moved / (model["bandwidth_mib_s"] * 1048576.0)
    return delay


def new_totals():
    return {"requests": 0, "bytes_up": 0, "bytes_down": 0, "errors": 0, "upstream_ms_sum": 0.0, "upstream_ms_max": 0.0,
            "extra_ms_max": 0.0}


def count(kind, up, down, status, upstream_ms=0.0):
    with totals_lock:
        t = totals.setdefault(kind, new_totals())
        t["requests"] += 1
        t["bytes_up"] += up
        t["bytes_down"] += down
        t["upstream_ms_sum"] += upstream_ms
        t["upstream_ms_max"] = max(t["upstream_ms_max"], upstream_ms)
        if status >= 400:
            t["errors"] += 1


def note_extra(kind, extra_ms):
    with totals_lock:
        t = totals.setdefault(kind, new_totals())
        t["extra_ms_max"] = max(t["extra_ms_max"], extra_ms)


def request_kind(method, path, host):
    if method != "GET":
        return method
    parts = urlsplit(path)
    segments = [s for s in parts.path.split("/") if s]
    virtual = host.split(":")[0].count(".") >= 2 and not host[0].isdigit()
    is_bucket = len(segments) == (0 if virtual else 1)
    if is_bucket or "list-type" in parts.query:
        return "LIST"
    return "GET"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = None

    def log_message(self, *args):
        pass

    def _upstream(self):
        conn = getattr(self, "_conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=300)
            self._conn = conn
        return conn

    def _reply(self, status, headers, body):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self):
        global inflight
        self._started = time.monotonic()  # the request line and headers are read
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            # The client gave up mid-body (s3backer cancels a PUT when the block
            # is written again): forwarding the stub would hang the upstream.
            count("canceled", len(body), 0, 0)
            self.close_connection = True
            return
        if self.path == "/__count_proxy_stats":
            with totals_lock:
                payload = json.dumps({"inflight": inflight, "by_kind": totals, "model": model}).encode()
            self._reply(200, [("Content-Type", "application/json")], payload)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        with totals_lock:
            inflight += 1
        try:
            self._forward(headers, body)
        finally:
            with totals_lock:
                inflight -= 1

    def _forward(self, headers, body):
        sent = time.monotonic()
        for attempt in (0, 1):  # one retry when the kept-alive upstream connection went stale
            conn = self._upstream()
            try:
                conn.request(self.command, self.path,
                             body=body if body or self.command in ("PUT", "POST") else None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self._conn = None
                if attempt:
                    raise
        out = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"]
        if self.command == "HEAD":
            out = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
        upstream_s = time.monotonic() - sent
        kind = request_kind(self.command, self.path, self.headers.get("Host", ""))
        count(kind, len(body), len(data), resp.status, upstream_s * 1000.0)
        delay = model_delay_s(len(body) + len(data))
        if delay > 0:
            time.sleep(delay)
        self._reply(resp.status, out, data)
        note_extra(kind, (time.monotonic() - self._started - upstream_s - delay) * 1000.0)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class ProxyServer(ThreadingHTTPServer):
    # socketserver's listen backlog is 5. A client that opens a burst of
    # connections at once (a daemon's first read-ahead after a start: 16 GETs
    # on new connections) overflowed it; the kernel dropped the SYNs beyond
    # it, and those connections came up a second later, on the SYN
    # retransmit: cold reads ran at ~120 MiB/s instead of ~200 in a third of
    # the runs. A real S3 endpoint has no such limit.
    request_queue_size = 512


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--remote", action="store_true",
                    help="model a remote store: 25 ms a request, 80 MiB/s a stream (unless set below)")
    ap.add_argument("--latency-ms", type=float, default=None, help="added to every request (remote: 25)")
    ap.add_argument("--bandwidth-mib-s", type=float, default=None,
                    help="per stream, for request and response bodies (remote: 80; 0 = unlimited)")
    args = ap.parse_args()
    model["latency_ms"] = args.latency_ms if args.latency_ms is not None else (25.0 if args.remote else 0.0)
    model["bandwidth_mib_s"] = (args.bandwidth_mib_s if args.bandwidth_mib_s is not None
                                else (80.0 if args.remote else 0.0))
    if model["latency_ms"] < 0 or model["bandwidth_mib_s"] < 0:
        sys.exit("--latency-ms and --bandwidth-mib-s must not be negative")
    up = urlsplit(args.upstream)
    if up.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("upstream must be on loopback")
    Handler.upstream = up
    server = ProxyServer(("127.0.0.1", args.listen), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    server.serve_forever()


if __name__ == "__main__":
    main()
