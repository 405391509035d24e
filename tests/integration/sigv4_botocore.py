#!/usr/bin/python3
"""Signs a table of S3 requests with botocore: a second opinion on SigV4.

The table covers what the S3 store sends: keys with spaces, unicode, '+',
'=', '~', '/', reserved characters and dot segments; ListObjectsV2 queries
with empty values and continuation tokens; multipart and DeleteObjects
queries; Range, If-None-Match and Content-MD5 headers; payloads signed by
hash (http) and UNSIGNED-PAYLOAD (https); temporary credentials.

  sigv4_botocore.py --write FILE   write the table (inputs + botocore's answers)
  sigv4_botocore.py --check FILE   recompute with botocore and compare to FILE

src/store/s3/sigv4_botocore_test.cc signs the same inputs with the project's
code and compares URL and Authorization byte for byte; by default it reads the
committed tests/data/sigv4/botocore-s3.json, and test_s3_sigv4_botocore.sh
points it (S3_BOTOCORE_TABLE) at a table freshly computed here.
"""
import datetime
import json
import sys
from urllib.parse import quote

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TIMESTAMP = datetime.datetime(2015, 8, 30, 12, 36, 0)

LOCAL = {"scheme": "http", "authority": "127.0.0.1:4568", "bucket": "bkt", "path_style": True, "region": "us-east-1"}
AWS = {"scheme": "https", "authority": "bkt.s3.eu-west-1.amazonaws.com", "bucket": "bkt", "path_style": False,
       "region": "eu-west-1"}

KEYS = [
    "segments/0000000000000001.seg",
    "a b/c d",
    "caf\u00e9/\u2603 snow",
    "plus+sign",
    "eq=sign==",
    "tilde~x_y-z.w",
    "deep/slash/path/",
    "odd!$&'()*,;:@[]",
    "percent%20literal",
    "dots/./x/../y",
]


def cases():
    out = []
    for ep in (LOCAL, AWS):
        tag = "local" if ep is LOCAL else "aws"
        for i, key in enumerate(KEYS):
            out.append(dict(name=f"{tag} GET key {i}", method="GET", key=key, query=[], headers=[], body=""))
            out.append(dict(name=f"{tag} PUT key {i}", method="PUT", key=key, query=[],
                            headers=[["Content-Type", "application/octet-stream"]], body="segment bytes " + key))
        out += [
            dict(name=f"{tag} ranged GET", method="GET", key="segments/s", query=[],
                 headers=[["Range", "bytes=1000-5999"]], body=""),
            dict(name=f"{tag} HEAD", method="HEAD", key="index/checkpoint", query=[], headers=[], body=""),
            dict(name=f"{tag} DELETE", method="DELETE", key="old segment", query=[], headers=[], body=""),
            dict(name=f"{tag} conditional PUT", method="PUT", key="lease", query=[],
                 headers=[["If-None-Match", "*"], ["Content-Type", "application/octet-stream"]], body="writer-1"),
            dict(name=f"{tag} empty PUT", method="PUT", key="empty", query=[], headers=[], body=""),
            dict(name=f"{tag} ListObjectsV2", method="GET", key="",
                 query=[["list-type", "2"], ["prefix", "vol 1/seg+ments/"], ["encoding-type", "url"],
                        ["max-keys", "1000"]], headers=[], body=""),
            dict(name=f"{tag} ListObjectsV2 page 2", method="GET", key="",
                 query=[["list-type", "2"], ["prefix", ""], ["continuation-token", "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM+=="],
                        ["delimiter", ""]], headers=[], body=""),
            dict(name=f"{tag} CreateMultipartUpload", method="POST", key="big seg", query=[["uploads", ""]],
                 headers=[["Content-Type", "application/octet-stream"]], body=""),
            dict(name=f"{tag} UploadPart", method="PUT", key="big seg",
                 query=[["partNumber", "2"], ["uploadId", "VXBsb2FkIElE+/=="]], headers=[], body="part two"),
            dict(name=f"{tag} DeleteObjects", method="POST", key="", query=[["delete", ""]],
                 headers=[["Content-Type", "application/xml"], ["Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="]],
                 body="<Delete><Object><Key>a</Key></Object></Delete>"),
            dict(name=f"{tag} session token", method="GET", key="k", query=[], headers=[], body="",
                 session_token="FQoGZXIvYXdzE//////////wEaD+token=="),
        ]
        for c in out:
            c.setdefault("endpoint", ep)
    return out


def wire_path(ep, key):
    # The same rules as Endpoint::object_path / bucket_path, spelled with
    # Python's own percent-encoder so that encoding is checked too.
    base = "/" + quote(ep["bucket"], safe="") if ep["path_style"] else ""
    if key == "":
        return base if ep["path_style"] else "/"
    return base + "/" + quote(key, safe="/")


def sign(case):
    ep = case["endpoint"]
    path = wire_path(ep, case["key"])
    query = "&".join(quote(k, safe="") + "=" + quote(v, safe="") for k, v in case["query"])
    url = f'{ep["scheme"]}://{ep["authority"]}{path}' + (f"?{query}" if query else "")
    headers = {k: v for k, v in case["headers"]}
    req = AWSRequest(method=case["method"], url=url, headers=headers, data=case["body"].encode())
    # https: TLS protects the body, so the store sends UNSIGNED-PAYLOAD.
    req.context["client_config"] = Config(s3={"payload_signing_enabled": ep["scheme"] != "https"})
    creds = Credentials(ACCESS_KEY, SECRET_KEY, case.get("session_token"))
    botocore.auth.S3SigV4Auth(creds, "s3", ep["region"]).add_auth(req)
    return {"url": url, "authorization": req.headers["Authorization"],
            "x_amz_content_sha256": req.headers["X-Amz-Content-SHA256"]}


class _FixedClock(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return TIMESTAMP


def table():
    botocore.auth.datetime.datetime = _FixedClock  # botocore reads the time from datetime.datetime.utcnow()
    rows = []
    for c in cases():
        rows.append({"input": c, "botocore": sign(c)})
    return {"credentials": {"access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY},
            "timestamp": TIMESTAMP.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "botocore_version": botocore.__version__, "cases": rows}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("--write", "--check"):
        print(__doc__)
        return 2
    t = table()
    if sys.argv[1] == "--write":
        with open(sys.argv[2], "w", encoding="utf-8") as f:
            json.dump(t, f, indent=1, ensure_ascii=False)
            f.write("\n")
        print(f"wrote {len(t['cases'])} botocore-signed S3 requests to {sys.argv[2]}")
        return 0
    with open(sys.argv[2], encoding="utf-8") as f:
        old = json.load(f)
    bad = 0
    for a, b in zip(old["cases"], t["cases"]):
        if a["botocore"] != b["botocore"] or a["input"] != b["input"]:
            bad += 1
            print(f"DIFFERS: {b['input']['name']}: file {a['botocore']} botocore {b['botocore']}")
    if len(old["cases"]) != len(t["cases"]):
        bad += 1
        print(f"case count differs: file {len(old['cases'])} botocore {len(t['cases'])}")
    print(f"{len(t['cases']) - bad} of {len(t['cases'])} cases agree with botocore {botocore.__version__}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
