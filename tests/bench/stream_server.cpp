// A stand-in OpenAI completion server for checking load-test clients: every request streams
// `tokens` events, and every stream sends its next event at the same instants, one `period_us`
// apart, as an engine stepping a batch does. A client that reads each stream as data arrives
// measures an inter-token latency of period_us.
//   build/stream_server PORT TOKENS PERIOD_US
#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: stream_server PORT TOKENS PERIOD_US\n");
    return 2;
  }
  const int port = std::stoi(argv[1]), tokens = std::stoi(argv[2]);
  const std::chrono::microseconds period(std::stoi(argv[3]));
  httplib::Server s;
  s.new_task_queue = [] { return new httplib::ThreadPool(256); };
  s.set_tcp_nodelay(true);
  s.Get("/v1/models", [](const httplib::Request&, httplib::Response& r) {
    r.set_content(R"({"object":"list","data":[{"id":"stream-server","object":"model"}]})", "application/json");
  });
  s.Post("/v1/completions", [&](const httplib::Request&, httplib::Response& r) {
    r.set_chunked_content_provider("text/event-stream", [&, sent = 0](size_t, httplib::DataSink& sink) mutable {
      const auto now = std::chrono::steady_clock::now().time_since_epoch();
      std::this_thread::sleep_until(std::chrono::steady_clock::time_point((now / period + 1) * period));
      const std::string e = sent < tokens ? R"(data: {"choices":[{"index":0,"text":"x"}]})"
                                              "\n\n"
                                          : R"(data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":)" +
                                                std::to_string(tokens) + "}}\n\ndata: [DONE]\n\n";
      sink.write(e.data(), e.size());
      if (++sent > tokens) sink.done();
      return true;
    });
  });
  std::printf("stream_server on 127.0.0.1:%d\n", port);
  std::fflush(stdout);
  return s.listen("127.0.0.1", port) ? 0 : 1;
}
