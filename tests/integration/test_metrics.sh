#!/usr/bin/env bash
# The Prometheus endpoint (--metrics-address): a scrape parses strictly as
# exposition format 0.0.4 (prom_check.py: HELP/TYPE, names, labels, counters,
# cumulative histogram buckets ending in +Inf with _sum and _count); after
# 3 MiB of writes, a flush and a read the NBD, volume and store counters moved
# by at least that much; another path is 404 and another method 405; a
# non-loopback address is refused at start with a clear error; without the
# flag nothing listens.
source "$(dirname "$0")/lib.sh"
requires nbdsh
requires_python_nbd

CHECK=$TOP/tests/integration/prom_check.py
MiB=$((1024 * 1024))

# The checker itself refuses what it should (else a pass proves nothing).
bad_text() {  # DESCRIPTION TEXT
  printf '%b' "$2" >"$TMP/bad.txt"
  if "$SYSPYTHON" "$CHECK" parse "$TMP/bad.txt" >/dev/null 2>&1; then
    fail "prom_check.py accepts $1"
  fi
}
printf '# HELP portalbd_x_total x\n# TYPE portalbd_x_total counter\nportalbd_x_total{a="b"} 1\n' >"$TMP/good.txt"
check "prom_check.py accepts a well-formed counter" "$SYSPYTHON" "$CHECK" parse "$TMP/good.txt"
bad_text "a sample without TYPE" '# HELP portalbd_x_total x\nportalbd_x_total 1\n'
bad_text "a bad label escape" '# HELP portalbd_x_total x\n# TYPE portalbd_x_total counter\nportalbd_x_total{a="\\q"} 1\n'
bad_text "a counter not named _total" '# HELP portalbd_x x\n# TYPE portalbd_x counter\nportalbd_x 1\n'
H='# HELP portalbd_h h\n# TYPE portalbd_h histogram\n'
bad_text "non-cumulative buckets" "${H}"'portalbd_h_bucket{le="1"} 2\nportalbd_h_bucket{le="+Inf"} 1\nportalbd_h_sum 1\nportalbd_h_count 1\n'
bad_text "buckets without +Inf" "${H}"'portalbd_h_bucket{le="1"} 1\nportalbd_h_sum 1\nportalbd_h_count 1\n'
bad_text "a histogram without _count" "${H}"'portalbd_h_bucket{le="+Inf"} 1\nportalbd_h_sum 1\n'
bad_text "a series twice" '# HELP portalbd_g g\n# TYPE portalbd_g gauge\nportalbd_g 1\nportalbd_g 2\n'
ok "prom_check.py refuses 7 kinds of malformed exposition text"

# A non-loopback address is refused before anything starts.
portalbd_default_args
for bad in 0.0.0.0 192.0.2.1 '[::]'; do
  rc=0
  out=$("$PORTALBD" "${DEFAULT_ARGS[@]}" --storage memory:// --metrics-address "$bad:9" 2>&1) || rc=$?
  assert_eq "$rc" 2 "--metrics-address $bad:9 exits 2 (configuration error)"
  assert_match "$out" "metrics are served on loopback only" "--metrics-address $bad:9 says why"
done

# Without the flag, nothing serves metrics.
MPORT=$(pick_unused_port)
start_portalbd --storage memory:// --disk-size-gb 1
"$SYSPYTHON" - "$MPORT" <<'EOF' || fail "something listens on 127.0.0.1:$MPORT with metrics off"
import socket, sys
s = socket.socket()
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) != 0 else 1)
EOF
ok "metrics are off by default"
stop_portalbd

# file:// storage without the journal: a FLUSH is an upload, so the upload
# and store counters move with it.
start_portalbd --disk-size-gb 1 --journal off --metrics-address "127.0.0.1:$MPORT"
URL=http://127.0.0.1:$MPORT/metrics
assert_match "$(cat "$PORTALBD_LOG")" "serving Prometheus metrics url=http://127.0.0.1:$MPORT/metrics" \
  "the daemon logs the metrics URL"

out=$("$SYSPYTHON" "$CHECK" scrape "$URL" "$TMP/before.json" 2>&1) || { echo "$out"; fail "first scrape"; }
ok "the first scrape parses strictly ($out)"
get() { "$SYSPYTHON" "$CHECK" get "$@"; }

