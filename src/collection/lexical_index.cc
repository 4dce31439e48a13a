// SQLite FTS5 with the ICU analyzer as its tokenizer (see lexical_index.h).
#include "collection/lexical_index.h"

#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <unordered_set>

#include "collection/text_analyzer.h"

namespace qsearch {

namespace {

constexpr int64_t kFormat = 1;
constexpr const char* kTokenizerName = "qsearch_icu";
// Words of a query beyond this are ignored (a query is a few words; this bounds the expression).
constexpr size_t kMaxQueryWords = 256;

// FTS5 tokenizer callbacks: every instance is the same stateless analyzer.
int tokenizer_create(void*, const char**, int, Fts5Tokenizer** out) {
  static int instance = 0;
  *out = reinterpret_cast<Fts5Tokenizer*>(&instance);
  return SQLITE_OK;
}
void tokenizer_delete(Fts5Tokenizer*) {}
int tokenizer_tokenize(Fts5Tokenizer*, void* ctx, int /*flags*/, const char* text, int n,
                       int (*token)(void*, int, const char*, int, int, int)) {
  int rc = SQLITE_OK;
  analyze_text(std::string_view(text, n > 0 ? static_cast<size_t>(n) : 0),
               [&](std::string_view term, size_t begin, size_t end) {
                 rc = token(ctx, 0, term.data(), static_cast<int>(term.size()),
                            static_cast<int>(begin), static_cast<int>(end));
                 return rc == SQLITE_OK;
               });
  return rc;
}

Status register_tokenizer(sqlite3* db) {
  fts5_api* api = nullptr;
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &stmt, nullptr) != SQLITE_OK)
    return internal_error(std::string("lexical index: SQLite without FTS5: ") + sqlite3_errmsg(db));
  sqlite3_bind_pointer(stmt, 1, &api, "fts5_api_ptr", nullptr);
  sqlite3_step(stmt);
  sqlite3_finalize(stmt);
  if (!api) return internal_error("lexical index: SQLite has no FTS5 API");
  static fts5_tokenizer tokenizer = {tokenizer_create, tokenizer_delete, tokenizer_tokenize};
  if (api->xCreateTokenizer(api, kTokenizerName, nullptr, &tokenizer, nullptr) != SQLITE_OK)
    return internal_error("lexical index: registering the tokenizer failed");
  return Status::ok();
}

// An FTS5 string literal: the text in double quotes, inner quotes doubled.
std::string fts5_string(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"') out += '"';
    out += ch;
  }
  out += '"';
  return out;
}

// Resets a statement on every exit path.
struct StmtReset {
  sqlite3_stmt* s;
  ~StmtReset() {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
};

// True for a gap between two words made only of the punctuation that joins parts of codes, ids,
// versions, paths and addresses.
bool is_code_joiner(std::string_view gap) {
  if (gap.empty()) return false;
  return std::all_of(gap.begin(), gap.end(), [](char ch) {
    return ch == '-' || ch == '_' || ch == '.' || ch == '/' || ch == ':' || ch == '@' ||
           ch == '#' || ch == '+' || ch == '&' || ch == '\\';
  });
}

}  // namespace

