// tests/lexical uses the CollectionStore helpers and the server harness.
#include "api/server_util.cc"               // NOLINT(bugprone-suspicious-include)
#include "collections/collections_util.cc"  // NOLINT(bugprone-suspicious-include)
