#!/usr/bin/python3
"""Malformed NBD traffic against the real daemon (invariant 7: bad input gets a
clear error, never a crash).

Starts build/bin/portalbd on a memory store with a free TCP port and a unix
socket in a temp dir, then speaks raw NBD over sockets (stdlib only):
a wrong option magic, an unknown option, a huge option length, requests past
the end, an oversized write, an unknown command, a wrong request magic and a
truncated request. After each one a fresh connection must still write and
read correctly, and the daemon must still be running.

Prints one line per check; exits 0 only when every check passes.
Usage: /usr/bin/python3 tests/integration/test_nbd_bad_input.py [path/to/portalbd]
"""
import atexit
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

from ports import free_port

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698

OPT_GO = 7
REP_ACK = 1
REP_INFO = 3
REP_ERR_UNSUP = 0x80000001
REP_ERR_INVALID = 0x80000003
REP_ERR_TOO_BIG = 0x80000009
INFO_EXPORT = 0
INFO_BLOCK_SIZE = 3

CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3
EINVAL, ENOSPC = 22, 28

TIMEOUT_S = 10


class Closed(Exception):
    """The server closed the connection."""


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        try:
            part = sock.recv(n - len(buf))
        except ConnectionResetError:
            raise Closed("connection reset")
        if not part:
            raise Closed("EOF after %d of %d bytes" % (len(buf), n))
        buf += part
    return buf


