// Search modes and their fusion: "dense" (the vector index), "lexical" (BM25 over the lexical
// index) and "hybrid" (both, fused), and the highlights of lexical matches.
//
// Fusion of two ranked lists of documents (each document once, best chunk):
// - "rrf": score = sum over the lists that hold the document of 1 / (k + rank), rank 1-based.
// - "weighted": score = alpha * dense' + (1 - alpha) * lexical', where each side's scores are
//   min-max normalised to [0, 1] over its candidates (1 for the best; all 1 when all are equal;
//   l2 distances are inverted so that smaller is better); a document absent from a side gets 0.
// Ties keep the dense order, then the lexical order.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "collection/collections.h"
#include "common/status.h"

namespace qsearch {

enum class SearchMode { kDense, kLexical, kHybrid };
const char* search_mode_name(SearchMode m);
StatusOr<SearchMode> parse_search_mode(const std::string& name);  // kUnprocessable on others

struct FusionOptions {
  enum class Type { kRrf, kWeighted };
  Type type = Type::kRrf;
  int rrf_k = 60;      // "k" of rrf: 1..10000
  double alpha = 0.5;  // weight of the dense side in "weighted": 0..1
  // {"type": "rrf", "k"} or {"type": "weighted", "alpha"}: kInvalidArgument for wrong JSON types,
  // kUnprocessable for unknown types, fields or values out of range.
  static StatusOr<FusionOptions> from_json(const nlohmann::json& j);
};

// Candidates each side of a hybrid search contributes: max(wanted, 100), at most 1000.
int hybrid_candidates(int wanted);

// dense: hits of the vector search (best first); lexical: hits of search_lexical (best first).
// dense_lower_is_better: the collection's metric is l2. Returns every document of either list by
// fused score (score = fused score, dense_score / lexical_score = each side's own score); a
// document in both lists keeps the lexical side's best chunk (the highlighted passage).
std::vector<SearchHit> fuse_hits(std::vector<SearchHit> dense, std::vector<SearchHit> lexical,
                                 const FusionOptions& fusion, bool dense_lower_is_better);

// Where the analysed `terms` occur in text[chunk] (the whole text when chunk_start < 0), as
// [start, end) code points of `text`, in order; at most kMaxHighlights.
inline constexpr size_t kMaxHighlights = 256;
std::vector<std::pair<int32_t, int32_t>> highlight_terms(std::string_view text,
                                                         const std::vector<std::string>& terms,
                                                         int32_t chunk_start, int32_t chunk_end);

}  // namespace qsearch
