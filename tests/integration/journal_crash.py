#!/usr/bin/python3
"""kill -9 loop with the local journal on (issue 20), against the real daemon.

Driven by tests/integration/test_journal.sh; not a test by itself. One NBD
connection writes sequence-stamped 4 KiB blocks (every block's bytes name the
block and the write, so a read says exactly which write it holds) to random
blocks of a small region, one request at a time, with a FLUSH every few
writes and now and then a FUA write. A single sequential writer makes the
writes one total order: the history. Each iteration kills the daemon with
SIGKILL at a random moment and restarts it, then reads the region back.

  crash      restart on the SAME state dir (index and journal kept):
             * nothing torn or foreign, and no stamp of a write that an
               earlier restart showed lost;
             * the device is the state after a prefix of the history (the
               journal replays in write order over storage, itself a prefix);
             * that prefix holds every write answered before the last
               answered FLUSH was issued, and every answered FUA write:
               every answered FLUSH survives.
  disk-loss  delete the state dir (index and journal) and start from
             object storage alone: the device is the state after a prefix
             of the history, never a mix, and holds at least what storage was
             known to hold (the state of the last start from storage alone).
             Writes after that prefix are gone; the history is cut there.

With the journal, answered FLUSHes are mostly NOT in object storage yet; the
loop checks that: `portalctl --json status` taken right before each kill must
show journal.upload_lag_bytes > 0 at least once, and the starts from storage
alone must lack at least one write an answered FLUSH covered (without the
journal a FLUSH uploads first, so storage alone would hold them all).
At the end the daemon stops with SIGTERM (exit 0) and starts from storage
alone: everything must be there, exactly as last read.

Output: one line per iteration, totals last; "FAIL - ..." and exit 1 on a
counterexample (SEED replays the same choices; thread timing does not replay
exactly).
"""
import argparse
import os
import random
import struct
import subprocess
import sys
import threading
import time

import nbd

from daemon_driver import Daemon, Failure

BLOCK = 4096
REC = struct.Struct("<QQQQ")  # magic, stamp, block, check
MAGIC = 0x4A524E4C54455354   # "JRNLTEST"
MIX = 0x9E3779B97F4A7C15
MASK = (1 << 64) - 1
BULK_SLOTS = 16  # filler writes land in this many --bulk-bytes slots after the region


def check_word(stamp, block):
    return (stamp * MIX ^ block ^ MAGIC) & MASK


