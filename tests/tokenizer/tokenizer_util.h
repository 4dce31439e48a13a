// Shared helpers of the tokenizer tests: where the test data is, the Hugging Face oracle
// (tests/tokenizer/oracle.js on Node), the hand-written corpus and the random string generator.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace qsearch::testing {

// .deps/qwen3/tokenizer.json (fetched by `make deps`).
std::string qwen3_tokenizer_path();
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& data);
// A fresh temporary directory for this test process.
std::string temp_dir();

// JSON string literal of UTF-8 text (escapes quotes, backslashes and control characters).
std::string json_quote(const std::string& s);
// Parses "[1,2,3]".
bool parse_id_array(const std::string& line, std::vector<int32_t>* ids);

// Runs the oracle on `texts` (valid UTF-8) with the given mode ("" = ids with special tokens,
// "--no-special", "--pretokenize", "--normalize"); returns one output line per text.
// On any failure (no node, no @anush008/tokenizers, oracle error) sets *error and returns {}.
std::vector<std::string> run_oracle(const std::string& tokenizer_json, const std::vector<std::string>& texts,
                                    const std::string& mode, std::string* error);

// Runs a shell command with `input` on stdin; returns stdout, sets exit code and stderr.
std::string run_command(const std::string& command, const std::string& input, int* exit_code,
                        std::string* stderr_text);

// The hand-written corpus: every script and hazard the issue names.
std::vector<std::string> handwritten_corpus();
// `count` random strings mixing the corpus fragments, scripts, white space, digits,
// contractions, special tokens and random code points (deterministic for a seed).
std::vector<std::string> random_corpus(uint64_t seed, size_t count);
// `count` short strings over a small alphabet chosen to hit every branch of the Split regex
// densely (white space kinds, newlines, apostrophes and contraction letters, punctuation,
// letters, digits, marks, added tokens).
std::vector<std::string> regex_soup(uint64_t seed, size_t count);

}  // namespace qsearch::testing
