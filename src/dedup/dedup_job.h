// The `qsearch dedup` batch job: JSONL in, near-duplicate clusters and a keep-list out.
//
//   1. scan the input (ids, text lengths; texts are re-read in chunks when embedded),
//   2. embeddings from the on-disk cache, or embedded with the Embedder (documents: no
//      instruction unless one is given) and then cached (temp file + rename),
//   3. every pair with cosine >= threshold (find_similar_pairs: GPU, else FAISS),
//   4. union-find clusters, one keeper each (first seen, or longest text),
//   5. clusters.jsonl and the keep-list, each written to a temp file and renamed at the end.
//
// Output, clusters.jsonl: one line per cluster, in order of the cluster's first member:
//   {"cluster": 0, "size": 3, "keep": "doc-1", "members": ["doc-1", "doc-7", "doc-9"],
//    "pairs": [["doc-1", "doc-7", 0.9734], ["doc-7", "doc-9", 0.9412]], "pairs_total": 2}
// ids keep their JSON type (string, or integer; the 1-based line number when a line has no
// id); members ascend in input order; "pairs" are the similar pairs found inside the cluster
// (first id earlier in the input; score = cosine), at most pairs_per_cluster of them, sorted
// by input order; "pairs_total" counts them all. Keep-list: one id per line (strings
// unquoted), every document that is in no cluster plus each cluster's keeper, in input order.
//
// Cancellation (Ctrl-C): `cancel` is polled between chunks and block pairs; the job then
// removes its temp files and returns kCancelled, leaving earlier outputs and caches as they
// were (a complete cache written before the interruption stays, and is valid).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "common/status.h"
#include "dedup/clusters.h"
#include "embed/engine/backend.h"

namespace qsearch {

struct DedupJobOptions {
  std::string model_dir;                 // required (Hugging Face layout)
  std::string input_path;                // required: JSONL
  std::string text_field = "text";       // the text to embed (a string field)
  std::string id_field = "id";           // the id; missing on a line: the line number
  float threshold = 0.92f;               // cosine at or above which two documents are dups
  int dim = 0;                           // MRL dimension (0: the model's hidden size)
  std::string instruction;               // instruction prefix (none for documents)
  KeepPolicy keep = KeepPolicy::kFirst;  // keeper of each cluster
  std::string device = "auto";           // auto, cpu, cuda, cuda:0,1 (embedding and join)
  std::string output_path;               // required: clusters.jsonl
  std::string keep_list_path;            // "": output_path without .jsonl + ".keep.txt"
  std::string cache_dir;                 // "": default_embedding_cache_dir()
  bool use_cache = true;                 // false: neither read nor write the cache
  int max_tokens = 0;                    // truncation per text (0: 8192)
  int64_t max_batch_tokens = 0;          // engine token budget (0: engine default)
  EngineDType dtype = EngineDType::kBF16;  // CUDA engine GEMM numerics (part of the cache key)
  int threads = 0;                       // CPU threads (0: all cores)
  int64_t max_pairs = 200'000'000;       // stop when more similar pairs than this
  int pairs_per_cluster = 100;           // pairs listed per cluster line (-1: all)
  int64_t embed_chunk_docs = 0;          // docs per Embedder::embed call (0: 2048 x replicas)
  bool progress = true;                  // progress lines on stderr
  const std::atomic<bool>* cancel = nullptr;
};

struct DedupJobResult {
  int64_t documents = 0;
  int64_t clusters = 0;
  int64_t clustered_documents = 0;  // documents in some cluster
  int64_t dropped = 0;              // clustered documents that are not keepers
  int64_t kept = 0;                 // lines of the keep-list
  int64_t pairs = 0;                // similar pairs found
  int64_t truncated_documents = 0;  // texts cut to max_tokens
  bool cache_hit = false;           // embeddings came from the cache (nothing embedded)
  std::string cache_path;
  std::string keep_list_path;
  std::string join_device;
  double embed_seconds = 0;
  double join_seconds = 0;
};

StatusOr<DedupJobResult> run_dedup_job(const DedupJobOptions& options);

// "clusters.jsonl" -> "clusters.keep.txt"; "out" -> "out.keep.txt".
std::string default_keep_list_path(const std::string& output_path);

}  // namespace qsearch
