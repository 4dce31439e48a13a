// What this binary is: the release version (CMake's project version), the git commit it was
// built from (`git describe --always --dirty`, "unknown" outside a git checkout) and the CMake
// build type. Written at build time by cmake/build_info.cmake; shown by `qsearch --version`,
// GET /info and the qsearch_build_info metric.
#pragma once

namespace qsearch {

const char* version();
const char* build_commit();
const char* build_type();

}  // namespace qsearch
