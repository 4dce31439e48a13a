#include "collection/metadata_index.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <set>
#include <string>

#include "common/thread_pool.h"
#include "store/keys.h"

namespace qsearch {
namespace {

constexpr int64_t kDefaultSliceLabels = 1 << 16;
std::atomic<int64_t> g_slice_labels{kDefaultSliceLabels};

using json = nlohmann::json;
using Kind = FilterNode::Kind;

enum ValueType : uint8_t { kNull = 1, kBool = 2, kNumber = 3, kString = 4, kPresent = 5 };

std::string path_base(uint64_t cid, const std::string& path) {
  std::string k = store::collection_range_begin(store::KeyPrefix::kMetaIndex, cid);
  k.push_back(static_cast<char>(path.size() >> 8));
  k.push_back(static_cast<char>(path.size() & 0xff));
  k += path;
  return k;
}

void append_number(std::string* out, double d) {
  if (d == 0) d = 0;  // -0.0 and 0.0 are one value
  uint64_t bits = std::bit_cast<uint64_t>(d);
  bits = (bits >> 63) ? ~bits : bits ^ (1ULL << 63);
  store::put_u64_be(out, bits);
}

// Escaped (0x00 -> 0x00 0xff) so that order is kept, then 0x00 0x01 (whole) or 0x00 0x02 (cut).
void append_string_body(std::string* out, std::string_view s) {
  for (char ch : s.substr(0, kMaxIndexedString)) {
    out->push_back(ch);
    if (ch == '\0') out->push_back('\xff');
  }
}
void append_string(std::string* out, std::string_view s) {
  append_string_body(out, s);
  out->push_back('\0');
  out->push_back(s.size() > kMaxIndexedString ? '\x02' : '\x01');
}

// type + value of a scalar; false for a non-scalar.
bool encode_scalar(const json& v, std::string* out) {
  if (v.is_null()) {
    out->push_back(static_cast<char>(kNull));
  } else if (v.is_boolean()) {
    out->push_back(static_cast<char>(kBool));
    out->push_back(v.get<bool>() ? '\x01' : '\x00');
  } else if (v.is_number()) {
    out->push_back(static_cast<char>(kNumber));
    append_number(out, v.get<double>());
  } else if (v.is_string()) {
    out->push_back(static_cast<char>(kString));
    append_string(out, v.get_ref<const std::string&>());
  } else {
    return false;
  }
  return true;
}

// Every entry key of a document, without the label (deduplicated).
void collect_entries(const json& v, const std::string& path, int depth, uint64_t cid,
                     std::set<std::string>* out) {
  const bool root = depth == 0;
  if (v.is_object() || v.is_array()) {
    if (!root) out->insert(path_base(cid, path) + static_cast<char>(kPresent));
    if (v.is_array()) {
      for (const auto& e : v) {
        std::string k = path_base(cid, path);
        if (encode_scalar(e, &k)) out->insert(std::move(k));
      }
      return;
    }
    if (depth >= kMaxIndexedDepth) return;
    for (const auto& [key, child] : v.items()) {
      std::string p = root ? key : path + "." + key;
      if (p.size() > kMaxIndexedPath) continue;
      collect_entries(child, p, depth + 1, cid, out);
    }
    return;
  }
  if (root) return;
  std::string k = path_base(cid, path);
  encode_scalar(v, &k);
  out->insert(std::move(k));
}

std::string with_label(std::string key, int64_t label) {
  store::put_i64_be(&key, label);
  return key;
}

// The smallest string greater than every string starting with s.
std::string successor(std::string s) {
  while (!s.empty() && static_cast<uint8_t>(s.back()) == 0xff) s.pop_back();
  if (!s.empty()) s.back() = static_cast<char>(static_cast<uint8_t>(s.back()) + 1);
  return s;
}

struct Planner {
  const store::KvStore& kv;
  uint64_t cid;
  size_t max_documents;
  int64_t label_hint = 0;
  int64_t slice_labels = 0;

