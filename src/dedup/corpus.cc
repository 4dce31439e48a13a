#include "dedup/corpus.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <unordered_map>

namespace qsearch {
namespace {

int64_t count_code_points(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string where(const std::string& path, int64_t line) {
  return path + ":" + std::to_string(line) + ": ";
}

}  // namespace

std::string JsonlCorpus::id_text(int64_t doc) const {
  const std::string& id = ids[doc];
  if (!id.empty() && id.front() == '"') return nlohmann::json::parse(id).get<std::string>();
  return id;
}

StatusOr<JsonlCorpus> scan_jsonl_corpus(const std::string& path, const std::string& text_field,
                                        const std::string& id_field) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) {
    if (errno == ENOENT) return not_found("input file " + path + " does not exist");
    return io_error("cannot open " + path + ": " + std::strerror(errno));
  }
  JsonlCorpus corpus;
  corpus.path = path;
  corpus.text_field = text_field;
  std::unordered_map<std::string, int64_t> line_of_id;
  char* buf = nullptr;
  size_t cap = 0;
  int64_t offset = 0;
  int64_t line_no = 0;
  Status status;
  for (;;) {
    errno = 0;
    const ssize_t len = getline(&buf, &cap, file.get());
    if (len < 0) {
      if (errno != 0) status = io_error("reading " + path + ": " + std::strerror(errno));
      break;
    }
    ++line_no;
    const int64_t line_offset = offset;
    offset += len;
    size_t bytes = static_cast<size_t>(len);
    while (bytes > 0 && (buf[bytes - 1] == '\n' || buf[bytes - 1] == '\r')) --bytes;
    bool blank = true;
    for (size_t k = 0; k < bytes && blank; ++k) blank = buf[k] == ' ' || buf[k] == '\t';
    if (blank) continue;

    nlohmann::json doc = nlohmann::json::parse(buf, buf + bytes, nullptr, false);
    if (doc.is_discarded()) {
      status = invalid_argument(where(path, line_no) + "not valid JSON");
      break;
    }
    if (!doc.is_object()) {
      status = invalid_argument(where(path, line_no) + "not a JSON object");
      break;
    }
    auto text = doc.find(text_field);
    if (text == doc.end() || !text->is_string()) {
      status = invalid_argument(where(path, line_no) + "no string field '" + text_field +
                                "' (choose the field with --text-field)");
      break;
    }
    std::string id;
    auto id_value = doc.find(id_field);
    if (id_value == doc.end() || id_value->is_null()) {
      id = std::to_string(line_no);
    } else if (id_value->is_string()) {
      const std::string& s = id_value->get_ref<const std::string&>();
      if (s.find_first_of("\r\n") != std::string::npos) {
        status = invalid_argument(where(path, line_no) + "id contains a line break");
        break;
      }
      id = id_value->dump();
    } else if (id_value->is_number_integer()) {
      id = id_value->dump();
    } else {
      status = invalid_argument(where(path, line_no) + "field '" + id_field +
                                "' is neither a string nor an integer");
      break;
    }
    auto [it, inserted] = line_of_id.emplace(id, line_no);
    if (!inserted) {
      status = invalid_argument(where(path, line_no) + "id " + id + " already used on line " +
                                std::to_string(it->second) +
                                " (ids must be unique; without --id-field the line number "
                                "is the id)");
      break;
    }
    corpus.ids.push_back(std::move(id));
    corpus.text_chars.push_back(count_code_points(text->get_ref<const std::string&>()));
    corpus.line_offset.push_back(line_offset);
    corpus.line_bytes.push_back(static_cast<int64_t>(bytes));
  }
  std::free(buf);
  if (!status.is_ok()) return status;
  return corpus;
}

Status read_corpus_texts(const JsonlCorpus& corpus, int64_t begin, int64_t end,
                         std::vector<std::string>* texts) {
  texts->clear();
  if (begin >= end) return Status::ok();
  const int fd = ::open(corpus.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error("cannot open " + corpus.path + ": " + std::strerror(errno));
  const int64_t first = corpus.line_offset[begin];
  const int64_t last = corpus.line_offset[end - 1] + corpus.line_bytes[end - 1];
  std::string data(static_cast<size_t>(last - first), '\0');
  int64_t got = 0;
  while (got < last - first) {
    const ssize_t r =
        ::pread(fd, data.data() + got, static_cast<size_t>(last - first - got), first + got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const std::string why = r < 0 ? std::strerror(errno) : "file shrank";
      ::close(fd);
      return io_error("reading " + corpus.path + ": " + why);
    }
    got += r;
  }
  ::close(fd);
  texts->reserve(static_cast<size_t>(end - begin));
  for (int64_t d = begin; d < end; ++d) {
    const char* line = data.data() + (corpus.line_offset[d] - first);
    nlohmann::json doc = nlohmann::json::parse(line, line + corpus.line_bytes[d], nullptr, false);
    auto text = doc.is_object() ? doc.find(corpus.text_field) : doc.end();
    if (doc.is_discarded() || !doc.is_object() || text == doc.end() || !text->is_string())
      return corruption(corpus.path + " changed while the job ran (document " +
                        std::to_string(d + 1) + ")");
    texts->push_back(text->get<std::string>());
  }
  return Status::ok();
}

}  // namespace qsearch