LexicalQuery make_lexical_query(std::string_view text) {
  LexicalQuery q;
  std::unordered_set<std::string> seen;
  std::vector<std::string> parts;
  size_t words = 0;
  bool in_phrase = false;
  size_t pos = 0;
  while (pos <= text.size() && words < kMaxQueryWords) {
    size_t quote = text.find('"', pos);
    if (quote == std::string_view::npos) quote = text.size();
    std::vector<TextToken> tokens = analyze_text(text.substr(pos, quote - pos));
    if (tokens.size() > kMaxQueryWords - words) tokens.resize(kMaxQueryWords - words);
    words += tokens.size();
    for (const TextToken& t : tokens)
      if (seen.insert(t.term).second) q.terms.push_back(t.term);
    if (in_phrase && tokens.size() > 1) {
      std::string phrase;
      for (const TextToken& t : tokens) phrase += (phrase.empty() ? "" : " ") + t.term;
      parts.push_back(fts5_string(phrase));
    } else {
      // Words joined only by code punctuation ("SKU-4471-XZ", "v1.2.3", "a/b") are one unit,
      // searched as a phrase: precise, and far cheaper than scoring every document holding "sku".
      const std::string_view segment = text.substr(pos, quote - pos);
      for (size_t i = 0; i < tokens.size();) {
        size_t j = i + 1;
        while (
            j < tokens.size() && tokens[j].begin > tokens[j - 1].end &&
            is_code_joiner(segment.substr(tokens[j - 1].end, tokens[j].begin - tokens[j - 1].end)))
          ++j;
        std::string unit;
        for (size_t t = i; t < j; ++t) unit += (unit.empty() ? "" : " ") + tokens[t].term;
        parts.push_back(fts5_string(unit));
        i = j;
      }
    }
    in_phrase = !in_phrase;
    pos = quote + 1;
  }
  for (const std::string& p : parts) q.match += (q.match.empty() ? "" : " OR ") + p;
  return q;
}

LexicalIndex::LexicalIndex(std::string path, uint64_t collection_id)
    : path_(std::move(path)), collection_id_(collection_id) {}

LexicalIndex::~LexicalIndex() { close(); }

void LexicalIndex::close() {
  for (sqlite3_stmt** s : {&insert_, &delete_, &exists_, &search_, &meta_}) {
    if (*s) sqlite3_finalize(*s);
    *s = nullptr;
  }
  if (db_) sqlite3_close_v2(db_);
  db_ = nullptr;
}

void LexicalIndex::remove_files(const std::string& path) {
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm", "-journal"})
    std::filesystem::remove(path + suffix, ec);
}

Status LexicalIndex::error(const char* what) const {
  const int code = db_ ? sqlite3_extended_errcode(db_) : SQLITE_ERROR;
  const std::string msg = std::string("lexical index ") + path_ + ": " + what + ": " +
                          (db_ ? sqlite3_errmsg(db_) : "no database");
  const int primary = code & 0xff;
  if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB || primary == SQLITE_FORMAT)
    return corruption(msg);
  if (primary == SQLITE_IOERR || primary == SQLITE_FULL || primary == SQLITE_CANTOPEN)
    return io_error(msg);
  return internal_error(msg);
}

Status LexicalIndex::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    sqlite3_free(err);
    return error(sql);
  }
  return Status::ok();
}

Status LexicalIndex::prepare(const char* sql, sqlite3_stmt** stmt) {
  if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, stmt, nullptr) != SQLITE_OK)
    return error(sql);
  return Status::ok();
}

