// Documents API v2 of the store: count, scroll, bulk delete (by ids or by filter) and metadata
// patches (collections.h states the contracts).
//
// Scroll order is the document key order (collection id, then id bytes), so a cursor is the
// last id returned: ids are unique and never move, hence a document present for the whole
// scroll is passed exactly once whatever else is written. The cursor carries the collection's
// internal id so a cursor of a deleted and re-created collection is refused.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "collection/collection_store.h"
#include "store/keys.h"
#include "store/record.h"

namespace qsearch {
namespace {

using store::CounterKind;

constexpr uint8_t kCursorVersion = 1;
constexpr char kHex[] = "0123456789abcdef";

std::string encode_i64(int64_t v) {
  std::string s;
  store::put_i64_be(&s, v);
  return s;
}

std::string encode_cursor(uint64_t cid, const std::string& last_id) {
  std::string raw(1, static_cast<char>(kCursorVersion));
  store::put_u64_be(&raw, cid);
  raw += last_id;
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char ch : raw) {
    out.push_back(kHex[ch >> 4]);
    out.push_back(kHex[ch & 15]);
  }
  return out;
}

Status decode_cursor(const std::string& cursor, uint64_t cid, std::string* last_id) {
  auto bad = [] { return invalid_argument("\"cursor\" is not a cursor of this scroll"); };
  if (cursor.size() % 2 != 0 || cursor.size() < 18) return bad();
  std::string raw;
  raw.reserve(cursor.size() / 2);
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < cursor.size(); i += 2) {
    int hi = nibble(cursor[i]), lo = nibble(cursor[i + 1]);
    if (hi < 0 || lo < 0) return bad();
    raw.push_back(static_cast<char>(hi << 4 | lo));
  }
  if (static_cast<uint8_t>(raw[0]) != kCursorVersion) return bad();
  if (store::get_u64_be(std::string_view(raw).substr(1, 8)) != cid)
    return invalid_argument(
        "\"cursor\" belongs to another collection (or one deleted and re-created since)");
  *last_id = raw.substr(9);
  if (last_id->empty()) return bad();
  return Status::ok();
}

StatusOr<nlohmann::json> parse_metadata(const std::string& text, const std::string& id) {
  auto metadata = nlohmann::json::parse(text, nullptr, false);
  if (metadata.is_discarded())
    return corruption("document '" + id + "': stored metadata is not JSON");
  return metadata;
}

// Visits collection `cid`'s documents in id order from key `begin` (from its first document
// when empty): fn(id, record decoded with `parts`, metadata parsed when `parts` holds it)
// returns false to stop. A record or metadata that does not decode ends the scan with its error.
using DocumentVisitor =
    std::function<bool(std::string& id, store::DocumentRecord& rec, nlohmann::json& metadata)>;
Status scan_documents(const store::KvStore& kv, uint64_t cid, std::string begin, unsigned parts,
                      const DocumentVisitor& fn) {
  if (begin.empty()) begin = store::collection_range_begin(store::KeyPrefix::kDocument, cid);
  Status problem;
  QS_RETURN_IF_ERROR(kv.scan(begin, store::collection_range_end(store::KeyPrefix::kDocument, cid),
                             [&](std::string_view key, std::string_view value) {
                               uint64_t key_cid = 0;
                               std::string id;
                               if (!store::parse_document_key(key, &key_cid, &id)) return true;
                               store::DocumentRecord rec;
                               problem = store::decode_document(value, &rec, parts);
                               if (!problem.is_ok()) return false;
                               nlohmann::json metadata;
                               if (parts & store::kPartMetadata) {
                                 auto m = parse_metadata(rec.metadata_json, id);
                                 if (!m.is_ok()) {
                                   problem = m.status();
                                   return false;
                                 }
                                 metadata = std::move(m).value();
                               }
                               return fn(id, rec, metadata);
                             }));
  return problem;
}

}  // namespace

