// deploy/grafana/qsearch.json: every metric its PromQL expressions query is one the server
// exports (a live server with a reranker, after some traffic, so that labelled series exist),
// and the dashboard is well formed (unique panel ids, panels that do not overlap, every query
// on the dashboard's Prometheus variable).
#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <set>
#include <sstream>

#include "embed/model/test_model.h"
#include "server_util.h"

namespace qsearch::testing {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool ident_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
}
bool ident_char(char c) { return ident_start(c) || std::isdigit(static_cast<unsigned char>(c)); }

// The metric names a PromQL expression selects: identifiers that are not functions or
// aggregations (followed by '('), keywords, label names (inside {...} or a by/without/on/
// ignoring/group_left/group_right list), durations ([...]) or string literals.
std::set<std::string> promql_metrics(const std::string& expr) {
  static const std::set<std::string> kKeywords = {
      "by",     "without", "on", "ignoring", "group_left", "group_right", "bool",
      "offset", "and",     "or", "unless",   "inf",        "nan",         "atan2"};
  static const std::set<std::string> kAggregations = {
      "sum",    "min",   "max",          "avg",     "group", "stddev",
      "stdvar", "count", "count_values", "bottomk", "topk",  "quantile"};
  static const std::set<std::string> kListKeywords = {"by",       "without",    "on",
                                                      "ignoring", "group_left", "group_right"};
  // Blank out strings, label matchers and ranges.
  std::string s = expr;
  for (size_t i = 0; i < s.size(); ++i) {
    char open = s[i];
    char close = open == '{' ? '}' : open == '[' ? ']' : (open == '"' || open == '\'') ? open : 0;
    if (!close) continue;
    size_t j = i + 1;
    bool in_string = false;
    for (; j < s.size(); ++j) {
      if (close != open && (s[j] == '"' || s[j] == '\'')) in_string = !in_string;
      if (s[j] == '\\') {
        ++j;
        continue;
      }
      if (!in_string && s[j] == close) break;
    }
    for (size_t k = i; k <= j && k < s.size(); ++k) s[k] = ' ';
    i = j;
  }
  std::set<std::string> out;
  for (size_t i = 0; i < s.size();) {
    if (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.') {
      while (i < s.size() && (ident_char(s[i]) || s[i] == '.')) ++i;  // 0.95, 1e6, 5m
      continue;
    }
    if (!ident_start(s[i]) || (i > 0 && s[i - 1] == '$')) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && ident_char(s[j])) ++j;
    std::string word = s.substr(i, j - i);
    size_t k = j;
    while (k < s.size() && s[k] == ' ') ++k;
    const bool call = k < s.size() && s[k] == '(';
    if (kListKeywords.count(word) && call) {  // by (a, b): label names, skip the list
      size_t close = s.find(')', k);
      i = close == std::string::npos ? s.size() : close + 1;
      continue;
    }
    // An aggregation with its grouping first: sum by (le) (...).
    const bool grouped_aggregation = kAggregations.count(word) && (s.compare(k, 2, "by") == 0 ||
                                                                   s.compare(k, 7, "without") == 0);
    if (!call && !grouped_aggregation && !kKeywords.count(word)) out.insert(word);
    i = j;
  }
  return out;
}

TEST(Dashboard, PromqlMetricExtraction) {
  EXPECT_EQ(promql_metrics("histogram_quantile(0.95, sum by (le, route) "
                           "(rate(qsearch_http_request_duration_seconds_bucket{instance=~\"$i\","
                           "route=\"/x{y}\"}[$__rate_interval])))"),
            std::set<std::string>({"qsearch_http_request_duration_seconds_bucket"}));
  EXPECT_EQ(promql_metrics("a{kind=\"device_total\"} - ignoring(kind) b{kind=\"x\"} offset 5m"),
            std::set<std::string>({"a", "b"}));
  EXPECT_EQ(promql_metrics("time() - process_start_time_seconds"),
            std::set<std::string>({"process_start_time_seconds"}));
  EXPECT_EQ(promql_metrics("sum(rate(x_total[1m])) by (route) / 1e3 > bool 2"),
            std::set<std::string>({"x_total"}));
}

// The sample names in a Prometheus text exposition.
std::set<std::string> exported_names(const std::string& text) {
  std::set<std::string> names;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t end = line.find_first_of("{ ");
    names.insert(line.substr(0, end));
  }
  return names;
}

void collect_panels(const json& panels, std::vector<json>* out) {
  for (const auto& p : panels) {
    out->push_back(p);
    if (p.contains("panels")) collect_panels(p["panels"], out);
  }
}

