#include "store/record.h"

#include <cstring>

namespace qsearch::store {
namespace {

template <typename T>
void put_le(std::string* out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));  // x86-64 and aarch64 are little-endian
  out->append(buf, sizeof(T));
}

// A bounds-checked reader over a record; every failed read poisons it.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  template <typename T>
  bool get(T* v) {
    if (!ok_ || in_.size() - pos_ < sizeof(T)) return ok_ = false;
    std::memcpy(v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool bytes(size_t n, std::string_view* out) {
    if (!ok_ || in_.size() - pos_ < n) return ok_ = false;
    *out = in_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  bool done() const { return ok_ && pos_ == in_.size(); }
  bool ok() const { return ok_; }

 private:
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace

std::string encode_document(const DocumentRecord& r) {
  std::string out;
  out.reserve(1 + 8 + 4 + 4 + 12 + r.text.size() + r.metadata_json.size() +
              r.embedding.size() * sizeof(float));
  out.push_back(static_cast<char>(r.chunks.empty() ? kDocumentRecordVersion
                                                   : kChunkedDocumentRecordVersion));
  put_le<int64_t>(&out, r.label);
  put_le<int32_t>(&out, r.tokens);
  put_le<int32_t>(&out, r.truncated_tokens);
  put_le<uint32_t>(&out, static_cast<uint32_t>(r.text.size()));
  out.append(r.text);
  put_le<uint32_t>(&out, static_cast<uint32_t>(r.metadata_json.size()));
  out.append(r.metadata_json);
  put_le<uint32_t>(&out, static_cast<uint32_t>(r.embedding.size()));
  out.append(reinterpret_cast<const char*>(r.embedding.data()), r.embedding.size() * sizeof(float));
  if (!r.chunks.empty()) {
    put_le<uint32_t>(&out, static_cast<uint32_t>(r.chunks.size()));
    for (const ChunkRecord& c : r.chunks) {
      put_le<int32_t>(&out, c.start);
      put_le<int32_t>(&out, c.end);
      put_le<int32_t>(&out, c.tokens);
    }
  }
  return out;
}

Status decode_document(std::string_view value, DocumentRecord* r, unsigned parts) {
  Reader in(value);
  uint8_t version = 0;
  if (!in.get(&version)) return corruption("empty document record");
  if (version != kDocumentRecordVersion && version != kChunkedDocumentRecordVersion) {
    return corruption("document record version " + std::to_string(version) + " is not supported");
  }
  uint32_t text_len = 0, meta_len = 0, dim = 0;
  std::string_view text, meta, emb;
  in.get(&r->label);
  in.get(&r->tokens);
  in.get(&r->truncated_tokens);
  in.get(&text_len);
  in.bytes(text_len, &text);
  in.get(&meta_len);
  in.bytes(meta_len, &meta);
  in.get(&dim);
  if (in.ok() && dim > (1u << 24)) return corruption("document record: implausible dimension");
  in.bytes(static_cast<size_t>(dim) * sizeof(float), &emb);
  r->chunks.clear();
  if (version == kChunkedDocumentRecordVersion) {
    uint32_t count = 0;
    in.get(&count);
    if (in.ok() && (count == 0 || count > dim)) {
      return corruption("chunked document record: " + std::to_string(count) + " chunks for " +
                        std::to_string(dim) + " embedding values");
    }
    if (in.ok()) r->chunks.resize(count);
    for (uint32_t i = 0; i < count && in.ok(); ++i) {
      in.get(&r->chunks[i].start);
      in.get(&r->chunks[i].end);
      in.get(&r->chunks[i].tokens);
    }
    if (in.ok() && dim % count != 0) {
      return corruption("chunked document record: embedding size is not a multiple of the chunks");
    }
  }
  if (!in.done()) return corruption("document record is truncated or has trailing bytes");
  if (parts & kPartText) r->text.assign(text);
  if (parts & kPartMetadata) r->metadata_json.assign(meta);
  if (parts & kPartEmbedding) {
    r->embedding.resize(dim);
    std::memcpy(r->embedding.data(), emb.data(), emb.size());
  }
  return Status::ok();
}

std::string encode_change(const ChangeRecord& c) {
  std::string out;
  out.push_back(static_cast<char>(c.op));
  put_le<int64_t>(&out, c.label);
  return out;
}

Status decode_change(std::string_view value, ChangeRecord* c) {
  Reader in(value);
  uint8_t op = 0;
  in.get(&op);
  in.get(&c->label);
  if (!in.done()) return corruption("change-log record has the wrong size");
  if (op != static_cast<uint8_t>(ChangeOp::kAdd) && op != static_cast<uint8_t>(ChangeOp::kRemove)) {
    return corruption("change-log record has an unknown op " + std::to_string(op));
  }
  c->op = static_cast<ChangeOp>(op);
  return Status::ok();
}

}  // namespace qsearch::store
