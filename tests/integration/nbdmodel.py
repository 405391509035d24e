#!/usr/bin/python3
"""Drive an NBD export with libnbd and keep a byte-exact model of it.

Used by the shell tests in this directory (not a test itself). The model is a
sparse local file as large as the export; every operation applied to the export
is applied to the model too, so a later `verify` can compare them byte by byte.

  nbdmodel.py write URI MODEL --seed S --count N --region OFF:LEN [...]
        [--max-len BYTES] [--no-flush] [--unflushed M --unflushed-region OFF:LEN
        --journal FILE] [--hold READY-FILE]
      N random writes / zero writes / trims (offsets, lengths and data from
      seed S) inside the regions, each read back at once, then FLUSH (unless
      --no-flush: the last operation is then a plain write, so unflushed data
      is surely left behind), then M writes that are never flushed, recorded in FILE but
      not in the model. With --hold the connection stays open after writing
      "ready" to READY-FILE, until the process is killed: the daemon is then
      killed under an open session.

  nbdmodel.py verify URI MODEL --region OFF:LEN [...] [--journal FILE]
      With --journal, first checks the unflushed writes: each must read back
      entirely old or entirely new, and the new ones must be a prefix of the
      write order (a crash leaves some state the device was in). The model is
      then updated with what survived. Then compares every region with the model.

Always run with /usr/bin/python3 (the libnbd bindings live there).
"""
import argparse
import hashlib
import json
import os
import random
import sys
import time

import nbd

CHUNK = 4 << 20


def parse_region(text):
    off, length = text.split(":")
    return int(off, 0), int(length, 0)