for name in portalbd_nbd_requests_total portalbd_nbd_bytes_total portalbd_nbd_request_duration_seconds \
  portalbd_nbd_requests_in_flight portalbd_nbd_connections portalbd_write_buffer_dirty_bytes \
  portalbd_volume_flushes_total portalbd_segments_uploaded_total portalbd_uploaded_bytes_total \
  portalbd_store_requests_total portalbd_store_bytes_total portalbd_store_request_errors_total \
  portalbd_store_request_duration_seconds portalbd_cache_hits_total portalbd_cache_misses_total \
  portalbd_cache_bytes portalbd_fetch_gets_total portalbd_gc_passes_total portalbd_gc_reclaimed_bytes_total \
  portalbd_stored_bytes portalbd_live_bytes portalbd_snapshots portalbd_lease_state portalbd_storage_failing; do
  grep -q "\"$name\"" "$TMP/before.json" || fail "the scrape has no $name family"
done
ok "the scrape has the NBD, write buffer, store, cache, GC, snapshot, lease and storage families"
assert_eq "$(get "$TMP/before.json" portalbd_lease_state state=held)" 1 "the lease is held"
assert_eq "$(get "$TMP/before.json" portalbd_storage_failing)" 0 "storage is not failing"

w0=$(get "$TMP/before.json" portalbd_nbd_requests_total command=write)
wb0=$(get "$TMP/before.json" portalbd_nbd_bytes_total command=write)
rb0=$(get "$TMP/before.json" portalbd_nbd_bytes_total command=read)
f0=$(get "$TMP/before.json" portalbd_nbd_requests_total command=flush)
wc0=$(get "$TMP/before.json" portalbd_nbd_request_duration_seconds_count command=write)
up0=$(get "$TMP/before.json" portalbd_uploaded_bytes_total)
sp0=$(get "$TMP/before.json" portalbd_store_requests_total owner=volume operation=put)
lp0=$(get "$TMP/before.json" portalbd_store_requests_total owner=lease operation=put)
sd0=$(get "$TMP/before.json" portalbd_store_request_duration_seconds_count operation=put)

# 3 writes of 1 MiB, a flush, a 1 MiB read; then a snapshot.
nbdsh -u "$(nbd_uri)" -c "
buf = b'\\x5a' * $MiB
for i in range(3):
    h.pwrite(buf, i * $MiB)
h.flush()
assert h.pread($MiB, 0) == buf
" || fail "nbdsh I/O failed"
"$PORTALCTL" --socket "$CTL_SOCK" snapshot create metrics-snap >/dev/null || fail "snapshot create"

out=$("$SYSPYTHON" "$CHECK" scrape "$URL" "$TMP/after.json" 2>&1) || { echo "$out"; fail "second scrape"; }
ok "the scrape after I/O parses strictly ($out)"
w1=$(get "$TMP/after.json" portalbd_nbd_requests_total command=write)
wb1=$(get "$TMP/after.json" portalbd_nbd_bytes_total command=write)
rb1=$(get "$TMP/after.json" portalbd_nbd_bytes_total command=read)
f1=$(get "$TMP/after.json" portalbd_nbd_requests_total command=flush)
wc1=$(get "$TMP/after.json" portalbd_nbd_request_duration_seconds_count command=write)
up1=$(get "$TMP/after.json" portalbd_uploaded_bytes_total)
sp1=$(get "$TMP/after.json" portalbd_store_requests_total owner=volume operation=put)
lp1=$(get "$TMP/after.json" portalbd_store_requests_total owner=lease operation=put)
sd1=$(get "$TMP/after.json" portalbd_store_request_duration_seconds_count operation=put)
[ $((w1 - w0)) -ge 3 ] || fail "write requests moved by $((w1 - w0)), expected >= 3"
ok "write requests moved by $((w1 - w0)) (>= 3)"
[ $((wb1 - wb0)) -ge $((3 * MiB)) ] || fail "bytes written moved by $((wb1 - wb0)), expected >= $((3 * MiB))"
ok "bytes written moved by $((wb1 - wb0)) (>= 3 MiB)"
[ $((rb1 - rb0)) -ge $MiB ] || fail "bytes read moved by $((rb1 - rb0)), expected >= 1 MiB"
ok "bytes read moved by $((rb1 - rb0)) (>= 1 MiB)"
[ $((f1 - f0)) -ge 1 ] || fail "flush requests did not move"
ok "flush requests moved by $((f1 - f0))"
assert_eq "$((wc1 - wc0))" "$((w1 - w0))" "the write latency histogram counted every write request"
[ "$up1" -gt "$up0" ] || fail "uploaded bytes did not move ($up0 -> $up1)"
ok "uploaded bytes moved by $((up1 - up0))"
[ "$sp1" -gt "$sp0" ] || fail "store PUT requests did not move ($sp0 -> $sp1)"
ok "store PUT requests moved by $((sp1 - sp0))"
# Every PUT is timed when it returns; a lease renewal may be on its way
# during a scrape (counted as issued, not yet timed): one either way.
sd=$((sd1 - sd0)) puts=$(( (sp1 - sp0) + (lp1 - lp0) ))
[ "$sd" -ge "$((sp1 - sp0))" ] && [ "$sd" -ge "$((puts - 1))" ] && [ "$sd" -le "$((puts + 1))" ] ||
  fail "the store PUT latency histogram counted $sd PUTs, $puts were issued"
