#include "service/service.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <unordered_map>

#include <spdlog/spdlog.h>

#include "service/chunking.h"
#include "service/model_identity.h"
#include "collection/collection_store.h"
#include "collection/lexical_index.h"

namespace qsearch {
namespace fs = std::filesystem;

namespace {

std::vector<int> parse_gpus(const std::string& s) {
  std::vector<int> out;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ','))
    if (!part.empty()) out.push_back(std::stoi(part));
  return out;
}

}  // namespace

Status check_model_dir(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(fs::path(dir) / "config.json", ec)) return Status::ok();
  return not_found(
      "no model in '" + dir + "' (config.json not found).\n"
      "  Get Qwen3-Embedding-0.6B (about 1.2 GB) from Hugging Face:\n"
      "    huggingface-cli download Qwen/Qwen3-Embedding-0.6B --local-dir " + dir + "\n"
      "  or from ModelScope:\n"
      "    modelscope download --model Qwen/Qwen3-Embedding-0.6B --local_dir " + dir + "\n"
      "  and start with --model DIR (or QSEARCH_MODEL=DIR).\n"
      "  To try the server without downloading anything, `make run` starts it with the small\n"
      "  random-weight test model (qsearch make-test-model --tokenizer "
      ".deps/qwen3/tokenizer.json --out DIR writes one).");
}

Service::Service(const ServerConfig& config, Metrics* metrics)
    : config_(config), metrics_(metrics) {}

Service::~Service() { shutdown().ignore(); }

StatusOr<std::unique_ptr<Service>> Service::open(const ServerConfig& config, Metrics* metrics) {
  QS_RETURN_IF_ERROR(check_model_dir(config.model));
  std::unique_ptr<Service> svc(new Service(config, metrics));
  svc->loaded_at_ = std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  svc->pool_ = std::make_unique<ThreadPool>(static_cast<size_t>(config.threads));

  EmbedderOptions eo;
  eo.model_dir = config.model;
  eo.device = config.device;
  eo.max_batch_tokens = config.max_batch_tokens;
  eo.threads = config.threads;
  // One engine replica per distinct GPU: "--gpus 0,0" asks for two gpu-index shards on GPU 0,
  // not for two copies of the model there.
  for (int g : parse_gpus(config.gpus))
    if (std::find(eo.gpus.begin(), eo.gpus.end(), g) == eo.gpus.end()) eo.gpus.push_back(g);
  QS_ASSIGN_OR_RETURN(eo.dtype, parse_engine_dtype(config.dtype));
  auto t0 = std::chrono::steady_clock::now();
  auto embedder = Embedder::open(eo);
  if (!embedder.is_ok()) return embedder.status().with_context("loading the model from " + config.model);
  svc->embedder_ = std::move(embedder).value();
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto identity = compute_model_identity(config.model);
  if (!identity.is_ok()) return identity.status().with_context("hashing the model in " + config.model);
  svc->model_name_ = identity->name;
  svc->model_identity_ = identity->identity;
  spdlog::info("model identity {}: {:.1f} MB of config.json and weights hashed (XXH3-128) in "
               "{:.2f} s",
               identity->identity, static_cast<double>(identity->bytes_hashed) / 1e6,
               identity->seconds);
  spdlog::info("model {} loaded in {:.1f} s: hidden size {}, {} engine replica(s) on {}{}",
               svc->model_identity_, load_s, svc->embedder_->hidden_size(),
               svc->embedder_->num_backends(), svc->embedder_->device_name(),
               eo.dtype == EngineDType::kFP8 ? " (fp8)" : "");
  if (svc->embedder_->num_backends() == 0) return internal_error("the embedder has no engine");

  if (!config.reranker.empty()) {
    EmbedderOptions ro = eo;
    ro.model_dir = config.reranker;
    auto r0 = std::chrono::steady_clock::now();
    auto reranker = Reranker::open(ro);
    if (!reranker.is_ok())
      return reranker.status().with_context("loading the reranker from " + config.reranker);
    svc->reranker_ = std::move(reranker).value();
    auto reranker_identity = compute_model_identity(config.reranker);
    if (!reranker_identity.is_ok())
      return reranker_identity.status().with_context("hashing the reranker in " + config.reranker);
    svc->reranker_name_ = reranker_identity->name;
    svc->reranker_identity_ = reranker_identity->identity;
    const std::string& identity = svc->reranker_identity_;
    if (svc->reranker_->num_backends() != svc->embedder_->num_backends())
      return internal_error("the reranker has " + std::to_string(svc->reranker_->num_backends()) +
                            " engine replicas, the model " +
                            std::to_string(svc->embedder_->num_backends()));
    spdlog::info("reranker {} loaded in {:.1f} s: hidden size {}, LM head {}, on {}", identity,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - r0).count(),
                 svc->reranker_->hidden_size(),
                 svc->reranker_->config().tie_word_embeddings ? "tied" : "untied",
                 svc->reranker_->device_name());
  }

  StoreOptions so;
  so.data_dir = config.data_dir;
  so.sync = config.sync;
  so.model = svc->model_identity_;
  so.legacy_model = identity->legacy_identity;
  so.index_save_interval_s = config.save_interval;  // the store saves in the background
  so.progress_log_interval_s = config.progress_interval;
  so.gpu_devices = parse_gpus(config.gpus);  // a "gpu" index shards over these (empty: all)
  auto store = CollectionStore::open(so);
  if (!store.is_ok()) return store.status().with_context("opening the data directory " + config.data_dir);
  svc->store_ = std::move(store).value();

  std::vector<Backend*> backends, rerank;
  for (size_t i = 0; i < svc->embedder_->num_backends(); ++i) {
    backends.push_back(&svc->embedder_->backend(i));
    if (svc->reranker_) rerank.push_back(&svc->reranker_->backend(i));
  }
  SchedulerOptions sched;
  sched.max_batch_tokens = config.max_batch_tokens;
  sched.queue_limit_tokens = config.queue_limit_tokens;
  sched.debug_batch_delay_ms = config.debug_batch_delay_ms;
  svc->scheduler_ =
      std::make_unique<Scheduler>(std::move(backends), sched, metrics, std::move(rerank));
  return svc;
}

