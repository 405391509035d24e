#!/usr/bin/env bash
# Packaging: `make install` into a DESTDIR lays out every file with the units
# pointing into PREFIX; `make deb` builds a package that
# `apt-get install ./build/deb/portalbd_*.deb` installs (dependencies declared
# and satisfied), whose `portalbd --version` runs, whose units pass
# `systemd-analyze verify`, whose man pages and completion load, and whose
# example config starts a daemon. The package is removed at the end (unless it
# was installed before the test).
source "$(dirname "$0")/lib.sh"

requires_root
requires dpkg-deb dpkg-shlibdeps apt-get nbdinfo
requires_portalbd
requires_portalctl
version=$("$PORTALBD" --version | awk '{print $2}')

# ---------------------------------------------------------------- make install
PREFIX=/opt/pbd DESTDIR=$TMP/dest BUILD=$BUILD bash "$TOP/packaging/install.sh" >/dev/null
for f in bin/portalbd bin/portalctl libexec/portalbd/portalbd-snapshot-cron \
  share/man/man8/portalbd.8.gz share/man/man8/portalctl.8.gz share/man/man5/portalbd.toml.5.gz \
  share/bash-completion/completions/portalctl share/doc/portalbd/examples/portalbd.toml.example \
  share/doc/portalbd/examples/grafana-portalbd.json \
  lib/systemd/system/portalbd@.service lib/systemd/system/portalbd-snapshot@.service \
  lib/systemd/system/portalbd-snapshot@.timer; do
  [ -s "$TMP/dest/opt/pbd/$f" ] || fail "make install: PREFIX/$f is missing"
done
ok "install.sh (PREFIX=/opt/pbd DESTDIR=...) installs binaries, man pages, completion, units"
assert_match "$(grep ^ExecStart= "$TMP/dest/opt/pbd/lib/systemd/system/portalbd@.service")" \
  '^ExecStart=/opt/pbd/bin/portalbd ' "installed unit runs \$PREFIX/bin/portalbd"
assert_match "$(grep ^ExecStart= "$TMP/dest/opt/pbd/lib/systemd/system/portalbd-snapshot@.service")" \
  '^ExecStart=/opt/pbd/libexec/portalbd/portalbd-snapshot-cron$' "snapshot unit runs \$PREFIX/libexec script"

# ---------------------------------------------------------------- make deb
check "build the deb (packaging/deb/build-deb.sh)" env BUILD="$BUILD" bash "$TOP/packaging/deb/build-deb.sh"
deb=$BUILD/deb/portalbd_${version}_$(dpkg --print-architecture).deb
[ -s "$deb" ] || fail "no $deb"
ok "built $(basename "$deb") ($(du -h "$deb" | cut -f1))"
depends=$(dpkg-deb -f "$deb" Depends)
assert_match "$depends" 'libc6 \(>= ' "Depends declares libc6 with a version"
assert_match "$depends" 'libsqlite3-0' "Depends declares the SQLite library"
assert_match "$depends" 'libnbd0' "Depends declares libnbd"

# ---------------------------------------------------------------- apt-get install
preinstalled=0
if dpkg-query -W -f='${Status}' portalbd 2>/dev/null | grep -q "install ok installed"; then
  preinstalled=1
  log "portalbd was installed before this test: it will be upgraded in place and left installed"
else
  cleanup_fn env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 purge -y -q portalbd
fi
# apt-get wants a path with a slash; the deb is in build/deb.
check "apt-get install -y ./$(basename "$deb")" \
  env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get -o DPkg::Lock::Timeout=120 install -y -q --no-install-recommends "$deb"
assert_match "$(dpkg-query -W -f='${Status} ${Version}' portalbd)" "install ok installed $version" \
  "dpkg knows portalbd $version as installed"
assert_eq "$(/usr/bin/portalbd --version)" "portalbd $version" "installed portalbd --version runs"
assert_eq "$(/usr/bin/portalctl --version)" "portalctl $version" "installed portalctl --version runs"
check "ldd finds every library of the installed binaries" \
  bash -c '! ldd /usr/bin/portalbd /usr/bin/portalctl | grep "not found"'

# ---------------------------------------------------------------- units
units=(portalbd@vol1.service portalbd-snapshot@vol1.service portalbd-snapshot@vol1.timer)
if ! command -v systemd-analyze >/dev/null; then
  fail "systemd-analyze is missing (the systemd package is in packaging/deps.sh)"
