#!/usr/bin/env bash
# NBD requests of 64 MiB (issue 24): the daemon advertises a 64 MiB maximum
# payload in NBD_INFO_BLOCK_SIZE and serves READ, WRITE, WRITE_ZEROES and TRIM
# of 64 MiB in one request each (libnbd, which never splits, and qemu-io);
# a READ or WRITE one block longer than the maximum gets EINVAL and the
# connection stays usable. On memory:// and on file:// (where a 64 MiB write
# becomes segments in storage).
source "$(dirname "$0")/lib.sh"
requires qemu-io nbdinfo
requires_python_nbd

MiB=$((1024 * 1024))
MAX=$((64 * MiB))

for STORE in memory:// "file://$TMP/store"; do
  log "--- storage $STORE"
  start_portalbd --storage "$STORE" --disk-size-gb 1 --journal off

  info=$(nbdinfo --json "$(nbd_uri)")
  max=$("$SYSPYTHON" -c 'import json,sys; print(json.loads(sys.argv[1])["exports"][0]["block_size_maximum"])' "$info")
  assert_eq "$max" "$MAX" "NBD_INFO_BLOCK_SIZE advertises a maximum payload of 64 MiB"

  # One request each, counted by the daemon: libnbd sends what it is given.
  check "libnbd: WRITE, READ, WRITE_ZEROES and TRIM of 64 MiB, one request each" \
    "$SYSPYTHON" - "$(nbd_uri)" "$CTL_SOCK" "$PORTALCTL" <<'EOF'
import json, os, subprocess, sys
import nbd

uri, sock, portalctl = sys.argv[1:4]
MiB = 1 << 20
N = 64 * MiB

def counters():
    out = subprocess.run([portalctl, "--socket", sock, "--json", "status"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["counters"]

h = nbd.NBD()
h.connect_uri(uri)
assert h.get_block_size(nbd.SIZE_MAXIMUM) == N, h.get_block_size(nbd.SIZE_MAXIMUM)
data = os.urandom(N)
before = counters()
h.pwrite(data, 0)
h.flush()
mid = counters()
assert mid["writes"] - before["writes"] == 1, (before["writes"], mid["writes"])
assert mid["bytes_written"] - before["bytes_written"] == N
got = h.pread(N, 0)
assert got == data, "64 MiB READ returned other bytes than the WRITE"
after_read = counters()
assert after_read["reads"] - mid["reads"] == 1, (mid["reads"], after_read["reads"])
h.pwrite(data, N)
h.zero(N, 0)
h.trim(N, N)
end = counters()
assert end["zeroes"] - after_read["zeroes"] == 1 and end["trims"] - after_read["trims"] == 1, end
assert h.pread(N, 0) == bytes(N), "64 MiB WRITE_ZEROES left data"
assert h.pread(N, N) == bytes(N), "64 MiB TRIM left data"
h.shutdown()
EOF

  # One block over the maximum: EINVAL, and the same connection goes on.
  check "READ and WRITE of 64 MiB + 4 KiB get EINVAL; the connection stays in sync" \
    "$SYSPYTHON" - "$TOP/tests/integration" "$PORT" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import test_nbd_bad_input as raw

c = raw.connect(int(sys.argv[2]))
assert c.max_block == 64 << 20, c.max_block
length = c.max_block + 4096
c.request(raw.CMD_READ, 7, 0, length)
error, cookie = c.reply()
assert (error, cookie) == (raw.EINVAL, 7), (error, cookie)
c.request(raw.CMD_WRITE, 8, 0, length, payload=b"\x5a" * length)
error, cookie = c.reply()
assert (error, cookie) == (raw.EINVAL, 8), (error, cookie)
problem = raw.roundtrip(c, 1 << 20, 11)
assert problem is None, problem
c.close()
EOF

  # qemu-io, as a user would run it (qemu may split by the advertised maximum).
  qio "$(nbd_uri)" "write -P 0x5a 0 64M" "read -P 0x5a 0 64M" "write -P 0x6b 64M 64M" \
    "write -z 64M 64M" "read -P 0 64M 64M" "write -P 0x7c 128M 64M" "discard 128M 64M" "read -P 0 128M 64M" \
    "read -P 0x5a 0 64M"
  ok "qemu-io: 64 MiB write, read, write -z and discard read back exactly"
  stop_portalbd
done