Status Service::shutdown() {
  if (shut_down_.exchange(true)) return Status::ok();
  stop_reembeds();  // before the scheduler and the store they use go
  if (scheduler_) scheduler_->stop();
  if (store_) return store_->save_indexes();
  return Status::ok();
}

int Service::min_dimension() const { return std::min(32, embedder_->hidden_size()); }

Status Service::check_truncation(const PreparedText& p, int max_tokens) const {
  if (config_.truncate || p.truncated_tokens == 0) return Status::ok();
  return unprocessable("text has " + std::to_string(p.input_tokens) +
                       " tokens, more than the limit of " + std::to_string(max_tokens) +
                       " (truncation is off)");
}

std::vector<StatusOr<PreparedText>> Service::prepare_texts(
    const std::vector<std::string_view>& texts, std::string_view instruction,
    int max_tokens) const {
  std::vector<StatusOr<PreparedText>> out(texts.size(),
                                          StatusOr<PreparedText>(internal_error("not prepared")));
  auto work = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) {
      auto p = embedder_->prepare(texts[i], instruction, max_tokens);
      if (p.is_ok()) {
        Status st = check_truncation(*p, max_tokens);
        if (!st.is_ok()) p = st;
      }
      out[i] = std::move(p);
    }
  };
  if (texts.size() <= 1) work(0, texts.size());
  else pool_->parallel_for(texts.size(), work);
  return out;
}

std::vector<float> document_vector(const Document& doc, int dimension) {
  if (doc.chunks.empty()) return doc.embedding;
  return normalized_mean(doc.embedding, dimension);
}

