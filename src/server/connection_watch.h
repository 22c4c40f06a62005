// Noticing that an HTTP client went away while its request is served, queued or running, so
// that the request is cancelled and its KV pages freed instead of generating for nobody.
//
// cpp-httplib 0.11 gives a handler no access to its socket, and a chunked writer only fails a
// write or two after the peer is gone (and writes nothing while a request waits in the queue).
// So the socket is found by the addresses that identify a TCP connection: among this process's
// sockets, the one bound to local_port whose peer is remote_addr:remote_port. While the handler
// runs, its thread owns that socket, so the descriptor cannot be closed and reused under it.
// A peer that closed its side reads as end of file (recv with MSG_PEEK returns 0).
#pragma once
#include <string>

namespace hs::server {

class ConnectionWatch {
 public:
  ConnectionWatch(const std::string& remote_addr, int remote_port, int local_port);
  bool found() const { return fd_ >= 0; }
  // True once the client has closed the connection (or it broke); false while it is open or
  // when the socket was not found. Does not consume any data.
  bool peer_closed() const;

 private:
  int fd_ = -1;
};

}  // namespace hs::server
