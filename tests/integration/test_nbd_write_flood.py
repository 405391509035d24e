#!/usr/bin/python3
"""Resource exhaustion by NBD clients (issue 18): a WRITE-header flood, the
server-wide payload budget, and the connection cap, against the real daemon.

Starts $BUILD/bin/portalbd on memory:// with --max-connections 101, then:

 1. 100 raw connections each finish the handshake, send a WRITE header
    claiming the largest request the server advertises (64 MiB), and one
    payload byte. Once the daemon has read that byte from every socket (its
    receive queues in /proc/net/tcp are empty), the payload buffers exist:
    the daemon's VmHWM must stay under RSS_BOUND_MIB (it was ~3.3 GB when the
    buffer was sized and zero-filled before a byte arrived).
 2. A normal client (the 101st connection) writes and reads back.
 3. The 102nd connection is closed before the greeting and the daemon logs
    "refusing connection from ...: max_connections=101 reached"; once a
    connection ends, a new one is served again.
 4. Each flood connection sends up to 4 MiB more of its payload (400 MiB, more
    than the budget plus one request's overshoot).
    The daemon takes in at most its payload budget (256 MiB) plus one
    request's overshoot (64 MiB) while the rest waits, unread, in its sockets
    (back-pressure, not allocation); taken in = bytes sent minus what sits in
    the kernel's socket queues. VmHWM stays under the bound, and reads are
    still served.
 5. The flood connections close; the budget comes back and writes work again.

Prints one line per check and "N passed, N failed"; exits 0 only when every
check passes. Usage: [BUILD=dir] /usr/bin/python3 tests/integration/test_nbd_write_flood.py [path/to/portalbd]
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
INFO_BLOCK_SIZE = 3
CMD_READ, CMD_WRITE = 0, 1

MIB = 1 << 20
FLOOD_CONNECTIONS = 100
MAX_CONNECTIONS = FLOOD_CONNECTIONS + 1
# The README's bound (section Memory): the payload budget (256 MiB) plus one
# request (64 MiB) plus the daemon's own baseline, with room to spare.
RSS_BOUND_MIB = 600
BUDGET_MIB = 256            # nbd.max_write_payload_bytes default
OVERSHOOT_MIB = 64          # one request: max_request_bytes
EXTRA_PAYLOAD = 4 * MIB     # phase 4, per flood connection: 100 x 4 > budget + overshoot
WAIT_S = 60


class Closed(Exception):
    pass


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


class Client:
    def __init__(self, port, timeout=20):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.max_block = None

    def handshake(self):
        magic, opt_magic, _flags = struct.unpack(">QQH", recv_exact(self.sock, 18))
        if magic != NBDMAGIC or opt_magic != IHAVEOPT:
            raise AssertionError("bad greeting")
        self.sock.sendall(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES
        self.sock.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, 6) + struct.pack(">IH", 0, 0))
        while True:
            magic, _opt, rtype, length = struct.unpack(">QIII", recv_exact(self.sock, 20))
            if magic != OPT_REPLY_MAGIC:
                raise AssertionError("bad option reply magic")
            payload = recv_exact(self.sock, length)
            if rtype == REP_INFO:
                if struct.unpack(">H", payload[:2])[0] == INFO_BLOCK_SIZE:
                    self.max_block = struct.unpack(">III", payload[2:14])[2]
                continue
            if rtype != REP_ACK:
                raise AssertionError("GO refused: %#x" % rtype)
            return self

    def header(self, cmd, cookie, offset, length):
        return struct.pack(">IHHQQI", REQUEST_MAGIC, 0, cmd, cookie, offset, length)

    def reply(self):
        magic, error, cookie = struct.unpack(">IIQ", recv_exact(self.sock, 16))
        if magic != SIMPLE_REPLY_MAGIC:
            raise AssertionError("bad reply magic %#x" % magic)
        return error, cookie

    def local_port(self):
        return self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


def roundtrip(c, offset, seed):
    data = bytes((seed + i * 7) & 0xFF for i in range(4096))
    c.sock.sendall(c.header(CMD_WRITE, 1000 + seed, offset, len(data)) + data)
    error, cookie = c.reply()
    if error or cookie != 1000 + seed:
        return "write failed error=%d cookie=%d" % (error, cookie)
    return read_back(c, offset, seed, data)


def read_back(c, offset, seed, data):
    c.sock.sendall(c.header(CMD_READ, 2000 + seed, offset, len(data)))
    error, cookie = c.reply()
    if error or cookie != 2000 + seed:
        return "read failed error=%d cookie=%d" % (error, cookie)
    if recv_exact(c.sock, len(data)) != data:
        return "read returned other bytes than written"
    return None


def tcp_queues(server_port):
    """{client port: (server rx_queue, client tx_queue)} for loopback IPv4
    connections to server_port, from /proc/net/tcp."""
    rx, tx = {}, {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            lport = int(local.split(":")[1], 16)
            rport = int(remote.split(":")[1], 16)
            txq, rxq = (int(v, 16) for v in queues.split(":"))
            if lport == server_port:
                rx[rport] = rxq
            elif rport == server_port:
                tx[lport] = txq
    return {p: (rx.get(p, 0), tx.get(p, 0)) for p in set(rx) | set(tx)}


def proc_status_mib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def poll(condition, timeout=WAIT_S):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


class Checks:
    def __init__(self, daemon, log_path):
        self.daemon = daemon
        self.log_path = log_path
        self.failed = 0
        self.passed = 0

    def run(self, name, fn):
        try:
            problem = fn()
            if problem is None and self.daemon.poll() is not None:
                problem = "daemon exited with status %s" % self.daemon.returncode
        except (Closed, AssertionError, OSError) as e:
            problem = "%s: %s" % (type(e).__name__, e)
        if problem:
            self.failed += 1
            print("FAIL %s: %s" % (name, problem), flush=True)
        else:
            self.passed += 1
            print("PASS %s" % name, flush=True)
        return problem is None

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


def start_daemon(binary, workdir):
    port = free_port()
    log_path = os.path.join(workdir, "portalbd.log")
    log = open(log_path, "wb")
    # Every flood header must be a valid request (100 x 64 MiB inside the
    # device), or its payload is discarded unclaimed instead of held.
    args = [binary, "--storage", "memory://", "--disk-size-gb", "8",
            "--nbd-address", "127.0.0.1:%d" % port,
            "--max-connections", str(MAX_CONNECTIONS),
            "--socket", os.path.join(workdir, "ctl.sock"),
            "--state-dir", os.path.join(workdir, "state")]
    daemon = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def cleanup():
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        log.close()
    atexit.register(cleanup)

    # Ready once the log says so: a probe connection would count against the cap.
    def ready():
        if daemon.poll() is not None:
            return True
        with open(log_path, "rb") as f:
            return b"NBD server accepting connections" in f.read()
    if not poll(ready, 30) or daemon.poll() is not None:
        with open(log_path, "rb") as f:
            sys.stdout.write(f.read().decode(errors="replace"))
        raise SystemExit("FAIL daemon did not start (status %s)" % daemon.poll())
    return daemon, port, log_path


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    build = os.environ.get("BUILD", "build")
    if not os.path.isabs(build):
        build = os.path.join(root, build)
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(build, "bin", "portalbd")
    if not os.access(binary, os.X_OK):
        print("FAIL daemon binary %s not found (run make)" % binary)
        return 1
    workdir = tempfile.mkdtemp(prefix="pbd-nbd-write-flood-")
    atexit.register(shutil.rmtree, workdir, True)  # registered first: runs after the daemon is gone
    daemon, port, log_path = start_daemon(binary, workdir)
    pid = daemon.pid
    checks = Checks(daemon, log_path)
    baseline_mib = proc_status_mib(pid, "VmRSS")
    print("# daemon pid %d, VmRSS at start %.0f MiB" % (pid, baseline_mib), flush=True)

    flood = []
    state = {}

    def daemon_read_everything():
        # Both queues: bytes still in the client's send queue (not yet
        # delivered, e.g. while softirqs lag under load) are not read either.
        q = tcp_queues(port)
        return all(q.get(c.local_port(), (1, 1)) == (0, 0) for c in flood)

    # 1. The header flood.
    def header_flood():
        for _ in range(FLOOD_CONNECTIONS):
            flood.append(Client(port).handshake())
        length = flood[0].max_block
        if not length or length < 16 * MIB:
            return "the server advertises a maximum request of %s bytes, expected 64 MiB" % length
        state["length"] = length
        for i, c in enumerate(flood):
            c.sock.sendall(c.header(CMD_WRITE, i, i * length, length))
        if not poll(daemon_read_everything):
            return "the daemon did not read every WRITE header within %d s" % WAIT_S
        for c in flood:
            c.sock.sendall(b"\xa5")  # one payload byte: the buffer exists once it is read
        if not poll(daemon_read_everything):
            return "the daemon did not read the first payload byte of every WRITE within %d s" % WAIT_S
        rss, hwm = proc_status_mib(pid, "VmRSS"), proc_status_mib(pid, "VmHWM")
        print("# after %d WRITE headers claiming %d MiB each: VmRSS %.0f MiB, VmHWM %.0f MiB"
              % (FLOOD_CONNECTIONS, length // MIB, rss, hwm), flush=True)
        if hwm > RSS_BOUND_MIB:
            return "VmHWM %.0f MiB is over the %d MiB bound" % (hwm, RSS_BOUND_MIB)
        return None

    if not checks.run("%d WRITE headers claiming 64 MiB each keep VmHWM under %d MiB"
                      % (FLOOD_CONNECTIONS, RSS_BOUND_MIB), header_flood):
        return finish(checks)

    # 2. A normal client, the last connection the cap allows.
    normal = {}

    def normal_client():
        normal["c"] = Client(port).handshake()
        return roundtrip(normal["c"], 3 << 30, 7)
    checks.run("a normal client writes and reads back during the flood", normal_client)

    # 3. The connection cap.
    def cap_refuses():
        extra = socket.create_connection(("127.0.0.1", port), timeout=20)
        try:
            try:
                got = extra.recv(18)
            except ConnectionResetError:
                got = b""
            if got:
                return "connection %d got a greeting, expected to be refused" % (MAX_CONNECTIONS + 1)
        finally:
            extra.close()
        want = "max_connections=%d reached" % MAX_CONNECTIONS
        if not poll(lambda: "refusing connection from 127.0.0.1:" in checks.log_text() and want in checks.log_text(), 10):
            return "no log line 'refusing connection from ...: %s'" % want
        return None
    checks.run("connection %d is refused with a log line naming max_connections" % (MAX_CONNECTIONS + 1), cap_refuses)

    def cap_frees_a_slot():
        normal.pop("c").close()

        def served():
            try:
                c = Client(port, timeout=5)
            except OSError:
                return False
            try:
                c.handshake()
            except (Closed, OSError):
                c.close()
                return False
            normal["c"] = c
            return True
        if not poll(served, 20):
            return "no connection was served again after one of %d closed" % MAX_CONNECTIONS
        return roundtrip(normal["c"], (3 << 30) + 8192, 8)
    checks.run("once a connection ends, a new one is served", cap_frees_a_slot)

    # 4. The payload budget: 400 MiB offered, at most budget + one request taken in.
    def budget_holds():
        offered = {c.local_port(): 1 for c in flood}  # the byte of phase 1
        chunk = b"\x5a" * (256 << 10)
        left = {c.local_port(): EXTRA_PAYLOAD for c in flood}
        for c in flood:
            c.sock.setblocking(False)

        def pump():
            for c in flood:
                p = c.local_port()
                while left[p] > 0:
                    try:
                        n = c.sock.send(chunk[:min(len(chunk), left[p])])
                    except (BlockingIOError, InterruptedError):
                        break
                    left[p] -= n
                    offered[p] += n

        def taken_in():
            q = tcp_queues(port)
            return sum(offered[p] - q.get(p, (0, 0))[0] - q.get(p, (0, 0))[1] for p in offered)

        # The budget counts buffer capacity, which doubles as a payload
        # grows (1, 2, 4, 8 MiB here for 4 MiB and a byte of data): at least half is data.
        floor = BUDGET_MIB // 2 * MIB
        if not poll(lambda: (pump(), taken_in() >= floor)[1]):
            return "the daemon took in only %.1f MiB of the flood within %d s, expected %d MiB or more" % (
                taken_in() / MIB, WAIT_S, floor // MIB)
        # At the budget: keep offering for 2 s; the daemon must take in no
        # more than budget + overshoot while payload waits, unread, in its
        # sockets' receive queues.
        cap = (BUDGET_MIB + OVERSHOOT_MIB) * MIB
        taken = [taken_in()]
        poll(lambda: (pump(), taken.append(taken_in()), taken[-1] > cap)[2], 2)
        most = max(taken)
        unread = sum(rxq for rxq, _ in tcp_queues(port).values())
        rss, hwm = proc_status_mib(pid, "VmRSS"), proc_status_mib(pid, "VmHWM")
        print("# %.0f MiB offered, %.1f MiB taken in, %.1f MiB unread in the daemon's sockets; "
              "VmRSS %.0f MiB, VmHWM %.0f MiB"
              % (sum(offered.values()) / MIB, most / MIB, unread / MIB, rss, hwm), flush=True)
        if most > cap:
            return "the daemon took in %.1f MiB of payload, over its budget %d MiB + %d MiB" % (
                most / MIB, BUDGET_MIB, OVERSHOOT_MIB)
        if unread < 256 << 10:
            return "only %d bytes wait in the daemon's receive queues: the flood never met the budget" % unread
        if hwm > RSS_BOUND_MIB:
            return "VmHWM %.0f MiB is over the %d MiB bound" % (hwm, RSS_BOUND_MIB)
        return read_back(normal["c"], (3 << 30) + 8192, 8, bytes((8 + i * 7) & 0xFF for i in range(4096)))
    checks.run("400 MiB of partial payloads: at most the budget is taken in, reads still served", budget_holds)

    # 5. The flood ends: its claims are released and writes work again.
    def budget_returns():
        for c in flood:
            c.close()
        flood.clear()
        return roundtrip(normal["c"], (3 << 30) + 16384, 9)
    checks.run("after the flood closes, writes are served again", budget_returns)
    normal.pop("c").close()
    return finish(checks)


def finish(checks):
    if checks.failed:
        print("--- daemon log ---")
        sys.stdout.write(checks.log_text()[-4000:])
    print("%d passed, %d failed" % (checks.passed, checks.failed))
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
