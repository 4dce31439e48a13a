// Opening collections (load index file, catch up from the change log, or rebuild from the
// stored embeddings: never re-embed) and saving index files (periodically and on demand).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <unordered_map>

#include "common/jobs.h"
#include "index/index_file.h"
#include "collection/collection_store.h"
#include "store/keys.h"
#include "store/record.h"

namespace qsearch {

namespace fs = std::filesystem;
using store::CounterKind;
using store::KeyPrefix;

static int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Status RocksCollectionStore::load_collections() {
  std::vector<std::pair<uint64_t, std::string>> specs;
  QS_RETURN_IF_ERROR(kv_->scan(store::prefix_begin(KeyPrefix::kSpec),
                               store::prefix_end(KeyPrefix::kSpec),
                               [&](std::string_view key, std::string_view value) {
                                 uint64_t cid = 0;
                                 if (store::parse_spec_key(key, &cid)) {
                                   specs.emplace_back(cid, std::string(value));
                                 }
                                 return true;
                               }));
  for (auto& [cid, json_text] : specs) {
    auto j = nlohmann::json::parse(json_text, nullptr, false);
    if (j.is_discarded()) return corruption("collection " + std::to_string(cid) + ": spec is not JSON");
    auto spec = CollectionSpec::from_json(j, /*stored=*/true);
    if (!spec.is_ok()) return corruption("collection " + std::to_string(cid) + ": " + spec.status().message());
    auto c = std::make_shared<CollectionState>();
    c->id = cid;
    c->spec = std::move(spec).value();
    c->set_model(c->spec.model);
    QS_RETURN_IF_ERROR(upgrade_model_identity(c.get()));
    c->index_config = index_config_of(c->spec, options_.gpu_devices);
    std::vector<std::string> keys = {store::counter_key(cid, CounterKind::kNextLabel),
                                     store::counter_key(cid, CounterKind::kDocuments),
                                     store::counter_key(cid, CounterKind::kLogSeq),
                                     store::counter_key(cid, CounterKind::kVectors),
                                     store::counter_key(cid, CounterKind::kMetaIndex)};
    std::vector<std::optional<std::string>> values;
    QS_RETURN_IF_ERROR(kv_->multi_get(keys, &values));
    for (size_t i = 0; i < 3; ++i) {
      if (!values[i] || values[i]->size() != 8)
        return corruption("collection '" + c->spec.name + "': counters missing");
    }
    c->next_label = store::get_i64_be(*values[0]);
    c->documents = store::get_i64_be(*values[1]);
    c->log_seq = static_cast<uint64_t>(store::get_i64_be(*values[2]));
    // Stores written before chunking have no vector counter: one vector per document.
    c->vectors = values[3] && values[3]->size() == 8 ? store::get_i64_be(*values[3])
                                                      : c->documents.load();
    if (cid >= next_collection_id_) next_collection_id_ = cid + 1;
    // Stores written before the metadata index, or a rebuild cut short: (re)build it now.
    if (!values[4]) {
      QS_RETURN_IF_ERROR(build_metadata_index(c.get()).with_context("collection '" + c->spec.name + "'"));
    }
    QS_RETURN_IF_ERROR(load_index(c.get()).with_context("collection '" + c->spec.name + "'"));
    QS_RETURN_IF_ERROR(load_lexical(c.get()).with_context("collection '" + c->spec.name + "'"));
    c->last_save_ms = now_ms();
    std::unique_lock<std::shared_mutex> lock(collections_mu_);
    collections_[c->spec.name] = c;
  }
  return Status::ok();
}

Status RocksCollectionStore::load_index(CollectionState* c) {
  if (c->index_config.type == "gpu") {
    // Derived: the device copy is rebuilt from the stored embeddings at every start (logged
    // with progress and time by rebuild_index); its index file is only a marker.
    QS_RETURN_IF_ERROR(rebuild_index(c));
    if (!c->index->fallback_reason().empty())
      spdlog::warn("store: collection '{}': index gpu runs as {}: {}", c->spec.name, c->index->type(),
                   c->index->fallback_reason());
    std::unique_lock<std::shared_mutex> lock(collections_mu_);
    origins_[c->spec.name] = IndexOrigin::kRebuilt;
    return Status::ok();
  }
  const std::string path = index_path(c->id);
  IndexFileHeader header;
  std::string payload;
  Status s = read_index_file(path, &header, &payload);
  IndexOrigin origin = IndexOrigin::kRebuilt;
  if (s.is_ok() && header.collection_id != c->id) {
    s = corruption(path + " belongs to collection " + std::to_string(header.collection_id));
  }
  if (s.is_ok() && header.sequence > c->log_seq) {
    // The file reflects writes the store does not have (unsynced WAL lost in a power cut).
    s = corruption(path + " is ahead of the store (sequence " + std::to_string(header.sequence) +
                   " > " + std::to_string(c->log_seq) + ")");
  }
  if (s.is_ok()) {
    auto index = make_vector_index_from(c->index_config, payload);
    payload.clear();
    payload.shrink_to_fit();
    if (index.is_ok()) {
      c->index = std::move(index).value();
      c->applied_seq = header.sequence;
      bool changed = false;
      s = catch_up(c, c->index.get(), header.sequence, &changed);
      if (s.is_ok()) c->applied_seq = c->log_seq;
      c->pending = c->index->pending();  // the inserter thread starts after open
      if (s.is_ok() && c->index->size() != c->vectors.load()) {
        s = corruption("index holds " + std::to_string(c->index->size()) + " vectors, store " +
                       std::to_string(c->vectors.load()) + " vectors of " +
                       std::to_string(c->documents.load()) + " documents");
      }
      if (s.is_ok()) {
        origin = changed ? IndexOrigin::kCaughtUp : IndexOrigin::kLoaded;
        c->saved_seq = header.sequence;
        c->file_present = true;
      }
    } else {
      s = index.status();
    }
  }
  if (!s.is_ok()) {
    if (s.code() != StatusCode::kNotFound || c->documents.load() > 0) {
      spdlog::warn("store: collection '{}': {}; rebuilding its index from stored embeddings",
                   c->spec.name, s.to_string());
    }
    QS_RETURN_IF_ERROR(rebuild_index(c));
    origin = IndexOrigin::kRebuilt;
  }
  std::unique_lock<std::shared_mutex> lock(collections_mu_);
  origins_[c->spec.name] = origin;
  return Status::ok();
}

// The change log after from_seq: exactly the entries from_seq+1 .. log_seq (sequences are
// contiguous); a gap means the derived index (vector or lexical: `what`) is older than the
// trimmed log and cannot be caught up.
Status RocksCollectionStore::read_change_log(
    const CollectionState& c, uint64_t from_seq, const std::string& what,
    std::vector<std::pair<uint64_t, store::ChangeRecord>>* log) {
  Status decode_status;
  QS_RETURN_IF_ERROR(kv_->scan(
      store::changelog_key(c.id, from_seq + 1),
      store::collection_range_end(KeyPrefix::kChangeLog, c.id),
      [&](std::string_view key, std::string_view value) {
        uint64_t cid = 0, seq = 0;
        store::ChangeRecord change;
        if (!store::parse_changelog_key(key, &cid, &seq)) return true;
        decode_status = store::decode_change(value, &change);
        if (!decode_status.is_ok()) return false;
        log->emplace_back(seq, change);
        return true;
      }));
  QS_RETURN_IF_ERROR(decode_status);
  if (log->size() != c.log_seq - from_seq ||
      (!log->empty() && (log->front().first != from_seq + 1 || log->back().first != c.log_seq))) {
    return corruption("change log after sequence " + std::to_string(from_seq) + " is incomplete" +
                      what + " (" + std::to_string(log->size()) + " entries, counter at " +
                      std::to_string(c.log_seq) + ")");
  }
  return Status::ok();
}

Status RocksCollectionStore::catch_up(CollectionState* c, VectorIndex* index, uint64_t from_seq,
                                      bool* changed) {
  std::vector<std::pair<uint64_t, store::ChangeRecord>> log;
  QS_RETURN_IF_ERROR(read_change_log(*c, from_seq, "", &log));
  *changed = !log.empty();
  if (log.empty()) return Status::ok();
  // Embeddings of the added labels that are still current (label -> id -> record.label == label).
  std::vector<std::string> label_keys;
  std::vector<int64_t> add_labels;
  for (const auto& [seq, change] : log) {
    if (change.op == store::ChangeOp::kAdd) {
      add_labels.push_back(change.label);
      label_keys.push_back(store::label_key(c->id, change.label));
    }
  }
  std::vector<std::optional<std::string>> ids;
  QS_RETURN_IF_ERROR(kv_->multi_get(label_keys, &ids));
  std::vector<std::string> doc_keys;
  std::vector<int64_t> doc_labels;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!ids[i]) continue;  // removed or replaced later in the log
    doc_keys.push_back(store::document_key(c->id, *ids[i]));
    doc_labels.push_back(add_labels[i]);
  }
  std::vector<std::optional<std::string>> docs;
  QS_RETURN_IF_ERROR(kv_->multi_get(doc_keys, &docs));
  const size_t d = static_cast<size_t>(c->spec.dimension);
  std::unordered_map<int64_t, std::vector<float>> embeddings;
  for (size_t i = 0; i < docs.size(); ++i) {
    if (!docs[i]) continue;
    store::DocumentRecord rec;
    QS_RETURN_IF_ERROR(store::decode_document(*docs[i], &rec, store::kPartEmbedding));
    if (!rec.owns(doc_labels[i])) continue;
    if (rec.embedding.size() != static_cast<size_t>(rec.label_count()) * d) {
      return corruption("stored embedding has the wrong dimension");
    }
    // A chunked document's label i is its chunk i.
    const size_t row = static_cast<size_t>(doc_labels[i] - rec.label);
    embeddings[doc_labels[i]].assign(rec.embedding.begin() + row * d,
                                     rec.embedding.begin() + (row + 1) * d);
  }
  // Apply in log order, batching runs of the same op.
  size_t i = 0;
  while (i < log.size()) {
    const store::ChangeOp op = log[i].second.op;
    std::vector<int64_t> labels;
    std::vector<float> rows;
    for (; i < log.size() && log[i].second.op == op; ++i) {
      const int64_t label = log[i].second.label;
      if (op == store::ChangeOp::kRemove) {
        labels.push_back(label);
        continue;
      }
      auto it = embeddings.find(label);
      if (it == embeddings.end() || index->contains(label)) continue;
      labels.push_back(label);
      rows.insert(rows.end(), it->second.begin(), it->second.end());
    }
    if (op == store::ChangeOp::kRemove) {
      QS_RETURN_IF_ERROR(index->remove(static_cast<int64_t>(labels.size()), labels.data()));
    } else if (!labels.empty()) {
      QS_RETURN_IF_ERROR(index->add(static_cast<int64_t>(labels.size()), labels.data(), rows.data()));
    }
  }
  return Status::ok();
}

