#!/usr/bin/env bash
# Bad configuration gets a clear, quick refusal: each case must exit non-zero
# (not by a signal) within 5 s, with one message line that names the problem.
# Then the example config of the original portalbd README loads and serves
# (only its address, socket and storage URL adapted to this test).
# All cases run; the failures are listed together at the end.
source "$(dirname "$0")/lib.sh"
requires_portalbd

failures=0
soft_fail() { echo "FAIL - $*"; failures=$((failures + 1)); }

# refused NAME PROBLEM-ERE ARGS...: portalbd ARGS must be refused as described.
# With ONE_LINE=0 the output may hold more lines (errors found while starting up).
refused() {
  local name=$1 problem=$2; shift 2
  local n=$((++case_no)) lines base
  base=(--nbd-unix "$TMP/nbd.$n.sock" --socket "$TMP/ctl.$n.sock")
  case " $* " in *" --nbd-address "*) ;; *) base+=(--nbd-address "127.0.0.1:$PORT") ;; esac
  run_portalbd_expect_failure 10 "${base[@]}" "$@"
  echo "  \$ portalbd ... $*  -> exit $RUN_RC in ${RUN_MS} ms"
  head -8 <<<"$RUN_OUT" | sed 's/^/    | /'
  if [ "$RUN_RC" -eq 0 ]; then soft_fail "$name: exit status 0"; return; fi
  if [ "$RUN_RC" -eq 124 ] || [ "$RUN_RC" -eq 137 ]; then soft_fail "$name: still running after 10 s"; return; fi
  if [ "$RUN_RC" -gt 128 ]; then soft_fail "$name: killed by signal $((RUN_RC - 128))"; return; fi
  [ "$RUN_MS" -lt 5000 ] || soft_fail "$name: took ${RUN_MS} ms to refuse (limit 5 s)"
  if grep -qiE 'Segmentation|Aborted|terminate called|AddressSanitizer|core dumped|what\(\)' <<<"$RUN_OUT"; then
    soft_fail "$name: the output shows a crash"
  fi
  if ! grep -qE -- "$problem" <<<"$RUN_OUT"; then
    soft_fail "$name: no line names the problem (/$problem/)"; return
  fi
  lines=$(grep -c . <<<"$RUN_OUT" || true)
  if [ "${ONE_LINE:-1}" = 1 ] && [ "$lines" -ne 1 ]; then
    soft_fail "$name: $lines lines of output, expected one message line"; return
  fi
  ok "$name: refused with exit $RUN_RC in ${RUN_MS} ms"
}
case_no=0

printf '[device]\ndisk_size_gb = 1\nbogus_key = 3\n' >"$TMP/unknown-key.toml"
refused "unknown TOML key" 'bogus_key' -c "$TMP/unknown-key.toml" --state-dir "$TMP/s1"
printf '[device]\ndisk_size_gb = 1\n[nonsense]\nx = 1\n' >"$TMP/unknown-table.toml"
refused "unknown TOML table" 'nonsense' -c "$TMP/unknown-table.toml" --state-dir "$TMP/s2"
printf '[device\ndisk_size_gb = 1\n' >"$TMP/syntax.toml"
refused "TOML syntax error" 'syntax\.toml' -c "$TMP/syntax.toml" --state-dir "$TMP/s3"
printf '[device]\ndisk_size_gb = "ten"\n' >"$TMP/type.toml"
refused "TOML value of the wrong type" 'disk_size_gb' -c "$TMP/type.toml" --state-dir "$TMP/s4"
refused "missing config file" 'no-such\.toml' -c "$TMP/no-such.toml" --state-dir "$TMP/s5"
refused "bad storage URL scheme" 'ftp' --storage ftp://x --state-dir "$TMP/s6"
refused "relative file:// path" "absolute path: 'file://data/vol' .*file:///absolute/data/vol" \
  --storage file://data/vol --state-dir "$TMP/s6r"
