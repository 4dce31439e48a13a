// The embedding stage of the dedup job: texts read back in chunks of consecutive documents,
// tokenized on a thread pool several chunks ahead, embedded chunk by chunk with
// Embedder::embed (which spreads each chunk's token-budget batches over all engine replicas),
// so the engines never wait for the tokenizer.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "dedup/corpus.h"
#include "embed/embedder.h"

namespace qsearch {

struct EmbedStageOptions {
  std::string instruction;    // "" for documents
  int dim = 0;                // output dimension (0: hidden size)
  int max_tokens = 0;         // truncation (0: the Embedder's default)
  int64_t chunk_docs = 2048;  // documents per Embedder::embed call
  int threads = 0;            // tokenizer threads (0: all cores)
  bool progress = true;       // progress line on stderr
  const std::atomic<bool>* cancel = nullptr;
};

struct EmbedStageReport {
  int64_t documents = 0;
  int64_t tokens = 0;               // tokens embedded (after truncation)
  int64_t truncated_documents = 0;  // documents cut to max_tokens
  double seconds = 0;
};

// Fills out with corpus.size() x dim floats (dim = options.dim or the hidden size).
Status embed_corpus(Embedder& embedder, const JsonlCorpus& corpus, const EmbedStageOptions& options,
                    std::vector<float>* out, EmbedStageReport* report);

}  // namespace qsearch
