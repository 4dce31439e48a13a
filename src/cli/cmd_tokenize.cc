// qsearch tokenize --tokenizer FILE [--no-special] [--threads N]
// stdin: one JSON string per line; stdout: one JSON array of token ids per line, same order.
// Lines are read in blocks, tokenized in parallel and written in order. A malformed line or
// invalid UTF-8 stops the run with a message naming the line (lines before it are written).
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "common/thread_pool.h"
#include "embed/tokenizer/tokenizer.h"
#include "embed/tokenizer/unicode.h"

namespace qsearch::cli {
namespace {

constexpr const char* kUsage =
    "usage: qsearch tokenize --tokenizer FILE [--no-special] [--threads N]\n"
    "\n"
    "Reads one JSON string per line from stdin and writes one JSON array of token ids per\n"
    "line to stdout, in the same order.\n"
    "\n"
    "  --tokenizer FILE  a Hugging Face tokenizer.json of the Qwen2/Qwen3 family (required)\n"
    "  --no-special      do not apply the tokenizer's post-processor (default: apply it)\n"
    "  --threads N       tokenizer threads (default: all cores)\n";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Parses a line holding exactly one JSON string (surrounding white space allowed) into *out.
// Returns an empty string on success, else what is wrong.
std::string parse_json_string_line(std::string_view line, std::string* out) {
  out->clear();
  size_t i = 0, n = line.size();
  while (i < n && is_json_space(line[i])) ++i;
  if (i >= n) return "empty line (expected a JSON string)";
  if (line[i] != '"') return "expected a JSON string";
  ++i;
  for (;;) {
    // Copy the run up to the next quote, backslash or control character at once.
    size_t start = i;
    while (i < n && line[i] != '"' && line[i] != '\\' && static_cast<unsigned char>(line[i]) >= 0x20) ++i;
    out->append(line.data() + start, i - start);
    if (i >= n) return "unterminated string";
    char c = line[i];
    if (c == '"') {
      ++i;
      break;
    }
    if (c != '\\') return "unescaped control character in string";
    if (++i >= n) return "unterminated escape";
    char e = line[i++];
    switch (e) {
      case '"': out->push_back('"'); break;
      case '\\': out->push_back('\\'); break;
      case '/': out->push_back('/'); break;
      case 'b': out->push_back('\b'); break;
      case 'f': out->push_back('\f'); break;
      case 'n': out->push_back('\n'); break;
      case 'r': out->push_back('\r'); break;
      case 't': out->push_back('\t'); break;
      case 'u': {
        auto read4 = [&](uint32_t* v) {
          if (i + 4 > n) return false;
          *v = 0;
          for (int k = 0; k < 4; ++k) {
            int h = hex_value(line[i + k]);
            if (h < 0) return false;
            *v = *v * 16 + static_cast<uint32_t>(h);
          }
          i += 4;
          return true;
        };
        uint32_t cp;
        if (!read4(&cp)) return "bad \\u escape";
        if (cp >= 0xDC00 && cp <= 0xDFFF) return "lone low surrogate \\u escape (not valid Unicode)";
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          uint32_t lo;
          if (i + 2 > n || line[i] != '\\' || line[i + 1] != 'u') return "lone high surrogate \\u escape (not valid Unicode)";
          i += 2;
          if (!read4(&lo) || lo < 0xDC00 || lo > 0xDFFF) return "bad surrogate pair in \\u escape";
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        unicode::append_utf8(cp, out);
        break;
      }
      default:
        return std::string("bad escape \\") + e;
    }
  }
  while (i < n && is_json_space(line[i])) ++i;
  if (i != n) return "trailing characters after the JSON string";
  return "";
}

void append_ids(const std::vector<int32_t>& ids, std::string* out) {
  out->push_back('[');
  char buf[16];
  for (size_t k = 0; k < ids.size(); ++k) {
    if (k) out->push_back(',');
    // ids are non-negative and < 2^31
    uint32_t v = static_cast<uint32_t>(ids[k]);
    char* p = buf + sizeof buf;
    do {
      *--p = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v);
    out->append(p, static_cast<size_t>(buf + sizeof buf - p));
  }
  out->append("]\n");
}

struct Result {
  std::vector<int32_t> ids;
  std::string error;  // empty: ok
};

int run_tokenize(const std::vector<std::string>& argv) {
  Args args(argv, {"tokenizer", "threads"}, {"no-special", "help"});
  if (args.has("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  auto threads = args.get_int("threads");
  if (!args.ok() || !args.positional().empty()) {
    std::fprintf(stderr, "qsearch tokenize: %s\n%s",
                 args.ok() ? ("unexpected argument '" + args.positional()[0] + "'").c_str() : args.error().c_str(),
                 kUsage);
    return 2;
  }
  auto path = args.get("tokenizer");
  if (!path) {
    std::fprintf(stderr, "qsearch tokenize: --tokenizer FILE is required\n%s", kUsage);
    return 2;
  }
  if (threads && (*threads < 1 || *threads > 1024)) {
    std::fprintf(stderr, "qsearch tokenize: --threads must be 1..1024\n");
    return 2;
  }
  const bool add_special = !args.has("no-special");
  auto tok = Tokenizer::from_file(*path);
  if (!tok.is_ok()) {
    std::fprintf(stderr, "qsearch tokenize: %s\n", tok.status().to_string().c_str());
    return 1;
  }
  const Tokenizer& tokenizer = **tok;
  // The calling thread works too: N threads = a pool of N-1 (none for 1).
  std::unique_ptr<ThreadPool> pool;
  if (!threads) pool = std::make_unique<ThreadPool>(0);
  else if (*threads > 1) pool = std::make_unique<ThreadPool>(static_cast<size_t>(*threads - 1));

  // Blocks of lines: read, tokenize in parallel, write in order.
  constexpr size_t kBlockLines = 8192;
  constexpr size_t kBlockBytes = 16 << 20;
  std::vector<std::string> lines;
  std::vector<Result> results;
  std::string out;
  size_t line_no = 0;  // lines before the current block
  char* buf = nullptr;
  size_t cap = 0;
  bool eof = false;
  while (!eof) {
    lines.clear();
    size_t bytes = 0;
    while (lines.size() < kBlockLines && bytes < kBlockBytes) {
      ssize_t len = getline(&buf, &cap, stdin);
      if (len < 0) {
        eof = true;
        break;
      }
      size_t l = static_cast<size_t>(len);
      if (l && buf[l - 1] == '\n') --l;
      lines.emplace_back(buf, l);
      bytes += l;
    }
    if (lines.empty()) break;
    results.assign(lines.size(), Result{});
    auto work = [&](size_t begin, size_t end) {
      std::string text;
      for (size_t i = begin; i < end; ++i) {
        Result& r = results[i];
        r.error = parse_json_string_line(lines[i], &text);
        if (!r.error.empty()) continue;
        auto ids = tokenizer.encode(text, add_special);
        if (ids.is_ok()) r.ids = std::move(*ids);
        else r.error = ids.status().message();
      }
    };
    if (pool && lines.size() > 1) {
      // Dynamic scheduling in small steps: line lengths vary a lot.
      std::atomic<size_t> next{0};
      pool->parallel_for(pool->size() + 1, [&](size_t, size_t) {
        for (;;) {
          size_t b = next.fetch_add(16);
          if (b >= lines.size()) break;
          work(b, std::min(lines.size(), b + 16));
        }
      });
    } else {
      work(0, lines.size());
    }
    out.clear();
    for (size_t i = 0; i < results.size(); ++i) {
      if (!results[i].error.empty()) {
        std::fwrite(out.data(), 1, out.size(), stdout);
        std::fflush(stdout);
        std::fprintf(stderr, "qsearch tokenize: line %zu: %s\n", line_no + i + 1, results[i].error.c_str());
        std::free(buf);
        return 1;
      }
      append_ids(results[i].ids, &out);
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    line_no += lines.size();
  }
  std::free(buf);
  if (std::ferror(stdin)) {
    std::fprintf(stderr, "qsearch tokenize: error reading stdin\n");
    return 1;
  }
  if (std::fflush(stdout) != 0) {
    std::fprintf(stderr, "qsearch tokenize: error writing stdout\n");
    return 1;
  }
  return 0;
}

}  // namespace

QSEARCH_COMMAND(tokenize, "Tokenize JSON lines from stdin (one id array per line)", run_tokenize);

}  // namespace qsearch::cli