StatusOr<int64_t> RocksCollectionStore::count(const std::string& collection, const Filter& filter) {
  auto c = find(collection);
  if (!c) return not_found("collection '" + collection + "' not found");
  if (filter.matches_all()) return c->documents.load();
  const size_t limit = static_cast<size_t>(std::max<int64_t>(1000, c->documents.load() / 4));
  QS_ASSIGN_OR_RETURN(auto candidates, matching_documents(*c, filter, limit, store::kPartLabel));
  if (candidates) return static_cast<int64_t>(candidates->size());
  int64_t n = 0;
  QS_RETURN_IF_ERROR(scan_documents(*kv_, c->id, "", store::kPartMetadata,
                                    [&](std::string&, store::DocumentRecord&, nlohmann::json& m) {
                                      if (filter.matches(m)) ++n;
                                      return true;
                                    }));
  return n;
}

StatusOr<ScrollPage> RocksCollectionStore::scroll(const std::string& collection,
                                                  const ScrollRequest& request) {
  auto c = find(collection);
  if (!c) return not_found("collection '" + collection + "' not found");
  if (request.limit < 1 || request.limit > kMaxScrollLimit)
    return unprocessable("\"limit\" must be in 1..1000, got " + std::to_string(request.limit));
  std::string begin = store::collection_range_begin(store::KeyPrefix::kDocument, c->id);
  if (request.after_id) {
    begin = store::document_key(c->id, *request.after_id);
    begin.push_back('\0');
  } else if (!request.cursor.empty()) {
    std::string last_id;
    QS_RETURN_IF_ERROR(decode_cursor(request.cursor, c->id, &last_id));
    begin = store::document_key(c->id, last_id);
    begin.push_back('\0');  // the first key after it
  }
  const bool filtered = !request.filter.matches_all();
  const unsigned parts = (request.include_text ? store::kPartText : 0u) |
                         (filtered || request.include_metadata ? store::kPartMetadata : 0u) |
                         (request.include_embedding ? store::kPartEmbedding : 0u);
  ScrollPage page;
  bool more = false;
  QS_RETURN_IF_ERROR(scan_documents(
      *kv_, c->id, begin, parts,
      [&](std::string& id, store::DocumentRecord& rec, nlohmann::json& metadata) {
        if (filtered && !request.filter.matches(metadata)) return true;
        if (static_cast<int>(page.documents.size()) == request.limit) {
          more = true;  // one more match exists: the page is full and the scroll goes on
          return false;
        }
        Document doc;
        doc.id = std::move(id);
        doc.text = std::move(rec.text);
        if (request.include_metadata) doc.metadata = std::move(metadata);
        doc.embedding = std::move(rec.embedding);
        for (const store::ChunkRecord& ch : rec.chunks)
          doc.chunks.push_back({ch.start, ch.end, ch.tokens});
        doc.tokens = rec.tokens;
        doc.truncated_tokens = rec.truncated_tokens;
        doc.label = rec.label;
        page.documents.push_back(std::move(doc));
        return true;
      }));
  if (more) page.next_cursor = encode_cursor(c->id, page.documents.back().id);
  return page;
}

Status RocksCollectionStore::remove_locked(CollectionState* c,
                                           const std::vector<StoredLabels>& docs,
                                           int64_t* labels_removed) {
  if (docs.empty()) return Status::ok();
  uint64_t seq = c->log_seq;
  store::WriteBatch batch;
  std::vector<int64_t> old_labels;
  for (const StoredLabels& doc : docs) {
    delete_metadata_entries(&batch, c->id, doc.metadata, doc.label);
    batch.del(store::document_key(c->id, doc.id));
    for (int64_t l = doc.label; l < doc.label + doc.label_count; ++l) {
      old_labels.push_back(l);
      batch.del(store::label_key(c->id, l));
      batch.put(store::changelog_key(c->id, ++seq),
                store::encode_change({store::ChangeOp::kRemove, l}));
    }
  }
  const int64_t documents = c->documents.load() - static_cast<int64_t>(docs.size());
  const int64_t vectors_now = c->vectors.load() - static_cast<int64_t>(old_labels.size());
  batch.put(store::counter_key(c->id, CounterKind::kDocuments), encode_i64(documents));
  batch.put(store::counter_key(c->id, CounterKind::kVectors), encode_i64(vectors_now));
  batch.put(store::counter_key(c->id, CounterKind::kLogSeq), encode_i64(static_cast<int64_t>(seq)));
  QS_RETURN_IF_ERROR(kv_->write(&batch));
  c->log_seq = seq;
  c->documents = documents;
  c->vectors = vectors_now;
  Status s;
  {
    std::unique_lock<IndexMutex> lock(c->index_mu);
    s = c->index->remove(static_cast<int64_t>(old_labels.size()), old_labels.data());
    if (s.is_ok()) c->applied_seq = seq;
    note_pending(c);
  }
  if (!s.is_ok()) {
    spdlog::error("store: index removal in '{}' failed ({}); rebuilding", c->spec.name,
                  s.to_string());
    QS_RETURN_IF_ERROR(rebuild_index(c));
  }
  QS_RETURN_IF_ERROR(update_lexical(c, old_labels, {}, seq));
  *labels_removed += static_cast<int64_t>(old_labels.size());
  return Status::ok();
}

