# Shared by the comparison benchmarks (fio_compare.sh, trace_compare.sh):
# the four NBD servers on unix sockets, started fresh for each repetition.
#   pm  portalbd memory://          nk  nbdkit memory DISK_GB
#   pf  portalbd file:// (temp dir)  qn  qemu-nbd on a fresh qcow2, --cache=writeback
#
# The sourcing script sets BENCH (its name, for messages), TMP (a private temp
# dir), BUILD (with bin/portalbd and bin/portalctl), EXPORT and DISK_GB, and
# calls stop_servers from its EXIT trap. PB_EXTRA: more portalbd flags for
# both portalbd servers (e.g. "--upload-concurrency 2"), to compare settings.

need() {  # COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "$BENCH: installing $2 for $1" >&2
  apt-get install -y -q "$2" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "$2" >/dev/null; }
}

declare -A PID=()
stop_servers() {
  local s
  for s in "${!PID[@]}"; do
    kill "${PID[$s]}" 2>/dev/null || true
    wait "${PID[$s]}" 2>/dev/null || true
  done
  PID=()
}

sock() { echo "$TMP/$1.sock"; }
uri() { echo "nbd+unix:///$EXPORT?socket=$(sock "$1")"; }
wait_socket() {  # SERVER
  local i
  for i in $(seq 1 300); do
    [ -S "$(sock "$1")" ] && nbdinfo --size "$(uri "$1")" >/dev/null 2>&1 && return 0
    kill -0 "${PID[$1]}" 2>/dev/null || break
    sleep 0.1
  done
  echo "$BENCH: server $1 did not come up" >&2
  tail -5 "$TMP/$1.log" >&2 || true
  exit 1
}

start_portalbd() {  # SERVER STORAGE
  "$BUILD/bin/portalbd" --storage "$2" --disk-size-gb "$DISK_GB" --nbd-address "" \
    --nbd-unix "$(sock "$1")" --socket "$TMP/$1.ctl" --state-dir "$TMP/$1.state" \
    --gc-interval-s 0 --log-level warn ${PB_EXTRA:-} >"$TMP/$1.log" 2>&1 &
  PID[$1]=$!
}

start_servers() {
  # nbdkit and qemu-nbd leave their sockets behind.
  rm -rf --one-file-system "$TMP"/pf.data "$TMP"/*.state "$TMP"/qn.qcow2 "$TMP"/*.sock "$TMP"/*.ctl
  mkdir -p "$TMP/pf.data"
  start_portalbd pm memory://
  start_portalbd pf "file://$TMP/pf.data"
  nbdkit -f -U "$(sock nk)" -e "$EXPORT" memory "${DISK_GB}G" >"$TMP/nk.log" 2>&1 &
  PID[nk]=$!
  qemu-img create -q -f qcow2 "$TMP/qn.qcow2" "${DISK_GB}G"
  # --shared: qemu-nbd serves one client at a time unless told (a trace replays
  # on as many connections as were recorded).
  qemu-nbd -f qcow2 -x "$EXPORT" -k "$(sock qn)" --cache=writeback --shared=16 -t "$TMP/qn.qcow2" >"$TMP/qn.log" 2>&1 &
  PID[qn]=$!
  local s
  for s in pm pf nk qn; do wait_socket "$s"; done
}

# Let a portalbd server (one with a control socket, $TMP/SERVER.ctl) finish
# uploading what it holds dirty; other servers return at once.
drain() {  # SERVER
  [ -S "$TMP/$1.ctl" ] || return 0
  local i dirty
  for i in $(seq 1 600); do
    dirty=$("$BUILD/bin/portalctl" --socket "$TMP/$1.ctl" --json status | jq -r .dirty_bytes)
    [ "$dirty" = 0 ] && return 0
    sleep 0.1
  done
  echo "$BENCH: $1 still has $dirty dirty bytes after 60 s" >&2
}