def connect(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def model_write(fd, off, data):
    os.pwrite(fd, data, off)


def model_read(fd, off, length):
    data = os.pread(fd, length, off)
    return data + bytes(length - len(data))


def describe_mismatch(got, want, base):
    """First differing offset and the 4 KiB blocks that differ, for the report."""
    first = next(i for i in range(len(got)) if got[i] != want[i])
    bad_blocks = []
    for b in range(0, len(got), 4096):
        if got[b:b + 4096] != want[b:b + 4096]:
            bad_blocks.append(base + b)
    return (f"first difference at byte {base + first} (got 0x{got[first]:02x}, "
            f"expected 0x{want[first]:02x}); {len(bad_blocks)} differing 4 KiB "
            f"blocks, first ones at {bad_blocks[:6]}")


def cmd_write(args):
    rng = random.Random(args.seed)
    h = connect(args.uri)
    size = h.get_size()
    min_block = max(1, h.get_block_size(nbd.SIZE_MINIMUM))
    can_fua = h.can_fua()
    can_trim = h.can_trim()
    can_zero = h.can_zero()
    fd = os.open(args.model, os.O_RDWR)
    regions = [parse_region(r) for r in args.region]
    for off, length in regions:
        if off + length > size:
            sys.exit(f"region {off}:{length} is beyond the export size {size}")

    counts = {"write": 0, "zero": 0, "trim": 0, "fua": 0, "bytes": 0}
    for i in range(args.count):
        r_off, r_len = rng.choice(regions)
        kind = rng.random()
        if kind < 0.80 or not (can_trim or can_zero):
            op = "write"
        elif kind < 0.90 and can_zero:
            op = "zero"
        else:
            op = "trim" if can_trim else "zero"
        # Without a final FLUSH the last operation is a plain write, so the
        # server surely holds unflushed data (a FUA write, a zero or a trim
        # last could leave its write buffer empty).
        last_plain = args.no_flush and i == args.count - 1
        if last_plain:
            op = "write"
        shape = rng.random()
        if shape < 0.2:
            length = rng.randint(1, 512)
        elif shape < 0.7:
            length = rng.randint(513, 64 << 10)
        else:
            length = rng.randint((64 << 10) + 1, args.max_len)
        length = min(length, r_len)
        off = r_off + rng.randrange(0, r_len - length + 1)
        align = min_block
        if op == "trim" or rng.random() < 0.5:
            align = max(align, 4096)
        if align > 1:
            off = off // align * align
            length = max(align, (length + align - 1) // align * align)
            if off + length > r_off + r_len:
                length = (r_off + r_len - off) // align * align
            if length <= 0:
                continue
        if op == "write":
            data = rng.randbytes(length)
            flags = 0
            if can_fua and rng.random() < 0.1 and not last_plain:
                flags = nbd.CMD_FLAG_FUA
                counts["fua"] += 1
            h.pwrite(data, off, flags)
        elif op == "zero":
            data = bytes(length)
            flags = nbd.CMD_FLAG_NO_HOLE if rng.random() < 0.3 else 0
            h.zero(length, off, flags)
        else:
            data = bytes(length)
            h.trim(length, off)
        model_write(fd, off, data)
        counts[op] += 1
        counts["bytes"] += length
        if not args.no_readback:
            got = h.pread(length, off)
            if got != data:
                print(f"FAIL - read-after-{op} of {length} bytes at {off} (op #{i}): "
                      + describe_mismatch(got, data, off))
                sys.exit(1)
    if not args.no_flush:
        h.flush()
    print(f"# seed {args.seed}: {counts['write']} writes ({counts['fua']} FUA), "
          f"{counts['zero']} zero writes, {counts['trim']} trims, {counts['bytes']} bytes"
          f"{'' if args.no_flush else ', then FLUSH'}; min block {min_block}")

    if args.unflushed:
        u_off, u_len = parse_region(args.unflushed_region)
        slot = max(4096, min_block)
        slots = list(range(u_off // slot, (u_off + u_len) // slot - 16))
        rng.shuffle(slots)
        journal = []
        for j in range(args.unflushed):
            off = slots[j] * slot
            length = slot * rng.randint(1, 16)
            # Slots are distinct, but longer writes could still overlap; skip those.
            if any(not (off + length <= e["off"] or e["off"] + e["len"] <= off)
                   for e in journal):
                continue
            data = rng.randbytes(length)
            old = model_read(fd, off, length)
            h.pwrite(data, off)
            journal.append({"off": off, "len": length,
                            "new": hashlib.sha256(data).hexdigest(),
                            "old": hashlib.sha256(old).hexdigest()})
        with open(args.journal, "w") as f:
            json.dump(journal, f)
        print(f"# seed {args.seed}: {len(journal)} more writes, not flushed")
    os.close(fd)

    if args.hold:
        with open(args.hold, "w") as f:
            f.write("ready\n")
        # Keep the session open until the test kills us.
        while True:
            time.sleep(3600)
    h.shutdown()


def cmd_verify(args):
    h = connect(args.uri)
    fd = os.open(args.model, os.O_RDWR)
    if args.journal:
        with open(args.journal) as f:
            journal = json.load(f)
        states = []
        for e in journal:
            got = h.pread(e["len"], e["off"])
            digest = hashlib.sha256(got).hexdigest()
            if digest == e["new"]:
                states.append("new")
                model_write(fd, e["off"], got)
            elif digest == e["old"]:
                states.append("old")
            else:
                print(f"FAIL - unflushed write of {e['len']} bytes at {e['off']} is torn: "
                      "it reads as neither its old nor its new contents")
                sys.exit(1)
        kept = states.count("new")
        if states != ["new"] * kept + ["old"] * (len(states) - kept):
            print("FAIL - the unflushed writes that survived are not a prefix of the "
                  "write order: " + "".join("N" if s == "new" else "o" for s in states))
            sys.exit(1)
        print(f"ok - unflushed writes: {kept} of {len(states)} survived, "
              "none torn, in write order")
    total = 0
    for region in args.region:
        r_off, r_len = parse_region(region)
        pos = r_off
        while pos < r_off + r_len:
            n = min(CHUNK, r_off + r_len - pos)
            got = h.pread(n, pos)
            want = model_read(fd, pos, n)
            if got != want:
                print(f"FAIL - region {region}: " + describe_mismatch(got, want, pos))
                sys.exit(1)
            pos += n
            total += n
    print(f"ok - {total} bytes in {len(args.region)} regions equal the model")
    os.close(fd)
    h.shutdown()


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("uri")
    w.add_argument("model")
    w.add_argument("--seed", type=int, required=True)
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--region", action="append", required=True)
    w.add_argument("--max-len", type=int, default=256 << 10)
    w.add_argument("--no-flush", action="store_true")
    w.add_argument("--no-readback", action="store_true")
    w.add_argument("--unflushed", type=int, default=0)
    w.add_argument("--unflushed-region")
    w.add_argument("--journal")
    w.add_argument("--hold")
    v = sub.add_parser("verify")
    v.add_argument("uri")
    v.add_argument("model")
    v.add_argument("--region", action="append", required=True)
    v.add_argument("--journal")
    args = p.parse_args()
    try:
        {"write": cmd_write, "verify": cmd_verify}[args.cmd](args)
    except nbd.Error as e:
        print(f"FAIL - NBD error: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
