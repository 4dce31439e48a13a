// qsearch embed: JSON lines in, L2-normalised embeddings out (one JSON array per line, same
// order). The contract of issue 2 section 6; later checks rely on it exactly.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/command.h"
#include "embed/embedder.h"
#include "embed/tokenizer/unicode.h"

namespace qsearch::cli {
namespace {

constexpr const char* kUsage =
    "usage: qsearch embed --model DIR [--device cpu|cuda|auto] [--dtype bf16|fp8]\n"
    "                     [--instruction TEXT] [--dim N] [--max-tokens N] [--ids]\n"
    "                     [--batch-tokens N] [--threads N]\n"
    "\n"
    "Reads one JSON string per line from stdin and writes one JSON array of floats per line\n"
    "(float32, L2-normalised, printed with %.9g) to stdout, in the same order.\n"
    "\n"
    "  --model DIR         Hugging Face model directory (config.json, tokenizer.json, weights)\n"
    "  --device D          cpu, cuda, cuda:N or auto (default auto: cuda when a GPU is visible)\n"
    "  --dtype T           CUDA engine GEMMs: bf16 (default) or fp8 (E4M3 on FP8 tensor cores,\n"
    "                      sm_89+ GPUs only)\n"
    "  --instruction TEXT  embed as queries: \"Instruct: TEXT\\nQuery:{line}\" (default: none,\n"
    "                      as documents)\n"
    "  --dim N             output dimension 32..hidden_size (MRL; default hidden_size)\n"
    "  --max-tokens N      truncate inputs to N tokens, keeping the final <|endoftext|>\n"
    "                      (default 8192, at most max_position_embeddings)\n"
    "  --ids               lines are JSON arrays of token ids, used as given (<|endoftext|>\n"
    "                      appended when the last id is not it)\n"
    "  --batch-tokens N    token budget of one engine batch (default: the engine's)\n"
    "  --threads N         CPU engine threads (default: all cores)\n"
    "\n"
    "Stderr: the model and device, and \"line N: truncated K of M tokens\" per truncated line.\n"
    "Errors (bad JSON, invalid UTF-8, bad option) go to stderr with a non-zero exit code.\n";

void append_vector(const std::vector<float>& v, std::string* out) {
  char buf[32];
  out->push_back('[');
  for (size_t j = 0; j < v.size(); ++j) {
    if (j) out->push_back(',');
    int len = std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v[j]));
    out->append(buf, len);
  }
  out->append("]\n");
}

