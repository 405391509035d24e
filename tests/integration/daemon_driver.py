"""The real portalbd daemon under a kill -9 loop: one process at a time.

Shared by crash_loop.py and journal_crash.py (not a test by itself). A Daemon
starts portalbd on a work dir of its own (NBD and control sockets, the state
dir, one log appended across every start), waits until it serves NBD, kills it
with SIGKILL or stops it with SIGTERM, and talks to it through libnbd and
portalctl. What the tests check stays in the tests; failures raise Failure.

One thread drives start/kill9/stop; connect, read and ctl may be called from
any thread while the daemon runs.
"""
import json
import os
import shutil
import signal
import subprocess
import time

import nbd


class Failure(Exception):
    """A counterexample or a daemon that misbehaved: the test fails with it."""


class Daemon:
    def __init__(self, portalbd, portalctl, storage, workdir, port, extra_args=(), poll_s=0.05):
        self.portalbd = portalbd
        self.portalctl = portalctl
        self.storage = storage  # may be changed between starts (a new volume)
        self.port = port
        self.extra_args = list(extra_args)
        self.poll_s = poll_s
        self.nbd_sock = os.path.join(workdir, "nbd.sock")
        self.ctl_sock = os.path.join(workdir, "ctl.sock")
        self.state = os.path.join(workdir, "state")
        self.log_path = os.path.join(workdir, "portalbd.log")
        self.proc = None
        self.starts = 0
        self.torn_lease_takeovers = 0

    def start(self, fresh_state=False, take_over=False):
        """Starts the daemon (fresh_state: on an empty state dir, so from
        object storage alone) and waits until it serves; returns the seconds
        that took."""
        if fresh_state:
            shutil.rmtree(self.state, ignore_errors=True)
        for p in (self.nbd_sock, self.ctl_sock):
            if os.path.exists(p):
                os.unlink(p)
        cmd = [self.portalbd, "--storage", self.storage, "--disk-size-gb", "1",
               "--nbd-address", f"127.0.0.1:{self.port}", "--nbd-unix", self.nbd_sock,
               "--socket", self.ctl_sock, "--state-dir", self.state, *self.extra_args]
        if take_over:
            cmd.append("--take-over")
        with open(self.log_path, "a") as log:
            log_start = log.tell()
            log.write(f"===== start {self.starts} fresh_state={fresh_state}: {' '.join(cmd)}\n")
            log.flush()
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.starts += 1
        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                this_run = self.log_since(log_start)
                if not take_over and "lock/writer.json" in this_run and "unreadable" in this_run:
                    # A kill -9 during a lease renewal on s3rver (which keeps
                    # the part of a PUT whose writer died) leaves the lease
                    # torn: it counts as held by an unknown daemon until it
                    # is older than the lease TTL. The loop killed the only
                    # other daemon, so it does what the refusal tells an
                    # operator who knows that.
                    self.torn_lease_takeovers += 1
                    print(f"# start {self.starts - 1}: the lease was torn by the kill; starting again with "
                          f"--take-over", flush=True)
                    return self.start(take_over=True)
                raise Failure(f"portalbd exited with status {self.proc.returncode} during startup "
                              f"(see {self.log_path}): {self.log_tail()}")
            if os.path.exists(self.nbd_sock) and os.path.exists(self.ctl_sock):
                try:
                    self.connect().shutdown()
                    return time.monotonic() - t0
                except nbd.Error:
                    pass
            if time.monotonic() - t0 > 60:
                raise Failure(f"portalbd not ready within 60 s: {self.log_tail()}")
            time.sleep(self.poll_s)

    def connect(self, export="portalbd"):
        h = nbd.NBD()
        h.set_export_name(export)
        h.connect_unix(self.nbd_sock)
        return h

    def read(self, nbytes, export="portalbd"):
        """The first nbytes of an export, on a connection of its own."""
        h = self.connect(export)
        try:
            return h.pread(nbytes, 0)
        finally:
            h.shutdown()

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def stop(self):
        """SIGTERM; Failure unless it exits 0 within 60 s."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise Failure("portalbd did not exit within 60 s of SIGTERM")
        if rc != 0:
            raise Failure(f"portalbd exited {rc} after SIGTERM: {self.log_tail()}")

    def ctl(self, *argv, timeout=30):
        """portalctl on this daemon's control socket; the CompletedProcess."""
        return subprocess.run([self.portalctl, "--socket", self.ctl_sock, *argv],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)

    def ctl_json(self, *argv, timeout=30):
        """`portalctl --json ARGV...` parsed; Failure when it exits non-zero."""
        r = self.ctl("--json", *argv, timeout=timeout)
        if r.returncode != 0:
            raise Failure(f"portalctl --json {' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
        return json.loads(r.stdout)

    def log_since(self, offset):
        with open(self.log_path) as f:
            f.seek(offset)
            return f.read()

    def log_tail(self):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-15:])
        except OSError:
            return ""
