// The metadata index: for every document, one RocksDB key per (path, scalar value), written in
// the same WriteBatch as the document itself, so it is exactly as durable and crash-consistent
// as the documents (a kill -9 leaves both or neither).
//
//   0x08 | cid u64 | path length u16 | path bytes | type u8 | value | label i64  ->  label count
//   u32
//
// path is the dotted path of the value (objects nest up to kMaxIndexedDepth levels); an array's
// scalar elements are each indexed under the array's path; every object and array also gets a
// presence entry (type kPresent) so $exists finds it. Values sort in their natural order inside
// a type: numbers as doubles in an order-preserving encoding, strings bytewise (escaped, and
// cut at kMaxIndexedString bytes with a marker), booleans, null.
//
// candidates() turns a filter into the set of documents (first label, label count) that may
// match: equality, $in, ranges and $exists true are key lookups or range scans; $and intersects,
// $or unites; $ne, $nin, $not, $exists false and anything on a path the index does not cover
// give "unknown" (the caller then scans or filters after the search). The set is a superset:
// callers always check the filter on the documents themselves, so the index never decides a
// match alone (integers beyond 2^53 and long strings may share keys).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <utility>
#include <vector>

#include "collection/filter.h"
#include "common/status.h"
#include "store/kv_store.h"

namespace qsearch {

inline constexpr int kMaxIndexedDepth = 8;
inline constexpr size_t kMaxIndexedPath = 512;
inline constexpr size_t kMaxIndexedString = 256;

// (first label, label count) of each candidate document, sorted by label, no duplicates.
using LabelRuns = std::vector<std::pair<int64_t, int64_t>>;

// Puts (or deletes) the index entries of one document's metadata into `batch`.
void put_metadata_entries(store::WriteBatch* batch, uint64_t cid, const nlohmann::json& metadata,
                          int64_t label, int64_t label_count);
void delete_metadata_entries(store::WriteBatch* batch, uint64_t cid, const nlohmann::json& metadata,
                             int64_t label);

// The entries (key + "=" + value) of one document, for consistency checks.
std::vector<std::string> metadata_entry_keys(uint64_t cid, const nlohmann::json& metadata,
                                             int64_t label, int64_t label_count);

// The candidate documents of `filter`, or nullopt when the index cannot narrow it down or more
// than max_documents would come out (then a scan is as cheap). label_hint: about how far the
// collection's labels reach (0: unknown); with a large one, the entries of one value are read
// in slices of the label range (at least slice_labels labels each; 0: the default, 65536) on
// the search pool (common/thread_pool.h), a 1% filter over 1M documents being 10k entries,
// some 3 ms on one thread. Any hint and slicing give the same result.
StatusOr<std::optional<LabelRuns>> metadata_candidates(const store::KvStore& kv, uint64_t cid,
                                                       const Filter& filter, size_t max_documents,
                                                       int64_t label_hint = 0,
                                                       int64_t slice_labels = 0);
// The default slice of metadata_candidates() (benchmarks sweep it); 0 restores 65536.
void set_metadata_slice_labels(int64_t labels);

// Every label of the runs, ascending.
std::vector<int64_t> expand_labels(const LabelRuns& runs);

}  // namespace qsearch
