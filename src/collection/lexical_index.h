// The lexical (BM25) index of a collection: an SQLite FTS5 table whose tokenizer is
// text_analyzer.h (ICU word breaks, NFKC_Casefold), one row per index label (a document, or a
// chunk of a chunked document) holding that label's text. Derived data, like the vector index:
// RocksDB is the truth, and the collection store (collection_lexical.cc) writes the index after
// each acknowledged write, catches it up from the change log on open and rebuilds it from the
// stored documents when it is missing, damaged, ahead of the store or disagrees with it.
//
// File: one SQLite database per collection (WAL journal, synchronous=NORMAL: a committed write
// survives a killed process; after a power cut it may be behind and is caught up or rebuilt).
// Tables: fts (FTS5, rowid = label, column body) and meta (format, collection id, sequence,
// rows). Each apply() is one transaction carrying its rows and the change-log sequence it
// reflects, so the file is always at a sequence boundary.
//
// Concurrency: every method may be called from many threads; calls are serialised by an internal
// mutex (one SQLite connection).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

struct sqlite3;
struct sqlite3_stmt;

namespace qsearch {

// A search query in the index's terms. Text in double quotes is a phrase (its words in order,
// adjacent), and so are words joined only by code punctuation (- _ . / : @ # + & \, as in
// "SKU-4471-XZ"); every other word is a term of its own; a document matches any phrase or term
// and is ranked by BM25. `terms` are the analysed words (for highlights).
struct LexicalQuery {
  std::string match;               // FTS5 MATCH expression; empty when the text has no words
  std::vector<std::string> terms;  // distinct analysed words, phrases included
};
LexicalQuery make_lexical_query(std::string_view text);

class LexicalIndex {
 public:
  // Opens an existing index; kNotFound when there is no file, kCorruption when the file is
  // damaged, of another format or of another collection.
  static StatusOr<std::unique_ptr<LexicalIndex>> open(const std::string& path,
                                                      uint64_t collection_id);
  // A new empty index at path (an existing file is replaced), at sequence 0.
  static StatusOr<std::unique_ptr<LexicalIndex>> create(const std::string& path,
                                                        uint64_t collection_id);
  // Removes the database file and its journal files.
  static void remove_files(const std::string& path);
  ~LexicalIndex();
  LexicalIndex(const LexicalIndex&) = delete;
  LexicalIndex& operator=(const LexicalIndex&) = delete;

  struct Entry {
    int64_t label = 0;
    std::string_view text;
  };
  // One transaction: drops the removed labels (absent ones are skipped), adds the entries (a label
  // already present is left as it is: labels are never reused) and records seq. On failure nothing
  // changes.
  Status apply(const std::vector<int64_t>& removed, const std::vector<Entry>& added, uint64_t seq);
  // Bulk loading (rebuild): adds entries without recording a sequence; faster settings (no
  // journal) are used by create(..., bulk) files only.
  Status add_bulk(const std::vector<Entry>& added);
  Status set_sequence(uint64_t seq);

  struct Match {
    int64_t label = 0;
    double score = 0;  // BM25 (higher is better)
  };
  // The best `limit` labels for query.match, best first.
  Status search(const LexicalQuery& query, int64_t limit, std::vector<Match>* out);
  StatusOr<bool> contains(int64_t label);

  uint64_t sequence() const;
  int64_t rows() const;
  const std::string& path() const { return path_; }

  // For rebuilds: a file written without a journal (fast), to be renamed over the live path
  // once complete (finish_bulk() closes it cleanly first).
  static StatusOr<std::unique_ptr<LexicalIndex>> create_bulk(const std::string& path,
                                                             uint64_t collection_id);
  Status finish_bulk();

 private:
  LexicalIndex(std::string path, uint64_t collection_id);
  Status init(bool create, bool bulk);
  Status exec(const char* sql);
  Status prepare(const char* sql, sqlite3_stmt** stmt);
  Status error(const char* what) const;
  Status write_meta(const char* key, int64_t value);
  StatusOr<bool> contains_locked(int64_t label);
  Status add_locked(const std::vector<Entry>& added, int64_t* added_rows);
  void close();

  std::string path_;
  uint64_t collection_id_;
  mutable std::mutex mu_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
  sqlite3_stmt* delete_ = nullptr;
  sqlite3_stmt* exists_ = nullptr;
  sqlite3_stmt* search_ = nullptr;
  sqlite3_stmt* meta_ = nullptr;
  uint64_t sequence_ = 0;
  int64_t rows_ = 0;
};

}  // namespace qsearch
