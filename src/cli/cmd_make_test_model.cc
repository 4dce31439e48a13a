// qsearch make-test-model: writes a small random-weight Qwen3 model directory (Hugging Face
// layout) for tests and examples. See src/embed/model/test_model.h.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/command.h"
#include "embed/model/test_model.h"

namespace qsearch::cli {
namespace {

constexpr const char* kUsage =
    "usage: qsearch make-test-model --tokenizer FILE --out DIR [--seed N] "
    "[--shape tiny|0.6B|4B|8B]\n"
    "                               [--layers N] [--prefix] [--shards N] "
    "[--dtype bf16|f16|f32]\n"
    "                               [--reranker [--lm-head tied|untied]] [--threads N]\n"
    "\n"
    "Writes a random-weight Qwen3 model in the Hugging Face layout (config.json, tokenizer.json\n"
    "with Qwen3-Embedding's post-processor appending <|endoftext|>, tokenizer_config.json,\n"
    "model.safetensors or shards + model.safetensors.index.json, test_model.json).\n"
    "\n"
    "  --tokenizer FILE  a Qwen2/Qwen3 tokenizer.json (e.g. .deps/qwen3/tokenizer.json)\n"
    "  --out DIR         output directory (created; files are overwritten)\n"
    "  --seed N          RNG seed (default 42); the weights are deterministic from it\n"
    "  --shape S         tiny (default: hidden 128, 2 layers, 4 heads, 2 KV heads, head_dim 128),\n"
    "                    or the real shapes 0.6B, 4B, 8B\n"
    "  --layers N        override the number of layers (e.g. a 2-layer 0.6B for benchmarks)\n"
    "  --prefix          tensor names with the \"model.\" prefix (default: without, as\n"
    "                    Qwen3-Embedding ships)\n"
    "  --shards N        write N shards and an index (default 1)\n"
    "  --dtype D         bf16 (default), f16 or f32\n"
    "  --reranker        a Qwen3-Reranker instead (Qwen3ForCausalLM with an LM head): the\n"
    "                    tokenizer.json as given (no post-processor change), \"model.\" names\n"
    "  --lm-head H       reranker LM head: tied (default; tie_word_embeddings true, as the\n"
    "                    0.6B and 4B) or untied (its own lm_head.weight, as the 8B)\n"
    "  --threads N       generator threads (default: all cores; same weights for any N)\n"
    "\n"
    "Prints one JSON object: {\"out\", \"checksum\", \"parameters\", \"bytes\", \"files\"}.\n";

int run_make_test_model(const std::vector<std::string>& argv) {
  for (const auto& a : argv)
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  Args args(argv, {"tokenizer", "out", "seed", "shape", "layers", "shards", "dtype", "lm-head",
                   "threads"},
            {"prefix", "reranker"});
  auto fail = [](const std::string& msg) {
    std::fprintf(stderr, "qsearch make-test-model: %s\n", msg.c_str());
    return 2;
  };
  if (!args.ok()) return fail(args.error() + "\n" + kUsage);
  if (!args.positional().empty()) return fail("unexpected argument " + args.positional()[0]);
  TestModelOptions o;
  if (!args.get("tokenizer")) return fail("--tokenizer FILE is required");
  if (!args.get("out")) return fail("--out DIR is required");
  o.tokenizer_path = *args.get("tokenizer");
  o.out_dir = *args.get("out");
  o.shape = args.get_or("shape", "tiny");
  o.prefix = args.has("prefix");
  auto seed = args.get_int("seed");
  auto layers = args.get_int("layers");
  auto shards = args.get_int("shards");
  auto threads = args.get_int("threads");
  if (!args.ok()) return fail(args.error());
  o.reranker = args.has("reranker");
  if (args.get("lm-head")) {
    if (!o.reranker) return fail("--lm-head applies to --reranker models");
    std::string head = *args.get("lm-head");
    if (head != "tied" && head != "untied") return fail("--lm-head must be tied or untied");
    o.tied = head == "tied";
  }
  if (threads) {
    if (*threads < 1 || *threads > 4096) return fail("--threads must be 1..4096");
    o.threads = static_cast<int>(*threads);
  }
  if (seed) {
    if (*seed < 0) return fail("--seed must be >= 0");
    o.seed = static_cast<uint64_t>(*seed);
  }
  if (layers) {
    if (*layers < 1 || *layers > 1000) return fail("--layers must be 1..1000");
    o.layers = static_cast<int>(*layers);
  }
  if (shards) {
    if (*shards < 1 || *shards > 1000) return fail("--shards must be 1..1000");
    o.shards = static_cast<int>(*shards);
  }
  std::string dtype = args.get_or("dtype", "bf16");
  if (dtype == "bf16")
    o.dtype = DType::kBF16;
  else if (dtype == "f16")
    o.dtype = DType::kF16;
  else if (dtype == "f32")
    o.dtype = DType::kF32;
  else
    return fail("--dtype must be bf16, f16 or f32, got " + dtype);

  auto info = write_test_model(o);
  if (!info.is_ok()) {
    std::fprintf(stderr, "qsearch make-test-model: %s\n", info.status().to_string().c_str());
    return 1;
  }
  nlohmann::json j;
  j["out"] = o.out_dir;
  j["checksum"] = checksum_hex(info->checksum);
  j["parameters"] = info->config.num_parameters();
  j["bytes"] = info->bytes;
  j["files"] = info->files;
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace

// The name has a hyphen, which QSEARCH_COMMAND cannot paste into an identifier.
static Registrar make_test_model_registrar("make-test-model",
                                           "Write a small random-weight Qwen3 model directory",
                                           run_make_test_model);

}  // namespace qsearch::cli
