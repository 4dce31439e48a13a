#include "dedup_test_util.h"

#include <cblas.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace qsearch::dedup_test {
namespace {

struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
  // Sum of 4 uniforms, centred and scaled to unit variance: close enough to Gaussian here.
  double gaussish() { return (uniform() + uniform() + uniform() + uniform() - 2.0) * 1.7320508; }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
};

// Row t := cos * unit(row s) + sin * (a unit vector orthogonal to row s), scaled by `scale`.
void plant_at_cosine(std::vector<float>& x, int dim, int64_t s, int64_t t, double cosine,
                     double scale, SplitMix& rng) {
  std::vector<double> a(dim), u(dim);
  double na = 0;
  for (int k = 0; k < dim; ++k) {
    a[k] = x[s * dim + k];
    na += a[k] * a[k];
  }
  na = std::sqrt(na);
  for (int k = 0; k < dim; ++k) a[k] /= na;
  double dot = 0, nu = 0;
  for (int k = 0; k < dim; ++k) {
    u[k] = rng.gaussish();
    dot += u[k] * a[k];
  }
  for (int k = 0; k < dim; ++k) {
    u[k] -= dot * a[k];
    nu += u[k] * u[k];
  }
  nu = std::sqrt(nu);
  const double sine = std::sqrt(std::max(0.0, 1.0 - cosine * cosine));
  for (int k = 0; k < dim; ++k)
    x[t * dim + k] = static_cast<float>(scale * (cosine * a[k] + sine * u[k] / nu));
}

}  // namespace

PlantedSet make_planted_set(int64_t n, int dim, double threshold, uint64_t seed) {
  PlantedSet p;
  p.n = n;
  p.dim = dim;
  p.x.resize(static_cast<size_t>(n) * dim);
  SplitMix rng{seed};
  for (float& v : p.x) v = static_cast<float>(rng.gaussish());

  // Targets are distinct rows taken in a random order; sources are rows never used as target.
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  for (int64_t k = n - 1; k > 0; --k) std::swap(order[k], order[rng.below(k + 1)]);
  const int64_t planted = std::max<int64_t>(20, n / 100);
  size_t next_target = 0;
  std::vector<char> is_target(static_cast<size_t>(n), 0);
  auto take_target = [&] {
    const int64_t t = order[next_target++];
    is_target[t] = 1;
    return t;
  };
  // Sources come from the back of the order, which targets never reach.
  size_t next_source = static_cast<size_t>(n) - 1;
  auto take_source = [&] { return order[next_source--]; };
  auto ordered = [](int64_t a, int64_t b) {
    return std::make_pair(std::min(a, b), std::max(a, b));
  };

  for (int64_t k = 0; k < planted; ++k) {  // near copies, clearly above
    const int64_t s = take_source(), t = take_target();
    const double c = threshold + 0.005 + (0.999 - threshold - 0.005) * rng.uniform();
    plant_at_cosine(p.x, dim, s, t, c, 0.5 + 2.0 * rng.uniform(), rng);
    p.planted_above.push_back(ordered(s, t));
  }
  for (int64_t k = 0; k < std::max<int64_t>(5, planted / 10); ++k) {  // exact and scaled copies
    const int64_t s = take_source(), t = take_target();
    const float scale = (k % 2 == 0) ? 1.0f : 3.5f;
    for (int d = 0; d < dim; ++d) p.x[t * dim + d] = scale * p.x[s * dim + d];
    p.planted_above.push_back(ordered(s, t));
  }
  const double above[] = {1e-5, 3e-5, 1e-4, 1e-3};
  const double below[] = {1e-5, 3e-5, 1e-4, 1e-3, 3e-3, 8e-3};
  for (int rep = 0; rep < 5; ++rep) {  // inside the bf16 error band
    for (double d : above) {
      const int64_t s = take_source(), t = take_target();
      plant_at_cosine(p.x, dim, s, t, threshold + d, 1.0, rng);
      p.planted_near_above.push_back(ordered(s, t));
    }
    for (double d : below) {
      const int64_t s = take_source(), t = take_target();
      plant_at_cosine(p.x, dim, s, t, threshold - d, 1.0, rng);
      p.planted_near_below.push_back(ordered(s, t));
    }
  }
  for (int k = 0; k < 10; ++k) {  // chains a - b - c: (a, c) may be below the threshold
    const int64_t a = take_source(), b = take_target(), c = take_target();
    const double cab = threshold + 0.02, cbc = threshold + 0.02;
    plant_at_cosine(p.x, dim, a, b, cab, 1.0, rng);
    plant_at_cosine(p.x, dim, b, c, cbc, 1.0, rng);
    p.planted_above.push_back(ordered(a, b));
    p.planted_above.push_back(ordered(b, c));
  }
  p.zero_vector = take_target();
  std::fill(p.x.begin() + p.zero_vector * dim, p.x.begin() + (p.zero_vector + 1) * dim, 0.0f);
  return p;
}

