#!/usr/bin/env python3
"""Conformance client for portalbd-csi, written from the CSI spec (v1.13.0).

Runs, over the driver's unix socket, the calls external-provisioner,
external-snapshotter, external-resizer and kubelet make, and checks each
idempotency and error-code rule of spec.md that applies (the checks
csi-sanity makes for the Identity and Controller services, and the Node
service's argument checks that need no kernel).

Usage: csi_conformance.py STUB_DIR ENDPOINT_SOCKET STATE_DIR PORTALBD
  STUB_DIR   where csi_pb2.py / csi_pb2_grpc.py were generated (by protoc)
  STATE_DIR  the driver's --state-dir (to start a daemon where the node
             service would, so "attached" volumes can be tested)
  PORTALBD   the daemon binary
Prints one line per check ("ok N - what" / "FAIL - what"); exits 1 on any
failure.
"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
import csi_pb2 as csi  # noqa: E402
import csi_pb2_grpc as rpc  # noqa: E402

SOCKET, STATE_DIR, PORTALBD = sys.argv[2], sys.argv[3], sys.argv[4]
GiB = 1 << 30
MiB = 1 << 20

checks = 0
failures = 0


def ok(cond, what):
    global checks, failures
    checks += 1
    if cond:
        print(f"ok {checks} - {what}", flush=True)
    else:
        failures += 1
        print(f"FAIL - {what}", flush=True)
    return cond


def code_of(fn, req):
    """The gRPC status code of a call (OK when it succeeds) and its answer or message."""
    try:
        return grpc.StatusCode.OK, fn(req, timeout=300)
    except grpc.RpcError as e:
        return e.code(), e.details()


def expect_code(fn, req, code, what):
    got, detail = code_of(fn, req)
    ok(got == code, f"{what}: {code.name} (got {got.name}: {str(detail)[:200]!r})")
    return detail


def mount_cap(mode=csi.VolumeCapability.AccessMode.SINGLE_NODE_WRITER, fs=""):
    return csi.VolumeCapability(mount=csi.VolumeCapability.MountVolume(fs_type=fs),
                                access_mode=csi.VolumeCapability.AccessMode(mode=mode))


def block_cap(mode=csi.VolumeCapability.AccessMode.SINGLE_NODE_WRITER):
    return csi.VolumeCapability(block=csi.VolumeCapability.BlockVolume(),
                                access_mode=csi.VolumeCapability.AccessMode(mode=mode))


channel = grpc.insecure_channel("unix://" + SOCKET)
grpc.channel_ready_future(channel).result(timeout=30)
ident = rpc.IdentityStub(channel)
ctrl = rpc.ControllerStub(channel)
node = rpc.NodeStub(channel)

# ---------------------------------------------------------------- Identity
info = ident.GetPluginInfo(csi.GetPluginInfoRequest())
ok(info.name == "csi.portalbd.io" and info.vendor_version != "", f"GetPluginInfo: name {info.name!r}, version {info.vendor_version!r}")
caps = ident.GetPluginCapabilities(csi.GetPluginCapabilitiesRequest())
services = {c.service.type for c in caps.capabilities if c.HasField("service")}
expansion = {c.volume_expansion.type for c in caps.capabilities if c.HasField("volume_expansion")}
ok(csi.PluginCapability.Service.CONTROLLER_SERVICE in services, "GetPluginCapabilities: CONTROLLER_SERVICE")
ok(expansion == {csi.PluginCapability.VolumeExpansion.OFFLINE}, "GetPluginCapabilities: offline volume expansion")
probe = ident.Probe(csi.ProbeRequest())
ok(probe.ready.value, "Probe: ready")

# ---------------------------------------------------------------- Controller capabilities
cc = ctrl.ControllerGetCapabilities(csi.ControllerGetCapabilitiesRequest())
rpcs = {c.rpc.type for c in cc.capabilities}
R = csi.ControllerServiceCapability.RPC
for want in (R.CREATE_DELETE_VOLUME, R.LIST_VOLUMES, R.GET_CAPACITY, R.CREATE_DELETE_SNAPSHOT, R.LIST_SNAPSHOTS,
             R.CLONE_VOLUME, R.EXPAND_VOLUME, R.GET_VOLUME):
    ok(want in rpcs, f"ControllerGetCapabilities advertises {csi.ControllerServiceCapability.RPC.Type.Name(want)}")
ok(R.PUBLISH_UNPUBLISH_VOLUME not in rpcs, "ControllerGetCapabilities does not advertise PUBLISH_UNPUBLISH_VOLUME (no ControllerPublish)")

# ---------------------------------------------------------------- CreateVolume: bad input
expect_code(ctrl.CreateVolume, csi.CreateVolumeRequest(volume_capabilities=[mount_cap()]),
            grpc.StatusCode.INVALID_ARGUMENT, "CreateVolume without a name")
expect_code(ctrl.CreateVolume, csi.CreateVolumeRequest(name="no-caps"),
            grpc.StatusCode.INVALID_ARGUMENT, "CreateVolume without capabilities")
d = expect_code(ctrl.CreateVolume,
                csi.CreateVolumeRequest(name="multi", volume_capabilities=[
                    mount_cap(csi.VolumeCapability.AccessMode.MULTI_NODE_MULTI_WRITER)]),
                grpc.StatusCode.INVALID_ARGUMENT, "CreateVolume with MULTI_NODE_MULTI_WRITER")
ok("MULTI_NODE_MULTI_WRITER" in str(d), "... and the message names the access mode")
expect_code(ctrl.CreateVolume, csi.CreateVolumeRequest(name="btrfs", volume_capabilities=[mount_cap(fs="btrfs")]),
            grpc.StatusCode.INVALID_ARGUMENT, "CreateVolume with fs_type btrfs")
expect_code(ctrl.CreateVolume,
            csi.CreateVolumeRequest(name="mem", volume_capabilities=[mount_cap()],
                                    parameters={"storageUrl": "memory://"}),
            grpc.StatusCode.INVALID_ARGUMENT, "CreateVolume with storageUrl memory://")
expect_code(ctrl.CreateVolume,
            csi.CreateVolumeRequest(name="badurl", volume_capabilities=[mount_cap()],
                                    parameters={"storageUrl": "ftp://x/y"}),
            grpc.StatusCode.INVALID_ARGUMENT, "CreateVolume with storageUrl ftp://")
expect_code(ctrl.CreateVolume,
            csi.CreateVolumeRequest(name="param", volume_capabilities=[mount_cap()], parameters={"color": "red"}),
            grpc.StatusCode.INVALID_ARGUMENT, "CreateVolume with an unknown parameter")
expect_code(ctrl.CreateVolume,
            csi.CreateVolumeRequest(name="range", volume_capabilities=[mount_cap()],
                                    capacity_range=csi.CapacityRange(required_bytes=10 * MiB, limit_bytes=MiB)),
            grpc.StatusCode.INVALID_ARGUMENT, "CreateVolume with limit_bytes below required_bytes")
expect_code(ctrl.CreateVolume,
            csi.CreateVolumeRequest(name="tight", volume_capabilities=[mount_cap()],
                                    capacity_range=csi.CapacityRange(required_bytes=5000, limit_bytes=6000)),
            grpc.StatusCode.OUT_OF_RANGE, "CreateVolume whose range holds no whole 4 KiB block count")

got, detail = code_of(ctrl.CreateVolume, csi.CreateVolumeRequest(
    name="unopenable", volume_capabilities=[mount_cap()],
    parameters={"storageUrl": "file:///proc/portalbd-csi-cannot-write-here"}))
ok(got not in (grpc.StatusCode.OK, grpc.StatusCode.UNKNOWN) and "/proc/portalbd-csi-cannot-write-here" in str(detail),
   f"CreateVolume on storage that cannot be written: {got.name}, naming the URL: {str(detail)[:160]!r}")

# ---------------------------------------------------------------- CreateVolume: provisioner sequence
req = csi.CreateVolumeRequest(name="pvc-0001", volume_capabilities=[mount_cap()],
                              capacity_range=csi.CapacityRange(required_bytes=100 * MiB + 1))
v1 = ctrl.CreateVolume(req).volume
ok(v1.capacity_bytes == 100 * MiB + 4096, f"CreateVolume rounds 100 MiB + 1 up to the block: {v1.capacity_bytes}")
ok(v1.volume_id.startswith("pvc-0001-"), f"volume id {v1.volume_id!r} derives from the name")
ok(v1.volume_context.get("storageUrl", "").endswith("/" + v1.volume_id), "volume_context names its storage URL")
again = ctrl.CreateVolume(req).volume
ok(again.volume_id == v1.volume_id and again.capacity_bytes == v1.capacity_bytes,
   "CreateVolume is idempotent by name (same id and size)")
expect_code(ctrl.CreateVolume,
            csi.CreateVolumeRequest(name="pvc-0001", volume_capabilities=[mount_cap()],
                                    capacity_range=csi.CapacityRange(required_bytes=GiB)),
            grpc.StatusCode.ALREADY_EXISTS, "CreateVolume of the same name with an incompatible size")
vdef = ctrl.CreateVolume(csi.CreateVolumeRequest(name="pvc-default", volume_capabilities=[block_cap()])).volume
ok(vdef.capacity_bytes == GiB, f"CreateVolume without a capacity range makes 1 GiB: {vdef.capacity_bytes}")
vlim = ctrl.CreateVolume(csi.CreateVolumeRequest(name="pvc-limit", volume_capabilities=[mount_cap(fs="xfs")],
                                                 capacity_range=csi.CapacityRange(limit_bytes=64 * MiB))).volume
ok(vlim.capacity_bytes == 64 * MiB, f"CreateVolume with only limit_bytes 64 MiB stays under it: {vlim.capacity_bytes}")

# ---------------------------------------------------------------- Validate / Get / List / Capacity
expect_code(ctrl.ValidateVolumeCapabilities,
            csi.ValidateVolumeCapabilitiesRequest(volume_capabilities=[mount_cap()]),
            grpc.StatusCode.INVALID_ARGUMENT, "ValidateVolumeCapabilities without a volume id")
expect_code(ctrl.ValidateVolumeCapabilities, csi.ValidateVolumeCapabilitiesRequest(volume_id=v1.volume_id),
            grpc.StatusCode.INVALID_ARGUMENT, "ValidateVolumeCapabilities without capabilities")
expect_code(ctrl.ValidateVolumeCapabilities,
            csi.ValidateVolumeCapabilitiesRequest(volume_id="no-such-volume-1234", volume_capabilities=[mount_cap()]),
            grpc.StatusCode.NOT_FOUND, "ValidateVolumeCapabilities of an unknown volume")
val = ctrl.ValidateVolumeCapabilities(csi.ValidateVolumeCapabilitiesRequest(
    volume_id=v1.volume_id, volume_capabilities=[mount_cap(), block_cap()]))
ok(len(val.confirmed.volume_capabilities) == 2, "ValidateVolumeCapabilities confirms mount + block SINGLE_NODE_WRITER")
val = ctrl.ValidateVolumeCapabilities(csi.ValidateVolumeCapabilitiesRequest(
    volume_id=v1.volume_id, volume_capabilities=[mount_cap(csi.VolumeCapability.AccessMode.MULTI_NODE_MULTI_WRITER)]))
ok(not val.HasField("confirmed") and val.message != "", f"... and does not confirm MULTI_NODE_MULTI_WRITER: {val.message[:80]!r}")

got = ctrl.ControllerGetVolume(csi.ControllerGetVolumeRequest(volume_id=v1.volume_id))
ok(got.volume.volume_id == v1.volume_id and got.volume.capacity_bytes == v1.capacity_bytes, "ControllerGetVolume")
expect_code(ctrl.ControllerGetVolume, csi.ControllerGetVolumeRequest(volume_id="nope-00000000"),
            grpc.StatusCode.NOT_FOUND, "ControllerGetVolume of an unknown volume")

cap = ctrl.GetCapacity(csi.GetCapacityRequest(volume_capabilities=[mount_cap()]))
ok(cap.available_capacity > 0 and cap.maximum_volume_size.value >= GiB, "GetCapacity: object storage has room")

listed = ctrl.ListVolumes(csi.ListVolumesRequest())
ids = [e.volume.volume_id for e in listed.entries]
ok(sorted(ids) == sorted([v1.volume_id, vdef.volume_id, vlim.volume_id]) and listed.next_token == "",
   f"ListVolumes lists the three volumes: {ids}")
seen, token, pages = [], "", 0
while True:
    page = ctrl.ListVolumes(csi.ListVolumesRequest(max_entries=1, starting_token=token))
    pages += 1
    seen += [e.volume.volume_id for e in page.entries]
    ok(len(page.entries) <= 1, f"ListVolumes page {pages} holds at most max_entries=1")
    token = page.next_token
    if not token or pages > 10:
        break
ok(sorted(seen) == sorted(ids) and pages == 3, f"ListVolumes paging walks every volume once in {pages} pages")
expect_code(ctrl.ListVolumes, csi.ListVolumesRequest(starting_token="bogus"), grpc.StatusCode.ABORTED,
            "ListVolumes with a token it never issued")
expect_code(ctrl.ListVolumes, csi.ListVolumesRequest(max_entries=-1), grpc.StatusCode.INVALID_ARGUMENT,
            "ListVolumes with negative max_entries")


# ---------------------------------------------------------------- an attached volume: its daemon
def start_daemon(volume, vdir=None, must_start=True):
    """The daemon the node would run: a snapshot reader (--serve-snapshot) for a
    volume whose context names readerSnapshot. must_start=False: None when it exits."""
    vdir = vdir or os.path.join(STATE_DIR, "volumes", volume.volume_id)
    os.makedirs(vdir + "/state", exist_ok=True)
    log = open(vdir + "/portalbd.log", "ab")
    reader = ["--serve-snapshot", volume.volume_context["readerSnapshot"]] if "readerSnapshot" in volume.volume_context else []
    p = subprocess.Popen([PORTALBD, "--storage", volume.volume_context["storageUrl"], "--state-dir", vdir + "/state",
                          "--socket", vdir + "/control.sock", "--nbd-address", "", "--nbd-unix", vdir + "/nbd.sock",
                          "--export-name", volume.volume_id] + reader, stdout=log, stderr=log)
    for _ in range(300):
        if os.path.exists(vdir + "/control.sock") and os.path.exists(vdir + "/nbd.sock"):
            return p, vdir + "/nbd.sock"
        if p.poll() is not None:
            break
        time.sleep(0.1)
    if not must_start:
        return None, None
    raise SystemExit(f"portalbd for {volume.volume_id} did not start; see {vdir}/portalbd.log")


def stop_daemon(p):
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=120)
    return p.returncode


try:
    import nbd  # python3-libnbd
except ImportError:
    nbd = None


def nbd_io(sock, export, writes=None, reads=None):
    h = nbd.NBD()
    h.set_export_name(export)
    h.connect_unix(sock)
    for off, data in (writes or []):
        h.pwrite(data, off)
    if writes:
        h.flush()
    out = [h.pread(n, off) for off, n in (reads or [])]
    h.shutdown()
    return out


PATTERN_A = b"portalbd-csi snapshot A " * 170  # 4080 bytes
PATTERN_B = b"written after the snapshot " * 150

d1, sock1 = start_daemon(v1)
if nbd is not None:
    nbd_io(sock1, v1.volume_id, writes=[(0, PATTERN_A), (50 * MiB, PATTERN_A)])
    ok(True, "wrote two blocks to the staged volume through its daemon")
else:
    print("# python3-libnbd missing: the data checks of clones are skipped (the RPC checks still run)")

# ---------------------------------------------------------------- snapshots (external-snapshotter)
expect_code(ctrl.CreateSnapshot, csi.CreateSnapshotRequest(source_volume_id=v1.volume_id),
            grpc.StatusCode.INVALID_ARGUMENT, "CreateSnapshot without a name")
expect_code(ctrl.CreateSnapshot, csi.CreateSnapshotRequest(name="snap-x"),
            grpc.StatusCode.INVALID_ARGUMENT, "CreateSnapshot without a source volume")
expect_code(ctrl.CreateSnapshot, csi.CreateSnapshotRequest(name="snap-x", source_volume_id="nope-00000000"),
            grpc.StatusCode.NOT_FOUND, "CreateSnapshot of an unknown volume")
sreq = csi.CreateSnapshotRequest(name="snapshot-0001", source_volume_id=v1.volume_id)
s1 = ctrl.CreateSnapshot(sreq).snapshot
ok(s1.ready_to_use and s1.source_volume_id == v1.volume_id and s1.size_bytes == v1.capacity_bytes
   and s1.creation_time.seconds > 0,
   f"CreateSnapshot of the attached volume (through its daemon): ready, size {s1.size_bytes}, created {s1.creation_time.seconds}")
s1b = ctrl.CreateSnapshot(sreq).snapshot
ok(s1b.snapshot_id == s1.snapshot_id and s1b.creation_time == s1.creation_time, "CreateSnapshot is idempotent by name")
expect_code(ctrl.CreateSnapshot, csi.CreateSnapshotRequest(name="snapshot-0001", source_volume_id=vdef.volume_id),
            grpc.StatusCode.ALREADY_EXISTS, "CreateSnapshot of the same name from another volume")
if nbd is not None:
    nbd_io(sock1, v1.volume_id, writes=[(0, PATTERN_B)])  # after the snapshot: must not reach it

# Restore and clone while the source is staged here: read from its daemon's exports.
live_restored = ctrl.CreateVolume(csi.CreateVolumeRequest(
    name="pvc-restored-live", volume_capabilities=[mount_cap()],
    volume_content_source=csi.VolumeContentSource(
        snapshot=csi.VolumeContentSource.SnapshotSource(snapshot_id=s1.snapshot_id)))).volume
ok(live_restored.capacity_bytes == s1.size_bytes, "CreateVolume from a snapshot of a staged volume (its daemon's snapshot export)")
live_clone = ctrl.CreateVolume(csi.CreateVolumeRequest(
    name="pvc-clone-live", volume_capabilities=[mount_cap()],
    volume_content_source=csi.VolumeContentSource(volume=csi.VolumeContentSource.VolumeSource(volume_id=v1.volume_id)))).volume
ok(live_clone.content_source.volume.volume_id == v1.volume_id, "CreateVolume cloning a staged volume")

expect_code(ctrl.DeleteVolume, csi.DeleteVolumeRequest(volume_id=v1.volume_id), grpc.StatusCode.FAILED_PRECONDITION,
            "DeleteVolume of a staged volume (its daemon runs here)")
expect_code(ctrl.ControllerExpandVolume,
            csi.ControllerExpandVolumeRequest(volume_id=v1.volume_id,
                                              capacity_range=csi.CapacityRange(required_bytes=200 * MiB)),
            grpc.StatusCode.FAILED_PRECONDITION, "ControllerExpandVolume of a staged volume (offline expansion)")
ok(stop_daemon(d1) == 0, "the volume's daemon stops cleanly (unstaged)")

s2 = ctrl.CreateSnapshot(csi.CreateSnapshotRequest(name="snapshot-0002", source_volume_id=v1.volume_id)).snapshot
ok(s2.ready_to_use and s2.snapshot_id != s1.snapshot_id, "CreateSnapshot of the detached volume (in process)")
s3 = ctrl.CreateSnapshot(csi.CreateSnapshotRequest(name="snapshot-0003", source_volume_id=vdef.volume_id)).snapshot

all_snaps = ctrl.ListSnapshots(csi.ListSnapshotsRequest())
ok(sorted(e.snapshot.snapshot_id for e in all_snaps.entries) == sorted([s1.snapshot_id, s2.snapshot_id, s3.snapshot_id]),
   "ListSnapshots lists all three")
by_vol = ctrl.ListSnapshots(csi.ListSnapshotsRequest(source_volume_id=v1.volume_id))
ok(sorted(e.snapshot.snapshot_id for e in by_vol.entries) == sorted([s1.snapshot_id, s2.snapshot_id]),
   "ListSnapshots by source volume")
by_id = ctrl.ListSnapshots(csi.ListSnapshotsRequest(snapshot_id=s3.snapshot_id))
ok([e.snapshot.snapshot_id for e in by_id.entries] == [s3.snapshot_id] and by_id.entries[0].snapshot.ready_to_use,
   "ListSnapshots by id")
none = ctrl.ListSnapshots(csi.ListSnapshotsRequest(snapshot_id="nope-00000000@csi-0000"))
ok(len(none.entries) == 0, "ListSnapshots of an unknown id is empty, not an error")
seen, token, pages = [], "", 0
while True:
    page = ctrl.ListSnapshots(csi.ListSnapshotsRequest(max_entries=2, starting_token=token))
    pages += 1
    seen += [e.snapshot.snapshot_id for e in page.entries]
    token = page.next_token
    if not token or pages > 10:
        break
ok(len(seen) == 3 and len(set(seen)) == 3 and pages == 2, f"ListSnapshots paging (2 per page): {pages} pages")
expect_code(ctrl.ListSnapshots, csi.ListSnapshotsRequest(starting_token="zzz"), grpc.StatusCode.ABORTED,
            "ListSnapshots with a token it never issued")

# ---------------------------------------------------------------- volumes from snapshots and clones
expect_code(ctrl.CreateVolume,
            csi.CreateVolumeRequest(name="from-nothing", volume_capabilities=[mount_cap()],
                                    volume_content_source=csi.VolumeContentSource(
                                        snapshot=csi.VolumeContentSource.SnapshotSource(snapshot_id="nope-00000000@csi-00"))),
            grpc.StatusCode.NOT_FOUND, "CreateVolume from an unknown snapshot")
expect_code(ctrl.CreateVolume,
            csi.CreateVolumeRequest(name="clone-of-nothing", volume_capabilities=[mount_cap()],
                                    volume_content_source=csi.VolumeContentSource(
                                        volume=csi.VolumeContentSource.VolumeSource(volume_id="nope-00000000"))),
            grpc.StatusCode.NOT_FOUND, "CreateVolume cloning an unknown volume")
expect_code(ctrl.CreateVolume,
            csi.CreateVolumeRequest(name="too-small", volume_capabilities=[mount_cap()],
                                    capacity_range=csi.CapacityRange(required_bytes=MiB, limit_bytes=MiB),
                                    volume_content_source=csi.VolumeContentSource(
                                        snapshot=csi.VolumeContentSource.SnapshotSource(snapshot_id=s1.snapshot_id))),
            grpc.StatusCode.OUT_OF_RANGE, "CreateVolume from a snapshot with limit_bytes below its size")
rreq = csi.CreateVolumeRequest(name="pvc-restored", volume_capabilities=[mount_cap()],
                               volume_content_source=csi.VolumeContentSource(
                                   snapshot=csi.VolumeContentSource.SnapshotSource(snapshot_id=s1.snapshot_id)))
restored = ctrl.CreateVolume(rreq).volume
ok(restored.capacity_bytes == s1.size_bytes and restored.content_source.snapshot.snapshot_id == s1.snapshot_id,
   "CreateVolume from a snapshot: the snapshot's size, content_source set")
ok(ctrl.CreateVolume(rreq).volume.volume_id == restored.volume_id, "... idempotent")
clone = ctrl.CreateVolume(csi.CreateVolumeRequest(
    name="pvc-clone", volume_capabilities=[mount_cap()],
    capacity_range=csi.CapacityRange(required_bytes=200 * MiB),
    volume_content_source=csi.VolumeContentSource(volume=csi.VolumeContentSource.VolumeSource(volume_id=v1.volume_id)))).volume
ok(clone.capacity_bytes == 200 * MiB and clone.content_source.volume.volume_id == v1.volume_id,
   "CreateVolume cloning a volume, larger than its source")
left = ctrl.ListSnapshots(csi.ListSnapshotsRequest(source_volume_id=v1.volume_id))
ok(len(left.entries) == 2, "a clone leaves no snapshot of its own behind")

if nbd is not None:
    dr, sock = start_daemon(restored)
    a, b = nbd_io(sock, restored.volume_id, reads=[(0, len(PATTERN_A)), (50 * MiB, len(PATTERN_A))])
    ok(a == PATTERN_A and b == PATTERN_A, "the volume restored from the snapshot holds the snapshot's data")
    stop_daemon(dr)
    dc, sock = start_daemon(clone)
    a, b, z = nbd_io(sock, clone.volume_id, reads=[(0, len(PATTERN_B)), (50 * MiB, len(PATTERN_A)), (MiB, 4096)])
    ok(a == PATTERN_B and b == PATTERN_A and z == bytes(4096),
       "the clone holds the source's data as it was when cloned (and zeroes elsewhere)")
    stop_daemon(dc)
    dl, sock = start_daemon(live_restored)
    a, b = nbd_io(sock, live_restored.volume_id, reads=[(0, len(PATTERN_A)), (50 * MiB, len(PATTERN_A))])
    ok(a == PATTERN_A and b == PATTERN_A, "the restore of a staged volume's snapshot holds the snapshot's data")
    stop_daemon(dl)
    dl, sock = start_daemon(live_clone)
    a, b = nbd_io(sock, live_clone.volume_id, reads=[(0, len(PATTERN_B)), (50 * MiB, len(PATTERN_A))])
    ok(a == PATTERN_B and b == PATTERN_A, "the clone of a staged volume holds its data as of the clone")
    stop_daemon(dl)

# ---------------------------------------------------------------- expansion (external-resizer)
expect_code(ctrl.ControllerExpandVolume, csi.ControllerExpandVolumeRequest(volume_id=v1.volume_id),
            grpc.StatusCode.INVALID_ARGUMENT, "ControllerExpandVolume without a capacity range")
expect_code(ctrl.ControllerExpandVolume,
            csi.ControllerExpandVolumeRequest(capacity_range=csi.CapacityRange(required_bytes=GiB)),
            grpc.StatusCode.INVALID_ARGUMENT, "ControllerExpandVolume without a volume id")
expect_code(ctrl.ControllerExpandVolume,
            csi.ControllerExpandVolumeRequest(volume_id="nope-00000000", capacity_range=csi.CapacityRange(required_bytes=GiB)),
            grpc.StatusCode.NOT_FOUND, "ControllerExpandVolume of an unknown volume")
ereq = csi.ControllerExpandVolumeRequest(volume_id=v1.volume_id,
                                         capacity_range=csi.CapacityRange(required_bytes=300 * MiB + 10))
grown = ctrl.ControllerExpandVolume(ereq)
ok(grown.capacity_bytes == 300 * MiB + 4096 and grown.node_expansion_required,
   f"ControllerExpandVolume grows a detached volume to {grown.capacity_bytes}, filesystem resize on the node")
ok(ctrl.ControllerExpandVolume(ereq).capacity_bytes == grown.capacity_bytes, "... idempotent")
shrink = ctrl.ControllerExpandVolume(csi.ControllerExpandVolumeRequest(
    volume_id=v1.volume_id, capacity_range=csi.CapacityRange(required_bytes=10 * MiB)))
ok(shrink.capacity_bytes == grown.capacity_bytes, "ControllerExpandVolume never shrinks")
blk = ctrl.ControllerExpandVolume(csi.ControllerExpandVolumeRequest(
    volume_id=vdef.volume_id, capacity_range=csi.CapacityRange(required_bytes=2 * GiB), volume_capability=block_cap()))
ok(blk.capacity_bytes == 2 * GiB and not blk.node_expansion_required, "a raw block volume needs no node expansion")
ok(ctrl.ControllerGetVolume(csi.ControllerGetVolumeRequest(volume_id=v1.volume_id)).volume.capacity_bytes
   == grown.capacity_bytes, "ControllerGetVolume shows the new size")
if nbd is not None:
    dg, sock = start_daemon(ctrl.ControllerGetVolume(csi.ControllerGetVolumeRequest(volume_id=v1.volume_id)).volume)
    h = nbd.NBD()
    h.set_export_name(v1.volume_id)
    h.connect_unix(sock)
    size = h.get_size()
    h.shutdown()
    ok(size == grown.capacity_bytes, f"the daemon serves the grown size: {size}")
    stop_daemon(dg)

# ---------------------------------------------------------------- MULTI_NODE_READER_ONLY: snapshot reader volumes
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import csi_store  # noqa: E402
ROX = csi.VolumeCapability.AccessMode.MULTI_NODE_READER_ONLY
base_url = v1.volume_context["storageUrl"].rsplit("/", 1)[0]
expect_code(ctrl.CreateVolume, csi.CreateVolumeRequest(name="pvc-rox-nosrc", volume_capabilities=[mount_cap(ROX)]),
            grpc.StatusCode.INVALID_ARGUMENT, "CreateVolume MULTI_NODE_READER_ONLY without a snapshot source")
d = expect_code(ctrl.CreateVolume, csi.CreateVolumeRequest(
    name="pvc-rox-clone", volume_capabilities=[mount_cap(ROX)],
    volume_content_source=csi.VolumeContentSource(volume=csi.VolumeContentSource.VolumeSource(volume_id=v1.volume_id))),
    grpc.StatusCode.INVALID_ARGUMENT, "CreateVolume MULTI_NODE_READER_ONLY cloned from a volume")
ok("must come from a snapshot" in str(d), "... and the message says why")
s4 = ctrl.CreateSnapshot(csi.CreateSnapshotRequest(name="snapshot-rox", source_volume_id=v1.volume_id)).snapshot
src_objects = csi_store.count(v1.volume_context["storageUrl"])
snap_record = base_url + "/_csi/snapshots/" + s4.snapshot_id + ".json"
rox_src = csi.VolumeContentSource(snapshot=csi.VolumeContentSource.SnapshotSource(snapshot_id=s4.snapshot_id))
expect_code(ctrl.CreateVolume, csi.CreateVolumeRequest(name="pvc-rox-big", volume_capabilities=[mount_cap(ROX)],
                                                       capacity_range=csi.CapacityRange(required_bytes=s4.size_bytes + 4096),
                                                       volume_content_source=rox_src),
            grpc.StatusCode.OUT_OF_RANGE, "CreateVolume MULTI_NODE_READER_ONLY larger than its snapshot")
expect_code(ctrl.CreateVolume, csi.CreateVolumeRequest(name="pvc-rox-mixed", volume_capabilities=[mount_cap(ROX), mount_cap()],
                                                       volume_content_source=rox_src),
            grpc.StatusCode.INVALID_ARGUMENT, "CreateVolume MULTI_NODE_READER_ONLY together with SINGLE_NODE_WRITER")
rox_req = csi.CreateVolumeRequest(name="pvc-rox-a", volume_capabilities=[mount_cap(ROX)], volume_content_source=rox_src)
rox_a = ctrl.CreateVolume(rox_req).volume
rox_b = ctrl.CreateVolume(csi.CreateVolumeRequest(name="pvc-rox-b", volume_capabilities=[block_cap(ROX)],
                                                  volume_content_source=rox_src)).volume
ok(rox_a.capacity_bytes == s4.size_bytes and rox_a.content_source.snapshot.snapshot_id == s4.snapshot_id,
   "CreateVolume MULTI_NODE_READER_ONLY from a snapshot: the snapshot's size, content_source set")
ok(rox_a.volume_context["storageUrl"] == v1.volume_context["storageUrl"] and
   rox_a.volume_context["readerSnapshot"] == s4.snapshot_id.split("@", 1)[1],
   "... its context names the source volume's storage and the snapshot")
ok(csi_store.count(base_url + "/" + rox_a.volume_id) == 0 and csi_store.count(base_url + "/" + rox_b.volume_id) == 0
   and csi_store.count(v1.volume_context["storageUrl"]) == src_objects,
   f"... no copy: nothing under the new ids, the source's {src_objects} objects unchanged")
ok(ctrl.CreateVolume(rox_req).volume.volume_id == rox_a.volume_id, "... idempotent by name")
expect_code(ctrl.CreateVolume, csi.CreateVolumeRequest(name="pvc-rox-a", volume_capabilities=[mount_cap()],
                                                       volume_content_source=rox_src),
            grpc.StatusCode.ALREADY_EXISTS, "... the same name as a writable volume is ALREADY_EXISTS")
val = ctrl.ValidateVolumeCapabilities(csi.ValidateVolumeCapabilitiesRequest(volume_id=rox_a.volume_id,
                                                                            volume_capabilities=[mount_cap(ROX)]))
ok(val.HasField("confirmed"), "ValidateVolumeCapabilities confirms MULTI_NODE_READER_ONLY of a reader volume")
val = ctrl.ValidateVolumeCapabilities(csi.ValidateVolumeCapabilitiesRequest(volume_id=rox_a.volume_id,
                                                                            volume_capabilities=[mount_cap()]))
ok(not val.HasField("confirmed") and "read-only" in val.message, f"... and not SINGLE_NODE_WRITER: {val.message[:70]!r}")
val = ctrl.ValidateVolumeCapabilities(csi.ValidateVolumeCapabilitiesRequest(volume_id=v1.volume_id,
                                                                            volume_capabilities=[mount_cap(ROX)]))
ok(not val.HasField("confirmed"), "ValidateVolumeCapabilities does not confirm MULTI_NODE_READER_ONLY of a writable volume")
ok("readerSnapshot" in ctrl.ControllerGetVolume(csi.ControllerGetVolumeRequest(volume_id=rox_a.volume_id)).volume.volume_context,
   "ControllerGetVolume of a reader volume")
expect_code(ctrl.ControllerExpandVolume, csi.ControllerExpandVolumeRequest(
    volume_id=rox_a.volume_id, capacity_range=csi.CapacityRange(required_bytes=s4.size_bytes + GiB)),
    grpc.StatusCode.FAILED_PRECONDITION, "ControllerExpandVolume of a reader volume")
expect_code(ctrl.CreateSnapshot, csi.CreateSnapshotRequest(name="snapshot-of-rox", source_volume_id=rox_a.volume_id),
            grpc.StatusCode.INVALID_ARGUMENT, "CreateSnapshot of a reader volume (its snapshot already is its content)")
if nbd is not None:  # two readers at once, as two nodes would run them, with no lease between them
    ra, sock_a = start_daemon(rox_a)
    rb, sock_b = start_daemon(rox_b)
    (a,) = nbd_io(sock_a, rox_a.volume_id, reads=[(0, len(PATTERN_B))])
    (b,) = nbd_io(sock_b, rox_b.volume_id, reads=[(0, len(PATTERN_B))])
    ok(a == PATTERN_B and b == PATTERN_B, "two reader daemons serve the snapshot's data at once")
    try:
        nbd_io(sock_a, rox_a.volume_id, writes=[(0, b"x" * 4096)])
        ok(False, "a write to a reader volume's export fails")
    except Exception as e:  # nbd.Error: read-only export
        ok(True, f"a write to a reader volume's export fails: {str(e)[:60]!r}")
    stop_daemon(ra)
    stop_daemon(rb)
    ok(csi_store.count(v1.volume_context["storageUrl"]) == src_objects, "... and the readers wrote nothing to storage")
# DeleteSnapshot while readers use it: hidden, kept until the last reader goes.
expect_code(ctrl.DeleteSnapshot, csi.DeleteSnapshotRequest(snapshot_id=s4.snapshot_id), grpc.StatusCode.OK,
            "DeleteSnapshot of a snapshot two reader volumes use")
ok(s4.snapshot_id not in [e.snapshot.snapshot_id for e in ctrl.ListSnapshots(csi.ListSnapshotsRequest()).entries],
   "... it is gone from ListSnapshots")
expect_code(ctrl.CreateVolume, csi.CreateVolumeRequest(name="pvc-rox-c", volume_capabilities=[mount_cap(ROX)],
                                                       volume_content_source=rox_src),
            grpc.StatusCode.NOT_FOUND, "... no new volume from it")
ok(csi_store.exists(snap_record), "... its record is kept")
p, _ = start_daemon(rox_a, vdir=os.path.join(STATE_DIR, "rox-after-delete"), must_start=False)
ok(p is not None, "... and the engine snapshot still serves (a reader daemon starts)")
if p is not None:
    stop_daemon(p)
expect_code(ctrl.DeleteVolume, csi.DeleteVolumeRequest(volume_id=rox_a.volume_id), grpc.StatusCode.OK,
            "DeleteVolume of one reader volume")
ok(csi_store.exists(snap_record), "... the snapshot stays for the other")
expect_code(ctrl.DeleteVolume, csi.DeleteVolumeRequest(volume_id=rox_b.volume_id), grpc.StatusCode.OK,
            "DeleteVolume of the last reader volume")
ok(not csi_store.exists(snap_record), "... takes the deleted snapshot along")
p, _ = start_daemon(rox_a, vdir=os.path.join(STATE_DIR, "rox-after-last"), must_start=False)
ok(p is None, "... from storage too (a reader daemon of it exits)")
if p is not None:
    stop_daemon(p)
expect_code(ctrl.DeleteVolume, csi.DeleteVolumeRequest(volume_id=rox_b.volume_id), grpc.StatusCode.OK,
            "DeleteVolume of a reader volume again (idempotent)")

# ---------------------------------------------------------------- deletes
expect_code(ctrl.DeleteSnapshot, csi.DeleteSnapshotRequest(), grpc.StatusCode.INVALID_ARGUMENT,
            "DeleteSnapshot without an id")
expect_code(ctrl.DeleteVolume, csi.DeleteVolumeRequest(), grpc.StatusCode.INVALID_ARGUMENT,
            "DeleteVolume without an id")
expect_code(ctrl.DeleteSnapshot, csi.DeleteSnapshotRequest(snapshot_id="nope-00000000@csi-0000"), grpc.StatusCode.OK,
            "DeleteSnapshot of an unknown id succeeds (idempotent)")
expect_code(ctrl.DeleteVolume, csi.DeleteVolumeRequest(volume_id="nope-00000000"), grpc.StatusCode.OK,
            "DeleteVolume of an unknown id succeeds (idempotent)")
# A volume with snapshots: deleted, its storage kept for them.
expect_code(ctrl.DeleteVolume, csi.DeleteVolumeRequest(volume_id=v1.volume_id), grpc.StatusCode.OK,
            "DeleteVolume of a detached volume that has snapshots")
expect_code(ctrl.ControllerGetVolume, csi.ControllerGetVolumeRequest(volume_id=v1.volume_id), grpc.StatusCode.NOT_FOUND,
            "... it is gone for the CO")
ok(v1.volume_id not in [e.volume.volume_id for e in ctrl.ListVolumes(csi.ListVolumesRequest()).entries],
   "... and from ListVolumes")
fresh = ctrl.CreateVolume(csi.CreateVolumeRequest(name="pvc-0001", volume_capabilities=[mount_cap()],
                                                  capacity_range=csi.CapacityRange(required_bytes=GiB))).volume
ok(fresh.volume_id != v1.volume_id, "its name can be used again, for a new volume")
from_orphan = ctrl.CreateVolume(csi.CreateVolumeRequest(
    name="pvc-from-deleted", volume_capabilities=[mount_cap()],
    volume_content_source=csi.VolumeContentSource(
        snapshot=csi.VolumeContentSource.SnapshotSource(snapshot_id=s2.snapshot_id)))).volume
ok(from_orphan.capacity_bytes == s2.size_bytes, "a snapshot of a deleted volume still restores")
if nbd is not None:
    do, sock = start_daemon(from_orphan)
    (a,) = nbd_io(sock, from_orphan.volume_id, reads=[(0, len(PATTERN_B))])
    ok(a == PATTERN_B, "... with its data")
    stop_daemon(do)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from csi_store import exists as object_exists  # noqa: E402
manifest_url = v1.volume_context["storageUrl"] + "/volume.json"
ok(object_exists(manifest_url), "the deleted volume's storage is kept while snapshots remain")
for s in (s1, s2):
    expect_code(ctrl.DeleteSnapshot, csi.DeleteSnapshotRequest(snapshot_id=s.snapshot_id), grpc.StatusCode.OK,
                f"DeleteSnapshot {s.snapshot_id}")
expect_code(ctrl.DeleteSnapshot, csi.DeleteSnapshotRequest(snapshot_id=s1.snapshot_id), grpc.StatusCode.OK,
            "DeleteSnapshot again (idempotent)")
ok(not object_exists(manifest_url), "the last snapshot of a deleted volume takes its storage along")

for v in (vdef, vlim, restored, clone, fresh, from_orphan, live_restored, live_clone):
    expect_code(ctrl.DeleteVolume, csi.DeleteVolumeRequest(volume_id=v.volume_id), grpc.StatusCode.OK,
                f"DeleteVolume {v.volume_id}")
expect_code(ctrl.DeleteSnapshot, csi.DeleteSnapshotRequest(snapshot_id=s3.snapshot_id), grpc.StatusCode.OK,
            "DeleteSnapshot of a snapshot whose volume was deleted")
expect_code(ctrl.DeleteVolume, csi.DeleteVolumeRequest(volume_id=vdef.volume_id), grpc.StatusCode.OK,
            "DeleteVolume again (idempotent)")
ok(len(ctrl.ListVolumes(csi.ListVolumesRequest()).entries) == 0, "ListVolumes is empty after every delete")
ok(len(ctrl.ListSnapshots(csi.ListSnapshotsRequest()).entries) == 0, "ListSnapshots is empty after every delete")

# ---------------------------------------------------------------- Node: what needs no kernel
ninfo = node.NodeGetInfo(csi.NodeGetInfoRequest())
ok(ninfo.node_id == "csi-test-node" and ninfo.max_volumes_per_node > 0, f"NodeGetInfo: {ninfo.node_id!r}")
ncaps = {c.rpc.type for c in node.NodeGetCapabilities(csi.NodeGetCapabilitiesRequest()).capabilities}
N = csi.NodeServiceCapability.RPC
ok({N.STAGE_UNSTAGE_VOLUME, N.GET_VOLUME_STATS, N.EXPAND_VOLUME} <= ncaps, "NodeGetCapabilities: stage, stats, expand")
expect_code(node.NodeStageVolume, csi.NodeStageVolumeRequest(staging_target_path="/tmp/x", volume_capability=mount_cap()),
            grpc.StatusCode.INVALID_ARGUMENT, "NodeStageVolume without a volume id")
expect_code(node.NodeStageVolume, csi.NodeStageVolumeRequest(volume_id="a-00000000", volume_capability=mount_cap()),
            grpc.StatusCode.INVALID_ARGUMENT, "NodeStageVolume without a staging path")
expect_code(node.NodeStageVolume, csi.NodeStageVolumeRequest(volume_id="a-00000000", staging_target_path="/tmp/x"),
            grpc.StatusCode.INVALID_ARGUMENT, "NodeStageVolume without a capability")
expect_code(node.NodeStageVolume,
            csi.NodeStageVolumeRequest(volume_id="a-00000000", staging_target_path="/tmp/x",
                                       volume_capability=mount_cap(csi.VolumeCapability.AccessMode.MULTI_NODE_MULTI_WRITER),
                                       volume_context={"storageUrl": "file:///tmp/none"}),
            grpc.StatusCode.INVALID_ARGUMENT, "NodeStageVolume with an unsupported access mode")
expect_code(node.NodeUnstageVolume, csi.NodeUnstageVolumeRequest(volume_id="a-00000000"),
            grpc.StatusCode.INVALID_ARGUMENT, "NodeUnstageVolume without a staging path")
expect_code(node.NodeUnstageVolume, csi.NodeUnstageVolumeRequest(volume_id="a-00000000", staging_target_path="/tmp/nowhere-staged"),
            grpc.StatusCode.OK, "NodeUnstageVolume of a volume not staged here (idempotent)")
expect_code(node.NodePublishVolume, csi.NodePublishVolumeRequest(volume_id="a-00000000", staging_target_path="/tmp/x",
                                                                 volume_capability=mount_cap()),
            grpc.StatusCode.INVALID_ARGUMENT, "NodePublishVolume without a target path")
expect_code(node.NodePublishVolume, csi.NodePublishVolumeRequest(volume_id="a-00000000", staging_target_path="/tmp/x",
                                                                 target_path="/tmp/y"),
            grpc.StatusCode.INVALID_ARGUMENT, "NodePublishVolume without a capability")
expect_code(node.NodeUnpublishVolume, csi.NodeUnpublishVolumeRequest(volume_id="a-00000000"),
            grpc.StatusCode.INVALID_ARGUMENT, "NodeUnpublishVolume without a target path")
expect_code(node.NodeUnpublishVolume, csi.NodeUnpublishVolumeRequest(volume_id="a-00000000", target_path="/tmp/not-mounted-here"),
            grpc.StatusCode.OK, "NodeUnpublishVolume of a path not mounted (idempotent)")
expect_code(node.NodeGetVolumeStats, csi.NodeGetVolumeStatsRequest(volume_id="a-00000000", volume_path="/nonexistent/path"),
            grpc.StatusCode.NOT_FOUND, "NodeGetVolumeStats of a path that does not exist")
stats = node.NodeGetVolumeStats(csi.NodeGetVolumeStatsRequest(volume_id="a-00000000", volume_path=STATE_DIR))
units = {u.unit for u in stats.usage}
ok(units == {csi.VolumeUsage.BYTES, csi.VolumeUsage.INODES} and all(u.total > 0 for u in stats.usage),
   "NodeGetVolumeStats of a directory: bytes and inodes")
expect_code(node.NodeExpandVolume, csi.NodeExpandVolumeRequest(volume_id="a-00000000"),
            grpc.StatusCode.INVALID_ARGUMENT, "NodeExpandVolume without a volume path")

print(f"# {checks} checks, {failures} failed")
sys.exit(1 if failures else 0)
