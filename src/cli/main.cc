// qsearch: vector search with a built-in Qwen3-Embedding engine. See README.md.
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli/command.h"
#include "common/build_info.h"

namespace qsearch::cli {

std::map<std::string, Command>& registry() {
  static std::map<std::string, Command> commands;
  return commands;
}

Args::Args(const std::vector<std::string>& args, std::vector<std::string> valued,
           std::vector<std::string> switches) {
  auto is_in = [](const std::vector<std::string>& v, const std::string& s) {
    for (const auto& x : v)
      if (x == s) return true;
    return false;
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0 || a == "--") {
      positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (is_in(switches, name)) {
      if (has_value) {
        error_ = "--" + name + " takes no value";
        return;
      }
      values_[name] = "";
    } else if (is_in(valued, name)) {
      if (!has_value) {
        if (i + 1 >= args.size()) {
          error_ = "--" + name + " needs a value";
          return;
        }
        value = args[++i];
      }
      values_[name] = value;
    } else {
      error_ = "unknown option --" + name;
      return;
    }
  }
}

bool Args::has(const std::string& name) const { return values_.count(name) > 0; }

std::optional<std::string> Args::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::get_or(const std::string& name, const std::string& fallback) const {
  auto v = get(name);
  return v ? *v : fallback;
}

std::optional<long long> Args::get_int(const std::string& name) {
  auto v = get(name);
  if (!v) return std::nullopt;
  try {
    size_t pos = 0;
    long long x = std::stoll(*v, &pos);
    if (pos != v->size()) throw std::invalid_argument("trailing");
    return x;
  } catch (const std::exception&) {
    error_ = "--" + name + " expects an integer, got '" + *v + "'";
    return std::nullopt;
  }
}

}  // namespace qsearch::cli

static void print_usage() {
  std::fprintf(stderr, "usage: qsearch <command> [options]   (qsearch <command> --help)\n"
                       "       qsearch --version\n\ncommands:\n");
  for (const auto& [name, cmd] : qsearch::cli::registry())
    std::fprintf(stderr, "  %-16s %s\n", name.c_str(), cmd.summary.c_str());
}

static void print_version() {
#ifdef QSEARCH_HAVE_CUDA
  const char* cuda = "CUDA engine";
#else
  const char* cuda = "no CUDA engine";
#endif
  std::printf("qsearch %s (commit %s, %s build, %s)\n", qsearch::version(),
              qsearch::build_commit(), qsearch::build_type(), cuda);
}

int main(int argc, char** argv) {
  if (argc >= 2 && (std::string(argv[1]) == "--version" || std::string(argv[1]) == "version")) {
    print_version();
    return 0;
  }
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  auto& reg = qsearch::cli::registry();
  auto it = reg.find(argv[1]);
  if (it == reg.end()) {
    std::fprintf(stderr, "qsearch: unknown command '%s'\n", argv[1]);
    print_usage();
    return 2;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  try {
    return it->second.run(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qsearch %s: %s\n", argv[1], e.what());
    return 1;
  }
}
