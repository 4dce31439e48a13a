// Safetensors reader: round trips, dtype conversion, and every kind of corruption, whose error
// must name the file and the tensor.
#include "embed/model/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "model/test_util.h"

namespace qsearch {
namespace {

using testing::TempDir;

// A file with one tensor "w" given a raw header (for corruption cases).
std::string raw_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

void expect_error(const std::string& path, const std::string& needle) {
  auto f = SafetensorsFile::open(path);
  ASSERT_FALSE(f.is_ok()) << "expected an error containing " << needle;
  EXPECT_NE(f.status().message().find(path), std::string::npos) << f.status().message();
  EXPECT_NE(f.status().message().find(needle), std::string::npos) << f.status().message();
}

TEST(Safetensors, RoundTripAllDtypes) {
  TempDir dir;
  std::vector<float> f32 = {1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, -65504.0f};
  std::vector<uint16_t> bf16, f16;
  for (float v : f32) {
    bf16.push_back(float_to_bf16(v));
    f16.push_back(float_to_f16(v));
  }
  std::vector<SafetensorsTensor> ts = {{"a.f32", DType::kF32, {2, 3}, f32.data()},
                                       {"b.bf16", DType::kBF16, {6}, bf16.data()},
                                       {"c.f16", DType::kF16, {3, 2}, f16.data()},
                                       {"d.empty", DType::kF32, {0, 4}, nullptr}};
  std::string path = dir.file("x.safetensors");
  ASSERT_TRUE(write_safetensors(path, ts, {{"format", "pt"}}).is_ok());
  auto f = SafetensorsFile::open(path);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_EQ((*f)->tensors().size(), 4u);
  EXPECT_EQ((*f)->metadata().at("format"), "pt");
  const TensorView* a = (*f)->find("a.f32");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->file, path);
  EXPECT_EQ(a->to_float(), f32);
  const TensorView* b = (*f)->find("b.bf16");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, DType::kBF16);
  EXPECT_EQ(b->to_bf16(), bf16);
  std::vector<float> bf = b->to_float();
  for (size_t i = 0; i < f32.size(); ++i) EXPECT_NEAR(bf[i], f32[i], std::fabs(f32[i]) / 128);
  const TensorView* c = (*f)->find("c.f16");
  ASSERT_NE(c, nullptr);
  std::vector<float> cf = c->to_float();
  for (size_t i = 0; i < f32.size(); ++i) EXPECT_NEAR(cf[i], f32[i], std::fabs(f32[i]) / 1024);
  EXPECT_EQ(cf[5], -65504.0f);  // largest half, exact
  // F16 -> BF16 and F32 -> BF16 conversions agree with converting the floats.
  EXPECT_EQ(c->to_bf16().size(), 6u);
  EXPECT_EQ(a->to_bf16()[1], float_to_bf16(-2.5f));
  EXPECT_EQ((*f)->find("d.empty")->numel(), 0);
  EXPECT_EQ((*f)->find("nope"), nullptr);
}

TEST(Safetensors, HalfConversions) {
  EXPECT_EQ(f16_to_float(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_float(0xc000), -2.0f);
  EXPECT_EQ(f16_to_float(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f16_to_float(0x7bff), 65504.0f);
  EXPECT_TRUE(std::isinf(f16_to_float(0x7c00)));
  EXPECT_TRUE(std::isnan(f16_to_float(0x7e00)));
  EXPECT_EQ(float_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(float_to_f16(65520.0f), 0x7c00);  // rounds to inf
  EXPECT_EQ(float_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(float_to_f16(std::ldexp(1.0f, -25)), 0x0000);         // tie to even (0)
  EXPECT_EQ(float_to_f16(std::ldexp(3.0f, -25)), 0x0002);         // tie to even (2)
  EXPECT_EQ(float_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie to even
  EXPECT_EQ(float_to_f16(1.0f + std::ldexp(3.0f, -11)), 0x3c02);
  // Every finite half round-trips through float.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;
    ASSERT_EQ(float_to_f16(f16_to_float(static_cast<uint16_t>(h))), h) << h;
  }
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);  // tie to even
}

TEST(Safetensors, Corruptions) {
  TempDir dir;
  std::string data(24, '\0');  // 6 floats
  auto write = [&](const std::string& name, const std::string& contents) {
    std::string path = dir.file(name);
    testing::write_file(path, contents);
    return path;
  };
  const std::string good = R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";
  ASSERT_TRUE(SafetensorsFile::open(write("good.safetensors", raw_file(good, data))).is_ok());

  expect_error(write("empty.safetensors", ""), "too short");
  expect_error(write("short.safetensors", "abc"), "too short");
  // Header length larger than the file.
  std::string big = raw_file(good, data);
  big[0] = '\xff';
  big[1] = '\xff';
  expect_error(write("hdrlen.safetensors", big), "header length");
  // Truncated file: the data section is cut.
  std::string full = raw_file(good, data);
  expect_error(write("trunc.safetensors", full.substr(0, full.size() - 5)), "\"w\"");
  expect_error(write("trunc2.safetensors", full.substr(0, full.size() - 5)), "outside");
  expect_error(write("json.safetensors", raw_file("{\"w\": {", data)), "JSON");
  expect_error(
      write("offsets.safetensors",
            raw_file(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[8,32]}})", data)),
      "tensor \"w\"");
  expect_error(
      write("size.safetensors",
            raw_file(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,24]}})", data)),
      "needs 16");
  expect_error(write("dtype.safetensors",
                     raw_file(R"({"w":{"dtype":"I64","shape":[3],"data_offsets":[0,24]}})", data)),
               "unsupported dtype I64");
  expect_error(
      write("shape.safetensors",
            raw_file(R"({"w":{"dtype":"F32","shape":[-1,3],"data_offsets":[0,24]}})", data)),
      "tensor \"w\"");
  expect_error(write("noshape.safetensors",
                     raw_file(R"({"w":{"dtype":"F32","data_offsets":[0,24]}})", data)),
               "missing shape");
  expect_error(write("order.safetensors",
                     raw_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[9,8]}})", data)),
               "tensor \"w\"");
  auto missing = SafetensorsFile::open(dir.file("missing.safetensors"));
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace qsearch