Status LexicalIndex::init(bool create, bool bulk) {
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
  if (sqlite3_open_v2(path_.c_str(), &db_, flags, nullptr) != SQLITE_OK) return error("open");
  sqlite3_extended_result_codes(db_, 1);
  QS_RETURN_IF_ERROR(register_tokenizer(db_));
  if (bulk) {
    QS_RETURN_IF_ERROR(exec("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF"));
  } else {
    QS_RETURN_IF_ERROR(exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"));
  }
  QS_RETURN_IF_ERROR(exec("PRAGMA cache_size=-65536"));  // 64 MiB of pages
  if (create) {
    QS_RETURN_IF_ERROR(
        exec("BEGIN;"
             "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
             "CREATE VIRTUAL TABLE fts USING fts5(body, tokenize='qsearch_icu');"
             "COMMIT;"));
  }
  QS_RETURN_IF_ERROR(prepare("INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)", &meta_));
  if (create) {
    QS_RETURN_IF_ERROR(write_meta("format", kFormat));
    QS_RETURN_IF_ERROR(write_meta("collection", static_cast<int64_t>(collection_id_)));
    QS_RETURN_IF_ERROR(write_meta("sequence", 0));
    QS_RETURN_IF_ERROR(write_meta("rows", 0));
  } else {
    sqlite3_stmt* read = nullptr;
    QS_RETURN_IF_ERROR(prepare("SELECT key, value FROM meta", &read));
    int64_t format = -1, cid = -1, seq = -1, rows = -1;
    int rc;
    while ((rc = sqlite3_step(read)) == SQLITE_ROW) {
      const std::string key = reinterpret_cast<const char*>(sqlite3_column_text(read, 0));
      const int64_t v = sqlite3_column_int64(read, 1);
      if (key == "format") format = v;
      if (key == "collection") cid = v;
      if (key == "sequence") seq = v;
      if (key == "rows") rows = v;
    }
    sqlite3_finalize(read);
    if (rc != SQLITE_DONE) return error("reading meta");
    if (format != kFormat)
      return corruption(path_ + ": lexical index format " + std::to_string(format));
    if (cid != static_cast<int64_t>(collection_id_))
      return corruption(path_ + " belongs to collection " + std::to_string(cid));
    if (seq < 0 || rows < 0) return corruption(path_ + ": lexical index meta is incomplete");
    sequence_ = static_cast<uint64_t>(seq);
    rows_ = rows;
  }
  QS_RETURN_IF_ERROR(prepare("INSERT INTO fts(rowid, body) VALUES(?1, ?2)", &insert_));
  QS_RETURN_IF_ERROR(prepare("DELETE FROM fts WHERE rowid = ?1", &delete_));
  QS_RETURN_IF_ERROR(prepare("SELECT 1 FROM fts WHERE rowid = ?1", &exists_));
  QS_RETURN_IF_ERROR(prepare(
      "SELECT rowid, bm25(fts) FROM fts WHERE fts MATCH ?1 ORDER BY rank LIMIT ?2", &search_));
  return Status::ok();
}

StatusOr<std::unique_ptr<LexicalIndex>> LexicalIndex::open(const std::string& path,
                                                           uint64_t collection_id) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return not_found("no lexical index file " + path);
  std::unique_ptr<LexicalIndex> index(new LexicalIndex(path, collection_id));
  QS_RETURN_IF_ERROR(index->init(false, false));
  return index;
}

StatusOr<std::unique_ptr<LexicalIndex>> LexicalIndex::create(const std::string& path,
                                                             uint64_t collection_id) {
  remove_files(path);
  std::unique_ptr<LexicalIndex> index(new LexicalIndex(path, collection_id));
  QS_RETURN_IF_ERROR(index->init(true, false));
  return index;
}

StatusOr<std::unique_ptr<LexicalIndex>> LexicalIndex::create_bulk(const std::string& path,
                                                                  uint64_t collection_id) {
  remove_files(path);
  std::unique_ptr<LexicalIndex> index(new LexicalIndex(path, collection_id));
  QS_RETURN_IF_ERROR(index->init(true, true));
  return index;
}

Status LexicalIndex::finish_bulk() {
  std::lock_guard<std::mutex> lock(mu_);
  if (sqlite3_db_cacheflush(db_) != SQLITE_OK) return error("flush");
  close();
  return Status::ok();
}

Status LexicalIndex::write_meta(const char* key, int64_t value) {
  StmtReset reset{meta_};
  sqlite3_bind_text(meta_, 1, key, -1, SQLITE_STATIC);
  sqlite3_bind_int64(meta_, 2, value);
  if (sqlite3_step(meta_) != SQLITE_DONE) return error("writing meta");
  return Status::ok();
}

