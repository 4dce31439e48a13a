// The identity of a model directory: "<dir name>@<32 hex digits>", the XXH3-128 of the bytes of
// config.json and of every *.safetensors file (name, size and contents, in name order). Two
// models differ in identity when any weight byte differs, whatever their file names and sizes.
// A collection records the identity its vectors come from (CollectionSpec::model).
//
// The hash is streamed (4 MiB reads), so a 16 GB model costs one sequential read of its files
// (XXH3 runs at memory speed; the disk sets the pace).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace qsearch {

struct ModelIdentity {
  std::string name;       // the directory's name
  std::string identity;   // name + "@" + 32 hex digits (XXH3-128 over the contents)
  // The identity under the older formula (before the contents were hashed): FNV-1a 64 over
  // config.json and the weight files' names and sizes, 16 hex digits. Collections that store it
  // are upgraded at start (StoreOptions::legacy_model).
  std::string legacy_identity;
  int64_t bytes_hashed = 0;
  double seconds = 0;
};

// kIOError when a file cannot be read to its end.
StatusOr<ModelIdentity> compute_model_identity(const std::string& dir);

}  // namespace qsearch