refused "memory:// with a name" "memory:// takes nothing after it .*write memory://" --storage memory://foo --state-dir "$TMP/s6m"
refused "misspelt flag" "unknown option --disk-sise-gb; did you mean --disk-size-gb\\?" --disk-sise-gb 1 --state-dir "$TMP/s6f"
printf '[storage]\nurl = "ftp://x"\n' >"$TMP/ftp.toml"
refused "bad storage URL scheme in the config file" 'ftp' -c "$TMP/ftp.toml" --state-dir "$TMP/s7"
refused "--disk-size-gb 0" 'disk[-_]size[-_]gb|[Ss]ize' --disk-size-gb 0 --state-dir "$TMP/s8"
printf '[device]\ndisk_size_gb = 0\n' >"$TMP/size0.toml"
refused "disk_size_gb = 0 in the config file" 'disk[-_]size[-_]gb|[Ss]ize' -c "$TMP/size0.toml" --state-dir "$TMP/s9"
refused "--disk-size-gb not a number" 'disk[-_]size[-_]gb|abc' --disk-size-gb abc --state-dir "$TMP/s10"
refused "--disk-size-gb beyond 1 EiB" 'disk[-_]size[-_]gb|[Ss]ize' --disk-size-gb 1073741825 --state-dir "$TMP/s11"
touch "$TMP/a-file"
refused "state dir under a regular file" "$TMP/a-file" --state-dir "$TMP/a-file/state"
refused "unknown log level" 'chatty|log' --log-level chatty --state-dir "$TMP/s12"
refused "unknown flag" 'frobnicate' --frobnicate --state-dir "$TMP/s13"
refused "NBD address without a port" 'nonsense|address|port' --state-dir "$TMP/s14" --nbd-address nonsense
refused "NBD port out of range" '99999|port' --state-dir "$TMP/s15" --nbd-address 127.0.0.1:99999
printf '[daemon]\ncontrol_idle_timeout_ms = 0\n' >"$TMP/idle0.toml"
refused "control_idle_timeout_ms = 0 (never) in the config file" 'control_idle_timeout_ms.*between 100' \
  -c "$TMP/idle0.toml" --state-dir "$TMP/s17"

# A port somebody else listens on: refused, naming the address.
busy=$(pick_unused_port)
"$SYSPYTHON" -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(60)' "$busy" &
holder=$!
cleanup_fn kill "$holder"
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$busy") 2>/dev/null && break; sleep 0.1; done
ONE_LINE=0 refused "NBD port already in use" "$busy" --state-dir "$TMP/s16" --nbd-address "127.0.0.1:$busy"
kill "$holder" 2>/dev/null || true

# ---- flags that answer and exit 0
rc=0; out=$(timeout 10 "$PORTALBD" --version 2>&1) || rc=$?
if [ "$rc" -eq 0 ] && grep -qE '[0-9]+\.[0-9]+' <<<"$out"; then ok "--version exits 0: $out"; else soft_fail "--version: exit $rc, output '$out'"; fi
rc=0; out=$(timeout 10 "$PORTALBD" --help 2>&1) || rc=$?
if [ "$rc" -eq 0 ] && grep -q -- '--disk-size-gb' <<<"$out"; then ok "--help exits 0 and lists --disk-size-gb"; else soft_fail "--help: exit $rc"; fi

# ---- the original README's example config, adapted only in address, socket
# and storage URL, loads and serves
cat >"$TMP/seed.toml" <<TOML
[device]
disk_size_gb = 10

[storage]
url = "memory://"
# (omit for in-memory)

[nbd]
address = "127.0.0.1:$PORT"
socket = "$CTL_SOCK"

[lsm]
flush_interval_ms = 1000
l0_sst_size_bytes = 67108864
TOML
spawn_portalbd -c "$TMP/seed.toml" --state-dir "$STATE_DIR"
wait_portalbd_ready "$(nbd_tcp_uri)" "$CTL_SOCK"
ok "portalbd -c seed.toml (the README example) starts"
assert_eq "$(nbdinfo --size "$(nbd_tcp_uri)")" $((10 * 1073741824)) "the example config's disk_size_gb = 10 gives a 10 GiB export on its address"
out=$(portalctl status --json) || fail "portalctl status on the example config's socket failed: $out"
ok "portalctl answers on the example config's nbd.socket"
qio "$(nbd_tcp_uri)" "write -P 0x42 0 65536" "flush" "read -P 0x42 0 65536"
ok "the example-config daemon reads back what it is written"
stop_portalbd

if [ "$failures" -gt 0 ]; then
  fail "$failures bad-config case(s) failed (see FAIL lines above)"
fi
