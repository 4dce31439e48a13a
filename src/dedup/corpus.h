// The input of `qsearch dedup`: a JSONL file, one JSON object per line with a text field and
// an optional id field. A first pass keeps only what the job needs for every document (id,
// text length, where the line is); texts are read again in chunks when they are embedded, so
// a corpus of millions of long documents is never held in memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace qsearch {

struct JsonlCorpus {
  std::string path;
  std::string text_field;
  // Each document's id as JSON text: a string id "\"doc-7\"", an integer id "17", or the
  // 1-based line number when the line has no id field.
  std::vector<std::string> ids;
  std::vector<int64_t> text_chars;   // length of the text in Unicode code points
  std::vector<int64_t> line_offset;  // byte offset of the document's line in the file
  std::vector<int64_t> line_bytes;   // bytes of the line, newline excluded

  int64_t size() const { return static_cast<int64_t>(ids.size()); }
  // The id as plain text (a string id unquoted, a number as written): the keep-list form.
  std::string id_text(int64_t doc) const;
};

// Scans the file. Blank lines are skipped (they still count for line numbers). Errors name
// the line: not JSON, not an object, text field missing or not a string, id neither a
// string nor an integer, a string id with a line break, or the same id twice.
StatusOr<JsonlCorpus> scan_jsonl_corpus(const std::string& path, const std::string& text_field,
                                        const std::string& id_field);

// The texts of documents [begin, end), read with one positioned read of their lines.
// Thread-safe (opens its own descriptor).
Status read_corpus_texts(const JsonlCorpus& corpus, int64_t begin, int64_t end,
                         std::vector<std::string>* texts);

}  // namespace qsearch
