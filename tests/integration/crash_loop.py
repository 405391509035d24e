#!/usr/bin/python3
"""Seeded kill -9 loop against the real daemon (DESIGN invariants 2, 3, 4, 1).

Driven by tests/integration/test_crash_loop.sh (and `make crash-test`); not a
test by itself. Each iteration:

  1. three NBD connections run a random workload, each in its own region of
     blocks (so every block's writes are ordered): sequence-stamped 4 KiB
     writes (some multi-block, some FUA), FLUSH, TRIM, WRITE_ZEROES; meanwhile
     `portalctl snapshot create/restore/delete` run (restore with the writers
     paused, to a snapshot whose contents are known);
  2. the daemon is killed with SIGKILL at a random moment;
  3. it is restarted (every --rebuild-every iterations on a fresh state dir:
     rebuilt from object storage alone; never with --journal on, where the
     state dir holds the journal) and checked against the model:
       * every block holds the write that was answered last before the last
         answered FLUSH/FUA/snapshot/restore was issued, or a later write to it
         (answered or in flight) — never an older one;
       * nothing torn: every 4 KiB block is all one write's stamp, or zeroes;
       * nothing foreign: a stamp names its own block and connection;
       * a snapshot whose create was answered OK exists; every snapshot is a
         cut (per block, the newest write answered before the command started,
         or one that was in flight during it); once read, its contents never
         change; a snapshot deleted OK never comes back.
At the end of every epoch (--epoch iterations; bounds the segment count and
so the restart time) and of the run the daemon stops with SIGTERM (exit 0) and
is started on a fresh state dir: live volume and every snapshot must read
exactly as last seen. The next epoch starts a new volume (URL + "-e<N>").

The seed decides every worker's operations and every kill time; thread timing
does not replay exactly, but a failure reproduces with the same SEED in a few
tries. Output: one line per iteration, totals last, "FAIL ..." and exit 1 on a
counterexample.
"""
import argparse
import random
import struct
import sys
import threading
import time

import nbd

from daemon_driver import Daemon, Failure

BLOCK = 4096
CONNS = 3
REGION = 128  # blocks per connection
NBLOCKS = CONNS * REGION
REC = struct.Struct("<QQQQ")  # conn+1, seq, lba, check
MAGIC = 0x9E3779B97F4A7C15
MASK = (1 << 64) - 1


def now():
    return time.monotonic_ns()


