#include "store/keys.h"

namespace qsearch::store {

void put_u64_be(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out->push_back(static_cast<char>((v >> shift) & 0xff));
}

uint64_t get_u64_be(std::string_view in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

void put_i64_be(std::string* out, int64_t v) { put_u64_be(out, static_cast<uint64_t>(v)); }
int64_t get_i64_be(std::string_view in) { return static_cast<int64_t>(get_u64_be(in)); }

static std::string with_prefix(KeyPrefix p) { return std::string(1, static_cast<char>(p)); }

static std::string collection_prefix(KeyPrefix p, uint64_t cid) {
  std::string k = with_prefix(p);
  put_u64_be(&k, cid);
  return k;
}

std::string meta_key(std::string_view name) {
  std::string k = with_prefix(KeyPrefix::kMeta);
  k.append(name);
  return k;
}

std::string name_key(std::string_view collection_name) {
  std::string k = with_prefix(KeyPrefix::kName);
  k.append(collection_name);
  return k;
}

std::string spec_key(uint64_t cid) { return collection_prefix(KeyPrefix::kSpec, cid); }
std::string reembed_key(uint64_t cid) { return collection_prefix(KeyPrefix::kReembed, cid); }

std::string counter_key(uint64_t cid, CounterKind kind) {
  std::string k = collection_prefix(KeyPrefix::kCounter, cid);
  k.push_back(static_cast<char>(kind));
  return k;
}

std::string document_key(uint64_t cid, std::string_view doc_id) {
  std::string k = collection_prefix(KeyPrefix::kDocument, cid);
  k.append(doc_id);
  return k;
}

std::string label_key(uint64_t cid, int64_t label) {
  std::string k = collection_prefix(KeyPrefix::kLabel, cid);
  put_i64_be(&k, label);
  return k;
}

std::string changelog_key(uint64_t cid, uint64_t seq) {
  std::string k = collection_prefix(KeyPrefix::kChangeLog, cid);
  put_u64_be(&k, seq);
  return k;
}

std::string collection_range_begin(KeyPrefix prefix, uint64_t cid) {
  return collection_prefix(prefix, cid);
}

std::string collection_range_end(KeyPrefix prefix, uint64_t cid) {
  // cid + 1 cannot overflow in practice (ids count up from 1); guard anyway.
  if (cid == UINT64_MAX) return prefix_end(prefix);
  return collection_prefix(prefix, cid + 1);
}

std::string prefix_begin(KeyPrefix prefix) { return with_prefix(prefix); }

std::string prefix_end(KeyPrefix prefix) {
  return std::string(1, static_cast<char>(static_cast<uint8_t>(prefix) + 1));
}

bool parse_spec_key(std::string_view key, uint64_t* cid) {
  if (key.size() != 9 || static_cast<uint8_t>(key[0]) != static_cast<uint8_t>(KeyPrefix::kSpec)) {
    return false;
  }
  *cid = get_u64_be(key.substr(1));
  return true;
}

bool parse_document_key(std::string_view key, uint64_t* cid, std::string* doc_id) {
  if (key.size() < 9 || static_cast<uint8_t>(key[0]) != static_cast<uint8_t>(KeyPrefix::kDocument)) {
    return false;
  }
  *cid = get_u64_be(key.substr(1));
  doc_id->assign(key.substr(9));
  return true;
}

bool parse_changelog_key(std::string_view key, uint64_t* cid, uint64_t* seq) {
  if (key.size() != 17 ||
      static_cast<uint8_t>(key[0]) != static_cast<uint8_t>(KeyPrefix::kChangeLog)) {
    return false;
  }
  *cid = get_u64_be(key.substr(1));
  *seq = get_u64_be(key.substr(9));
  return true;
}

}  // namespace qsearch::store