StatusOr<int64_t> RocksCollectionStore::remove_documents(const std::string& collection,
                                                         const std::vector<std::string>& ids_in) {
  auto c = find(collection);
  if (!c) return not_found("collection '" + collection + "' not found");
  for (const auto& id : ids_in) QS_RETURN_IF_ERROR(check_document_id(id));
  std::vector<std::string> ids = ids_in;
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  int64_t removed = 0, labels = 0;
  bool want_optimize = false;
  {
    std::unique_lock<std::mutex> write_lock(c->write_mu);
    if (c->dropped) return not_found("collection '" + collection + "' not found");
    const size_t per_batch = std::max<size_t>(1, options_.remove_batch_documents);
    for (size_t start = 0; start < ids.size(); start += per_batch) {
      const size_t end = std::min(ids.size(), start + per_batch);
      std::vector<std::string> keys;
      for (size_t i = start; i < end; ++i) keys.push_back(store::document_key(c->id, ids[i]));
      std::vector<std::optional<std::string>> values;
      QS_RETURN_IF_ERROR(kv_->multi_get(keys, &values));
      std::vector<StoredLabels> docs;
      for (size_t i = start; i < end; ++i) {
        if (!values[i - start]) continue;
        store::DocumentRecord rec;
        QS_RETURN_IF_ERROR(store::decode_document(*values[i - start], &rec, store::kPartMetadata)
                               .with_context("document '" + ids[i] + "'"));
        QS_ASSIGN_OR_RETURN(nlohmann::json metadata, parse_metadata(rec.metadata_json, ids[i]));
        docs.push_back({ids[i], rec.label, rec.label_count(), std::move(metadata)});
      }
      QS_RETURN_IF_ERROR(remove_locked(c.get(), docs, &labels));
      removed += static_cast<int64_t>(docs.size());
    }
    std::shared_lock<IndexMutex> lock(c->index_mu);
    want_optimize = c->index->wants_optimize();
  }
  after_write(c.get(), labels, want_optimize);
  return removed;
}