def server_closed(sock):
    """True when the server hangs up (EOF or reset) within the timeout."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


class Client:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
        self.size = None
        self.max_block = None

    def close(self):
        self.sock.close()

    def greet(self):
        magic, opt_magic, flags = struct.unpack(">QQH", recv_exact(self.sock, 18))
        if magic != NBDMAGIC or opt_magic != IHAVEOPT:
            raise AssertionError("bad greeting %#x %#x" % (magic, opt_magic))
        # FIXED_NEWSTYLE | NO_ZEROES
        self.sock.sendall(struct.pack(">I", 3))
        return flags

    def send_option(self, option, payload=b"", magic=IHAVEOPT, length=None):
        if length is None:
            length = len(payload)
        self.sock.sendall(struct.pack(">QII", magic, option, length) + payload)

    def read_option_reply(self):
        magic, option, rtype, length = struct.unpack(">QIII", recv_exact(self.sock, 20))
        if magic != OPT_REPLY_MAGIC:
            raise AssertionError("bad option reply magic %#x" % magic)
        return option, rtype, recv_exact(self.sock, length)

    def go(self, name=b""):
        self.send_option(OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
        while True:
            _, rtype, payload = self.read_option_reply()
            if rtype == REP_INFO:
                (info,) = struct.unpack(">H", payload[:2])
                if info == INFO_EXPORT:
                    self.size, _flags = struct.unpack(">QH", payload[2:12])
                elif info == INFO_BLOCK_SIZE:
                    _min, _pref, self.max_block = struct.unpack(">III", payload[2:14])
                continue
            if rtype != REP_ACK:
                raise AssertionError("GO refused: reply %#x %r" % (rtype, payload))
            return

    def request(self, cmd, cookie, offset, length, flags=0, payload=b"", magic=REQUEST_MAGIC):
        self.sock.sendall(struct.pack(">IHHQQI", magic, flags, cmd, cookie, offset, length) + payload)

    def reply(self):
        magic, error, cookie = struct.unpack(">IIQ", recv_exact(self.sock, 16))
        if magic != SIMPLE_REPLY_MAGIC:
            raise AssertionError("bad reply magic %#x" % magic)
        return error, cookie


def connect(port):
    c = Client(port)
    c.greet()
    c.go()
    return c


def roundtrip(c, offset, seed):
    data = bytes((seed + i * 7) & 0xFF for i in range(4096))
    c.request(CMD_WRITE, 1000 + seed, offset, len(data), payload=data)
    error, cookie = c.reply()
    if error or cookie != 1000 + seed:
        return "write failed error=%d cookie=%d" % (error, cookie)
    c.request(CMD_READ, 2000 + seed, offset, len(data))
    error, cookie = c.reply()
    if error or cookie != 2000 + seed:
        return "read failed error=%d cookie=%d" % (error, cookie)
    if recv_exact(c.sock, len(data)) != data:
        return "read returned other bytes than written"
    return None


class Checks:
    def __init__(self, port, daemon):
        self.port = port
        self.daemon = daemon
        self.failed = 0
        self.seed = 0

    def fresh_connection_ok(self):
        self.seed += 1
        c = connect(self.port)
        try:
            return roundtrip(c, 1 << 20, self.seed)
        finally:
            c.close()

    def run(self, name, fn):
        try:
            problem = fn()
            if problem is None:
                problem = self.fresh_connection_ok()
                if problem:
                    problem = "afterwards a fresh connection failed: " + problem
            if problem is None and self.daemon.poll() is not None:
                problem = "daemon exited with status %s" % self.daemon.returncode
        except (Closed, AssertionError, OSError) as e:
            problem = "%s: %s" % (type(e).__name__, e)
        if problem:
            self.failed += 1
            print("FAIL %s: %s" % (name, problem), flush=True)
        else:
            print("PASS %s" % name, flush=True)


def check_baseline(port):
    c = connect(port)
    try:
        return roundtrip(c, 0, 200)
    finally:
        c.close()


def check_wrong_option_magic(port):
    c = Client(port)
    try:
        c.greet()
        c.send_option(OPT_GO, struct.pack(">IH", 0, 0), magic=0x1122334455667788)
        return None if server_closed(c.sock) else "connection stayed open after a wrong option magic"
    finally:
        c.close()


def check_unknown_option(port):
    c = Client(port)
    try:
        c.greet()
        c.send_option(999, b"\0" * 13)
        option, rtype, _ = c.read_option_reply()
        if option != 999 or rtype != REP_ERR_UNSUP:
            return "expected ERR_UNSUP for option 999, got option=%d reply=%#x" % (option, rtype)
        c.go()
        return roundtrip(c, 8192, 201)
    finally:
        c.close()


def check_huge_option_length(port):
    c = Client(port)
    try:
        c.greet()
        c.send_option(OPT_GO, b"", length=0xFFFFFFF0)
        try:
            _, rtype, _ = c.read_option_reply()
        except Closed:
            return None  # hanging up is allowed
        if rtype not in (REP_ERR_TOO_BIG, REP_ERR_INVALID):
            return "expected ERR_TOO_BIG/ERR_INVALID, got %#x" % rtype
        return None
    finally:
        c.close()


def check_past_the_end(port):
    c = connect(port)
    try:
        size = c.size
        c.request(CMD_READ, 1, size - 512, 4096)
        error, cookie = c.reply()
        if error != EINVAL or cookie != 1:
            return "read past the end: expected EINVAL, got %d" % error
        c.request(CMD_WRITE, 2, size - 512, 4096, payload=b"\xab" * 4096)
        error, cookie = c.reply()
        if error != ENOSPC or cookie != 2:
            return "write past the end: expected ENOSPC, got %d" % error
        c.request(CMD_READ, 3, (1 << 64) - 512, 4096)
        error, _ = c.reply()
        if error != EINVAL:
            return "read with offset+length overflowing: expected EINVAL, got %d" % error
        return roundtrip(c, 16384, 202)  # the refused write's payload was skipped
    finally:
        c.close()


def check_oversized_write(port):
    c = connect(port)
    try:
        if not c.max_block:
            return "no NBD_INFO_BLOCK_SIZE in GO reply"
        length = c.max_block + 4096
        c.request(CMD_WRITE, 4, 0, length, payload=b"\0" * length)
        try:
            error, cookie = c.reply()
        except Closed:
            return None  # closing instead of discarding is allowed
        if error != EINVAL or cookie != 4:
            return "oversized write: expected EINVAL, got %d" % error
        return roundtrip(c, 20480, 203)
    finally:
        c.close()


def check_unknown_command(port):
    c = connect(port)
    try:
        c.request(42, 5, 0, 512)
        error, cookie = c.reply()
        if error != EINVAL or cookie != 5:
            return "unknown command: expected EINVAL, got %d" % error
        c.request(CMD_READ, 6, 0, 512)
        error, cookie = c.reply()
        if error or cookie != 6:
            return "READ after unknown command failed: error=%d" % error
        recv_exact(c.sock, 512)
        return None
    finally:
        c.close()


def check_wrong_request_magic(port):
    c = connect(port)
    try:
        c.request(CMD_READ, 7, 0, 512, magic=0xCAFEF00D)
        return None if server_closed(c.sock) else "connection stayed open after a wrong request magic"
    finally:
        c.close()


def check_truncated_request(port):
    c = connect(port)
    try:
        c.sock.sendall(struct.pack(">IHH", REQUEST_MAGIC, 0, CMD_READ) + b"\0" * 4)  # 12 of 28 bytes
        c.sock.shutdown(socket.SHUT_WR)
        return None if server_closed(c.sock) else "connection stayed open after a truncated request"
    finally:
        c.close()


def start_daemon(binary, workdir):
    port = free_port()
    log_path = os.path.join(workdir, "portalbd.log")
    log = open(log_path, "wb")
    args = [binary, "--storage", "memory://", "--disk-size-gb", "1",
            "--nbd-address", "127.0.0.1:%d" % port,
            "--nbd-unix", os.path.join(workdir, "nbd.sock"),
            "--socket", os.path.join(workdir, "ctl.sock"),
            "--state-dir", os.path.join(workdir, "state")]
    daemon = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def cleanup():
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        log.close()
    atexit.register(cleanup)

    deadline = time.time() + 30
    while time.time() < deadline:
        if daemon.poll() is not None:
            with open(log_path, "rb") as f:
                sys.stdout.write(f.read().decode(errors="replace"))
            raise SystemExit("FAIL daemon exited at start with status %s" % daemon.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return daemon, port, log_path
        except OSError:
            time.sleep(0.1)
    raise SystemExit("FAIL daemon did not accept on port %d within 30 s" % port)


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build", "bin", "portalbd")
    if not os.access(binary, os.X_OK):
        print("FAIL daemon binary %s not found (run make)" % binary)
        return 1
    workdir = tempfile.mkdtemp(prefix="pbd-nbd-bad-input-")
    atexit.register(shutil.rmtree, workdir, True)  # registered first: runs after the daemon is gone
    daemon, port, log_path = start_daemon(binary, workdir)

    checks = Checks(port, daemon)
    checks.run("baseline write/read", lambda: check_baseline(port))
    checks.run("wrong option magic closes the connection", lambda: check_wrong_option_magic(port))
    checks.run("unknown option: ERR_UNSUP, then GO and READ on the same connection", lambda: check_unknown_option(port))
    checks.run("huge option length: ERR_TOO_BIG or close, no allocation", lambda: check_huge_option_length(port))
    checks.run("requests past the end: EINVAL for READ, ENOSPC for WRITE", lambda: check_past_the_end(port))
    checks.run("oversized WRITE: EINVAL, payload skipped, stream in sync", lambda: check_oversized_write(port))
    checks.run("unknown command: EINVAL, then READ on the same connection", lambda: check_unknown_command(port))
    checks.run("wrong request magic closes the connection", lambda: check_wrong_request_magic(port))
    checks.run("truncated request closes the connection", lambda: check_truncated_request(port))

    if checks.failed:
        print("--- daemon log ---")
        with open(log_path, "rb") as f:
            sys.stdout.write(f.read().decode(errors="replace")[-4000:])
    print("%d passed, %d failed" % (9 - checks.failed, checks.failed))
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
