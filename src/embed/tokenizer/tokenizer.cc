#include "embed/tokenizer/tokenizer.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "common/thread_pool.h"
#include "embed/tokenizer/pretokenizer.h"
#include "embed/tokenizer/tokenizer_json.h"
#include "embed/tokenizer/unicode.h"

namespace qsearch {

struct Tokenizer::Impl {
  std::unique_ptr<TokenizerData> d;
  const unicode::ClassTable& table = unicode::ClassTable::get();

  // The encoder proper: appends ids (and, when spans is not null, one TokenSpan per id).
  Status encode(std::string_view text, bool add_special, std::vector<int32_t>* ids,
                std::vector<TokenSpan>* spans) const;

 private:
  // One stretch of text between added tokens, at byte `base` of the input.
  void encode_segment(std::string_view seg, size_t base, std::vector<int32_t>* ids,
                      std::vector<TokenSpan>* spans) const;
  // BPE of the pieces of norm[begin, end).
  void encode_pieces(std::string_view norm, size_t begin, size_t end, const unicode::Span* align,
                     size_t base, std::vector<int32_t>* ids, std::vector<TokenSpan>* spans) const;
};

namespace {

// Original byte range of normalised bytes [nb, ne), widened to whole characters.
TokenSpan map_span(std::string_view norm, size_t nb, size_t ne, const unicode::Span* align,
                   size_t base, int32_t id) {
  while (nb > 0 && unicode::is_continuation(static_cast<unsigned char>(norm[nb]))) --nb;
  while (ne < norm.size() && unicode::is_continuation(static_cast<unsigned char>(norm[ne]))) ++ne;
  size_t b = nb, e = ne;
  if (align && ne > nb) {
    b = align[nb].begin;
    e = align[ne - 1].end;
  }
  return {id, static_cast<uint32_t>(base + b), static_cast<uint32_t>(base + e)};
}

}  // namespace

Status Tokenizer::Impl::encode(std::string_view text, bool add_special, std::vector<int32_t>* ids,
                               std::vector<TokenSpan>* spans) const {
  if (auto bad = unicode::find_invalid_utf8(text))
    return invalid_argument("invalid UTF-8 at byte offset " + std::to_string(*bad));
  if (text.size() > UINT32_MAX) return invalid_argument("text longer than 4 GiB");
  const auto size = static_cast<uint32_t>(text.size());
  auto add_fixed = [&](const std::vector<int32_t>& fixed) {
    for (int32_t id : fixed) {
      ids->push_back(id);
      if (spans) spans->push_back({id, size, size});
    }
  };
  if (add_special) add_fixed(d->prefix_ids);
  d->raw_matcher.split(text, [&](size_t b, size_t e, int32_t id) {
    if (id >= 0) {
      ids->push_back(id);
      if (spans) spans->push_back({id, static_cast<uint32_t>(b), static_cast<uint32_t>(e)});
    } else {
      encode_segment(text.substr(b, e - b), b, ids, spans);
    }
  });
  if (add_special) add_fixed(d->suffix_ids);
  return Status::ok();
}

void Tokenizer::Impl::encode_segment(std::string_view seg, size_t base, std::vector<int32_t>* ids,
                                     std::vector<TokenSpan>* spans) const {
  thread_local std::string norm_buf;
  thread_local std::vector<unicode::Span> align_buf;
  std::string_view norm = seg;
  const unicode::Span* align = nullptr;
  if (d->nfc && unicode::nfc_normalize(seg, &norm_buf, spans ? &align_buf : nullptr)) {
    norm = norm_buf;
    if (spans) align = align_buf.data();
  }
  if (d->normalized_matcher.empty()) {
    encode_pieces(norm, 0, norm.size(), align, base, ids, spans);
    return;
  }
  d->normalized_matcher.split(norm, [&](size_t b, size_t e, int32_t id) {
    if (id >= 0) {
      ids->push_back(id);
      if (spans) spans->push_back(map_span(norm, b, e, align, base, id));
    } else {
      encode_pieces(norm, b, e, align, base, ids, spans);
    }
  });
}

void Tokenizer::Impl::encode_pieces(std::string_view norm, size_t begin, size_t end,
                                    const unicode::Span* align, size_t base,
                                    std::vector<int32_t>* ids, std::vector<TokenSpan>* spans) const {
  std::string_view text = norm.substr(begin, end - begin);
  split_qwen2(text, table, [&](size_t pb, size_t pe) {
    std::string_view piece = text.substr(pb, pe - pb);
    size_t first = ids->size();
    bool done = false;
    if (d->ignore_merges) {
      int32_t whole = d->vocab_bytes.find(piece);
      if (whole >= 0) {
        ids->push_back(whole);
        done = true;
      }
    }
    if (!done) d->bpe.encode_word(piece, ids);
    if (spans) {
      size_t pos = begin + pb;
      for (size_t k = first; k < ids->size(); ++k) {
        int32_t id = (*ids)[k];
        size_t len = d->id_bytes[static_cast<size_t>(id)].size();
        spans->push_back(map_span(norm, pos, pos + len, align, base, id));
        pos += len;
      }
    }
  });
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::from_json(std::string_view json) {
  QS_ASSIGN_OR_RETURN(auto data, parse_tokenizer_json(json));
  auto impl = std::make_unique<Impl>();
  impl->d = std::move(data);
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open tokenizer file " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (!in.good() && !in.eof()) return io_error("error reading " + path);
  auto t = from_json(ss.str());
  if (!t.is_ok()) return t.status().with_context(path);
  return t;
}

StatusOr<std::vector<int32_t>> Tokenizer::encode(std::string_view text, bool add_special) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  QS_RETURN_IF_ERROR(impl_->encode(text, add_special, &ids, nullptr));
  return ids;
}

StatusOr<std::vector<TokenSpan>> Tokenizer::encode_with_offsets(std::string_view text,
                                                                bool add_special) const {
  std::vector<int32_t> ids;
  std::vector<TokenSpan> spans;
  QS_RETURN_IF_ERROR(impl_->encode(text, add_special, &ids, &spans));
  return spans;
}

std::vector<StatusOr<std::vector<int32_t>>> Tokenizer::encode_batch(
    const std::vector<std::string>& texts, bool add_special, ThreadPool* pool) const {
  std::vector<StatusOr<std::vector<int32_t>>> results(texts.size(), std::vector<int32_t>{});
  auto run = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) results[i] = encode(texts[i], add_special);
  };
  if (pool && pool->size() > 0 && texts.size() > 1) {
    // Dynamic scheduling in small steps: text lengths vary a lot.
    std::atomic<size_t> next{0};
    const size_t step = std::max<size_t>(1, std::min<size_t>(16, texts.size() / (8 * (pool->size() + 1))));
    pool->parallel_for(pool->size() + 1, [&](size_t, size_t) {
      for (;;) {
        size_t b = next.fetch_add(step);
        if (b >= texts.size()) break;
        run(b, std::min(texts.size(), b + step));
      }
    });
  } else {
    run(0, texts.size());
  }
  return results;
}