void RocksCollectionStore::log_progress(const CollectionState* c, const char* what, int64_t done,
                                        int64_t total, const Job* job, int64_t* last_log) const {
  const int64_t interval_ms = static_cast<int64_t>(options_.progress_log_interval_s) * 1000;
  const int64_t now = now_ms();
  if (interval_ms <= 0 || now - *last_log < interval_ms) return;
  *last_log = now;
  JobSnapshot s = job->snapshot();
  spdlog::info("store: collection '{}': {}: {} of {} documents ({:.0f}/s, job {})", c->spec.name,
               what, done, total, s.rate, s.id);
}

Status RocksCollectionStore::rebuild_index(CollectionState* c) {
  JobHandle job = JobRegistry::global().start("index_rebuild", c->spec.name, c->documents.load());
  job->set_phase("reading stored embeddings");
  const int64_t t0 = now_ms();
  int64_t last_log = t0;
  spdlog::info("store: collection '{}': rebuilding the {} index from {} stored documents",
               c->spec.name, c->index_config.type, c->documents.load());
  Status st = rebuild_index_into(c, job.get(), &last_log);
  job.finish(st);
  if (st.is_ok())
    spdlog::info("store: collection '{}': rebuilt the index of {} vectors in {} ms", c->spec.name,
                 c->vectors.load(), now_ms() - t0);
  else
    spdlog::error("store: collection '{}': index rebuild failed: {}", c->spec.name,
                  st.to_string());
  return st;
}

