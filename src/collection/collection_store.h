// The CollectionStore implementation: documents in RocksDB (store/), one VectorIndex per
// collection (index/), kept in agreement through a per-collection change log.
//
// Write path (upsert/remove): under the collection's write mutex, one WriteBatch carries the
// document records, the label -> id reverse map, the change-log entries and the counters; once
// RocksDB acknowledged it (WAL, fsync'd when sync), the index is mutated under the exclusive
// index lock and applied_seq advances. A crash between the two loses nothing: the change log
// replays on open().
// Read path (search): the index is searched under the shared index lock; labels are resolved
// through RocksDB afterwards, so a hit whose document changed meanwhile is recognised (its
// label no longer maps to the document) and skipped.
// Index maintenance (HNSW rebuilds, IVF training) runs on the background thread: a replacement
// index is built from the live vectors without locks, then caught up and swapped in.
// Lock order: save_mu -> write_mu -> index_mu; the store's collections_mu_ is never held while
// waiting for a collection lock except in delete_collection (create_mu_ -> save_mu -> ...).
#pragma once

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "collection/collections.h"
#include "collection/filter_cache.h"
#include "collection/lexical_index.h"
#include "collection/metadata_index.h"
#include "collection/text_analyzer.h"
#include "index/vector_index.h"
#include "store/kv_store.h"
#include "store/record.h"

namespace qsearch {

class Job;

// The per-collection index lock: a reader-writer lock that prefers writers. glibc's default
// (std::shared_mutex) prefers readers, so a stream of overlapping searches could starve the
// HNSW inserter and writers indefinitely; here a waiting writer holds off new readers, so a
// search waits at most for the searches already running plus one bounded write or insert
// slice. Not recursive: a thread holding it shared must not take it shared again.
class IndexMutex {
 public:
  IndexMutex();
  ~IndexMutex();
  IndexMutex(const IndexMutex&) = delete;
  IndexMutex& operator=(const IndexMutex&) = delete;
  void lock();
  bool try_lock();
  void unlock();
  void lock_shared();
  bool try_lock_shared();
  void unlock_shared();

 private:
  pthread_rwlock_t rw_;
};

struct CollectionState {
  uint64_t id = 0;
  CollectionSpec spec;               // spec.model as created or loaded; model() is the current one
  VectorIndexConfig index_config;

  // The model identity the stored vectors come from: changed (under write_mu) when a re-embed
  // finishes or an old-formula identity is upgraded at open (collection_model.cc).
  std::string model() const {
    std::lock_guard<std::mutex> lock(model_mu);
    return model_;
  }
  void set_model(std::string model) {
    std::lock_guard<std::mutex> lock(model_mu);
    model_ = std::move(model);
  }

  std::mutex save_mu;                // one index save at a time; delete waits for it
  std::mutex write_mu;               // serialises writers of this collection
  mutable IndexMutex index_mu;       // shared: search, serialise; exclusive: mutation

  // Guarded by write_mu (mirrors of the persisted counters).
  int64_t next_label = 0;
  uint64_t log_seq = 0;
  bool dropped = false;

  // Guarded by index_mu.
  std::unique_ptr<VectorIndex> index;
  uint64_t applied_seq = 0;          // last change-log sequence reflected in `index`

  // Lexical index (collection_lexical.cc); null when the collection's option "lexical" is off.
  // The pointer changes under write_mu + exclusive index_mu; searches use it under shared
  // index_mu, writers under write_mu (the index serialises its own calls).
  std::unique_ptr<LexicalIndex> lexical;
  // Last change-log sequence the lexical index holds (the change log is trimmed only up to it).
  std::atomic<uint64_t> lexical_seq{0};

  // The matching label sets of recent filters (valid while nothing is written).
  FilterCache filter_cache;

