// Subcommand registry of the qsearch binary. Each subcommand lives in its own file in src/cli/
// and registers itself:   QSEARCH_COMMAND(tokenize, "Tokenize JSON lines from stdin", run_tokenize);
// run functions take the arguments after the subcommand name and return the exit code.
// Every subcommand answers --help; errors go to stderr with a non-zero exit code.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace qsearch::cli {

using CommandFn = std::function<int(const std::vector<std::string>& args)>;

struct Command {
  std::string summary;
  CommandFn run;
};

std::map<std::string, Command>& registry();

struct Registrar {
  Registrar(const char* name, const char* summary, CommandFn fn) {
    registry()[name] = Command{summary, std::move(fn)};
  }
};

#define QSEARCH_COMMAND(name, summary, fn) \
  static ::qsearch::cli::Registrar qsearch_registrar_##name(#name, summary, fn)

// A small flag parser shared by the subcommands: --name value, --name=value, --flag.
class Args {
 public:
  // known: flag names (without --) that take a value; switches: flags without value.
  Args(const std::vector<std::string>& args, std::vector<std::string> valued,
       std::vector<std::string> switches);
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  bool has(const std::string& name) const;
  std::optional<std::string> get(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& fallback) const;
  // Parses an integer value; sets error() on a malformed number.
  std::optional<long long> get_int(const std::string& name);
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
  std::string error_;
};

}  // namespace qsearch::cli
