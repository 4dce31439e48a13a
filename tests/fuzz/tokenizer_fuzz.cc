// libFuzzer target: Tokenizer::encode on the real Qwen3 tokenizer.json, any bytes as input.
// Checks, beyond "no crash, no hang, no sanitizer report":
//  - encode fails exactly on invalid UTF-8 (our own independent validator decides), with
//    kInvalidArgument;
//  - encode and encode_with_offsets agree on the ids; every id is inside the vocabulary; the
//    offsets are ordered ranges inside the input;
//  - with add_special, the sequence ends with <|endoftext|> when the post-processor appends it;
//  - for input already in NFC, decode(encode(text, no specials)) == text (byte-level BPE and
//    added tokens lose nothing; NFC is the only change the pipeline makes to text).
// The tokenizer file: $QSEARCH_FUZZ_TOKENIZER, else <repo>/.deps/qwen3/tokenizer.json (make deps).
#include <utf8proc.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "embed/tokenizer/tokenizer.h"
#include "fuzz_util.h"

namespace {

std::unique_ptr<qsearch::Tokenizer> g_tokenizer;

// NFC through utf8proc with an explicit length (embedded NULs kept); nullopt on failure.
bool nfc(const std::string& in, std::string* out) {
  utf8proc_uint8_t* dst = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(in.data()),
                                    static_cast<utf8proc_ssize_t>(in.size()), &dst,
                                    static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) return false;
  out->assign(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
  std::free(dst);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* env = std::getenv("QSEARCH_FUZZ_TOKENIZER");
  std::string path = env && *env ? env : std::string(QSEARCH_DEPS_DIR) + "/qwen3/tokenizer.json";
  auto t = qsearch::Tokenizer::from_file(path);
  if (!t.is_ok()) {
    std::fprintf(stderr, "tokenizer_fuzz: cannot load %s: %s (run make deps)\n", path.c_str(),
                 t.status().to_string().c_str());
    std::exit(1);
  }
  g_tokenizer = std::move(t).value();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using qsearch::fuzz::is_valid_utf8;
  const std::string text(reinterpret_cast<const char*>(data), size);
  const bool valid = is_valid_utf8(text);
  const int64_t vocab = g_tokenizer->vocab_size();

  auto ids = g_tokenizer->encode(text, /*add_special=*/true);
  FUZZ_CHECK(ids.is_ok() == valid, "encode ok=%d but valid UTF-8=%d (%s)", ids.is_ok(), valid,
             ids.is_ok() ? "" : ids.status().to_string().c_str());
  if (!valid) {
    FUZZ_CHECK(ids.status().code() == qsearch::StatusCode::kInvalidArgument, "code %s",
               ids.status().to_string().c_str());
    auto spans = g_tokenizer->encode_with_offsets(text, true);
    FUZZ_CHECK(!spans.is_ok(), "encode_with_offsets accepted invalid UTF-8");
    return 0;
  }
  for (int32_t id : *ids) FUZZ_CHECK(id >= 0 && id < vocab, "id %d outside vocab %lld", id, (long long)vocab);
  const int32_t eos = 151643;
  if (g_tokenizer->post_processor_appends(eos))
    FUZZ_CHECK(!ids->empty() && ids->back() == eos, "post-processor EOS missing");

  auto spans = g_tokenizer->encode_with_offsets(text, true);
  FUZZ_CHECK(spans.is_ok(), "encode_with_offsets failed: %s", spans.status().to_string().c_str());
  FUZZ_CHECK(spans->size() == ids->size(), "%zu spans vs %zu ids", spans->size(), ids->size());
  for (size_t i = 0; i < spans->size(); ++i) {
    const auto& s = (*spans)[i];
    FUZZ_CHECK(s.id == (*ids)[i], "span %zu id %d != encode id %d", i, s.id, (*ids)[i]);
    FUZZ_CHECK(s.begin <= s.end && s.end <= size, "span %zu [%u, %u) outside %zu bytes", i,
               s.begin, s.end, size);
    if (i > 0) FUZZ_CHECK((*spans)[i - 1].begin <= s.begin, "span %zu starts before span %zu", i, i - 1);
  }

  auto plain = g_tokenizer->encode(text, /*add_special=*/false);
  FUZZ_CHECK(plain.is_ok(), "encode without specials failed: %s", plain.status().to_string().c_str());
  FUZZ_CHECK(plain->size() <= ids->size(), "post-processor removed tokens");
  std::string normalized;
  if (nfc(text, &normalized) && normalized == text) {
    std::string back = g_tokenizer->decode(*plain);
    FUZZ_CHECK(back == text, "decode(encode(x)) != x for NFC input of %zu bytes (got %zu bytes)",
               size, back.size());
  }
  return 0;
}
