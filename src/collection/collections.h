// Collections: documents in RocksDB, one FAISS index per collection, kept in agreement.
//
// Durability contract: upsert()/remove() return OK only after RocksDB has the change in its
// write-ahead log (fsync'd when StoreOptions::sync). One logical change (a document with its
// text, metadata and embedding, or a whole upsert call) is one WriteBatch. Embeddings are
// stored next to the documents, so a restart never re-embeds: index files are saved with the
// sequence they reflect and on open() are loaded and caught up from RocksDB, or rebuilt from
// the stored embeddings. After a kill -9 at any moment, every acknowledged write is present
// and the index agrees with the store.
//
// Concurrency: CollectionStore is safe for concurrent use from many threads. Writes to one
// collection are serialised; searches run concurrently with each other and are excluded only
// from the short index-mutation step of a write (a shared_mutex per collection).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "collection/filter.h"
#include "collection/options.h"
#include "common/status.h"
#include "index/vector_index.h"

namespace qsearch {

struct CollectionInfo {
  CollectionSpec spec;
  int64_t document_count = 0;
  int64_t index_vectors = 0;      // vectors in the FAISS index (incl. not yet compacted)
  int64_t index_pending = 0;      // HNSW: vectors searchable but not yet in the graph
  int64_t index_trained_on = 0;   // IVF: vectors its centroids were trained on (0: untrained)
  int64_t index_bytes = 0;        // index memory (VectorIndex::memory_bytes())
  int64_t index_device_bytes = 0; // GPU memory of a gpu index (VectorIndex::device_bytes())
  std::vector<VectorIndex::DeviceShardInfo> index_devices;  // a gpu index's shards
  std::string index_type;         // effective type now (e.g. "flat" while IVF is untrained)
  // The collection instance (its numeric id in the store): a collection deleted and re-created
  // under the same name is another instance. UpsertOptions::instance binds a write to one.
  uint64_t instance = 0;
  std::string index_fallback_reason;  // why index_type differs from the spec's ("gpu" without a GPU)
};

// kConflict: the collection `name` was deleted (and maybe re-created) since a bound write began.
Status collection_replaced(const std::string& name);

// How upsert() writes.
struct UpsertOptions {
  // Nonzero: the write is bound to this collection instance (CollectionInfo::instance), checked
  // under the collection's write lock; when the name now names another instance (deleted and
  // re-created) or none, nothing is written and the call fails with kConflict. Long writers
  // (imports, batches, the re-embed job) take the instance when they start.
  uint64_t instance = 0;
  // Empty, or one entry per document: the document is written only when its stored version
  // still has this label (Document read with its label, see get_label()), i.e. nobody replaced
  // or deleted it since it was read; otherwise it is skipped (not an error). The re-embed job
  // writes back stored texts this way, so a concurrent write is never undone.
  std::vector<int64_t> if_labels;
  // Set: the collection's re-embed record (reembed_state()) is replaced by this value in the
  // same WriteBatch as the documents, so its cursor never runs ahead of or behind the writes.
  std::optional<std::string> reembed_record;
  // Out (optional): documents actually written (if_labels may skip some).
  int64_t* written = nullptr;
};

// One chunk of a document of a chunking collection: [start, end) in Unicode code points of the
// document's text, and the tokens its embedding was computed from (EOS included).
struct Chunk {
  int32_t start = 0;
  int32_t end = 0;
  int32_t tokens = 0;
};

struct Document {
  std::string id;                 // check_document_id(): 1..512 bytes
  std::string text;
  nlohmann::json metadata = nlohmann::json::object();
  // Without chunks: one vector of dimension floats. With chunks: chunks.size() vectors, one per
  // chunk in chunk order, each L2-normalised for cosine. Every vector is its own index entry.
  std::vector<float> embedding;
  std::vector<Chunk> chunks;      // empty: the document is one piece
  int32_t tokens = 0;             // tokens embedded (all chunks together)
  int32_t truncated_tokens = 0;
  // Read back (get, scroll): the stored version's first label. Every write of a document gives
  // it new labels, so an unchanged label means an unchanged document (UpsertOptions::if_labels).
  int64_t label = -1;
};

// Stored and query vectors of ip/l2 collections must have an L2 norm below this, so that no
// inner product or squared distance overflows a float (no non-finite score, ever).
inline constexpr double kMaxVectorNorm = 1e18;

// Wall time of one search's stages, in microseconds.
struct SearchProfile {
  double resolve_us = 0;   // the filter's matching set (cache or metadata index)
  double index_us = 0;     // the vector index's search (all rounds)
  double assemble_us = 0;  // reading ids and documents, checking the filter, ordering
};

struct SearchParams {
  int k = 10;                                           // 1..1000
  int offset = 0;                                       // 0..10000: hits skipped before the k
  // Hits worse than this are dropped: cosine/ip a score below it, l2 a distance above it.
  std::optional<float> score_threshold;
  int ef_search = 0;                                    // HNSW beam width, 1..100000 (0: the collection's)
  int nprobe = 0;                                       // IVF lists probed, 1..65536 (0: the collection's)
  nlohmann::json filter = nlohmann::json::object();     // collection/filter.h; bad: kInvalidArgument
  bool include_text = false;
  bool include_metadata = false;
  std::optional<std::string> exclude_id;                // search by id: leave the id itself out
  // Resolve the filter through the collection's filter cache (collection/filter_cache.h); off
  // only to measure the first search with a filter (qsearch-bench-filter's "cold" figures).
  bool use_filter_cache = true;
  // When set, filled with where the search's time went (benchmarks: qsearch-bench-filter).
  SearchProfile* profile = nullptr;
};

struct SearchHit {
  std::string id;
  float score = 0;                // cosine/ip: similarity (higher is better); l2: distance
  std::string text;               // when asked for
  nlohmann::json metadata;        // when asked for
  // Chunked documents: the best-scoring chunk (each document is returned once, scored by it);
  // chunk is -1 for a document stored in one piece.
  int32_t chunk = -1;
  Chunk chunk_span;
  // Set by the service for a search with "rerank": the reranker's relevance in [0, 1].
  std::optional<float> rerank_score;
  // Set by the service for search modes "lexical" and "hybrid" (collection/hybrid.h): where the
  // query's words occur in the returned text (in the best chunk for a chunked document), as
  // [start, end) code points of the document's text.
  std::optional<std::vector<std::pair<int32_t, int32_t>>> highlights;
  // Hybrid search: each side's own score (absent when the document was not among its candidates).
  std::optional<float> dense_score;
  std::optional<float> lexical_score;
};

inline constexpr int kMaxScrollLimit = 1000;
inline constexpr size_t kRemoveBatchDocuments = 10000;

// POST /collections/{name}/documents/scroll: documents in id order, page by page.
struct ScrollRequest {
  Filter filter;                  // only matching documents
  int limit = 100;                // 1..1000 documents per page
  std::string cursor;             // empty: from the start; else a page's next_cursor
  bool include_text = true;
  bool include_metadata = true;
  bool include_embedding = false;
  // Internal (the re-embed job), instead of a cursor: start after this document id.
  std::optional<std::string> after_id;
};

struct ScrollPage {
  std::vector<Document> documents;  // embedding empty unless asked for
  std::string next_cursor;          // empty: the scroll is complete
};

struct StoreOptions {
  std::string data_dir;           // RocksDB and index files live here
  bool sync = false;              // fsync the WAL before acknowledging a write
  std::string model;              // identity of the embedding model (name + checksum)
  // The identity the same model had under the older formula (file names and sizes only,
  // before the checksum covered the weights' bytes): collections that store it are upgraded
  // to `model` at open (durably, logged), since their vectors come from this very model.
  std::string legacy_model;
  // Index files are saved in the background when a collection has unsaved changes and either
  // this many seconds passed since its last save or index_save_writes changes accumulated;
  // also by save_indexes() and at shutdown. 0 disables the background thread.
  int index_save_interval_s = 60;
  int64_t index_save_writes = 50000;
  // Documents per WriteBatch of a bulk delete (remove_documents, remove_matching).
  size_t remove_batch_documents = kRemoveBatchDocuments;
  // Seconds between progress lines (info) of an index rebuild; 0: none.
  int progress_log_interval_s = 5;
  // HNSW ingestion: a write puts its vectors in the index's pending buffer (searched exactly)
  // and a background inserter thread moves them into the graph in batches, holding the
  // collection's index lock for about index_insert_slice_ms per batch (the batch size adapts
  // to that), so searches never wait longer. A writer waits (backpressure) while more than
  // index_pending_max vectors are pending. false: each write inserts into the graph itself
  // (the index lock held for the whole insert; deterministic, for tests).
  bool background_insert = true;
  int index_insert_slice_ms = 10;
  int64_t index_pending_max = 16384;
  // The CUDA devices a "gpu" index shards its rows over, one shard per entry (an ordinal may
  // repeat: several shards on one GPU); empty: every visible device. The service passes --gpus.
  std::vector<int> gpu_devices;
};

class CollectionStore {
 public:
  static StatusOr<std::unique_ptr<CollectionStore>> open(const StoreOptions& options);
  virtual ~CollectionStore() = default;

