// The HTTP server's task queue: cpp-httplib hands it each accepted connection, which then holds
// one thread until it closes: while its client sends the request (up to the read timeout between
// two reads), while the request is served or streamed, and while the connection idles between
// keep-alive requests. A fixed pool lets that many stalled clients keep every other one waiting;
// this one keeps `base` threads and starts another whenever a connection arrives with none free,
// up to `max`, so that a connection waits only when `max` are busy. Threads past `base` end once
// they have had no work for `linger`. Where the system refuses a new thread (a limit on
// processes), the connection waits for the next free one.
#pragma once
#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <thread>

namespace hs::server {

class ConnectionThreads final : public httplib::TaskQueue {
 public:
  ConnectionThreads(int base, int max, std::chrono::milliseconds linger);
  ~ConnectionThreads() override;
  ConnectionThreads(const ConnectionThreads&) = delete;
  ConnectionThreads& operator=(const ConnectionThreads&) = delete;

  void enqueue(std::function<void()> fn) override;
  // Runs what is queued, then ends every thread: httplib calls it as the server stops listening,
  // and the destructor does (the second call finds nothing left).
  void shutdown() override;

  struct Counts {
    int threads = 0;  // started and not ended
    int busy = 0;     // running a connection
    int queued = 0;   // connections waiting for a thread
  };
  Counts counts() const;

 private:
  using Threads = std::list<std::thread>;
  bool start_thread();  // with mutex_ held; false when the system refuses
  void work(Threads::iterator self);
  // Joins the threads that ended (their list nodes moved to ended_), outside the lock.
  void join_ended();

  const int base_, max_;
  const std::chrono::milliseconds linger_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  Threads threads_, ended_;
  int idle_ = 0;  // threads not running a job (waiting, or started and not yet waiting)
  bool stopping_ = false;
  bool refused_logged_ = false;
};

}  // namespace hs::server
