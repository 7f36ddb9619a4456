// The downstream service's IDL, as a real service's looks: it includes
// baseplate.thrift (bundled with baseplate), a shared IDL from another
// directory (idl/vendor, reached through an include directory), and one
// of its own (relative), and extends a service that extends
// baseplate.BaseplateServiceV2.
include "baseplate.thrift"
include "example.thrift"
include "types/identity.thrift"

namespace rs downstream

service Downstream extends example.Example {
  identity.Identity whoami(1: string name) throws (1: baseplate.Error err),
}
