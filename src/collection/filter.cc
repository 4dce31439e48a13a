#include "collection/filter.h"

#include <string_view>

namespace qsearch {
namespace {

using json = nlohmann::json;
using Kind = FilterNode::Kind;

constexpr int kMaxDepth = 32;
constexpr size_t kMaxInValues = 1024;

std::string describe(const json& j) {
  std::string s = j.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

bool is_scalar(const json& v) {
  return v.is_string() || v.is_number() || v.is_boolean() || v.is_null();
}

bool is_integer(const json& v) { return v.is_number_integer() || v.is_number_unsigned(); }

// -1, 0, 1 for two numbers: exact for two integers, through double otherwise.
int compare_numbers(const json& a, const json& b) {
  if (is_integer(a) && is_integer(b)) {
    const bool au = a.is_number_unsigned(), bu = b.is_number_unsigned();
    if (au && bu) {
      auto x = a.get<uint64_t>(), y = b.get<uint64_t>();
      return x < y ? -1 : x > y ? 1 : 0;
    }
    if (!au && !bu) {
      auto x = a.get<int64_t>(), y = b.get<int64_t>();
      return x < y ? -1 : x > y ? 1 : 0;
    }
    // One unsigned (nlohmann stores non-negative literals as unsigned), one signed.
    if (au) {
      const int64_t y = b.get<int64_t>();
      if (y < 0) return 1;
      auto x = a.get<uint64_t>(), yy = static_cast<uint64_t>(y);
      return x < yy ? -1 : x > yy ? 1 : 0;
    }
    const int64_t x = a.get<int64_t>();
    if (x < 0) return -1;
    auto xx = static_cast<uint64_t>(x), y = b.get<uint64_t>();
    return xx < y ? -1 : xx > y ? 1 : 0;
  }
  const double x = a.get<double>(), y = b.get<double>();
  return x < y ? -1 : x > y ? 1 : 0;
}

// Equality of a stored scalar and an operand: same kind only.
bool scalar_equal(const json& stored, const json& operand) {
  if (stored.is_number() && operand.is_number()) return compare_numbers(stored, operand) == 0;
  if (stored.is_string() && operand.is_string())
    return stored.get_ref<const std::string&>() == operand.get_ref<const std::string&>();
  if (stored.is_boolean() && operand.is_boolean()) return stored.get<bool>() == operand.get<bool>();
  return stored.is_null() && operand.is_null();
}

// Ordering of a stored scalar against an operand (a number or a string); false across kinds.
bool scalar_order(const json& stored, Kind op, const json& operand) {
  int c;
  if (stored.is_number() && operand.is_number()) {
    c = compare_numbers(stored, operand);
  } else if (stored.is_string() && operand.is_string()) {
    int r = stored.get_ref<const std::string&>().compare(operand.get_ref<const std::string&>());
    c = r < 0 ? -1 : r > 0 ? 1 : 0;
  } else {
    return false;
  }
  switch (op) {
    case Kind::kGt:
      return c > 0;
    case Kind::kGte:
      return c >= 0;
    case Kind::kLt:
      return c < 0;
    case Kind::kLte:
      return c <= 0;
    default:
      return false;
  }
}

// The field equals the operand, or (an array) contains it.
bool field_equals(const json* field, const json& operand) {
  if (!field) return false;
  if (field->is_array()) {
    for (const auto& e : *field)
      if (scalar_equal(e, operand)) return true;
    return false;
  }
  return scalar_equal(*field, operand);
}

bool field_in(const json* field, const std::vector<json>& values) {
  for (const auto& v : values)
    if (field_equals(field, v)) return true;
  return false;
}

bool field_order(const json* field, Kind op, const json& operand) {
  if (!field) return false;
  if (field->is_array()) {
    for (const auto& e : *field)
      if (scalar_order(e, op, operand)) return true;
    return false;
  }
  return scalar_order(*field, op, operand);
}

Status error_at(const std::string& where, const std::string& what) {
  return invalid_argument(where + ": " + what);
}

Status split_path(const std::string& key, const std::string& where, std::vector<std::string>* out) {
  out->clear();
  size_t start = 0;
  for (;;) {
    size_t dot = key.find('.', start);
    std::string part =
        key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (part.empty()) return error_at(where, "a field path must be non-empty names joined by '.'");
    out->push_back(std::move(part));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return Status::ok();
}

Status parse_object(const json& j, const std::string& where, int depth, FilterNode* out);

// One filter of a $and/$or list or a $not.
Status parse_filter(const json& j, const std::string& where, int depth, FilterNode* out) {
  if (depth > kMaxDepth) return error_at(where, "filter nested deeper than 32 levels");
  if (!j.is_object()) return error_at(where, "a filter must be an object, got " + describe(j));
  return parse_object(j, where, depth, out);
}

Status parse_operand(const json& v, Kind kind, const std::string& where, FilterNode* node) {
  switch (kind) {
    case Kind::kEq:
    case Kind::kNe:
      if (!is_scalar(v))
        return error_at(where, "expects a string, number, boolean or null, got " + describe(v) +
                                   (v.is_array() ? " (for a list use $in)" : ""));
      node->values.push_back(v);
      return Status::ok();
    case Kind::kGt:
    case Kind::kGte:
    case Kind::kLt:
    case Kind::kLte:
      if (!v.is_number() && !v.is_string())
        return error_at(where, "expects a number or a string, got " + describe(v));
      node->values.push_back(v);
      return Status::ok();
    case Kind::kIn:
    case Kind::kNin:
      if (!v.is_array()) return error_at(where, "expects a list of values, got " + describe(v));
      if (v.size() > kMaxInValues) return error_at(where, "holds more than 1024 values");
      for (size_t i = 0; i < v.size(); ++i) {
        if (!is_scalar(v[i]))
          return error_at(where + "[" + std::to_string(i) + "]",
                          "expects a string, number, boolean or null, got " + describe(v[i]));
        node->values.push_back(v[i]);
      }
      return Status::ok();
    case Kind::kExists:
      if (!v.is_boolean()) return error_at(where, "expects true or false, got " + describe(v));
      node->exists = v.get<bool>();
      return Status::ok();
    default:
      return internal_error("filter: bad operator kind");
  }
}

bool operator_kind(std::string_view op, Kind* kind) {
  static const std::pair<std::string_view, Kind> kOps[] = {
      {"$eq", Kind::kEq},   {"$ne", Kind::kNe},   {"$gt", Kind::kGt},
      {"$gte", Kind::kGte}, {"$lt", Kind::kLt},   {"$lte", Kind::kLte},
      {"$in", Kind::kIn},   {"$nin", Kind::kNin}, {"$exists", Kind::kExists}};
  for (const auto& [name, k] : kOps) {
    if (op == name) {
      *kind = k;
      return true;
    }
  }
  return false;
}

// The condition on one field: a scalar (equality) or an object of operators.
Status parse_field(const std::string& key, const json& cond, const std::string& where,
                   FilterNode* out) {
  std::vector<std::string> path;
  QS_RETURN_IF_ERROR(split_path(key, where, &path));
  auto leaf = [&](Kind kind) {
    FilterNode n;
    n.kind = kind;
    n.path = path;
    n.field = key;
    return n;
  };
  if (!cond.is_object()) {
    FilterNode n = leaf(Kind::kEq);
    QS_RETURN_IF_ERROR(parse_operand(cond, Kind::kEq, where, &n));
    *out = std::move(n);
    return Status::ok();
  }
  if (cond.empty())
    return error_at(where, "an empty object is not a condition (use {\"$exists\": true})");
  std::vector<FilterNode> terms;
  for (const auto& [op, operand] : cond.items()) {
    const std::string at = where + "." + op;
    Kind kind;
    if (!operator_kind(op, &kind)) {
      if (op.empty() || op[0] != '$')
        return error_at(at,
                        "an object value must hold operators ($eq, $gt, ...); use the "
                        "dotted path \"" +
                            key + "." + op + "\" for a nested field");
      return error_at(
          at, "unknown operator " + op + " (known: $eq $ne $gt $gte $lt $lte $in $nin $exists)");
    }
    FilterNode n = leaf(kind);
    QS_RETURN_IF_ERROR(parse_operand(operand, kind, at, &n));
    terms.push_back(std::move(n));
  }
  if (terms.size() == 1) {
    *out = std::move(terms[0]);
  } else {
    out->kind = Kind::kAnd;
    out->children = std::move(terms);
  }
  return Status::ok();
}

Status parse_object(const json& j, const std::string& where, int depth, FilterNode* out) {
  std::vector<FilterNode> terms;
  for (const auto& [key, value] : j.items()) {
    const std::string at = where + "." + key;
    FilterNode n;
    if (key == "$and" || key == "$or") {
      if (!value.is_array() || value.empty())
        return error_at(at, "expects a non-empty list of filters, got " + describe(value));
      n.kind = key == "$and" ? Kind::kAnd : Kind::kOr;
      for (size_t i = 0; i < value.size(); ++i) {
        FilterNode child;
        QS_RETURN_IF_ERROR(
            parse_filter(value[i], at + "[" + std::to_string(i) + "]", depth + 1, &child));
        n.children.push_back(std::move(child));
      }
    } else if (key == "$not") {
      n.kind = Kind::kNot;
      FilterNode child;
      QS_RETURN_IF_ERROR(parse_filter(value, at, depth + 1, &child));
      n.children.push_back(std::move(child));
    } else if (!key.empty() && key[0] == '$') {
      return error_at(at, "unknown combinator " + key +
                              " (known: $and $or $not; operators go "
                              "under a field: {\"field\": {\"$gt\": 1}})");
    } else {
      QS_RETURN_IF_ERROR(parse_field(key, value, at, &n));
    }
    terms.push_back(std::move(n));
  }
  if (terms.empty()) {
    out->kind = Kind::kAll;
  } else if (terms.size() == 1) {
    *out = std::move(terms[0]);
  } else {
    out->kind = Kind::kAnd;
    out->children = std::move(terms);
  }
  return Status::ok();
}

}  // namespace

const json* filter_lookup(const json& metadata, const std::vector<std::string>& path) {
  const json* cur = &metadata;
  for (const auto& part : path) {
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(part);
    if (it == cur->end()) return nullptr;
    cur = &*it;
  }
  return cur;
}

bool filter_node_matches(const FilterNode& node, const json& metadata) {
  switch (node.kind) {
    case Kind::kAll:
      return true;
    case Kind::kAnd:
      for (const auto& c : node.children)
        if (!filter_node_matches(c, metadata)) return false;
      return true;
    case Kind::kOr:
      for (const auto& c : node.children)
        if (filter_node_matches(c, metadata)) return true;
      return false;
    case Kind::kNot:
      return !filter_node_matches(node.children[0], metadata);
    case Kind::kEq:
      return field_equals(filter_lookup(metadata, node.path), node.values[0]);
    case Kind::kNe:
      return !field_equals(filter_lookup(metadata, node.path), node.values[0]);
    case Kind::kGt:
    case Kind::kGte:
    case Kind::kLt:
    case Kind::kLte:
      return field_order(filter_lookup(metadata, node.path), node.kind, node.values[0]);
    case Kind::kIn:
      return field_in(filter_lookup(metadata, node.path), node.values);
    case Kind::kNin:
      return !field_in(filter_lookup(metadata, node.path), node.values);
    case Kind::kExists:
      return (filter_lookup(metadata, node.path) != nullptr) == node.exists;
  }
  return false;
}

StatusOr<Filter> Filter::parse(const json& j, const std::string& where) {
  Filter f;
  if (j.is_null()) return f;
  if (!j.is_object()) return error_at(where, "a filter must be an object, got " + describe(j));
  QS_RETURN_IF_ERROR(parse_object(j, where, 0, &f.root_));
  return f;
}

bool Filter::matches(const json& metadata) const { return filter_node_matches(root_, metadata); }

}  // namespace qsearch
