// Volume::claim_previous_writers_seqs: the open of a volume whose lease this
// daemon took from another daemon (WriterLease L5).
//
// The previous holder may be alive, or dead with requests still in the
// network, and have segment PUTs in flight: checked against the lease before
// this daemon claimed it, they may land at any time after. Its FLUSHes
// covering them fail (the lease check after the PUT, U7), so their data was
// never acknowledged; what must not happen is that one lands under a
// sequence number this daemon uses, or among its history, where a rebuild
// from storage would read it. So after replay (which read what storage held
// after the claim) and before this daemon writes anything, it stores an
// empty segment under every number such a PUT may use and that holds no
// segment:
//
//   * The previous holder PUTs only within its upload window (U1): up to
//     kMaxUploadWindow numbers from its oldest uncommitted buffer u, and
//     everything below u is committed, so in storage. Above the newest
//     checkpoint (taken with nothing pending, so below u) and above the
//     newest segment stored less the window (a window PUT that landed is at
//     most W-1 past u), then, up to the newest number storage holds (roots
//     records take numbers too) plus twice the window: the window and a
//     margin for numbers that failed roots record or checkpoint PUTs left
//     unused below u.
//   * Where the store enforces conditional puts, each is created with
//     put_if_absent. A late PUT that landed first (after replay listed, so
//     after the claim: its writer's check after it fails, nothing of it was
//     acknowledged) is moved under quarantine/ and the number claimed; one
//     that lands after is refused and its writer fenced (store_segment).
//   * Where it does not (s3rver), the empty segments overwrite what landed
//     first, and a PUT landing later replaces one of them: that segment's
//     writes then show in a rebuild from storage, below every write of this
//     daemon's, though this daemon never served them. The residue of a store
//     without conditional puts; docs/design.md, "Fencing".
//
// The empty segments carry no predecessor (after_seq and prev_seq 0, like GC
// rewrites: outside the chain of write segments) and go into the index, so
// the sequence numbering passes them and GC deletes them as it deletes any segment nothing
// maps to.
#include <algorithm>
#include <set>

#include "src/engine/volume.h"
#include "src/log/log.h"
#include "src/util/clock.h"

namespace portalbd {
namespace {

// The sequence number in "<prefix><16 hex digits>..." keys; 0 for others.
uint64_t key_seq(const std::string& key, const std::string& prefix) {
  if (key.size() < prefix.size() + 16 || key.compare(0, prefix.size(), prefix) != 0) return 0;
  uint64_t v = 0;
  for (size_t i = prefix.size(); i < prefix.size() + 16; ++i) {
    const char c = key[i];
    const int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return 0;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  return v;
}

}  // namespace

Status Volume::claim_previous_writers_seqs() {
  if (!opts_.lease || !opts_.lease->replaced_claim() || opts_.ephemeral) return Status::OK();
  std::set<uint64_t> segments;
  uint64_t newest_segment = 0, newest_any = 0, newest_checkpoint = 0;
  for (const std::string prefix : {"segments/", "roots/", "checkpoints/"}) {
    std::vector<ObjectInfo> objects;
    PBD_RETURN_IF_ERROR(store_->list(prefix, &objects).With("list " + prefix));
    for (const auto& obj : objects) {
      const uint64_t seq = key_seq(obj.key, prefix);
      newest_any = std::max(newest_any, seq);
      if (prefix == "segments/" && seq != 0) segments.insert(seq);
      if (prefix == "checkpoints/") newest_checkpoint = std::max(newest_checkpoint, seq);
    }
  }
  if (!segments.empty()) newest_segment = *segments.rbegin();
  {
    MutexLock lock(&layers_.mu());
    newest_any = std::max(newest_any, pipeline_.next_seq_locked() - 1);
  }
  const uint64_t floor =
      std::max(newest_checkpoint, newest_segment > kMaxUploadWindow ? newest_segment - kMaxUploadWindow : 0);
  const uint64_t top = newest_any + 2 * kMaxUploadWindow;
  auto live = index_->live_layer();
  if (!live.ok()) return live.status();

  PBD_RETURN_IF_ERROR(pipeline_.confirm_writer("claim the previous writer's sequence numbers"));
  const bool conditional = store_->supports_conditional_put();
  uint64_t claimed = 0, quarantined = 0;
  for (uint64_t seq = floor + 1; seq <= top; ++seq) {
    if (segments.count(seq)) continue;
    SegmentBuilder builder(seq, *live, opts_.codec, now_unix_ms());
    builder.set_writes(0, pipeline_.writer());
    const std::vector<std::byte> object = builder.finish();
    const std::string key = segment_key(seq);
    Status st = conditional ? store_->put_if_absent(key, object) : store_->put(key, object);
    if (st.is(Status::Code::kAlreadyExists)) {
      PBD_RETURN_IF_ERROR(quarantine_object(key,
                                            "the previous writer's PUT landed after this daemon took over the "
                                            "volume; its writes were never acknowledged"));
      ++quarantined;
      st = store_->put_if_absent(key, object);
    }
    PBD_RETURN_IF_ERROR(st.With("claim " + key + " after taking over"));
    PBD_RETURN_IF_ERROR(index_->apply_segment(builder.footer(), object.size()).With("index " + key));
    ++claimed;
  }
  {
    MutexLock lock(&layers_.mu());
    if (pipeline_.next_seq_locked() <= top) pipeline_.take_seqs_locked(top + 1 - pipeline_.next_seq_locked());
  }
  // Still ours? A taker that came meanwhile claims on from here.
  PBD_RETURN_IF_ERROR(pipeline_.confirm_writer("claim the previous writer's sequence numbers"));
  log::get("engine")->info(
      "took over: claimed the sequence numbers the previous writer may still upload to first_seq={} last_seq={} "
      "claimed={} late_segments_quarantined={}",
      floor + 1, top, claimed, quarantined);
  return Status::OK();
}

}  // namespace portalbd