StatusOr<bool> LexicalIndex::contains_locked(int64_t label) {
  StmtReset reset{exists_};
  sqlite3_bind_int64(exists_, 1, label);
  const int rc = sqlite3_step(exists_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return error("looking up a label");
}

StatusOr<bool> LexicalIndex::contains(int64_t label) {
  std::lock_guard<std::mutex> lock(mu_);
  return contains_locked(label);
}

Status LexicalIndex::add_locked(const std::vector<Entry>& added, int64_t* added_rows) {
  for (const Entry& e : added) {
    QS_ASSIGN_OR_RETURN(bool present, contains_locked(e.label));
    if (present) continue;
    StmtReset reset{insert_};
    sqlite3_bind_int64(insert_, 1, e.label);
    sqlite3_bind_text(insert_, 2, e.text.data(), static_cast<int>(e.text.size()), SQLITE_STATIC);
    if (sqlite3_step(insert_) != SQLITE_DONE) return error("inserting");
    ++*added_rows;
  }
  return Status::ok();
}

Status LexicalIndex::apply(const std::vector<int64_t>& removed, const std::vector<Entry>& added,
                           uint64_t seq) {
  std::lock_guard<std::mutex> lock(mu_);
  QS_RETURN_IF_ERROR(exec("BEGIN"));
  int64_t rows = rows_;
  auto body = [&]() -> Status {
    for (int64_t label : removed) {
      QS_ASSIGN_OR_RETURN(bool present, contains_locked(label));
      if (!present) continue;
      StmtReset reset{delete_};
      sqlite3_bind_int64(delete_, 1, label);
      if (sqlite3_step(delete_) != SQLITE_DONE) return error("deleting");
      --rows;
    }
    int64_t added_rows = 0;
    QS_RETURN_IF_ERROR(add_locked(added, &added_rows));
    rows += added_rows;
    QS_RETURN_IF_ERROR(write_meta("rows", rows));
    return write_meta("sequence", static_cast<int64_t>(seq));
  };
  Status s = body();
  if (s.is_ok()) s = exec("COMMIT");
  if (!s.is_ok()) {
    (void)exec("ROLLBACK");
    return s;
  }
  rows_ = rows;
  sequence_ = seq;
  return Status::ok();
}

Status LexicalIndex::add_bulk(const std::vector<Entry>& added) {
  std::lock_guard<std::mutex> lock(mu_);
  QS_RETURN_IF_ERROR(exec("BEGIN"));
  int64_t added_rows = 0;
  Status s = add_locked(added, &added_rows);
  if (s.is_ok()) s = write_meta("rows", rows_ + added_rows);
  if (s.is_ok()) s = exec("COMMIT");
  if (!s.is_ok()) {
    (void)exec("ROLLBACK");
    return s;
  }
  rows_ += added_rows;
  return Status::ok();
}

Status LexicalIndex::set_sequence(uint64_t seq) {
  std::lock_guard<std::mutex> lock(mu_);
  QS_RETURN_IF_ERROR(write_meta("sequence", static_cast<int64_t>(seq)));
  sequence_ = seq;
  return Status::ok();
}

Status LexicalIndex::search(const LexicalQuery& query, int64_t limit, std::vector<Match>* out) {
  out->clear();
  if (query.match.empty() || limit <= 0) return Status::ok();
  std::lock_guard<std::mutex> lock(mu_);
  StmtReset reset{search_};
  sqlite3_bind_text(search_, 1, query.match.data(), static_cast<int>(query.match.size()),
                    SQLITE_STATIC);
  sqlite3_bind_int64(search_, 2, limit);
  int rc;
  while ((rc = sqlite3_step(search_)) == SQLITE_ROW) {
    // bm25() is negated BM25 (smaller is better); scores here are higher-is-better.
    out->push_back({sqlite3_column_int64(search_, 0), -sqlite3_column_double(search_, 1)});
  }
  if (rc != SQLITE_DONE) return error("searching");
  return Status::ok();
}

uint64_t LexicalIndex::sequence() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sequence_;
}

int64_t LexicalIndex::rows() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rows_;
}

}  // namespace qsearch
