#include "dedup/dedup_job.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

#include "dedup/corpus.h"
#include "dedup/embed_stage.h"
#include "dedup/embedding_cache.h"
#include "dedup/progress.h"
#include "dedup/similarity_join.h"
#include "embed/embedder.h"
#include "embed/model/config.h"

namespace qsearch {
namespace {

// An output written to "<path>.tmp-<pid>" and renamed onto path by commit(); removed if the
// job ends any other way.
class PendingFile {
 public:
  explicit PendingFile(std::string path)
      : path_(std::move(path)), tmp_(path_ + ".tmp-" + std::to_string(::getpid())) {}
  ~PendingFile() {
    if (file_ != nullptr) std::fclose(file_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  PendingFile(const PendingFile&) = delete;
  PendingFile& operator=(const PendingFile&) = delete;

  Status open() {
    file_ = std::fopen(tmp_.c_str(), "wb");
    if (file_ == nullptr) return io_error("cannot write " + tmp_ + ": " + std::strerror(errno));
    return Status::ok();
  }
  FILE* get() { return file_; }
  Status close() {
    bool ok = std::fflush(file_) == 0 && !std::ferror(file_) && ::fsync(fileno(file_)) == 0;
    ok = std::fclose(file_) == 0 && ok;
    file_ = nullptr;
    if (!ok) return io_error("writing " + tmp_ + ": " + std::strerror(errno));
    return Status::ok();
  }
  Status commit() {
    if (::rename(tmp_.c_str(), path_.c_str()) != 0)
      return io_error("renaming " + tmp_ + " to " + path_ + ": " + std::strerror(errno));
    committed_ = true;
    return Status::ok();
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string tmp_;
  FILE* file_ = nullptr;
  bool committed_ = false;
};

void log_line(bool enabled, const std::string& line) {
  if (enabled) std::fprintf(stderr, "%s\n", line.c_str());
}

// The Embedder's device options for a job device string ("cuda:0,1" -> cuda on GPUs 0, 1).
EmbedderOptions embedder_options(const DedupJobOptions& o) {
  EmbedderOptions e;
  e.model_dir = o.model_dir;
  e.max_batch_tokens = o.max_batch_tokens;
  e.dtype = o.dtype;
  e.threads = o.threads;
  e.device = o.device;
  if (o.device.rfind("cuda:", 0) == 0 && o.device.find(',') != std::string::npos) {
    e.device = "cuda";
    size_t pos = 5;
    while (pos <= o.device.size()) {
      size_t comma = o.device.find(',', pos);
      if (comma == std::string::npos) comma = o.device.size();
      e.gpus.push_back(std::atoi(o.device.substr(pos, comma - pos).c_str()));
      pos = comma + 1;
    }
  }
  return e;
}

std::string format_score(float s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", static_cast<double>(s));
  return buf;
}

Status write_clusters(FILE* f, const JsonlCorpus& corpus,
                      const std::vector<DuplicateCluster>& clusters, int pairs_per_cluster) {
  std::string line;
  for (size_t c = 0; c < clusters.size(); ++c) {
    const DuplicateCluster& cl = clusters[c];
    line = "{\"cluster\": " + std::to_string(c) +
           ", \"size\": " + std::to_string(cl.members.size()) +
           ", \"keep\": " + corpus.ids[cl.keep] + ", \"members\": [";
    for (size_t m = 0; m < cl.members.size(); ++m) {
      if (m > 0) line += ", ";
      line += corpus.ids[cl.members[m]];
    }
    line += "], \"pairs\": [";
    const size_t listed = pairs_per_cluster < 0
                              ? cl.pairs.size()
                              : std::min(cl.pairs.size(), static_cast<size_t>(pairs_per_cluster));
    for (size_t p = 0; p < listed; ++p) {
      if (p > 0) line += ", ";
      const SimilarPair& sp = cl.pairs[p];
      line +=
          "[" + corpus.ids[sp.i] + ", " + corpus.ids[sp.j] + ", " + format_score(sp.score) + "]";
    }
    line += "], \"pairs_total\": " + std::to_string(cl.pairs.size()) + "}\n";
    if (std::fwrite(line.data(), 1, line.size(), f) != line.size())
      return io_error(std::string("writing clusters: ") + std::strerror(errno));
  }
  return Status::ok();
}

}  // namespace

std::string default_keep_list_path(const std::string& output_path) {
  std::string base = output_path;
  const std::string ext = ".jsonl";
  if (base.size() > ext.size() && base.compare(base.size() - ext.size(), ext.size(), ext) == 0)
    base.resize(base.size() - ext.size());
  return base + ".keep.txt";
}

StatusOr<DedupJobResult> run_dedup_job(const DedupJobOptions& o) {
  using Clock = std::chrono::steady_clock;
  auto interrupted = [&] { return o.cancel != nullptr && o.cancel->load(); };
  if (o.model_dir.empty()) return invalid_argument("--model is required");
  if (o.input_path.empty()) return invalid_argument("--input is required");
  if (o.output_path.empty()) return invalid_argument("--output is required");
  if (o.text_field.empty()) return invalid_argument("--text-field must not be empty");
  if (!(o.threshold > 0.0f && o.threshold <= 1.0f))
    return invalid_argument("--threshold must be in (0, 1], got " + std::to_string(o.threshold));
  if (o.dim < 0) return invalid_argument("--dim must be positive");
  if (o.pairs_per_cluster < -1) return invalid_argument("pairs per cluster must be >= -1");

  QS_RETURN_IF_ERROR(check_join_device(o.device));

  DedupJobResult r;
  r.keep_list_path =
      o.keep_list_path.empty() ? default_keep_list_path(o.output_path) : o.keep_list_path;
  if (r.keep_list_path == o.output_path)
    return invalid_argument("--keep-list must differ from --output");
  // The outputs are opened (as temp files) first: an unwritable destination fails now.
  PendingFile clusters_file(o.output_path), keep_file(r.keep_list_path);
  QS_RETURN_IF_ERROR(clusters_file.open());
  QS_RETURN_IF_ERROR(keep_file.open());

  QS_ASSIGN_OR_RETURN(JsonlCorpus corpus,
                      scan_jsonl_corpus(o.input_path, o.text_field, o.id_field));
  const int64_t n = corpus.size();
  r.documents = n;
  log_line(o.progress, "dedup: " + ProgressLine::format_count(n) + " documents in " + o.input_path);
  auto config = ModelConfig::from_file(o.model_dir + "/config.json");
  if (!config.is_ok()) return config.status().with_context("model " + o.model_dir);
  const int hidden = config->hidden_size;
  if (o.dim != 0 && (o.dim < 32 || o.dim > hidden))
    return invalid_argument("--dim must be in 32.." + std::to_string(hidden) + " for this model");
  const int dim = o.dim > 0 ? o.dim : hidden;

  // Embeddings: cache or Embedder.
  std::vector<float> vectors;
  std::string cache_key;
  if (o.use_cache) {
    EmbeddingCacheKeyInputs key_in{o.model_dir, o.input_path,  o.text_field, o.id_field,
                                   dim,         o.instruction, o.max_tokens};
    QS_ASSIGN_OR_RETURN(cache_key, embedding_cache_key(key_in));
    // fp8 vectors differ from bf16 ones; bf16 keeps the key (and the caches) of before --dtype
    if (o.dtype == EngineDType::kFP8) cache_key += "\ndtype fp8";
    r.cache_path = embedding_cache_file(
        o.cache_dir.empty() ? default_embedding_cache_dir() : o.cache_dir, o.input_path, cache_key);
    Status loaded = load_embedding_cache(r.cache_path, cache_key, n, dim, &vectors);
    if (loaded.is_ok()) {
      r.cache_hit = true;
      log_line(o.progress, "embed: loaded " + ProgressLine::format_count(n) + " x " +
                               std::to_string(dim) + " embeddings from cache " + r.cache_path +
                               " (nothing embedded)");
    } else if (loaded.code() != StatusCode::kNotFound) {
      log_line(o.progress, "embed: not using the cache (" + loaded.message() + ")");
    }
  }
  if (!r.cache_hit && n > 0) {
    const auto t0 = Clock::now();
    QS_ASSIGN_OR_RETURN(std::unique_ptr<Embedder> embedder, Embedder::open(embedder_options(o)));
    log_line(o.progress, "embed: model " + o.model_dir + " on " + embedder->device_name() +
                             ", dim " + std::to_string(dim) +
                             (o.instruction.empty() ? "" : ", with instruction"));
    EmbedStageOptions eo;
    eo.instruction = o.instruction;
    eo.dim = dim;
    eo.max_tokens = o.max_tokens;
    eo.chunk_docs =
        o.embed_chunk_docs > 0
            ? o.embed_chunk_docs
            : 2048 * static_cast<int64_t>(std::max<size_t>(1, embedder->num_backends()));
    eo.threads = o.threads;
    eo.progress = o.progress;
    eo.cancel = o.cancel;
    EmbedStageReport report;
    QS_RETURN_IF_ERROR(embed_corpus(*embedder, corpus, eo, &vectors, &report));
    embedder.reset();  // frees the engine (and its GPU memory) before the join
    r.truncated_documents = report.truncated_documents;
    if (report.truncated_documents > 0)
      log_line(o.progress, "embed: " + std::to_string(report.truncated_documents) +
                               " documents were truncated to the token limit");
    r.embed_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (o.use_cache) {
      Status saved =
          save_embedding_cache(r.cache_path, cache_key, n, dim, vectors.data(), o.cancel);
      if (saved.code() == StatusCode::kCancelled) return saved;
      log_line(o.progress, saved.is_ok() ? "embed: saved embeddings to cache " + r.cache_path
                                         : "embed: could not save the cache: " + saved.message());
    }
  }
  if (interrupted()) return cancelled("interrupted");

  // All similar pairs.
  const auto t_join = Clock::now();
  SimilarityJoinOptions jo;
  jo.threshold = o.threshold;
  jo.device = o.device;
  jo.max_pairs = o.max_pairs;
  jo.threads = o.threads;
  jo.cancel = o.cancel;
  ProgressLine bar("compare", "pairs", n * (n - 1) / 2, o.progress);
  jo.progress = [&bar](const JoinProgress& p) {
    bar.update(p.pairs_compared, ProgressLine::format_count(p.candidates) + " candidates");
  };
  JoinStats stats;
  QS_ASSIGN_OR_RETURN(std::vector<SimilarPair> pairs,
                      find_similar_pairs(vectors.data(), n, dim, jo, &stats));
  r.join_seconds = std::chrono::duration<double>(Clock::now() - t_join).count();
  r.join_device = stats.device;
  r.pairs = static_cast<int64_t>(pairs.size());
  char summary[200];
  std::snprintf(
      summary, sizeof(summary), "%s pairs at cosine >= %g (%s candidates) on %s in %.1f s",
      ProgressLine::format_count(r.pairs).c_str(), o.threshold,
      ProgressLine::format_count(stats.candidates).c_str(), stats.device.c_str(), r.join_seconds);
  bar.finish(summary);

  // Clusters, keepers, outputs.
  std::vector<DuplicateCluster> clusters = cluster_pairs(n, pairs, o.keep, corpus.text_chars);
  std::vector<int64_t> keep = keep_list(n, clusters);
  r.clusters = static_cast<int64_t>(clusters.size());
  for (const DuplicateCluster& c : clusters) r.clustered_documents += c.members.size();
  r.kept = static_cast<int64_t>(keep.size());
  r.dropped = n - r.kept;
  QS_RETURN_IF_ERROR(write_clusters(clusters_file.get(), corpus, clusters, o.pairs_per_cluster));
  for (int64_t k : keep) {
    const std::string line = corpus.id_text(k) + "\n";
    if (std::fwrite(line.data(), 1, line.size(), keep_file.get()) != line.size())
      return io_error("writing " + r.keep_list_path + ": " + std::strerror(errno));
  }
  QS_RETURN_IF_ERROR(clusters_file.close());
  QS_RETURN_IF_ERROR(keep_file.close());
  if (interrupted()) return cancelled("interrupted");
  QS_RETURN_IF_ERROR(clusters_file.commit());
  QS_RETURN_IF_ERROR(keep_file.commit());
  log_line(o.progress, "dedup: " + ProgressLine::format_count(r.clusters) + " clusters of " +
                           ProgressLine::format_count(r.clustered_documents) + " documents; " +
                           ProgressLine::format_count(r.dropped) + " duplicates dropped, " +
                           ProgressLine::format_count(r.kept) + " kept; wrote " + o.output_path +
                           " and " + r.keep_list_path);
  return r;
}

}  // namespace qsearch
