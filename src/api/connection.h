// Detects that the client of the request being handled went away, so queued work can be
// dropped. cpp-httplib 0.11 does not hand the socket to handlers; the handler's connection is
// found by its address pair among the process's sockets (once, on first use). While the
// handler runs, its worker thread owns that socket, so the descriptor cannot be reused.
#pragma once

#include <string>

namespace qsearch::api {

class ConnectionWatch {
 public:
  ConnectionWatch(std::string local_addr, int local_port, std::string remote_addr,
                  int remote_port);
  // True once the peer closed or reset the connection. Never blocks.
  bool client_gone();

 private:
  int find_socket() const;
  std::string local_addr_, remote_addr_;
  int local_port_, remote_port_;
  int fd_ = -2;  // -2: not searched yet; -1: not found (never reports gone)
};

}  // namespace qsearch::api
