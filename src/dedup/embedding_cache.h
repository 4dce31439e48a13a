// On-disk cache of a dedup job's embeddings, so a rerun with another threshold (or keep
// policy, or output) does not embed again.
//
// The key is a text naming everything the vectors depend on: the model (its directory's real
// path and the name, size and mtime of every file in it), the input file (real path, size,
// mtime), the text and id fields, the dimension, the instruction and the token limit. The
// file name carries a 64-bit hash of the key; the file stores the whole key and is used only
// when it matches exactly.
//
// File: "QSEMBED1", u32 version (1), u32 key bytes, key, u64 n, u32 dim, u32 zero,
// u64 checksum of the data, then n * dim float32 (little-endian, row-major). It is written
// to a temporary name in the same directory, flushed to disk, then renamed into place: a
// reader sees the old file, no file or the complete new one, never a partial one.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace qsearch {

struct EmbeddingCacheKeyInputs {
  std::string model_dir;
  std::string input_path;
  std::string text_field;
  std::string id_field;
  int dim = 0;
  std::string instruction;
  int max_tokens = 0;
};

// kNotFound when the model directory or the input file is missing.
StatusOr<std::string> embedding_cache_key(const EmbeddingCacheKeyInputs& inputs);

// "<dir>/<input file name>.<16 hex digits of the key hash>.qemb"
std::string embedding_cache_file(const std::string& dir, const std::string& input_path,
                                 const std::string& key);

// $XDG_CACHE_HOME/qsearch/dedup, else $HOME/.cache/qsearch/dedup, else ./.qsearch-cache.
std::string default_embedding_cache_dir();

// kNotFound: no file. kCorruption: damaged, or made for another key, n or dim (the caller
// embeds again and overwrites it).
Status load_embedding_cache(const std::string& path, const std::string& key, int64_t n, int dim,
                            std::vector<float>* data);

// Creates the directory if needed. kCancelled (and no file) if cancel becomes true.
Status save_embedding_cache(const std::string& path, const std::string& key, int64_t n, int dim,
                            const float* data, const std::atomic<bool>* cancel = nullptr);

// The 64-bit checksum stored in the file (exposed for tests).
uint64_t embedding_checksum(const float* data, size_t count);

}  // namespace qsearch
