#!/usr/bin/env python3
"""What a client sees of a portalbd volume, as one comparable text.

  volume_view.py SOCKET EXPORT [SNAPSHOT...]

For the live export and each snapshot export (EXPORT@SNAPSHOT) on the NBD unix
socket SOCKET, prints one line: the export name and a SHA-256 over every
non-zero 64 KiB chunk and its offset. Holes (block status) are skipped, so a
1 GiB volume with a few MiB written reads in well under a second, and a zero
chunk hashes the same whether it is a hole or written zeros. Two volumes with
equal lines hold the same bytes.
"""
import hashlib
import sys

import nbd

CHUNK = 64 * 1024


def digest(sock, name):
    h = nbd.NBD()
    h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.set_export_name(name)
    h.connect_unix(sock)
    size = h.get_size()
    extents = []  # (offset, length) that may hold data

    def collect(metacontext, offset, entries, err):
        if metacontext != nbd.CONTEXT_BASE_ALLOCATION:
            return 0
        pos = offset
        for i in range(0, len(entries), 2):
            length, flags = entries[i], entries[i + 1]
            if not flags & nbd.STATE_ZERO:
                extents.append((pos, length))
            pos += length
        return 0

    pos = 0
    while pos < size:
        reached = [pos]

        def cb(metacontext, offset, entries, err):
            collect(metacontext, offset, entries, err)
            if metacontext == nbd.CONTEXT_BASE_ALLOCATION:
                reached[0] = offset + sum(entries[0::2])
            return 0

        h.block_status(min(size - pos, 1 << 30), pos, cb)
        if reached[0] <= pos:
            raise SystemExit(f"{name}: block status made no progress at {pos}")
        pos = reached[0]
    # Whole aligned chunks, each once, so equal bytes give equal hashes
    # however block status splits the extents.
    chunks = set()
    for off, length in extents:
        chunks.update(range(off // CHUNK, (min(size, off + length) + CHUNK - 1) // CHUNK))
    sha = hashlib.sha256()
    zero = bytes(CHUNK)
    for c in sorted(chunks):
        start = c * CHUNK
        n = min(CHUNK, size - start)
        data = h.pread(n, start)
        if data != zero[:n]:
            sha.update(start.to_bytes(8, "little"))
            sha.update(data)
    h.shutdown()
    return f"{name} size={size} sha256={sha.hexdigest()}"


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    sock, export = sys.argv[1], sys.argv[2]
    lines = [digest(sock, export)]
    for snap in sorted(sys.argv[3:]):
        lines.append(digest(sock, f"{export}@{snap}"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
