"""A TCP port on 127.0.0.1 for a test's server, outside the kernel's ephemeral
range (the same rule as pick_unused_port in lib.sh): a port the kernel hands
out for bind(0) or for an outgoing connection can be taken by another client's
connection before the server binds it."""
import os
import random
import socket


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    lo, hi = _ephemeral_range()
    first, last = (10000, lo - 1) if lo > 11024 else (hi + 1, 65535)
    given = os.environ.get("PORTALBD_TEST_PORTS", "").split()
    if len(given) == 2:  # run_all.sh's range for this script (base, span)
        first, last = int(given[0]), int(given[0]) + int(given[1]) - 1
    for _ in range(50):
        port = random.randint(first, last)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port outside the ephemeral range")
