// Internals shared by the FAISS index implementations (not part of the public index API):
// a bounds-checked byte codec for the serialised form, FAISS (de)serialisation to bytes, and an
// IDSelector that calls a function.
#pragma once

#include <faiss/Index.h>
#include <faiss/impl/IDSelector.h>
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "index/vector_index.h"

namespace qsearch::index_internal {

class ByteWriter {
 public:
  explicit ByteWriter(std::string* out) : out_(out) {}
  template <typename T>
  void put(T v) {
    out_->append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  template <typename T>
  void put_array(const T* data, size_t n) {
    put<uint64_t>(n);
    out_->append(reinterpret_cast<const char*>(data), n * sizeof(T));
  }
  void put_bytes(std::string_view bytes) { put_array(bytes.data(), bytes.size()); }

 private:
  std::string* out_;
};

class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}
  template <typename T>
  bool get(T* v) {
    if (!ok_ || in_.size() - pos_ < sizeof(T)) return ok_ = false;
    std::memcpy(v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  template <typename T>
  bool get_array(std::vector<T>* v) {
    uint64_t n = 0;
    if (!get(&n) || n > (in_.size() - pos_) / sizeof(T)) return ok_ = false;
    v->resize(n);
    std::memcpy(v->data(), in_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    return true;
  }
  // An array written by put_array(), without copying: its bytes and element count.
  bool get_raw_array(size_t elem_size, std::string_view* bytes, uint64_t* n) {
    if (!get(n) || *n > (in_.size() - pos_) / elem_size) return ok_ = false;
    *bytes = in_.substr(pos_, *n * elem_size);
    pos_ += *n * elem_size;
    return true;
  }
  bool get_bytes(std::string_view* bytes) {
    uint64_t n = 0;
    if (!get(&n) || n > in_.size() - pos_) return ok_ = false;
    *bytes = in_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  bool ok() const { return ok_; }
  bool done() const { return ok_ && pos_ == in_.size(); }

 private:
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// Estimated bytes of one entry of a std::unordered_map<int64_t, int64_t> or set (node, hash,
// bucket pointer) in memory_bytes().
inline constexpr int64_t kHashEntryBytes = 40;

// Kinds in the serialised header.
enum class IndexKind : uint8_t { kFlat = 1, kHnsw = 2, kIvfUntrained = 3, kIvfTrained = 4 };

faiss::MetricType to_faiss(IndexMetric metric);
// write_index() into bytes; FAISS exceptions become kInternal.
Status faiss_to_bytes(const faiss::Index* index, std::string* out);
// read_index() from bytes; anything FAISS rejects becomes kCorruption.
StatusOr<std::unique_ptr<faiss::Index>> faiss_from_bytes(std::string_view bytes);

// Selects ids for which fn(id) is true (ids are FAISS positions or labels, per index).
struct FunctionSelector : faiss::IDSelector {
  explicit FunctionSelector(std::function<bool(int64_t)> f) : fn(std::move(f)) {}
  bool is_member(faiss::Index::idx_t id) const override { return fn(id); }
  std::function<bool(int64_t)> fn;
};

// FAISS opens an OpenMP parallel region per search call, parallel over queries, even for a
// single query; waking (and then spinning) a team costs far more than one query. Single-query
// searches therefore run with one OpenMP thread in the calling thread (a per-thread setting).
class SingleQueryOmp {
 public:
  explicit SingleQueryOmp(int64_t n) : active_(n == 1), prev_(active_ ? omp_get_max_threads() : 0) {
    if (active_) omp_set_num_threads(1);
  }
  ~SingleQueryOmp() {
    if (active_) omp_set_num_threads(prev_);
  }
  SingleQueryOmp(const SingleQueryOmp&) = delete;
  SingleQueryOmp& operator=(const SingleQueryOmp&) = delete;

 private:
  bool active_;
  int prev_;
};

// Runs f(), turning a FAISS (or std) exception into a kInternal Status naming `what`.
Status guard_faiss(const char* what, const std::function<void()>& f);

}  // namespace qsearch::index_internal