Status RocksCollectionStore::rebuild_index_into(CollectionState* c, Job* job, int64_t* last_log) {
  QS_ASSIGN_OR_RETURN(std::unique_ptr<VectorIndex> index, make_vector_index(c->index_config));
  const size_t d = static_cast<size_t>(c->spec.dimension);
  constexpr size_t kBatch = 4096;
  std::vector<int64_t> labels;
  std::vector<float> rows;
  int64_t count = 0, vector_count = 0;
  Status inner;
  auto flush = [&]() {
    if (labels.empty()) return Status::ok();
    Status s = index->add(static_cast<int64_t>(labels.size()), labels.data(), rows.data());
    // Not shared yet: straight into the graph (HNSW), batch by batch.
    if (s.is_ok()) s = index->absorb_pending(index->pending());
    labels.clear();
    rows.clear();
    return s;
  };
  QS_RETURN_IF_ERROR(kv_->scan(store::collection_range_begin(KeyPrefix::kDocument, c->id),
                               store::collection_range_end(KeyPrefix::kDocument, c->id),
                               [&](std::string_view, std::string_view value) {
                                 store::DocumentRecord rec;
                                 inner = store::decode_document(value, &rec, store::kPartEmbedding);
                                 if (!inner.is_ok()) return false;
                                 if (rec.embedding.size() !=
                                     static_cast<size_t>(rec.label_count()) * d) {
                                   inner = corruption("stored embedding has the wrong dimension");
                                   return false;
                                 }
                                 for (int64_t l = 0; l < rec.label_count(); ++l) {
                                   labels.push_back(rec.label + l);  // chunk l of the document
                                 }
                                 rows.insert(rows.end(), rec.embedding.begin(), rec.embedding.end());
                                 ++count;
                                 vector_count += rec.label_count();
                                 if (labels.size() >= kBatch) {
                                   inner = flush();
                                   job->set_done(count);
                                   log_progress(c, "rebuilding the index", count,
                                                c->documents.load(), job, last_log);
                                 }
                                 return inner.is_ok();
                               }));
  QS_RETURN_IF_ERROR(inner);
  QS_RETURN_IF_ERROR(flush());
  job->set_done(count);
  if (count != c->documents.load() || vector_count != c->vectors.load()) {
    spdlog::warn("store: collection '{}': counters said {} documents / {} vectors, found {} / {}; "
                 "fixing the counters",
                 c->spec.name, c->documents.load(), c->vectors.load(), count, vector_count);
    store::WriteBatch batch;
    std::string v, w;
    store::put_i64_be(&v, count);
    store::put_i64_be(&w, vector_count);
    batch.put(store::counter_key(c->id, CounterKind::kDocuments), v);
    batch.put(store::counter_key(c->id, CounterKind::kVectors), w);
    QS_RETURN_IF_ERROR(kv_->write(&batch));
    c->documents = count;
    c->vectors = vector_count;
  }
  std::unique_lock<IndexMutex> lock(c->index_mu);
  c->index = std::move(index);
  c->applied_seq = c->log_seq;
  c->pending = c->index->pending();
  c->saved_seq = 0;
  c->file_present = false;
  return Status::ok();
}

