#!/usr/bin/python3
"""Writes the NBD seed corpus (tests/fuzz/corpus/nbd_connection/): client
streams for nbd_connection_fuzz.cc. Byte 0 picks the mode: even = the whole
stream from the client flags on; odd = canned handshake first (bit 1: the
read-only export), the rest is transmission-phase requests.

The segment corpus (tests/fuzz/corpus/segment/) holds real segment objects
from a file:// store (small ones, lz4), copied with --segments DIR.

Also written: S3 answers for s3_xml_fuzz.cc (corpus/s3_xml/), edit lists for
journal_fuzz.cc (corpus/journal/: none, checksums only, a wseq, a watermark
and a payload length changed), and checkpoints for checkpoint_fuzz.cc
(corpus/checkpoint/: zstd frames with content size and checksum, made with
the zstd command).

  make_corpus.py [--segments DIR]
"""
import argparse
import os
import shutil
import subprocess
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
NBD_DIR = os.path.join(HERE, "corpus", "nbd_connection")
SEG_DIR = os.path.join(HERE, "corpus", "segment")

IHAVEOPT = 0x49484156454F5054
REQ_MAGIC = 0x25609513
READ, WRITE, DISC, FLUSH, TRIM, CACHE, ZEROES, BLOCK_STATUS = 0, 1, 2, 3, 4, 5, 6, 7
FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO = 1, 2, 4, 8, 16


def opt(code, payload=b""):
    return struct.pack(">QII", IHAVEOPT, code, len(payload)) + payload


def name(s):
    b = s.encode()
    return struct.pack(">I", len(b)) + b


def req(cmd, off=0, length=0, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie, off, length) + payload


FLAGS = struct.pack(">I", 3)


def handshakes():
    yield "go_disk", b"\x00" + FLAGS + opt(7, name("disk") + b"\x00\x00") + req(READ, 0, 4096) + req(DISC)
    yield "export_name", b"\x00" + FLAGS + opt(1, b"disk") + req(FLUSH) + req(DISC)
    yield "list_abort", b"\x00" + FLAGS + opt(3) + opt(2)
    yield "info_all", b"\x00" + FLAGS + opt(6, name("") + struct.pack(">H", 4) + struct.pack(">HHHH", 0, 1, 2, 3))
    yield "meta", b"\x00" + FLAGS + opt(8) + opt(9, name("disk") + struct.pack(">I", 1) + name("base:")) + \
        opt(10, name("disk") + struct.pack(">I", 1) + name("base:allocation")) + opt(7, name("disk") + b"\x00\x00")
    yield "bad_flags", b"\x00" + struct.pack(">I", 0xFFFF) + opt(7, name("disk") + b"\x00\x00")
    yield "bad_magic", b"\x00" + FLAGS + struct.pack(">QII", 0x1234, 7, 0)
    yield "huge_option", b"\x00" + FLAGS + struct.pack(">QII", IHAVEOPT, 7, 0xFFFFFFF0)
    yield "unknown_export", b"\x00" + FLAGS + opt(7, name("nope") + b"\x00\x00") + opt(7, name("ro") + b"\x00\x00")
    yield "starttls_unknown", b"\x00" + FLAGS + opt(5) + opt(99, b"xyz") + opt(11) + opt(4, b"x")
    yield "short_name", b"\x00" + FLAGS + opt(7, struct.pack(">I", 100) + b"di")


def transmissions():
    data = bytes(range(256)) * 16
    yield "rw", b"\x01" + req(WRITE, 4096, 4096, payload=data) + req(READ, 4096, 4096, cookie=2) + req(DISC)
    yield "fua_flush", b"\x01" + req(WRITE, 0, 4096, FUA, payload=data) + req(FLUSH, cookie=3) + \
        req(TRIM, 8192, 8192, FUA) + req(ZEROES, 0, 65536, NO_HOLE | FAST_ZERO)
    yield "status", b"\x01" + req(BLOCK_STATUS, 0, 1 << 20, REQ_ONE) + req(CACHE, 0, 4096) + req(READ, 0, 512, DF)
    yield "bounds", b"\x01" + req(READ, (1 << 20) - 512, 4096) + req(WRITE, 1 << 20, 512, payload=data[:512]) + \
        req(READ, 0xFFFFFFFFFFFFF000, 8192) + req(READ, 0, 0) + req(FLUSH, 5, 5)
    yield "big", b"\x01" + req(READ, 0, 0xFFFFFFFF) + req(WRITE, 0, 300000, payload=b"\xaa" * 1000)
    yield "bad_cmd", b"\x01" + req(42, 0, 4096, 0x8000) + req(WRITE, 0, 4096, 0xFF, payload=data) + \
        struct.pack(">I", 0xDEADBEEF) + b"\x00" * 24
    yield "ro_write", b"\x03" + req(WRITE, 0, 4096, payload=data) + req(TRIM, 0, 4096) + req(READ, 0, 4096)
    yield "pipeline", b"\x01" + b"".join(req(READ if i % 2 else WRITE, i * 4096, 4096, cookie=i,
                                             payload=b"" if i % 2 else data) for i in range(16)) + req(DISC)
    yield "truncated", b"\x01" + req(WRITE, 0, 4096, payload=data[:100])


