# Host side of the VM test: boot the guest built by build-initramfs.sh under
# qemu (TCG, slirp user networking) and run commands in it over the serial
# console. Source after tests/integration/lib.sh (uses ok/fail/skip/cleanup_fn,
# $TMP, $BUILD).
#
#   vm_build                 build or reuse $VM_DIR (skips when packages are missing)
#   vm_start                 boot; returns when the guest printed @@READY
#   guest SECS CMD           run CMD in the guest; sets GUEST_OUT, GUEST_RC
#   guest_check WHAT CMD     guest 120 CMD; one "ok" line, or fail with its output
#   vm_stop                  power the guest off (kills qemu if it hangs)
#
# Everything the guest prints is also in $TMP/serial.log; the qemu log is
# $TMP/qemu.log.
#
# Environment: VM_DIR (default $BUILD/vm), VM_BOOT_TIMEOUT (seconds the guest
# may print nothing while it boots, default 90; the kernel logs each step of
# its boot to the console), VM_BOOT_MAX (seconds a boot may take in all,
# default 600), VM_MEM_MB (default 512), QEMU (default qemu-system-x86_64), VM_INITRD (another
# initramfs, e.g. build-csi-initramfs.sh's), VM_HOSTFWD (slirp port forwards,
# "hostfwd=tcp:127.0.0.1:H-:G[,hostfwd=...]").

VM_DIR=${VM_DIR:-$BUILD/vm}
VM_BOOT_TIMEOUT=${VM_BOOT_TIMEOUT:-90}
VM_MEM_MB=${VM_MEM_MB:-512}
QEMU=${QEMU:-qemu-system-x86_64}
VM_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
QEMU_PID=
_guest_seq=0

vm_build() {
  local rc=0 out
  out=$(bash "$VM_HERE/build-initramfs.sh" "$VM_DIR" 2>&1) || rc=$?
  echo "$out" | sed 's/^/# /'
  [ "$rc" -ne 77 ] || skip "cannot build the guest: $(tail -1 <<<"$out")"
  [ "$rc" -eq 0 ] || fail "tests/vm/build-initramfs.sh $VM_DIR exited $rc"
}

vm_start() {
  command -v "$QEMU" >/dev/null || skip "$QEMU is not installed (apt-get install qemu-system-x86)"
  mkfifo "$TMP/serial.in" "$TMP/serial.out"
  # KVM is present on these machines but broken: TCG on one vCPU leaves the
  # other core to the daemon.
  "$QEMU" -accel tcg -smp 1 -m "$VM_MEM_MB" -nodefaults -display none -no-reboot \
    -kernel "$VM_DIR/vmlinuz" -initrd "${VM_INITRD:-$VM_DIR/initramfs.cpio.gz}" \
    -append "console=ttyS0 panic=-1" \
    -serial "pipe:$TMP/serial" -monitor none \
    -netdev "user,id=n0${VM_HOSTFWD:+,$VM_HOSTFWD}" -device virtio-net-pci,netdev=n0,romfile= \
    >"$TMP/qemu.log" 2>&1 &
  QEMU_PID=$!
  cleanup_fn vm_kill
  # Read-write opens of a FIFO never block, whether qemu has opened it yet or not.
  exec {VM_IN}<>"$TMP/serial.in" {VM_OUT}<>"$TMP/serial.out"
  local t0; t0=$(now_ms)
  # A guest under TCG on a busy host boots slowly but keeps printing; one that
  # printed nothing for VM_BOOT_TIMEOUT seconds is stuck.
  local boot_deadline=$(( $(date +%s) + ${VM_BOOT_MAX:-600} )) boot_lines=
  while ! _vm_read_until '^@@READY' "$VM_BOOT_TIMEOUT"; do
    boot_lines+=$VM_LINES
    if [ -z "$VM_LINES" ] || [ "$(date +%s)" -ge "$boot_deadline" ] || ! kill -0 "$QEMU_PID" 2>/dev/null; then
      _vm_boot_report "$t0"
      fail "guest did not boot: no console output for ${VM_BOOT_TIMEOUT}s or no @@READY within ${VM_BOOT_MAX:-600}s"
    fi
  done
  VM_LINES=$boot_lines$VM_LINES
  if grep -q '^@@ERROR' <<<"$VM_LINES"; then
    grep '^@@ERROR' <<<"$VM_LINES" | sed 's/^/    /'
    fail "guest setup failed"
  fi
  ok "guest booted ($(sed -n 's/^@@READY //p' <<<"$VM_LINES" | tail -1), $(( $(now_ms) - t0 )) ms)"
}

