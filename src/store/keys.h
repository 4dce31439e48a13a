// RocksDB key layout of qsearch: one prefix byte, then big-endian fixed-width ids, so byte order
// equals numeric order and a collection's keys of one kind are one contiguous range (which
// DeleteRange removes in one step when the collection is deleted).
//
//   0x01 meta      | name bytes                         -> value (format version, model, counters)
//   0x02 name      | collection name                    -> collection id (u64 BE)
//   0x03 spec      | cid u64                            -> CollectionSpec JSON
//   0x04 counter   | cid u64 | kind u8                  -> i64 BE (next label, documents, log seq)
//   0x05 document  | cid u64 | doc id bytes             -> document record (record.h)
//   0x06 label     | cid u64 | label i64 (>= 0)        -> doc id bytes (reverse map for search hits)
//   0x07 changelog | cid u64 | seq u64                  -> change record: (op, label)
//   0x08 metaindex | cid u64 | path | type | value | label -> label count (collection/metadata_index.h)
//   0x09 reembed   | cid u64                            -> the re-embed job's record (JSON: target
//                                                          model, cursor, counts; service/reembed.h)
//
// The change log lets a saved index file catch up: entries newer than the sequence the file
// reflects are replayed on open(); entries up to a saved sequence are trimmed after the save.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace qsearch::store {

enum class KeyPrefix : uint8_t {
  kMeta = 0x01,
  kName = 0x02,
  kSpec = 0x03,
  kCounter = 0x04,
  kDocument = 0x05,
  kLabel = 0x06,
  kChangeLog = 0x07,
  kMetaIndex = 0x08,
  kReembed = 0x09,
};

// Per-collection counters (prefix kCounter).
enum class CounterKind : uint8_t {
  kNextLabel = 1,   // next FAISS label to hand out; labels are never reused
  kDocuments = 2,   // live documents
  kLogSeq = 3,      // last change-log sequence handed out (0: none yet)
  kVectors = 4,     // live index vectors (one per document, one per chunk of a chunked one);
                    // absent in stores written before chunking: then equal to kDocuments
  kMetaIndex = 5,   // 1 once the metadata index holds every document; absent (stores written
                    // before it, or a rebuild cut short): rebuilt at open
};

// Big-endian fixed-width encodings (exposed for tests and the record codec).
void put_u64_be(std::string* out, uint64_t v);
uint64_t get_u64_be(std::string_view in);  // in.size() >= 8
void put_i64_be(std::string* out, int64_t v);  // v >= 0 keeps numeric order
int64_t get_i64_be(std::string_view in);

std::string meta_key(std::string_view name);
std::string name_key(std::string_view collection_name);
std::string spec_key(uint64_t cid);
std::string counter_key(uint64_t cid, CounterKind kind);
std::string document_key(uint64_t cid, std::string_view doc_id);
std::string label_key(uint64_t cid, int64_t label);
std::string changelog_key(uint64_t cid, uint64_t seq);
std::string reembed_key(uint64_t cid);

// [begin, end) covering every key of `prefix` for collection `cid` (for iteration and DeleteRange).
std::string collection_range_begin(KeyPrefix prefix, uint64_t cid);
std::string collection_range_end(KeyPrefix prefix, uint64_t cid);
// [begin, end) covering every key of `prefix` (all collections).
std::string prefix_begin(KeyPrefix prefix);
std::string prefix_end(KeyPrefix prefix);

// Parsers for keys read back while iterating; return false on a key of another shape.
bool parse_spec_key(std::string_view key, uint64_t* cid);
bool parse_document_key(std::string_view key, uint64_t* cid, std::string* doc_id);
bool parse_changelog_key(std::string_view key, uint64_t* cid, uint64_t* seq);

}  // namespace qsearch::store
