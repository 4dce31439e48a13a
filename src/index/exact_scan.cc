#include "index/exact_scan.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cfloat>

#include "common/thread_pool.h"
#include "index/distances.h"

namespace qsearch::index_internal {

int64_t exact_scan_limit(int64_t index_size) { return std::max<int64_t>(20000, index_size / 32); }

namespace {

constexpr int64_t kDefaultGrain = 512;
std::atomic<int64_t> g_grain{kDefaultGrain};

using Heap = std::vector<std::pair<float, int64_t>>;  // (key, label); smaller key is better

void push_bounded(Heap* heap, int k, float key, int64_t label) {
  if (static_cast<int>(heap->size()) == k) {
    if (!(key < heap->front().first)) return;
    std::pop_heap(heap->begin(), heap->end());
    heap->back() = {key, label};
  } else {
    heap->emplace_back(key, label);
  }
  std::push_heap(heap->begin(), heap->end());
}

// Asks the memory system for a row ahead of its use: at 1024 dims a row is 64 cache lines, and
// one thread waiting on each line in turn reaches only a fraction of the bandwidth.
void prefetch_row(const float* p, int d) {
  const char* c = reinterpret_cast<const char*>(p);
  const size_t bytes = static_cast<size_t>(d) * sizeof(float);
  for (size_t off = 0; off < bytes; off += 64) _mm_prefetch(c + off, _MM_HINT_T0);
}

}  // namespace

void set_exact_scan_grain(int64_t labels) { g_grain = labels > 0 ? labels : kDefaultGrain; }
int64_t exact_scan_grain() { return g_grain.load(); }

Status exact_search(int64_t n, const float* queries, int d, IndexMetric metric, int k,
                    const std::vector<int64_t>& labels, const RowFn& row, int64_t* out_labels,
                    float* out_distances) {
  if (k < 1) return invalid_argument("k must be >= 1");
  const bool ip = metric == IndexMetric::kInnerProduct;
  const size_t m = labels.size();
  ThreadPool& pool = search_pool();
  const size_t grain = static_cast<size_t>(std::max<int64_t>(1, g_grain.load()));
  const size_t parts = std::min<size_t>(pool.size() + 1, std::max<size_t>(1, m / grain));
  for (int64_t qi = 0; qi < n; ++qi) {
    const float* q = queries + qi * d;
    std::vector<Heap> heaps(parts);
    auto run = [&](size_t part) {
      // Two scratch rows: the one being scored and the one prefetched (decoded storage).
      std::vector<float> scratch(2 * static_cast<size_t>(d));
      Heap& heap = heaps[part];
      heap.reserve(static_cast<size_t>(k) + 1);
      const size_t begin = part * m / parts, end = (part + 1) * m / parts;
      if (begin == end) return;
      size_t slot = 0;  // the scratch row `next` may have been decoded into
      const float* next = row(labels[begin], scratch.data());
      for (size_t i = begin; i < end; ++i) {
        const float* cur = next;
        if (i + 1 < end) {
          slot ^= 1;
          next = row(labels[i + 1], scratch.data() + slot * d);
          if (next) prefetch_row(next, d);
        }
        if (!cur) continue;
        const float key = ip ? -dot_product(q, cur, d) : l2_squared(q, cur, d);
        push_bounded(&heap, k, key, labels[i]);
      }
    };
    if (parts == 1) {
      run(0);
    } else {
      pool.run_parts(parts, run);
    }
    Heap all;
    for (auto& h : heaps)
      for (auto& e : h) push_bounded(&all, k, e.first, e.second);
    std::sort_heap(all.begin(), all.end());
    int64_t* lab = out_labels + qi * k;
    float* dis = out_distances + qi * k;
    for (int i = 0; i < k; ++i) {
      if (i < static_cast<int>(all.size())) {
        lab[i] = all[i].second;
        dis[i] = ip ? -all[i].first : std::max(0.f, all[i].first);
      } else {
        lab[i] = -1;
        dis[i] = ip ? -FLT_MAX : FLT_MAX;
      }
    }
  }
  return Status::ok();
}

}  // namespace qsearch::index_internal