Status RocksCollectionStore::save_collection(CollectionState* c) {
  std::lock_guard<std::mutex> save_lock(c->save_mu);
  if (c->dropped_flag) return Status::ok();
  std::string payload;
  uint64_t seq = 0;
  {
    std::shared_lock<IndexMutex> lock(c->index_mu);
    seq = c->applied_seq;
    if (c->file_present && seq == c->saved_seq) return Status::ok();
    QS_RETURN_IF_ERROR(c->index->serialize(&payload));
  }
  const int64_t writes_at_save = c->writes_since_save.load();
  const int64_t t0 = now_ms();
  QS_RETURN_IF_ERROR(write_index_file(index_path(c->id), {c->id, seq}, payload));
  spdlog::info("store: collection '{}': saved the index ({} vectors, {} bytes, sequence {}) in {} ms",
               c->spec.name, c->vectors.load(), payload.size(), seq, now_ms() - t0);
  c->saved_seq = seq;
  c->file_present = true;
  c->writes_since_save.fetch_sub(writes_at_save);
  c->last_save_ms = now_ms();
  // The file now covers the log up to seq: trim it (unsynced: a lost trim only replays no-ops),
  // but keep what the lexical index has not applied yet.
  const uint64_t trim_to = c->spec.lexical ? std::min<uint64_t>(seq, c->lexical_seq.load()) : seq;
  store::WriteBatch trim;
  trim.delete_range(store::collection_range_begin(KeyPrefix::kChangeLog, c->id),
                    store::changelog_key(c->id, trim_to + 1));
  return kv_->write(&trim, false);
}

