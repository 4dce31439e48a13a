// The lexical index of a collection (lexical_index.h) kept in agreement with the store, like the
// vector index: written after each acknowledged write (never ahead of RocksDB), caught up from
// the change log on open, rebuilt from the stored texts when missing, damaged, ahead of the
// store or disagreeing with it; and BM25 search with filters and best-chunk grouping.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <unordered_map>
#include <unordered_set>

#include "collection/collection_store.h"
#include "store/keys.h"
#include "store/record.h"

namespace qsearch {

namespace fs = std::filesystem;
using store::KeyPrefix;

std::string RocksCollectionStore::lexical_path(uint64_t cid) const {
  return (fs::path(options_.data_dir) / "lexical" / (std::to_string(cid) + ".sqlite")).string();
}

StatusOr<RocksCollectionStore::IndexOrigin> RocksCollectionStore::lexical_origin(
    const std::string& name) {
  std::shared_lock<std::shared_mutex> lock(collections_mu_);
  auto it = lexical_origins_.find(name);
  if (it == lexical_origins_.end())
    return not_found("collection '" + name + "' has no lexical index");
  return it->second;
}

Status RocksCollectionStore::load_lexical(CollectionState* c) {
  const std::string path = lexical_path(c->id);
  if (!c->spec.lexical) {
    LexicalIndex::remove_files(path);
    return Status::ok();
  }
  IndexOrigin origin = IndexOrigin::kRebuilt;
  auto opened = LexicalIndex::open(path, c->id);
  Status s = opened.status();
  if (s.is_ok()) {
    std::unique_ptr<LexicalIndex> lexical = std::move(opened).value();
    const uint64_t seq = lexical->sequence();
    bool changed = false;
    if (seq > c->log_seq) {
      // Ahead of the store (unsynced RocksDB writes lost in a power cut).
      s = corruption(path + " is ahead of the store (sequence " + std::to_string(seq) + " > " +
                     std::to_string(c->log_seq) + ")");
    }
    if (s.is_ok()) s = catch_up_lexical(c, lexical.get(), seq, &changed);
    if (s.is_ok() && lexical->rows() != c->vectors.load()) {
      s = corruption("lexical index holds " + std::to_string(lexical->rows()) + " rows, store " +
                     std::to_string(c->vectors.load()) + " texts");
    }
    if (s.is_ok()) {
      c->lexical = std::move(lexical);
      c->lexical_seq = c->log_seq;
      origin = changed ? IndexOrigin::kCaughtUp : IndexOrigin::kLoaded;
    }
  }
  if (!s.is_ok()) {
    if (s.code() != StatusCode::kNotFound || c->documents.load() > 0) {
      spdlog::warn("store: collection '{}': {}; rebuilding its lexical index from stored texts",
                   c->spec.name, s.to_string());
    }
    QS_RETURN_IF_ERROR(rebuild_lexical(c));
    origin = IndexOrigin::kRebuilt;
  }
  std::unique_lock<std::shared_mutex> lock(collections_mu_);
  lexical_origins_[c->spec.name] = origin;
  return Status::ok();
}

Status RocksCollectionStore::catch_up_lexical(CollectionState* c, LexicalIndex* lexical,
                                              uint64_t from_seq, bool* changed) {
  std::vector<std::pair<uint64_t, store::ChangeRecord>> log;
  QS_RETURN_IF_ERROR(read_change_log(*c, from_seq, " for the lexical index", &log));
  *changed = !log.empty();
  if (log.empty()) return Status::ok();
  // Labels are never reused, so the end state is: every removed label gone, every added label
  // that a stored document still owns present (in any order).
  std::vector<int64_t> removed, add_labels;
  std::vector<std::string> label_keys;
  for (const auto& [seq, change] : log) {
    if (change.op == store::ChangeOp::kRemove) {
      removed.push_back(change.label);
    } else {
      add_labels.push_back(change.label);
      label_keys.push_back(store::label_key(c->id, change.label));
    }
  }
  std::vector<std::optional<std::string>> ids;
  QS_RETURN_IF_ERROR(kv_->multi_get(label_keys, &ids));
  // One read per document (several of its chunk labels may be in the log).
  std::vector<std::string> doc_keys;
  std::unordered_map<std::string, size_t> doc_of_id;
  for (const auto& id : ids) {
    if (id && doc_of_id.emplace(*id, doc_keys.size()).second)
      doc_keys.push_back(store::document_key(c->id, *id));
  }
  std::vector<std::optional<std::string>> docs;
  QS_RETURN_IF_ERROR(kv_->multi_get(doc_keys, &docs));
  std::vector<store::DocumentRecord> records(docs.size());
  for (size_t i = 0; i < docs.size(); ++i) {
    if (docs[i])
      QS_RETURN_IF_ERROR(store::decode_document(*docs[i], &records[i], store::kPartText));
  }
  std::vector<LexicalIndex::Entry> added;
  std::vector<LexicalIndex::Entry> all;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!ids[i]) continue;  // removed or replaced later in the log
    const size_t d = doc_of_id[*ids[i]];
    if (!docs[d] || !records[d].owns(add_labels[i])) continue;
    all.clear();
    append_lexical_entries(records[d].text, records[d].chunks, records[d].label, &all);
    added.push_back(all[static_cast<size_t>(add_labels[i] - records[d].label)]);
  }
  return lexical->apply(removed, added, c->log_seq);
}

