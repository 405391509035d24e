#!/usr/bin/env bash
# test_csi_controller.sh on s3:// storage (s3rver, which ignores conditional
# PUTs: the writer lease falls back to read-then-write): the registry under
# s3://bucket/csi/_csi/, volumes under s3://bucket/csi/<id>, the mailbox, and
# daemons started by the test on the same store.
CSI_STORE=s3
source "$(dirname "$0")/test_csi_controller.sh"
