// Configuration of `qsearch serve`. Every option has one entry in the option table
// (config.cc): its flag (--data-dir), environment variable (QSEARCH_DATA_DIR), JSON config
// file key (data_dir), default and help text. Precedence: flags > environment > config file >
// defaults. The defaults below are the documented ones (docs/api.md repeats them).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace qsearch {

struct ServerConfig {
  // Model directory (Hugging Face layout). Default: $QSEARCH_MODEL, else this path.
  std::string model = "./models/Qwen3-Embedding-0.6B";
  // Qwen3-Reranker directory (Hugging Face layout), loaded beside the model on the same devices
  // and engine. Empty: no reranker (/v1/rerank answers 404).
  std::string reranker;
  // Engine: "auto" (CUDA when a GPU is visible, else CPU), "cpu" or "cuda".
  std::string device = "auto";
  // CUDA engine GEMM numerics: "bf16" or "fp8" (refused without an sm_89+ GPU).
  std::string dtype = "bf16";
  // CUDA devices to run engine replicas on, e.g. "0,1" (empty: all visible GPUs).
  std::string gpus;
  // RocksDB and index files.
  std::string data_dir = "./qsearch-data";
  // Listening address and port.
  std::string host = "127.0.0.1";
  int port = 8080;
  // Admin API key (every route) and read-only key (GET routes, search, embeddings). Empty: none.
  std::string api_key;
  std::string read_key;
  // File with keys, one per line: "admin KEY" or "read KEY" ('#' starts a comment).
  std::string key_file;
  // Token budget of one engine batch (0: the engine's default).
  int64_t max_batch_tokens = 0;
  // Tokens waiting for the engine before new work is refused with 429 (bounds memory).
  int64_t queue_limit_tokens = 262144;
  // CPU threads for the CPU engine and the tokenizer pool (0: all cores).
  int threads = 0;
  // HTTP worker threads: they run the route handlers of fully received requests (a streamed
  // import holds one while its body arrives). Waiting connections hold none.
  int http_threads = 64;
  // HTTP I/O threads: accept, read, parse and write for every connection (asynchronous).
  int http_io_threads = 4;
  // Seconds from the first byte of a request to the end of its head (request line and
  // headers); the connection is closed after that.
  int head_timeout = 10;
  // Seconds an idle keep-alive connection stays open waiting for its next request.
  int keep_alive_timeout = 60;
  // Seconds a request body may stall (no bytes); also the grace period of min_body_rate.
  int read_timeout = 10;
  // Bytes per second a request body must average once read_timeout seconds have passed
  // (0: no minimum); slower senders are disconnected.
  int64_t min_body_rate = 1024;
  // Seconds a response may take to be written (a client that does not read is disconnected).
  int write_timeout = 30;
  // Largest request head (request line + headers) in bytes, and most header fields: 431.
  int64_t max_header_bytes = 65536;
  int max_header_count = 100;
  // Open connections, in all and per client IP address; more get 503 + Retry-After.
  int max_connections = 8192;
  int max_connections_per_client = 2048;
  // Largest request body in bytes (413 above it); the NDJSON import streams and is exempt,
  // but each of its lines must fit.
  int64_t max_request_bytes = 32 << 20;
  // Largest response body in bytes: a larger answer is refused (422, the message says how to
  // narrow or page it) instead of being built and sent.
  int64_t max_response_bytes = 64ll << 20;
  // Memory held by all in-flight requests together (request bodies, responses, large route
  // working sets such as search hits and duplicate pairs); beyond it: 503 + Retry-After.
  int64_t max_inflight_bytes = 1ll << 30;
  // Most similar pairs one POST /collections/{name}/duplicates may collect (24 bytes each,
  // twice): a lower threshold that finds more is refused with 422.
  int64_t max_duplicate_pairs = 2000000;
  // Longest text in tokens (EOS included); a collection's max_tokens may lower it.
  int max_tokens_per_text = 8192;
  // Longer texts are truncated (true) or refused with 422 (false).
  bool truncate = true;
  // spdlog level: trace, debug, info, warn, error, critical, off.
  std::string log_level = "info";
  // Log line format: "text" (time level [req ID] message) or "json" (one JSON object per line
  // with time, level, msg, request_id and the access line's fields; common/log.h).
  std::string log_format = "text";
  // Origins allowed to call the API from a browser (CORS), comma-separated, each
  // scheme://host[:port] or "*" (any origin). Empty: CORS off (no CORS headers, preflights
  // refused as before). Parsed into cors_origin_list.
  std::string cors_origins;
  std::vector<std::string> cors_origin_list;
  // Seconds between the progress lines (info) of long work: NDJSON imports, index rebuilds.
  // 0: only their start and end are logged.
  int progress_interval = 5;
  // fsync the write-ahead log before acknowledging a write.
  bool sync = false;
  // Seconds running requests get at shutdown (SIGINT/SIGTERM) before their queued embedding
  // work is refused (they then answer 503; what they wrote stays written).
  int shutdown_timeout = 30;
  // Seconds between background index saves of a changed collection (0: only at shutdown).
  int save_interval = 60;
  // The JSON config file that was read (informational; set by --config or QSEARCH_CONFIG).
  std::string config_file;
  // Testing only: milliseconds each engine batch is delayed (to exercise queueing), and
  // milliseconds before the model starts loading (to observe /ready answering 503).
  int debug_batch_delay_ms = 0;
  int debug_load_delay_ms = 0;

  // Keys after merging api_key, read_key and key_file.
  std::vector<std::string> admin_keys;
  std::vector<std::string> read_keys;
  bool auth_enabled() const { return !admin_keys.empty() || !read_keys.empty(); }
};

// Where each option came from, for the start-up log ("flag", "env", "file", "default").
using ConfigSources = std::map<std::string, std::string>;

// Builds the configuration from command-line arguments (after "serve"), the environment
// (env: NAME -> value; pass the process environment) and the config file named by --config
// or QSEARCH_CONFIG. Validates ranges and reads the key file. Errors are kInvalidArgument.
StatusOr<ServerConfig> load_server_config(const std::vector<std::string>& args,
                                          const std::map<std::string, std::string>& env,
                                          ConfigSources* sources = nullptr);

// The process environment as a map (QSEARCH_* variables only).
std::map<std::string, std::string> qsearch_environment();

// `qsearch serve --help`: every option with flag, variable and default.
std::string server_config_help();

// True if args ask for help (--help or -h).
bool wants_help(const std::vector<std::string>& args);

}  // namespace qsearch