def stamp_block(conn, seq, lba):
    rec = REC.pack(conn + 1, seq, lba, (seq * MAGIC ^ lba ^ (conn << 56)) & MASK)
    return rec * (BLOCK // REC.size)


def decode(data, where):
    """Stamps of the blocks in `data` (0 for zeroes); raises Failure if torn or foreign."""
    out = []
    zero = bytes(BLOCK)
    for b in range(len(data) // BLOCK):
        blk = data[b * BLOCK:(b + 1) * BLOCK]
        if blk == zero:
            out.append(0)
            continue
        conn1, seq, lba, check = REC.unpack_from(blk, 0)
        if blk != REC.pack(conn1, seq, lba, check) * (BLOCK // REC.size):
            raise Failure(f"{where}: block {b} is torn (not one write's stamp throughout)")
        if lba != b or conn1 - 1 != b // REGION or check != (seq * MAGIC ^ lba ^ ((conn1 - 1) << 56)) & MASK:
            raise Failure(f"{where}: block {b} holds foreign data (conn {conn1 - 1}, seq {seq}, lba {lba})")
        out.append(seq)
    return out


def snapshot_names(d):
    j = d.ctl_json("snapshot", "list")
    items = j.get("snapshots", j) if isinstance(j, dict) else j
    return [s["name"] for s in items]


class Loop:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.d = Daemon(args.portalbd, args.portalctl, args.storage, args.workdir, args.port,
                        extra_args=["--flush-interval-ms", str(args.flush_interval_ms), "--journal", args.journal]
                        + (["--encryption-key-file", args.encryption_key_file] if args.encryption_key_file else []))
        # Per block: events [value, issued_ns, answered_ns|None, durable_by_itself].
        self.events = [[[0, 0, 0, True]] for _ in range(NBLOCKS)]
        self.barriers = []  # issue times of answered FLUSH / FUA / snapshot create / restore
        self.lock = threading.Lock()
        self.pinned = {}  # snapshot name -> stamps, once read
        self.created = {}  # this iteration: name -> (issued, answered|None)
        self.deleted_ok = set()
        self.delete_unknown = set()
        self.next_seq = 1
        self.totals = dict(iterations=0, ops=0, flushes=0, fua=0, trims=0, zeroes=0, snap_create=0,
                           snap_restore=0, snap_delete=0, rebuilds=0, inflight_at_kill=0)

    # ------------------------------------------------------------ workload

    def seq(self):
        with self.lock:
            s = self.next_seq
            self.next_seq += 1
            return s

    def worker(self, c, rng, stop, pause, stats):
        try:
            h = self.d.connect()
        except nbd.Error as e:
            if not stop.is_set():
                stats["errors"].append(f"worker {c}: connect: {e}")
            return
        base = c * REGION
        try:
            while not stop.is_set():
                if pause.is_set():
                    with pause.cond:
                        pause.idle += 1
                        pause.cond.notify_all()
                        while pause.is_set() and not stop.is_set():
                            pause.cond.wait(0.05)
                        pause.idle -= 1
                    continue
                r = rng.random()
                lba = base + rng.randrange(REGION)
                if r < 0.70:
                    n = 1 if r < 0.60 else min(rng.randint(2, 8), base + REGION - lba)
                    fua = rng.random() < 0.1
                    s = self.seq()
                    buf = b"".join(stamp_block(c, s, lba + i) for i in range(n))
                    evs = [[s, now(), None, False] for _ in range(n)]
                    for i in range(n):
                        self.events[lba + i].append(evs[i])
                    h.pwrite(buf, lba * BLOCK, nbd.CMD_FLAG_FUA if fua else 0)
                    t = now()
                    for e in evs:
                        e[2] = t
                        e[3] = fua
                    if fua:
                        with self.lock:
                            self.barriers.append(evs[0][1])
                        stats["fua"] += 1
                elif r < 0.80:
                    t0 = now()
                    h.flush()
                    with self.lock:
                        self.barriers.append(t0)
                    stats["flushes"] += 1
                else:
                    n = min(rng.randint(1, 4), base + REGION - lba)
                    trim = r < 0.90
                    evs = [[0, now(), None, False] for _ in range(n)]
                    for i in range(n):
                        self.events[lba + i].append(evs[i])
                    if trim:
                        h.trim(n * BLOCK, lba * BLOCK)
                        stats["trims"] += 1
                    else:
                        h.zero(n * BLOCK, lba * BLOCK)
                        stats["zeroes"] += 1
                    t = now()
                    for e in evs:
                        e[2] = t
                stats["ops"] += 1
        except nbd.Error as e:
            if not stop.is_set():
                stats["errors"].append(f"worker {c}: {e}")
            else:
                stats["inflight_at_kill"] += 1
        finally:
            try:
                h.shutdown()
            except nbd.Error:
                pass

    def controller(self, it, rng, stop, pause, stats):
        k = 0
        while not stop.is_set():
            time.sleep(rng.uniform(0.05, 0.35))
            if stop.is_set():
                return
            r = rng.random()
            k += 1
            if r < 0.5:
                name = f"i{it}-{k}"
                t0 = now()
                self.created[name] = (t0, None)
                res = self.d.ctl("snapshot", "create", name)
                if res.returncode == 0:
                    self.created[name] = (t0, now())
                    with self.lock:
                        self.barriers.append(t0)
                    stats["snap_create"] += 1
                elif not stop.is_set():
                    stats["errors"].append(f"snapshot create {name}: {res.returncode} {res.stderr.strip()}")
            elif r < 0.75 and self.pinned:
                self.restore(rng, stop, pause, stats)
            elif len(self.pinned) > 3:
                name = rng.choice(sorted(self.pinned))
                self.delete_unknown.add(name)
                res = self.d.ctl("snapshot", "delete", name)
                if res.returncode == 0:
                    self.delete_unknown.discard(name)
                    self.deleted_ok.add(name)
                    del self.pinned[name]
                    stats["snap_delete"] += 1
                elif not stop.is_set():
                    stats["errors"].append(f"snapshot delete {name}: {res.returncode} {res.stderr.strip()}")

    def restore(self, rng, stop, pause, stats):
        name = rng.choice(sorted(self.pinned))
        target = self.pinned[name]
        with pause.cond:
            pause.set()
            while pause.idle < pause.workers and not stop.is_set():
                pause.cond.wait(0.05)
        try:
            if stop.is_set():
                return
            t0 = now()
            evs = [[target[b], t0, None, True] for b in range(NBLOCKS)]
            for b in range(NBLOCKS):
                self.events[b].append(evs[b])
            # The snapshot a restore keeps of the state it replaces is named
            # pre-restore-<UTC second>; a pre-restore snapshot of this second
            # that was deleted OK frees the name, and this restore may take it
            # again: a new snapshot, not the deleted one back.
            issued = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            res = self.d.ctl("snapshot", "restore", name)
            self.deleted_ok = {n for n in self.deleted_ok
                               if not (n.startswith("pre-restore-") and n[len("pre-restore-"):][:15] >= issued)}
            if res.returncode == 0:
                t = now()
                for e in evs:
                    e[2] = t
                with self.lock:
                    self.barriers.append(t0)
                stats["snap_restore"] += 1
            elif not stop.is_set():
                stats["errors"].append(f"snapshot restore {name}: {res.returncode} {res.stderr.strip()}")
        finally:
            with pause.cond:
                pause.clear()
                pause.cond.notify_all()

    def run_workload(self, it):
        rng = random.Random(self.rng.getrandbits(64))
        kill_after = rng.uniform(self.args.min_run, self.args.max_run)
        stop = threading.Event()
        pause = threading.Event()
        pause.cond = threading.Condition()
        pause.idle = 0
        pause.workers = CONNS
        stats = dict(ops=0, flushes=0, fua=0, trims=0, zeroes=0, snap_create=0, snap_restore=0, snap_delete=0,
                     inflight_at_kill=0, errors=[])
        threads = [threading.Thread(target=self.worker, args=(c, random.Random(rng.getrandbits(64)), stop, pause, stats))
                   for c in range(CONNS)]
        threads.append(threading.Thread(target=self.controller, args=(it, random.Random(rng.getrandbits(64)), stop, pause,
                                                                       stats)))
        for t in threads:
            t.start()
        time.sleep(kill_after)
        stop.set()  # before the kill: errors after it are expected
        self.d.kill9()
        with pause.cond:
            pause.cond.notify_all()
        for t in threads:
            t.join(60)
            if t.is_alive():
                raise Failure("a workload thread hung after the kill")
        if stats["errors"]:
            raise Failure("errors before the kill: " + "; ".join(stats["errors"][:5]))
        return kill_after, stats

    # ------------------------------------------------------------ checks

    def acceptable_live(self, b):
        evs = self.events[b]
        barrier = max(self.barriers, default=-1)
        j = 0
        for i, (_, _, answered, durable) in enumerate(evs):
            if answered is not None and (answered < barrier or durable):
                j = i
        return {e[0] for e in evs[j:]}

    def acceptable_cut(self, b, issued, answered):
        evs = self.events[b]
        j = 0
        for i, e in enumerate(evs):
            if e[2] is not None and e[2] < issued:
                j = i
        return {e[0] for e in evs[j:] if answered is None or e[1] < answered}

    def verify(self, where, rebase=True):
        live = decode(self.d.read(NBLOCKS * BLOCK), f"{where}: live")
        for b in range(NBLOCKS):
            ok = self.acceptable_live(b)
            if live[b] not in ok:
                hist = [(e[0], e[2] is not None, e[3]) for e in self.events[b][-6:]]
                raise Failure(f"{where}: live block {b} holds stamp {live[b]}, expected one of {sorted(ok)} "
                              f"(last events (stamp, answered, durable): {hist})")
        names = set(snapshot_names(self.d))
        for name in self.deleted_ok:
            if name in names:
                raise Failure(f"{where}: snapshot {name} was deleted OK but is back")
        for name in list(self.pinned):
            if name not in names:
                if name in self.delete_unknown:
                    del self.pinned[name]  # its delete was in flight at the kill
                    continue
                raise Failure(f"{where}: snapshot {name} existed and was never deleted, but is gone")
        for name, (issued, answered) in self.created.items():
            if answered is not None and name not in names:
                raise Failure(f"{where}: snapshot {name} was created OK but is missing")
        for name in sorted(names):
            got = decode(self.d.read(NBLOCKS * BLOCK, f"portalbd@{name}"), f"{where}: snapshot {name}")
            if name in self.pinned:
                if got != self.pinned[name]:
                    bad = [b for b in range(NBLOCKS) if got[b] != self.pinned[name][b]][:5]
                    raise Failure(f"{where}: snapshot {name} changed since it was first read (blocks {bad})")
            elif name in self.created:
                issued, answered = self.created[name]
                for b in range(NBLOCKS):
                    ok = self.acceptable_cut(b, issued, answered)
                    if got[b] not in ok:
                        raise Failure(f"{where}: snapshot {name} is not a cut: block {b} holds {got[b]}, "
                                      f"expected one of {sorted(ok)}")
                self.pinned[name] = got
            elif name.startswith("pre-restore-"):
                for b in range(NBLOCKS):
                    if got[b] not in {e[0] for e in self.events[b]}:
                        raise Failure(f"{where}: {name} block {b} holds {got[b]}, never written there")
                self.pinned[name] = got
            else:
                raise Failure(f"{where}: unknown snapshot {name}")
        self.delete_unknown.clear()
        self.created = {}
        if rebase:
            self.events = [[[live[b], 0, 0, True]] for b in range(NBLOCKS)]
            self.barriers = []
        return live

    # ------------------------------------------------------------ main

    def reset_model(self):
        self.events = [[[0, 0, 0, True]] for _ in range(NBLOCKS)]
        self.barriers = []
        self.pinned = {}
        self.created = {}
        self.deleted_ok = set()
        self.delete_unknown = set()

    def end_epoch(self, where):
        """A clean stop, then a rebuild from storage: exactly what was last seen."""
        last = self.verify(f"{where}: before SIGTERM", rebase=False)
        self.d.stop()
        self.d.start(fresh_state=True)
        self.events = [[[last[b], 0, 0, True]] for b in range(NBLOCKS)]
        self.barriers = []
        self.verify(f"{where}: after SIGTERM and a rebuild from storage")
        self.d.stop()
        self.totals["rebuilds"] += 1

    def run(self):
        a = self.args
        print(f"# crash loop: SEED={a.seed} storage={a.storage} journal={a.journal} encrypted={bool(a.encryption_key_file)} iterations={a.iterations} "
              f"(epochs of {a.epoch}), time budget {a.time_budget} s, rebuild from storage every {a.rebuild_every}",
              flush=True)
        t_start = time.monotonic()
        it = 0
        epoch = 0
        while it < a.iterations:
            if it >= a.min_iterations and time.monotonic() - t_start > a.time_budget:
                print(f"# time budget reached after {it} iterations", flush=True)
                break
            if it % a.epoch == 0:
                if it > 0:
                    self.end_epoch(f"end of epoch {epoch} (SEED={a.seed})")
                epoch += 1
                self.d.storage = a.storage if epoch == 1 else f"{a.storage}-e{epoch}"
                self.reset_model()
                self.d.start(fresh_state=True)
            it += 1
            t0 = time.monotonic()
            kill_after, st = self.run_workload(it)
            rebuild = a.rebuild_every > 0 and it % a.rebuild_every == 0
            self.d.start(fresh_state=rebuild)
            self.verify(f"iteration {it} (SEED={a.seed})")
            for k in self.totals:
                if k in st:
                    self.totals[k] += st[k]
            self.totals["iterations"] += 1
            self.totals["rebuilds"] += rebuild
            print(f"ok {it} - killed after {kill_after:.2f} s: {st['ops']} ops, {st['flushes']} flushes, "
                  f"{st['fua']} fua, {st['snap_create']}/{st['snap_restore']}/{st['snap_delete']} snapshot "
                  f"create/restore/delete, {st['inflight_at_kill']} in flight; restart"
                  f"{' from storage alone' if rebuild else ''} consistent ({time.monotonic() - t0:.1f} s)", flush=True)
        self.end_epoch(f"end of run (SEED={a.seed})")
        t = self.totals
        print(f"# totals: {t['iterations']} iterations in {epoch} epochs, {t['ops']} NBD ops ({t['flushes']} flushes, "
              f"{t['fua']} FUA, {t['trims']} trims, {t['zeroes']} write-zeroes), snapshots {t['snap_create']} created, "
              f"{t['snap_restore']} restored, {t['snap_delete']} deleted, {t['rebuilds']} rebuilds from storage, "
              f"{t['inflight_at_kill']} requests in flight at the kills, {time.monotonic() - t_start:.1f} s, "
              f"{self.d.torn_lease_takeovers} starts past a torn lease", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--portalbd", required=True)
    p.add_argument("--portalctl", required=True)
    p.add_argument("--storage", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--min-iterations", type=int, default=None, help="run at least this many despite the budget")
    p.add_argument("--time-budget", type=float, default=1e9, help="seconds; stop starting iterations after it")
    p.add_argument("--rebuild-every", type=int, default=5,
                   help="restart on a fresh state dir every N iterations (0: never; forced to 0 with --journal on)")
    p.add_argument("--journal", choices=["on", "off"], default="off",
                   help="the local journal: off, every answered FLUSH must be in storage (a kill -9 and a fresh "
                        "state dir keep it); on, it must survive a kill -9 with the state dir (the journal) kept, "
                        "and only clean stops are rebuilt from storage alone (journal_crash.py checks what a lost "
                        "disk leaves)")
    p.add_argument("--encryption-key-file", default="",
                   help="run every daemon with this key file (client-side encryption, issue 25)")
    p.add_argument("--epoch", type=int, default=10, help="iterations per volume")
    p.add_argument("--flush-interval-ms", type=int, default=300)
    p.add_argument("--min-run", type=float, default=0.3)
    p.add_argument("--max-run", type=float, default=1.0)
    a = p.parse_args()
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1, 1 << 31)
    if a.min_iterations is None:
        a.min_iterations = a.iterations
    if a.journal == "on":
        a.rebuild_every = 0
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
