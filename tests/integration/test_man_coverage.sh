#!/usr/bin/env bash
# The documentation covers what the programs accept (issue 24): every option
# that `portalbd --help` and each `portalctl ... --help` list appears in its
# man page, every portalctl command has its entry in portalctl(8), and every
# configuration key that `portalbd --help` lists appears in portalbd.toml(5)
# under its table and in packaging/portalbd.toml.example. The programs' own
# --help output is the table the docs are checked against, so a flag or key
# added without its documentation fails here.
source "$(dirname "$0")/lib.sh"
requires_portalbd
requires_portalctl

MAN=$TOP/packaging/man
"$PORTALBD" --help >"$TMP/portalbd.help" 2>&1 || fail "portalbd --help exited $?"
: >"$TMP/portalctl.help"
for cmd in "" status "snapshot" "snapshot create" "snapshot list" "snapshot show" "snapshot delete" \
  "snapshot restore" "snapshot prune" gc checkpoint mount umount; do
  # shellcheck disable=SC2086
  { echo "=== $cmd"; "$PORTALCTL" $cmd --help; } >>"$TMP/portalctl.help" 2>&1 || fail "portalctl $cmd --help exited $?"
done

check "every option and key is documented" "$SYSPYTHON" - "$TMP/portalbd.help" "$TMP/portalctl.help" \
  "$MAN/portalbd.8" "$MAN/portalctl.8" "$MAN/portalbd.toml.5" "$TOP/packaging/portalbd.toml.example" <<'EOF'
import re, sys

pbd_help, ctl_help, pbd_man, ctl_man, toml_man, example = (open(p).read() for p in sys.argv[1:7])
missing = []

def options(help_text):
    # Option columns of CLI11 help: "  -c,--config FILE  ..." / "  --json  ...".
    found = set()
    for line in help_text.splitlines():
        m = re.match(r"^\s{2}(-[\w-]+(?:,\s*-[\w-]+)*)", line)
        if m:
            found.update(o.strip() for o in m.group(1).split(","))
    return found

def roff(option):
    return option.replace("-", r"\-")

for opt in sorted(options(pbd_help)):
    if roff(opt) not in pbd_man:
        missing.append("portalbd(8) lacks " + opt)
for opt in sorted(options(ctl_help)):
    if roff(opt) not in ctl_man:
        missing.append("portalctl(8) lacks " + opt)

# portalctl commands: the words listed under "Subcommands:" of each --help.
commands = set()
for block in re.split(r"^=== ", ctl_help, flags=re.M):
    if "\nSubcommands:\n" in block:
        for line in block.split("\nSubcommands:\n", 1)[1].splitlines():
            m = re.match(r"^\s{2}([a-z]+)\s", line)
            if not m:
                break
            commands.add(m.group(1))
for c in sorted(commands):
    if not re.search(r"^\.(B|BI|BR|IP|TP)?\s*.*\b" + re.escape(c) + r"\b", ctl_man, re.M):
        missing.append("portalctl(8) has no entry for the command " + c)
if not {"gc", "checkpoint", "status", "snapshot", "mount", "umount"} <= commands:
    missing.append("the check found too few portalctl commands: %s" % sorted(commands))

# Configuration keys: "  section.key   description" in portalbd --help.
keys = re.findall(r"^\s{2}([a-z_]+)\.([a-z_0-9]+)\s", pbd_help, re.M)
if len(keys) < 20:
    missing.append("the check found only %d configuration keys in portalbd --help" % len(keys))

def tables(text, header):
    """{table: text of that table} for a man page (.SS [table]) or a TOML file ([table])."""
    out, current = {}, None
    for line in text.splitlines():
        m = re.match(header, line)
        if m:
            current = m.group(1)
            out.setdefault(current, "")
        elif current:
            out[current] += line + "\n"
    return out

man_tables = tables(toml_man, r"^\.(?:SS|SH)\s+\"?\\?\[?([a-z_]+)\\?\]?\"?\s*$")
example_tables = tables(example, r"^#?\s*\[([a-z_]+)\]\s*$")
for section, key in keys:
    man_key = key.replace("_", r"\_")
    if key not in man_tables.get(section, "") and man_key not in man_tables.get(section, ""):
        missing.append("portalbd.toml(5) has no %s key in [%s]" % (key, section))
    if not re.search(r"^#?\s*" + re.escape(key) + r"\s*=", example_tables.get(section, ""), re.M):
        missing.append("portalbd.toml.example has no %s key in [%s]" % (key, section))

if missing:
    print("\n".join(missing))
    sys.exit(1)
print("%d portalbd options, %d portalctl options, %d commands, %d keys documented"
      % (len(options(pbd_help)), len(options(ctl_help)), len(commands), len(keys)))
EOF
