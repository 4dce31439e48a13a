// The end-to-end harness of tests/api (server subprocess on loopback, test model, CPU engine),
// compiled into test_chunking too rather than copied.
#include "api/server_util.cc"  // NOLINT(bugprone-suspicious-include)
