#!/usr/bin/env bash
# What clients see of the export: its size (1 GiB and 1 EiB volumes), its name in
# the export list, its flags, and the size reported by `portalctl status`.
# A 1 EiB volume must be usable at its very last block.
source "$(dirname "$0")/lib.sh"
requires nbdinfo qemu-io
requires_portalctl

GiB=1073741824
EiB=1152921504606846976  # 1073741824 GiB

# json_field JSON KEY: the value of KEY in the first export of `nbdinfo --json`.
json_export_field() {
  "$SYSPYTHON" -c '
import json, sys
d = json.loads(sys.argv[1])
print(str(d["exports"][0][sys.argv[2]]).lower())' "$1" "$2"
}

# status_json_has_size JSON BYTES GB: some "*size*" key holds BYTES, or a
# "*gb*" key holds GB, anywhere in the document.
status_json_has_size() {
  "$SYSPYTHON" -c '
import json, sys
doc, want_bytes, want_gb = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def walk(o):
    if isinstance(o, dict):
        for k, v in o.items():
            k = k.lower()
            if isinstance(v, (int, str)) and not isinstance(v, bool):
                if "size" in k and "gb" not in k and str(v) == str(want_bytes): return True
                if "gb" in k and str(v) == str(want_gb): return True
            if walk(v): return True
    elif isinstance(o, list):
        return any(walk(x) for x in o)
    return False
sys.exit(0 if walk(doc) else 1)' "$1" "$2" "$3"
}

# ---- a 1 GiB volume
start_portalbd --storage memory:// --disk-size-gb 1
assert_eq "$(nbdinfo --size "$(nbd_uri)")" "$GiB" "nbdinfo --size on the unix socket: 1 GiB"
assert_eq "$(nbdinfo --size "$(nbd_tcp_uri)")" "$GiB" "nbdinfo --size on TCP 127.0.0.1:$PORT: 1 GiB"

list=$(nbdinfo --list "$(nbd_uri)")
assert_match "$list" '^export="portalbd":' "nbdinfo --list shows the export 'portalbd'"
list_tcp=$(nbdinfo --list "$(nbd_tcp_uri)")
assert_match "$list_tcp" '^export="portalbd":' "nbdinfo --list over TCP shows the export 'portalbd'"

info=$(nbdinfo --json "$(nbd_uri)")
assert_eq "$(json_export_field "$info" export-name)" "portalbd" "nbdinfo --json: export-name"
assert_eq "$(json_export_field "$info" export-size)" "$GiB" "nbdinfo --json: export-size"
assert_eq "$(json_export_field "$info" is_read_only)" "false" "export is writable"
for flag in can_flush can_fua can_trim can_zero; do
  assert_eq "$(json_export_field "$info" "$flag")" "true" "export advertises $flag"
done

# A snapshot export is read-only: it offers nothing that writes (issue 24).
portalctl snapshot create ro-check >/dev/null
snap_info=$(nbdinfo --json "nbd+unix:///$EXPORT_NAME@ro-check?socket=$NBD_SOCK")
assert_eq "$(json_export_field "$snap_info" is_read_only)" "true" "snapshot export is read-only"
for flag in can_fua can_trim can_zero can_fast_zero; do
  assert_eq "$(json_export_field "$snap_info" "$flag")" "false" "snapshot export does not advertise $flag"
done
assert_eq "$(json_export_field "$snap_info" can_flush)" "true" "snapshot export still takes a harmless FLUSH"
portalctl snapshot delete ro-check >/dev/null

out=$(portalctl status) || fail "portalctl status exited non-zero: $out"
ok "portalctl status answers"
# A here-string, not echo into head: head quits after 8 lines, and with
# pipefail the echo still writing would die of SIGPIPE and end the script.
head -8 <<<"$out" | sed "s/^/    /"
assert_match "$out" '(^|[^0-9])1073741824([^0-9]|$)|(^|[^0-9.])1(\.0+)? ?(GiB|GB|G)([^a-zA-Z]|$)|size_gb[=: "]+1([^0-9]|$)' \
  "portalctl status shows the size (1 GiB)"
out=$(portalctl status --json) || fail "portalctl status --json exited non-zero: $out"
head -c 2000 <<<"$out" | sed 's/^/    /'; echo
check "portalctl status --json is JSON" "$SYSPYTHON" -c 'import json,sys; json.loads(sys.argv[1])' "$out"
status_json_has_size "$out" "$GiB" 1 || fail "portalctl status --json has no size field equal to $GiB bytes or 1 GB"
ok "portalctl status --json has the size"

rc=0; out=$("$PORTALCTL" --socket "$TMP/no-such.sock" status 2>&1) || rc=$?
assert_ne "$rc" 0 "portalctl status on a missing control socket exits non-zero"
assert_match "$out" 'no-such\.sock|[Cc]onnect|[Nn]o such file' "portalctl says why it failed: $(head -1 <<<"$out")"
assert_no_match "$out" 'Traceback|terminate called|Segmentation|Aborted|AddressSanitizer' "portalctl fails without a crash"

stop_portalbd

# ---- a 1 EiB volume: sparse, and its last bytes work
t0=$(now_ms)
start_portalbd --storage memory:// --disk-size-gb 1073741824
log "1 EiB volume ready in $(( $(now_ms) - t0 )) ms"
assert_eq "$(nbdinfo --size "$(nbd_uri)")" "$EiB" "nbdinfo --size with --disk-size-gb 1073741824: 1 EiB"
assert_eq "$(nbdinfo --size "$(nbd_tcp_uri)")" "$EiB" "nbdinfo --size over TCP: 1 EiB"

last=$((EiB - 4096))
qio "$(nbd_uri)" "write -P 0xa5 $last 4096" "read -P 0xa5 $last 4096" \
  "read -P 0 $((last - 4096)) 4096"
ok "qemu-io: 4 KiB written at the last 4 KiB ($last) reads back 0xa5, the block before reads 0"
qio "$(nbd_uri)" "write -P 0x5a $((EiB - 1)) 1" "read -P 0x5a $((EiB - 1)) 1" \
  "read -P 0xa5 $last 4095"
ok "qemu-io: the very last byte reads back, the rest of the last block keeps 0xa5"
mid=$((EiB / 2 + 12345))
qio "$(nbd_uri)" "read -P 0 $mid 65536" "write -P 0x3c $mid 65536" "read -P 0x3c $mid 65536"
ok "qemu-io: 64 KiB in the middle of the EiB reads 0, then the pattern written"
qio "$(nbd_tcp_uri)" "read -P 0xa5 $last 4095" "read -P 0x5a $((EiB - 1)) 1" "read -P 0x3c $mid 65536"
ok "a new TCP connection reads the same last block and middle"

out=$(portalctl status) || fail "portalctl status exited non-zero: $out"
assert_match "$out" "$EiB|1073741824|1 ?EiB|1024 ?PiB" "portalctl status shows the 1 EiB size"
out=$(portalctl status --json) || fail "portalctl status --json exited non-zero: $out"
status_json_has_size "$out" "$EiB" 1073741824 || fail "portalctl status --json has no size field equal to $EiB bytes or 1073741824 GB"
ok "portalctl status --json has the 1 EiB size"

stop_portalbd
