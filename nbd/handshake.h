// Handshake: the fixed-newstyle negotiation of one connection, from the
// server's greeting to the first byte of the transmission phase.
//
// State machine (Handshake::run drives it; each arrow names the function that
// performs the transition):
//
//   GREETING --send_greeting: NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE|NO_ZEROES-->
//   CLIENT_FLAGS --read_client_flags: unknown flag bit, EOF---------------> CLOSED
//                --read_client_flags: known flags--------------------------> OPTIONS
//   OPTIONS --read_option: EOF, bad IHAVEOPT magic-----------------------> CLOSED
//           --tls=require, no TLS yet: EXPORT_NAME-------------------------> CLOSED
//           --tls=require, no TLS yet: any option but STARTTLS/ABORT
//             (ERR_TLS_REQD sent)------------------------------------------> OPTIONS
//           --starttls: ACK sent, TLS handshake ok (state reset)----------> OPTIONS (in TLS)
//           --starttls: ACK sent, TLS handshake failed--------------------> CLOSED
//           --starttls: tls=off (ERR_POLICY), in TLS already or with data
//             (ERR_INVALID)------------------------------------------------> OPTIONS
//           --read_option: length > kMaxOptionBytes (ERR_TOO_BIG sent)---> CLOSED
//           --export_name: export opened (size+flags sent)----------------> TRANSMISSION
//           --export_name: unknown export (no way to answer an error)-----> CLOSED
//           --info_or_go(GO): export opened (INFO replies + ACK)----------> TRANSMISSION
//           --ABORT (ACK sent)--------------------------------------------> CLOSED
//           --any other option: exactly one final reply-------------------> OPTIONS
//
// Invariants:
//   1. Every option but EXPORT_NAME and ABORT-after-hangup gets exactly one
//      final reply (ACK or NBD_REP_ERR_*), so the client never waits forever.
//   2. No option payload above kMaxOptionBytes is ever allocated.
//   3. TRANSMISSION is entered only with an open device, and the flags the
//      session records are the ones sent to the client.
//   4. Malformed payloads are answered with NBD_REP_ERR_INVALID and the
//      negotiation continues; only a broken framing (magic, length, EOF)
//      closes the connection.
//   5. Under tls=require no export is opened, listed or described before
//      STARTTLS succeeded (handle_option checks before dispatching).
//   6. After STARTTLS every byte, both ways, goes through the TLS session,
//      and nothing negotiated in the clear (structured replies, metadata
//      contexts) carries over: the client negotiates it again.
//
// Ownership: borrows the connection's transport slot (STARTTLS replaces the
// plain transport in it with a TlsTransport), the TlsServer and the
// ExportProvider for the call.
// Thread-safety: one Handshake per connection thread.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "nbd/export_provider.h"
#include "nbd/session.h"
#include "nbd/tls.h"
#include "nbd/transport.h"

namespace portalbd::nbd {

// Largest option payload we buffer. Real options are a name plus a few
// fields; 64 KiB is ample and keeps a hostile length from costing memory.
inline constexpr uint32_t kMaxOptionBytes = 64 * 1024;

class Handshake {
 public:
  // `transport` holds the plain socket transport of socket `fd`; `tls` is
  // null when TLS is off. A TLS handshake gets `timeout_ms` in all.
  Handshake(std::unique_ptr<Transport>& transport, int fd, const TlsServer* tls, uint32_t timeout_ms,
            ExportProvider& exports, std::string peer, uint32_t max_request_bytes)
      : transport_(transport),
        fd_(fd),
        tls_(tls),
        timeout_ms_(timeout_ms),
        exports_(exports),
        peer_(std::move(peer)),
        max_request_bytes_(max_request_bytes) {}

  // Runs the negotiation. A session when the client entered transmission;
  // nullopt when the connection must close (the reason is logged).
  std::optional<Session> run();

 private:
  enum class Next { kContinue, kTransmission, kClose };

  bool send_greeting();
  bool read_client_flags();
  Next handle_option(uint32_t option, std::span<const std::byte> payload);
  Next export_name(std::span<const std::byte> payload);
  Next info_or_go(uint32_t option, std::span<const std::byte> payload);
  Next list(uint32_t option, std::span<const std::byte> payload);
  Next structured_reply(uint32_t option, std::span<const std::byte> payload);
  Next meta_context(uint32_t option, std::span<const std::byte> payload);
  Next starttls(uint32_t option, std::span<const std::byte> payload);

  // Resolves "" to the default export and opens it.
  Result<std::shared_ptr<BlockDevice>> open(const std::string& requested, std::string* resolved);
  Session make_session(std::string name, std::shared_ptr<BlockDevice> device) const;

  bool reply(uint32_t option, uint32_t type, std::span<const std::byte> payload = {});
  // An error reply whose payload is a message for the human at the client.
  Next error(uint32_t option, uint32_t type, const std::string& message);

  std::unique_ptr<Transport>& transport_;
  const int fd_;
  const TlsServer* const tls_;
  const uint32_t timeout_ms_;
  ExportProvider& exports_;
  const std::string peer_;
  const uint32_t max_request_bytes_;

  bool no_zeroes_ = false;
  std::string tls_identity_;  // non-empty once STARTTLS succeeded
  bool structured_replies_ = false;
  // SET_META_CONTEXT selects contexts for one export; a GO for another
  // export drops the selection.
  bool base_allocation_ = false;
  std::string meta_export_;
  std::optional<Session> session_;
};

}  // namespace portalbd::nbd
