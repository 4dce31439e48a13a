// The model rule and the re-embed job (service.h: check_model, start_reembed).
//
// A collection records the identity of the model its vectors come from. When another model is
// served, its vectors and the served model's would not compare, so writes that embed text and
// text queries are refused (kModelMismatch) until POST /collections/{name}/reembed has run:
// a background job that reads every stored document in id order, pages of kPage, re-embeds its
// stored text with the served model through the ordinary write path (chunks, lexical index and
// metadata index follow; ids, texts and metadata stay as they are), then records the served
// model as the collection's (durably, with its record removed in the same WriteBatch).
//
// Crash safety: the job's record (store key 0x09: target model, cursor = last id done, counts)
// is written in the same WriteBatch as each page's documents, so after a kill -9 the cursor
// names exactly the documents whose new vectors are durable. The job does not restart by
// itself: GET /collections/{name} shows it "interrupted" and a new POST resumes after the
// cursor (documents before it are not embedded again).
//
// Concurrency: writes are allowed while the job runs (they embed with the served model);
// each page is written only for documents whose stored version is still the one read (label
// compare under the write lock), so a concurrent write or delete is never undone. The job is
// bound to the collection instance it started on: deleted or re-created, it fails with the
// reason and writes nothing more.
#include <chrono>

#include <spdlog/spdlog.h>

#include "collection/collections.h"
#include "common/jobs.h"
#include "service/service.h"

