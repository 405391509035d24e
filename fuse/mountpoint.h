// Mountpoint checks for the FUSE view: before mounting, turn the usual
// mistakes (missing directory, already mounted, no permission) into one clear
// line instead of libfuse's or fusermount3's messages; before unmounting,
// make sure the path really is a portalbd view.
//
// Thread-safety: pure functions, plus reads of /proc/self/mountinfo.
#pragma once

#include <optional>
#include <string>

#include "src/util/status.h"

namespace portalbd::fuse {

// The file system type mounted exactly at `path` according to `mountinfo`
// (the text of /proc/self/mountinfo), e.g. "fuse.portalbd"; nullopt if none.
std::optional<std::string> fstype_at(const std::string& mountinfo, const std::string& path);

// Resolves `path` and checks it can take the view. Returns the absolute path.
// Errors: NotFound (missing), InvalidArgument (not a directory),
// Busy (already a mount point), Unavailable (no permission to mount there).
Result<std::string> check_mountpoint(const std::string& path);

// Unmounts the view at `path` (umount2 as root, fusermount3 -u otherwise).
// Errors: NotFound (no view mounted there), Busy (files still open).
Status unmount_view(const std::string& path);

// The text of /proc/self/mountinfo ("" if unreadable).
std::string read_mountinfo();

}  // namespace portalbd::fuse
