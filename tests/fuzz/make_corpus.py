#!/usr/bin/python3
"""Writes the NBD seed corpus (tests/fuzz/corpus/nbd_connection/): client
streams for nbd_connection_fuzz.cc. Byte 0 picks the mode: even = the whole
stream from the client flags on; odd = canned handshake first (bit 1: the
read-only export), the rest is transmission-phase requests.

The segment corpus (tests/fuzz/corpus/segment/) holds real segment objects
from a file:// store (small ones, lz4), copied with --segments DIR.

  make_corpus.py [--segments DIR]
"""
import argparse
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
NBD_DIR = os.path.join(HERE, "corpus", "nbd_connection")
SEG_DIR = os.path.join(HERE, "corpus", "segment")

IHAVEOPT = 0x49484156454F5054
REQ_MAGIC = 0x25609513
READ, WRITE, DISC, FLUSH, TRIM, CACHE, ZEROES, BLOCK_STATUS = 0, 1, 2, 3, 4, 5, 6, 7
FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO = 1, 2, 4, 8, 16


def opt(code, payload=b""):
    return struct.pack(">QII", IHAVEOPT, code, len(payload)) + payload


def name(s):
    b = s.encode()
    return struct.pack(">I", len(b)) + b


def req(cmd, off=0, length=0, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie, off, length) + payload


FLAGS = struct.pack(">I", 3)


def handshakes():
    yield "go_disk", b"\x00" + FLAGS + opt(7, name("disk") + b"\x00\x00") + req(READ, 0, 4096) + req(DISC)
    yield "export_name", b"\x00" + FLAGS + opt(1, b"disk") + req(FLUSH) + req(DISC)
    yield "list_abort", b"\x00" + FLAGS + opt(3) + opt(2)
    yield "info_all", b"\x00" + FLAGS + opt(6, name("") + struct.pack(">H", 4) + struct.pack(">HHHH", 0, 1, 2, 3))
    yield "meta", b"\x00" + FLAGS + opt(8) + opt(9, name("disk") + struct.pack(">I", 1) + name("base:")) + \
        opt(10, name("disk") + struct.pack(">I", 1) + name("base:allocation")) + opt(7, name("disk") + b"\x00\x00")
    yield "bad_flags", b"\x00" + struct.pack(">I", 0xFFFF) + opt(7, name("disk") + b"\x00\x00")
    yield "bad_magic", b"\x00" + FLAGS + struct.pack(">QII", 0x1234, 7, 0)
    yield "huge_option", b"\x00" + FLAGS + struct.pack(">QII", IHAVEOPT, 7, 0xFFFFFFF0)
    yield "unknown_export", b"\x00" + FLAGS + opt(7, name("nope") + b"\x00\x00") + opt(7, name("ro") + b"\x00\x00")
    yield "starttls_unknown", b"\x00" + FLAGS + opt(5) + opt(99, b"xyz") + opt(11) + opt(4, b"x")
    yield "short_name", b"\x00" + FLAGS + opt(7, struct.pack(">I", 100) + b"di")


def transmissions():
    data = bytes(range(256)) * 16
    yield "rw", b"\x01" + req(WRITE, 4096, 4096, payload=data) + req(READ, 4096, 4096, cookie=2) + req(DISC)
    yield "fua_flush", b"\x01" + req(WRITE, 0, 4096, FUA, payload=data) + req(FLUSH, cookie=3) + \
        req(TRIM, 8192, 8192, FUA) + req(ZEROES, 0, 65536, NO_HOLE | FAST_ZERO)
    yield "status", b"\x01" + req(BLOCK_STATUS, 0, 1 << 20, REQ_ONE) + req(CACHE, 0, 4096) + req(READ, 0, 512, DF)
    yield "bounds", b"\x01" + req(READ, (1 << 20) - 512, 4096) + req(WRITE, 1 << 20, 512, payload=data[:512]) + \
        req(READ, 0xFFFFFFFFFFFFF000, 8192) + req(READ, 0, 0) + req(FLUSH, 5, 5)
    yield "big", b"\x01" + req(READ, 0, 0xFFFFFFFF) + req(WRITE, 0, 300000, payload=b"\xaa" * 1000)
    yield "bad_cmd", b"\x01" + req(42, 0, 4096, 0x8000) + req(WRITE, 0, 4096, 0xFF, payload=data) + \
        struct.pack(">I", 0xDEADBEEF) + b"\x00" * 24
    yield "ro_write", b"\x03" + req(WRITE, 0, 4096, payload=data) + req(TRIM, 0, 4096) + req(READ, 0, 4096)
    yield "pipeline", b"\x01" + b"".join(req(READ if i % 2 else WRITE, i * 4096, 4096, cookie=i,
                                             payload=b"" if i % 2 else data) for i in range(16)) + req(DISC)
    yield "truncated", b"\x01" + req(WRITE, 0, 4096, payload=data[:100])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--segments", help="a file:// store's segments/ dir to copy small segments from")
    a = ap.parse_args()
    os.makedirs(NBD_DIR, exist_ok=True)
    for n, blob in list(handshakes()) + list(transmissions()):
        with open(os.path.join(NBD_DIR, n + ".bin"), "wb") as f:
            f.write(blob)
    if a.segments:
        os.makedirs(SEG_DIR, exist_ok=True)
        segs = sorted((os.path.getsize(os.path.join(a.segments, s)), s) for s in os.listdir(a.segments)
                      if s.endswith(".seg"))
        picks = [segs[0], segs[len(segs) // 4], segs[len(segs) // 2]] + [s for s in segs if s[0] < 32768][-2:]
        for size, s in picks:
            shutil.copy(os.path.join(a.segments, s), os.path.join(SEG_DIR, s))


if __name__ == "__main__":
    main()
