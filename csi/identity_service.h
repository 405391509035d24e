// The CSI Identity service: the driver's name and version, what it offers
// (the controller service, offline volume expansion), and Probe.
// Thread-safety: stateless; gRPC calls it from many threads.
#pragma once

#include "csi.grpc.pb.h"

namespace portalbd::csi {

class IdentityService final : public ::csi::v1::Identity::Service {
 public:
  explicit IdentityService(bool controller) : controller_(controller) {}

  grpc::Status GetPluginInfo(grpc::ServerContext*, const ::csi::v1::GetPluginInfoRequest*,
                             ::csi::v1::GetPluginInfoResponse* out) override;
  grpc::Status GetPluginCapabilities(grpc::ServerContext*, const ::csi::v1::GetPluginCapabilitiesRequest*,
                                     ::csi::v1::GetPluginCapabilitiesResponse* out) override;
  grpc::Status Probe(grpc::ServerContext*, const ::csi::v1::ProbeRequest*, ::csi::v1::ProbeResponse* out) override;

 private:
  const bool controller_;  // this process serves the Controller service
};

}  // namespace portalbd::csi