Status RocksCollectionStore::optimize_index(CollectionState* c) {
  std::lock_guard<std::mutex> save_lock(c->save_mu);  // no log trimming while we work
  if (c->dropped_flag) return Status::ok();
  std::vector<int64_t> labels;
  std::vector<float> vectors;
  uint64_t seq = 0;
  bool lossy = false;
  {
    std::shared_lock<IndexMutex> lock(c->index_mu);
    if (!c->index->wants_optimize()) return Status::ok();
    lossy = c->index->lossy();
    if (!lossy) QS_RETURN_IF_ERROR(c->index->export_live(&labels, &vectors));
    seq = c->applied_seq;
  }
  // A quantized index holds approximations: the replacement (IVF-PQ retraining, an sq8 graph
  // rebuild) learns from the stored embeddings instead. Read after `seq`, so whatever the scan
  // sees beyond it is replayed again by catch_up (idempotent).
  if (lossy) QS_RETURN_IF_ERROR(scan_stored_vectors(c, &labels, &vectors));
  const int64_t t0 = now_ms();
  JobHandle job = JobRegistry::global().start("index_optimize", c->spec.name,
                                              static_cast<int64_t>(labels.size()));
  job->set_phase("building the " + c->index_config.type + " index");
  spdlog::info("store: collection '{}': optimising the {} index of {} vectors", c->spec.name,
               c->index_config.type, labels.size());
  QS_ASSIGN_OR_RETURN(std::unique_ptr<VectorIndex> fresh, make_vector_index(c->index_config));
  // In batches, each moved into the graph at once (HNSW: no second full copy in the buffer).
  constexpr size_t kBatch = 16384;
  const size_t d = static_cast<size_t>(c->spec.dimension);
  for (size_t start = 0; start < labels.size(); start += kBatch) {
    const size_t count = std::min(kBatch, labels.size() - start);
    Status s = fresh->add(static_cast<int64_t>(count), labels.data() + start,
                          vectors.data() + start * d);
    if (s.is_ok()) s = fresh->absorb_pending(fresh->pending());
    if (!s.is_ok()) {
      job.finish(s);
      return s;
    }
    job->set_done(static_cast<int64_t>(start + count));
  }
  job->set_phase("optimising");
  if (Status s = fresh->optimize(); !s.is_ok()) {
    job.finish(s);
    return s;
  }
  job->set_done(static_cast<int64_t>(labels.size()));
  job->set_phase("catching up with writes made meanwhile");
  const size_t built = labels.size();
  labels.clear();
  labels.shrink_to_fit();
  vectors.clear();
  vectors.shrink_to_fit();
  std::lock_guard<std::mutex> write_lock(c->write_mu);
  if (c->dropped) {
    job.finish(cancelled("the collection was deleted"));
    return Status::ok();
  }
  bool changed = false;
  if (Status s = catch_up(c, fresh.get(), seq, &changed); !s.is_ok()) {
    job.finish(s);
    return s;
  }
  job.finish(Status::ok());
  {
    std::unique_lock<IndexMutex> lock(c->index_mu);
    c->index = std::move(fresh);
    c->applied_seq = c->log_seq;
    note_pending(c);
  }
  c->writes_since_save.fetch_add(1);  // save the optimised index soon
  spdlog::info("store: collection '{}': optimised {} index of {} vectors in {} ms", c->spec.name,
               c->index_config.type, built, now_ms() - t0);
  return Status::ok();
}