double reference_cosine(const float* a, const float* b, int dim) {
  double ab = 0, aa = 0, bb = 0;
  for (int k = 0; k < dim; ++k) {
    ab += static_cast<double>(a[k]) * b[k];
    aa += static_cast<double>(a[k]) * a[k];
    bb += static_cast<double>(b[k]) * b[k];
  }
  if (aa == 0 || bb == 0) return 0;
  return ab / (std::sqrt(aa) * std::sqrt(bb));
}

std::vector<SimilarPair> brute_force_pairs_cpu(const float* x, int64_t n, int dim,
                                               double threshold) {
  std::vector<float> xn(static_cast<size_t>(n) * dim);
  for (int64_t i = 0; i < n; ++i) {
    double ss = 0;
    for (int k = 0; k < dim; ++k) ss += static_cast<double>(x[i * dim + k]) * x[i * dim + k];
    const double inv = ss > 0 ? 1.0 / std::sqrt(ss) : 0.0;
    for (int k = 0; k < dim; ++k) xn[i * dim + k] = static_cast<float>(x[i * dim + k] * inv);
  }
  const int64_t block = 2048;
  const float lo = static_cast<float>(threshold - 1e-3);
  std::vector<float> c(static_cast<size_t>(block * block));
  std::vector<SimilarPair> out;
  for (int64_t a = 0; a < n; a += block) {
    const int64_t ra = std::min(block, n - a);
    for (int64_t b = a; b < n; b += block) {
      const int64_t rb = std::min(block, n - b);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(ra),
                  static_cast<int>(rb), dim, 1.0f, xn.data() + a * dim, dim, xn.data() + b * dim,
                  dim, 0.0f, c.data(), static_cast<int>(rb));
      for (int64_t i = 0; i < ra; ++i)
        for (int64_t j = 0; j < rb; ++j) {
          if (b + j <= a + i || c[i * rb + j] <= lo) continue;
          const double s = reference_cosine(x + (a + i) * dim, x + (b + j) * dim, dim);
          if (s >= threshold - 1e-12)
            out.push_back(SimilarPair{a + i, b + j, static_cast<float>(s)});
        }
    }
  }
  std::sort(out.begin(), out.end(), [](const SimilarPair& p, const SimilarPair& q) {
    return p.i != q.i ? p.i < q.i : p.j < q.j;
  });
  return out;
}

std::set<std::pair<int64_t, int64_t>> pair_set(const std::vector<SimilarPair>& pairs) {
  std::set<std::pair<int64_t, int64_t>> s;
  for (const SimilarPair& p : pairs) s.insert({p.i, p.j});
  return s;
}

void expect_same_pairs(const std::vector<SimilarPair>& got, const std::vector<SimilarPair>& want,
                       const char* what) {
  auto gs = pair_set(got), ws = pair_set(want);
  std::vector<std::pair<int64_t, int64_t>> missing, extra;
  std::set_difference(ws.begin(), ws.end(), gs.begin(), gs.end(), std::back_inserter(missing));
  std::set_difference(gs.begin(), gs.end(), ws.begin(), ws.end(), std::back_inserter(extra));
  EXPECT_EQ(gs.size(), got.size()) << what << ": duplicate pairs in the result";
  EXPECT_TRUE(missing.empty()) << what << ": " << missing.size() << " pairs missing, first ("
                               << (missing.empty() ? -1 : missing[0].first) << ", "
                               << (missing.empty() ? -1 : missing[0].second) << ")";
  EXPECT_TRUE(extra.empty()) << what << ": " << extra.size() << " pairs extra, first ("
                             << (extra.empty() ? -1 : extra[0].first) << ", "
                             << (extra.empty() ? -1 : extra[0].second) << ")";
  for (size_t k = 1; k < got.size(); ++k) {
    const bool sorted =
        got[k - 1].i < got[k].i || (got[k - 1].i == got[k].i && got[k - 1].j < got[k].j);
    if (!sorted) {
      ADD_FAILURE() << what << ": pairs not sorted at " << k;
      break;
    }
  }
  if (missing.empty() && extra.empty() && got.size() == want.size()) {
    for (size_t k = 0; k < got.size(); ++k)
      ASSERT_NEAR(got[k].score, want[k].score, 1e-6) << what << ": score of pair " << k;
  }
}

}  // namespace qsearch::dedup_test
