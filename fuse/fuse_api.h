// The one place that picks the libfuse API version (3.12: the
// fuse_loop_config API, and lseek for SEEK_DATA/SEEK_HOLE). Include this
// instead of <fuse_lowlevel.h>.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