Status RocksCollectionStore::scan_stored_vectors(CollectionState* c, std::vector<int64_t>* labels,
                                                 std::vector<float>* vectors) {
  const size_t d = static_cast<size_t>(c->spec.dimension);
  labels->clear();
  vectors->clear();
  Status inner;
  QS_RETURN_IF_ERROR(kv_->scan(store::collection_range_begin(KeyPrefix::kDocument, c->id),
                               store::collection_range_end(KeyPrefix::kDocument, c->id),
                               [&](std::string_view, std::string_view value) {
                                 store::DocumentRecord rec;
                                 inner = store::decode_document(value, &rec, store::kPartEmbedding);
                                 if (!inner.is_ok()) return false;
                                 if (rec.embedding.size() != static_cast<size_t>(rec.label_count()) * d) {
                                   inner = corruption("stored embedding has the wrong dimension");
                                   return false;
                                 }
                                 for (int64_t l = 0; l < rec.label_count(); ++l) labels->push_back(rec.label + l);
                                 vectors->insert(vectors->end(), rec.embedding.begin(), rec.embedding.end());
                                 return true;
                               }));
  return inner;
}

Status RocksCollectionStore::optimize_due_indexes() {
  std::vector<std::shared_ptr<CollectionState>> all;
  {
    std::shared_lock<std::shared_mutex> lock(collections_mu_);
    for (const auto& [name, c] : collections_) all.push_back(c);
  }
  for (const auto& c : all) {
    QS_RETURN_IF_ERROR(optimize_index(c.get()).with_context("optimising '" + c->spec.name + "'"));
  }
  return Status::ok();
}

Status RocksCollectionStore::save_indexes() {
  std::vector<std::shared_ptr<CollectionState>> all;
  {
    std::shared_lock<std::shared_mutex> lock(collections_mu_);
    for (const auto& [name, c] : collections_) all.push_back(c);
  }
  Status first;
  for (const auto& c : all) {
    Status s = save_collection(c.get());
    if (!s.is_ok()) {
      spdlog::error("store: saving the index of '{}': {}", c->spec.name, s.to_string());
      if (first.is_ok()) first = s.with_context("saving the index of '" + c->spec.name + "'");
    }
  }
  return first;
}

void RocksCollectionStore::remove_stale_index_files() {
  std::error_code ec;
  std::vector<uint64_t> live;
  {
    std::shared_lock<std::shared_mutex> lock(collections_mu_);
    for (const auto& [name, c] : collections_) live.push_back(c->id);
  }
  for (const auto& entry : fs::directory_iterator(fs::path(options_.data_dir) / "indexes", ec)) {
    const std::string name = entry.path().filename().string();
    const std::string stem = name.substr(0, name.find('.'));
    bool keep = false;
    for (uint64_t id : live) keep = keep || (stem == std::to_string(id) && name == stem + ".faiss");
    if (!keep) fs::remove(entry.path(), ec);
  }
}

