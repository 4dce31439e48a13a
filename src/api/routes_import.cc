// POST /collections/{name}/import: NDJSON, one document {"id","text","metadata"} per line,
// streamed. The body is read in the pieces the socket delivers; complete lines are parsed and
// collected into chunks that are embedded and written (one store upsert per chunk) before more
// of the body is read, so memory stays bounded by one chunk whatever the file size. When the
// embedding queue is full the import waits for room instead of failing. Each chunk is durable
// once written; the answer summarises counts and lists per-line errors (the first 100).
// An import is bound to the collection instance it started on: when the collection is deleted
// (and maybe re-created under the same name) meanwhile, it stops with 409 "conflict" and writes
// nothing more, into neither.
#include <chrono>

#include <spdlog/spdlog.h>

#include "api/errors.h"
#include "api/routes.h"

namespace qsearch::api {
namespace {

constexpr size_t kChunkDocuments = 256;
constexpr size_t kChunkBytes = 4 << 20;
constexpr size_t kMaxListedErrors = 100;

using Clock = std::chrono::steady_clock;

class Importer {
 public:
  Importer(RequestContext& ctx, std::string collection, uint64_t instance, Job* job)
      : ctx_(ctx),
        collection_(std::move(collection)),
        instance_(instance),
        job_(job),
        last_log_(Clock::now()) {}

  // Consumes one piece of the body; false stops the transfer (a fatal error).
  bool consume(const char* data, size_t n) {
    bytes_ += static_cast<int64_t>(n);
    job_->set_bytes(bytes_);
    const size_t max_line = static_cast<size_t>(ctx_.config.max_request_bytes);
    for (size_t i = 0; i < n; ++i) {
      const char* nl = static_cast<const char*>(memchr(data + i, '\n', n - i));
      size_t end = nl ? static_cast<size_t>(nl - data) : n;
      if (!skipping_) {
        if (line_.size() + (end - i) > max_line) {
          skipping_ = true;
          line_.clear();
        } else {
          line_.append(data + i, end - i);
        }
      }
      if (!nl) break;
      ++line_no_;
      if (skipping_) {
        add_error(line_no_, "", payload_too_large("line is longer than " +
                                                  std::to_string(max_line) + " bytes"));
        skipping_ = false;
      } else {
        take_line();
      }
      line_.clear();
      i = end;
      if (!fatal_.is_ok()) return false;
    }
    return fatal_.is_ok();
  }

  // After the last piece: the final line without newline, then the last chunk.
  void finish() {
    if (!fatal_.is_ok()) return;
    if (skipping_) {
      add_error(++line_no_, "", payload_too_large("line is too long"));
    } else if (!line_.empty()) {
      ++line_no_;
      take_line();
    }
    flush();
  }

  const Status& fatal() const { return fatal_; }
  int64_t upserted() const { return upserted_; }
  int64_t failed() const { return failed_; }
  int64_t lines() const { return line_no_; }
  int64_t tokens() const { return tokens_; }

  json summary(double seconds) const {
    return {{"lines", line_no_},
            {"upserted", upserted_},
            {"duplicates", duplicates_},
            {"failed", failed_},
            {"tokens", tokens_},
            {"truncated", truncated_},
            {"tokens_cut", tokens_cut_},
            {"chunks", chunks_},
            {"errors", errors_},
            {"errors_truncated", failed_ > static_cast<int64_t>(errors_.size())},
            {"took_ms", seconds * 1000}};
  }

