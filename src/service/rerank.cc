// The service's reranking (service.h): /v1/rerank and the pairs of a reranked search, scored by
// the reranker model through the one scheduler (Task::kRerank at query priority).
#include <algorithm>
#include <cmath>

#include "service/chunking.h"
#include "service/service.h"

namespace qsearch {
Status Service::require_reranker() const {
  if (reranker_) return Status::ok();
  return not_found(
      "no reranker is loaded: start qsearch serve with --reranker DIR (QSEARCH_RERANKER, config "
      "key \"reranker\") naming a Qwen3-Reranker directory");
}

StatusOr<std::vector<RerankResult>> Service::score_pairs(
    std::string_view query, const std::vector<std::string_view>& documents,
    std::string_view instruction, int64_t* total_tokens, const ClientGone& client_gone) {
  QS_RETURN_IF_ERROR(require_reranker());
  const int max_tokens = config_.max_tokens_per_text;
  // Tokenized on the CPU pool (the calling thread takes a share), never on a scheduler thread.
  std::vector<StatusOr<PreparedPair>> prepared(
      documents.size(), StatusOr<PreparedPair>(internal_error("not prepared")));
  auto work = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i)
      prepared[i] = reranker_->prepare(query, documents[i], instruction, max_tokens);
  };
  if (documents.size() <= 1)
    work(0, documents.size());
  else
    pool_->parallel_for(documents.size(), work);

  std::vector<RerankResult> results(documents.size());
  std::vector<const std::vector<int32_t>*> seqs;
  seqs.reserve(documents.size());
  int64_t tokens = 0;
  for (size_t i = 0; i < documents.size(); ++i) {
    if (!prepared[i].is_ok())
      return prepared[i].status().with_context("document " + std::to_string(i));
    const PreparedPair& p = *prepared[i];
    if (p.truncated_tokens > 0 && !config_.truncate)
      return unprocessable("document " + std::to_string(i) + ": the pair has " +
                           std::to_string(p.input_tokens) + " tokens, more than the limit of " +
                           std::to_string(max_tokens) + " (truncation is off)");
    results[i].index = i;
    results[i].truncated_tokens = p.truncated_tokens;
    tokens += static_cast<int64_t>(p.ids.size());
    seqs.push_back(&p.ids);
  }
  const std::vector<int32_t> dims(seqs.size(), 0);
  QS_ASSIGN_OR_RETURN(Embeddings hidden, run_sequences(seqs, dims, Priority::kQuery, Task::kRerank,
                                                       /*wait_for_room=*/false, client_gone));
  for (size_t i = 0; i < results.size(); ++i) {
    results[i].score = reranker_->score_hidden(hidden[i].data());
    if (!std::isfinite(results[i].score))
      return internal_error("the reranker gave a non-finite score for document " +
                            std::to_string(i));
  }
  if (total_tokens) *total_tokens = tokens;
  return results;
}

StatusOr<RerankOutput> Service::rerank(const RerankRequest& request,
                                       const ClientGone& client_gone) {
  QS_RETURN_IF_ERROR(require_reranker());  // before validating: without one, every request is 404
  const size_t n = request.documents.size();
  if (n == 0) return unprocessable("\"documents\" must not be empty");
  if (n > kMaxRerankDocuments)
    return unprocessable("\"documents\" has " + std::to_string(n) + " items, at most " +
                         std::to_string(kMaxRerankDocuments) + " are accepted");
  const int64_t top_n = request.top_n.value_or(static_cast<int64_t>(n));
  if (top_n < 1 || top_n > static_cast<int64_t>(n))
    return unprocessable("\"top_n\" must be in 1.." + std::to_string(n) +
                         " (the number of documents), got " + std::to_string(top_n));
  std::vector<std::string_view> docs(request.documents.begin(), request.documents.end());
  const std::string_view instruction =
      request.instruction ? std::string_view(*request.instruction) : kDefaultRerankInstruction;
  RerankOutput out;
  QS_ASSIGN_OR_RETURN(
      out.results, score_pairs(request.query, docs, instruction, &out.total_tokens, client_gone));
  std::stable_sort(out.results.begin(), out.results.end(),
                   [](const RerankResult& a, const RerankResult& b) { return a.score > b.score; });
  out.results.resize(static_cast<size_t>(top_n));
  if (metrics_) metrics_->add_rerank(static_cast<int64_t>(n), /*from_search=*/false);
  return out;
}

Status Service::rerank_hits(std::string_view query, const SearchRerank& options, int k,
                            std::vector<SearchHit>* hits, const ClientGone& client_gone) {
  if (hits->empty()) return Status::ok();
  // A chunked document is judged by its best chunk, the passage the vector search matched.
  std::vector<std::string_view> texts;
  texts.reserve(hits->size());
  for (const SearchHit& h : *hits)
    texts.push_back(h.chunk >= 0 ? code_point_slice(h.text, h.chunk_span.start, h.chunk_span.end)
                                 : std::string_view(h.text));
  const std::string_view instruction =
      options.instruction ? std::string_view(*options.instruction) : kDefaultRerankInstruction;
  QS_ASSIGN_OR_RETURN(std::vector<RerankResult> scored,
                      score_pairs(query, texts, instruction, nullptr, client_gone));
  for (size_t i = 0; i < hits->size(); ++i) (*hits)[i].rerank_score = scored[i].score;
  // By rerank score; equal scores keep the vector search's order.
  std::stable_sort(hits->begin(), hits->end(), [](const SearchHit& a, const SearchHit& b) {
    return *a.rerank_score > *b.rerank_score;
  });
  if (hits->size() > static_cast<size_t>(k)) hits->resize(static_cast<size_t>(k));
  if (metrics_) metrics_->add_rerank(static_cast<int64_t>(texts.size()), /*from_search=*/true);
  return Status::ok();
}

}  // namespace qsearch
