#!/usr/bin/env bash
# Benchmark (not a test, never part of `make test`): NBD over TLS against
# plaintext, and against nbdkit's and qemu-nbd's TLS, in one run (issue 25).
# Servers, each on a unix socket, memory-backed, started fresh per repetition:
#   pp  portalbd memory://, plaintext
#   px  portalbd memory://, --tls require, X.509 (ECDSA P-256)
#   pk  portalbd memory://, --tls require, PSK
#   kx  nbdkit memory, --tls=require, the same X.509 credentials
#   qx  qemu-nbd on a qcow2 in /dev/shm, --tls-creds (x509), the same credentials
#   fp  portalbd file:// (on the disk under /tmp), plaintext
#   fx  portalbd file://, --tls require, X.509: where users run it, the store
#       and not the memory copy sets the pace
# Jobs: seqwrite: nbdcopy of SIZE_MIB random bytes (from /dev/shm) onto the
# export, after an untimed first pass (so it overwrites: memory-backed servers
# allocate on first touch, which is not what TLS costs); seqread: the export
# back to null:. 1 MiB requests, 8 in flight, one
# connection (nbdcopy -C 1 --request-size=1M -R 8): fio's nbd engine cannot
# take TLS credentials from its URI (libnbd refuses local files there).
# The table shows the median MiB/s of REPS runs.
#
# Usage: bench/tls_compare.sh   Env: BUILD (default build), REPS (3),
#        SIZE_MIB (1024), OUT (also write the markdown table to this file).
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$TOP/build}
REPS=${REPS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
OUT=${OUT:-}
EXPORT=portalbd
DISK_GB=4
BENCH=tls_compare
SERVERS="pp px pk kx qx fp fx"
# shellcheck source=bench/servers.sh
source "$TOP/bench/servers.sh"  # need, stop_servers, PID, sock, wait_socket, drain
need nbdkit nbdkit
need qemu-nbd qemu-utils
need nbdcopy libnbd-bin
need openssl openssl
need jq jq

TMP=$(mktemp -d /dev/shm/tls_compare.XXXXXX)
FILES=$(mktemp -d /var/tmp/tls_compare.XXXXXX)  # the file:// stores, on disk
trap 'stop_servers; rm -rf --one-file-system "$TMP" "$FILES"' EXIT

# Credentials: a CA and a server certificate for localhost; PSK user bench.
PKI=$TMP/pki
mkdir -p "$PKI"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=bench CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
  -keyout "$TMP/ca-key.pem" -out "$PKI/ca-cert.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
  -keyout "$PKI/server-key.pem" -out "$TMP/req.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$TMP/ext.cnf"
openssl x509 -req -in "$TMP/req.csr" -CA "$PKI/ca-cert.pem" -CAkey "$TMP/ca-key.pem" -CAcreateserial -days 2 \
  -extfile "$TMP/ext.cnf" -out "$PKI/server-cert.pem" 2>/dev/null
echo "bench:$(openssl rand -hex 32)" >"$PKI/keys.psk"  # qemu's tls-creds-psk would read this name too

uri() {  # SERVER
  case $1 in
    pp | fp) echo "nbd+unix:///$EXPORT?socket=$(sock "$1")" ;;
    pk) echo "nbds+unix://bench@/$EXPORT?socket=$(sock pk)&tls-psk-file=$PKI/keys.psk" ;;
    *) echo "nbds+unix:///$EXPORT?socket=$(sock "$1")&tls-certificates=$PKI" ;;
  esac
}

start_pb() {  # SERVER ARGS...
  local s=$1 storage=memory:// state=$TMP/$1.state; shift
  # file://: the store and the state dir (with the journal) on disk.
  case $s in f?) storage=file://$FILES/$s.data state=$FILES/$s.state && mkdir -p "$FILES/$s.data" ;; esac
  "$BUILD/bin/portalbd" --storage "$storage" --disk-size-gb "$DISK_GB" --nbd-address "" --nbd-unix "$(sock "$s")" \
    --socket "$TMP/$s.ctl" --state-dir "$state" --gc-interval-s 0 --log-level warn "$@" >"$TMP/$s.log" 2>&1 &
  PID[$s]=$!
}