def stamp_block(stamp, block):
    return REC.pack(MAGIC, stamp, block, check_word(stamp, block)) * (BLOCK // REC.size)


def decode(data, nblocks, where):
    """The stamp in each block (0 for zeroes); Failure if torn or foreign."""
    out = []
    zero = bytes(BLOCK)
    for b in range(nblocks):
        blk = data[b * BLOCK:(b + 1) * BLOCK]
        if blk == zero:
            out.append(0)
            continue
        magic, stamp, block, check = REC.unpack_from(blk, 0)
        if magic != MAGIC or blk != REC.pack(magic, stamp, block, check) * (BLOCK // REC.size):
            raise Failure(f"{where}: block {b} is torn or garbage (not one write's stamp throughout; "
                          f"first words {blk[:32].hex()})")
        if block != b or check != check_word(stamp, block):
            raise Failure(f"{where}: block {b} holds foreign data (stamp {stamp} written to block {block})")
        out.append(stamp)
    return out


class Loop:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.d = Daemon(a.portalbd, a.portalctl, a.storage, a.workdir, a.port, extra_args=a.daemon_arg, poll_s=0.02)
        self.hist = []          # applied writes in issue order: (block, stamp)
        self.pos = {}           # stamp -> index in hist
        self.lost = set()       # stamps of writes a restart showed lost
        self.next_stamp = 1
        self.storage_floor = 0  # len(hist) last seen from storage alone
        self.lag_samples = []   # journal.upload_lag_bytes right before each kill
        self.flushed_lost_from_storage = 0
        self.totals = dict(writes=0, flushes=0, fua=0, bulk=0, answered_unflushed_lost=0)
        self.bulk = bytes([0xB5]) * a.bulk_bytes

    # ------------------------------------------------------------ workload

    def writer(self, stop, st):
        """One connection, one request at a time. st["floor"]: the prefix an
        answered FLUSH/FUA covers (len(hist) when the FLUSH was issued)."""
        rng = random.Random(self.rng.getrandbits(64))
        try:
            h = self.d.connect()
        except nbd.Error as e:
            st["error"] = f"connect: {e}"
            return
        until_flush = rng.randint(1, 8)
        try:
            while not stop.is_set():
                if until_flush == 0:
                    issued_at = len(self.hist)
                    h.flush()
                    st["floor"] = max(st["floor"], issued_at)
                    st["flushes"] += 1
                    until_flush = rng.randint(1, 8)
                    continue
                if self.a.bulk_every and rng.randrange(self.a.bulk_every) == 0:
                    # Unchecked filler past the region: fills journal chunks,
                    # so chunk switches, ring wraps and back-pressure happen
                    # under the kills too. Not in the history (not read back).
                    off = self.a.blocks * BLOCK + rng.randrange(BULK_SLOTS) * self.a.bulk_bytes
                    h.pwrite(self.bulk, off)
                    st["bulk"] += 1
                    continue
                block = rng.randrange(self.a.blocks)
                stamp = self.next_stamp
                self.next_stamp += 1
                fua = rng.random() < 0.05
                self.pos[stamp] = len(self.hist)
                self.hist.append((block, stamp))  # in flight until answered
                st["in_flight"] = stamp
                h.pwrite(stamp_block(stamp, block), block * BLOCK, nbd.CMD_FLAG_FUA if fua else 0)
                st["in_flight"] = 0
                st["answered"] = len(self.hist)
                st["writes"] += 1
                if fua:
                    st["floor"] = max(st["floor"], len(self.hist))
                    st["fua"] += 1
                until_flush -= 1
        except nbd.Error as e:
            if not stop.is_set():
                st["error"] = f"{e}"
        finally:
            try:
                h.shutdown()
            except nbd.Error:
                pass

    def run_and_kill(self):
        st = dict(floor=len(self.hist), answered=len(self.hist), in_flight=0, writes=0, flushes=0, fua=0, bulk=0,
                  error=None, lag=None)
        stop = threading.Event()
        t = threading.Thread(target=self.writer, args=(stop, st))
        kill_after = self.rng.uniform(self.a.min_run, self.a.max_run)
        t.start()
        time.sleep(kill_after)
        try:
            j = self.d.ctl_json("status", timeout=10).get("journal")
            st["lag"] = None if j is None else j.get("upload_lag_bytes")
        except (Failure, ValueError, subprocess.TimeoutExpired) as e:
            st["error"] = f"status before the kill: {e}"
        stop.set()  # before the kill: an error after it is expected
        self.d.kill9()
        t.join(60)
        if t.is_alive():
            raise Failure("the writer hung after the kill")
        if st["error"]:
            raise Failure(f"error before the kill: {st['error']}")
        if st["lag"] is None:
            raise Failure("portalctl status before the kill shows no journal section (\"journal\": null)")
        self.lag_samples.append(st["lag"])
        for k in ("writes", "flushes", "fua", "bulk"):
            self.totals[k] += st[k]
        return kill_after, st

    # ------------------------------------------------------------ checks

    def prefix_of(self, live, where):
        """The k such that `live` is the state after hist[:k]; Failure if none."""
        lo, hi = 0, len(self.hist)
        first = {}  # block -> index of its first write
        for i, (b, _) in enumerate(self.hist):
            first.setdefault(b, i)
        nxt = {}    # index -> index of the next write to the same block
        last = {}
        for i, (b, _) in enumerate(self.hist):
            if b in last:
                nxt[last[b]] = i
            last[b] = i
        why_lo = why_hi = None
        for b in range(self.a.blocks):
            s = live[b]
            if s == 0:
                a, z = 0, first.get(b, len(self.hist))
            else:
                if s in self.lost:
                    raise Failure(f"{where}: block {b} holds write {s}, which an earlier restart showed lost")
                i = self.pos.get(s)
                if i is None:
                    raise Failure(f"{where}: block {b} holds write {s}, which was never issued")
                a, z = i + 1, nxt.get(i, len(self.hist))
            if a > lo:
                lo, why_lo = a, b
            if z < hi:
                hi, why_hi = z, b
        if lo > hi:
            b1, b2 = why_lo, why_hi
            raise Failure(f"{where}: not a prefix of the writes, a mix: block {b1} holds write {live[b1]} "
                          f"(so at least the first {lo} writes), block {b2} holds "
                          f"{'zeroes' if live[b2] == 0 else 'write ' + str(live[b2])} (so at most the first {hi})")
        return lo

    def settle(self, k):
        """The writes after hist[:k] are gone for good."""
        for _, s in self.hist[k:]:
            self.lost.add(s)
            del self.pos[s]
        del self.hist[k:]

    def verify(self, where):
        live = decode(self.d.read(self.a.blocks * BLOCK), self.a.blocks, where)
        return self.prefix_of(live, where)

    # ------------------------------------------------------------ main

    def crash(self, it):
        kill_after, st = self.run_and_kill()
        start_s = self.d.start()
        where = f"crash {it} (SEED={self.a.seed})"
        k = self.verify(where)
        if k < st["floor"]:
            missing = f"write {self.hist[k][1]} to block {self.hist[k][0]}" if k < len(self.hist) else "none"
            raise Failure(f"{where}: an answered FLUSH/FUA was lost: the device holds the first {k} writes, but "
                          f"the first {st['floor']} were covered by an answered FLUSH or FUA (first missing: "
                          f"{missing})")
        unflushed_lost = max(0, st["answered"] - k)
        self.totals["answered_unflushed_lost"] += unflushed_lost
        self.settle(k)
        print(f"ok crash {it} - killed after {kill_after:.2f} s: {st['writes']} writes, {st['flushes']} flushes, "
              f"{st['fua']} FUA, {st['bulk']} fillers, upload lag at the kill {st['lag']} bytes; restart in {start_s:.2f} s holds "
              f"{k} of {st['answered'] + (st['in_flight'] != 0)} writes (>= {st['floor']} flushed; "
              f"{unflushed_lost} answered unflushed lost)", flush=True)

    def disk_loss(self, it):
        kill_after, st = self.run_and_kill()
        start_s = self.d.start(fresh_state=True)
        where = f"disk loss {it} (SEED={self.a.seed})"
        k = self.verify(where)
        if k < self.storage_floor:
            raise Failure(f"{where}: storage alone holds only the first {k} writes, but an earlier start from "
                          f"storage alone showed the first {self.storage_floor}")
        flushed_lost = max(0, st["floor"] - k)
        self.flushed_lost_from_storage += flushed_lost
        self.settle(k)
        self.storage_floor = k
        print(f"ok disk-loss {it} - killed after {kill_after:.2f} s: {st['writes']} writes, {st['flushes']} "
              f"flushes, {st['fua']} FUA, {st['bulk']} fillers, upload lag at the kill {st['lag']} bytes; state dir and journal deleted, start from "
              f"storage alone in {start_s:.2f} s: a prefix, the first {k} writes ({flushed_lost} flushed writes "
              f"were only in the journal)", flush=True)

    def run(self):
        a = self.a
        t0 = time.monotonic()
        plan = ["crash"] * a.crashes + ["disk-loss"] * a.disk_losses
        self.rng.shuffle(plan)
        print(f"# journal crash loop: SEED={a.seed} storage={a.storage} blocks={a.blocks} plan={' '.join(plan)}",
              flush=True)
        self.d.start(fresh_state=True)
        for it, kind in enumerate(plan, 1):
            (self.crash if kind == "crash" else self.disk_loss)(it)
        if not any(lag > 0 for lag in self.lag_samples):
            raise Failure(f"journal.upload_lag_bytes was 0 at every kill ({self.lag_samples}): the test never "
                          f"caught answered writes that were not in object storage yet")
        if a.disk_losses > 0 and self.flushed_lost_from_storage == 0:
            raise Failure("every start from storage alone held every flushed write: FLUSH seems to upload "
                          "(the journal is not what made them durable)")
        # A clean stop uploads everything: storage alone holds all of it.
        self.d.stop()
        self.d.start(fresh_state=True)
        k = self.verify(f"after SIGTERM and a start from storage alone (SEED={a.seed})")
        if k != len(self.hist):
            raise Failure(f"after SIGTERM, storage alone holds the first {k} of {len(self.hist)} writes")
        self.d.stop()
        t = self.totals
        print(f"ok clean stop - SIGTERM, then storage alone holds all {k} writes", flush=True)
        print(f"# totals: {len(plan)} kills, {t['writes']} writes, {t['flushes']} flushes, {t['fua']} FUA, "
              f"{t['bulk']} fillers of {a.bulk_bytes} bytes; upload "
              f"lag at the kills (bytes): {self.lag_samples}; {self.flushed_lost_from_storage} flushed writes were "
              f"only in the journal at the disk losses; {t['answered_unflushed_lost']} answered unflushed writes "
              f"lost on crashes; {self.d.torn_lease_takeovers} starts past a torn lease; "
              f"{time.monotonic() - t0:.1f} s", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--portalbd", required=True)
    p.add_argument("--portalctl", required=True)
    p.add_argument("--storage", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--crashes", type=int, default=6)
    p.add_argument("--disk-losses", type=int, default=3)
    p.add_argument("--blocks", type=int, default=256, help="the region written, in 4 KiB blocks")
    p.add_argument("--bulk-every", type=int, default=32,
                   help="about one write in N is an unchecked --bulk-bytes filler past the region (0: none)")
    p.add_argument("--bulk-bytes", type=int, default=1 << 20)
    p.add_argument("--min-run", type=float, default=0.3)
    p.add_argument("--max-run", type=float, default=1.0)
    p.add_argument("--daemon-arg", action="append", default=[], help="passed to portalbd (repeat)")
    a = p.parse_args()
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 1 << 31)
    os.makedirs(a.workdir, exist_ok=True)
    loop = Loop(a)
    try:
        loop.run()
    except Failure as e:
        print(f"FAIL - {e}", flush=True)
        print(f"# reproduce: SEED={a.seed} (storage {a.storage}); daemon log: {loop.d.log_path}", flush=True)
        loop.d.kill9()
        sys.exit(1)
    except BaseException:
        loop.d.kill9()
        raise


if __name__ == "__main__":
    main()