std::vector<StatusOr<std::vector<std::pair<Chunk, PreparedText>>>> Service::prepare_chunks(
    const std::vector<std::string_view>& texts, const ChunkingOptions& options) const {
  using Planned = std::vector<std::pair<Chunk, PreparedText>>;
  std::vector<StatusOr<Planned>> out(texts.size(), StatusOr<Planned>(internal_error("not prepared")));
  // A chunk is a text of its own: no truncation below the server's per-text limit (the window
  // is at most that limit, checked at create; re-tokenizing a chunk's text alone changes at
  // most the tokens at its edges).
  const int cap = config_.max_tokens_per_text;
  auto one = [&](std::string_view text) -> StatusOr<Planned> {
    QS_ASSIGN_OR_RETURN(std::vector<TokenSpan> tokens,
                        embedder_->tokenizer().encode_with_offsets(text, false));
    Planned planned;
    for (const TextChunk& c : plan_chunks(text, tokens, options)) {
      QS_ASSIGN_OR_RETURN(PreparedText p,
                          embedder_->prepare(text.substr(c.byte_begin, c.byte_end - c.byte_begin), "", cap));
      Chunk chunk;
      chunk.start = c.start;
      chunk.end = c.end;
      chunk.tokens = static_cast<int32_t>(p.ids.size());
      planned.emplace_back(chunk, std::move(p));
    }
    return planned;
  };
  auto work = [&](size_t begin, size_t end) {
    for (size_t i = begin; i < end; ++i) out[i] = one(texts[i]);
  };
  if (texts.size() <= 1) work(0, texts.size());
  else pool_->parallel_for(texts.size(), work);
  return out;
}

StatusOr<Embeddings> Service::embed_prepared(const std::vector<PreparedText>& items,
                                             const std::vector<int32_t>& dims, Priority priority,
                                             bool wait_for_room, const ClientGone& client_gone) {
  std::vector<const std::vector<int32_t>*> seqs;
  seqs.reserve(items.size());
  for (const auto& item : items) seqs.push_back(&item.ids);
  return run_sequences(seqs, dims, priority, Task::kEmbed, wait_for_room, client_gone);
}

