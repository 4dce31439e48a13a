#include "dedup/embed_stage.h"

#include <chrono>
#include <deque>
#include <future>

#include "common/thread_pool.h"
#include "dedup/progress.h"

namespace qsearch {

Status embed_corpus(Embedder& embedder, const JsonlCorpus& corpus, const EmbedStageOptions& options,
                    std::vector<float>* out, EmbedStageReport* report) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t n = corpus.size();
  const int dim = options.dim > 0 ? options.dim : embedder.hidden_size();
  const int64_t chunk = std::max<int64_t>(1, options.chunk_docs);
  const int64_t chunks = (n + chunk - 1) / chunk;
  *report = EmbedStageReport{};
  out->assign(static_cast<size_t>(n) * dim, 0.0f);

  ThreadPool pool(options.threads > 0 ? static_cast<size_t>(options.threads) : 0);
  using Prepared = StatusOr<std::vector<PreparedText>>;
  auto prepare_chunk = [&](int64_t c) -> Prepared {
    const int64_t begin = c * chunk, end = std::min(n, begin + chunk);
    std::vector<std::string> texts;
    QS_RETURN_IF_ERROR(read_corpus_texts(corpus, begin, end, &texts));
    std::vector<PreparedText> items;
    items.reserve(texts.size());
    for (size_t k = 0; k < texts.size(); ++k) {
      if (options.cancel != nullptr && options.cancel->load()) return cancelled("interrupted");
      auto p = embedder.prepare(texts[k], options.instruction, options.max_tokens);
      if (!p.is_ok())
        return p.status().with_context("document " + corpus.ids[begin + k] + " of " + corpus.path);
      items.push_back(std::move(p).value());
    }
    return items;
  };

  // Several chunks are tokenized ahead of the one being embedded. Every future is waited on
  // before returning (the tasks refer to this frame).
  std::deque<std::future<Prepared>> ahead;
  int64_t next_submit = 0;
  const int64_t lookahead = static_cast<int64_t>(pool.size()) + 1;
  auto top_up = [&] {
    while (next_submit < chunks && static_cast<int64_t>(ahead.size()) < lookahead) {
      const int64_t c = next_submit++;
      ahead.push_back(pool.submit([&prepare_chunk, c] { return prepare_chunk(c); }));
    }
  };
  auto drain = [&] {
    for (auto& f : ahead) f.wait();
    ahead.clear();
  };

  ProgressLine bar("embed", "docs", n, options.progress);
  std::vector<std::vector<float>> vectors;
  int64_t done = 0;
  top_up();
  for (int64_t c = 0; c < chunks; ++c) {
    if (options.cancel != nullptr && options.cancel->load()) {
      drain();
      return cancelled("interrupted while embedding");
    }
    Prepared items = ahead.front().get();
    ahead.pop_front();
    top_up();
    if (!items.is_ok()) {
      drain();
      return items.status();
    }
    for (const PreparedText& p : *items) {
      report->tokens += static_cast<int64_t>(p.ids.size());
      report->truncated_documents += p.truncated_tokens > 0;
    }
    Status s = embedder.embed(*items, dim, &vectors);
    if (!s.is_ok()) {
      drain();
      return s.with_context("embedding documents " + std::to_string(c * chunk + 1) + ".." +
                            std::to_string(c * chunk + static_cast<int64_t>(items->size())));
    }
    for (size_t k = 0; k < vectors.size(); ++k)
      std::copy(vectors[k].begin(), vectors[k].end(),
                out->begin() + (c * chunk + static_cast<int64_t>(k)) * dim);
    done += static_cast<int64_t>(vectors.size());
    bar.update(done, ProgressLine::format_count(report->tokens) + " tokens");
  }
  report->documents = n;
  report->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  char summary[160];
  std::snprintf(summary, sizeof(summary), "%s docs, %s tokens in %.1f s (%.0f docs/s, %.0f tok/s)",
                ProgressLine::format_count(n).c_str(),
                ProgressLine::format_count(report->tokens).c_str(), report->seconds,
                n / std::max(report->seconds, 1e-9),
                report->tokens / std::max(report->seconds, 1e-9));
  bar.finish(summary);
  return Status::ok();
}

}  // namespace qsearch