  virtual Status create_collection(const CollectionSpec& spec) = 0;  // kAlreadyExists
  virtual Status delete_collection(const std::string& name) = 0;     // kNotFound
  virtual StatusOr<CollectionInfo> get_collection(const std::string& name) = 0;
  virtual std::vector<CollectionInfo> list_collections() = 0;

  // Inserts or replaces documents (one WriteBatch), then updates the index. A replaced
  // document's chunks (all of them) are replaced in the same batch.
  Status upsert(const std::string& collection, const std::vector<Document>& docs) {
    return upsert(collection, docs, UpsertOptions{});
  }
  virtual Status upsert(const std::string& collection, const std::vector<Document>& docs,
                        const UpsertOptions& options) = 0;
  // with_embedding: Document::embedding holds every chunk's vector (see Document).
  virtual StatusOr<Document> get(const std::string& collection, const std::string& id,
                                 bool with_embedding) = 0;
  virtual Status remove(const std::string& collection, const std::string& id) = 0;  // kNotFound
  // Documents matching `filter`: the stored counter for the match-all filter; else the
  // metadata index's candidates, checked, when it narrows the filter down; else a scan.
  virtual StatusOr<int64_t> count(const std::string& collection, const Filter& filter) = 0;
  // One page of a scroll in document id order. A document that exists for the whole scroll
  // (and matches the filter throughout) is returned exactly once, whatever is written
  // meanwhile; one written or deleted during the scroll may or may not be. The cursor is the
  // last id returned, bound to this collection instance: a cursor of another collection, or of
  // a deleted and re-created one, is kInvalidArgument. limit outside 1..1000: kUnprocessable.
  virtual StatusOr<ScrollPage> scroll(const std::string& collection,
                                      const ScrollRequest& request) = 0;
  // Removes these documents (absent ids are skipped); returns how many were removed. One
  // WriteBatch per StoreOptions::remove_batch_documents documents: a crash leaves each document wholly
  // present or wholly removed, and a retry finishes the job.
  virtual StatusOr<int64_t> remove_documents(const std::string& collection,
                                             const std::vector<std::string>& ids) = 0;
  // Removes every document matching `filter` (not the match-all filter: kInvalidArgument);
  // the matching set is taken with the collection's writers held off. Batches as above.
  virtual StatusOr<int64_t> remove_matching(const std::string& collection,
                                            const Filter& filter) = 0;
  // Merges `patch` into the document's metadata (RFC 7386: objects merge recursively, null
  // removes a key) in one WriteBatch; text, embedding and labels are left byte-identical.
  // Returns the document without its embedding. kNotFound for an absent document.
  virtual StatusOr<Document> patch_metadata(const std::string& collection, const std::string& id,
                                            const nlohmann::json& patch) = 0;
  virtual StatusOr<std::vector<SearchHit>> search(const std::string& collection,
                                                  const std::vector<float>& query,
                                                  const SearchParams& params) = 0;
  // BM25 search of the lexical index (collection option "lexical") for the words of `query`
  // (collection/lexical_index.h: "quoted text" is a phrase); params as for search() except
  // exclude_id. kUnprocessable when the collection has no lexical index. Scores: BM25, higher
  // is better. Chunked documents: once each, by their best chunk.
  virtual StatusOr<std::vector<SearchHit>> search_lexical(const std::string& collection,
                                                          const std::string& query,
                                                          const SearchParams& params) = 0;
  // Every stored document's id and embedding (L2-normalised for cosine), in id order: ids[i]
  // owns vectors[i*dimension .. (i+1)*dimension). A chunked document is represented by the
  // normalised mean of its chunk vectors. A full range scan; writes made meanwhile may or may
  // not be seen. Only documents matching `filter`. For POST /collections/{name}/duplicates.
  virtual Status scan_embeddings(const std::string& collection, const Filter& filter,
                                 std::vector<std::string>* ids, std::vector<float>* vectors) = 0;
  // The re-embed job's record of a collection (service/reembed.h; opaque here): nullopt when
  // there is none. kNotFound for an unknown collection.
  virtual StatusOr<std::optional<std::string>> reembed_record(const std::string& collection) = 0;
  // Writes (a value) or removes (nullopt) that record durably. Bound to the collection instance
  // as UpsertOptions::instance is (kConflict for another one).
  virtual Status set_reembed_record(const std::string& collection, uint64_t instance,
                                    const std::optional<std::string>& record) = 0;
  // Records `model` as the identity the collection's vectors come from (its stored spec) and
  // removes its re-embed record, in one WriteBatch, under the collection's write lock. Bound to
  // the instance as above.
  virtual Status set_model(const std::string& collection, uint64_t instance,
                           const std::string& model) = 0;
  // Writes index files for all collections (also done periodically and at shutdown).
  virtual Status save_indexes() = 0;
  // Total documents per collection, for /metrics.
  virtual std::vector<std::pair<std::string, int64_t>> document_counts() = 0;
};

}  // namespace qsearch