  std::atomic<int64_t> documents{0};
  std::atomic<int64_t> vectors{0};         // index entries the store holds (chunks count each)
  std::atomic<int64_t> pending{0};         // index->pending() after the last index change
  int64_t insert_batch = 0;                // inserter thread only: vectors per slice (adaptive)
  std::atomic<bool> dropped_flag{false};
  std::atomic<uint64_t> saved_seq{0};      // sequence of the index file on disk
  std::atomic<bool> file_present{false};
  std::atomic<int64_t> writes_since_save{0};
  std::atomic<int64_t> last_save_ms{0};

 private:
  mutable std::mutex model_mu;
  std::string model_;
};

class RocksCollectionStore : public CollectionStore {
 public:
  static StatusOr<std::unique_ptr<CollectionStore>> open(const StoreOptions& options);
  ~RocksCollectionStore() override;

  Status create_collection(const CollectionSpec& spec) override;
  Status delete_collection(const std::string& name) override;
  StatusOr<CollectionInfo> get_collection(const std::string& name) override;
  std::vector<CollectionInfo> list_collections() override;
  using CollectionStore::upsert;
  Status upsert(const std::string& collection, const std::vector<Document>& docs,
                const UpsertOptions& options) override;
  StatusOr<Document> get(const std::string& collection, const std::string& id,
                         bool with_embedding) override;
  Status remove(const std::string& collection, const std::string& id) override;
  StatusOr<std::vector<SearchHit>> search(const std::string& collection,
                                          const std::vector<float>& query,
                                          const SearchParams& params) override;
  StatusOr<std::vector<SearchHit>> search_lexical(const std::string& collection,
                                                  const std::string& query,
                                                  const SearchParams& params) override;
  // collection_documents.cc
  StatusOr<int64_t> count(const std::string& collection, const Filter& filter) override;
  StatusOr<ScrollPage> scroll(const std::string& collection, const ScrollRequest& request) override;
  StatusOr<int64_t> remove_documents(const std::string& collection,
                                     const std::vector<std::string>& ids) override;
  StatusOr<int64_t> remove_matching(const std::string& collection, const Filter& filter) override;
  StatusOr<Document> patch_metadata(const std::string& collection, const std::string& id,
                                    const nlohmann::json& patch) override;
  Status scan_embeddings(const std::string& collection, const Filter& filter,
                         std::vector<std::string>* ids,
                         std::vector<float>* vectors) override;  // duplicates.cc
  // collection_model.cc
  StatusOr<std::optional<std::string>> reembed_record(const std::string& collection) override;
  Status set_reembed_record(const std::string& collection, uint64_t instance,
                            const std::optional<std::string>& record) override;
  Status set_model(const std::string& collection, uint64_t instance,
                   const std::string& model) override;
  Status save_indexes() override;
  std::vector<std::pair<std::string, int64_t>> document_counts() override;

  // For tests and diagnostics: how the index of `name` was obtained at open().
  enum class IndexOrigin { kCreated, kLoaded, kCaughtUp, kRebuilt };
  StatusOr<IndexOrigin> index_origin(const std::string& name);
  // How the lexical index of `name` was obtained at open() (kNotFound when it has none).
  StatusOr<IndexOrigin> lexical_origin(const std::string& name);
  // Full scan: every stored document's label is in the index and maps back to its id, and the
  // stored count, the document counter and the index size agree. kCorruption otherwise.
  Status check_consistency(const std::string& name);
  // Every document id of a collection, in key order (full scan).
  StatusOr<std::vector<std::string>> document_ids(const std::string& name);
  // Full scan: the metadata index holds exactly the entries of the stored documents.
  Status check_metadata_index(const std::string& name);
  // Tests: drops the metadata index of `name` and its completeness mark (as a store written
  // before it existed); the next open() rebuilds it.
  Status drop_metadata_index(const std::string& name);
  // Tests: false skips the index save in the destructor (as a crash would).
  void set_save_on_close(bool save);
  // Tests: the numeric id of `name` (0 for an unknown name) and the key-value store.
  uint64_t collection_id(const std::string& name) const {
    auto c = find(name);
    return c ? c->id : 0;
  }
  const store::KvStore& kv() const { return *kv_; }
  // Searches of `name` whose filter came from its filter cache (0 for an unknown name).
  uint64_t filter_cache_hits(const std::string& name) const {
    auto c = find(name);
    return c ? c->filter_cache.hits() : 0;
  }

