// The metadata filter language of search, count, scroll, delete and duplicates (issue 11),
// parsed once into a typed expression and evaluated over a document's metadata JSON.
//
//   {"field": value}                 equality; an array field matches when it contains value
//   {"field": {"$op": operand, ...}} every operator must hold:
//     $eq v, $ne v                   equality / its negation (a missing field is "not equal")
//     $gt $gte $lt $lte v            ordering; v a number or a string
//     $in [v...], $nin [v...]        equal to one of / none of (at most 1024 values)
//     $exists true|false             the field is present (any value, null included) / absent
//   {"$and": [f...]}, {"$or": [f...]} (non-empty lists of filters), {"$not": f}
//   Several keys in one object all must hold; {} matches every document.
//   Paths are dotted: "a.b" is key "b" of the object under key "a".
//   Values v are strings, numbers, booleans or null. Numbers compare as numbers (1 == 1.0),
//   strings as strings (bytewise, UTF-8), never across types: {"year": {"$gte": 2023}} does not
//   match "year": "2024". Ordering operators on an array field hold when one element does;
//   booleans and null only compare for equality.
// Anything else (an unknown operator, a list or object as an equality value, an empty path
// segment, a wrong operand type, nesting deeper than 32) is kInvalidArgument naming the
// offending part, e.g. `filter.$and[1].year.$gte: expects a number or a string, got true`.
//
// Thread safety: a parsed Filter is immutable; matches() may run on many threads at once.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace qsearch {

struct FilterNode {
  enum class Kind { kAll, kAnd, kOr, kNot, kEq, kNe, kGt, kGte, kLt, kLte, kIn, kNin, kExists };
  Kind kind = Kind::kAll;
  std::vector<std::string> path;       // comparisons: the dotted path, split
  std::string field;                   // comparisons: the path as written
  std::vector<nlohmann::json> values;  // kEq..kLte: one operand; kIn/kNin: the list
  bool exists = true;                  // kExists
  std::vector<FilterNode> children;    // kAnd/kOr: the terms; kNot: one
};

class Filter {
 public:
  Filter() = default;  // matches everything

  // null or {} give the match-all filter; what is wrong is named after `where` ("filter").
  static StatusOr<Filter> parse(const nlohmann::json& j, const std::string& where = "filter");

  bool matches_all() const { return root_.kind == FilterNode::Kind::kAll; }
  bool matches(const nlohmann::json& metadata) const;
  const FilterNode& root() const { return root_; }

 private:
  FilterNode root_;
};

// The value at a dotted path of metadata (nullptr when some step is missing or not an object).
const nlohmann::json* filter_lookup(const nlohmann::json& metadata,
                                    const std::vector<std::string>& path);

// Evaluates one node (exposed for the metadata index's residual checks).
bool filter_node_matches(const FilterNode& node, const nlohmann::json& metadata);

}  // namespace qsearch
