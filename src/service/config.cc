#include "service/config.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>

#include <nlohmann/json.hpp>

extern char** environ;

namespace qsearch {
namespace {

enum class Kind { kString, kInt, kBool };

// One row per option: the single place where names, defaults and help live.
struct OptionDef {
  const char* name;  // JSON key; flag is --name with '-' for '_'; env is QSEARCH_NAME
  Kind kind;
  const char* default_text;
  const char* help;
  std::function<Status(ServerConfig&, const std::string&)> set;
};

std::string flag_of(const std::string& name) {
  std::string f = name;
  std::replace(f.begin(), f.end(), '_', '-');
  return f;
}

std::string env_of(const std::string& name) {
  std::string e = "QSEARCH_";
  for (char c : name) e += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return e;
}

StatusOr<long long> parse_int(const std::string& name, const std::string& v, long long lo,
                              long long hi) {
  long long x = 0;
  try {
    size_t pos = 0;
    x = std::stoll(v, &pos);
    if (pos != v.size()) throw std::invalid_argument("trailing characters");
  } catch (const std::exception&) {
    return invalid_argument(name + ": expected an integer, got '" + v + "'");
  }
  if (x < lo || x > hi)
    return invalid_argument(name + ": " + v + " is out of range " + std::to_string(lo) + ".." +
                            std::to_string(hi));
  return x;
}

StatusOr<bool> parse_bool(const std::string& name, const std::string& v) {
  std::string s = v;
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (s == "" || s == "1" || s == "true" || s == "yes" || s == "on") return true;
  if (s == "0" || s == "false" || s == "no" || s == "off") return false;
  return invalid_argument(name + ": expected true or false, got '" + v + "'");
}

template <typename T>
std::function<Status(ServerConfig&, const std::string&)> int_setter(T ServerConfig::*field,
                                                                   long long lo, long long hi,
                                                                   const char* name) {
  return [=](ServerConfig& c, const std::string& v) -> Status {
    QS_ASSIGN_OR_RETURN(long long x, parse_int(name, v, lo, hi));
    c.*field = static_cast<T>(x);
    return Status::ok();
  };
}

std::function<Status(ServerConfig&, const std::string&)> string_setter(
    std::string ServerConfig::*field) {
  return [=](ServerConfig& c, const std::string& v) -> Status {
    c.*field = v;
    return Status::ok();
  };
}

std::function<Status(ServerConfig&, const std::string&)> bool_setter(bool ServerConfig::*field,
                                                                    const char* name) {
  return [=](ServerConfig& c, const std::string& v) -> Status {
    QS_ASSIGN_OR_RETURN(bool b, parse_bool(name, v));
    c.*field = b;
    return Status::ok();
  };
}

std::function<Status(ServerConfig&, const std::string&)> choice_setter(
    std::string ServerConfig::*field, std::vector<std::string> choices, const char* name) {
  return [=](ServerConfig& c, const std::string& v) -> Status {
    if (std::find(choices.begin(), choices.end(), v) == choices.end()) {
      std::string all;
      for (const auto& x : choices) all += (all.empty() ? "" : ", ") + x;
      return invalid_argument(std::string(name) + ": '" + v + "' is not one of " + all);
    }
    c.*field = v;
    return Status::ok();
  };
}

// A CORS origin as browsers send it: "*", or scheme://host[:port] with scheme http or https and
// nothing after the authority (no path, not even "/").
Status check_origin(const std::string& o) {
  if (o == "*") return Status::ok();
  const size_t sep = o.find("://");
  const std::string scheme = sep == std::string::npos ? "" : o.substr(0, sep);
  const std::string rest = sep == std::string::npos ? "" : o.substr(sep + 3);
  bool ok = (scheme == "http" || scheme == "https") && !rest.empty() && rest.size() <= 253;
  for (char ch : rest)
    ok = ok && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '-' ||
                ch == ':' || ch == '[' || ch == ']');
  if (!ok)
    return invalid_argument("cors_origins: '" + o +
                            "' is not an origin (scheme://host[:port], e.g. "
                            "https://app.example.com, or *)");
  return Status::ok();
}

const std::vector<OptionDef>& option_table() {
  static const std::vector<OptionDef> table = {
      {"model", Kind::kString, "./models/Qwen3-Embedding-0.6B",
       "model directory (Hugging Face layout: config.json, tokenizer.json, *.safetensors)",
       string_setter(&ServerConfig::model)},
      {"reranker", Kind::kString, "(none)",
       "Qwen3-Reranker directory, loaded beside the model on the same engine (POST /v1/rerank, "
       "search \"rerank\")",
       string_setter(&ServerConfig::reranker)},
      {"device", Kind::kString, "auto", "engine: auto (CUDA when a GPU is visible), cpu, cuda",
       choice_setter(&ServerConfig::device, {"auto", "cpu", "cuda"}, "device")},
      {"dtype", Kind::kString, "bf16",
       "CUDA engine GEMMs (model and reranker): bf16, or fp8 (E4M3 on FP8 tensor cores, sm_89+)",
       choice_setter(&ServerConfig::dtype, {"bf16", "fp8"}, "dtype")},
      {"gpus", Kind::kString, "(all visible)", "CUDA devices for engine replicas (one per distinct device) and the shards of a gpu index "
       "(one per entry, a device may repeat), e.g. 0,1",
       [](ServerConfig& c, const std::string& v) -> Status {
         std::stringstream ss(v);
         std::string part;
         while (std::getline(ss, part, ','))
           QS_RETURN_IF_ERROR(parse_int("gpus", part, 0, 1023).status());
         c.gpus = v;
         return Status::ok();
       }},
      {"data_dir", Kind::kString, "./qsearch-data", "data directory (RocksDB and index files)",
       string_setter(&ServerConfig::data_dir)},
      {"host", Kind::kString, "127.0.0.1", "listening address (0.0.0.0: all interfaces)",
       string_setter(&ServerConfig::host)},
      {"port", Kind::kInt, "8080", "listening port (0: any free port, logged at start)",
       int_setter(&ServerConfig::port, 0, 65535, "port")},
      {"api_key", Kind::kString, "(none)", "admin API key: every route",
       string_setter(&ServerConfig::api_key)},
      {"read_key", Kind::kString, "(none)",
       "read-only API key: GET routes, search, /v1/embeddings",
       string_setter(&ServerConfig::read_key)},
      {"key_file", Kind::kString, "(none)",
       "file of keys, one per line: 'admin KEY' or 'read KEY'",
       string_setter(&ServerConfig::key_file)},
      {"max_batch_tokens", Kind::kInt, "0", "token budget of one engine batch (0: engine default)",
       int_setter(&ServerConfig::max_batch_tokens, 0, 1LL << 24, "max_batch_tokens")},
      {"queue_limit_tokens", Kind::kInt, "262144",
       "tokens queued for the engine before requests get 429",
       int_setter(&ServerConfig::queue_limit_tokens, 1, 1LL << 32, "queue_limit_tokens")},
      {"threads", Kind::kInt, "0", "CPU engine and tokenizer threads (0: all cores)",
       int_setter(&ServerConfig::threads, 0, 4096, "threads")},
      {"http_threads", Kind::kInt, "64",
       "HTTP worker threads: run requests once fully received (waiting connections hold none)",
       int_setter(&ServerConfig::http_threads, 1, 4096, "http_threads")},
      {"http_io_threads", Kind::kInt, "4",
       "HTTP I/O threads: accept, read, parse and write every connection asynchronously",
       int_setter(&ServerConfig::http_io_threads, 1, 256, "http_io_threads")},
      {"head_timeout", Kind::kInt, "10",
       "seconds from a request's first byte to the end of its headers (then closed)",
       int_setter(&ServerConfig::head_timeout, 1, 3600, "head_timeout")},
      {"keep_alive_timeout", Kind::kInt, "60",
       "seconds an idle keep-alive connection waits for its next request",
       int_setter(&ServerConfig::keep_alive_timeout, 1, 86400, "keep_alive_timeout")},
      {"read_timeout", Kind::kInt, "10",
       "seconds a request body may stall; also the grace period of min_body_rate",
       int_setter(&ServerConfig::read_timeout, 1, 3600, "read_timeout")},
      {"min_body_rate", Kind::kInt, "1024",
       "bytes/s a request body must average after read_timeout seconds (0: no minimum)",
       int_setter(&ServerConfig::min_body_rate, 0, 1LL << 40, "min_body_rate")},
      {"write_timeout", Kind::kInt, "30",
       "seconds a response may take to be written to a client",
       int_setter(&ServerConfig::write_timeout, 1, 3600, "write_timeout")},
      {"max_header_bytes", Kind::kInt, "65536",
       "largest request head (request line + headers) in bytes (431 above)",
       int_setter(&ServerConfig::max_header_bytes, 1024, 1 << 24, "max_header_bytes")},
      {"max_header_count", Kind::kInt, "100", "most header fields in a request (431 above)",
       int_setter(&ServerConfig::max_header_count, 1, 10000, "max_header_count")},
      {"max_connections", Kind::kInt, "8192",
       "open HTTP connections; more are answered 503 + Retry-After and closed",
       int_setter(&ServerConfig::max_connections, 1, 1 << 20, "max_connections")},
      {"max_connections_per_client", Kind::kInt, "2048",
       "open HTTP connections per client IP address; more get 503 + Retry-After",
       int_setter(&ServerConfig::max_connections_per_client, 1, 1 << 20,
                  "max_connections_per_client")},
      {"max_request_bytes", Kind::kInt, "33554432",
       "largest request body (413 above); also the longest NDJSON import line",
       int_setter(&ServerConfig::max_request_bytes, 1024, 1LL << 40, "max_request_bytes")},
      {"max_response_bytes", Kind::kInt, "67108864",
       "largest response body (422 above, saying how to narrow or page)",
       int_setter(&ServerConfig::max_response_bytes, 1024, 1LL << 40, "max_response_bytes")},
      {"max_inflight_bytes", Kind::kInt, "1073741824",
       "memory held by all in-flight requests together (503 + Retry-After above)",
       int_setter(&ServerConfig::max_inflight_bytes, 1 << 20, 1LL << 50, "max_inflight_bytes")},
      {"max_duplicate_pairs", Kind::kInt, "2000000",
       "most similar pairs one /duplicates request may collect (422 above)",
       int_setter(&ServerConfig::max_duplicate_pairs, 1, 1LL << 34, "max_duplicate_pairs")},
      {"max_tokens_per_text", Kind::kInt, "8192", "longest text in tokens, EOS included",
       int_setter(&ServerConfig::max_tokens_per_text, 1, 1 << 20, "max_tokens_per_text")},
      {"truncate", Kind::kBool, "true", "truncate longer texts (true) or refuse them with 422",
       bool_setter(&ServerConfig::truncate, "truncate")},
      {"log_level", Kind::kString, "info", "trace, debug, info, warn, error, critical, off",
       choice_setter(&ServerConfig::log_level,
                     {"trace", "debug", "info", "warn", "error", "critical", "off"},
                     "log_level")},
      {"log_format", Kind::kString, "text",
       "log lines as text or json (JSON lines with time, level, msg, request_id, access fields)",
       choice_setter(&ServerConfig::log_format, {"text", "json"}, "log_format")},
      {"cors_origins", Kind::kString, "(none: CORS off)",
       "browser origins allowed to call the API, comma-separated scheme://host[:port] or *",
       [](ServerConfig& c, const std::string& v) -> Status {
         std::vector<std::string> list;
         std::stringstream ss(v);
         std::string part;
         while (std::getline(ss, part, ',')) {
           while (!part.empty() && part.front() == ' ') part.erase(part.begin());
           while (!part.empty() && part.back() == ' ') part.pop_back();
           if (part.empty()) continue;
           QS_RETURN_IF_ERROR(check_origin(part));
           list.push_back(part);
         }
         c.cors_origins = v;
         c.cors_origin_list = std::move(list);
         return Status::ok();
       }},
      {"progress_interval", Kind::kInt, "5",
       "seconds between progress log lines of imports and index rebuilds (0: start and end only)",
       int_setter(&ServerConfig::progress_interval, 0, 86400, "progress_interval")},
      {"sync", Kind::kBool, "false", "fsync the write-ahead log before acknowledging writes",
       bool_setter(&ServerConfig::sync, "sync")},
      {"save_interval", Kind::kInt, "60",
       "seconds between background index saves of a changed collection (0: only at shutdown)",
       int_setter(&ServerConfig::save_interval, 0, 1 << 30, "save_interval")},
      {"shutdown_timeout", Kind::kInt, "30",
       "seconds running requests get at shutdown before queued embedding work is refused",
       int_setter(&ServerConfig::shutdown_timeout, 0, 86400, "shutdown_timeout")},
      {"debug_batch_delay_ms", Kind::kInt, "0",
       "testing only: delay each engine batch by this many milliseconds",
       int_setter(&ServerConfig::debug_batch_delay_ms, 0, 60000, "debug_batch_delay_ms")},
      {"debug_load_delay_ms", Kind::kInt, "0",
       "testing only: wait this many milliseconds before loading the model",
       int_setter(&ServerConfig::debug_load_delay_ms, 0, 600000, "debug_load_delay_ms")},
  };
  return table;
}

// A JSON config value as the string a flag would carry, with a type check.
StatusOr<std::string> json_to_text(const OptionDef& def, const nlohmann::json& v) {
  switch (def.kind) {
    case Kind::kString:
      if (!v.is_string()) return invalid_argument(std::string(def.name) + ": expected a string");
      return v.get<std::string>();
    case Kind::kInt:
      if (!v.is_number_integer())
        return invalid_argument(std::string(def.name) + ": expected an integer");
      return std::to_string(v.get<long long>());
    case Kind::kBool:
      if (!v.is_boolean()) return invalid_argument(std::string(def.name) + ": expected true or false");
      return std::string(v.get<bool>() ? "true" : "false");
  }
  return internal_error("unreachable");
}

Status read_key_file(const std::string& path, ServerConfig* config) {
  std::ifstream in(path);
  if (!in) return invalid_argument("key_file: cannot open " + path);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::stringstream ss(line);
    std::string role, key, extra;
    ss >> role;
    if (role.empty() || role[0] == '#') continue;
    ss >> key >> extra;
    if (key.empty() || !extra.empty() || (role != "admin" && role != "read"))
      return invalid_argument("key_file " + path + " line " + std::to_string(lineno) +
                              ": expected 'admin KEY' or 'read KEY'");
    (role == "admin" ? config->admin_keys : config->read_keys).push_back(key);
  }
  return Status::ok();
}

}  // namespace

