// Which labels a search may return: the index-side selector of a filtered search (issue 11).
// Built by the collection layer from the metadata index; read by every VectorIndex
// implementation (FAISS CPU types through an IDSelector, the GPU index as a device bitmap).
//
// Thread safety: const methods may be called from many threads at once during one search.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace qsearch {

class LabelFilter {
 public:
  virtual ~LabelFilter() = default;
  // True when `label` may be returned.
  virtual bool accepts(int64_t label) const = 0;
  // When the accepted set is known explicitly (a selective filter resolved through the
  // metadata index): every accepted label, sorted ascending, no duplicates. nullptr when the
  // set is only known through accepts() (e.g. "everything but one document").
  virtual const std::vector<int64_t>* sorted_labels() const { return nullptr; }
};

// A filter known only through a predicate (tests, "everything but one document").
class PredicateFilter : public LabelFilter {
 public:
  explicit PredicateFilter(std::function<bool(int64_t)> fn) : fn_(std::move(fn)) {}
  bool accepts(int64_t label) const override { return fn_(label); }

 private:
  std::function<bool(int64_t)> fn_;
};

// An explicit set of labels (a filter resolved through the metadata index): sorted_labels()
// for the indexes' exact scan of the matches, and a bitmap over [min, max] for accepts() inside
// a FAISS scan.
class LabelSetFilter : public LabelFilter {
 public:
  // `sorted`: ascending, no duplicates, all >= 0.
  explicit LabelSetFilter(std::vector<int64_t> sorted) : labels_(std::move(sorted)) {
    if (labels_.empty()) return;
    base_ = labels_.front();
    bits_.assign(static_cast<size_t>(labels_.back() - base_ + 1), false);
    for (int64_t l : labels_) bits_[static_cast<size_t>(l - base_)] = true;
  }
  bool accepts(int64_t label) const override {
    return label >= base_ && label - base_ < static_cast<int64_t>(bits_.size()) &&
           bits_[static_cast<size_t>(label - base_)];
  }
  const std::vector<int64_t>* sorted_labels() const override { return &labels_; }

 private:
  std::vector<int64_t> labels_;
  int64_t base_ = 0;
  std::vector<bool> bits_;
};

}  // namespace qsearch