XML_SEEDS = {
    "list": b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b'<Name>b</Name><Prefix>v/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType>'
            b'<IsTruncated>true</IsTruncated><NextContinuationToken>t1</NextContinuationToken>'
            b'<Contents><Key>v/segments/0000000000000001.seg</Key><Size>4194304</Size><ETag>&quot;e&quot;</ETag></Contents>'
            b'<Contents><Key>v/caf%C3%A9&amp;&#233;</Key><Size>0</Size></Contents></ListBucketResult>',
    "error": b'<?xml version="1.0"?><Error><Code>NoSuchKey</Code><Message>gone</Message><Key>k</Key>'
             b'<RequestId>r</RequestId><Resource><![CDATA[/b/k]]></Resource></Error>',
    "initiate": b'<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u-1</UploadId>'
                b'</InitiateMultipartUploadResult>',
    "complete": b'<CompleteMultipartUploadResult><Location>l</Location><Bucket>b</Bucket><Key>k</Key>'
                b'<ETag>"x-2"</ETag></CompleteMultipartUploadResult>',
    "delete": b'<DeleteResult><Deleted><Key>a</Key></Deleted><Error><Key>b</Key><Code>AccessDenied</Code>'
              b'<Message>no</Message></Error><!-- c --></DeleteResult>',
}


def journal_seeds():
    # Byte 0 bit 0: recompute checksums; then edits (file, u16 offset, u8 length, bytes).
    def edit(f, off, data):
        return struct.pack("<BHB", f, off, len(data)) + data
    yield "none", b"\x00"
    yield "checksums", b"\x01"
    yield "wseq", b"\x01" + edit(0, 24, struct.pack("<Q", 7))
    yield "released", b"\x01" + edit(1, 512 * 9 + 56, struct.pack("<Q", 40))
    yield "payload_len", b"\x01" + edit(2, 64, struct.pack("<I", 8192))
    yield "start", b"\x00" + edit(4, 8, struct.pack("<Q", 3))


def checkpoint_seeds(directory):
    for n, raw in (("small", b"SQLite format 3\x00" + bytes(range(256)) * 16),
                   ("pages", (b"\x0d\x00\x00\x00" + b"\x00" * 4092) * 24)):
        out = os.path.join(directory, n + ".zst")
        src = out + ".raw"
        with open(src, "wb") as f:
            f.write(raw)
        subprocess.run(["zstd", "-q", "-f", "-3", "--check", src, "-o", out], check=True)
        os.unlink(src)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--segments", help="a file:// store's segments/ dir to copy small segments from")
    a = ap.parse_args()
    os.makedirs(NBD_DIR, exist_ok=True)
    for n, blob in list(handshakes()) + list(transmissions()):
        with open(os.path.join(NBD_DIR, n + ".bin"), "wb") as f:
            f.write(blob)
    for sub, seeds in (("s3_xml", XML_SEEDS.items()), ("journal", journal_seeds())):
        d = os.path.join(HERE, "corpus", sub)
        os.makedirs(d, exist_ok=True)
        for n, blob in seeds:
            with open(os.path.join(d, n + ".bin"), "wb") as f:
                f.write(blob)
    os.makedirs(os.path.join(HERE, "corpus", "checkpoint"), exist_ok=True)
    checkpoint_seeds(os.path.join(HERE, "corpus", "checkpoint"))
    if a.segments:
        os.makedirs(SEG_DIR, exist_ok=True)
        segs = sorted((os.path.getsize(os.path.join(a.segments, s)), s) for s in os.listdir(a.segments)
                      if s.endswith(".seg"))
        picks = [segs[0], segs[len(segs) // 4], segs[len(segs) // 2]] + [s for s in segs if s[0] < 32768][-2:]
        for size, s in picks:
            shutil.copy(os.path.join(a.segments, s), os.path.join(SEG_DIR, s))


if __name__ == "__main__":
    main()
