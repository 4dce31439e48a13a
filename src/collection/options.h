// Collection settings, parsed once into typed structs (CollectionSpec::from_json) and validated
// there: the rules of the collection layer (names, ids, dimension and max_tokens bounds, index
// parameters, the "chunking" and "dedup" options). Rules that depend on the model or the server
// (dimension <= hidden size, max_tokens <= --max-tokens-per-text) belong to the service.
//
// Error codes follow the API: a wrong JSON type, an unknown field or a malformed name is
// kInvalidArgument (400); a well-formed but out-of-range value is kUnprocessable (422).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace qsearch {

enum class Metric { kCosine, kInnerProduct, kL2 };
const char* metric_name(Metric m);                      // "cosine", "ip", "l2"
StatusOr<Metric> parse_metric(const std::string& name);  // kUnprocessable on other names

// Document ids: 1..512 bytes (any bytes; the HTTP layer also requires UTF-8).
inline constexpr size_t kMaxIdBytes = 512;
// kInvalidArgument for an empty id, kUnprocessable for one over kMaxIdBytes.
Status check_document_id(const std::string& id);
// Collection names: [A-Za-z0-9_.-]{1,128}.
bool valid_collection_name(const std::string& name);

// Largest vector dimension a collection may declare (the model's own limit is checked by the
// service); keeps a huge JSON number from wrapping into a small int.
inline constexpr int kMaxDimension = 65536;
// Smallest per-collection max_tokens: below this a document is little more than its EOS token.
inline constexpr int kMinMaxTokens = 16;
inline constexpr int kMaxMaxTokens = 1 << 20;

// Index type and parameters, as in the API's "index" object. Defaults documented here.
struct IndexSpec {
  std::string type = "flat";      // "flat" (exact), "hnsw", "ivf", "gpu" (exact, GPU-resident)
  int hnsw_m = 32;                // HNSW graph degree
  int hnsw_ef_construction = 200;
  int hnsw_ef_search = 128;
  int ivf_nlist = 0;              // 0: chosen at training time, about 4*sqrt(n)
  int ivf_nprobe = 16;
  int ivf_train_min = 0;          // vectors needed before training (0: 39*nlist); flat until then
  std::string gpu_precision = "bf16";  // gpu: rows as "bf16" or "int8" (+ exact rescoring)
  int gpu_rescore = 64;           // gpu int8: rows a search rescores exactly, max(k, this); 1..4096
  // Compressed vectors in the index (issue 14): "none" (fp32, the default), for hnsw "sq8"
  // (8-bit scalar quantizer, 1 byte per component) or "fp16" (2 bytes), for ivf "pq" (product
  // quantizer: pq_m sub-vectors of pq_nbits bits each).
  std::string quantizer = "none";
  int pq_m = 0;                   // ivf + pq: sub-quantizers, must divide the dimension (0: default_pq_m, d/4)
  int pq_nbits = 8;               // ivf + pq: bits per sub-quantizer code, 4..12
  // Exact rescoring: the search asks the index for max(k + offset, rescore) candidates and
  // scores them exactly with the stored embeddings (collection_search.cc). 0: off (the default
  // for quantizer "none"); a quantizer defaults to kDefaultRescore.
  int rescore = 0;
  static constexpr int kDefaultRescore = 100;
  static constexpr int kMaxRescore = 10000;
  bool quantized() const { return quantizer != "none"; }
  // pq_m must divide the dimension: kUnprocessable (naming index.pq_m) when it does not.
  Status check_dimension(int dimension) const;
  // The pq_m used for a dimension when none was given: d/4 sub-vectors of 4 components (d/4
  // bytes per vector at 8 bits, 1/16 of fp32), or the largest divisor of d up to that. d/8
  // lost too much: recall@10 0.87 after rescoring 100 at 50k x 128 (clustered), d/4: 0.99.
  static int default_pq_m(int dimension);
  nlohmann::json to_json() const;
  // Keys: type; hnsw: m, ef_construction, ef_search, quantizer, rescore; ivf: nlist, nprobe,
  // train_min, quantizer, pq_m, pq_nbits, rescore; gpu: precision, rescore (int8 only: the
  // gpu index's own rescoring, gpu_rescore, not the collection's `rescore` above). Keys of the
  // quantizer appear in to_json() only when a quantizer is set (or rescore is), so specs
  // stored before them read back equal.
  static StatusOr<IndexSpec> from_json(const nlohmann::json& j);
};

// Option "chunking": long documents split into overlapping token windows (service/chunking.h).
struct ChunkingOptions {
  int max_tokens = 512;  // tokens per chunk, EOS included: 16..32768
  int overlap = 64;      // tokens shared by neighbouring chunks: 0..max_tokens/2
  nlohmann::json to_json() const;
  // {"max_tokens", "overlap"}, both optional integers.
  static StatusOr<ChunkingOptions> from_json(const nlohmann::json& j);
};

// Option "dedup": each new document's nearest stored neighbour (another id) is looked up by its
// embedding; at or above the threshold the write response names it ("duplicate_of"); "skip"
// does not store the document, "flag" stores it with metadata "_duplicate_of". Needs the cosine
// metric; not combinable with "chunking".
struct DedupOptions {
  double threshold = 0.98;  // (0, 1]
  bool skip = false;        // "action": "skip" (true) or "flag" (false, the default)
  nlohmann::json to_json() const;
  static StatusOr<DedupOptions> from_json(const nlohmann::json& j);
};

struct CollectionSpec {
  std::string name;               // [A-Za-z0-9_.-]{1,128}
  int dimension = 0;              // vectors stored; 0 in a request: the model's hidden size
  Metric metric = Metric::kCosine;
  IndexSpec index;
  std::string query_instruction = "Given a web search query, retrieve relevant passages that answer the query";
  int max_tokens = 8192;          // longer texts are truncated (and the response says so)
  std::string model;              // model identity the embeddings came from
  std::optional<ChunkingOptions> chunking;
  std::optional<DedupOptions> dedup;
  // Option "lexical": keep a BM25 index of the texts (lexical_index.h) for search modes
  // "lexical" and "hybrid". On by default; false saves its disk space and write time.
  bool lexical = true;

  bool chunked() const { return chunking.has_value(); }
  // The stored form (also the API's view): options travel as
  // "options": {"chunking", "dedup", "lexical"}.
  nlohmann::json to_json() const;
  nlohmann::json options_json() const;
  // Parses and validates. `stored`: a spec read back from the store, whose create-time limits
  // may have been looser when it was written (max_tokens >= 1 then), so only those are relaxed.
  static StatusOr<CollectionSpec> from_json(const nlohmann::json& j, bool stored = false);
};

}  // namespace qsearch
