#include "index/exact_scan.h"

#include <algorithm>
#include <cfloat>
#include <thread>

#include "index/distances.h"

namespace qsearch::index_internal {

int64_t exact_scan_limit(int64_t index_size) { return std::max<int64_t>(20000, index_size / 32); }

namespace {

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

}  // namespace

Status exact_search(int64_t n, const float* queries, int d, IndexMetric metric, int k,
                    const std::vector<int64_t>& labels,
                    const std::function<bool(int64_t, float*)>& get, int64_t* out_labels,
                    float* out_distances) {
  if (k < 1) return invalid_argument("k must be >= 1");
  const bool ip = metric == IndexMetric::kInnerProduct;
  const size_t m = labels.size();
  // One thread per 1024 labels (about 4 MB of rows at 1024 dims, some 0.3 ms of work), up to
  // 16: a 1% filter over 1M vectors (10k rows, 40 MB) is then read by 10 threads at once
  // instead of 2, which is what brings it near the unfiltered HNSW latency (issue 11).
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const size_t parts = std::min<size_t>(std::min<size_t>(hw, 16), std::max<size_t>(1, m / 1024));
  for (int64_t qi = 0; qi < n; ++qi) {
    const float* q = queries + qi * d;
    std::vector<Heap> heaps(parts);
    auto run = [&](size_t part) {
      std::vector<float> buf(static_cast<size_t>(d));
      Heap& heap = heaps[part];
      heap.reserve(static_cast<size_t>(k) + 1);
      for (size_t i = part * m / parts; i < (part + 1) * m / parts; ++i) {
        if (!get(labels[i], buf.data())) continue;
        const float key = ip ? -dot_product(q, buf.data(), d) : l2_squared(q, buf.data(), d);
        push_bounded(&heap, k, key, labels[i]);
      }
    };
    if (parts == 1) {
      run(0);
    } else {
      std::vector<std::thread> threads;
      for (size_t p = 1; p < parts; ++p) threads.emplace_back(run, p);
      run(0);
      for (auto& t : threads) t.join();
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