StatusOr<Embeddings> Service::run_sequences(const std::vector<const std::vector<int32_t>*>& items,
                                            const std::vector<int32_t>& dims, Priority priority,
                                            Task task, bool wait_for_room,
                                            const ClientGone& client_gone) {
  Embeddings out;
  out.reserve(items.size());
  // Chunks of at most a quarter of the queue, two in flight: a big request pipelines without
  // filling the queue for everyone else.
  const int64_t chunk_tokens =
      std::max<int64_t>(scheduler_->max_sequence_tokens(task), config_.queue_limit_tokens / 4);
  std::deque<std::shared_ptr<EmbedJob>> inflight;
  auto cancel_all = [&] {
    for (auto& j : inflight) scheduler_->cancel(j);
  };
  size_t next = 0;
  bool submitted_any = false;
  while (next < items.size() || !inflight.empty()) {
    while (next < items.size() && inflight.size() < 2) {
      size_t end = next;
      int64_t tokens = 0;
      std::vector<std::vector<int32_t>> seqs;
      std::vector<int32_t> chunk_dims;
      while (end < items.size() &&
             (end == next || tokens + static_cast<int64_t>(items[end]->size()) <= chunk_tokens)) {
        tokens += static_cast<int64_t>(items[end]->size());
        seqs.push_back(*items[end]);
        chunk_dims.push_back(dims[end]);
        ++end;
      }
      auto job = scheduler_->submit(std::move(seqs), std::move(chunk_dims), priority, task);
      if (job.is_ok()) {
        inflight.push_back(std::move(job).value());
        submitted_any = true;
        next = end;
        continue;
      }
      bool retry = job.status().code() == StatusCode::kResourceExhausted &&
                   (wait_for_room || submitted_any);
      if (!retry) {
        cancel_all();
        return job.status();
      }
      if (!inflight.empty()) break;  // wait for our own work first, then retry
      if (client_gone && client_gone()) return cancelled("the client disconnected");
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (inflight.empty()) continue;
    auto result = scheduler_->wait(inflight.front(), client_gone);
    inflight.pop_front();
    if (!result.is_ok()) {
      cancel_all();
      return result.status();
    }
    for (auto& v : *result) out.push_back(std::move(v));
  }
  return out;
}

StatusOr<EmbedOutput> Service::embed_inputs(const std::vector<EmbedInput>& inputs,
                                            std::string_view instruction, int dim,
                                            const ClientGone& client_gone) {
  if (dim != 0 && (dim < min_dimension() || dim > hidden_size()))
    return unprocessable("dimensions must be in " + std::to_string(min_dimension()) + ".." +
                         std::to_string(hidden_size()) + ", got " + std::to_string(dim));
  const int max_tokens = config_.max_tokens_per_text;
  std::vector<std::string_view> texts;
  std::vector<size_t> text_index;
  for (size_t i = 0; i < inputs.size(); ++i)
    if (!inputs[i].is_ids) {
      texts.push_back(inputs[i].text);
      text_index.push_back(i);
    }
  auto prepared_texts = prepare_texts(texts, instruction, max_tokens);
  std::vector<PreparedText> prepared(inputs.size());
  for (size_t k = 0; k < texts.size(); ++k) {
    if (!prepared_texts[k].is_ok())
      return prepared_texts[k].status().with_context("input " + std::to_string(text_index[k]));
    prepared[text_index[k]] = std::move(prepared_texts[k]).value();
  }
  EmbedOutput output;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].is_ids) {
      auto p = embedder_->prepare_ids(inputs[i].ids, max_tokens);
      if (p.is_ok()) {
        Status st = check_truncation(*p, max_tokens);
        if (!st.is_ok()) p = st;
      }
      if (!p.is_ok()) return p.status().with_context("input " + std::to_string(i));
      prepared[i] = std::move(p).value();
    }
    output.prompt_tokens += static_cast<int64_t>(prepared[i].ids.size());
  }
  std::vector<int32_t> dims(inputs.size(), dim);
  QS_ASSIGN_OR_RETURN(output.vectors,
                      embed_prepared(prepared, dims, Priority::kQuery, false, client_gone));
  return output;
}

// The spec's own rules were checked when it was parsed (collection/options.h); here the rules
// of this model and server: dimension within what the model produces, token limits within
// --max-tokens-per-text.
Status Service::create_collection(CollectionSpec spec) {
  if (spec.dimension == 0) spec.dimension = hidden_size();
  if (spec.dimension < min_dimension() || spec.dimension > hidden_size())
    return unprocessable("dimension must be in " + std::to_string(min_dimension()) + ".." +
                         std::to_string(hidden_size()) + ", got " +
                         std::to_string(spec.dimension));
  QS_RETURN_IF_ERROR(spec.index.check_dimension(spec.dimension));
  if (spec.index.quantizer == "pq" && spec.index.pq_m == 0)
    spec.index.pq_m = IndexSpec::default_pq_m(spec.dimension);
  if (spec.chunking && spec.chunking->max_tokens > config_.max_tokens_per_text)
    return unprocessable("\"chunking\".\"max_tokens\" is " + std::to_string(spec.chunking->max_tokens) +
                         ", more than the server's limit per text (" +
                         std::to_string(config_.max_tokens_per_text) + ", --max-tokens-per-text)");
  if (spec.max_tokens > config_.max_tokens_per_text)
    return unprocessable("max_tokens is " + std::to_string(spec.max_tokens) +
                         ", more than the server's limit per text (" +
                         std::to_string(config_.max_tokens_per_text) + ", --max-tokens-per-text)");
  spec.model = model_identity_;
  return store_->create_collection(spec);
}

StatusOr<std::vector<DocumentResult>> Service::upsert_documents(const std::string& collection,
                                                                std::vector<DocumentInput> docs,
                                                                bool wait_for_room,
                                                                const ClientGone& client_gone,
                                                                uint64_t instance) {
  WriteBinding binding;
  binding.instance = instance;
  return write_documents(collection, std::move(docs), wait_for_room, client_gone, binding);
}