 private:
  void take_line() {
    std::string_view s(line_);
    while (!s.empty() && (s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    if (s.empty()) return;  // blank lines are allowed
    auto parsed = parse_json(s);
    if (!parsed.is_ok()) {
      add_error(line_no_, "", parsed.status());
      return;
    }
    DocumentInput doc;
    Status st = parse_document(*parsed, &doc);
    if (!st.is_ok()) {
      std::string id;
      if (parsed->is_object() && parsed->contains("id") && (*parsed)["id"].is_string())
        id = (*parsed)["id"].get<std::string>();
      add_error(line_no_, id, st);
      return;
    }
    pending_bytes_ += doc.text.size();
    pending_.push_back(std::move(doc));
    pending_lines_.push_back(line_no_);
    if (pending_.size() >= kChunkDocuments || pending_bytes_ >= kChunkBytes) flush();
  }

  void flush() {
    if (pending_.empty()) return;
    auto results = ctx_.service->upsert_documents(collection_, std::move(pending_),
                                                  /*wait_for_room=*/true, ctx_.client_gone(),
                                                  instance_);
    if (!results.is_ok()) {
      fatal_ = results.status().with_context("at line " + std::to_string(pending_lines_.front()));
    } else {
      for (size_t k = 0; k < results->size(); ++k) {
        const DocumentResult& r = (*results)[k];
        if (r.status.is_ok()) {
          if (!r.duplicate_of.empty()) ++duplicates_;
          if (!r.skipped) ++upserted_;
          tokens_ += r.tokens;
          if (r.truncated_tokens > 0) ++truncated_;
          tokens_cut_ += r.truncated_tokens;
          chunks_ += r.chunks;
        } else {
          add_error(pending_lines_[k], r.id, r.status);
        }
      }
    }
    pending_.clear();
    pending_lines_.clear();
    pending_bytes_ = 0;
    job_->set_done(upserted_);
    log_progress();
  }

  // An info line every progress_interval seconds while the import runs.
  void log_progress() {
    const int interval = ctx_.config.progress_interval;
    const auto now = Clock::now();
    if (interval <= 0 || now - last_log_ < std::chrono::seconds(interval)) return;
    const double since = std::chrono::duration<double>(now - last_log_).count();
    const double rate = static_cast<double>(upserted_ - upserted_at_log_) / since;
    last_log_ = now;
    upserted_at_log_ = upserted_;
    spdlog::info("import into '{}' (job {}): {} documents upserted, {} failed, {} lines, {} bytes "
                 "read; {:.0f} documents/s",
                 collection_, job_->id(), upserted_, failed_, line_no_, bytes_, rate);
  }

  void add_error(int64_t line, const std::string& id, const Status& st) {
    ++failed_;
    job_->add_errors(1);
    if (errors_.size() >= kMaxListedErrors) return;
    HttpError he = http_error_for(st.code());
    json e = {{"line", line}, {"error", {{"code", he.code}, {"status", he.status}, {"message", st.message()}}}};
    if (!id.empty()) e["id"] = id;
    errors_.push_back(std::move(e));
  }

  RequestContext& ctx_;
  std::string collection_;
  uint64_t instance_;  // the collection instance the import started on (deleted: it stops)
  std::string line_;
  bool skipping_ = false;
  int64_t line_no_ = 0;
  std::vector<DocumentInput> pending_;
  std::vector<int64_t> pending_lines_;
  size_t pending_bytes_ = 0;
  int64_t upserted_ = 0, duplicates_ = 0, failed_ = 0, tokens_ = 0, truncated_ = 0, tokens_cut_ = 0;
  int64_t chunks_ = 0;  // chunking collections: chunks stored
  json errors_ = json::array();
  Status fatal_;
  Job* job_;
  int64_t bytes_ = 0;
  Clock::time_point last_log_;
  int64_t upserted_at_log_ = 0;
};

void import_documents(RequestContext& ctx) {
  auto t0 = std::chrono::steady_clock::now();
  std::string collection = checked_path_id(ctx.param(1), "collection name");
  // 404 before reading; the import is bound to this instance of the collection.
  const uint64_t instance = value_or_throw(ctx.service->store().get_collection(collection)).instance;
  JobHandle job = JobRegistry::global().start("import", collection);
  job->set_phase("reading and embedding documents");
  bool has_body = ctx.req.has_body;
  int64_t announced = -1;
  if (!ctx.req.chunked && ctx.req.has_header("Content-Length")) {
    announced = static_cast<int64_t>(ctx.req.content_length);
    job->set_total_bytes(announced);
  }
  spdlog::info("import into '{}' (job {}) started{}", collection, job->id(),
               announced >= 0 ? ", " + std::to_string(announced) + " bytes announced"
                              : std::string(", body chunked"));
  Importer importer(ctx, collection, instance, job.get());
  bool read_ok = true;
  ctx.body_read = true;  // even when it stops early: the rest is not drained (it may be huge)
  if (has_body && ctx.reader)
    read_ok = (*ctx.reader)([&](const char* data, size_t n) { return importer.consume(data, n); });
  if (importer.fatal().is_ok() && !read_ok) {
    Status st = invalid_argument("the request body could not be read to the end");
    job.finish(st);
    spdlog::warn("import into '{}' (job {}) stopped after {} documents: {}", collection, job->id(),
                 importer.upserted(), st.message());
    throw StatusException(st);
  }
  importer.finish();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  job.finish(importer.fatal());
  const double rate = seconds > 0 ? static_cast<double>(importer.upserted()) / seconds : 0;
  if (importer.fatal().is_ok())
    spdlog::info("import into '{}' (job {}) finished: {} documents upserted, {} failed, {} lines, "
                 "{} tokens in {:.1f} s ({:.0f} documents/s)",
                 collection, job->id(), importer.upserted(), importer.failed(), importer.lines(),
                 importer.tokens(), seconds, rate);
  else
    spdlog::warn("import into '{}' (job {}) stopped after {} documents ({} failed, {} lines) in "
                 "{:.1f} s: {}",
                 collection, job->id(), importer.upserted(), importer.failed(), importer.lines(),
                 seconds, importer.fatal().message());
  if (!importer.fatal().is_ok()) {
    // Everything counted in the summary is written; the rest of the body was not processed.
    HttpError he = http_error_for(importer.fatal().code());
    json j = {{"error", {{"code", he.code}, {"message", importer.fatal().message()}}},
              {"import", importer.summary(seconds)}};
    ctx.reply(he.status, j);
    return;
  }
  ctx.reply(200, importer.summary(seconds));
}

}  // namespace

std::vector<Route> import_routes() {
  return {{"POST", "/collections/{name}/import", "/collections/([^/]+)/import", Access::kAdmin,
           Body::kStreamed, true, import_documents}};
}

}  // namespace qsearch::api
