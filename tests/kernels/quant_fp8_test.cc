// The FP8 path's kernels (kernels/quant_fp8.cuh) and the FP8 GEMM (gemm.h) against CPU
// references in double from the same inputs.
//
// Tolerances follow from E4M3 itself: 3 mantissa bits, so round-to-nearest moves a normal value
// (|v / scale| >= 2^-6) by at most 2^-4 of its magnitude and a subnormal one by at most
// 2^-10 * scale; the checks allow that plus 1% for the fp32 arithmetic before the rounding
// (the GPU computes the normed / SwiGLU values in fp32, the reference in double). The GEMM is
// checked against the fp64 product of the dequantized operands, so only the bf16 output rounding
// (2^-8 relative; twice with the separate scaling pass) and fp32 accumulation (1e-4 of
// sum |a_k b_k| at K = 1024 is ~8x the worst case of K * 2^-24) remain.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernel_test_util.h"

#if QSEARCH_HAVE_CUDA
#include "embed/engine/cuda/gemm.h"
#include "quant_fp8.cuh"

namespace qsearch {
namespace {

using namespace qsearch::testing;

// E4M3 (fn: no infinities, 0x7f/0xff NaN) byte -> value, written out so the reference does not
// share the GPU's conversion code.
double e4m3_value(uint8_t b) {
  const int sign = b >> 7, e = (b >> 3) & 15, m = b & 7;
  if (e == 15 && m == 7) return std::nan("");
  const double mag =
      e == 0 ? m / 8.0 * std::ldexp(1.0, -6) : (1.0 + m / 8.0) * std::ldexp(1.0, e - 7);
  return sign ? -mag : mag;
}

std::vector<uint8_t> bytes_of(const DeviceArray<fp8e4>& a) {
  std::vector<uint8_t> b(a.size());
  cudaDeviceSynchronize();
  if (cudaMemcpy(b.data(), a.get(), b.size(), cudaMemcpyDeviceToHost) != cudaSuccess) b.clear();
  return b;
}

// Largest error E4M3 rounding may cause for a value v of a row with this scale.
double e4m3_bound(double v, double scale) {
  return std::max(std::fabs(v) * 0.0625, std::ldexp(scale, -10)) * 1.01;
}

// Checks q/scales (rows x cols) against the exact values want: the scale is absmax / 448, every
// dequantized value within e4m3_bound, and the absmax element maps to +-448.
void expect_quantized(const std::vector<uint8_t>& q, const std::vector<float>& scales,
                      const std::vector<double>& want, int rows, int cols, double scale_rel_tol) {
  ASSERT_EQ(q.size(), static_cast<size_t>(rows) * cols);
  ASSERT_EQ(scales.size(), static_cast<size_t>(rows));
  int bad = 0;
  for (int r = 0; r < rows; ++r) {
    double absmax = 0;
    for (int j = 0; j < cols; ++j) absmax = std::max(absmax, std::fabs(want[size_t(r) * cols + j]));
    if (absmax == 0) {
      EXPECT_EQ(scales[r], 1.0f) << "row " << r << " is zero";
    } else {
      EXPECT_NEAR(scales[r], absmax / 448.0, absmax / 448.0 * scale_rel_tol) << "row " << r;
    }
    double qmax = 0;
    for (int j = 0; j < cols; ++j) {
      const size_t i = size_t(r) * cols + j;
      const double got = e4m3_value(q[i]) * scales[r];
      qmax = std::max(qmax, std::fabs(e4m3_value(q[i])));
      if (!(std::fabs(got - want[i]) <= e4m3_bound(want[i], scales[r])) && bad++ < 5)
        ADD_FAILURE() << "row " << r << " col " << j << ": got " << got << " want " << want[i]
                      << " (byte " << int(q[i]) << ", scale " << scales[r] << ")";
    }
    if (absmax > 0) EXPECT_EQ(qmax, 448.0) << "row " << r << ": the absmax must map to 448";
  }
  EXPECT_EQ(bad, 0) << bad << " elements beyond the E4M3 bound";
}

TEST(QuantizeRowsFp8, RoundTripWithinE4M3Precision) {
  QS_REQUIRE_GPU();
  const int rows = 37, cols = 1000;
  auto x = random_bf16(size_t(rows) * cols, 1.0f, 1);
  // rows of very different magnitudes (per-row scales must follow), one all-zero row, one row
  // with a single spike (most of it then lands in E4M3's subnormal range)
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < cols; ++j)
      x[size_t(r) * cols + j] =
          to_bf16(to_float(x[size_t(r) * cols + j]) * std::ldexp(1.0f, r % 9 - 4));
  for (int j = 0; j < cols; ++j) x[size_t(5) * cols + j] = to_bf16(0.0f);
  x[size_t(6) * cols + 17] = to_bf16(-300000.0f);  // scale ~670: the rest (~4) is subnormal
  std::vector<double> want(x.size());
  for (size_t i = 0; i < x.size(); ++i) want[i] = to_float(x[i]);