 private:
  explicit RocksCollectionStore(StoreOptions options);

  std::shared_ptr<CollectionState> find(const std::string& name) const;
  // The collection `name` as the instance `instance` (0: any); kConflict naming the change when
  // the name now names another instance or none (collection_model.cc).
  StatusOr<std::shared_ptr<CollectionState>> find_instance(const std::string& name,
                                                           uint64_t instance) const;
  // open(): a collection that stores StoreOptions::legacy_model gets StoreOptions::model
  // (collection_model.cc). Single-threaded.
  Status upgrade_model_identity(CollectionState* c);
  CollectionInfo info_of(const CollectionState& c) const;
  std::string index_path(uint64_t cid) const;

  // Recovery and persistence (collection_recovery.cc).
  Status load_collections();
  Status load_index(CollectionState* c);
  // Replays change-log entries after from_seq (through c->log_seq) onto `index`. Callers hold
  // write_mu or are single-threaded (open).
  Status catch_up(CollectionState* c, VectorIndex* index, uint64_t from_seq, bool* changed);
  // The change log entries after from_seq, checked complete up to log_seq (kCorruption naming
  // `what` otherwise).
  Status read_change_log(const CollectionState& c, uint64_t from_seq, const std::string& what,
                         std::vector<std::pair<uint64_t, store::ChangeRecord>>* log);
  // Rebuilds from the stored embeddings, registered as an "index_rebuild" job (common/jobs.h)
  // and logged at info with progress every progress_log_interval_s.
  Status rebuild_index(CollectionState* c);
  Status rebuild_index_into(CollectionState* c, Job* job, int64_t* last_log);
  // An info line "what: done of total documents (rate/s)" when the interval passed since
  // *last_log (steady ms), which it then advances.
  void log_progress(const CollectionState* c, const char* what, int64_t done, int64_t total,
                    const Job* job, int64_t* last_log) const;
  // Builds an optimised replacement (HNSW without tombstones, trained IVF) from the live
  // vectors without blocking searches or writes, replays the writes made meanwhile from the
  // change log, and swaps it in.
  Status optimize_index(CollectionState* c);
  // Every stored vector of the collection (labels and rows, chunk rows under their labels),
  // read from the document records: the source of a replacement for a lossy (quantized) index.
  Status scan_stored_vectors(CollectionState* c, std::vector<int64_t>* labels,
                             std::vector<float>* vectors);
  Status optimize_due_indexes();
  void after_write(CollectionState* c, int64_t writes, bool want_optimize);
  Status save_collection(CollectionState* c);
  // Removes documents in one WriteBatch, then their labels from the index; the caller holds
  // c->write_mu (collection_documents.cc). Adds the labels removed to *labels_removed.
  struct StoredLabels {
    std::string id;
    int64_t label = 0;
    int64_t label_count = 1;
    nlohmann::json metadata;  // its metadata index entries go too
  };
  // Rebuilds the metadata index of a collection from its documents (open(), when the counter
  // kMetaIndex is absent); single-threaded (open) or under write_mu.
  Status build_metadata_index(CollectionState* c);
  // The documents the metadata index gives for `filter` (at most max_documents), each with its
  // record (parts) and metadata, the filter checked on each; nullopt when the index cannot
  // narrow the filter down.
  struct Candidate {
    std::string id;
    store::DocumentRecord record;
    nlohmann::json metadata;
  };
  StatusOr<std::optional<std::vector<Candidate>>> matching_documents(const CollectionState& c,
                                                                     const Filter& filter,
                                                                     size_t max_documents,
                                                                     unsigned parts);
  Status remove_locked(CollectionState* c, const std::vector<StoredLabels>& docs,
                       int64_t* labels_removed);
  void remove_stale_index_files();
  void saver_loop();
  // Background HNSW inserter (collection_insert.cc): moves pending vectors into the graphs in
  // slices of about options_.index_insert_slice_ms under the exclusive index lock.
  void inserter_loop();
  // One slice for `c`; false when nothing was pending.
  bool insert_slice(CollectionState* c);
  // Called with the exclusive index lock held after the index changed: refreshes c->pending
  // and wakes the inserter when there is work.
  void note_pending(CollectionState* c);
  // Without the background inserter: moves everything pending into the graph (exclusive lock).
  // With it: waits while more than index_pending_max vectors are pending (backpressure).
  void settle_pending(CollectionState* c);