TEST(Dashboard, EveryQueriedMetricIsExported) {
  const std::string path = std::string(QSEARCH_SOURCE_DIR) + "/deploy/grafana/qsearch.json";
  json dash = json::parse(read_file(path), nullptr, false);
  ASSERT_FALSE(dash.is_discarded()) << path << " is not JSON";
  ASSERT_TRUE(dash["panels"].is_array());

  ScratchDir dir;
  TestModelOptions o;
  o.tokenizer_path = std::string(QSEARCH_DEPS_DIR) + "/qwen3/tokenizer.json";
  o.out_dir = dir.path() + "/reranker";
  o.reranker = true;
  ASSERT_TRUE(write_test_model(o).is_ok());
  ServerProcess server(dir.path() + "/data", {"--reranker", o.out_dir});
  ASSERT_TRUE(server.start()) << server.start_error();
  // Traffic that makes the labelled series appear: requests of several routes and statuses,
  // engine batches of both tasks, a collection with documents.
  ASSERT_EQ(server.post("/collections", json{{"name", "dash"}, {"dimension", 32}}).status, 201);
  ASSERT_EQ(server.put("/collections/dash/documents/a", {{"text", "a document"}}).status, 200);
  ASSERT_EQ(server.post("/collections/dash/search", json{{"query", "document"}}).status, 200);
  ASSERT_EQ(server.post("/v1/rerank", json{{"query", "q"}, {"documents", {"d"}}}).status, 200);
  ASSERT_EQ(server.get("/collections/missing").status, 404);
  // With a reranker the model list and /info name it.
  json models = server.get("/v1/models").json_body();
  ASSERT_EQ(models["data"].size(), 2u) << models.dump();
  EXPECT_EQ(models["data"][1]["id"], "reranker");
  EXPECT_EQ(models["data"][1]["type"], "reranker");
  EXPECT_EQ(server.get("/info").json_body()["reranker"]["id"], "reranker");
  HttpResult metrics = server.get("/metrics");
  ASSERT_EQ(metrics.status, 200);
  const std::set<std::string> exported = exported_names(metrics.body);
  ASSERT_GT(exported.size(), 20u);

  std::vector<json> panels;
  collect_panels(dash["panels"], &panels);
  std::set<int> ids;
  std::set<std::pair<int, int>> cells;
  std::set<std::string> queried;
  std::string unknown;
  auto check_expr = [&](const std::string& where, const std::string& expr) {
    std::set<std::string> names = promql_metrics(expr);
    EXPECT_FALSE(names.empty()) << where << ": no metric in " << expr;
    for (const auto& n : names) {
      queried.insert(n);
      if (!exported.count(n)) unknown += "\n  " + n + "  (" + where + ": " + expr + ")";
    }
  };
  for (const auto& p : panels) {
    const std::string title = p.value("title", "");
    EXPECT_TRUE(ids.insert(p.value("id", -1)).second) << "duplicate panel id in " << title;
    const json& g = p["gridPos"];
    for (int x = g["x"].get<int>(); x < g["x"].get<int>() + g["w"].get<int>(); ++x)
      for (int y = g["y"].get<int>(); y < g["y"].get<int>() + g["h"].get<int>(); ++y)
        EXPECT_TRUE(cells.insert({x, y}).second) << title << " overlaps another panel";
    EXPECT_LE(g["x"].get<int>() + g["w"].get<int>(), 24) << title;
    if (p["type"] == "row") continue;
    EXPECT_EQ(p["datasource"]["uid"], "${datasource}") << title;
    ASSERT_TRUE(p["targets"].is_array() && !p["targets"].empty()) << title;
    for (const auto& t : p["targets"]) {
      EXPECT_EQ(t["datasource"]["uid"], "${datasource}") << title;
      check_expr(title, t["expr"].get<std::string>());
    }
  }
  // Variables: label_values(METRIC, label) selects METRIC (the label is not a metric).
  for (const auto& v : dash["templating"]["list"]) {
    if (v["type"] != "query") continue;
    const std::string def = v["definition"];
    ASSERT_EQ(def.rfind("label_values(", 0), 0u) << def;
    check_expr("variable " + v["name"].get<std::string>(),
               def.substr(13, def.find_first_of(",)") - 13));
  }
  EXPECT_TRUE(unknown.empty()) << "metrics the dashboard queries that /metrics does not export:"
                               << unknown;
  // What the issue asks the dashboard to show.
  for (const char* m :
       {"qsearch_http_requests_total", "qsearch_http_request_duration_seconds_bucket",
        "qsearch_queue_tokens", "qsearch_batch_tokens_bucket", "qsearch_batch_sequences_bucket",
        "qsearch_tokens_embedded_total", "qsearch_engine_memory_bytes", "qsearch_documents"})
    EXPECT_TRUE(queried.count(m)) << "the dashboard shows nothing of " << m;
}

}  // namespace
}  // namespace qsearch::testing
