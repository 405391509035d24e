// Tests for the CSI Identity service (identity_service.h): what a node-only
// and a controller process announce.
#include "csi/identity_service.h"

#include <doctest/doctest.h>

#include "csi/capabilities.h"

namespace portalbd::csi {
namespace {

using namespace ::csi::v1;

TEST_CASE("csi Identity: the driver's name, the controller service only where it runs, offline expansion") {
  for (bool controller : {true, false}) {
    CAPTURE(controller);
    IdentityService identity(controller);
    GetPluginInfoRequest info_req;
    GetPluginInfoResponse info;
    REQUIRE(identity.GetPluginInfo(nullptr, &info_req, &info).ok());
    CHECK(info.name() == kDriverName);
    CHECK_FALSE(info.vendor_version().empty());

    GetPluginCapabilitiesRequest caps_req;
    GetPluginCapabilitiesResponse caps;
    REQUIRE(identity.GetPluginCapabilities(nullptr, &caps_req, &caps).ok());
    bool controller_service = false, offline = false, online = false;
    for (const auto& c : caps.capabilities()) {
      controller_service |= c.service().type() == PluginCapability::Service::CONTROLLER_SERVICE;
      offline |= c.volume_expansion().type() == PluginCapability::VolumeExpansion::OFFLINE;
      online |= c.volume_expansion().type() == PluginCapability::VolumeExpansion::ONLINE;
    }
    CHECK(controller_service == controller);
    CHECK(offline);
    CHECK_FALSE(online);  // a staged volume's daemon is its only writer: no growing under it

    ProbeRequest probe_req;
    ProbeResponse probe;
    REQUIRE(identity.Probe(nullptr, &probe_req, &probe).ok());
    CHECK(probe.ready().value());
  }
}

}  // namespace
}  // namespace portalbd::csi