fi
verify_out=$(cd /lib/systemd/system && SYSTEMD_LOG_COLOR=0 systemd-analyze verify "${units[@]}" 2>&1) ||
  { echo "$verify_out" | sed 's/^/    /'; fail "systemd-analyze verify ${units[*]} failed"; }
# verify also prints warnings while exiting 0: any line about our units fails.
assert_no_match "$verify_out" 'portalbd' "systemd-analyze verify: the installed units are clean (${units[*]})"
# Offline exposure score (0 = locked down, 100 = unprotected); systemd
# calls <= 4.9 "OK". The daemon keeps TCP, S3 and its state dir.
for unit in portalbd@vol1.service:30 portalbd-snapshot@vol1.service:20; do
  out=$(cd /lib/systemd/system && systemd-analyze security --offline=yes --no-pager --threshold="${unit#*:}" "${unit%%:*}" 2>&1) ||
    { echo "$out" | grep '✗' | sed 's/^/    /'; fail "systemd-analyze security: ${unit%%:*} is above ${unit#*:}"; }
  ok "systemd-analyze security: ${unit%%:*} $(grep -oE 'exposure level for [^:]+: [0-9.]+' <<<"$out" | awk '{print $NF}') (threshold $(( ${unit#*:} / 10 )).$(( ${unit#*:} % 10 )))"
done
if [ ! -d /run/systemd/system ]; then
  log "NOTE: systemd is not PID 1 in this container: units verified offline only; Type=notify start, hardening and the timer are not exercised"
fi

# ---------------------------------------------------------------- docs
for page in portalbd portalctl portalbd.toml; do
  out=$(MANWIDTH=80 man "$page" 2>&1) || fail "man $page: $out"
  assert_match "$out" "^NAME" "man $page renders"
done
# complete WORD...: what the installed completion offers for the last WORD.
complete_words() {
  # Without the bash-completion package, stub the one helper it provides.
  bash -c '
    source /usr/share/bash-completion/bash_completion 2>/dev/null ||
      _init_completion() { cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; }
    source /usr/share/bash-completion/completions/portalctl
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _portalctl
    echo "${COMPREPLY[*]}"' complete portalctl "$@"
}
assert_eq "$(complete_words snapshot pr)" "prune" "bash completion completes 'portalctl snapshot pr' to prune"

# ---------------------------------------------------------------- the example config
cfg=$TMP/vol1.toml
sed -e "s|^url = .*|url = \"file://$TMP/data\"|" \
    -e "s|^address = .*|address = \"127.0.0.1:$PORT\"|" \
    -e "s|^unix = .*|unix = \"$NBD_SOCK\"|" \
    -e "s|^socket = .*|socket = \"$CTL_SOCK\"|" \
    -e "s|^state_dir = .*|state_dir = \"$STATE_DIR\"|" \
    -e "s|^disk_size_gb = .*|disk_size_gb = 2|" \
    /usr/share/doc/portalbd/examples/portalbd.toml.example >"$cfg"
PORTALBD=/usr/bin/portalbd
# JOURNAL_STREAM as systemd sets it: log lines must not carry a timestamp.
JOURNAL_STREAM=8:12345 spawn_portalbd -c "$cfg"
wait_portalbd_ready
ok "the installed daemon serves with the example config (every key set)"
check "snapshot create from-example" /usr/bin/portalctl --socket "$CTL_SOCK" snapshot create from-example
assert_eq "$(complete_words --socket "$CTL_SOCK" snapshot restore from-)" "from-example" \
  "bash completion asks the daemon for snapshot names"
assert_eq "$(nbdinfo --size "$(nbd_tcp_uri)")" $((2 << 30)) "export size is disk_size_gb from the example config"
assert_no_match "$(head -5 "$PORTALBD_LOG")" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T' "no timestamps in the log under JOURNAL_STREAM (journal adds them)"
stop_portalbd

if [ "$preinstalled" = 0 ]; then
  check "apt-get purge portalbd" env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get -o DPkg::Lock::Timeout=120 purge -y -q portalbd
  [ ! -e /usr/bin/portalbd ] || fail "/usr/bin/portalbd is still there after purge"
  ok "purge removes /usr/bin/portalbd"
fi
