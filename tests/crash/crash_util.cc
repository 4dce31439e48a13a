// The end-to-end server harness of tests/api, compiled into test_crash too rather than copied
// (see api/server_util.h).
#include "api/server_util.cc"  // NOLINT(bugprone-suspicious-include)
