// libFuzzer target: the index checkpoint codec (src/format/checkpoint_codec.h).
// A checkpoint object comes back from object storage, which may hand us
// anything (bit rot, a truncated upload, another program's object): decoding
// must answer kCorruption or the index file's bytes, never crash, over-read
// or allocate without bound (DESIGN invariant 7).
//
// Each input is decoded as a stored object; then encoded as an index file,
// which must decode back to exactly the input, checksummed.
// Built by `make fuzz` with clang -fsanitize=fuzzer,address,undefined.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

#include "src/format/checkpoint_codec.h"

using namespace portalbd;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);

  auto decoded = decode_checkpoint(in);
  if (decoded.ok() && decoded->index_file.size() > (size_t{1} << 31)) __builtin_trap();  // unbounded output

  auto stored = encode_checkpoint(in);
  if (!stored.ok()) __builtin_trap();
  auto back = decode_checkpoint(*stored);
  if (!back.ok() || !back->checksummed ||
      !std::equal(back->index_file.begin(), back->index_file.end(), in.begin(), in.end())) {
    __builtin_trap();
  }
  return 0;
}