StatusOr<std::vector<DocumentResult>> Service::write_documents(const std::string& collection,
                                                               std::vector<DocumentInput> docs,
                                                               bool wait_for_room,
                                                               const ClientGone& client_gone,
                                                               const WriteBinding& binding) {
  auto found = store_->get_collection(collection);
  if (binding.instance != 0 && (!found.is_ok() || found->instance != binding.instance))
    return found.is_ok() || found.status().code() == StatusCode::kNotFound
               ? collection_replaced(collection)
               : found.status();
  QS_ASSIGN_OR_RETURN(CollectionInfo info, std::move(found));
  // The re-embed job writes with the served model by design; everyone else follows the rule.
  if (!binding.reembed) QS_RETURN_IF_ERROR(check_model(info, /*write=*/true));
  UpsertOptions write_options;
  write_options.instance = info.instance;
  write_options.reembed_record = binding.reembed_record;
  write_options.written = binding.written;
  const int max_tokens = std::min(config_.max_tokens_per_text, info.spec.max_tokens);
  std::vector<DocumentResult> results(docs.size());
  // The last occurrence of an id wins; earlier ones are neither embedded nor stored.
  std::unordered_map<std::string, size_t> last;
  for (size_t i = 0; i < docs.size(); ++i) {
    results[i].id = docs[i].id;
    results[i].status = check_document_id(docs[i].id);
    if (results[i].status.is_ok()) last[docs[i].id] = i;
  }
  std::vector<size_t> todo;
  std::vector<std::string_view> texts;
  for (size_t i = 0; i < docs.size(); ++i) {
    if (!results[i].status.is_ok() || last[docs[i].id] != i) continue;
    todo.push_back(i);
    texts.push_back(docs[i].text);
  }
  // Items to embed: one per document, or one per chunk of a chunking collection. Document
  // todo[k] owns items first_item[k] .. first_item[k+1]-1 (none when it failed to prepare).
  std::vector<PreparedText> ready;
  std::vector<size_t> first_item(todo.size() + 1, 0);
  std::vector<std::vector<Chunk>> chunks(todo.size());
  if (info.spec.chunking) {
    auto planned = prepare_chunks(texts, *info.spec.chunking);
    for (size_t k = 0; k < todo.size(); ++k) {
      first_item[k] = ready.size();
      if (!planned[k].is_ok()) {
        results[todo[k]].status = planned[k].status();
        continue;
      }
      for (auto& [chunk, item] : *planned[k]) {
        chunks[k].push_back(chunk);
        ready.push_back(std::move(item));
      }
    }
  } else {
    auto prepared = prepare_texts(texts, "", max_tokens);
    for (size_t k = 0; k < todo.size(); ++k) {
      first_item[k] = ready.size();
      if (!prepared[k].is_ok()) {
        results[todo[k]].status = prepared[k].status();
        continue;
      }
      ready.push_back(std::move(prepared[k]).value());
    }
  }
  first_item[todo.size()] = ready.size();
  if (ready.empty()) return results;

  std::vector<int32_t> dims(ready.size(), info.spec.dimension);
  QS_ASSIGN_OR_RETURN(Embeddings vectors,
                      embed_prepared(ready, dims, Priority::kBulk, wait_for_room, client_gone));
  std::vector<Document> batch;
  std::vector<DocumentResult*> batch_results;
  for (size_t k = 0; k < todo.size(); ++k) {
    if (first_item[k] == first_item[k + 1]) continue;  // failed to prepare
    DocumentInput& in = docs[todo[k]];
    Document d;
    d.id = in.id;
    d.text = std::move(in.text);
    d.metadata = std::move(in.metadata);
    for (size_t r = first_item[k]; r < first_item[k + 1]; ++r) {
      d.embedding.insert(d.embedding.end(), vectors[r].begin(), vectors[r].end());
      d.tokens += static_cast<int32_t>(ready[r].ids.size());
      d.truncated_tokens += ready[r].truncated_tokens;
    }
    d.chunks = std::move(chunks[k]);
    if (binding.reembed) write_options.if_labels.push_back(in.if_label);
    DocumentResult& result = results[todo[k]];
    result.tokens = d.tokens;
    result.truncated_tokens = d.truncated_tokens;
    result.chunks = static_cast<int32_t>(d.chunks.size());
    batch.push_back(std::move(d));
    batch_results.push_back(&result);
  }
  // With "dedup", the check and the write are one step per collection: a concurrent request
  // cannot store a duplicate between our check and our write.
  // The re-embed job keeps every document and its metadata as they are: no duplicate check.
  std::unique_lock<std::mutex> dedup_lock;
  if (info.spec.dedup && !binding.reembed)
    dedup_lock = std::unique_lock<std::mutex>(dedup_mu_);
  if (!binding.reembed) QS_RETURN_IF_ERROR(check_ingest_duplicates(info, &batch, &batch_results));
  QS_RETURN_IF_ERROR(store_->upsert(collection, batch, write_options));
  if (metrics_) metrics_->add_documents_written(static_cast<int64_t>(batch.size()));
  // Superseded duplicates report the outcome of the occurrence that was stored.
  for (size_t i = 0; i < docs.size(); ++i) {
    if (!results[i].status.is_ok() || docs[i].id.empty()) continue;
    auto it = last.find(docs[i].id);
    if (it != last.end() && it->second != i) results[i] = results[it->second];
  }
  return results;
}

