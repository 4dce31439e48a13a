#include "common/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

namespace qsearch::log {
namespace {

thread_local std::string t_request_id;
thread_local const std::vector<Field>* t_fields = nullptr;

// %* in the text pattern: "[req ID] " while a request is served, else nothing.
class RequestIdFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    if (t_request_id.empty()) return;
    const std::string s = "[req " + t_request_id + "] ";
    dest.append(s.data(), s.data() + s.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<RequestIdFlag>();
  }
};

// %& in the text pattern: " k=v k=v" for a line with fields.
class FieldsFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    if (!t_fields) return;
    std::string s;
    for (const auto& [k, v] : *t_fields) s += " " + k + "=" + v;
    dest.append(s.data(), s.data() + s.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<FieldsFlag>();
  }
};

class JsonFormatter : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto t = msg.time;
    const std::time_t secs = std::chrono::system_clock::to_time_t(t);
    const int ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char when[40];
    std::snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    const auto level = spdlog::level::to_string_view(msg.level);
    std::string line = "{\"time\":\"" + std::string(when) + "\",\"level\":\"" +
                       std::string(level.data(), level.size()) + "\",\"msg\":" +
                       json_string(std::string(msg.payload.data(), msg.payload.size()));
    if (!t_request_id.empty()) line += ",\"request_id\":" + json_string(t_request_id);
    if (t_fields)
      for (const auto& [k, v] : *t_fields) line += "," + json_string(k) + ":" + v;
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

}  // namespace

Status configure(const std::string& format, const std::string& level) {
  if (format == "json") {
    spdlog::set_formatter(std::make_unique<JsonFormatter>());
  } else if (format == "text") {
    auto f = std::make_unique<spdlog::pattern_formatter>();
    f->add_flag<RequestIdFlag>('*').add_flag<FieldsFlag>('&').set_pattern(
        "%Y-%m-%dT%H:%M:%S.%e %^%l%$ %*%v%&");
    spdlog::set_formatter(std::move(f));
  } else {
    return invalid_argument("log format '" + format + "' is not one of text, json");
  }
  spdlog::set_level(spdlog::level::from_str(level));
  return Status::ok();
}

RequestScope::RequestScope(std::string request_id) : saved_(std::move(t_request_id)) {
  t_request_id = std::move(request_id);
}

RequestScope::~RequestScope() { t_request_id = std::move(saved_); }

const std::string& current_request_id() { return t_request_id; }

std::string json_string(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void info_with_fields(const std::string& message, const std::vector<Field>& fields) {
  t_fields = &fields;
  spdlog::info("{}", message);
  t_fields = nullptr;
}

}  // namespace qsearch::log
