// Near-duplicate documents of a collection (POST /collections/{name}/duplicates): every pair
// of stored embeddings whose cosine is at or above a threshold (src/dedup's exact similarity
// join: GPU when present, else FAISS on the CPU), grouped into clusters by union-find.
//
// Works on the stored embeddings, so nothing is re-embedded; for ip and l2 collections the
// score is still the cosine of the stored vectors; a chunked document counts as the normalised
// mean of its chunk vectors. Reentrant: each call scans and joins on
// its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "collection/collections.h"

namespace qsearch {

struct DuplicatesRequest {
  float threshold = 0.95f;  // (0, 1]: pairs with cosine >= threshold are duplicates
  int64_t limit = 100;      // clusters returned, 1..10000 (largest first)
  int64_t cursor = 0;       // clusters skipped first (a page's next_cursor), >= 0
  // Most similar pairs the join may collect (24 bytes each, held twice while clustering);
  // past it the request is refused (kUnprocessable: raise the threshold).
  int64_t max_pairs = 2'000'000;
  std::string device = "auto";  // as SimilarityJoinOptions::device ("cpu" for a CPU server)
  Filter filter;                // only documents matching it are compared (default: all)
};

struct DuplicateGroup {
  std::vector<std::string> ids;  // at least 2, in id order; ids[0] is the keeper
  float max_score = 0;           // highest and lowest cosine of the pairs found inside
  float min_score = 0;
};

struct DuplicatesResult {
  std::vector<DuplicateGroup> clusters;  // at most limit; by size, then first id
  int64_t total_clusters = 0;            // before the limit
  int64_t next_cursor = -1;              // cursor of the next page; -1: this was the last
  int64_t duplicate_documents = 0;       // documents in clusters, minus one keeper each
  int64_t documents = 0;                 // documents compared
  int64_t pairs = 0;                     // pairs at or above the threshold
  std::string device;                    // where the join ran
};

// kUnprocessable for a threshold outside (0, 1], a limit outside 1..10000, a negative cursor
// or more than max_pairs pairs; kNotFound for an unknown collection; the join's errors
// otherwise. Pages (cursor, limit) cut one deterministic order: largest cluster first, ties
// by first id; each page runs the join again.
StatusOr<DuplicatesResult> find_duplicates(CollectionStore& store, const std::string& collection,
                                           const DuplicatesRequest& request);

}  // namespace qsearch