StatusOr<std::vector<SearchHit>> Service::search(const std::string& collection,
                                                 const SearchRequest& request,
                                                 const ClientGone& client_gone) {
  QS_ASSIGN_OR_RETURN(CollectionInfo info, store_->get_collection(collection));
  int given = (request.query ? 1 : 0) + (request.vector ? 1 : 0) + (request.id ? 1 : 0);
  if (given != 1)
    return invalid_argument("give exactly one of \"query\", \"vector\" or \"id\"");
  if (request.mode != SearchMode::kDense && !request.query)
    return unprocessable(std::string("search \"mode\": \"") + search_mode_name(request.mode) +
                         "\" needs a text \"query\" (not \"vector\" or \"id\")");
  if (request.fusion && request.mode != SearchMode::kHybrid)
    return unprocessable("\"fusion\" applies to \"mode\": \"hybrid\" only");
  if (request.mode != SearchMode::kDense && !info.spec.lexical)
    return unprocessable("collection '" + collection +
                         "' has no lexical index (it was created with \"lexical\": false)");
  if (request.params.k < 1 || request.params.k > 1000) return unprocessable("k must be in 1..1000");
  if (request.offset < 0 || request.offset > 1000 - request.params.k)
    return unprocessable("\"offset\" must be in 0..1000-k (k + offset <= 1000), got " +
                         std::to_string(request.offset));
  const int wanted = request.params.k + static_cast<int>(request.offset);
  SearchParams params = request.params;
  params.k = wanted;
  if (request.mode != SearchMode::kDense) params.include_text = true;  // for the highlights
  if (request.rerank) {
    // Checked before any embedding work: the reranker, a text query, k <= top_n <= 1000.
    QS_RETURN_IF_ERROR(require_reranker());
    if (!request.query)
      return unprocessable("\"rerank\" needs a text \"query\" (not \"vector\" or \"id\")");
    const int64_t top_n = request.rerank->top_n.value_or(std::max(50, params.k));
    if (top_n < params.k || top_n > 1000)
      return unprocessable("\"rerank\".\"top_n\" must be in k+offset.." + std::string("1000") +
                           " (k+offset is " + std::to_string(params.k) + "), got " +
                           std::to_string(top_n));
    params.k = static_cast<int>(top_n);
    params.include_text = true;  // the reranker reads the candidates' texts
  }
  // A text query embedded with another model than the stored vectors' would compare vectors of
  // two models: refused (lexical needs no embedding; "vector" and "id" need none either).
  if (request.query && request.mode != SearchMode::kLexical)
    QS_RETURN_IF_ERROR(check_model(info, /*write=*/false));
  std::vector<float> query;
  if (request.mode == SearchMode::kLexical) {
    // No embedding: the lexical index answers alone.
  } else if (request.vector) {
    query = *request.vector;
    if (static_cast<int>(query.size()) != info.spec.dimension)
      return unprocessable("vector has " + std::to_string(query.size()) +
                           " components, the collection's dimension is " +
                           std::to_string(info.spec.dimension));
    double ss = 0;
    for (float x : query) {
      if (!std::isfinite(x)) return unprocessable("vector has a non-finite component");
      ss += static_cast<double>(x) * x;
    }
    if (info.spec.metric == Metric::kCosine) {
      if (ss == 0) return unprocessable("a zero vector has no cosine similarity");
      float inv = static_cast<float>(1.0 / std::sqrt(ss));
      for (float& x : query) x *= inv;
    }
  } else if (request.id) {
    QS_ASSIGN_OR_RETURN(Document doc, store_->get(collection, *request.id, true));
    query = document_vector(doc, info.spec.dimension);
    params.exclude_id = *request.id;
  } else {
    const int max_tokens = std::min(config_.max_tokens_per_text, info.spec.max_tokens);
    std::string_view instruction =
        request.instruction ? std::string_view(*request.instruction)
                            : std::string_view(info.spec.query_instruction);
    auto prepared = prepare_texts({std::string_view(*request.query)}, instruction, max_tokens);
    if (!prepared[0].is_ok()) return prepared[0].status().with_context("query");
    std::vector<PreparedText> items;
    items.push_back(std::move(prepared[0]).value());
    QS_ASSIGN_OR_RETURN(Embeddings v, embed_prepared(items, {info.spec.dimension},
                                                     Priority::kQuery, false, client_gone));
    query = std::move(v[0]);
  }
  StatusOr<std::vector<SearchHit>> hits = std::vector<SearchHit>();
  if (request.mode == SearchMode::kDense) {
    hits = store_->search(collection, query, params);
  } else if (request.mode == SearchMode::kLexical) {
    hits = store_->search_lexical(collection, *request.query, params);
  } else {
    // Each side contributes its own best candidates; the fused list keeps params.k of them.
    SearchParams side = params;
    side.k = hybrid_candidates(params.k);
    QS_ASSIGN_OR_RETURN(std::vector<SearchHit> dense, store_->search(collection, query, side));
    QS_ASSIGN_OR_RETURN(std::vector<SearchHit> lexical,
                        store_->search_lexical(collection, *request.query, side));
    std::vector<SearchHit> fused =
        fuse_hits(std::move(dense), std::move(lexical), request.fusion.value_or(FusionOptions{}),
                  info.spec.metric == Metric::kL2);
    if (fused.size() > static_cast<size_t>(params.k)) fused.resize(static_cast<size_t>(params.k));
    hits = std::move(fused);
  }
  if (hits.is_ok() && metrics_) metrics_->add_search();
  if (!hits.is_ok()) return hits;
  if (request.rerank)
    QS_RETURN_IF_ERROR(rerank_hits(*request.query, *request.rerank, wanted, &*hits, client_gone));
  // offset: the first results are skipped (after reranking, which orders the whole window).
  hits->erase(hits->begin(), hits->begin() + std::min<size_t>(hits->size(), request.offset));
  if (request.mode != SearchMode::kDense) {
    const LexicalQuery lexical_query = make_lexical_query(*request.query);
    for (SearchHit& h : *hits) {
      h.highlights = highlight_terms(h.text, lexical_query.terms,
                                     h.chunk >= 0 ? h.chunk_span.start : -1, h.chunk_span.end);
    }
  }
  if (!request.params.include_text)
    for (SearchHit& h : *hits) h.text.clear();
  return hits;
}

}  // namespace qsearch
