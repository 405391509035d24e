#!/usr/bin/env bash
# Byte-exact reads and writes with qemu-io: pattern writes at aligned and
# unaligned offsets and sizes, overlapping writes, vectored and async writes,
# FUA, write-zeroes and discard, each read back at once; then the whole device
# is copied out and compared with a model (the same qemu-io commands applied to
# a local sparse file). Random operations are seeded: SEED=N reproduces a run.
source "$(dirname "$0")/lib.sh"
requires qemu-io nbdcopy cmp truncate

KiB=1024; MiB=$((1024 * KiB)); GiB=$((1024 * MiB))
SIZE=$GiB
SEED=${SEED:-$(( $(date +%s) % 100000 ))}
log "SEED=$SEED (rerun with SEED=$SEED bash $0)"

start_portalbd --storage memory:// --disk-size-gb 1
truncate -s "$SIZE" "$TMP/model.img"

cmds=()
w() { cmds+=("write -P $1 $2 $3" "read -P $1 $2 $3"); }  # PATTERN OFFSET LENGTH
r() { cmds+=("read -P $1 $2 $3"); }

# -- fixed cases: unaligned offsets and sizes
w 0x11 0 4096
w 0x22 4095 1;            r 0x11 0 4095
w 0x33 1000 513;          r 0x11 0 1000; r 0x11 1513 2582; r 0x22 4095 1
w 0x44 12345 65537;       r 0 $((12345 + 65537)) 100
w 0x55 $((3 * MiB + 7)) $MiB
r 0 $((3 * MiB)) 7;       r 0 $((4 * MiB + 7)) 4089
w 0x56 $((5 * MiB - 1)) 2                      # across a 1 MiB boundary
w 0x57 $((6 * MiB - 3)) 6;  w 0x58 $((64 * KiB - 1)) 2   # across 64 KiB boundaries
w 0x59 $((20 * MiB + 511)) $((4 * MiB + 1))    # large, odd start and length
w 0x5a 511 1;             w 0x5b 512 488;   r 0x33 1000 513

# -- overlapping writes: the later one wins exactly where it lands
base=$((8 * MiB))
w 0x66 $base $((256 * KiB))
cmds+=("write -P 0x77 $((base + 100 * KiB + 3)) $((64 * KiB))")
r 0x66 $base $((100 * KiB + 3))
r 0x77 $((base + 100 * KiB + 3)) $((64 * KiB))
r 0x66 $((base + 164 * KiB + 3)) $((256 * KiB - 164 * KiB - 3))
cmds+=("write -P 0x88 $((base - 1000)) 2000")                  # over the start
r 0 $((base - 4096)) $((4096 - 1000)); r 0x88 $((base - 1000)) 2000
r 0x66 $((base + 1000)) 4096
cmds+=("write -P 0x89 $((base + 256 * KiB - 7)) 14")           # over the end
r 0x66 $((base + 256 * KiB - 4096)) $((4096 - 7)); r 0x89 $((base + 256 * KiB - 7)) 14
cmds+=("write -P 0x8a $((base + 4096)) 4096" "write -P 0x8b $((base + 4096)) 4096")  # same block twice
r 0x8b $((base + 4096)) 4096

# -- vectored, FUA and asynchronous writes
cmds+=("writev -P 0xaa $((30 * MiB + 3)) 512 1000 7 4096") ; r 0xaa $((30 * MiB + 3)) $((512 + 1000 + 7 + 4096))
cmds+=("write -f -P 0xbb $((31 * MiB + 5)) 9000"); r 0xbb $((31 * MiB + 5)) 9000
for i in $(seq 0 15); do cmds+=("aio_write -P $((0x20 + i)) $((40 * MiB + i * 69632 + i)) $((65536 + i * 7))"); done
cmds+=("aio_flush")
for i in $(seq 0 15); do r $((0x20 + i)) $((40 * MiB + i * 69632 + i)) $((65536 + i * 7)); done