namespace {

// Replaces each maximal invalid UTF-8 subpart with U+FFFD (Rust's from_utf8_lossy).
std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    auto bad = unicode::find_invalid_utf8(s.substr(i));
    if (!bad) {
      out.append(s.substr(i));
      break;
    }
    out.append(s.substr(i, *bad));
    i += *bad;
    // Length of the valid prefix of a sequence starting here (at least 1 byte is dropped).
    auto b = static_cast<unsigned char>(s[i]);
    size_t need = b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 1;
    size_t k = 1;
    for (; k < need && i + k < s.size(); ++k) {
      auto c = static_cast<unsigned char>(s[i + k]);
      unsigned char lo = 0x80, hi = 0xBF;
      if (k == 1) {
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
      }
      if (c < lo || c > hi) break;
    }
    i += k;
    out.append("\xEF\xBF\xBD");
  }
  return out;
}

}  // namespace

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string bytes;
  const auto& id_bytes = impl_->d->id_bytes;
  for (int32_t id : ids)
    if (id >= 0 && static_cast<size_t>(id) < id_bytes.size()) bytes += id_bytes[static_cast<size_t>(id)];
  return utf8_lossy(bytes);
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  std::string key(token);
  if (auto it = impl_->d->added_by_content.find(key); it != impl_->d->added_by_content.end())
    return it->second;
  if (int32_t id = impl_->d->vocab.find(key); id >= 0) return id;
  return std::nullopt;
}

int64_t Tokenizer::vocab_size() const { return impl_->d->vocab_size; }

bool Tokenizer::post_processor_appends(int32_t id) const {
  return !impl_->d->suffix_ids.empty() && impl_->d->suffix_ids.back() == id;
}

}  // namespace qsearch