  DeviceArray<bf16> d_x(x);
  DeviceArray<fp8e4> d_q(x.size());
  DeviceArray<float> d_s(rows);
  d_s.poison();
  QS_ASSERT_OK(launch_quantize_rows_fp8(d_x.get(), rows, cols, d_q.get(), d_s.get(), 0));
  expect_quantized(bytes_of(d_q), d_s.download(), want, rows, cols, 1e-6);
}

TEST(QuantizeRowsFp8, RejectsColsNotMultipleOf8) {
  QS_REQUIRE_GPU();
  EXPECT_FALSE(launch_quantize_rows_fp8(nullptr, 1, 12, nullptr, nullptr, 0).is_ok());
}

void check_add_rms_norm_fp8(int hidden, bool with_delta) {
  const int tokens = 13;
  const float eps = 1e-6f;
  const size_t n = size_t(tokens) * hidden;
  auto resid = random_f32(n, 0.0f, 3.0f, 20 + hidden);
  auto delta = random_bf16(n, 1.0f, 21 + hidden);
  auto weight = random_f32(hidden, 1.0f, 0.2f, 22 + hidden);
  weight[7] = 40.0f;  // an outlier channel, as real RMSNorm weights have
  DeviceArray<float> d_resid(resid), d_w(weight), d_s(tokens);
  DeviceArray<bf16> d_delta(delta);
  DeviceArray<fp8e4> d_q(n);
  d_s.poison();
  QS_ASSERT_OK(launch_add_rms_norm_fp8(d_resid.get(), with_delta ? d_delta.get() : nullptr,
                                       d_w.get(), d_q.get(), d_s.get(), tokens, hidden, eps, 0));
  auto got_resid = d_resid.download();
  std::vector<double> want(n);
  for (int t = 0; t < tokens; ++t) {
    double ss = 0;
    std::vector<double> r(hidden);
    for (int j = 0; j < hidden; ++j) {
      const size_t i = size_t(t) * hidden + j;
      r[j] = static_cast<float>(resid[i] + (with_delta ? to_float(delta[i]) : 0.0f));
      ASSERT_EQ(got_resid[i], static_cast<float>(r[j])) << "residual " << t << "," << j;
      ss += r[j] * r[j];
    }
    const double inv = 1.0 / std::sqrt(ss / hidden + eps);
    for (int j = 0; j < hidden; ++j) want[size_t(t) * hidden + j] = r[j] * inv * weight[j];
  }
  expect_quantized(bytes_of(d_q), d_s.download(), want, tokens, hidden, 1e-4);
}

TEST(AddRmsNormFp8, MatchesReferenceWithinE4M3Precision) {
  QS_REQUIRE_GPU();
  for (int hidden : {264, 1024, 2560, 4096}) {
    SCOPED_TRACE("hidden " + std::to_string(hidden));
    check_add_rms_norm_fp8(hidden, true);
    check_add_rms_norm_fp8(hidden, false);
  }
}

TEST(SwigluFp8, MatchesReferenceWithinE4M3Precision) {
  QS_REQUIRE_GPU();
  for (int inter : {136, 3072, 9728, 12288}) {
    SCOPED_TRACE("inter " + std::to_string(inter));
    const int tokens = 5;
    auto gu = random_bf16(size_t(tokens) * 2 * inter, 2.0f, 30 + inter);
    DeviceArray<bf16> d_gu(gu);
    DeviceArray<fp8e4> d_q(size_t(tokens) * inter);
    DeviceArray<float> d_s(tokens);
    d_s.poison();
    QS_ASSERT_OK(launch_swiglu_fp8(d_gu.get(), tokens, inter, d_q.get(), d_s.get(), 0));
    std::vector<double> want(size_t(tokens) * inter);
    for (int t = 0; t < tokens; ++t)
      for (int j = 0; j < inter; ++j) {
        const double g = to_float(gu[size_t(t) * 2 * inter + j]);
        const double u = to_float(gu[size_t(t) * 2 * inter + inter + j]);
        want[size_t(t) * inter + j] = g / (1.0 + std::exp(-g)) * u;
      }
    expect_quantized(bytes_of(d_q), d_s.download(), want, tokens, inter, 1e-4);
  }
}

TEST(SwigluFp8, RejectsTooWide) {
  QS_REQUIRE_GPU();
  EXPECT_FALSE(launch_swiglu_fp8(nullptr, 1, 16392, nullptr, nullptr, 0).is_ok());
}

bool has_fp8_tensor_cores() {
  int major = 0, minor = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
  return major * 10 + minor >= 89;
}

// Y = (Xq . Wq^T) * sx[m] * sw[n] against the fp64 product of the dequantized operands.
void check_fp8_gemm(bool outer_scaling) {
  const int m = 192, n = 272, k = 1024;
  auto x = random_bf16(size_t(m) * k, 1.0f, 40);
  auto w = random_bf16(size_t(n) * k, 0.02f, 41);
  // per-row magnitudes spanning 2^8, so a scale applied to the wrong row or column shows
  for (int r = 0; r < m; ++r)
    for (int j = 0; j < k; ++j)
      x[size_t(r) * k + j] = to_bf16(to_float(x[size_t(r) * k + j]) * std::ldexp(1.0f, r % 9 - 4));
  for (int r = 0; r < n; ++r)
    for (int j = 0; j < k; ++j)
      w[size_t(r) * k + j] = to_bf16(to_float(w[size_t(r) * k + j]) * std::ldexp(1.0f, r % 7 - 3));
  DeviceArray<bf16> d_x(x), d_w(w), d_y(size_t(m) * n);
  DeviceArray<fp8e4> d_xq(x.size()), d_wq(w.size());
  DeviceArray<float> d_sx(m), d_sw(n);
  QS_ASSERT_OK(launch_quantize_rows_fp8(d_x.get(), m, k, d_xq.get(), d_sx.get(), 0));
  QS_ASSERT_OK(launch_quantize_rows_fp8(d_w.get(), n, k, d_wq.get(), d_sw.get(), 0));
  GemmRunner g;
  QS_ASSERT_OK(g.init());
  g.set_fp8_outer_scaling(outer_scaling);
  d_y.poison();
  QS_ASSERT_OK(g.gemm_fp8(d_xq.get(), d_sx.get(), d_wq.get(), d_sw.get(), d_y.get(), m, n, k, 0));
  if (outer_scaling)
    std::printf("[ info ] cuBLASLt outer-vector FP8 scaling %s\n",
                g.fp8_outer_scaling() ? "used" : "unavailable: scaled in a separate pass");
  auto y = to_float(d_y.download());
  auto xq = bytes_of(d_xq), wq = bytes_of(d_wq);
  auto sx = d_sx.download(), sw = d_sw.download();
  std::vector<double> want(size_t(m) * n), mag(size_t(m) * n);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < n; ++c) {
      double s = 0, a = 0;
      for (int j = 0; j < k; ++j) {
        const double p =
            e4m3_value(xq[size_t(r) * k + j]) * sx[r] * (e4m3_value(wq[size_t(c) * k + j]) * sw[c]);
        s += p;
        a += std::fabs(p);
      }
      want[size_t(r) * n + c] = s;
      mag[size_t(r) * n + c] = a;
    }
  const double rel = g.fp8_outer_scaling() ? 1.0 / 256 : 2.0 / 256;
  int bad = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double tol = rel * std::fabs(want[i]) + 1e-4 * mag[i];
    if (!(std::fabs(y[i] - want[i]) <= tol) && bad++ < 5)
      ADD_FAILURE() << "y[" << i / n << "," << i % n << "] = " << y[i] << " want " << want[i]
                    << " (tol " << tol << ")";
  }
  EXPECT_EQ(bad, 0) << bad << " of " << y.size() << " outputs beyond tolerance";
  // and the quantization as a whole stays close to the bf16 product (sanity: E4M3 on both
  // operands: each rounding is within 2^-4 relative, ~2.6% RMS, so ~4% for the product)
  std::vector<double> exact(size_t(m) * n);
  for (int r = 0; r < m; ++r)
    for (int c = 0; c < n; ++c) {
      double s = 0;
      for (int j = 0; j < k; ++j)
        s += double(to_float(x[size_t(r) * k + j])) * to_float(w[size_t(c) * k + j]);
      exact[size_t(r) * n + c] = s;
    }
  const double err = rel_l2(y, exact);
  std::printf("[ info ] fp8 GEMM relative L2 error vs the bf16 operands' product: %.4f\n", err);
  EXPECT_LT(err, 0.08);
}

TEST(Fp8Gemm, OuterVectorScalingMatchesDequantizedProduct) {
  QS_REQUIRE_GPU();
  if (!has_fp8_tensor_cores()) GTEST_SKIP() << "GPU 0 has no FP8 tensor cores (sm_89+)";
  check_fp8_gemm(true);
}

TEST(Fp8Gemm, SeparateScalingPassMatchesDequantizedProduct) {
  QS_REQUIRE_GPU();
  if (!has_fp8_tensor_cores()) GTEST_SKIP() << "GPU 0 has no FP8 tensor cores (sm_89+)";
  check_fp8_gemm(false);
}

TEST(Fp8Gemm, RejectsShapesNotMultipleOf16) {
  QS_REQUIRE_GPU();
  GemmRunner g;
  QS_ASSERT_OK(g.init(1 << 20));
  EXPECT_FALSE(g.prepare_fp8(64, 100, 1024).is_ok());
}

}  // namespace
}  // namespace qsearch
#endif  // QSEARCH_HAVE_CUDA