  // The entries of one exact value (keys `prefix` + label): sliced by label over threads when
  // the collection is large (each slice is a sorted run of labels; the slices are in order).
  StatusOr<bool> scan_value(const std::string& prefix, LabelRuns* out) {
    ThreadPool& pool = search_pool();
    const int64_t parts = std::min<int64_t>(static_cast<int64_t>(pool.size()) + 1,
                                            label_hint / std::max<int64_t>(1, slice_labels));
    if (parts < 2) return scan(prefix, successor(prefix), out);
    auto bound = [&](int64_t p) {  // slice p starts here; the last one runs to the prefix's end
      std::string k = prefix;
      store::put_i64_be(&k, label_hint / parts * p);
      return k;
    };
    std::vector<LabelRuns> got(static_cast<size_t>(parts));
    std::vector<Status> status(static_cast<size_t>(parts), Status::ok());
    std::vector<char> ok(static_cast<size_t>(parts), 1);
    auto run = [&](int64_t p) {
      const std::string begin = p == 0 ? prefix : bound(p);
      const std::string end = p == parts - 1 ? successor(prefix) : bound(p + 1);
      auto r = scan(begin, end, &got[static_cast<size_t>(p)]);
      if (!r.is_ok()) {
        status[static_cast<size_t>(p)] = r.status();
      } else {
        ok[static_cast<size_t>(p)] = *r;
      }
    };
    pool.run_parts(static_cast<size_t>(parts), [&run](size_t p) { run(static_cast<int64_t>(p)); });
    size_t total = out->size();
    for (int64_t p = 0; p < parts; ++p) {
      QS_RETURN_IF_ERROR(status[static_cast<size_t>(p)]);
      if (!ok[static_cast<size_t>(p)]) return false;
      total += got[static_cast<size_t>(p)].size();
    }
    if (total > max_documents) return false;
    out->reserve(total);
    for (auto& g : got) out->insert(out->end(), g.begin(), g.end());
    return true;
  }

  // Documents of keys in [begin, end); false when more than max_documents.
  StatusOr<bool> scan(const std::string& begin, const std::string& end, LabelRuns* out) {
    bool overflow = false;
    QS_RETURN_IF_ERROR(kv.scan(begin, end, [&](std::string_view key, std::string_view value) {
      if (key.size() < 8 || value.size() != 4) return true;
      const int64_t label = store::get_i64_be(key.substr(key.size() - 8));
      const int64_t count = (static_cast<uint8_t>(value[0]) << 24) |
                            (static_cast<uint8_t>(value[1]) << 16) |
                            (static_cast<uint8_t>(value[2]) << 8) | static_cast<uint8_t>(value[3]);
      out->emplace_back(label, count);
      if (out->size() > max_documents) {
        overflow = true;
        return false;
      }
      return true;
    }));
    return !overflow;
  }

  static void normalize(LabelRuns* runs) {
    std::sort(runs->begin(), runs->end());
    runs->erase(std::unique(runs->begin(), runs->end()), runs->end());
  }

  // The base key of a node's path, or nullopt when the index does not cover the path.
  static std::optional<std::string> base_of(const FilterNode& n, uint64_t cid) {
    if (n.path.size() > static_cast<size_t>(kMaxIndexedDepth)) return std::nullopt;
    std::string joined;
    for (size_t i = 0; i < n.path.size(); ++i) joined += (i ? "." : "") + n.path[i];
    if (joined.size() > kMaxIndexedPath) return std::nullopt;
    return path_base(cid, joined);
  }

