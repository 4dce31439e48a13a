// Binary records stored as RocksDB values: documents and change-log entries.
//
// Document record, version 1 (all integers little-endian):
//   u8  version (= 1)
//   i64 label               FAISS label of the current embedding
//   i32 tokens, i32 truncated_tokens
//   u32 text bytes,     text (UTF-8)
//   u32 metadata bytes, metadata as compact JSON
//   u32 dimension,      dimension f32 (raw IEEE-754)
// Version 2 (a chunked document) is version 1 with the embedding holding one vector per chunk
// and, after it:
//   u32 chunks,  chunks x (i32 start, i32 end, i32 tokens)
// Its chunks own the labels label .. label+chunks-1. Documents without chunks are written as
// version 1, so stores written before chunking existed read unchanged.
// A reader rejects (kCorruption) unknown versions, short or overlong records, so a damaged
// value never turns into a wrong document.
//
// Change-log entry (value of a changelog key): u8 op (1 add, 2 remove), i64 label.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace qsearch::store {

inline constexpr uint8_t kDocumentRecordVersion = 1;
inline constexpr uint8_t kChunkedDocumentRecordVersion = 2;

struct ChunkRecord {
  int32_t start = 0;   // code points of the document's text
  int32_t end = 0;
  int32_t tokens = 0;
};

struct DocumentRecord {
  int64_t label = -1;          // the first (or only) label; chunk i has label + i
  int32_t tokens = 0;
  int32_t truncated_tokens = 0;
  std::string text;
  std::string metadata_json = "{}";
  std::vector<float> embedding;
  std::vector<ChunkRecord> chunks;  // decoded with every part set (they are small)
  // Labels this document owns: [label, label + label_count()).
  int64_t label_count() const { return chunks.empty() ? 1 : static_cast<int64_t>(chunks.size()); }
  bool owns(int64_t l) const { return l >= label && l < label + label_count(); }
};

// Which parts decode_document() fills; skipping the embedding avoids copying dimension floats.
enum DocumentParts : unsigned {
  kPartLabel = 0,          // the label and token counts are always decoded
  kPartText = 1u << 0,
  kPartMetadata = 1u << 1,
  kPartEmbedding = 1u << 2,
  kPartAll = kPartText | kPartMetadata | kPartEmbedding,
};

std::string encode_document(const DocumentRecord& record);
Status decode_document(std::string_view value, DocumentRecord* record, unsigned parts = kPartAll);

enum class ChangeOp : uint8_t { kAdd = 1, kRemove = 2 };

struct ChangeRecord {
  ChangeOp op = ChangeOp::kAdd;
  int64_t label = -1;
};

std::string encode_change(const ChangeRecord& change);
Status decode_change(std::string_view value, ChangeRecord* change);

}  // namespace qsearch::store