# -- write-zeroes (with and without unmap) and discard read back as zeros
cmds+=("write -z $((12345 + 100)) 1000");       r 0 $((12345 + 100)) 1000; r 0x44 12345 100; r 0x44 $((12345 + 1100)) 1000
cmds+=("write -z -u $base $((128 * KiB))");    r 0 $base $((128 * KiB)); r 0x77 $((base + 128 * KiB)) 4096
cmds+=("write -z $((3 * MiB + 4096 + 17)) 70000"); r 0 $((3 * MiB + 4096 + 17)) 70000; r 0x55 $((3 * MiB + 7)) $((4096 + 10))
cmds+=("discard $((20 * MiB + 64 * KiB)) $MiB"); r 0 $((20 * MiB + 64 * KiB)) $MiB
r 0x59 $((20 * MiB + 511)) $((64 * KiB - 511)); r 0x59 $((21 * MiB + 64 * KiB)) 4096
cmds+=("discard $((22 * MiB + 8 * KiB)) $((12 * KiB))"); r 0 $((22 * MiB + 8 * KiB)) $((12 * KiB))
r 0x59 $((22 * MiB)) $((8 * KiB)); r 0x59 $((22 * MiB + 20 * KiB)) 4096
w 0x5c $((20 * MiB + 100 * KiB + 1)) 333                     # write into a discarded range
r 0 $((20 * MiB + 100 * KiB + 1 - 4096)) 4096

# -- the last bytes of the device
w 0xcc $((SIZE - 513)) 513; w 0xcd $((SIZE - 1)) 1; r 0xcc $((SIZE - 513)) 512

fixed=${#cmds[@]}

# -- seeded random writes, zeroes and discards in the first 32 MiB, overlapping
RANDOM=$SEED
span=$((32 * MiB))
rnd() { echo $(( ((RANDOM << 15) | RANDOM) % $1 )); }
for i in $(seq 1 300); do
  kind=$((RANDOM % 10))
  case $((RANDOM % 4)) in
    0) len=$(( $(rnd 512) + 1 )) ;;
    1|2) len=$(( $(rnd $((64 * KiB))) + 1 )) ;;
    3) len=$(( $(rnd $((512 * KiB))) + 1 )) ;;
  esac
  off=$(rnd $((span - len)))
  if [ "$kind" -lt 8 ]; then
    w $(( RANDOM % 255 + 1 )) "$off" "$len"
  elif [ "$kind" -eq 8 ]; then
    cmds+=("write -z $off $len"); r 0 "$off" "$len"
  else
    off=$((off / 4096 * 4096)); len=$(( (len + 4095) / 4096 * 4096 ))
    cmds+=("discard $off $len"); r 0 "$off" "$len"
  fi
done
log "$fixed fixed and $(( ${#cmds[@]} - fixed )) random qemu-io commands"

# The model gets the same commands; a discard there is a write of zeros (on a
# local file a discard is only advisory). Its read checks validate this list.
model_cmds=()
for c in "${cmds[@]}"; do model_cmds+=("${c/#discard /write -z }"); done
qio "$TMP/model.img" "${model_cmds[@]}"
ok "the command list is self-consistent on the local model file"

t0=$(now_ms)
qio "$(nbd_uri)" "${cmds[@]}"
ok "qemu-io over the unix socket: ${#cmds[@]} commands, every read-back matched ($(( $(now_ms) - t0 )) ms)"

# A second client over TCP sees the same bytes, and its writes land.
qio "$(nbd_tcp_uri)" "read -P 0xcc $((SIZE - 513)) 512" "read -P 0xcd $((SIZE - 1)) 1" \
  "read -P 0x2f $((40 * MiB + 15 * 69632 + 15)) $((65536 + 15 * 7))" \
  "write -P 0xdd $((900 * MiB + 1)) 100000" "read -P 0xdd $((900 * MiB + 1)) 100000" "flush"
qio "$TMP/model.img" "write -P 0xdd $((900 * MiB + 1)) 100000"
ok "qemu-io over TCP reads the same bytes and writes at 900 MiB"

nbdcopy "$(nbd_uri)" "$TMP/device.img" || fail "nbdcopy of the device to a file failed"
assert_files_equal "$TMP/device.img" "$TMP/model.img" "the whole 1 GiB device equals the model"

stop_portalbd
