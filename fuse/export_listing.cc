#include "fuse/export_listing.h"

#include <libnbd.h>

#include <cerrno>

namespace portalbd::fuse {
namespace {

struct ListState {
  std::vector<ExportEntry> exports;
  bool done = false;
  int error = 0;
  bool out_of_memory = false;
};

// libnbd callbacks: C boundary, so nothing may throw through them.
int on_export(void* user_data, const char* name, const char* description) {
  auto* s = static_cast<ListState*>(user_data);
  try {
    s->exports.push_back({name, description != nullptr ? description : ""});
  } catch (...) {
    s->out_of_memory = true;
  }
  return 0;
}

int on_complete(void* user_data, int* error) {
  auto* s = static_cast<ListState*>(user_data);
  s->error = *error;
  s->done = true;
  return 1;
}

}  // namespace

Result<ExportListing> query_exports(const NbdEndpoint& endpoint, const std::string& live_export, Deadline deadline) {
  NbdHandlePtr h(nbd_create());
  if (!h) return last_nbd_error("nbd_create");
  nbd_handle* raw = h.get();
  const std::string where = "NBD server at " + endpoint.describe();
  if (nbd_set_opt_mode(raw, true) == -1) return last_nbd_error(where);
  PBD_RETURN_IF_ERROR(apply_tls(raw, endpoint));
  const int rc = endpoint.unix_path.empty() ? nbd_aio_connect_tcp(raw, endpoint.host.c_str(), endpoint.port.c_str())
                                            : nbd_aio_connect_unix(raw, endpoint.unix_path.c_str());
  if (rc == -1) return last_nbd_error("cannot reach " + where);
  Status st =
      poll_until(raw, deadline, ("cannot reach " + where).c_str(), [raw] { return nbd_aio_is_negotiating(raw) == 1; });
  if (!st.ok()) return st;

  ListState list;
  if (nbd_aio_opt_list(raw, nbd_list_callback{on_export, &list, nullptr},
                       nbd_completion_callback{on_complete, &list, nullptr}) == -1) {
    return last_nbd_error(where + ": NBD_OPT_LIST");
  }
  PBD_RETURN_IF_ERROR(poll_until(raw, deadline, (where + ": NBD_OPT_LIST").c_str(), [&list] { return list.done; }));
  if (list.out_of_memory) return Status::IOError(where + ": out of memory listing exports");
  if (list.error != 0) {
    // libnbd reports NBD_REP_ERR_TLS_REQD as ENOTSUP.
    const bool tls_hint = !endpoint.tls.enabled && list.error == ENOTSUP;
    return Status::IOError(where + ": NBD_OPT_LIST refused" +
                           (tls_hint ? std::string(" (the server may require TLS: --tls-psk FILE or "
                                                   "--tls-certificates DIR)")
                                     : std::string()));
  }

  ExportListing out;
  out.exports = std::move(list.exports);
  out.live_export = live_export;
  if (out.live_export.empty()) {
    for (const auto& e : out.exports) {
      if (e.name.find('@') == std::string::npos) {
        out.live_export = e.name;
        break;
      }
    }
  }
  if (out.live_export.empty()) return Status::NotFound(where + " lists no volume export");

  ListState info;
  if (nbd_set_export_name(raw, out.live_export.c_str()) == -1 ||
      nbd_aio_opt_info(raw, nbd_completion_callback{on_complete, &info, nullptr}) == -1) {
    return last_nbd_error(where + ": NBD_OPT_INFO");
  }
  PBD_RETURN_IF_ERROR(poll_until(raw, deadline, (where + ": NBD_OPT_INFO").c_str(), [&info] { return info.done; }));
  if (info.error != 0) return Status::NotFound(where + " has no export '" + out.live_export + "'");
  const int64_t size = nbd_get_size(raw);
  if (size < 0) return last_nbd_error(where + ": size of '" + out.live_export + "'");
  out.size_bytes = static_cast<uint64_t>(size);

  // A polite goodbye; the answer is not needed, so do not wait long for it.
  if (nbd_aio_opt_abort(raw) == 0) {
    (void)poll_until(raw, std::min(deadline, Clock::now() + std::chrono::milliseconds(200)), "opt_abort",
                     [raw] { return nbd_aio_is_closed(raw) == 1 || nbd_aio_is_dead(raw) == 1; });
  }
  return out;
}

}  // namespace portalbd::fuse
