// The service: ties the embedder (tokenize on a CPU pool, embed through the scheduler) to the
// collection store. The HTTP layer (src/api) turns JSON into the structs below and calls here;
// nothing in this file knows about HTTP.
//
// Queries (search, /v1/embeddings) are embedded at Priority::kQuery, documents at kBulk.
// Query text gets the collection's query instruction (or the request's override); documents
// never get an instruction.
//
// Thread safety: every method may be called from many threads at once.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "common/thread_pool.h"
#include "embed/embedder.h"
#include "embed/reranker.h"
#include "service/chunking.h"
#include "collection/collections.h"
#include "collection/hybrid.h"
#include "service/config.h"
#include "service/metrics.h"
#include "service/scheduler.h"

namespace qsearch {

// Returns true once the client of the current request went away (then work is dropped).
using ClientGone = std::function<bool()>;

// One /v1/embeddings input: text, or token ids when is_ids.
struct EmbedInput {
  bool is_ids = false;
  std::string text;
  std::vector<int32_t> ids;
};

struct EmbedOutput {
  Embeddings vectors;          // one per input, dim floats each, L2-normalised
  int64_t prompt_tokens = 0;   // tokens embedded (after truncation, EOS included)
};

struct DocumentInput {
  std::string id;
  std::string text;
  nlohmann::json metadata = nlohmann::json::object();
  // Internal (the re-embed job): >= 0 writes the document only when its stored version still
  // has this label (UpsertOptions::if_labels), so a concurrent write is never undone.
  int64_t if_label = -1;
};

// The re-embed job of a collection as GET /collections/{name} shows it ("reembed").
struct ReembedProgress {
  std::string state;      // "running", "done", "failed" or "interrupted" (a cursor persisted by
                          // a job that did not finish: POST .../reembed resumes from it)
  uint64_t job = 0;       // the job's id in GET /jobs (0 for "interrupted")
  int64_t done = 0;       // documents re-embedded (skipped ones, changed meanwhile, included)
  int64_t total = 0;      // documents when the job (or its first run) started
  double started_at = 0;  // Unix seconds
  std::string error;      // state "failed"
};

struct DocumentResult {
  std::string id;
  Status status;               // per-document outcome
  int32_t tokens = 0;          // tokens embedded
  int32_t truncated_tokens = 0;
  int32_t chunks = 0;          // chunking collections: chunks stored (0: not chunked)
  std::string duplicate_of;    // collection option "dedup": the stored near-duplicate's id
  bool skipped = false;        // "dedup" action "skip": not stored because of duplicate_of
};

// Search option "rerank": the first top_n candidates of the vector search are scored by the
// reranker against the query text and the best k of them returned, by rerank score.
struct SearchRerank {
  std::optional<int64_t> top_n;            // candidates reranked: k..1000, default max(50, k)
  std::optional<std::string> instruction;  // absent: the model card's default instruction
};

struct SearchRequest {
  std::optional<std::string> query;
  std::optional<std::vector<float>> vector;
  std::optional<std::string> id;
  std::optional<std::string> instruction;  // overrides the collection's query instruction
  SearchParams params;
  std::optional<SearchRerank> rerank;       // needs "query" and a loaded reranker
  // "lexical" and "hybrid" need "query" and the collection's lexical index (collection/hybrid.h).
  SearchMode mode = SearchMode::kDense;
  std::optional<FusionOptions> fusion;      // hybrid only; absent: {"type": "rrf", "k": 60}
  int64_t offset = 0;                       // results skipped: 0..1000-k (k + offset <= 1000)
};

// POST /v1/rerank: one query against documents, scored by the reranker.
struct RerankRequest {
  std::string query;
  std::vector<std::string> documents;
  std::optional<std::string> instruction;  // absent: the model card's default instruction
  std::optional<int64_t> top_n;            // absent: every document; else 1..documents
};

struct RerankResult {
  size_t index = 0;               // into the request's documents
  float score = 0;                // relevance in [0, 1]
  int32_t truncated_tokens = 0;   // document tokens cut to fit the reranker's limit
};

struct RerankOutput {
  std::vector<RerankResult> results;  // top_n of them, by score (ties: lower index first)
  int64_t total_tokens = 0;           // tokens run through the reranker
};

inline constexpr size_t kMaxRerankDocuments = 1000;

// kNotFound with instructions to download a model (or run the test model) when dir has no
// config.json.
Status check_model_dir(const std::string& dir);

class Service {
 public:
  // Loads the model, opens the store (which saves indexes in the background) and starts the
  // scheduler.
  static StatusOr<std::unique_ptr<Service>> open(const ServerConfig& config, Metrics* metrics);
  ~Service();

