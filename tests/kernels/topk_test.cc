// kernels/topk: the block top-k selection and its merge rounds against a CPU reference (exact
// keys, same rows), with tombstones (live bitmap), per-query filters, L2 keys, several slices
// and k up to kTopkMaxK (the large shared-memory path).
#include "kernel_test_util.h"

#if QSEARCH_HAVE_CUDA
#include "topk.cuh"

namespace qsearch::testing {
namespace {

struct Case {
  int64_t n;
  int queries;
  int k;
  int64_t slice;
  bool l2;
  bool filtered;
};

void run_case(const Case& c) {
  std::mt19937 rng(static_cast<uint32_t>(c.n * 31 + c.k));
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> scores(static_cast<size_t>(c.queries) * c.n), norms(c.n);
  for (auto& s : scores) s = u(rng);
  for (auto& v : norms) v = 1.f + 0.5f * u(rng);
  std::vector<uint32_t> live((c.n + 31) / 32, 0u);
  for (int64_t r = 0; r < c.n; ++r)
    if (r % 11 != 3) live[r >> 5] |= 1u << (r & 31);
  std::vector<std::vector<uint32_t>> filters(c.queries);
  for (int b = 0; b < c.queries; ++b) {
    if (!c.filtered || b % 2 == 1) continue;  // odd queries unfiltered
    filters[b].assign(live.size(), 0u);
    for (int64_t r = b; r < c.n; r += 3 + b) filters[b][r >> 5] |= 1u << (r & 31);
  }
  DeviceArray<float> d_scores(scores), d_norms(norms);
  DeviceArray<uint32_t> d_live(live);
  std::vector<std::unique_ptr<DeviceArray<uint32_t>>> d_filters;
  std::vector<const uint32_t*> ptrs(c.queries, nullptr);
  for (int b = 0; b < c.queries; ++b) {
    if (filters[b].empty()) continue;
    d_filters.push_back(std::make_unique<DeviceArray<uint32_t>>(filters[b]));
    ptrs[b] = d_filters.back()->get();
  }
  DeviceArray<const uint32_t*> d_ptrs(ptrs);
  const int64_t slices = topk_slices(c.n, c.slice);
  int64_t m = slices * c.k;
  DeviceArray<float> keys0(c.queries * m), keys1(c.queries * m);
  DeviceArray<int32_t> rows0(c.queries * m), rows1(c.queries * m);
  QS_ASSERT_CUDA(launch_topk_scores(
      d_scores.get(), c.n, c.n, c.queries, 0, d_live.get(), c.filtered ? d_ptrs.get() : nullptr,
      c.l2 ? d_norms.get() : nullptr, c.k, c.slice, keys0.get(), rows0.get(), m, nullptr));
  DeviceArray<float>* kin = &keys0;
  DeviceArray<float>* kout = &keys1;
  DeviceArray<int32_t>* rin = &rows0;
  DeviceArray<int32_t>* rout = &rows1;
  const int64_t merge_slice = std::max<int64_t>(16384, 4 * c.k);
  while (m > c.k) {
    const int64_t s = topk_slices(m, merge_slice);
    QS_ASSERT_CUDA(launch_topk_merge(kin->get(), rin->get(), m, c.queries, c.k, merge_slice,
                                     kout->get(), rout->get(), s * c.k, nullptr));
    std::swap(kin, kout);
    std::swap(rin, rout);
    m = s * c.k;
  }
  QS_ASSERT_CUDA(cudaDeviceSynchronize());
  std::vector<float> got_keys = kin->download();
  std::vector<int32_t> got_rows = rin->download();
  for (int b = 0; b < c.queries; ++b) {
    std::vector<std::pair<float, int32_t>> ref;
    for (int64_t r = 0; r < c.n; ++r) {
      if (!((live[r >> 5] >> (r & 31)) & 1u)) continue;
      if (!filters[b].empty() && !((filters[b][r >> 5] >> (r & 31)) & 1u)) continue;
      const float s = scores[b * c.n + r];
      ref.emplace_back(c.l2 ? 2.f * s - norms[r] : s, static_cast<int32_t>(r));
    }
    std::sort(ref.begin(), ref.end(), [](auto& x, auto& y) { return x.first > y.first; });
    // Rows of equal keys may come in either order (the kernel does not order ties by row):
    // each returned row must be an accepted row, returned once, whose key is the reference's
    // key at that rank.
    std::unordered_map<int32_t, float> key_of;
    for (const auto& [key, row] : ref) key_of.emplace(row, key);
    std::set<int32_t> returned;
    for (int i = 0; i < c.k; ++i) {
      const size_t at = static_cast<size_t>(b) * m + i;
      if (i >= static_cast<int>(ref.size())) {
        EXPECT_EQ(got_rows[at], -1) << "query " << b << " rank " << i;
        continue;
      }
      EXPECT_NEAR(got_keys[at], ref[i].first, 1e-6) << "query " << b << " rank " << i;
      auto it = key_of.find(got_rows[at]);
      ASSERT_NE(it, key_of.end()) << "query " << b << " rank " << i << ": row " << got_rows[at]
                                  << " is filtered out or removed";
      EXPECT_EQ(it->second, ref[i].first) << "query " << b << " rank " << i;
      EXPECT_TRUE(returned.insert(got_rows[at]).second)
          << "query " << b << " rank " << i << ": row " << got_rows[at] << " twice";
    }
  }
}

TEST(TopkKernel, MatchesCpuReference) {
  QS_REQUIRE_GPU();
  run_case({50000, 3, 1, 4096, false, false});
  run_case({50000, 3, 10, 4096, false, true});
  run_case({50000, 2, 100, 16384, true, true});
  run_case({70000, 2, 1500, 16384, false, false});
  run_case({40000, 2, 4096, 16384, false, true});  // 64 KB of shared memory
  run_case({300, 4, 80, 16384, false, true});      // fewer matches than k for a filtered query
}

TEST(TopkKernel, RejectsBadArguments) {
  QS_REQUIRE_GPU();
  DeviceArray<float> s(1024);
  DeviceArray<uint32_t> live(32);
  DeviceArray<float> k(8192);
  DeviceArray<int32_t> r(8192);
  EXPECT_EQ(launch_topk_scores(s.get(), 1024, 1024, 1, 0, live.get(), nullptr, nullptr, 0, 1024,
                               k.get(), r.get(), 1024, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(launch_topk_scores(s.get(), 1024, 1024, 1, 0, live.get(), nullptr, nullptr, 4097, 1024,
                               k.get(), r.get(), 8192, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(launch_topk_scores(s.get(), 1024, 1024, 1, 0, live.get(), nullptr, nullptr, 10, 512,
                               k.get(), r.get(), 10, nullptr),  // out_ld < slices * k
            cudaErrorInvalidValue);
}

}  // namespace
}  // namespace qsearch::testing
#endif  // QSEARCH_HAVE_CUDA
