#include "dedup/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace qsearch {

ProgressLine::ProgressLine(std::string label, std::string unit, int64_t total, bool enabled,
                           double interval_seconds)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      enabled_(enabled),
      tty_(enabled && ::isatty(STDERR_FILENO) == 1),
      interval_(tty_ ? 0.1 : interval_seconds),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

ProgressLine::~ProgressLine() {
  std::lock_guard<std::mutex> lock(mu_);
  if (open_line_) std::fputc('\n', stderr);
}

std::string ProgressLine::format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof(buf), "%lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  return buf;
}

std::string ProgressLine::format_count(int64_t n) {
  if (n >= 1000000000000LL || n <= -1000000000000LL) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.2e", static_cast<double>(n));
    return buf;
  }
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t k = 0; k < digits.size(); ++k) {
    if (k > 0 && (digits.size() - k) % 3 == 0) out.push_back(',');
    out.push_back(digits[k]);
  }
  return n < 0 ? "-" + out : out;
}

void ProgressLine::update(int64_t done, const std::string& extra) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_print_).count() < interval_) return;
  last_print_ = now;
  print_locked(done, extra, false);
}

void ProgressLine::finish(const std::string& summary) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (open_line_) std::fputs("\r\033[K", stderr);
  std::fprintf(stderr, "%s: %s\n", label_.c_str(), summary.c_str());
  open_line_ = false;
  std::fflush(stderr);
}

void ProgressLine::print_locked(int64_t done, const std::string& extra, bool final_line) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? done / elapsed : 0;
  std::string line = label_ + ": " + format_count(done);
  if (total_ > 0) {
    char pct[32];
    std::snprintf(pct, sizeof(pct), " (%.1f%%)", 100.0 * done / total_);
    line.push_back('/');
    line.append(format_count(total_)).append(" ").append(unit_).append(pct);
  } else {
    line += " " + unit_;
  }
  line += ", " + format_count(static_cast<int64_t>(rate)) + " " + unit_ + "/s";
  if (total_ > 0 && rate > 0) line += ", ETA " + format_duration((total_ - done) / rate);
  if (!extra.empty()) line += ", " + extra;
  if (tty_ && !final_line) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    open_line_ = true;
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace qsearch