void RocksCollectionStore::saver_loop() {
  const int64_t interval_ms = static_cast<int64_t>(options_.index_save_interval_s) * 1000;
  std::unique_lock<std::mutex> lock(saver_mu_);
  while (!stop_saver_) {
    saver_cv_.wait_for(lock, std::chrono::milliseconds(std::min<int64_t>(interval_ms, 1000)));
    if (stop_saver_) break;
    lock.unlock();
    std::vector<std::shared_ptr<CollectionState>> all;
    {
      std::shared_lock<std::shared_mutex> clock(collections_mu_);
      for (const auto& [name, c] : collections_) all.push_back(c);
    }
    for (const auto& c : all) {
      Status s = optimize_index(c.get());
      if (!s.is_ok()) spdlog::error("store: optimising the index of '{}': {}", c->spec.name, s.to_string());
    }
    const int64_t now = now_ms();
    for (const auto& c : all) {
      const bool dirty = c->writes_since_save.load() > 0 || !c->file_present.load();
      const bool due = now - c->last_save_ms.load() >= interval_ms ||
                       c->writes_since_save.load() >= options_.index_save_writes;
      if (!dirty || !due) continue;
      Status s = save_collection(c.get());
      if (!s.is_ok()) spdlog::error("store: saving the index of '{}': {}", c->spec.name, s.to_string());
    }
    lock.lock();
  }
}

}  // namespace qsearch

namespace qsearch {

void RocksCollectionStore::set_save_on_close(bool save) { save_on_close_ = save; }

StatusOr<std::vector<std::string>> RocksCollectionStore::document_ids(const std::string& name) {
  auto c = find(name);
  if (!c) return not_found("collection '" + name + "' not found");
  std::vector<std::string> ids;
  QS_RETURN_IF_ERROR(kv_->scan(store::collection_range_begin(KeyPrefix::kDocument, c->id),
                               store::collection_range_end(KeyPrefix::kDocument, c->id),
                               [&](std::string_view key, std::string_view) {
                                 uint64_t cid = 0;
                                 std::string id;
                                 if (store::parse_document_key(key, &cid, &id)) ids.push_back(id);
                                 return true;
                               }));
  return ids;
}

Status RocksCollectionStore::check_consistency(const std::string& name) {
  auto c = find(name);
  if (!c) return not_found("collection '" + name + "' not found");
  std::lock_guard<std::mutex> write_lock(c->write_mu);
  std::shared_lock<IndexMutex> index_lock(c->index_mu);
  int64_t count = 0;
  Status problem;
  std::vector<std::pair<int64_t, std::string>> labels;
  QS_RETURN_IF_ERROR(kv_->scan(
      store::collection_range_begin(KeyPrefix::kDocument, c->id),
      store::collection_range_end(KeyPrefix::kDocument, c->id),
      [&](std::string_view key, std::string_view value) {
        uint64_t cid = 0;
        std::string id;
        store::DocumentRecord rec;
        if (!store::parse_document_key(key, &cid, &id)) return true;
        problem = store::decode_document(value, &rec, store::kPartLabel);
        if (!problem.is_ok()) return false;
        for (int64_t l = rec.label; l < rec.label + rec.label_count(); ++l) {
          if (!c->index->contains(l)) {
            problem = corruption("document '" + id + "' (label " + std::to_string(l) +
                                 ") is not in the index");
            return false;
          }
          labels.emplace_back(l, id);
        }
        ++count;
        return true;
      }));
  QS_RETURN_IF_ERROR(problem);
  std::vector<std::string> keys;
  for (const auto& [label, id] : labels) keys.push_back(store::label_key(c->id, label));
  std::vector<std::optional<std::string>> ids;
  QS_RETURN_IF_ERROR(kv_->multi_get(keys, &ids));
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!ids[i] || *ids[i] != labels[i].second) {
      return corruption("label " + std::to_string(labels[i].first) + " does not map back to '" +
                        labels[i].second + "'");
    }
  }
  const int64_t vectors = static_cast<int64_t>(labels.size());
  if (count != c->documents.load() || vectors != c->index->size()) {
    return corruption("counts disagree: " + std::to_string(count) + " stored documents (" +
                      std::to_string(vectors) + " vectors), counter " +
                      std::to_string(c->documents.load()) + ", index " +
                      std::to_string(c->index->size()));
  }
  return check_lexical(c.get(), labels);
}

}  // namespace qsearch