  // The lexical index (collection_lexical.cc). Callers hold write_mu or are single-threaded.
  std::string lexical_path(uint64_t cid) const;
  Status load_lexical(CollectionState* c);
  // Replays the change log after from_seq onto `lexical` (kCorruption when it is incomplete).
  Status catch_up_lexical(CollectionState* c, LexicalIndex* lexical, uint64_t from_seq,
                          bool* changed);
  // A new index from the stored texts, built beside the live one and swapped in.
  Status rebuild_lexical(CollectionState* c);
  // After a durable write: the write's removed labels and added texts, at sequence seq; on a
  // failure the index is caught up from the change log or rebuilt.
  Status update_lexical(CollectionState* c, const std::vector<int64_t>& removed,
                        const std::vector<LexicalIndex::Entry>& added, uint64_t seq);
  // check_consistency(): every label in the lexical index and the row count right.
  Status check_lexical(CollectionState* c, const std::vector<std::pair<int64_t, std::string>>& labels);
  void remove_stale_lexical_files();

  StoreOptions options_;
  std::unique_ptr<store::KvStore> kv_;
  std::mutex create_mu_;  // serialises create_collection / delete_collection
  mutable std::shared_mutex collections_mu_;
  std::map<std::string, std::shared_ptr<CollectionState>> collections_;
  std::map<std::string, IndexOrigin> origins_;  // guarded by collections_mu_
  std::map<std::string, IndexOrigin> lexical_origins_;  // guarded by collections_mu_
  uint64_t next_collection_id_ = 1;             // guarded by create_mu_

  std::thread saver_;
  std::mutex saver_mu_;
  std::condition_variable saver_cv_;
  bool stop_saver_ = false;
  bool save_on_close_ = true;

  std::thread inserter_;
  std::mutex inserter_mu_;
  std::condition_variable inserter_cv_;  // work arrived (or stop)
  std::condition_variable drained_cv_;   // a slice finished (writers waiting on backpressure)
  bool stop_inserter_ = false;
  bool insert_work_ = false;             // guarded by inserter_mu_
};

// The index settings of a collection; a gpu index shards its rows over gpu_devices
// (StoreOptions::gpu_devices; empty: every visible GPU).
VectorIndexConfig index_config_of(const CollectionSpec& spec,
                                  const std::vector<int>& gpu_devices = {});
// In-place L2 normalisation (zero vectors stay zero).
void normalize_l2(float* v, int d);
// The L2-normalised mean of the rows of `rows` (rows.size() / d vectors of d floats).
std::vector<float> normalized_mean(const std::vector<float>& rows, int d);
// The lexical index entries of a stored document: its text, or each chunk's text (chunk i has
// label first_label + i). The entries point into `text`.
template <typename ChunkT>
void append_lexical_entries(std::string_view text, const std::vector<ChunkT>& chunks,
                            int64_t first_label, std::vector<LexicalIndex::Entry>* out) {
  if (chunks.empty()) {
    out->push_back({first_label, text});
    return;
  }
  for (size_t i = 0; i < chunks.size(); ++i)
    out->push_back({first_label + static_cast<int64_t>(i),
                    code_point_range(text, chunks[i].start, chunks[i].end)});
}
// `filter` (collection/filter.h) holds on `metadata`; false for a filter that does not parse.
bool metadata_matches(const nlohmann::json& metadata, const nlohmann::json& filter);

}  // namespace qsearch