int run_embed(const std::vector<std::string>& argv) {
  for (const auto& a : argv)
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  Args args(
      argv,
      {"model", "device", "dtype", "instruction", "dim", "max-tokens", "batch-tokens", "threads"},
      {"ids"});
  auto fail = [](const std::string& msg, int code) {
    std::fprintf(stderr, "qsearch embed: %s\n", msg.c_str());
    return code;
  };
  if (!args.ok()) return fail(args.error() + " (see qsearch embed --help)", 2);
  if (!args.positional().empty()) return fail("unexpected argument " + args.positional()[0], 2);
  if (!args.get("model")) return fail("--model DIR is required (see qsearch embed --help)", 2);
  auto dim = args.get_int("dim");
  auto max_tokens = args.get_int("max-tokens");
  auto batch_tokens = args.get_int("batch-tokens");
  auto threads = args.get_int("threads");
  if (!args.ok()) return fail(args.error(), 2);
  if (max_tokens && (*max_tokens < 1 || *max_tokens > (1 << 30)))
    return fail("--max-tokens must be >= 1", 2);
  if (batch_tokens && *batch_tokens < 1) return fail("--batch-tokens must be >= 1", 2);
  if (threads && (*threads < 1 || *threads > 4096)) return fail("--threads must be >= 1", 2);
  if (dim && (*dim < 1 || *dim > (1 << 20))) return fail("--dim out of range", 2);
  const std::string instruction = args.get_or("instruction", "");
  if (unicode::find_invalid_utf8(instruction))
    return fail("--instruction is not valid UTF-8", 2);
  const bool ids_mode = args.has("ids");
  if (ids_mode && !instruction.empty()) return fail("--instruction does not apply to --ids", 2);

  auto dtype = parse_engine_dtype(args.get_or("dtype", "bf16"));
  if (!dtype.is_ok()) return fail("--dtype: " + dtype.status().message(), 2);

  EmbedderOptions options;
  options.model_dir = *args.get("model");
  options.device = args.get_or("device", "auto");
  options.dtype = *dtype;
  if (batch_tokens) options.max_batch_tokens = *batch_tokens;
  if (threads) options.threads = static_cast<int>(*threads);
  auto embedder = Embedder::open(options);
  if (!embedder.is_ok()) return fail(embedder.status().to_string(), 1);
  Embedder& e = **embedder;
  const ModelConfig& c = e.config();
  std::fprintf(stderr,
               "qsearch embed: model %s (hidden %d, %d layers, %.2fB parameters), device %s%s\n",
               options.model_dir.c_str(), c.hidden_size, c.num_layers,
               static_cast<double>(c.num_parameters()) / 1e9, e.device_name().c_str(),
               options.dtype == EngineDType::kFP8 ? " (fp8)" : "");
  const int out_dim = dim ? static_cast<int>(*dim) : 0;
  if (out_dim != 0 && (out_dim < 32 || out_dim > c.hidden_size))
    return fail(
        "--dim " + std::to_string(out_dim) + " out of range 32.." + std::to_string(c.hidden_size),
        2);
  const int limit = max_tokens ? static_cast<int>(*max_tokens) : 0;

  // Read and prepare every line first, so that a bad line fails before any output.
  std::vector<PreparedText> items;
  std::string line;
  for (size_t line_no = 1; std::getline(std::cin, line); ++line_no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::string where = "line " + std::to_string(line_no) + ": ";
    if (auto bad = unicode::find_invalid_utf8(line))
      return fail(where + "invalid UTF-8 at byte " + std::to_string(*bad), 1);
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return fail(where + "bad JSON", 1);
    StatusOr<PreparedText> p = invalid_argument("");
    if (ids_mode) {
      if (!j.is_array()) return fail(where + "expected a JSON array of token ids", 1);
      std::vector<int32_t> ids;
      for (const auto& v : j) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
          return fail(where + "token ids must be non-negative integers", 1);
        ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
      }
      p = e.prepare_ids(std::move(ids), limit);
    } else {
      if (!j.is_string()) return fail(where + "expected a JSON string", 1);
      p = e.prepare(j.get<std::string>(), instruction, limit);
    }
    if (!p.is_ok()) return fail(where + p.status().message(), 1);
    if (p->truncated_tokens > 0)
      std::fprintf(stderr, "line %zu: truncated %d of %d tokens\n", line_no, p->truncated_tokens,
                   p->input_tokens);
    items.push_back(std::move(p).value());
  }
  if (std::cin.bad()) return fail("error reading stdin", 1);

  // Embed in groups (the Embedder batches each group by token budget) and write in order.
  constexpr size_t kGroup = 1024;
  std::string out;
  for (size_t b = 0; b < items.size(); b += kGroup) {
    std::vector<PreparedText> group(items.begin() + b,
                                    items.begin() + std::min(items.size(), b + kGroup));
    std::vector<std::vector<float>> vectors;
    Status s = e.embed(group, out_dim, &vectors);
    if (!s.is_ok()) return fail(s.to_string(), 1);
    out.clear();
    for (const auto& v : vectors) append_vector(v, &out);
    if (std::fwrite(out.data(), 1, out.size(), stdout) != out.size())
      return fail("error writing stdout", 1);
  }
  if (std::fflush(stdout) != 0) return fail("error writing stdout", 1);
  return 0;
}

}  // namespace

QSEARCH_COMMAND(embed, "Embed JSON lines from stdin (one vector per line)", run_embed);

}  // namespace qsearch::cli