Status RocksCollectionStore::rebuild_lexical(CollectionState* c) {
  const std::string path = lexical_path(c->id);
  const std::string tmp = path + ".rebuild";
  QS_ASSIGN_OR_RETURN(std::unique_ptr<LexicalIndex> fresh, LexicalIndex::create_bulk(tmp, c->id));
  constexpr size_t kBatch = 4096;
  std::vector<store::DocumentRecord> records;
  std::vector<LexicalIndex::Entry> entries;
  auto flush = [&]() -> Status {
    entries.clear();
    for (const store::DocumentRecord& r : records)
      append_lexical_entries(r.text, r.chunks, r.label, &entries);
    Status s = fresh->add_bulk(entries);
    records.clear();
    return s;
  };
  Status inner;
  QS_RETURN_IF_ERROR(kv_->scan(store::collection_range_begin(KeyPrefix::kDocument, c->id),
                               store::collection_range_end(KeyPrefix::kDocument, c->id),
                               [&](std::string_view, std::string_view value) {
                                 records.emplace_back();
                                 inner = store::decode_document(value, &records.back(),
                                                                store::kPartText);
                                 if (inner.is_ok() && records.size() >= kBatch) inner = flush();
                                 return inner.is_ok();
                               }));
  QS_RETURN_IF_ERROR(inner);
  QS_RETURN_IF_ERROR(flush());
  QS_RETURN_IF_ERROR(fresh->set_sequence(c->log_seq));
  QS_RETURN_IF_ERROR(fresh->finish_bulk());
  fresh.reset();
  // Swap: no search is inside the old index while it is closed and replaced on disk.
  std::unique_lock<IndexMutex> lock(c->index_mu);
  c->lexical.reset();
  LexicalIndex::remove_files(path);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return io_error("renaming " + tmp + " to " + path + ": " + ec.message());
  QS_ASSIGN_OR_RETURN(c->lexical, LexicalIndex::open(path, c->id));
  c->lexical_seq = c->log_seq;
  return Status::ok();
}

Status RocksCollectionStore::update_lexical(CollectionState* c, const std::vector<int64_t>& removed,
                                            const std::vector<LexicalIndex::Entry>& added,
                                            uint64_t seq) {
  if (!c->lexical) return Status::ok();
  Status s = c->lexical->apply(removed, added, seq);
  if (s.is_ok()) {
    c->lexical_seq = seq;
    return Status::ok();
  }
  // The write is durable; bring the lexical index back in line from the change log, or rebuild.
  spdlog::error("store: lexical index update of '{}' failed ({}); catching up", c->spec.name,
                s.to_string());
  bool changed = false;
  s = catch_up_lexical(c, c->lexical.get(), c->lexical->sequence(), &changed);
  if (s.is_ok()) {
    c->lexical_seq = c->log_seq;
    return Status::ok();
  }
  spdlog::error("store: catching up the lexical index of '{}' failed ({}); rebuilding",
                c->spec.name, s.to_string());
  return rebuild_lexical(c);
}

Status RocksCollectionStore::check_lexical(
    CollectionState* c, const std::vector<std::pair<int64_t, std::string>>& labels) {
  if (!c->spec.lexical) return Status::ok();
  if (!c->lexical) return corruption("the lexical index is missing");
  for (const auto& [label, id] : labels) {
    QS_ASSIGN_OR_RETURN(bool present, c->lexical->contains(label));
    if (!present)
      return corruption("document '" + id + "' (label " + std::to_string(label) +
                        ") is not in the lexical index");
  }
  if (c->lexical->rows() != static_cast<int64_t>(labels.size()))
    return corruption("lexical index holds " + std::to_string(c->lexical->rows()) +
                      " rows, store " + std::to_string(labels.size()) + " texts");
  if (c->lexical->sequence() != c->log_seq)
    return corruption("lexical index at sequence " + std::to_string(c->lexical->sequence()) +
                      ", store at " + std::to_string(c->log_seq));
  return Status::ok();
}

void RocksCollectionStore::remove_stale_lexical_files() {
  std::vector<std::string> live;
  {
    std::shared_lock<std::shared_mutex> lock(collections_mu_);
    for (const auto& [name, c] : collections_)
      if (c->spec.lexical) live.push_back(std::to_string(c->id) + ".sqlite");
  }
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(fs::path(options_.data_dir) / "lexical", ec)) {
    const std::string name = entry.path().filename().string();
    bool keep = false;
    for (const std::string& l : live)
      keep = keep || name == l || name == l + "-wal" || name == l + "-shm";
    if (!keep) fs::remove(entry.path(), ec);
  }
}

