// Search modes, fusion and highlights (see hybrid.h).
#include "collection/hybrid.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "collection/text_analyzer.h"

namespace qsearch {

const char* search_mode_name(SearchMode m) {
  switch (m) {
    case SearchMode::kDense:
      return "dense";
    case SearchMode::kLexical:
      return "lexical";
    case SearchMode::kHybrid:
      return "hybrid";
  }
  return "dense";
}

StatusOr<SearchMode> parse_search_mode(const std::string& name) {
  if (name == "dense") return SearchMode::kDense;
  if (name == "lexical") return SearchMode::kLexical;
  if (name == "hybrid") return SearchMode::kHybrid;
  return unprocessable("unknown search \"mode\" '" + name + "' (dense, lexical, hybrid)");
}

StatusOr<FusionOptions> FusionOptions::from_json(const nlohmann::json& j) {
  if (!j.is_object()) return invalid_argument("\"fusion\" must be an object");
  FusionOptions f;
  auto type = j.find("type");
  if (type == j.end() || type->is_null())
    return unprocessable("\"fusion\".\"type\" is required (\"rrf\" or \"weighted\")");
  if (!type->is_string()) return invalid_argument("\"fusion\".\"type\" must be a string");
  if (*type == "rrf") {
    f.type = Type::kRrf;
  } else if (*type == "weighted") {
    f.type = Type::kWeighted;
  } else {
    return unprocessable("unknown \"fusion\".\"type\" '" + type->get<std::string>() +
                         "' (rrf, weighted)");
  }
  for (const auto& [key, value] : j.items()) {
    if (key == "type") continue;
    if (key == "k" && f.type == Type::kRrf) {
      if (!value.is_number_integer())
        return invalid_argument("\"fusion\".\"k\" must be an integer");
      const bool in_range = value.is_number_unsigned()
                                ? value.get<uint64_t>() >= 1 && value.get<uint64_t>() <= 10000
                                : value.get<int64_t>() >= 1 && value.get<int64_t>() <= 10000;
      if (!in_range)
        return unprocessable("\"fusion\".\"k\" must be in 1..10000, got " + value.dump());
      f.rrf_k = value.get<int>();
    } else if (key == "alpha" && f.type == Type::kWeighted) {
      if (!value.is_number()) return invalid_argument("\"fusion\".\"alpha\" must be a number");
      const double a = value.get<double>();
      if (!(a >= 0.0 && a <= 1.0))
        return unprocessable("\"fusion\".\"alpha\" must be in 0..1, got " + value.dump());
      f.alpha = a;
    } else {
      return unprocessable("unknown field \"" + key + "\" in \"fusion\" of type " +
                           type->get<std::string>());
    }
  }
  return f;
}

int hybrid_candidates(int wanted) { return std::min(1000, std::max(wanted, 100)); }

namespace {

// Min-max normalised scores, 1 for the best.
std::vector<double> normalised(const std::vector<SearchHit>& hits, bool lower_is_better) {
  std::vector<double> out(hits.size(), 1.0);
  if (hits.empty()) return out;
  double lo = hits[0].score, hi = hits[0].score;
  for (const SearchHit& h : hits) {
    lo = std::min<double>(lo, h.score);
    hi = std::max<double>(hi, h.score);
  }
  if (hi - lo <= 0) return out;
  for (size_t i = 0; i < hits.size(); ++i)
    out[i] = lower_is_better ? (hi - hits[i].score) / (hi - lo) : (hits[i].score - lo) / (hi - lo);
  return out;
}

}  // namespace

std::vector<SearchHit> fuse_hits(std::vector<SearchHit> dense, std::vector<SearchHit> lexical,
                                 const FusionOptions& fusion, bool dense_lower_is_better) {
  const bool rrf = fusion.type == FusionOptions::Type::kRrf;
  const std::vector<double> dn = normalised(dense, dense_lower_is_better);
  const std::vector<double> ln = normalised(lexical, false);
  std::vector<SearchHit> out;
  std::vector<double> fused;
  std::unordered_map<std::string, size_t> at;
  for (size_t i = 0; i < dense.size(); ++i) {
    SearchHit& h = dense[i];
    if (at.count(h.id)) continue;
    h.dense_score = h.score;
    at.emplace(h.id, out.size());
    fused.push_back(rrf ? 1.0 / (fusion.rrf_k + static_cast<double>(i + 1)) : fusion.alpha * dn[i]);
    out.push_back(std::move(h));
  }
  for (size_t i = 0; i < lexical.size(); ++i) {
    SearchHit& h = lexical[i];
    const double part =
        rrf ? 1.0 / (fusion.rrf_k + static_cast<double>(i + 1)) : (1.0 - fusion.alpha) * ln[i];
    auto it = at.find(h.id);
    if (it == at.end()) {
      h.lexical_score = h.score;
      at.emplace(h.id, out.size());
      fused.push_back(part);
      out.push_back(std::move(h));
      continue;
    }
    SearchHit& prior = out[it->second];
    if (prior.lexical_score) continue;  // a document appears once per list; be safe
    prior.lexical_score = h.score;
    fused[it->second] += part;
    if (h.chunk >= 0) {
      prior.chunk = h.chunk;
      prior.chunk_span = h.chunk_span;
    }
  }
  std::vector<size_t> order(out.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&fused](size_t a, size_t b) { return fused[a] > fused[b]; });
  std::vector<SearchHit> sorted;
  sorted.reserve(out.size());
  for (size_t i : order) {
    out[i].score = static_cast<float>(fused[i]);
    sorted.push_back(std::move(out[i]));
  }
  return sorted;
}

std::vector<std::pair<int32_t, int32_t>> highlight_terms(std::string_view text,
                                                         const std::vector<std::string>& terms,
                                                         int32_t chunk_start, int32_t chunk_end) {
  std::vector<std::pair<int32_t, int32_t>> out;
  if (terms.empty()) return out;
  const std::unordered_set<std::string_view> wanted(terms.begin(), terms.end());
  std::string_view part = text;
  int32_t base = 0;
  if (chunk_start >= 0) {
    part = code_point_range(text, chunk_start, chunk_end);
    base = chunk_start;
  }
  // Code points are counted incrementally: tokens come in text order.
  size_t counted_bytes = 0;
  int32_t counted = 0;
  auto cp_at = [&](size_t byte) {
    counted += code_points_before(part.substr(counted_bytes), byte - counted_bytes);
    counted_bytes = byte;
    return counted;
  };
  analyze_text(part, [&](std::string_view term, size_t begin, size_t end) {
    if (!wanted.count(term)) return true;
    const int32_t s = cp_at(begin);
    const int32_t e = cp_at(end);
    out.emplace_back(base + s, base + e);
    return out.size() < kMaxHighlights;
  });
  return out;
}

}  // namespace qsearch