  // Stops the scheduler (queued work fails with kUnavailable) and saves the indexes.
  // (The reranker, when config.reranker names one, is loaded beside the model in open().)
  Status shutdown();

  const ServerConfig& config() const { return config_; }
  Embedder& embedder() { return *embedder_; }
  CollectionStore& store() { return *store_; }
  Scheduler& scheduler() { return *scheduler_; }
  // Directory name of the model (echoed as "model"), and name + checksum for the store.
  const std::string& model_name() const { return model_name_; }
  const std::string& model_identity() const { return model_identity_; }
  int hidden_size() const { return embedder_->hidden_size(); }
  // The reranker (nullptr when none is loaded) and its directory name (echoed as "model").
  Reranker* reranker() { return reranker_.get(); }
  const std::string& reranker_name() const { return reranker_name_; }
  const std::string& reranker_identity() const { return reranker_identity_; }
  // Unix time (seconds) at which loading the model began (/v1/models "created").
  int64_t loaded_at() const { return loaded_at_; }
  // Smallest output dimension accepted (32, or the hidden size of a smaller test model).
  int min_dimension() const;

  // /v1/embeddings: dim 0 means the hidden size.
  StatusOr<EmbedOutput> embed_inputs(const std::vector<EmbedInput>& inputs,
                                     std::string_view instruction, int dim,
                                     const ClientGone& client_gone);

  // Fills defaults (dimension, model) and validates ranges, then creates the collection.
  Status create_collection(CollectionSpec spec);

  // Embeds and upserts documents in one store call. Per-document problems (empty or long id,
  // text too long with truncation off) are reported per item; the returned Status is for the
  // whole request (unknown collection, queue full, client gone). wait_for_room: when the queue
  // is full, wait for room instead of failing with kResourceExhausted.
  // The write is bound to the collection instance it starts on (or to `instance`, when
  // nonzero: an import binds all its chunks to the instance it began on): when the collection
  // is deleted or re-created meanwhile, nothing is written and the call fails with kConflict.
  StatusOr<std::vector<DocumentResult>> upsert_documents(const std::string& collection,
                                                         std::vector<DocumentInput> docs,
                                                         bool wait_for_room,
                                                         const ClientGone& client_gone,
                                                         uint64_t instance = 0);

  // The model rule (docs/api.md "Model identity"): a collection whose stored vectors come from
  // another model than the one served refuses writes that embed text and text queries with
  // kModelMismatch until it is re-embedded; while its re-embed job runs, writes are allowed
  // (embedded with the served model). OK when the models match.
  Status check_model(const CollectionInfo& info, bool write) const;
  // POST /collections/{name}/reembed (service/reembed.cc): starts the background job that
  // re-embeds every stored document from its stored text with the served model, then records
  // the served model as the collection's. Resumes from the persisted cursor of an interrupted
  // job. Returns the job id; kConflict when one runs already or the models already match.
  StatusOr<uint64_t> start_reembed(const std::string& collection);
  // The collection's re-embed job (running, or the last one of this instance, or an interrupted
  // one's persisted cursor); nullopt when there is none.
  std::optional<ReembedProgress> reembed_progress(const CollectionInfo& info);

  // With request.rerank, hits carry rerank_score and come sorted by it (rerank.cc). Lexical and
  // hybrid hits carry highlights.
  StatusOr<std::vector<SearchHit>> search(const std::string& collection,
                                          const SearchRequest& request,
                                          const ClientGone& client_gone);

  // /v1/rerank (service/rerank.cc): kNotFound without a reranker, kUnprocessable for no
  // documents, too many, or top_n out of range; pairs over the limit are cut (truncate on) or
  // refused with kUnprocessable (truncate off).
  StatusOr<RerankOutput> rerank(const RerankRequest& request, const ClientGone& client_gone);