start_all() {
  rm -rf --one-file-system "$TMP"/*.state "$TMP"/*.sock "$TMP"/*.ctl "$TMP"/qx.qcow2 "$FILES"/*.data "$FILES"/*.state
  start_pb pp
  start_pb fp
  start_pb fx --tls require --tls-certificates "$PKI"
  start_pb px --tls require --tls-certificates "$PKI"
  start_pb pk --tls require --tls-psk "$PKI/keys.psk"
  nbdkit -f -U "$(sock kx)" -e "$EXPORT" --tls=require --tls-certificates="$PKI" memory "${DISK_GB}G" \
    >"$TMP/kx.log" 2>&1 &
  PID[kx]=$!
  qemu-img create -q -f qcow2 "$TMP/qx.qcow2" "${DISK_GB}G"
  qemu-nbd -f qcow2 -x "$EXPORT" -k "$(sock qx)" --cache=writeback -t --shared=4 \
    --object "tls-creds-x509,id=tls0,endpoint=server,dir=$PKI,verify-peer=no" --tls-creds tls0 \
    "$TMP/qx.qcow2" >"$TMP/qx.log" 2>&1 &
  PID[qx]=$!
  local s i
  for s in $SERVERS; do
    for i in $(seq 1 300); do
      [ -S "$(sock "$s")" ] && nbdinfo --size "$(uri "$s")" >/dev/null 2>&1 && continue 2
      sleep 0.1
    done
    echo "$BENCH: $s did not come up" >&2; tail -5 "$TMP/$s.log" >&2; exit 1
  done
}

head -c $((SIZE_MIB << 20)) /dev/urandom >"$TMP/data.bin"
copy() { nbdcopy -C 1 --request-size=1048576 -R 8 "$@"; }
declare -A results=()
for rep in $(seq 1 "$REPS"); do
  start_all
  for s in $SERVERS; do
    # A first, untimed pass allocates the memory-backed devices: the timed
    # write is an overwrite, so it measures the transport, not first touch.
    copy "$TMP/data.bin" "$(uri "$s")"
    t0=$(date +%s%N); copy --flush "$TMP/data.bin" "$(uri "$s")"; t1=$(date +%s%N)
    # The read does not share the CPU with the write's background upload.
    drain "$s"
    t1=$(date +%s%N); copy "$(uri "$s")" null: ; t2=$(date +%s%N)
    # The read covers the whole 4 GiB device; only SIZE_MIB of it is data, the
    # rest holes that nbdcopy skips (extents): the time is the data's.
    results[$s.seqwrite]+="$(( SIZE_MIB * 1000000000 / (t1 - t0) )) "
    results[$s.seqread]+="$(( SIZE_MIB * 1000000000 / (t2 - t1) )) "
  done
  stop_servers
  echo "$BENCH: repetition $rep done" >&2
done

median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
{
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load average at end: $(cut -d' ' -f1-3 /proc/loadavg), SIZE_MIB=$SIZE_MIB"
  echo
  echo "| job (MiB/s, median of $REPS) | portalbd plain | portalbd TLS X.509 | portalbd TLS PSK | nbdkit TLS | qemu-nbd TLS | portalbd TLS / plain | portalbd TLS / qemu-nbd TLS | file:// plain | file:// TLS | file:// TLS / plain |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for job in seqwrite seqread; do
    declare -A m=()
    for s in $SERVERS; do m[$s]=$(median <<<"${results[$s.$job]}"); done
    printf '| %s | %s | %s | %s | %s | %s | %.2fx | %.2fx | %s | %s | %.2fx |\n' "$job" "${m[pp]}" "${m[px]}" "${m[pk]}" \
      "${m[kx]}" "${m[qx]}" "$(echo "${m[px]} / ${m[pp]}" | bc -l)" "$(echo "${m[px]} / ${m[qx]}" | bc -l)" \
      "${m[fp]}" "${m[fx]}" "$(echo "${m[fx]} / ${m[fp]}" | bc -l)"
  done
} | tee ${OUT:+"$OUT"}