  StatusOr<std::optional<LabelRuns>> plan(const FilterNode& n) {
    LabelRuns runs;
    switch (n.kind) {
      case Kind::kEq:
      case Kind::kIn: {
        auto base = base_of(n, cid);
        if (!base) return std::optional<LabelRuns>();
        for (const json& v : n.values) {
          std::string k = *base;
          encode_scalar(v, &k);
          QS_ASSIGN_OR_RETURN(bool ok, scan_value(k, &runs));
          if (!ok) return std::optional<LabelRuns>();
        }
        break;
      }
      case Kind::kGt:
      case Kind::kGte:
      case Kind::kLt:
      case Kind::kLte: {
        auto base = base_of(n, cid);
        if (!base) return std::optional<LabelRuns>();
        const json& v = n.values[0];
        const bool lower = n.kind == Kind::kGt || n.kind == Kind::kGte;
        std::string type_base = *base;
        type_base.push_back(static_cast<char>(v.is_number() ? kNumber : kString));
        std::string bound = type_base;
        if (v.is_number()) {
          append_number(&bound, v.get<double>());
        } else {
          append_string_body(&bound, v.get_ref<const std::string&>());
        }
        // Inclusive on both sides of the bound (strict operators are settled by the caller's
        // check of the document); a cut string bound widens to its whole group.
        std::string begin, end;
        if (lower) {
          begin = bound;
          end = successor(type_base);
        } else {
          begin = type_base;
          end = v.is_number() ? successor(bound) : bound + std::string("\x00\x03", 2);
        }
        QS_ASSIGN_OR_RETURN(bool ok, scan(begin, end, &runs));
        if (!ok) return std::optional<LabelRuns>();
        break;
      }
      case Kind::kExists: {
        if (!n.exists) return std::optional<LabelRuns>();
        auto base = base_of(n, cid);
        if (!base) return std::optional<LabelRuns>();
        QS_ASSIGN_OR_RETURN(bool ok, scan(*base, successor(*base), &runs));
        if (!ok) return std::optional<LabelRuns>();
        break;
      }
      case Kind::kAnd: {
        std::optional<LabelRuns> acc;
        for (const auto& c : n.children) {
          QS_ASSIGN_OR_RETURN(std::optional<LabelRuns> r, plan(c));
          if (!r) continue;  // this term narrows nothing; the others may
          if (!acc) {
            acc = std::move(r);
          } else {
            LabelRuns both;
            std::set_intersection(acc->begin(), acc->end(), r->begin(), r->end(),
                                  std::back_inserter(both));
            acc = std::move(both);
          }
          if (acc->empty()) break;
        }
        return acc;
      }
      case Kind::kOr: {
        for (const auto& c : n.children) {
          QS_ASSIGN_OR_RETURN(std::optional<LabelRuns> r, plan(c));
          if (!r) return std::optional<LabelRuns>();
          runs.insert(runs.end(), r->begin(), r->end());
          normalize(&runs);
          if (runs.size() > max_documents) return std::optional<LabelRuns>();
        }
        return std::optional<LabelRuns>(std::move(runs));
      }
      default:  // kAll, kNot, kNe, kNin: complements are not narrowed by the index
        return std::optional<LabelRuns>();
    }
    normalize(&runs);
    return std::optional<LabelRuns>(std::move(runs));
  }
};

std::string count_value(int64_t label_count) {
  const uint32_t v = static_cast<uint32_t>(label_count);
  return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
}

}  // namespace

void put_metadata_entries(store::WriteBatch* batch, uint64_t cid, const json& metadata,
                          int64_t label, int64_t label_count) {
  std::set<std::string> keys;
  collect_entries(metadata, "", 0, cid, &keys);
  const std::string value = count_value(label_count);
  for (const auto& k : keys) batch->put(with_label(k, label), value);
}

void delete_metadata_entries(store::WriteBatch* batch, uint64_t cid, const json& metadata,
                             int64_t label) {
  std::set<std::string> keys;
  collect_entries(metadata, "", 0, cid, &keys);
  for (const auto& k : keys) batch->del(with_label(k, label));
}

std::vector<std::string> metadata_entry_keys(uint64_t cid, const json& metadata, int64_t label,
                                             int64_t label_count) {
  std::set<std::string> keys;
  collect_entries(metadata, "", 0, cid, &keys);
  std::vector<std::string> out;
  for (const auto& k : keys) out.push_back(with_label(k, label) + "=" + count_value(label_count));
  return out;
}

StatusOr<std::optional<LabelRuns>> metadata_candidates(const store::KvStore& kv, uint64_t cid,
                                                       const Filter& filter, size_t max_documents,
                                                       int64_t label_hint, int64_t slice_labels) {
  Planner p{kv, cid, max_documents, label_hint,
            slice_labels > 0 ? slice_labels : g_slice_labels.load()};
  return p.plan(filter.root());
}

std::vector<int64_t> expand_labels(const LabelRuns& runs) {
  std::vector<int64_t> out;
  for (const auto& [label, count] : runs)
    for (int64_t l = label; l < label + count; ++l) out.push_back(l);
  std::sort(out.begin(), out.end());
  return out;
}

void set_metadata_slice_labels(int64_t labels) {
  g_slice_labels = labels > 0 ? labels : kDefaultSliceLabels;
}

}  // namespace qsearch