 private:
  Service(const ServerConfig& config, Metrics* metrics);
  // Tokenizes several texts on the CPU pool (the calling thread takes a share; a single text is
  // tokenized right there), never on a scheduler thread. Per-item results, truncation policy
  // applied.
  std::vector<StatusOr<PreparedText>> prepare_texts(const std::vector<std::string_view>& texts,
                                                    std::string_view instruction,
                                                    int max_tokens) const;
  Status check_truncation(const PreparedText& p, int max_tokens) const;
  // Chunking collections: per text, its chunks (code-point ranges, service/chunking.h) and
  // each chunk's prepared tokens; on the CPU pool like prepare_texts.
  std::vector<StatusOr<std::vector<std::pair<Chunk, PreparedText>>>> prepare_chunks(
      const std::vector<std::string_view>& texts, const ChunkingOptions& options) const;
  // Collection option "dedup" (service/ingest_dedup.cc): sets duplicate_of of each new document
  // whose nearest stored neighbour is at or above the threshold; "skip" drops it from batch.
  Status check_ingest_duplicates(const CollectionInfo& info, std::vector<Document>* batch,
                                 std::vector<DocumentResult*>* results);
  // Embeds through the scheduler in chunks that fit the queue.
  StatusOr<Embeddings> embed_prepared(const std::vector<PreparedText>& items,
                                      const std::vector<int32_t>& dims, Priority priority,
                                      bool wait_for_room, const ClientGone& client_gone);
  // Runs token sequences through the scheduler for task in chunks that fit the queue, two in
  // flight; rows in order.
  StatusOr<Embeddings> run_sequences(const std::vector<const std::vector<int32_t>*>& seqs,
                                     const std::vector<int32_t>& dims, Priority priority,
                                     Task task, bool wait_for_room, const ClientGone& client_gone);
  // Scores (query, document) pairs with the reranker through the scheduler (rerank.cc):
  // tokenized on the CPU pool, cut per the server's limits, results in document order.
  // kNotFound, saying how to load one, when no reranker is loaded.
  Status require_reranker() const;
  // Search option "rerank": scores the candidates (the best chunk's text for a chunked
  // document) against query and keeps the best k, by rerank score.
  Status rerank_hits(std::string_view query, const SearchRerank& options, int k,
                     std::vector<SearchHit>* hits, const ClientGone& client_gone);
  StatusOr<std::vector<RerankResult>> score_pairs(std::string_view query,
                                                  const std::vector<std::string_view>& documents,
                                                  std::string_view instruction,
                                                  int64_t* total_tokens,
                                                  const ClientGone& client_gone);

  ServerConfig config_;
  Metrics* metrics_;
  std::string model_name_;
  std::string model_identity_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Embedder> embedder_;
  std::unique_ptr<Reranker> reranker_;
  std::string reranker_name_;
  std::string reranker_identity_;
  int64_t loaded_at_ = 0;
  std::unique_ptr<CollectionStore> store_;
  std::unique_ptr<Scheduler> scheduler_;
  std::atomic<bool> shut_down_{false};
  std::mutex dedup_mu_;  // "dedup" collections: duplicate check + write, one request at a time

  // Re-embed jobs (service/reembed.cc), one per collection instance; finished ones stay for
  // GET /collections/{name}.
  struct ReembedRun;
  // How write_documents() writes: upsert_documents() binds only the instance.
  struct WriteBinding {
    uint64_t instance = 0;                      // UpsertOptions::instance (0: the one found)
    bool reembed = false;                       // the re-embed job: no model or duplicate check,
                                                // each document on its DocumentInput::if_label
    std::optional<std::string> reembed_record;  // UpsertOptions::reembed_record
    int64_t* written = nullptr;                 // UpsertOptions::written
  };
  StatusOr<std::vector<DocumentResult>> write_documents(const std::string& collection,
                                                        std::vector<DocumentInput> docs,
                                                        bool wait_for_room,
                                                        const ClientGone& client_gone,
                                                        const WriteBinding& binding);
  void run_reembed(const std::shared_ptr<ReembedRun>& run);
  bool reembed_running(uint64_t instance) const;
  void stop_reembeds();
  mutable std::mutex reembed_mu_;
  std::map<uint64_t, std::shared_ptr<ReembedRun>> reembeds_;  // by collection instance
};

// One vector for a whole document: its embedding, or for a chunked document the normalised
// mean of its chunk vectors.
std::vector<float> document_vector(const Document& doc, int dimension);

}  // namespace qsearch