StatusOr<std::vector<SearchHit>> RocksCollectionStore::search_lexical(const std::string& collection,
                                                                      const std::string& query,
                                                                      const SearchParams& params) {
  auto c = find(collection);
  if (!c) return not_found("collection '" + collection + "' not found");
  const int k = params.k;
  if (k < 1 || k > 1000) return unprocessable("k must be in 1..1000");
  QS_ASSIGN_OR_RETURN(Filter filter, Filter::parse(params.filter));
  if (!c->spec.lexical)
    return unprocessable("collection '" + collection +
                         "' has no lexical index (it was created with \"lexical\": false)");
  const LexicalQuery q = make_lexical_query(query);
  std::vector<SearchHit> hits;
  if (q.match.empty()) return hits;  // no words: nothing can match
  const bool has_filter = !filter.matches_all();
  const bool chunked = c->spec.chunked();
  const bool need_docs = chunked || has_filter || params.include_text || params.include_metadata;
  const unsigned parts = (params.include_text ? store::kPartText : 0u) |
                         (has_filter || params.include_metadata ? store::kPartMetadata : 0u);
  std::unordered_map<std::string, size_t> hit_of_id;
  std::unordered_set<int64_t> seen;
  int64_t fetch = has_filter ? std::max<int64_t>(4LL * k, 64)
                  : chunked  ? std::max(4LL * k, 32LL)
                             : k;
  for (;;) {
    std::vector<LexicalIndex::Match> matches;
    {
      std::shared_lock<IndexMutex> lock(c->index_mu);
      if (!c->lexical) return unavailable("the lexical index of '" + collection + "' is not open");
      QS_RETURN_IF_ERROR(c->lexical->search(q, fetch, &matches));
    }
    std::vector<LexicalIndex::Match> fresh;
    for (const auto& m : matches)
      if (seen.insert(m.label).second) fresh.push_back(m);
    std::vector<std::string> keys;
    for (const auto& m : fresh) keys.push_back(store::label_key(c->id, m.label));
    std::vector<std::optional<std::string>> ids;
    QS_RETURN_IF_ERROR(kv_->multi_get(keys, &ids));
    std::vector<std::optional<std::string>> docs;
    if (need_docs) {
      keys.clear();
      for (const auto& id : ids)
        keys.push_back(store::document_key(c->id, id ? *id : std::string()));
      QS_RETURN_IF_ERROR(kv_->multi_get(keys, &docs));
    }
    for (size_t i = 0; i < fresh.size(); ++i) {
      if (!ids[i]) continue;  // changed meanwhile
      SearchHit hit;
      hit.id = *ids[i];
      hit.score = static_cast<float>(fresh[i].score);
      if (need_docs) {
        if (!docs[i]) continue;
        store::DocumentRecord rec;
        QS_RETURN_IF_ERROR(store::decode_document(*docs[i], &rec, store::kPartLabel));
        if (!rec.owns(fresh[i].label)) continue;
        if (!rec.chunks.empty()) {
          hit.chunk = static_cast<int32_t>(fresh[i].label - rec.label);
          const store::ChunkRecord& ch = rec.chunks[hit.chunk];
          hit.chunk_span = {ch.start, ch.end, ch.tokens};
        }
        if (chunked) {
          auto it = hit_of_id.find(hit.id);
          if (it != hit_of_id.end()) {
            SearchHit& prior = hits[it->second];
            if (hit.score > prior.score) {
              prior.score = hit.score;
              prior.chunk = hit.chunk;
              prior.chunk_span = hit.chunk_span;
            }
            continue;
          }
        }
        if (parts != store::kPartLabel)
          QS_RETURN_IF_ERROR(store::decode_document(*docs[i], &rec, parts));
        nlohmann::json metadata;
        if (parts & store::kPartMetadata) {
          metadata = nlohmann::json::parse(rec.metadata_json, nullptr, false);
          if (metadata.is_discarded()) return corruption("document '" + hit.id + "': bad metadata");
        }
        if (has_filter && !filter.matches(metadata)) continue;
        if (params.include_text) hit.text = std::move(rec.text);
        if (params.include_metadata) hit.metadata = std::move(metadata);
      }
      if (chunked) hit_of_id.emplace(hit.id, hits.size());
      hits.push_back(std::move(hit));
    }
    if (static_cast<int64_t>(hits.size()) >= k) break;
    if (static_cast<int64_t>(matches.size()) < fetch) break;  // every match seen
    fetch *= 8;
  }
  std::stable_sort(hits.begin(), hits.end(),
                   [](const SearchHit& a, const SearchHit& b) { return a.score > b.score; });
  if (static_cast<int64_t>(hits.size()) > k) hits.resize(k);
  return hits;
}

}  // namespace qsearch
