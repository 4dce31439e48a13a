// The filter language (collection/filter.h): every operator and combinator against an in-test
// reference evaluator (written over the filter JSON directly, not the parsed tree) on random
// metadata and random filters; the documented corner cases; and the 400s naming the part.
#include "collection/filter.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>

namespace qsearch {
namespace {

using json = nlohmann::json;

// ---- the reference evaluator ----------------------------------------------------------------

const json* ref_lookup(const json& md, const std::string& dotted) {
  const json* cur = &md;
  size_t start = 0;
  for (;;) {
    size_t dot = dotted.find('.', start);
    std::string part =
        dotted.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur->is_object() || !cur->contains(part)) return nullptr;
    cur = &(*cur)[part];
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

// Same JSON kind and equal (numbers through double: the test values are small).
bool ref_scalar_eq(const json& a, const json& b) {
  if (a.is_number() && b.is_number()) return a.get<double>() == b.get<double>();
  if (a.type() != b.type()) return false;
  return a == b;
}

bool ref_eq(const json* field, const json& v) {
  if (!field) return false;
  if (field->is_array()) {
    for (const auto& e : *field)
      if (ref_scalar_eq(e, v)) return true;
    return false;
  }
  return ref_scalar_eq(*field, v);
}

bool ref_cmp_one(const json& a, const std::string& op, const json& v) {
  double c;
  if (a.is_number() && v.is_number()) {
    c = a.get<double>() - v.get<double>();
  } else if (a.is_string() && v.is_string()) {
    c = a.get<std::string>().compare(v.get<std::string>());
  } else {
    return false;
  }
  if (op == "$gt") return c > 0;
  if (op == "$gte") return c >= 0;
  if (op == "$lt") return c < 0;
  return c <= 0;  // $lte
}

bool ref_cmp(const json* field, const std::string& op, const json& v) {
  if (!field) return false;
  if (field->is_array()) {
    for (const auto& e : *field)
      if (ref_cmp_one(e, op, v)) return true;
    return false;
  }
  return ref_cmp_one(*field, op, v);
}

bool ref_match(const json& filter, const json& md) {
  for (const auto& [key, cond] : filter.items()) {
    bool ok;
    if (key == "$and") {
      ok = true;
      for (const auto& f : cond) ok = ok && ref_match(f, md);
    } else if (key == "$or") {
      ok = false;
      for (const auto& f : cond) ok = ok || ref_match(f, md);
    } else if (key == "$not") {
      ok = !ref_match(cond, md);
    } else {
      const json* field = ref_lookup(md, key);
      if (!cond.is_object()) {
        ok = ref_eq(field, cond);
      } else {
        ok = true;
        for (const auto& [op, v] : cond.items()) {
          bool r;
          if (op == "$eq")
            r = ref_eq(field, v);
          else if (op == "$ne")
            r = !ref_eq(field, v);
          else if (op == "$in" || op == "$nin") {
            r = false;
            for (const auto& x : v) r = r || ref_eq(field, x);
            if (op == "$nin") r = !r;
          } else if (op == "$exists")
            r = (field != nullptr) == v.get<bool>();
          else
            r = ref_cmp(field, op, v);
          ok = ok && r;
        }
      }
    }
    if (!ok) return false;
  }
  return true;
}

// ---- random metadata and filters ----------------------------------------------------------

struct Gen {
  std::mt19937_64 rng{12345};
  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); }

