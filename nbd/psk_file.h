// PSK files: the pre-shared keys a TLS-PSK client may use, in the format of
// GnuTLS's psktool, which nbdkit, qemu (tls-creds-psk) and libnbd read too:
// one key a line, "identity:hexkey" (the key in hexadecimal). Blank lines and
// lines starting with '#' are skipped.
//
// Ownership: values. Thread-safety: a PskTable is immutable once parsed.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "src/util/status.h"

namespace portalbd::nbd {

// Longest key we accept: OpenSSL's PSK_MAX_PSK_LEN.
inline constexpr size_t kMaxPskBytes = 512;

using PskTable = std::map<std::string, std::vector<unsigned char>>;  // identity -> key

// Parses the text of a PSK file. InvalidArgument names the line and what is
// wrong (never the key itself). An empty table is an error: no client could
// ever connect.
Result<PskTable> parse_psk_file(const std::string& text);
// Reads and parses `path`; errors name the file.
Result<PskTable> load_psk_file(const std::string& path);

}  // namespace portalbd::nbd
