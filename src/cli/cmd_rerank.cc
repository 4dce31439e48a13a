// qsearch rerank: JSON lines {"query", "document", "instruction"?} in, one relevance score per
// line out (a JSON number, same order). Scores as Qwen3-Reranker's model card computes them
// (src/embed/reranker.h).
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/command.h"
#include "embed/reranker.h"
#include "embed/tokenizer/unicode.h"

namespace qsearch::cli {
namespace {

constexpr const char* kUsage =
    "usage: qsearch rerank --model DIR [--device cpu|cuda|auto] [--dtype bf16|fp8]\n"
    "                      [--instruction TEXT] [--max-tokens N] [--batch-tokens N]\n"
    "                      [--threads N]\n"
    "\n"
    "Reads one JSON object {\"query\", \"document\", \"instruction\"?} per line from stdin and\n"
    "writes one relevance score in [0, 1] per line (a JSON number, %.9g) to stdout, in order:\n"
    "softmax([logit \"no\", logit \"yes\"])[1] of a Qwen3-Reranker, as its model card computes "
    "it.\n"
    "\n"
    "  --model DIR         Qwen3-Reranker directory (config.json, tokenizer.json, weights)\n"
    "  --device D          cpu, cuda, cuda:N or auto (default auto: cuda when a GPU is visible)\n"
    "  --dtype T           CUDA engine GEMMs: bf16 (default) or fp8 (E4M3 on FP8 tensor cores,\n"
    "                      sm_89+ GPUs only)\n"
    "  --instruction TEXT  instruction of lines without one (default: \"Given a web search\n"
    "                      query, retrieve relevant passages that answer the query\")\n"
    "  --max-tokens N      longest input in tokens (default 8192); a longer pair's document\n"
    "                      text is cut at its end so the prompt's prefix and suffix stay\n"
    "  --batch-tokens N    token budget of one engine batch (default: the engine's)\n"
    "  --threads N         CPU engine threads (default: all cores)\n"
    "\n"
    "Stderr: the model and device, \"line N: truncated K of M tokens\" per cut pair, and the\n"
    "time spent preparing and scoring (model loading excluded).\n"
    "Errors (bad JSON, missing fields, invalid UTF-8, bad option) go to stderr with a non-zero\n"
    "exit code before anything is written.\n";

int run_rerank(const std::vector<std::string>& argv) {
  for (const auto& a : argv)
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  Args args(argv,
            {"model", "device", "dtype", "instruction", "max-tokens", "batch-tokens", "threads"},
            {});
  auto fail = [](const std::string& msg, int code) {
    std::fprintf(stderr, "qsearch rerank: %s\n", msg.c_str());
    return code;
  };
  if (!args.ok()) return fail(args.error() + " (see qsearch rerank --help)", 2);
  if (!args.positional().empty()) return fail("unexpected argument " + args.positional()[0], 2);
  if (!args.get("model")) return fail("--model DIR is required (see qsearch rerank --help)", 2);
  auto max_tokens = args.get_int("max-tokens");
  auto batch_tokens = args.get_int("batch-tokens");
  auto threads = args.get_int("threads");
  if (!args.ok()) return fail(args.error(), 2);
  if (max_tokens && (*max_tokens < 1 || *max_tokens > (1 << 30)))
    return fail("--max-tokens must be >= 1", 2);
  if (batch_tokens && *batch_tokens < 1) return fail("--batch-tokens must be >= 1", 2);
  if (threads && (*threads < 1 || *threads > 4096)) return fail("--threads must be >= 1", 2);
  const std::string default_instruction =
      args.get_or("instruction", std::string(kDefaultRerankInstruction));
  if (unicode::find_invalid_utf8(default_instruction))
    return fail("--instruction is not valid UTF-8", 2);

  EmbedderOptions options;
  options.model_dir = *args.get("model");
  options.device = args.get_or("device", "auto");
  auto dtype = parse_engine_dtype(args.get_or("dtype", "bf16"));
  if (!dtype.is_ok()) return fail("--dtype: " + dtype.status().message(), 2);
  options.dtype = *dtype;
  if (batch_tokens) options.max_batch_tokens = *batch_tokens;
  if (threads) options.threads = static_cast<int>(*threads);
  auto opened = Reranker::open(options);
  if (!opened.is_ok()) return fail(opened.status().to_string(), 1);
  Reranker& r = **opened;
  const ModelConfig& c = r.config();
  std::fprintf(stderr,
               "qsearch rerank: model %s (hidden %d, %d layers, %.2fB parameters, LM head %s), "
               "device %s\n",
               options.model_dir.c_str(), c.hidden_size, c.num_layers,
               static_cast<double>(c.num_parameters()) / 1e9,
               c.tie_word_embeddings ? "tied" : "untied", r.device_name().c_str());
  const int limit = max_tokens ? static_cast<int>(*max_tokens) : 0;

  // Read and prepare every line first, so that a bad line fails before any output.
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<PreparedPair> pairs;
  int64_t tokens = 0;
  std::string line;
  for (size_t line_no = 1; std::getline(std::cin, line); ++line_no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::string where = "line " + std::to_string(line_no) + ": ";
    if (auto bad = unicode::find_invalid_utf8(line))
      return fail(where + "invalid UTF-8 at byte " + std::to_string(*bad), 1);
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return fail(where + "bad JSON", 1);
    if (!j.is_object()) return fail(where + "expected a JSON object {\"query\", \"document\"}", 1);
    auto text = [&](const char* key, bool required, std::string* out) -> bool {
      auto it = j.find(key);
      if (it == j.end() || it->is_null()) return !required;
      if (!it->is_string()) return false;
      *out = it->get<std::string>();
      return true;
    };
    std::string query, document, instruction = default_instruction;
    if (!text("query", true, &query)) return fail(where + "\"query\" must be a string", 1);
    if (!text("document", true, &document)) return fail(where + "\"document\" must be a string", 1);
    if (!text("instruction", false, &instruction))
      return fail(where + "\"instruction\" must be a string", 1);
    auto p = r.prepare(query, document, instruction, limit);
    if (!p.is_ok()) return fail(where + p.status().message(), 1);
    if (p->truncated_tokens > 0)
      std::fprintf(stderr, "line %zu: truncated %d of %d tokens\n", line_no, p->truncated_tokens,
                   p->input_tokens);
    tokens += static_cast<int64_t>(p->ids.size());
    pairs.push_back(std::move(p).value());
  }
  if (std::cin.bad()) return fail("error reading stdin", 1);
  const auto t1 = std::chrono::steady_clock::now();

  // Score in groups (batched by token budget inside) and write in order.
  constexpr size_t kGroup = 4096;
  std::string out;
  for (size_t b = 0; b < pairs.size(); b += kGroup) {
    std::vector<PreparedPair> group(pairs.begin() + b,
                                    pairs.begin() + std::min(pairs.size(), b + kGroup));
    std::vector<float> scores;
    Status s = r.score(group, &scores);
    if (!s.is_ok()) return fail(s.to_string(), 1);
    out.clear();
    char buf[32];
    for (float v : scores) {
      int len = std::snprintf(buf, sizeof buf, "%.9g\n", static_cast<double>(v));
      out.append(buf, len);
    }
    if (std::fwrite(out.data(), 1, out.size(), stdout) != out.size())
      return fail("error writing stdout", 1);
  }
  if (std::fflush(stdout) != 0) return fail("error writing stdout", 1);
  const auto t2 = std::chrono::steady_clock::now();
  const double prep_s = std::chrono::duration<double>(t1 - t0).count();
  const double score_s = std::chrono::duration<double>(t2 - t1).count();
  std::fprintf(stderr,
               "qsearch rerank: %zu pairs, %lld tokens: prepared in %.3f s, scored in %.3f s "
               "(%.1f pairs/s)\n",
               pairs.size(), static_cast<long long>(tokens), prep_s, score_s,
               score_s > 0 ? static_cast<double>(pairs.size()) / score_s : 0.0);
  return 0;
}

}  // namespace

QSEARCH_COMMAND(rerank, "Score (query, document) JSON lines with a Qwen3-Reranker", run_rerank);

}  // namespace qsearch::cli
