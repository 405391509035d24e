#!/usr/bin/python3
"""Benchmark (not a test): what many snapshots cost (issue 23).

Starts one daemon on a file:// store, takes N snapshots (a 64 KiB write at a
random place before each, like an hourly cron on a busy volume) and reports,
at every checkpoint count of snapshots in the chain:

  * snapshot create / list / delete latency on the control socket (median of
    a few, timed inside one client: no process start-up);
  * random 4 KiB read IOPS of data written before the first snapshot (the
    read has to resolve through the whole chain), one NBD connection,
    queue depth 1, from the memory frame cache (so the index is what is timed);
  * the layer maps a read overlays on average (status index.resolve_maps /
    resolves: about 2 with the flattened base, the chain depth without);
  * the size of the newest roots record and how many roots records storage
    keeps.

Usage: /usr/bin/python3 bench/many_snapshots.py [--snapshots 10000] [--checkpoints 0,1000,10000]
Env: BUILD (default build).
"""
import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import nbd

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", os.path.join(TOP, "build"))


class Control:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.f = self.s.makefile("rwb")

    def call(self, cmd, **args):
        self.f.write(json.dumps({"v": 1, "cmd": cmd, "args": args}).encode() + b"\n")
        self.f.flush()
        resp = json.loads(self.f.readline())
        if not resp.get("ok"):
            raise SystemExit("control %s failed: %s" % (cmd, resp))
        return resp

    def timed(self, cmd, **args):
        t0 = time.perf_counter()
        self.call(cmd, **args)
        return (time.perf_counter() - t0) * 1000


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def read_iops(h, size, seconds):
    rnd = random.Random(7)
    blocks = size // 4096
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(200):
            h.pread(4096, rnd.randrange(blocks) * 4096)
        n += 200
    return n / (time.perf_counter() - t0)


def settle(c):
    """Waits until the flattener has caught up (its fold count stops moving)."""
    last = None
    for _ in range(600):
        idx = c.call("status")["result"]["index"]
        now = (idx["flat_folds"], idx["flat_layer"], idx["flat_rebuilds"])
        if now == last:
            return
        last = now
        time.sleep(0.5)