ok "the store PUT latency histogram counted every PUT ($sd)"
assert_eq "$(get "$TMP/after.json" portalbd_store_request_errors_total owner=volume operation=put)" 0 \
  "no store request failed"
assert_eq "$(get "$TMP/after.json" portalbd_snapshots)" 1 "portalbd_snapshots counts the snapshot"
assert_eq "$(get "$TMP/after.json" portalbd_nbd_requests_in_flight)" 0 "no request in flight once the client is done"

# Other paths, methods and malformed or oversized requests.
assert_eq "$("$SYSPYTHON" "$CHECK" status "http://127.0.0.1:$MPORT/")" 404 "GET / is 404"
assert_eq "$("$SYSPYTHON" "$CHECK" status "http://127.0.0.1:$MPORT/metricsx")" 404 "GET /metricsx is 404"
assert_eq "$("$SYSPYTHON" "$CHECK" status "$URL?x=1")" 200 "a query string is ignored"
assert_eq "$("$SYSPYTHON" "$CHECK" status "$URL" POST)" 405 "POST /metrics is 405"
"$SYSPYTHON" - "$MPORT" <<'EOF' || fail "raw HTTP requests"
import socket, sys, time
port = int(sys.argv[1])
def ask(data, wait_close=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    s.sendall(data)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return out
r = ask(b"GARBAGE\r\n\r\n")
assert r.startswith(b"HTTP/1.1 400"), r[:40]
r = ask(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
assert r.startswith(b"HTTP/1.1 431"), r[:40]
r = ask(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
assert r.startswith(b"HTTP/1.1 200") and r.endswith(b"\r\n\r\n"), r[-40:]
# A client that says nothing is dropped after the timeout; others get served after it.
idle = socket.create_connection(("127.0.0.1", port), timeout=15)
t0 = time.time()
r = ask(b"GET /metrics HTTP/1.1\r\n\r\n")
assert r.startswith(b"HTTP/1.1 200"), r[:40]
assert time.time() - t0 < 10, time.time() - t0
assert idle.recv(10) == b""
EOF
ok "a bad request line is 400, an oversized head 431, HEAD has no body, an idle client is dropped"
stop_portalbd

# With the journal on, the upload lag and the journal are shown too.
start_portalbd --disk-size-gb 1 --journal on --metrics-address "127.0.0.1:$MPORT"
out=$("$SYSPYTHON" "$CHECK" scrape "$URL" "$TMP/journal.json" 2>&1) || { echo "$out"; fail "scrape with the journal"; }
for name in portalbd_upload_lag_seconds portalbd_journal_used_bytes portalbd_journal_syncs_total; do
  grep -q "\"$name\"" "$TMP/journal.json" || fail "the scrape with the journal on has no $name family"
done
ok "with the journal on the scrape parses strictly and shows the upload lag and the journal ($out)"
assert_eq "$(get "$TMP/journal.json" portalbd_snapshots)" 1 "the snapshot is still counted after a restart"

# The Grafana dashboard asks only for metrics the daemon serves (the s3 ones
# appear on s3:// only: they are checked against the collector's source).
"$SYSPYTHON" - "$TOP/packaging/grafana/portalbd.json" "$TMP/journal.json" "$TOP/daemon/metrics_collector.cc" <<'EOF' ||
import json, re, sys
dash = json.load(open(sys.argv[1]))
families = set(json.load(open(sys.argv[2]))["types"])
collector = open(sys.argv[3]).read()
exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
names = set(re.findall(r"portalbd_[a-z0-9_]+", " ".join(exprs)))
missing = []
for n in sorted(names):
    if n.startswith("portalbd_s3_"):
        # portalbd_s3_retries_total comes from the S3 store's "retries" counter.
        if n not in ("portalbd_s3_retries_total", "portalbd_s3_errors_total") or "base + name + \"_total\"" not in collector:
            missing.append(n)
    elif re.sub(r"_bucket$", "", n) not in families:
        missing.append(n)
if missing or len(names) < 20:
    sys.exit("dashboard metrics not served: %s (%d names)" % (missing, len(names)))
EOF
  fail "packaging/grafana/portalbd.json names metrics the daemon does not serve"
ok "the Grafana dashboard names only metrics the daemon serves"
stop_portalbd