bool wants_help(const std::vector<std::string>& args) {
  for (const auto& a : args)
    if (a == "--help" || a == "-h") return true;
  return false;
}

std::map<std::string, std::string> qsearch_environment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    if (kv.rfind("QSEARCH_", 0) != 0) continue;
    auto eq = kv.find('=');
    if (eq == std::string::npos) continue;
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

std::string server_config_help() {
  std::string out =
      "usage: qsearch serve [--model DIR] [--device auto|cpu|cuda] [--dtype bf16|fp8]\n"
      "                     [--data-dir DIR] [--host ADDR] [--port N] [--config FILE] [options]\n\n"
      "Every option is a flag, an environment variable and a key of the JSON config file\n"
      "(--config FILE or QSEARCH_CONFIG). Precedence: flag > environment > file > default.\n\n";
  char buf[512];
  for (const auto& def : option_table()) {
    std::string flag = "--" + flag_of(def.name);
    std::snprintf(buf, sizeof buf, "  %-24s %-30s default %s\n      %s\n", flag.c_str(),
                  env_of(def.name).c_str(), def.default_text, def.help);
    out += buf;
  }
  out += "  --config FILE            QSEARCH_CONFIG                 JSON file with the keys above\n";
  return out;
}

StatusOr<ServerConfig> load_server_config(const std::vector<std::string>& args,
                                          const std::map<std::string, std::string>& env,
                                          ConfigSources* sources) {
  const auto& table = option_table();
  // Flags: --name value or --name=value; --sync and --help take no value.
  std::map<std::string, std::string> flags;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0 || a.size() == 2) return invalid_argument("unexpected argument '" + a + "'");
    std::string name = a.substr(2), value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    bool known = name == "config" || name == "help" ||
                 std::any_of(table.begin(), table.end(),
                             [&](const OptionDef& d) { return flag_of(d.name) == name; });
    if (!known) return invalid_argument("unknown option --" + name);
    if (name == "help" || name == "sync") {
      if (has_value) return invalid_argument("--" + name + " takes no value");
      flags[name] = "true";
      continue;
    }
    if (!has_value) {
      if (i + 1 >= args.size()) return invalid_argument("--" + name + " needs a value");
      value = args[++i];
    }
    flags[name] = value;
  }
  auto flag_value = [&](const std::string& name) -> const std::string* {
    auto it = flags.find(name);
    return it == flags.end() ? nullptr : &it->second;
  };

  ServerConfig config;
  ConfigSources local_sources;
  for (const auto& def : table) local_sources[def.name] = "default";

  // Config file: --config, else QSEARCH_CONFIG.
  std::string config_path = flag_value("config") ? *flag_value("config") : "";
  if (config_path.empty()) {
    auto it = env.find("QSEARCH_CONFIG");
    if (it != env.end()) config_path = it->second;
  }
  if (!config_path.empty()) {
    std::ifstream in(config_path);
    if (!in) return invalid_argument("cannot open config file " + config_path);
    std::stringstream ss;
    ss << in.rdbuf();
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(ss.str());
    } catch (const nlohmann::json::exception& e) {
      return invalid_argument("config file " + config_path + ": " + e.what());
    }
    if (!j.is_object()) return invalid_argument("config file " + config_path + ": not an object");
    for (const auto& item : j.items()) {
      // Not a structured binding: clang 14 (the fuzz build) cannot capture one in a lambda.
      const std::string& key = item.key();
      const nlohmann::json& value = item.value();
      auto def = std::find_if(table.begin(), table.end(),
                              [&](const OptionDef& d) { return key == d.name; });
      if (def == table.end())
        return invalid_argument("config file " + config_path + ": unknown option '" + key + "'");
      QS_ASSIGN_OR_RETURN(std::string text, json_to_text(*def, value));
      QS_RETURN_IF_ERROR(def->set(config, text).with_context("config file " + config_path));
      local_sources[def->name] = "file";
    }
    config.config_file = config_path;
  }
  // Environment.
  for (const auto& def : table) {
    auto it = env.find(env_of(def.name));
    if (it == env.end()) continue;
    QS_RETURN_IF_ERROR(def.set(config, it->second).with_context(env_of(def.name)));
    local_sources[def.name] = "env";
  }
  // Flags.
  for (const auto& def : table) {
    std::string flag = flag_of(def.name);
    const std::string* v = flag_value(flag);
    if (!v) continue;
    QS_RETURN_IF_ERROR(def.set(config, *v).with_context("--" + flag));
    local_sources[def.name] = "flag";
  }

  if (!config.api_key.empty()) config.admin_keys.push_back(config.api_key);
  if (!config.read_key.empty()) config.read_keys.push_back(config.read_key);
  if (!config.key_file.empty()) QS_RETURN_IF_ERROR(read_key_file(config.key_file, &config));
  if (sources) *sources = std::move(local_sources);
  return config;
}

}  // namespace qsearch
