// qsearch dedup: near-duplicate clusters of a JSONL file (see src/dedup/dedup_job.h).
#include <signal.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/command.h"
#include "dedup/dedup_job.h"

namespace qsearch::cli {
namespace {

std::atomic<bool> g_interrupted{false};

// First Ctrl-C: stop cleanly (the handler resets itself, so a second one kills at once).
void on_signal(int) { g_interrupted.store(true); }

void install_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

const char* kUsage =
    R"(usage: qsearch dedup --model DIR --input FILE.jsonl --output clusters.jsonl [options]

Finds near-duplicate documents: embeds every text, finds all pairs with cosine similarity
at or above the threshold (on the GPU when there is one, else with FAISS on the CPU), groups
them into clusters and names one document to keep in each.

required:
  --model DIR            Qwen3-Embedding model directory (Hugging Face layout)
  --input FILE           JSONL, one object per line
  --output FILE          clusters, one JSON object per line:
                         {"cluster", "size", "keep", "members", "pairs", "pairs_total"}
options:
  --threshold X          cosine similarity for duplicates, in (0, 1] (default 0.92)
  --text-field NAME      field holding the text (default text)
  --id-field NAME        field holding the id, a string or an integer (default id);
                         a line without it is named by its line number
  --keep first|longest   keeper of a cluster: first seen (default) or longest text
  --keep-list FILE       ids to keep, one per line: every document in no cluster plus each
                         cluster's keeper (default: OUTPUT without .jsonl + .keep.txt)
  --dim N                embedding dimension (MRL; default: the model's full size)
  --instruction TEXT     instruction prefix (default none: documents get none)
  --device D             auto (default), cpu, cuda, cuda:0,1  (embedding and comparison)
  --dtype T              CUDA engine GEMMs: bf16 (default) or fp8 (sm_89+ GPUs only); the
                         embedding cache is kept apart per dtype
  --max-tokens N         truncate texts to N tokens (default 8192)
  --batch-tokens N       engine token budget per batch (default: the engine's)
  --threads N            CPU threads (default: all cores)
  --cache-dir DIR        embedding cache (default $XDG_CACHE_HOME/qsearch/dedup or
                         ~/.cache/qsearch/dedup); a rerun with the same model, input, fields,
                         dim, instruction and max tokens reuses it
  --no-cache             neither read nor write the embedding cache
  --max-pairs N          give up beyond N similar pairs (default 200000000)
  --pairs-per-cluster N  pairs listed per cluster line (default 100, -1: all)
  --quiet                no progress on stderr

Ctrl-C stops the job and leaves no partial output (outputs and cache are written to
temporary files and renamed when complete). Exit codes: 0 done, 1 error, 2 bad usage,
130 interrupted.
)";

int run_dedup(const std::vector<std::string>& raw) {
  Args args(raw,
            {"model", "input", "output", "threshold", "text-field", "id-field", "keep", "keep-list",
             "dim", "instruction", "device", "dtype", "max-tokens", "batch-tokens", "threads",
             "cache-dir", "max-pairs", "pairs-per-cluster"},
            {"help", "no-cache", "quiet"});
  if (args.has("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  auto usage_error = [](const std::string& msg) {
    std::fprintf(stderr, "qsearch dedup: %s\n(see qsearch dedup --help)\n", msg.c_str());
    return 2;
  };
  if (!args.ok()) return usage_error(args.error());
  if (!args.positional().empty()) return usage_error("unexpected argument " + args.positional()[0]);

  DedupJobOptions o;
  o.model_dir = args.get_or("model", "");
  o.input_path = args.get_or("input", "");
  o.output_path = args.get_or("output", "");
  if (o.model_dir.empty()) return usage_error("--model DIR is required");
  if (o.input_path.empty()) return usage_error("--input FILE.jsonl is required");
  if (o.output_path.empty()) return usage_error("--output FILE is required");
  if (auto t = args.get("threshold")) {
    char* end = nullptr;
    const double v = std::strtod(t->c_str(), &end);
    if (t->empty() || *end != '\0' || !std::isfinite(v) || v <= 0.0 || v > 1.0)
      return usage_error("--threshold must be a number in (0, 1], got '" + *t + "'");
    o.threshold = static_cast<float>(v);
  }
  o.text_field = args.get_or("text-field", o.text_field);
  o.id_field = args.get_or("id-field", o.id_field);
  const std::string keep = args.get_or("keep", "first");
  if (keep == "first") {
    o.keep = KeepPolicy::kFirst;
  } else if (keep == "longest") {
    o.keep = KeepPolicy::kLongest;
  } else {
    return usage_error("--keep must be first or longest, got '" + keep + "'");
  }
  o.keep_list_path = args.get_or("keep-list", "");
  o.instruction = args.get_or("instruction", "");
  o.device = args.get_or("device", "auto");
  auto dtype = parse_engine_dtype(args.get_or("dtype", "bf16"));
  if (!dtype.is_ok()) return usage_error("--dtype: " + dtype.status().message());
  o.dtype = *dtype;
  o.cache_dir = args.get_or("cache-dir", "");
  o.use_cache = !args.has("no-cache");
  o.progress = !args.has("quiet");
  auto int_arg = [&](const char* name, long long lo, long long hi, long long* out) -> bool {
    auto v = args.get_int(name);
    if (!args.ok()) return false;
    if (v && (*v < lo || *v > hi)) return false;
    if (v) *out = *v;
    return true;
  };
  long long dim = 0, max_tokens = 0, batch_tokens = 0, threads = 0, max_pairs = o.max_pairs,
            per_cluster = o.pairs_per_cluster;
  if (!int_arg("dim", 1, 1 << 16, &dim)) return usage_error("--dim expects a positive integer");
  if (!int_arg("max-tokens", 1, 1 << 20, &max_tokens))
    return usage_error("--max-tokens expects a positive integer");
  if (!int_arg("batch-tokens", 1, 1LL << 30, &batch_tokens))
    return usage_error("--batch-tokens expects a positive integer");
  if (!int_arg("threads", 1, 4096, &threads))
    return usage_error("--threads expects a positive integer");
  if (!int_arg("max-pairs", 0, 1LL << 40, &max_pairs))
    return usage_error("--max-pairs expects a non-negative integer");
  if (!int_arg("pairs-per-cluster", -1, 1 << 30, &per_cluster))
    return usage_error("--pairs-per-cluster expects an integer >= -1");
  o.dim = static_cast<int>(dim);
  o.max_tokens = static_cast<int>(max_tokens);
  o.max_batch_tokens = batch_tokens;
  o.threads = static_cast<int>(threads);
  o.max_pairs = max_pairs;
  o.pairs_per_cluster = static_cast<int>(per_cluster);

  install_handlers();
  o.cancel = &g_interrupted;
  auto result = run_dedup_job(o);
  if (!result.is_ok()) {
    if (result.status().code() == StatusCode::kCancelled || g_interrupted.load()) {
      std::fprintf(stderr, "qsearch dedup: interrupted; no output written\n");
      return 130;
    }
    std::fprintf(stderr, "qsearch dedup: %s\n", result.status().to_string().c_str());
    return 1;
  }
  return 0;
}

}  // namespace

QSEARCH_COMMAND(dedup, "Find near-duplicate documents in a JSONL file", run_dedup);

}  // namespace qsearch::cli
