// A progress line on stderr: done/total, percent, rate, time left. On a terminal it redraws
// one line (\r) at most 10 times a second; otherwise (a log, a test) it prints a new line at
// most every `interval` seconds. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace qsearch {

class ProgressLine {
 public:
  // label: "embed"; unit: "docs". total 0: unknown (no percent, no time left).
  ProgressLine(std::string label, std::string unit, int64_t total, bool enabled,
               double interval_seconds = 2.0);
  ~ProgressLine();

  // Reports `done` units so far; extra is appended ("3 candidates").
  void update(int64_t done, const std::string& extra = "");
  // Prints the final line: "label: summary".
  void finish(const std::string& summary);

  // 0:07, 12:03, 1:02:03
  static std::string format_duration(double seconds);
  // 1234567 -> "1,234,567"; above 1e12 in scientific notation: "5.0e12"
  static std::string format_count(int64_t n);

 private:
  void print_locked(int64_t done, const std::string& extra, bool final_line);

  std::string label_;
  std::string unit_;
  int64_t total_;
  bool enabled_;
  bool tty_;
  double interval_;
  bool open_line_ = false;  // a \r line is on screen
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_print_;
  std::mutex mu_;
};

}  // namespace qsearch