namespace qsearch {

namespace {

constexpr int kPage = 64;  // documents per read, embedding call and WriteBatch

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct ReembedRecord {
  std::string model;    // the identity being re-embedded to
  std::string last_id;  // cursor: every document up to it (id order) is done
  bool started = false; // false: no document done yet (last_id means nothing)
  int64_t done = 0;
  int64_t total = 0;
  double started_at = 0;

  std::string encode() const {
    return nlohmann::json{{"model", model}, {"last_id", last_id}, {"started", started},
                          {"done", done},   {"total", total},     {"started_at", started_at}}
        .dump();
  }
  static std::optional<ReembedRecord> decode(const std::string& s) {
    auto j = nlohmann::json::parse(s, nullptr, false);
    if (!j.is_object()) return std::nullopt;
    ReembedRecord r;
    try {
      r.model = j.at("model").get<std::string>();
      r.last_id = j.at("last_id").get<std::string>();
      r.started = j.at("started").get<bool>();
      r.done = j.at("done").get<int64_t>();
      r.total = j.at("total").get<int64_t>();
      r.started_at = j.at("started_at").get<double>();
    } catch (const nlohmann::json::exception&) {
      return std::nullopt;
    }
    return r;
  }
};

}  // namespace

struct Service::ReembedRun {
  std::string collection;
  uint64_t instance = 0;
  ReembedRecord record;
  JobHandle job;
  std::atomic<bool> stop{false};
  std::atomic<bool> running{true};
  std::thread thread;
};

Status Service::check_model(const CollectionInfo& info, bool write) const {
  if (info.spec.model == model_identity_) return Status::ok();
  if (write && reembed_running(info.instance)) return Status::ok();
  return model_mismatch(
      "collection '" + info.spec.name + "' holds vectors of model " + info.spec.model +
      ", the server embeds with model " + model_identity_ +
      "; vectors of two models do not compare, so writes that embed text and text queries are "
      "refused until the collection is re-embedded: POST /collections/" + info.spec.name +
      "/reembed (vector and lexical queries, reads, deletes and metadata updates work meanwhile)");
}

bool Service::reembed_running(uint64_t instance) const {
  std::lock_guard<std::mutex> lock(reembed_mu_);
  auto it = reembeds_.find(instance);
  return it != reembeds_.end() && it->second->running.load();
}

StatusOr<uint64_t> Service::start_reembed(const std::string& collection) {
  if (shut_down_) return unavailable("the server is shutting down");
  QS_ASSIGN_OR_RETURN(CollectionInfo info, store_->get_collection(collection));
  std::lock_guard<std::mutex> lock(reembed_mu_);
  auto it = reembeds_.find(info.instance);
  if (it != reembeds_.end() && it->second->running)
    return conflict("collection '" + collection + "' is being re-embedded already (job " +
                    std::to_string(it->second->job->id()) + ")");
  if (info.spec.model == model_identity_)
    return conflict("collection '" + collection + "' holds vectors of the served model " +
                    model_identity_ + " already; there is nothing to re-embed");
  if (it != reembeds_.end() && it->second->thread.joinable()) it->second->thread.join();  // ended
  auto run = std::make_shared<ReembedRun>();
  run->collection = collection;
  run->instance = info.instance;
  QS_ASSIGN_OR_RETURN(std::optional<std::string> stored, store_->reembed_record(collection));
  std::optional<ReembedRecord> previous = stored ? ReembedRecord::decode(*stored) : std::nullopt;
  if (previous && previous->model == model_identity_) {
    run->record = *previous;  // resume after its cursor
  } else {
    run->record.model = model_identity_;
    run->record.total = info.document_count;
    run->record.started_at = unix_now();
    QS_RETURN_IF_ERROR(
        store_->set_reembed_record(collection, info.instance, run->record.encode()));
  }
  run->job = JobRegistry::global().start("reembed", collection, run->record.total);
  run->job->set_done(run->record.done);
  run->job->set_phase(run->record.started ? "resumed after document '" + run->record.last_id + "'"
                                          : "re-embedding documents");
  const uint64_t id = run->job->id();
  spdlog::info("reembed of '{}' (job {}) {}: {} -> {}, {} documents{}", collection, id,
               run->record.started ? "resumed" : "started", info.spec.model, model_identity_,
               run->record.total,
               run->record.started ? ", " + std::to_string(run->record.done) + " done before" : "");
  reembeds_[info.instance] = run;
  run->thread = std::thread([this, run] { run_reembed(run); });
  return id;
}

void Service::run_reembed(const std::shared_ptr<ReembedRun>& run) {
  ReembedRecord& rec = run->record;
  const ClientGone stopped = [run] { return run->stop.load(); };
  Status status;
  while (status.is_ok()) {
    if (run->stop) {
      status = cancelled("the server is shutting down (POST .../reembed resumes the job)");
      break;
    }
    // The scroll finds the collection by name: one deleted or re-created meanwhile is gone for
    // this job (and the writes below are bound to the instance besides).
    auto info = store_->get_collection(run->collection);
    if (!info.is_ok() || info->instance != run->instance) {
      status = collection_replaced(run->collection);
      break;
    }
    ScrollRequest page_request;
    page_request.limit = kPage;
    page_request.include_embedding = false;
    if (rec.started) page_request.after_id = rec.last_id;
    auto page = store_->scroll(run->collection, page_request);
    if (!page.is_ok()) {
      status = page.status().code() == StatusCode::kNotFound ? collection_replaced(run->collection)
                                                             : page.status();
      break;
    }
    if (page->documents.empty()) break;
    std::vector<DocumentInput> docs;
    docs.reserve(page->documents.size());
    for (Document& d : page->documents) {
      DocumentInput in;
      in.id = d.id;
      in.text = std::move(d.text);
      in.metadata = std::move(d.metadata);
      in.if_label = d.label;
      docs.push_back(std::move(in));
    }
    ReembedRecord next = rec;
    next.started = true;
    next.last_id = page->documents.back().id;
    next.done += static_cast<int64_t>(docs.size());
    WriteBinding binding;
    binding.instance = run->instance;
    binding.reembed = true;
    binding.reembed_record = next.encode();
    auto results = write_documents(run->collection, std::move(docs), /*wait_for_room=*/true,
                                   stopped, binding);
    if (!results.is_ok()) {
      status = results.status();
      break;
    }
    for (const DocumentResult& r : *results) {
      if (!r.status.is_ok()) {
        // Its old vector would stay: the collection cannot be declared re-embedded.
        status = r.status.with_context("document '" + r.id + "'");
        break;
      }
    }
    if (!status.is_ok()) break;
    rec = next;
    run->job->set_done(rec.done);
  }
  if (status.is_ok()) status = store_->set_model(run->collection, run->instance, rec.model);
  if (status.is_ok()) {
    spdlog::info("reembed of '{}' (job {}) done: {} documents, the collection now holds vectors "
                 "of {}",
                 run->collection, run->job->id(), rec.done, rec.model);
  } else {
    spdlog::warn("reembed of '{}' (job {}) stopped after {} documents: {}", run->collection,
                 run->job->id(), rec.done, status.message());
  }
  run->job.finish(status);
  run->running = false;
}

std::optional<ReembedProgress> Service::reembed_progress(const CollectionInfo& info) {
  std::shared_ptr<ReembedRun> run;
  {
    std::lock_guard<std::mutex> lock(reembed_mu_);
    auto it = reembeds_.find(info.instance);
    if (it != reembeds_.end()) run = it->second;
  }
  if (run) {
    JobSnapshot snap = run->job->snapshot();
    ReembedProgress p;
    p.state = snap.state;
    p.job = snap.id;
    p.done = snap.done;
    p.total = run->record.total;
    p.started_at = run->record.started_at;
    p.error = snap.error;
    // A failed run that left a cursor can be resumed: say so the same way a restart does.
    return p;
  }
  auto stored = store_->reembed_record(info.spec.name);
  if (!stored.is_ok() || !*stored) return std::nullopt;
  auto rec = ReembedRecord::decode(**stored);
  if (!rec) return std::nullopt;
  ReembedProgress p;
  p.state = "interrupted";
  p.done = rec->done;
  p.total = rec->total;
  p.started_at = rec->started_at;
  return p;
}

void Service::stop_reembeds() {
  std::vector<std::shared_ptr<ReembedRun>> runs;
  {
    std::lock_guard<std::mutex> lock(reembed_mu_);
    for (auto& [instance, run] : reembeds_) runs.push_back(run);
  }
  for (auto& run : runs) run->stop = true;
  for (auto& run : runs)
    if (run->thread.joinable()) run->thread.join();
}

}  // namespace qsearch