# _vm_boot_report T0_MS: what a failed boot leaves to go on: the guest's last
# console lines, qemu's log, and how much CPU qemu got (a starved host gives
# it seconds in minutes; a stuck guest spins it).
_vm_boot_report() {
  local wall=$(( ($(now_ms) - $1) / 1000 )) cpu=
  [ -n "$QEMU_PID" ] && cpu=$(ps -o times= -p "$QEMU_PID" 2>/dev/null | tr -d ' ')
  echo "    after ${wall}s: qemu used ${cpu:-?}s of CPU; host load $(cut -d' ' -f1-3 /proc/loadavg)"
  [ -r /proc/pressure/cpu ] && sed 's/^/    cpu pressure: /' /proc/pressure/cpu
  echo "    last guest console lines ($TMP/serial.log):"
  if [ -s "$TMP/serial.log" ]; then tail -15 "$TMP/serial.log" | sed 's/^/      /'; else echo "      (none)"; fi
  [ -s "$TMP/qemu.log" ] && { echo "    qemu log:"; tail -5 "$TMP/qemu.log" | sed 's/^/      /'; }
  return 0
}

# _vm_read_until ERE SECS: read guest lines into VM_LINES until one matches
# ERE; return 1 on timeout or when qemu exits.
_vm_read_until() {
  local re=$1 deadline=$(( $(date +%s) + $2 )) line left
  VM_LINES=
  while :; do
    left=$(( deadline - $(date +%s) ))
    if [ "$left" -le 0 ]; then return 1; fi
    if IFS= read -r -t 1 -u "$VM_OUT" line; then
      line=${line%$'\r'}
      printf '%s\n' "$line" >>"$TMP/serial.log"
      VM_LINES+=$line$'\n'
      if [[ $line =~ $re ]]; then return 0; fi
    elif ! kill -0 "$QEMU_PID" 2>/dev/null; then
      echo "    qemu exited; last guest lines:"; tail -20 "$TMP/serial.log" "$TMP/qemu.log" | sed 's/^/    /'
      return 1
    fi
  done
}

# guest SECS CMD: run the shell command CMD (one line) in the guest within SECS
# seconds; GUEST_OUT gets its output, GUEST_RC its exit status. Fails the test
# on timeout (a hung guest cannot be trusted with the next command).
guest() {
  local secs=$1 cmd=$2
  [[ $cmd != *$'\n'* ]] || fail "guest: command has a newline: $cmd"
  _guest_seq=$((_guest_seq + 1))
  echo "+ guest: $cmd" >>"$TMP/commands.log"
  printf '%s %s\n' "$_guest_seq" "$cmd" >&"$VM_IN"
  if ! _vm_read_until "@@RC $_guest_seq [0-9]+\$" "$secs"; then
    printf '%s' "$VM_LINES" | tail -20 | sed 's/^/    /'
    fail "guest command timed out after ${secs}s: $cmd"
  fi
  GUEST_RC=$(tail -n 2 <<<"$VM_LINES" | sed -n "s/^@@RC $_guest_seq //p")
  # Drop the status line ($(...) drops the blank line printed before it).
  GUEST_OUT=$(printf '%s' "$VM_LINES" | head -n -1)
  return 0
}

guest_check() {
  local what=$1 cmd=$2
  guest 120 "$cmd"
  if [ "$GUEST_RC" != 0 ]; then
    printf '%s\n' "$GUEST_OUT" | tail -20 | sed 's/^/    /'
    fail "$what (guest command exited $GUEST_RC: $cmd)"
  fi
  ok "$what"
}

vm_stop() {
  [ -n "$QEMU_PID" ] || return 0
  printf '%s %s\n' 0 "poweroff -f" >&"$VM_IN"
  local i
  for i in $(seq 1 100); do
    kill -0 "$QEMU_PID" 2>/dev/null || break
    sleep 0.1
  done
  vm_kill
}

vm_kill() {
  [ -n "$QEMU_PID" ] || return 0
  kill "$QEMU_PID" 2>/dev/null || true
  wait "$QEMU_PID" 2>/dev/null || true
  QEMU_PID=
}
