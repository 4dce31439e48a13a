// The model identity (service/model_identity.h) covers the weights' contents: two test models
// with the same files and sizes but other weight bytes are told apart, the same bytes give the
// same identity, and the older formula (names and sizes only) is still computed for upgrades.
#include <filesystem>
#include <fstream>

#include "model/test_util.h"
#include "service/model_identity.h"

namespace qsearch::testing {
namespace {

namespace fs = std::filesystem;

void copy_dir(const std::string& from, const std::string& to) {
  fs::create_directories(to);
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
}

// Flips one byte of a tensor's data in the file (the last byte: the data section's end).
void flip_last_byte(const std::string& path) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(-1, std::ios::end);
  char c = 0;
  f.read(&c, 1);
  f.seekp(-1, std::ios::end);
  c = static_cast<char>(c ^ 0x5a);
  f.write(&c, 1);
}

ModelIdentity identity_of(const std::string& dir) {
  auto id = compute_model_identity(dir);
  EXPECT_TRUE(id.is_ok()) << id.status().to_string();
  return id.is_ok() ? *id : ModelIdentity{};
}

TEST(ModelIdentity, ContentsNotJustSizesDecide) {
  if (!have_qwen3_tokenizer()) return;
  TempDir tmp;
  // The same directory name in both places: only the contents may tell them apart.
  const std::string a = tmp.path() + "/a/model", b = tmp.path() + "/b/model";
  const std::string same = tmp.path() + "/same/model", flipped = tmp.path() + "/flipped/model";
  fs::create_directories(a);
  fs::create_directories(b);
  TestModelOptions seed43;
  seed43.seed = 43;
  make_tiny_model(a);
  make_tiny_model(b, seed43);
  copy_dir(a, same);
  copy_dir(a, flipped);
  flip_last_byte(flipped + "/model.safetensors");
  ASSERT_EQ(fs::file_size(a + "/model.safetensors"), fs::file_size(b + "/model.safetensors"));
  ASSERT_EQ(fs::file_size(a + "/model.safetensors"), fs::file_size(flipped + "/model.safetensors"));

  const ModelIdentity ia = identity_of(a), ib = identity_of(b);
  const ModelIdentity isame = identity_of(same), iflipped = identity_of(flipped);
  // Form: "<dir name>@<32 hex digits>".
  EXPECT_EQ(ia.name, "model");
  ASSERT_EQ(ia.identity.size(), std::string("model@").size() + 32) << ia.identity;
  EXPECT_EQ(ia.identity.rfind("model@", 0), 0u) << ia.identity;
  EXPECT_EQ(ia.identity.find_first_not_of("0123456789abcdef", 6), std::string::npos);
  // Same bytes, same identity; other bytes of the same size, another identity.
  EXPECT_EQ(ia.identity, isame.identity);
  EXPECT_NE(ia.identity, ib.identity);
  EXPECT_NE(ia.identity, iflipped.identity);
  EXPECT_NE(ib.identity, iflipped.identity);
  // The older formula could not tell them apart (the defect of issue 11); it stays computable
  // so that collections created with it can be upgraded.
  EXPECT_EQ(ia.legacy_identity, ib.legacy_identity);
  EXPECT_EQ(ia.legacy_identity, iflipped.legacy_identity);
  EXPECT_EQ(ia.legacy_identity.size(), std::string("model@").size() + 16);
  // Every byte of config.json and the weights was read.
  EXPECT_EQ(ia.bytes_hashed, static_cast<int64_t>(fs::file_size(a + "/model.safetensors") +
                                                  fs::file_size(a + "/config.json")));
}

TEST(ModelIdentity, ShardedModelsHashEveryShard) {
  if (!have_qwen3_tokenizer()) return;
  TempDir tmp;
  const std::string a = tmp.path() + "/a/m", b = tmp.path() + "/b/m";
  fs::create_directories(a);
  TestModelOptions sharded;
  sharded.shards = 2;
  make_tiny_model(a, sharded);
  copy_dir(a, b);
  std::string second;
  for (const auto& e : fs::directory_iterator(b))
    if (e.path().filename().string().find("-00002-of-") != std::string::npos) second = e.path();
  ASSERT_FALSE(second.empty());
  EXPECT_EQ(identity_of(a).identity, identity_of(b).identity);
  flip_last_byte(second);
  EXPECT_NE(identity_of(a).identity, identity_of(b).identity);
}

TEST(ModelIdentity, UnreadableDirectoryIsAnError) {
  auto id = compute_model_identity("/nonexistent/qsearch-model");
  EXPECT_FALSE(id.is_ok());
}

}  // namespace
}  // namespace qsearch::testing
