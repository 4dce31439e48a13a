// The matching sets of recent filters, per collection: a filtered search resolves its filter
// through the metadata index (a RocksDB range scan per term, about 0.3 us per matching
// document: 3 ms for a 1% filter over 1M documents, more than the search itself), and the same
// filter (a tenant, a language, a source) usually comes again. Like Elasticsearch's filter
// cache, the resolved set is kept, here with the RocksDB sequence number it was read at: an
// entry is used only while the store's latest sequence is still that number, i.e. while no
// write of any kind has happened since, so a cached set is never staler than a fresh scan.
// (A write bumps the sequence before it is acknowledged, so read-your-writes holds; and every
// hit is checked against the filter again on its document.)
//
// Bounded: at most kMaxEntries filters and kMaxLabels labels in all (least recently used out).
// Thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "index/label_filter.h"

namespace qsearch {

class FilterCache {
 public:
  static constexpr size_t kMaxEntries = 64;
  static constexpr size_t kMaxLabels = 8u << 20;  // 64 MiB of labels (plus their bitmaps)

  // What a filter resolved to: `set` is null when the metadata index could not narrow it
  // (too broad, or an operator it does not serve), so the search filters after the index.
  struct Resolved {
    std::shared_ptr<const LabelSetFilter> set;
  };

  // The entry for `key` read at `sequence`, if there is one.
  std::optional<Resolved> find(const std::string& key, uint64_t sequence) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return std::nullopt;
    if (it->second->sequence != sequence) {
      drop(it->second);
      return std::nullopt;
    }
    lru_.splice(lru_.begin(), lru_, it->second);
    ++hits_;
    return it->second->resolved;
  }

  void put(const std::string& key, uint64_t sequence, Resolved resolved) {
    const size_t labels = resolved.set ? resolved.set->sorted_labels()->size() : 0;
    if (labels > kMaxLabels / 4) return;  // one huge set would evict everything else
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = map_.find(key); it != map_.end()) drop(it->second);
    lru_.push_front(Entry{key, sequence, std::move(resolved), labels});
    map_[key] = lru_.begin();
    labels_ += labels;
    while (lru_.size() > kMaxEntries || labels_ > kMaxLabels) drop(std::prev(lru_.end()));
  }

  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return lru_.size();
  }
  uint64_t hits() const {
    std::lock_guard<std::mutex> lock(mu_);
    return hits_;
  }

 private:
  struct Entry {
    std::string key;
    uint64_t sequence;
    Resolved resolved;
    size_t labels;
  };
  using Iter = std::list<Entry>::iterator;

  void drop(Iter it) {
    labels_ -= it->labels;
    map_.erase(it->key);
    lru_.erase(it);
  }

  mutable std::mutex mu_;
  std::list<Entry> lru_;  // most recently used first
  std::unordered_map<std::string, Iter> map_;
  size_t labels_ = 0;
  uint64_t hits_ = 0;
};

}  // namespace qsearch
