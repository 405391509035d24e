#!/usr/bin/python3
"""Snapshot atomicity under load, driven by tests/integration/test_snapshot_cut.sh.

Three NBD connections write sequence-stamped 4 KiB blocks, each to its own
region (write k of connection c goes to block c*N + k%N), while snapshots are
taken with `portalctl snapshot create`. Each snapshot must be one cut:
  * per connection it holds a prefix of that connection's writes (every block
    holds the newest of the connection's writes up to the newest one present);
  * it holds every write answered before the command was started;
  * it holds no write started after the command returned.
Usage: snapshot_cut.py NBD_SOCK EXPORT PORTALCTL CTL_SOCK [SNAPSHOTS]
"""
import struct
import subprocess
import sys
import threading
import time

import nbd

NBD_SOCK, EXPORT, PORTALCTL, CTL_SOCK = sys.argv[1:5]
SNAPSHOTS = int(sys.argv[5]) if len(sys.argv) > 5 else 6
CONNS = 3
N = 256          # blocks per connection
BLOCK = 4096

stop = threading.Event()
history = [[] for _ in range(CONNS)]  # per connection: (k, issued_ns, answered_ns)
errors = []


def writer(c):
    try:
        h = nbd.NBD()
        h.set_export_name(EXPORT)
        h.connect_unix(NBD_SOCK)
        k = 0
        while not stop.is_set():
            k += 1
            buf = struct.pack("<QQ", c + 1, k) + bytes(BLOCK - 16)
            t0 = time.monotonic_ns()
            h.pwrite(buf, (c * N + k % N) * BLOCK)
            history[c].append((k, t0, time.monotonic_ns()))
        h.shutdown()
    except Exception as e:  # reported by the main thread
        errors.append(f"writer {c}: {e!r}")


def read_stamps(export):
    h = nbd.NBD()
    h.set_export_name(export)
    h.connect_unix(NBD_SOCK)
    data = h.pread(CONNS * N * BLOCK, 0)
    h.shutdown()
    stamps = []
    for c in range(CONNS):
        row = []
        for b in range(N):
            conn, k = struct.unpack_from("<QQ", data, (c * N + b) * BLOCK)
            if k != 0 and conn != c + 1:
                raise AssertionError(f"{export}: block {c * N + b} holds connection {conn}'s data")
            row.append(k)
        stamps.append(row)
    return stamps


def main():
    threads = [threading.Thread(target=writer, args=(c,)) for c in range(CONNS)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    cuts = []
    for i in range(SNAPSHOTS):
        name = f"cut{i}"
        t0 = time.monotonic_ns()
        subprocess.run([PORTALCTL, "--socket", CTL_SOCK, "snapshot", "create", name],
                       check=True, stdout=subprocess.DEVNULL)
        cuts.append((name, t0, time.monotonic_ns()))
        time.sleep(0.15)
    time.sleep(0.2)
    stop.set()
    for t in threads:
        t.join()
    if errors:
        print("\n".join(errors))
        return 1

    failures = 0
    for name, started, returned in cuts:
        stamps = read_stamps(f"{EXPORT}@{name}")
        for c in range(CONNS):
            newest = max(stamps[c])
            for b in range(N):
                expect = newest - ((newest - b) % N) if newest >= b else 0
                if stamps[c][b] != expect:
                    print(f"FAIL {name}: connection {c} block {b} holds write {stamps[c][b]}, "
                          f"expected {expect} (newest present {newest}): not a prefix")
                    failures += 1
                    break
            must = [k for k, _, answered in history[c] if answered < started]
            if must and max(must) > newest:
                print(f"FAIL {name}: connection {c} write {max(must)} was answered before the command "
                      f"started but is missing (newest present {newest})")
                failures += 1
            late = [k for k, issued, _ in history[c] if issued > returned]
            if late and min(late) <= newest:
                print(f"FAIL {name}: connection {c} write {min(late)} started after the command "
                      f"returned but is in the snapshot")
                failures += 1
        writes = sum(len(h) for h in history)
        print(f"ok {name}: a consistent cut "
              f"(newest per connection {[max(s) for s in stamps]}, {writes} writes in all)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