StatusOr<int64_t> RocksCollectionStore::remove_matching(const std::string& collection,
                                                        const Filter& filter) {
  auto c = find(collection);
  if (!c) return not_found("collection '" + collection + "' not found");
  if (filter.matches_all())
    return invalid_argument(
        "\"filter\" is empty: it would delete every document (delete the collection instead, "
        "or name ids)");
  int64_t removed = 0, labels = 0;
  bool want_optimize = false;
  {
    std::unique_lock<std::mutex> write_lock(c->write_mu);
    if (c->dropped) return not_found("collection '" + collection + "' not found");
    // The matching set, with writers held off (ids, labels, metadata): through the metadata
    // index when it narrows the filter down, else by a scan. Then removed batch by batch.
    std::vector<StoredLabels> matched;
    QS_ASSIGN_OR_RETURN(auto candidates,
                        matching_documents(*c, filter, static_cast<size_t>(c->documents.load()) + 1,
                                           store::kPartLabel));
    if (candidates) {
      for (Candidate& m : *candidates)
        matched.push_back(
            {std::move(m.id), m.record.label, m.record.label_count(), std::move(m.metadata)});
    } else {
      QS_RETURN_IF_ERROR(scan_documents(
          *kv_, c->id, "", store::kPartMetadata,
          [&](std::string& id, store::DocumentRecord& rec, nlohmann::json& m) {
            if (!filter.matches(m)) return true;
            matched.push_back({std::move(id), rec.label, rec.label_count(), std::move(m)});
            return true;
          }));
    }
    const size_t per_batch = std::max<size_t>(1, options_.remove_batch_documents);
    for (size_t start = 0; start < matched.size(); start += per_batch) {
      const size_t end = std::min(matched.size(), start + per_batch);
      std::vector<StoredLabels> docs(std::make_move_iterator(matched.begin() + start),
                                     std::make_move_iterator(matched.begin() + end));
      QS_RETURN_IF_ERROR(remove_locked(c.get(), docs, &labels));
      removed += static_cast<int64_t>(docs.size());
    }
    std::shared_lock<IndexMutex> lock(c->index_mu);
    want_optimize = c->index->wants_optimize();
  }
  after_write(c.get(), labels, want_optimize);
  return removed;
}

StatusOr<Document> RocksCollectionStore::patch_metadata(const std::string& collection,
                                                        const std::string& id,
                                                        const nlohmann::json& patch) {
  auto c = find(collection);
  if (!c) return not_found("collection '" + collection + "' not found");
  QS_RETURN_IF_ERROR(check_document_id(id));
  if (!patch.is_object()) return invalid_argument("\"metadata\" must be an object");
  std::unique_lock<std::mutex> write_lock(c->write_mu);
  if (c->dropped) return not_found("collection '" + collection + "' not found");
  const std::string key = store::document_key(c->id, id);
  std::string value;
  Status s = kv_->get(key, &value);
  if (s.code() == StatusCode::kNotFound)
    return not_found("document '" + id + "' not found in collection '" + collection + "'");
  QS_RETURN_IF_ERROR(s);
  store::DocumentRecord rec;
  QS_RETURN_IF_ERROR(store::decode_document(value, &rec, store::kPartAll));
  QS_ASSIGN_OR_RETURN(nlohmann::json metadata, parse_metadata(rec.metadata_json, id));
  if (!metadata.is_object()) metadata = nlohmann::json::object();
  store::WriteBatch batch;
  delete_metadata_entries(&batch, c->id, metadata, rec.label);
  metadata.merge_patch(patch);
  rec.metadata_json = metadata.dump();
  batch.put(key, store::encode_document(rec));
  put_metadata_entries(&batch, c->id, metadata, rec.label, rec.label_count());
  QS_RETURN_IF_ERROR(kv_->write(&batch));
  Document doc;
  doc.id = id;
  doc.text = std::move(rec.text);
  doc.metadata = std::move(metadata);
  for (const store::ChunkRecord& ch : rec.chunks)
    doc.chunks.push_back({ch.start, ch.end, ch.tokens});
  doc.tokens = rec.tokens;
  doc.truncated_tokens = rec.truncated_tokens;
  return doc;
}

StatusOr<std::optional<std::vector<RocksCollectionStore::Candidate>>>
RocksCollectionStore::matching_documents(const CollectionState& c, const Filter& filter,
                                         size_t max_documents, unsigned parts) {
  QS_ASSIGN_OR_RETURN(std::optional<LabelRuns> runs,
                      metadata_candidates(*kv_, c.id, filter, max_documents, c.vectors.load()));
  if (!runs) return std::optional<std::vector<Candidate>>();
  std::vector<Candidate> out;
  constexpr size_t kChunk = 1024;
  for (size_t start = 0; start < runs->size(); start += kChunk) {
    const size_t end = std::min(runs->size(), start + kChunk);
    std::vector<std::string> keys;
    for (size_t i = start; i < end; ++i) keys.push_back(store::label_key(c.id, (*runs)[i].first));
    std::vector<std::optional<std::string>> ids;
    QS_RETURN_IF_ERROR(kv_->multi_get(keys, &ids));
    keys.clear();
    std::vector<std::string> found;
    for (auto& id : ids)
      if (id) found.push_back(std::move(*id));
    for (const auto& id : found) keys.push_back(store::document_key(c.id, id));
    std::vector<std::optional<std::string>> docs;
    QS_RETURN_IF_ERROR(kv_->multi_get(keys, &docs));
    for (size_t i = 0; i < found.size(); ++i) {
      if (!docs[i]) continue;  // written meanwhile (callers without write_mu)
      Candidate m;
      m.id = std::move(found[i]);
      QS_RETURN_IF_ERROR(store::decode_document(*docs[i], &m.record, parts | store::kPartMetadata));
      QS_ASSIGN_OR_RETURN(m.metadata, parse_metadata(m.record.metadata_json, m.id));
      if (!filter.matches(m.metadata)) continue;
      out.push_back(std::move(m));
    }
  }
  return std::optional<std::vector<Candidate>>(std::move(out));
}