def prune_and_gc(c, h, data_bytes, seconds):
    """Prunes all but the last 10 snapshots, then times one GC pass merging their layers."""
    t0 = time.perf_counter()
    pruned = len(c.call("snapshot.prune", keep_last=10)["result"]["deleted"])
    prune_s = time.perf_counter() - t0
    # One pass, without --wait: --wait would also sit out the grace period
    # (60 s by default) before the segments the merge freed may be deleted.
    t0 = time.perf_counter()
    gc = c.call("gc")["result"]
    gc_s = time.perf_counter() - t0
    settle(c)
    after = c.call("status")["result"]["index"]
    iops = read_iops(h, data_bytes, seconds)
    print("prune of %d snapshots: %.1f s; GC pass: %.1f s (%d layers merged, %d dropped); chain depth after: %d; "
          "random 4 KiB read IOPS after: %.0f" % (pruned, prune_s, gc_s, gc["layers_merged"], gc["layers_dropped"],
                                                  after["chain_depth"], iops), file=sys.stderr, flush=True)


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--snapshots", type=int, default=10000)
    ap.add_argument("--checkpoints", default="0,1000,10000")
    ap.add_argument("--read-seconds", type=float, default=5.0)
    ap.add_argument("--prune", action="store_true", help="at the end, prune all but 10 and time one GC pass")
    ap.add_argument("--data-mib", type=int, default=64, help="written before the first snapshot, then read")
    args = ap.parse_args()
    checkpoints = sorted({int(c) for c in args.checkpoints.split(",") if int(c) <= args.snapshots})

    tmp = tempfile.mkdtemp(prefix="portalbd-bench-snaps.")
    store, state = os.path.join(tmp, "data"), os.path.join(tmp, "state")
    sock, ctl = os.path.join(tmp, "nbd.sock"), os.path.join(tmp, "ctl.sock")
    log = open(os.path.join(tmp, "daemon.log"), "w")
    daemon = subprocess.Popen([os.path.join(BUILD, "bin/portalbd"), "--storage", "file://" + store,
                               "--disk-size-gb", "16", "--nbd-address", "", "--nbd-unix", sock, "--socket", ctl,
                               "--state-dir", state, "--gc-interval-s", "0", "--journal", "off",
                               "--log-level", "warn"], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            if os.path.exists(sock) and os.path.exists(ctl):
                break
            time.sleep(0.1)
        c = Control(ctl)
        h = nbd.NBD()
        h.connect_unix(sock)
        data_bytes = args.data_mib << 20
        # Random 4 KiB blocks across the data area, so the live layer holds
        # many small extents, then flushed: the data every later read resolves.
        rnd = random.Random(1)
        chunk = os.urandom(1 << 20)
        for off in range(0, data_bytes, 1 << 20):
            h.pwrite(chunk, off)
        for _ in range(20000):
            h.pwrite(os.urandom(16) * 256, rnd.randrange(data_bytes // 4096) * 4096)
        h.flush()
        rows = []
        made = 0
        for target in checkpoints:
            while made < target:
                h.pwrite(b"\x5a" * 65536, data_bytes + rnd.randrange((8 << 30) // 65536) * 65536)
                c.call("snapshot.create", name="s%05d" % made)
                made += 1
            settle(c)
            # Warm the frame cache (every frame of the data area, so no read
            # below is a cache miss), then time reads that resolve through the chain.
            for off in range(0, data_bytes, 1 << 20):
                h.pread(1 << 20, off)
            read_iops(h, data_bytes, 1.0)
            before = c.call("status")["result"]["index"]
            iops = read_iops(h, data_bytes, args.read_seconds)
            after = c.call("status")["result"]["index"]
            maps = (after["resolve_maps"] - before["resolve_maps"]) / max(1, after["resolves"] - before["resolves"])
            creates, lists, deletes = [], [], []
            for i in range(5):
                h.pwrite(b"\x5b" * 65536, data_bytes + i * 65536)
                creates.append(c.timed("snapshot.create", name="probe%d" % i))
                lists.append(c.timed("snapshot.list"))
            for i in range(5):
                deletes.append(c.timed("snapshot.delete", name="probe%d" % i))
            roots = sorted(os.listdir(os.path.join(store, "roots"))) if os.path.isdir(os.path.join(store, "roots")) else []
            newest = os.path.getsize(os.path.join(store, "roots", roots[-1])) if roots else 0
            rss = rss_mib(daemon.pid)
            rows.append((target, iops, median(creates), median(lists), median(deletes), len(roots), newest, maps, rss,
                         after["flat_extents"], after.get("cached_extents", 0)))
            print("snapshots=%d read_iops=%.0f create_ms=%.1f list_ms=%.1f delete_ms=%.1f roots_records=%d "
                  "newest_roots_bytes=%d maps_per_read=%.1f rss_mib=%d flat_extents=%d cached_extents=%d" % rows[-1],
                  file=sys.stderr, flush=True)
        # Prune all but the last 10, then one GC pass merges their layers.
        if args.prune:
            prune_and_gc(c, h, data_bytes, args.read_seconds)
        base = rows[0][1] if rows else 1
        print("| snapshots in the chain | random 4 KiB read IOPS (x of none) | maps per read | create ms | list ms "
              "| delete ms | roots records kept | newest roots record | RSS MiB | base rows | extents cached |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print("| %d | %.0f (%.2fx) | %.1f | %.1f | %.1f | %.1f | %d | %d B | %d | %d | %d |" % (
                r[0], r[1], r[1] / base, r[7], r[2], r[3], r[4], r[5], r[6], r[8], r[9], r[10]))
        h.shutdown()
    finally:
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
