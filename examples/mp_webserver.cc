// Examples (2.7): a pool of HTTP servers sharing a single listening socket.
//
//   mp_webserver [PORT [DIRECTORY]]
//
// Serves the files of DIRECTORY (default: the current directory; the
// original serves its parent directory) at http://localhost:PORT (default
// 8000; 0 picks a free port, and the line "Serving at ..." tells which) with
// 4 worker processes: the main process and 3 children made with
// multiprocessing::Process, each accepting connections on the one listening
// socket they inherited. Each request is logged to stderr with the name of
// the process that handled it. Ctrl-C (SIGINT) or SIGTERM stops the servers;
// the main process then stops its children and joins them.
//
// C++ has no SimpleHTTPRequestHandler: the small GET / HEAD file server below
// takes its place (files, a listing for directories without index.html, 404
// for what does not exist; ".." in a path is dropped, as Python drops it).
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "process/context.h"
#include "process/process.h"

namespace mp = multiprocessing;

volatile sig_atomic_t g_stop = 0;

void on_signal(int) { g_stop = 1; }

void note(const std::string& message) {
  std::string line =
      "[" + mp::current_process().name() + "]\t" + message + "\n";
  // One write, so the lines of concurrent workers do not mix.
  ssize_t unused = write(2, line.data(), line.size());
  (void)unused;
}

// ---- The request handler (SimpleHTTPRequestHandler's part that serves
// files).

struct Response {
  int code;
  std::string reason;
  std::string content_type;
  std::string body;
};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The URL path as a path below `root`: query and fragment dropped, %XX
// decoded, empty, "." and ".." components dropped.
std::string translate_path(const std::string& root, std::string url) {
  url = url.substr(0, url.find_first_of("?#"));
  std::string decoded;
  for (size_t i = 0; i < url.size(); ++i) {
    if (url[i] == '%' && i + 2 < url.size() && hex_value(url[i + 1]) >= 0 &&
        hex_value(url[i + 2]) >= 0) {
      decoded +=
          static_cast<char>(hex_value(url[i + 1]) * 16 + hex_value(url[i + 2]));
      i += 2;
    } else {
      decoded += url[i];
    }
  }
  std::string path = root;
  std::stringstream parts(decoded);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part.empty() || part == "." || part == ".." ||
        part.find('\0') != std::string::npos) {
      continue;
    }
    path += "/" + part;
  }
  if (!decoded.empty() && decoded.back() == '/') path += "/";
  return path;
}

std::string guess_type(const std::string& path) {
  static const std::pair<const char*, const char*> kTypes[] = {
      {".html", "text/html"}, {".htm", "text/html"},
      {".txt", "text/plain"}, {".py", "text/x-python"},
      {".cc", "text/plain"},  {".h", "text/plain"},
      {".css", "text/css"},   {".json", "application/json"},
      {".png", "image/png"},  {".jpg", "image/jpeg"},
  };
  for (const auto& [ext, type] : kTypes) {
    size_t n = std::strlen(ext);
    if (path.size() >= n && path.compare(path.size() - n, n, ext) == 0) {
      return type;
    }
  }
  return "application/octet-stream";
}

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