Status RocksCollectionStore::build_metadata_index(CollectionState* c) {
  store::WriteBatch batch;
  batch.delete_range(store::collection_range_begin(store::KeyPrefix::kMetaIndex, c->id),
                     store::collection_range_end(store::KeyPrefix::kMetaIndex, c->id));
  int64_t docs = 0;
  Status problem;
  QS_RETURN_IF_ERROR(
      scan_documents(*kv_, c->id, "", store::kPartMetadata,
                     [&](std::string&, store::DocumentRecord& rec, nlohmann::json& m) {
                       put_metadata_entries(&batch, c->id, m, rec.label, rec.label_count());
                       if (++docs % 10000 == 0) {
                         problem = kv_->write(&batch, false);
                         batch.clear();
                         if (!problem.is_ok()) return false;
                       }
                       return true;
                     }));
  QS_RETURN_IF_ERROR(problem);
  // The mark last: a rebuild cut short is redone at the next open.
  batch.put(store::counter_key(c->id, CounterKind::kMetaIndex), encode_i64(1));
  QS_RETURN_IF_ERROR(kv_->write(&batch));
  spdlog::info("store: collection '{}': metadata index built over {} documents", c->spec.name,
               docs);
  return Status::ok();
}

Status RocksCollectionStore::check_metadata_index(const std::string& name) {
  auto c = find(name);
  if (!c) return not_found("collection '" + name + "' not found");
  std::unique_lock<std::mutex> write_lock(c->write_mu);
  // What the documents say, through the same encoder, against what is stored.
  std::set<std::string> want;
  QS_RETURN_IF_ERROR(
      scan_documents(*kv_, c->id, "", store::kPartMetadata,
                     [&](std::string&, store::DocumentRecord& rec, nlohmann::json& m) {
                       for (auto& k : metadata_entry_keys(c->id, m, rec.label, rec.label_count()))
                         want.insert(std::move(k));
                       return true;
                     }));
  std::set<std::string> have;
  QS_RETURN_IF_ERROR(kv_->scan(store::collection_range_begin(store::KeyPrefix::kMetaIndex, c->id),
                               store::collection_range_end(store::KeyPrefix::kMetaIndex, c->id),
                               [&](std::string_view key, std::string_view value) {
                                 have.insert(std::string(key) + "=" + std::string(value));
                                 return true;
                               }));
  if (have != want)
    return corruption("metadata index of '" + name + "' has " + std::to_string(have.size()) +
                      " entries, the documents give " + std::to_string(want.size()));
  return Status::ok();
}

Status RocksCollectionStore::drop_metadata_index(const std::string& name) {
  auto c = find(name);
  if (!c) return not_found("collection '" + name + "' not found");
  std::unique_lock<std::mutex> write_lock(c->write_mu);
  store::WriteBatch batch;
  batch.delete_range(store::collection_range_begin(store::KeyPrefix::kMetaIndex, c->id),
                     store::collection_range_end(store::KeyPrefix::kMetaIndex, c->id));
  batch.del(store::counter_key(c->id, CounterKind::kMetaIndex));
  return kv_->write(&batch);
}

}  // namespace qsearch
