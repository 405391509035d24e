#include "csi/identity_service.h"

#include "csi/capabilities.h"
#include "src/config/version.h"

namespace portalbd::csi {

using namespace ::csi::v1;

grpc::Status IdentityService::GetPluginInfo(grpc::ServerContext*, const GetPluginInfoRequest*,
                                            GetPluginInfoResponse* out) {
  out->set_name(kDriverName);
  out->set_vendor_version(kVersion);
  return grpc::Status::OK;
}

grpc::Status IdentityService::GetPluginCapabilities(grpc::ServerContext*, const GetPluginCapabilitiesRequest*,
                                                    GetPluginCapabilitiesResponse* out) {
  if (controller_) {
    out->add_capabilities()->mutable_service()->set_type(PluginCapability::Service::CONTROLLER_SERVICE);
  }
  // Growing goes through the engine in the controller, which needs the
  // volume detached (its daemon is the only writer while it is staged).
  out->add_capabilities()->mutable_volume_expansion()->set_type(PluginCapability::VolumeExpansion::OFFLINE);
  return grpc::Status::OK;
}

grpc::Status IdentityService::Probe(grpc::ServerContext*, const ProbeRequest*, ProbeResponse* out) {
  out->mutable_ready()->set_value(true);
  return grpc::Status::OK;
}

}  // namespace portalbd::csi
