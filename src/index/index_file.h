// Index files: <data_dir>/indexes/<collection id>.faiss holds one serialised VectorIndex with
// the change-log sequence it reflects, so open() can load it and replay only newer changes.
//
// Layout (little-endian): magic "QSIDXF01" | u64 collection id | u64 sequence |
// u64 payload bytes | u64 checksum of the payload | payload (VectorIndex::serialize()).
// Writes go to "<path>.tmp", are fsync'd, renamed over <path> and the directory fsync'd, so a
// crash leaves either the old file or the new one, never a torn file under the final name.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace qsearch {

struct IndexFileHeader {
  uint64_t collection_id = 0;
  uint64_t sequence = 0;  // last change-log sequence applied to the saved index
};

// Atomically replaces `path` with header + payload.
Status write_index_file(const std::string& path, const IndexFileHeader& header,
                        std::string_view payload);
// kNotFound when missing; kCorruption when the magic, size or checksum do not match.
Status read_index_file(const std::string& path, IndexFileHeader* header, std::string* payload);

// 64-bit checksum used by index files (word-at-a-time multiply-xor; detects damage, not attacks).
uint64_t index_checksum(std::string_view bytes);

}  // namespace qsearch
