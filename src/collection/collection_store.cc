#include "collection/collection_store.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <unordered_map>

#include "store/keys.h"
#include "store/record.h"

namespace qsearch {

namespace fs = std::filesystem;
using store::CounterKind;
using store::KeyPrefix;

static constexpr const char* kFormatVersion = "1";

void normalize_l2(float* v, int d) {
  double ss = 0;
  for (int i = 0; i < d; ++i) ss += static_cast<double>(v[i]) * v[i];
  if (ss <= 0) return;
  const float inv = static_cast<float>(1.0 / std::sqrt(ss));
  for (int i = 0; i < d; ++i) v[i] *= inv;
}

std::vector<float> normalized_mean(const std::vector<float>& rows, int d) {
  const size_t dim = static_cast<size_t>(d);
  std::vector<float> mean(dim, 0.0f);
  for (size_t r = 0; r + dim <= rows.size(); r += dim)
    for (size_t j = 0; j < dim; ++j) mean[j] += rows[r + j];
  normalize_l2(mean.data(), d);
  return mean;
}

bool metadata_matches(const nlohmann::json& metadata, const nlohmann::json& filter) {
  auto f = Filter::parse(filter);
  return f.is_ok() && f->matches(metadata);
}

static std::string encode_i64(int64_t v) {
  std::string s;
  store::put_i64_be(&s, v);
  return s;
}

VectorIndexConfig index_config_of(const CollectionSpec& spec, const std::vector<int>& gpu_devices) {
  VectorIndexConfig c;
  c.type = spec.index.type;
  c.dimension = spec.dimension;
  c.metric = spec.metric == Metric::kL2 ? IndexMetric::kL2 : IndexMetric::kInnerProduct;
  c.hnsw_m = spec.index.hnsw_m;
  c.hnsw_ef_construction = spec.index.hnsw_ef_construction;
  c.hnsw_ef_search = spec.index.hnsw_ef_search;
  c.ivf_nlist = spec.index.ivf_nlist;
  c.ivf_nprobe = spec.index.ivf_nprobe;
  c.ivf_train_min = spec.index.ivf_train_min;
  c.quantizer = spec.index.quantizer;
  c.pq_m = spec.index.pq_m > 0 ? spec.index.pq_m : IndexSpec::default_pq_m(spec.dimension);
  c.pq_nbits = spec.index.pq_nbits;
  c.gpu_devices = gpu_devices;
  c.gpu_precision = spec.index.gpu_precision;
  c.gpu_rescore = spec.index.gpu_rescore;
  return c;
}

StatusOr<std::unique_ptr<CollectionStore>> CollectionStore::open(const StoreOptions& options) {
  return RocksCollectionStore::open(options);
}

RocksCollectionStore::RocksCollectionStore(StoreOptions options) : options_(std::move(options)) {}

StatusOr<std::unique_ptr<CollectionStore>> RocksCollectionStore::open(const StoreOptions& options) {
  if (options.data_dir.empty()) return invalid_argument("store: data_dir is empty");
  std::error_code ec;
  for (const char* dir : {"indexes", "lexical"}) {
    fs::create_directories(fs::path(options.data_dir) / dir, ec);
    if (ec) return io_error("creating " + options.data_dir + "/" + dir + ": " + ec.message());
  }
  std::unique_ptr<RocksCollectionStore> s(new RocksCollectionStore(options));
  store::KvOptions kv_options;
  kv_options.path = (fs::path(options.data_dir) / "db").string();
  kv_options.sync = options.sync;
  QS_ASSIGN_OR_RETURN(s->kv_, store::KvStore::open(kv_options));

  // Format version and model identity.
  std::string value;
  Status st = s->kv_->get(store::meta_key("format_version"), &value);
  store::WriteBatch meta;
  if (st.code() == StatusCode::kNotFound) {
    meta.put(store::meta_key("format_version"), kFormatVersion);
  } else if (!st.is_ok()) {
    return st.with_context("reading store format version");
  } else if (value != kFormatVersion) {
    return corruption("data directory " + options.data_dir + " has store format " + value +
                      ", this qsearch reads format " + kFormatVersion);
  }
  if (!options.model.empty()) {
    st = s->kv_->get(store::meta_key("model"), &value);
    if (st.is_ok() && value != options.model && value != options.legacy_model) {
      spdlog::warn("store: data was written with model '{}', now serving '{}'; stored embeddings "
                   "of existing collections come from the old model",
                   value, options.model);
    }
    meta.put(store::meta_key("model"), options.model);
  }
  if (s->kv_->get(store::meta_key("next_collection_id"), &value).is_ok() && value.size() == 8) {
    s->next_collection_id_ = store::get_u64_be(value);
  }
  if (meta.count() > 0) QS_RETURN_IF_ERROR(s->kv_->write(&meta, true));

  QS_RETURN_IF_ERROR(s->load_collections());
  s->remove_stale_index_files();
  s->remove_stale_lexical_files();
  if (options.background_insert) {
    s->insert_work_ = true;  // loaded indexes may hold pending vectors
    s->inserter_ = std::thread([raw = s.get()] { raw->inserter_loop(); });
  }
  if (options.index_save_interval_s > 0) {
    s->saver_ = std::thread([raw = s.get()] { raw->saver_loop(); });
  } else {
    QS_RETURN_IF_ERROR(s->optimize_due_indexes());
  }
  return std::unique_ptr<CollectionStore>(std::move(s));
}

RocksCollectionStore::~RocksCollectionStore() {
  {
    std::lock_guard<std::mutex> lock(saver_mu_);
    stop_saver_ = true;
  }
  saver_cv_.notify_all();
  if (saver_.joinable()) saver_.join();
  {
    std::lock_guard<std::mutex> lock(inserter_mu_);
    stop_inserter_ = true;
  }
  inserter_cv_.notify_all();
  drained_cv_.notify_all();
  if (inserter_.joinable()) inserter_.join();
  // What is still pending is saved with the index (HnswIndex::serialize).
  if (!save_on_close_) return;
  Status s = save_indexes();
  if (!s.is_ok()) spdlog::error("store: saving indexes at shutdown: {}", s.to_string());
}

std::shared_ptr<CollectionState> RocksCollectionStore::find(const std::string& name) const {
  std::shared_lock<std::shared_mutex> lock(collections_mu_);
  auto it = collections_.find(name);
  return it == collections_.end() ? nullptr : it->second;
}

std::string RocksCollectionStore::index_path(uint64_t cid) const {
  return (fs::path(options_.data_dir) / "indexes" / (std::to_string(cid) + ".faiss")).string();
}

CollectionInfo RocksCollectionStore::info_of(const CollectionState& c) const {
  CollectionInfo info;
  info.spec = c.spec;
  info.spec.model = c.model();
  info.document_count = c.documents.load();
  info.instance = c.id;
  std::shared_lock<IndexMutex> lock(c.index_mu);
  info.index_vectors = c.index->stored();
  info.index_pending = c.index->pending();
  info.index_trained_on = c.index->trained_size();
  info.index_bytes = c.index->memory_bytes();
  info.index_device_bytes = c.index->device_bytes();
  info.index_devices = c.index->device_shards();
  info.index_type = c.index->type();
  info.index_fallback_reason = c.index->fallback_reason();
  return info;
}

Status RocksCollectionStore::create_collection(const CollectionSpec& spec_in) {
  CollectionSpec spec = spec_in;
  // The spec's own rules (collection/options.h), whoever built it: a round trip through the
  // stored form also proves that it will load again.
  QS_ASSIGN_OR_RETURN(CollectionSpec checked, CollectionSpec::from_json(spec.to_json()));
  (void)checked;
  if (spec.model.empty()) spec.model = options_.model;
  auto state = std::make_shared<CollectionState>();
  state->spec = spec;
  state->set_model(spec.model);
  state->index_config = index_config_of(spec, options_.gpu_devices);
  auto index = make_vector_index(state->index_config);
  if (!index.is_ok()) return unprocessable(index.status().message());
  state->index = std::move(index).value();

  std::lock_guard<std::mutex> create_lock(create_mu_);
  if (find(spec.name)) return already_exists("collection '" + spec.name + "' already exists");
  const uint64_t cid = next_collection_id_;
  state->id = cid;
  if (spec.lexical) {
    auto lexical = LexicalIndex::create(lexical_path(cid), cid);
    if (!lexical.is_ok()) return lexical.status().with_context("creating the lexical index");
    state->lexical = std::move(lexical).value();
  }
  store::WriteBatch batch;
  std::string cid_value;
  store::put_u64_be(&cid_value, cid);
  std::string next_value;
  store::put_u64_be(&next_value, cid + 1);
  batch.put(store::name_key(spec.name), cid_value);
  batch.put(store::spec_key(cid), spec.to_json().dump());
  batch.put(store::counter_key(cid, CounterKind::kNextLabel), encode_i64(0));
  batch.put(store::counter_key(cid, CounterKind::kDocuments), encode_i64(0));
  batch.put(store::counter_key(cid, CounterKind::kVectors), encode_i64(0));
  batch.put(store::counter_key(cid, CounterKind::kLogSeq), encode_i64(0));
  batch.put(store::counter_key(cid, CounterKind::kMetaIndex), encode_i64(1));
  batch.put(store::meta_key("next_collection_id"), next_value);
  QS_RETURN_IF_ERROR(kv_->write(&batch));
  next_collection_id_ = cid + 1;
  std::unique_lock<std::shared_mutex> lock(collections_mu_);
  collections_[spec.name] = state;
  origins_[spec.name] = IndexOrigin::kCreated;
  if (spec.lexical) lexical_origins_[spec.name] = IndexOrigin::kCreated;
  spdlog::info("store: created collection '{}' (dimension {}, metric {}, index {})", spec.name,
               spec.dimension, metric_name(spec.metric), state->index_config.type);
  if (!state->index->fallback_reason().empty())
    spdlog::warn("store: collection '{}': index {} runs as {}: {}", spec.name, state->index_config.type,
                 state->index->type(), state->index->fallback_reason());
  return Status::ok();
}

Status RocksCollectionStore::delete_collection(const std::string& name) {
  std::lock_guard<std::mutex> create_lock(create_mu_);
  auto c = find(name);
  if (!c) return not_found("collection '" + name + "' not found");
  std::lock_guard<std::mutex> save_lock(c->save_mu);
  std::lock_guard<std::mutex> write_lock(c->write_mu);
  store::WriteBatch batch;
  batch.del(store::name_key(name));
  for (KeyPrefix p : {KeyPrefix::kSpec, KeyPrefix::kCounter, KeyPrefix::kDocument,
                      KeyPrefix::kLabel, KeyPrefix::kChangeLog, KeyPrefix::kMetaIndex,
                      KeyPrefix::kReembed}) {
    batch.delete_range(store::collection_range_begin(p, c->id), store::collection_range_end(p, c->id));
  }
  QS_RETURN_IF_ERROR(kv_->write(&batch));
  c->dropped = true;
  c->dropped_flag = true;
  {
    std::unique_lock<std::shared_mutex> lock(collections_mu_);
    collections_.erase(name);
    origins_.erase(name);
    lexical_origins_.erase(name);
  }
  {
    std::unique_lock<IndexMutex> lock(c->index_mu);
    c->lexical.reset();
  }
  LexicalIndex::remove_files(lexical_path(c->id));
  std::error_code ec;
  fs::remove(index_path(c->id), ec);
  fs::remove(index_path(c->id) + ".tmp", ec);
  spdlog::info("store: deleted collection '{}' ({} documents)", name, c->documents.load());
  return Status::ok();
}

StatusOr<CollectionInfo> RocksCollectionStore::get_collection(const std::string& name) {
  auto c = find(name);
  if (!c) return not_found("collection '" + name + "' not found");
  return info_of(*c);
}

std::vector<CollectionInfo> RocksCollectionStore::list_collections() {
  std::vector<std::shared_ptr<CollectionState>> all;
  {
    std::shared_lock<std::shared_mutex> lock(collections_mu_);
    for (const auto& [name, c] : collections_) all.push_back(c);
  }
  std::vector<CollectionInfo> out;
  for (const auto& c : all) out.push_back(info_of(*c));
  return out;
}

std::vector<std::pair<std::string, int64_t>> RocksCollectionStore::document_counts() {
  std::shared_lock<std::shared_mutex> lock(collections_mu_);
  std::vector<std::pair<std::string, int64_t>> out;
  for (const auto& [name, c] : collections_) out.emplace_back(name, c->documents.load());
  return out;
}

Status RocksCollectionStore::upsert(const std::string& collection,
                                    const std::vector<Document>& docs_in,
                                    const UpsertOptions& options) {
  if (options.written) *options.written = 0;
  if (!options.if_labels.empty() && options.if_labels.size() != docs_in.size())
    return internal_error("upsert: if_labels must have one entry per document");
  auto c = find(collection);
  if (!c && options.instance != 0) return collection_replaced(collection);
  if (!c) return not_found("collection '" + collection + "' not found");
  if (options.instance != 0 && c->id != options.instance) return collection_replaced(collection);
  const int d = c->spec.dimension;
  const bool chunked = c->spec.chunked();
  // Validate everything before writing anything; a later duplicate id replaces an earlier one.
  std::unordered_map<std::string, size_t> last;
  for (size_t i = 0; i < docs_in.size(); ++i) {
    const Document& doc = docs_in[i];
    QS_RETURN_IF_ERROR(check_document_id(doc.id));
    const size_t vectors_of_doc = doc.chunks.empty() ? 1 : doc.chunks.size();
    if (doc.embedding.size() != vectors_of_doc * static_cast<size_t>(d)) {
      return unprocessable("document '" + doc.id + "': embedding has " +
                           std::to_string(doc.embedding.size()) + " values, expected " +
                           std::to_string(vectors_of_doc) + " vector(s) of collection '" +
                           collection + "' dimension " + std::to_string(d));
    }
    if (!doc.chunks.empty() && !chunked) {
      return unprocessable("document '" + doc.id + "' has chunks, collection '" + collection +
                           "' has no \"chunking\" option");
    }
    for (const Chunk& ch : doc.chunks) {
      if (ch.start < 0 || ch.end < ch.start || ch.tokens < 0)
        return unprocessable("document '" + doc.id + "': a chunk has a bad range");
    }
    for (float v : doc.embedding) {
      if (!std::isfinite(v)) return unprocessable("document '" + doc.id + "': embedding is not finite");
    }
    if (c->spec.metric != Metric::kCosine) {
      // Bounded norms keep every inner product and squared distance finite.
      for (size_t r = 0; r < doc.embedding.size(); r += static_cast<size_t>(d)) {
        double ss = 0;
        for (int j = 0; j < d; ++j) ss += static_cast<double>(doc.embedding[r + j]) * doc.embedding[r + j];
        if (!(std::sqrt(ss) < kMaxVectorNorm))
          return unprocessable("document '" + doc.id + "': embedding norm is 1e18 or more (scores would overflow)");
      }
    }
    if (!doc.metadata.is_null() && !doc.metadata.is_object()) {
      return unprocessable("document '" + doc.id + "': metadata must be an object");
    }
    last[doc.id] = i;
  }
  std::vector<const Document*> docs;
  std::vector<int64_t> if_labels;  // parallel to docs when options.if_labels is given
  for (size_t i = 0; i < docs_in.size(); ++i) {
    if (last[docs_in[i].id] != i) continue;
    docs.push_back(&docs_in[i]);
    if (!options.if_labels.empty()) if_labels.push_back(options.if_labels[i]);
  }
  if (docs.empty() && !options.reembed_record) return Status::ok();
  const bool cosine = c->spec.metric == Metric::kCosine;

  std::unique_lock<std::mutex> write_lock(c->write_mu);
  if (c->dropped && options.instance != 0) return collection_replaced(collection);
  if (c->dropped) return not_found("collection '" + collection + "' not found");
  std::vector<std::string> keys;
  keys.reserve(docs.size());
  for (const Document* doc : docs) keys.push_back(store::document_key(c->id, doc->id));
  std::vector<std::optional<std::string>> old_values;
  QS_RETURN_IF_ERROR(kv_->multi_get(keys, &old_values));
  if (!if_labels.empty()) {
    // Conditional write: a document replaced or deleted since it was read is left alone.
    size_t kept = 0;
    for (size_t i = 0; i < docs.size(); ++i) {
      if (!old_values[i]) continue;
      store::DocumentRecord now;
      QS_RETURN_IF_ERROR(store::decode_document(*old_values[i], &now, store::kPartLabel)
                             .with_context("document '" + docs[i]->id + "'"));
      if (now.label != if_labels[i]) continue;
      if (kept != i) {  // (a self-move would empty the string)
        docs[kept] = docs[i];
        keys[kept] = std::move(keys[i]);
        old_values[kept] = std::move(old_values[i]);
      }
      ++kept;
    }
    docs.resize(kept);
    keys.resize(kept);
    old_values.resize(kept);
  }
  if (options.written) *options.written = static_cast<int64_t>(docs.size());
  // All vectors of the call, document after document (chunk after chunk); first_row[i] is the
  // first row of docs[i].
  std::vector<size_t> first_row(docs.size() + 1, 0);
  for (size_t i = 0; i < docs.size(); ++i) first_row[i + 1] = first_row[i] + docs[i]->embedding.size() / d;
  std::vector<float> vectors(first_row.back() * d);
  for (size_t i = 0; i < docs.size(); ++i) {
    std::copy(docs[i]->embedding.begin(), docs[i]->embedding.end(), vectors.begin() + first_row[i] * d);
  }
  if (cosine) {
    for (size_t r = 0; r < first_row.back(); ++r) normalize_l2(vectors.data() + r * d, d);
  }

  store::WriteBatch batch;
  std::vector<int64_t> old_labels, new_labels;
  std::vector<LexicalIndex::Entry> lexical_added;  // point into docs' texts
  int64_t next_label = c->next_label;
  uint64_t seq = c->log_seq;
  int64_t added_docs = 0;
  for (size_t i = 0; i < docs.size(); ++i) {
    const Document& doc = *docs[i];
    if (old_values[i]) {
      // The old version goes whole: every label (chunk) it owned, its metadata index entries.
      store::DocumentRecord old;
      QS_RETURN_IF_ERROR(store::decode_document(*old_values[i], &old, store::kPartMetadata)
                             .with_context("document '" + doc.id + "'"));
      auto old_metadata = nlohmann::json::parse(old.metadata_json, nullptr, false);
      if (old_metadata.is_discarded())
        return corruption("document '" + doc.id + "': stored metadata is not JSON");
      delete_metadata_entries(&batch, c->id, old_metadata, old.label);
      for (int64_t l = old.label; l < old.label + old.label_count(); ++l) {
        old_labels.push_back(l);
        batch.del(store::label_key(c->id, l));
        batch.put(store::changelog_key(c->id, ++seq),
                  store::encode_change({store::ChangeOp::kRemove, l}));
      }
    } else {
      ++added_docs;
    }
    store::DocumentRecord rec;
    rec.label = next_label;
    rec.tokens = doc.tokens;
    rec.truncated_tokens = doc.truncated_tokens;
    rec.text = doc.text;
    rec.metadata_json = doc.metadata.is_null() ? "{}" : doc.metadata.dump();
    rec.embedding.assign(vectors.begin() + first_row[i] * d, vectors.begin() + first_row[i + 1] * d);
    for (const Chunk& ch : doc.chunks) rec.chunks.push_back({ch.start, ch.end, ch.tokens});
    next_label += rec.label_count();
    if (c->lexical) append_lexical_entries(doc.text, rec.chunks, rec.label, &lexical_added);
    batch.put(keys[i], store::encode_document(rec));
    put_metadata_entries(&batch, c->id, doc.metadata.is_null() ? nlohmann::json::object() : doc.metadata,
                         rec.label, rec.label_count());
    for (int64_t l = rec.label; l < rec.label + rec.label_count(); ++l) {
      new_labels.push_back(l);
      batch.put(store::label_key(c->id, l), doc.id);
      batch.put(store::changelog_key(c->id, ++seq), store::encode_change({store::ChangeOp::kAdd, l}));
    }
  }
  const int64_t documents = c->documents.load() + added_docs;
  const int64_t vectors_now = c->vectors.load() + static_cast<int64_t>(new_labels.size()) -
                              static_cast<int64_t>(old_labels.size());
  batch.put(store::counter_key(c->id, CounterKind::kNextLabel), encode_i64(next_label));
  batch.put(store::counter_key(c->id, CounterKind::kDocuments), encode_i64(documents));
  batch.put(store::counter_key(c->id, CounterKind::kVectors), encode_i64(vectors_now));
  batch.put(store::counter_key(c->id, CounterKind::kLogSeq), encode_i64(static_cast<int64_t>(seq)));
  if (options.reembed_record) batch.put(store::reembed_key(c->id), *options.reembed_record);
  QS_RETURN_IF_ERROR(kv_->write(&batch));
  c->next_label = next_label;
  c->log_seq = seq;
  c->documents = documents;
  c->vectors = vectors_now;

  Status s;
  bool want_optimize = false;
  {
    std::unique_lock<IndexMutex> lock(c->index_mu);
    s = c->index->remove(static_cast<int64_t>(old_labels.size()), old_labels.data());
    if (s.is_ok()) {
      s = c->index->add(static_cast<int64_t>(new_labels.size()), new_labels.data(), vectors.data());
    }
    if (s.is_ok()) c->applied_seq = seq;
    want_optimize = s.is_ok() && c->index->wants_optimize();
    note_pending(c.get());
  }
  if (!s.is_ok()) {
    // The write is durable; bring the index back in line from the stored embeddings.
    spdlog::error("store: index update of '{}' failed ({}); rebuilding", collection, s.to_string());
    QS_RETURN_IF_ERROR(rebuild_index(c.get()));
  }
  QS_RETURN_IF_ERROR(update_lexical(c.get(), old_labels, lexical_added, seq));
  write_lock.unlock();
  settle_pending(c.get());
  after_write(c.get(), static_cast<int64_t>(new_labels.size()), want_optimize);
  return Status::ok();
}

void RocksCollectionStore::after_write(CollectionState* c, int64_t writes, bool want_optimize) {
  const bool save_due = c->writes_since_save.fetch_add(writes) + writes >= options_.index_save_writes;
  if (saver_.joinable()) {
    if (save_due || want_optimize) saver_cv_.notify_all();
  } else if (want_optimize) {
    // No background thread (index_save_interval_s = 0): optimise here, off the write lock.
    Status s = optimize_index(c);
    if (!s.is_ok()) spdlog::error("store: optimising the index of '{}': {}", c->spec.name, s.to_string());
  }
}

StatusOr<Document> RocksCollectionStore::get(const std::string& collection, const std::string& id,
                                             bool with_embedding) {
  auto c = find(collection);
  if (!c) return not_found("collection '" + collection + "' not found");
  std::string value;
  Status s = kv_->get(store::document_key(c->id, id), &value);
  if (s.code() == StatusCode::kNotFound) {
    return not_found("document '" + id + "' not found in collection '" + collection + "'");
  }
  QS_RETURN_IF_ERROR(s);
  store::DocumentRecord rec;
  QS_RETURN_IF_ERROR(store::decode_document(
      value, &rec, store::kPartText | store::kPartMetadata |
                       (with_embedding ? store::kPartEmbedding : store::kPartLabel)));
  Document doc;
  doc.id = id;
  doc.text = std::move(rec.text);
  doc.metadata = nlohmann::json::parse(rec.metadata_json, nullptr, false);
  if (doc.metadata.is_discarded()) return corruption("document '" + id + "': stored metadata is not JSON");
  doc.embedding = std::move(rec.embedding);
  for (const store::ChunkRecord& ch : rec.chunks) doc.chunks.push_back({ch.start, ch.end, ch.tokens});
  doc.tokens = rec.tokens;
  doc.truncated_tokens = rec.truncated_tokens;
  doc.label = rec.label;
  return doc;
}

Status RocksCollectionStore::remove(const std::string& collection, const std::string& id) {
  auto c = find(collection);
  if (!c) return not_found("collection '" + collection + "' not found");
  std::unique_lock<std::mutex> write_lock(c->write_mu);
  if (c->dropped) return not_found("collection '" + collection + "' not found");
  const std::string key = store::document_key(c->id, id);
  std::string value;
  Status s = kv_->get(key, &value);
  if (s.code() == StatusCode::kNotFound) {
    return not_found("document '" + id + "' not found in collection '" + collection + "'");
  }
  QS_RETURN_IF_ERROR(s);
  store::DocumentRecord old;
  QS_RETURN_IF_ERROR(store::decode_document(value, &old, store::kPartMetadata));
  auto old_metadata = nlohmann::json::parse(old.metadata_json, nullptr, false);
  if (old_metadata.is_discarded()) return corruption("document '" + id + "': stored metadata is not JSON");
  uint64_t seq = c->log_seq;
  const int64_t documents = c->documents.load() - 1;
  store::WriteBatch batch;
  batch.del(key);
  delete_metadata_entries(&batch, c->id, old_metadata, old.label);
  std::vector<int64_t> old_labels;
  for (int64_t l = old.label; l < old.label + old.label_count(); ++l) {
    old_labels.push_back(l);
    batch.del(store::label_key(c->id, l));
    batch.put(store::changelog_key(c->id, ++seq), store::encode_change({store::ChangeOp::kRemove, l}));
  }
  const int64_t vectors_now = c->vectors.load() - static_cast<int64_t>(old_labels.size());
  batch.put(store::counter_key(c->id, CounterKind::kDocuments), encode_i64(documents));
  batch.put(store::counter_key(c->id, CounterKind::kVectors), encode_i64(vectors_now));
  batch.put(store::counter_key(c->id, CounterKind::kLogSeq), encode_i64(static_cast<int64_t>(seq)));
  QS_RETURN_IF_ERROR(kv_->write(&batch));
  c->log_seq = seq;
  c->documents = documents;
  c->vectors = vectors_now;
  bool want_optimize = false;
  {
    std::unique_lock<IndexMutex> lock(c->index_mu);
    s = c->index->remove(static_cast<int64_t>(old_labels.size()), old_labels.data());
    if (s.is_ok()) c->applied_seq = seq;
    want_optimize = s.is_ok() && c->index->wants_optimize();
    note_pending(c.get());
  }
  if (!s.is_ok()) {
    spdlog::error("store: index removal in '{}' failed ({}); rebuilding", collection, s.to_string());
    QS_RETURN_IF_ERROR(rebuild_index(c.get()));
  }
  QS_RETURN_IF_ERROR(update_lexical(c.get(), old_labels, {}, seq));
  write_lock.unlock();
  after_write(c.get(), static_cast<int64_t>(old_labels.size()), want_optimize);
  return Status::ok();
}

StatusOr<RocksCollectionStore::IndexOrigin> RocksCollectionStore::index_origin(
    const std::string& name) {
  std::shared_lock<std::shared_mutex> lock(collections_mu_);
  auto it = origins_.find(name);
  if (it == origins_.end()) return not_found("collection '" + name + "' not found");
  return it->second;
}

}  // namespace qsearch
