#!/usr/bin/env bash
# packaging/kubernetes/: no cluster runs here, so the manifests are checked
# as far as that goes without one: every file parses as YAML, every object
# has apiVersion, kind and metadata.name, the driver name is the one
# portalbd-csi reports (GetPluginInfo's constant, in csi/capabilities.h) in
# the CSIDriver, StorageClass, VolumeSnapshotClass and the registrar's
# socket path, the controller runs the provisioner, snapshotter and resizer
# sidecars and the node DaemonSet the registrar, privileged, with
# Bidirectional kubelet mounts, and every flag given to portalbd-csi is one
# its --help lists. The Dockerfile builds the binaries the manifests run.
source "$(dirname "$0")/lib.sh"
CSI=${PORTALBD_CSI:-$BUILD/bin/portalbd-csi}
[ -x "$CSI" ] || fail "driver binary $CSI is missing (run make)"
"$SYSPYTHON" -c 'import yaml' 2>/dev/null || skip "$SYSPYTHON lacks PyYAML (python3-yaml)"

"$CSI" --help >"$TMP/help.txt" 2>&1 || fail "portalbd-csi --help failed"
DRIVER=$(sed -nE 's/.*kDriverName = "([^"]+)".*/\1/p' "$TOP/csi/capabilities.h")
[ -n "$DRIVER" ] || fail "no kDriverName in csi/capabilities.h"

"$SYSPYTHON" - "$TOP/packaging/kubernetes" "$DRIVER" "$TMP/help.txt" <<'PY' || fail "the manifests are incomplete (above)"
import glob, os, re, sys, yaml
root, driver, help_path = sys.argv[1], sys.argv[2], sys.argv[3]
known_flags = set(re.findall(r"(--[a-z][a-z0-9-]*)", open(help_path).read()))
bad = 0
n = 0
def check(cond, what):
    global bad, n
    n += 1
    print(("ok %d - " % n if cond else "FAIL - ") + what)
    bad += 0 if cond else 1

objs = {}
files = sorted(glob.glob(os.path.join(root, "*.yaml")))
check(len(files) >= 5, "packaging/kubernetes holds the manifests: %s" % [os.path.basename(f) for f in files])
for f in files:
    docs = [d for d in yaml.safe_load_all(open(f)) if d is not None]
    check(len(docs) > 0, "%s parses as YAML (%d objects)" % (os.path.basename(f), len(docs)))
    for d in docs:
        ok = all(k in d for k in ("apiVersion", "kind", "metadata")) and d["metadata"].get("name")
        check(bool(ok), "%s: %s/%s has apiVersion, kind and metadata.name" % (os.path.basename(f), d.get("kind"), d.get("metadata", {}).get("name")))
        objs.setdefault(d["kind"], []).append(d)

for kind in ("CSIDriver", "StorageClass", "VolumeSnapshotClass", "ServiceAccount", "ClusterRole",
             "ClusterRoleBinding", "Deployment", "DaemonSet"):
    check(kind in objs, "a %s is defined" % kind)
check(objs["CSIDriver"][0]["metadata"]["name"] == driver, "CSIDriver is named %s" % driver)
check(objs["CSIDriver"][0]["spec"]["attachRequired"] is False, "CSIDriver: attachRequired false (no ControllerPublish)")
check(objs["StorageClass"][0]["provisioner"] == driver, "StorageClass provisioner is %s" % driver)
check(objs["StorageClass"][0].get("allowVolumeExpansion") is True, "StorageClass allows expansion")
check(objs["VolumeSnapshotClass"][0]["driver"] == driver, "VolumeSnapshotClass driver is %s" % driver)

def containers(obj):
    return obj["spec"]["template"]["spec"]["containers"]

sas = {s["metadata"]["name"] for s in objs["ServiceAccount"]}
roles = {r["metadata"]["name"] for r in objs["ClusterRole"]}
for b in objs["ClusterRoleBinding"]:
    check(b["roleRef"]["name"] in roles and all(s["name"] in sas for s in b["subjects"]),
          "ClusterRoleBinding %s binds a defined role to defined service accounts" % b["metadata"]["name"])

ctrl = objs["Deployment"][0]
names = [c["name"] for c in containers(ctrl)]
for side in ("csi-provisioner", "csi-snapshotter", "csi-resizer"):
    check(side in names, "the controller Deployment runs %s" % side)
check(ctrl["spec"]["template"]["spec"]["serviceAccountName"] in sas, "the controller's service account exists")
node = objs["DaemonSet"][0]
nnames = [c["name"] for c in containers(node)]
check("node-driver-registrar" in nnames, "the node DaemonSet runs node-driver-registrar")
reg = [c for c in containers(node) if c["name"] == "node-driver-registrar"][0]
check(any(("/plugins/%s/" % driver) in a for a in reg["args"]), "the registrar's kubelet path names %s" % driver)
plugin = [c for c in containers(node) if c["name"] == "portalbd-csi"][0]
check(plugin.get("securityContext", {}).get("privileged") is True, "the node plugin is privileged (nbd-client, mount)")
check(any(m.get("mountPropagation") == "Bidirectional" for m in plugin["volumeMounts"]),
      "the node plugin mounts the kubelet dir with Bidirectional propagation")
for obj in (ctrl, node):
    c = [c for c in containers(obj) if c["name"] == "portalbd-csi"][0]
    for a in c["args"]:
        flag = a.split("=", 1)[0]
        check(flag in known_flags, "%s: portalbd-csi knows %s" % (obj["kind"], flag))
    mode = [a for a in c["args"] if a.startswith("--mode=")]
    check(mode == ["--mode=" + ("controller" if obj is ctrl else "node")], "%s runs --mode %s" % (obj["kind"], mode))
sys.exit(1 if bad else 0)
PY
ok "the Kubernetes manifests parse and hang together"

dockerfile=$TOP/packaging/kubernetes/Dockerfile
[ -f "$dockerfile" ] || fail "packaging/kubernetes/Dockerfile is missing"
for bin in portalbd portalbd-csi; do
  grep -q "bin/$bin" "$dockerfile" || fail "the Dockerfile does not build and copy $bin"
done
grep -q "ENTRYPOINT.*portalbd-csi" "$dockerfile" || fail "the Dockerfile's entry point is not portalbd-csi"
ok "the Dockerfile builds portalbd and portalbd-csi with make and runs the driver"

# The image's build packages are deps.sh's: every library (-dev) package of
# its build sections (those before "# integration tests"), but doctest (unit
# tests only), must be installed by the Dockerfile too.
missing=$("$SYSPYTHON" - "$TOP/packaging/deps.sh" "$dockerfile" <<'PY'
import re, sys
deps = open(sys.argv[1]).read()
start = deps.index("PACKAGES=(")
block = deps[start:deps.index("# integration tests", start)]
pkgs = {w for line in block.splitlines() for w in line.split("#")[0].split()}
docker = open(sys.argv[2]).read().split()
print(" ".join(sorted(p for p in pkgs if p.endswith("-dev") and p != "doctest-dev" and p not in docker)))
PY
)
assert_eq "$missing" "" "the Dockerfile installs every library package deps.sh builds with"