  json scalar() {
    switch (pick(6)) {
      case 0:
        return pick(7) - 1;  // -1..5
      case 1:
        return (pick(12) - 2) * 0.5;  // -1.0..4.5 (some integral: 1.0 == 1)
      case 2:
        return std::string(1, "abcxyz"[pick(6)]);
      case 3:
        return std::string("b") + std::string(1, "ab"[pick(2)]);  // "ba", "bb"
      case 4:
        return pick(2) == 1;
      default:
        return nullptr;
    }
  }
  json value() {
    if (pick(5) == 0) {
      json a = json::array();
      for (int i = pick(4); i > 0; --i) a.push_back(scalar());
      return a;
    }
    return scalar();
  }
  json metadata() {
    json md = json::object();
    for (const char* k : {"a", "b", "c"})
      if (pick(5) != 0) md[k] = value();
    if (pick(4) != 0) {
      if (pick(6) == 0) {
        md["n"] = scalar();  // not an object: "n.x" is absent
      } else {
        md["n"] = json::object();
        for (const char* k : {"x", "y"})
          if (pick(4) != 0) md["n"][k] = value();
      }
    }
    return md;
  }
  std::string field() {
    static const char* kFields[] = {"a", "b", "c", "n.x", "n.y", "n", "missing", "n.x.deeper"};
    return kFields[pick(8)];
  }
  json ordered_scalar() {  // operand of $gt..$lte: a number or a string
    json v = scalar();
    while (!v.is_number() && !v.is_string()) v = scalar();
    return v;
  }
  json condition(std::string* op_used) {
    static const char* kOps[] = {"$eq",  "$ne", "$gt",  "$gte",   "$lt",
                                 "$lte", "$in", "$nin", "$exists"};
    const int choice = pick(11);
    if (choice >= 9) {  // plain equality
      *op_used = "eq-plain";
      return scalar();
    }
    std::string op = kOps[choice];
    *op_used = op;
    json c = json::object();
    if (op == "$in" || op == "$nin") {
      json list = json::array();
      for (int i = pick(4); i >= 0; --i) list.push_back(scalar());
      c[op] = list;
    } else if (op == "$exists") {
      c[op] = pick(2) == 1;
    } else if (op == "$eq" || op == "$ne") {
      c[op] = scalar();
    } else {
      c[op] = ordered_scalar();
    }
    if (pick(5) == 0) {  // a second operator on the same field: both must hold
      std::string ignored;
      json more = condition(&ignored);
      if (more.is_object())
        for (const auto& [k, v] : more.items()) c[k] = v;
    }
    return c;
  }
  json filter(int depth, std::map<std::string, int>* ops) {
    const int choice = depth >= 3 ? 0 : pick(6);
    if (choice <= 2) {
      json f = json::object();
      for (int i = pick(2); i >= 0; --i) {
        std::string op;
        f[field()] = condition(&op);
        (*ops)[op]++;
      }
      return f;
    }
    if (choice == 5) {
      (*ops)["$not"]++;
      return {{"$not", filter(depth + 1, ops)}};
    }
    const char* comb = choice == 3 ? "$and" : "$or";
    (*ops)[comb]++;
    json list = json::array();
    for (int i = pick(3); i >= 0; --i) list.push_back(filter(depth + 1, ops));
    return {{comb, list}};
  }
};

TEST(FilterLanguage, EveryOperatorAgreesWithTheReferenceOnRandomMetadata) {
  Gen g;
  std::vector<json> docs;
  for (int i = 0; i < 300; ++i) docs.push_back(g.metadata());
  // For each operator (as the outermost part of a random filter), how often it matched and
  // failed: a test that only ever saw one outcome would prove little.
  std::map<std::string, std::pair<int, int>> outcomes;
  int64_t checked = 0;
  for (int t = 0; t < 3000; ++t) {
    std::map<std::string, int> ops;
    json f = g.filter(0, &ops);
    auto parsed = Filter::parse(f);
    ASSERT_TRUE(parsed.is_ok()) << f.dump() << ": " << parsed.status().to_string();
    for (const json& md : docs) {
      const bool want = ref_match(f, md);
      ASSERT_EQ(parsed->matches(md), want) << "filter " << f.dump() << "\nmetadata " << md.dump();
      for (const auto& [op, n] : ops) (want ? outcomes[op].first : outcomes[op].second)++;
      ++checked;
    }
  }
  for (const char* op : {"eq-plain", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin",
                         "$exists", "$and", "$or", "$not"}) {
    EXPECT_GT(outcomes[op].first, 100) << op << " never (or rarely) matched";
    EXPECT_GT(outcomes[op].second, 100) << op << " never (or rarely) failed";
  }
  EXPECT_EQ(checked, 3000 * 300);
}

TEST(FilterLanguage, DocumentedCases) {
  const json md = {{"year", 2024},
                   {"score", 0.5},
                   {"lang", "en"},
                   {"tags", {"a", "b", 3}},
                   {"flag", true},
                   {"none", nullptr},
                   {"nested", {{"a", 1}, {"deep", {{"b", "x"}}}}},
                   {"big", 9007199254740993ULL}};
  auto m = [&](const json& f) {
    auto p = Filter::parse(f);
    EXPECT_TRUE(p.is_ok()) << f.dump() << ": " << p.status().to_string();
    return p.is_ok() && p->matches(md);
  };
  EXPECT_TRUE(m(json::object()));
  EXPECT_TRUE(m(nullptr));
  EXPECT_TRUE(m({{"year", 2024}}));
  EXPECT_TRUE(m({{"year", 2024.0}}));   // numbers as numbers
  EXPECT_FALSE(m({{"year", "2024"}}));  // no cross-type match
  EXPECT_TRUE(m({{"year", {{"$gte", 2023}}}}));
  EXPECT_FALSE(m({{"year", {{"$gte", "2023"}}}}));
  EXPECT_TRUE(m({{"year", {{"$gt", 2023}, {"$lt", 2025}}}}));
  EXPECT_FALSE(m({{"year", {{"$gt", 2023}, {"$lt", 2024}}}}));
  EXPECT_TRUE(m({{"lang", {{"$in", {"en", "de"}}}}}));
  EXPECT_FALSE(m({{"lang", {{"$nin", {"en", "de"}}}}}));
  EXPECT_TRUE(m({{"lang", {{"$lt", "fr"}}}}));  // strings as strings
  EXPECT_TRUE(m({{"tags", "b"}}));              // array contains
  EXPECT_TRUE(m({{"tags", 3}}));
  EXPECT_FALSE(m({{"tags", "c"}}));
  EXPECT_TRUE(m({{"tags", {{"$ne", "c"}}}}));
  EXPECT_FALSE(m({{"tags", {{"$ne", "a"}}}}));
  EXPECT_TRUE(m({{"tags", {{"$gt", 2}}}}));  // one element holds
  EXPECT_TRUE(m({{"nested.a", 1}}));         // dotted paths
  EXPECT_TRUE(m({{"nested.deep.b", "x"}}));
  EXPECT_FALSE(m({{"nested.a.b", 1}}));
  EXPECT_TRUE(m({{"nested.zz", {{"$exists", false}}}}));
  EXPECT_TRUE(m({{"none", nullptr}}));
  EXPECT_TRUE(m({{"none", {{"$exists", true}}}}));  // present, although null
  EXPECT_FALSE(m({{"missing", nullptr}}));
  EXPECT_TRUE(m({{"missing", {{"$ne", 1}}}}));  // absent is "not equal"
  EXPECT_FALSE(m({{"flag", 1}}));               // a boolean is not a number
  EXPECT_TRUE(m({{"flag", true}}));
  EXPECT_TRUE(m({{"big", 9007199254740993ULL}}));  // integers compare exactly
  EXPECT_FALSE(m({{"big", 9007199254740992ULL}}));
  EXPECT_TRUE(m({{"big", {{"$gt", 9007199254740992LL}}}}));
  EXPECT_TRUE(m({{"year", {{"$gt", -1}}}}));
  EXPECT_TRUE(m({{"$or", {{{"lang", "de"}}, {{"year", 2024}}}}}));
  EXPECT_FALSE(m({{"$and", {{{"lang", "de"}}, {{"year", 2024}}}}}));
  EXPECT_TRUE(m({{"$not", {{"lang", "de"}}}}));
  EXPECT_FALSE(m({{"lang", "en"}, {"year", 2023}}));  // several keys: all must hold
}

TEST(FilterLanguage, ErrorsNameTheOffendingPart) {
  auto err = [](const json& f) {
    auto p = Filter::parse(f);
    EXPECT_FALSE(p.is_ok()) << f.dump();
    if (p.is_ok()) return std::string();
    EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument) << f.dump();
    return p.status().message();
  };
  auto has = [](const std::string& msg, const std::string& part) {
    return msg.find(part) != std::string::npos;
  };
  std::string e = err({{"year", {{"$gte", true}}}});
  EXPECT_TRUE(has(e, "filter.year.$gte")) << e;
  e = err({{"year", {{"$foo", 1}}}});
  EXPECT_TRUE(has(e, "filter.year.$foo") && has(e, "unknown operator")) << e;
  e = err({{"lang", {"en", "de"}}});
  EXPECT_TRUE(has(e, "filter.lang") && has(e, "$in")) << e;
  e = err({{"nested", {{"a", 1}}}});
  EXPECT_TRUE(has(e, "filter.nested.a") && has(e, "nested.a")) << e;
  e = err({{"$and", {{{"a", 1}}, {{"b", {{"$lt", nullptr}}}}}}});
  EXPECT_TRUE(has(e, "filter.$and[1].b.$lt")) << e;
  e = err({{"$or", json::array()}});
  EXPECT_TRUE(has(e, "filter.$or")) << e;
  e = err({{"$nor", json::array({json::object()})}});
  EXPECT_TRUE(has(e, "filter.$nor") && has(e, "unknown combinator")) << e;
  e = err({{"$not", 3}});
  EXPECT_TRUE(has(e, "filter.$not")) << e;
  e = err({{"a..b", 1}});
  EXPECT_TRUE(has(e, "filter.a..b")) << e;
  e = err({{"", 1}});
  EXPECT_FALSE(e.empty());
  e = err({{"a", {{"$in", {1, {2}}}}}});
  EXPECT_TRUE(has(e, "filter.a.$in[1]")) << e;
  e = err({{"a", {{"$exists", 1}}}});
  EXPECT_TRUE(has(e, "filter.a.$exists")) << e;
  e = err({{"a", json::object()}});
  EXPECT_TRUE(has(e, "filter.a")) << e;
  e = err(json::array());
  EXPECT_TRUE(has(e, "filter")) << e;
  e = err("x");
  EXPECT_TRUE(has(e, "filter")) << e;
  // Nesting is bounded (no stack exhaustion on a hostile filter).
  json deep = {{"a", 1}};
  for (int i = 0; i < 40; ++i) deep = {{"$not", deep}};
  e = err(deep);
  EXPECT_TRUE(has(e, "deeper than 32")) << e;
  json in_list = json::array();
  for (int i = 0; i < 1025; ++i) in_list.push_back(i);
  e = err({{"a", {{"$in", in_list}}}});
  EXPECT_TRUE(has(e, "1024")) << e;
}

}  // namespace
}  // namespace qsearch
