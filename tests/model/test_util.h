// Helpers shared by the model and engine tests (header-only so tests/engine can include it as
// "model/test_util.h"): temporary directories, the real Qwen3 tokenizer.json from `make deps`,
// and test models written by our generator.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "embed/model/test_model.h"

namespace qsearch::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/qsearch-test-XXXXXX";
    char* p = mkdtemp(tmpl.data());
    if (p) path_ = p;
  }
  ~TempDir() {
    if (!path_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

// The real Qwen3 tokenizer.json fetched by `make deps` (ByteLevel post-processor).
inline std::string qwen3_tokenizer_path() {
  return std::string(QSEARCH_DEPS_DIR) + "/qwen3/tokenizer.json";
}

// Fails the current test (returns false) when `make deps` has not been run.
inline bool have_qwen3_tokenizer() {
  if (file_exists(qwen3_tokenizer_path())) return true;
  ADD_FAILURE() << qwen3_tokenizer_path() << " is missing: run `make deps`";
  return false;
}

// Writes a tiny test model (seed 42 unless given) into dir; fails the test on error.
inline TestModelInfo make_tiny_model(const std::string& dir, TestModelOptions o = {}) {
  o.tokenizer_path = qwen3_tokenizer_path();
  o.out_dir = dir;
  auto info = write_test_model(o);
  EXPECT_TRUE(info.is_ok()) << info.status().to_string();
  return info.is_ok() ? *info : TestModelInfo{};
}

}  // namespace qsearch::testing
