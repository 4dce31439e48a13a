// qsearch serve: the HTTP service. Listens at once (/health answers, /ready says 503), loads
// the model and opens the store on a background thread, then serves. SIGINT/SIGTERM stop
// accepting requests, let running ones finish, fail queued embedding work and save indexes.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include <spdlog/spdlog.h>

#include "api/access_log.h"
#include "api/server.h"
#include "cli/command.h"
#include "common/log.h"
#include "service/config.h"
#include "service/metrics.h"
#include "service/service.h"

namespace qsearch::cli {
namespace {

int g_signal_pipe[2] = {-1, -1};

void wake_signal_thread(int sig) {
  char c = static_cast<char>(sig);
  ssize_t n = write(g_signal_pipe[1], &c, 1);
  (void)n;
}

extern "C" void on_signal(int sig) {
  int saved = errno;
  wake_signal_thread(sig);
  errno = saved;
}

int run_serve(const std::vector<std::string>& args) {
  if (wants_help(args)) {
    std::fputs(server_config_help().c_str(), stdout);
    return 0;
  }
  ConfigSources sources;
  auto config = load_server_config(args, qsearch_environment(), &sources);
  if (!config.is_ok()) {
    std::fprintf(stderr, "qsearch serve: %s\n(qsearch serve --help lists the options)\n",
                 config.status().message().c_str());
    return 2;
  }
  if (Status st = log::configure(config->log_format, config->log_level); !st.is_ok()) {
    std::fprintf(stderr, "qsearch serve: %s\n", st.message().c_str());
    return 2;
  }

  if (Status st = check_model_dir(config->model); !st.is_ok()) {
    std::fprintf(stderr, "qsearch serve: %s\n", st.message().c_str());
    return 1;
  }
  spdlog::info("qsearch serve: model {} ({}), device {}, data {} ({})", config->model,
               sources["model"], config->device, config->data_dir, sources["data_dir"]);
  if (!config->config_file.empty()) spdlog::info("config file {}", config->config_file);
  if (!config->auth_enabled())
    spdlog::warn("no API keys configured: anyone who can reach {}:{} can read and write. Set "
                 "QSEARCH_API_KEY (and QSEARCH_READ_KEY) or --key-file.",
                 config->host, config->port);
  else
    spdlog::info("authentication on: {} admin key(s), {} read-only key(s)",
                 config->admin_keys.size(), config->read_keys.size());

  // SIGINT/SIGTERM write to a pipe that one thread waits on. (Blocking the signals and using
  // sigwait() is not enough: threads started before main, e.g. OpenBLAS's, would still take
  // them and the default action would kill the process without saving.)
  if (pipe(g_signal_pipe) != 0) {
    spdlog::critical("pipe() failed");
    return 1;
  }
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Metrics metrics;
  api::ApiServer server(*config, &metrics);
  server.set_request_hook(api::log_access);  // one info line per request
  if (!config->cors_origin_list.empty())
    spdlog::info("CORS on for {}", config->cors_origins);
  if (Status st = server.bind(); !st.is_ok()) {
    spdlog::critical("{}", st.message());
    return 1;
  }
  spdlog::info("listening on http://{}:{}", config->host, server.port());

  std::atomic<bool> listen_done{false}, load_failed{false}, shutting_down{false};
  std::atomic<Service*> live_service{nullptr};
  std::thread signal_thread([&] {
    char sig = 0;
    while (read(g_signal_pipe[0], &sig, 1) < 0 && errno == EINTR) {
    }
    shutting_down = true;
    if (sig == SIGINT || sig == SIGTERM)
      spdlog::info("{}: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(config->shutdown_timeout);
    bool forced = false;
    while (!listen_done) {  // stop() is a no-op before listen() runs: repeat until it returns
      server.stop();
      if (!forced && std::chrono::steady_clock::now() > deadline) {
        // Requests still running (a long import, a deep queue): fail their queued embedding
        // work so that they answer now; what they wrote is durable.
        if (Service* s = live_service.load()) {
          spdlog::warn("requests still running after {} s: refusing queued embedding work",
                       config->shutdown_timeout);
          s->scheduler().stop();
        }
        forced = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });

  std::unique_ptr<Service> service;
  std::thread loader([&] {
    if (config->debug_load_delay_ms > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(config->debug_load_delay_ms));
    auto opened = Service::open(*config, &metrics);
    if (!opened.is_ok()) {
      spdlog::critical("cannot start: {}", opened.status().message());
      load_failed = true;
      wake_signal_thread(0);
      return;
    }
    service = std::move(opened).value();
    live_service = service.get();
    if (shutting_down) return;
    server.set_service(service.get());
    spdlog::info("ready: {} on {}", service->model_identity(), service->embedder().device_name());
  });

  bool listened = server.listen();
  listen_done = true;
  if (!shutting_down) wake_signal_thread(0);
  signal_thread.join();
  loader.join();
  server.set_service(nullptr);
  int rc = listened && !load_failed ? 0 : 1;
  if (service) {
    Status st = service->shutdown();
    if (st.is_ok()) spdlog::info("indexes saved; bye");
    else {
      spdlog::error("saving indexes at shutdown failed: {}", st.to_string());
      rc = 1;
    }
  }
  return rc;
}

}  // namespace

QSEARCH_COMMAND(serve, "Run the HTTP service (qsearch serve --help)", run_serve);

}  // namespace qsearch::cli
