#!/usr/bin/env python3
"""One CSI call from the command line, for shell tests.

Usage: csi_call.py STUB_DIR ADDRESS SERVICE METHOD [REQUEST_JSON]
  ADDRESS  unix:///path/csi.sock or 127.0.0.1:PORT
  SERVICE  Identity, Controller or Node
  REQUEST_JSON  the request message in protobuf's JSON mapping ({} when absent)
Prints the response as JSON and exits 0, or prints "CODE: details" and exits 3
when the call failed with a gRPC status.
"""
import json
import sys

sys.path.insert(0, sys.argv[1])
import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402
import csi_pb2  # noqa: E402
import csi_pb2_grpc  # noqa: E402

address, service, method = sys.argv[2], sys.argv[3], sys.argv[4]
request_json = sys.argv[5] if len(sys.argv) > 5 else "{}"
request_type = getattr(csi_pb2, method + "Request")
request = json_format.Parse(request_json, request_type())
stub = getattr(csi_pb2_grpc, service + "Stub")(grpc.insecure_channel(address))
try:
    response = getattr(stub, method)(request, timeout=600)
except grpc.RpcError as e:
    print(f"{e.code().name}: {e.details()}")
    sys.exit(3)
print(json.dumps(json_format.MessageToDict(response, preserving_proto_field_name=True)))