Response list_directory(const std::string& path, const std::string& url) {
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return {404, "No permission to list directory", "", ""};
  std::vector<std::string> names;
  while (dirent* entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (stat((path + "/" + name).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      name += "/";
    }
    names.push_back(name);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  std::string title = "Directory listing for " + html_escape(url);
  std::string body = "<!DOCTYPE HTML>\n<html>\n<head>\n<title>" + title +
                     "</title>\n</head>\n<body>\n<h1>" + title +
                     "</h1>\n<hr>\n<ul>\n";
  for (const std::string& name : names) {
    body += "<li><a href=\"" + html_escape(name) + "\">" + html_escape(name) +
            "</a></li>\n";
  }
  body += "</ul>\n<hr>\n</body>\n</html>\n";
  return {200, "OK", "text/html; charset=utf-8", body};
}

Response serve_path(const std::string& root, const std::string& url) {
  std::string path = translate_path(root, url);
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return {404, "File not found", "", ""};
  if (S_ISDIR(st.st_mode)) {
    if (path.back() != '/') {
      // Like Python: redirect to the URL with a slash.
      Response r{301, "Moved Permanently", "", ""};
      r.content_type = "Location: " + url + "/";
      return r;
    }
    struct stat index;
    if (stat((path + "index.html").c_str(), &index) == 0) {
      path += "index.html";
    } else {
      return list_directory(path, url);
    }
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) return {404, "File not found", "", ""};
  std::ostringstream content;
  content << file.rdbuf();
  return {200, "OK", guess_type(path), content.str()};
}

void send_all(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the client went away
    sent += static_cast<size_t>(n);
  }
}

// Reads one request (its line and headers), answers it and closes.
void handle(int fd, const std::string& root) {
  // A client that sends nothing does not hold a worker for ever.
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  std::string request;
  char buffer[4096];
  while (request.find("\r\n\r\n") == std::string::npos &&
         request.find("\n\n") == std::string::npos && request.size() < 65536) {
    ssize_t n = recv(fd, buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    request.append(buffer, static_cast<size_t>(n));
  }
  std::string line = request.substr(0, request.find_first_of("\r\n"));
  std::istringstream words(line);
  std::string method, url, version;
  words >> method >> url >> version;
  Response response;
  if (method.empty() || url.empty() || url[0] != '/' ||
      (!version.empty() && version.rfind("HTTP/", 0) != 0)) {
    response = {400, "Bad request syntax", "", ""};
  } else if (method != "GET" && method != "HEAD") {
    response = {501, "Unsupported method", "", ""};
  } else {
    response = serve_path(root, url);
  }
  std::string location;
  if (response.code == 301) location = response.content_type;
  if (response.code != 200) {
    response.body = "<html><body><h1>Error response</h1><p>Error code: " +
                    std::to_string(response.code) +
                    "</p><p>Message: " + html_escape(response.reason) +
                    ".</p></body></html>\n";
    response.content_type = "text/html;charset=utf-8";
  }
  std::string head =
      "HTTP/1.0 " + std::to_string(response.code) + " " + response.reason +
      "\r\nServer: mp_webserver\r\nContent-Type: " + response.content_type +
      "\r\nContent-Length: " + std::to_string(response.body.size()) + "\r\n";
  if (!location.empty()) head += location + "\r\n";
  head += "Connection: close\r\n\r\n";
  send_all(fd, method == "HEAD" ? head : head + response.body);
  close(fd);
  // log_message, as the original's RequestHandler overrides it.
  std::string size = response.code == 200 ? std::to_string(response.body.size())
                                          : std::string("-");
  note("\"" + line + "\" " + std::to_string(response.code) + " " + size);
}

// ---- The pool

struct Server {
  int fd;
  std::string root;
};

// HTTPServer.serve_forever until Ctrl-C or SIGTERM (KeyboardInterrupt in
// the original). The stop signals are blocked except while waiting for a
// connection, so a request in progress is finished first.
void serve_forever(Server server) {
  note("starting server");
  sigset_t stops, waiting;
  sigemptyset(&stops);
  sigaddset(&stops, SIGINT);
  sigaddset(&stops, SIGTERM);
  sigprocmask(SIG_BLOCK, &stops, &waiting);
  sigdelset(&waiting, SIGINT);
  sigdelset(&waiting, SIGTERM);
  while (!g_stop) {
    pollfd p{server.fd, POLLIN, 0};
    // Half a second at most, as Python's poll_interval: a stop signal
    // handled by another thread of the process is seen too.
    timespec interval{0, 500'000'000};
    int ready = ppoll(&p, 1, &interval, &waiting);
    if (ready <= 0) continue;  // a signal (g_stop is set) or EINTR
    // Another worker may have taken the connection: the socket does not
    // block, and EAGAIN means try again.
    int client = accept4(server.fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    handle(client, server.root);
  }
}

void runpool(const std::string& host, int port, int number_of_processes,
             const std::string& root) {
  // create a single server socket -- children will each inherit a copy
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found) !=
          0 ||
      found == nullptr) {
    std::fprintf(stderr, "cannot resolve %s\n", host.c_str());
    std::exit(1);
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || bind(fd, found->ai_addr, found->ai_addrlen) != 0 ||
      listen(fd, 128) != 0) {
    std::fprintf(stderr, "cannot listen on %s:%d: %s\n", host.c_str(), port,
                 std::strerror(errno));
    std::exit(1);
  }
  freeaddrinfo(found);
  sockaddr_in bound{};
  socklen_t length = sizeof bound;
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length);

  std::printf("Serving at http://%s:%d using %d worker processes\n",
              host.c_str(), ntohs(bound.sin_port), number_of_processes);
  std::printf("To exit press Ctrl-C\n");
  std::fflush(stdout);

  // Ctrl-C and SIGTERM stop the servers; the children inherit this.
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  Server server{fd, root};
  // create child processes to act as workers
  std::vector<mp::Process> children;
  for (int i = 0; i < number_of_processes - 1; ++i) {
    children.emplace_back(serve_forever, server);
    children.back().start();
  }

  // main process also acts as a worker
  serve_forever(server);

  // Stopped: the children too. Ctrl-C reached them already; a stop sent to
  // the main process alone reaches them as SIGTERM, which they handle like
  // Ctrl-C (finishing a request in progress).
  for (mp::Process& p : children) p.terminate();
  for (mp::Process& p : children) {
    p.join(std::chrono::seconds(10));
    if (p.is_alive()) {
      p.kill();
      p.join();
    }
  }
  close(fd);
}

void test(int argc, char** argv) {
  const std::string DIR = argc > 2 ? argv[2] : ".";
  const std::string HOST = "localhost";
  int PORT = 8000;
  if (argc > 1) {
    char* end = nullptr;
    long port = std::strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || port < 0 || port > 65535) {
      std::fprintf(stderr, "Usage:\n\t%s [port [directory]]\n", argv[0]);
      std::exit(2);
    }
    PORT = static_cast<int>(port);
  }
  const int NUMBER_OF_PROCESSES = 4;

  runpool(HOST, PORT, NUMBER_OF_PROCESSES, DIR);
}

int main(int argc, char** argv) {
  mp::freeze_support(argc, argv);
  if (argc > 3) {
    std::fprintf(stderr, "Usage:\n\t%s [port [directory]]\n", argv[0]);
    return 2;
  }
  test(argc, argv);
}
