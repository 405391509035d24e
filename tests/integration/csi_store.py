#!/usr/bin/env python3
"""Looks at CSI test storage the same way on file:// and s3:// (s3rver).

  csi_store.py count URL_PREFIX   prints how many objects start with the prefix
  csi_store.py exists URL         exit 0 when the object exists, 1 when not
  csi_store.py cat URL            prints the object

s3:// goes through botocore with AWS_ENDPOINT_URL and the AWS_* keys of the
environment (tests/integration/s3_lib.sh sets them for s3rver).
"""
import os
import sys


def s3_client():
    import botocore.session
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ.get("AWS_REGION", "us-east-1"))


def count(prefix_url):
    if prefix_url.startswith("file://"):
        root = prefix_url[len("file://"):]
        if os.path.isfile(root):
            return 1
        return sum(len(files) for _, _, files in os.walk(root))
    bucket, _, key = prefix_url[len("s3://"):].partition("/")
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
    return sum(len(p.get("Contents", [])) for p in pages)


def exists(url):
    if url.startswith("file://"):
        return os.path.exists(url[len("file://"):])
    bucket, _, key = url[len("s3://"):].partition("/")
    c = s3_client()
    try:
        c.head_object(Bucket=bucket, Key=key)
        return True
    except c.exceptions.ClientError:
        return False


def cat(url):
    if url.startswith("file://"):
        with open(url[len("file://"):], "rb") as f:
            return f.read()
    bucket, _, key = url[len("s3://"):].partition("/")
    return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()


if __name__ == "__main__":
    if sys.argv[1] == "count":
        print(count(sys.argv[2]))
    elif sys.argv[1] == "cat":
        sys.stdout.buffer.write(cat(sys.argv[2]))
    else:
        sys.exit(0 if exists(sys.argv[2]) else 1)
