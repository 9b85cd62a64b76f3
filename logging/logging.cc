#include "logging/logging.h"

#include <fcntl.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "errors/errors.h"

namespace multiprocessing {
namespace logging {
namespace {

std::atomic<std::string (*)()> process_name_provider{nullptr};

std::string CurrentProcessName() {
  auto* provider = process_name_provider.load(std::memory_order_acquire);
  return provider ? provider() : "MainProcess";
}

// Writes all of `data`; a single write(2) unless the kernel takes less (only
// for huge records).
void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // a logging failure must not take the program down
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

std::string AscTime(double created) {
  time_t secs = static_cast<time_t>(created);
  struct tm tm;
  localtime_r(&secs, &tm);
  char buf[32];
  strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  int millis = static_cast<int>((created - static_cast<double>(secs)) * 1000);
  return absl::StrFormat("%s,%03d", buf, millis);
}

}  // namespace

std::string getLevelName(int level) {
  switch (level) {
    case NOTSET:
      return "NOTSET";
    case SUBDEBUG:
      return "SUBDEBUG";
    case DEBUG:
      return "DEBUG";
    case INFO:
      return "INFO";
    case SUBWARNING:
      return "SUBWARNING";
    case WARNING:
      return "WARNING";
    case ERROR:
      return "ERROR";
    case CRITICAL:
      return "CRITICAL";
  }
  return absl::StrCat("Level ", level);
}

std::string Formatter::format(const LogRecord& r) const {
  std::string out;
  out.reserve(fmt_.size() + r.message.size() + 32);
  size_t i = 0;
  while (i < fmt_.size()) {
    char c = fmt_[i];
    if (c != '%' || i + 1 == fmt_.size()) {
      out.push_back(c);
      ++i;
      continue;
    }
    if (fmt_[i + 1] == '%') {
      out.push_back('%');
      i += 2;
      continue;
    }
    size_t close =
        fmt_[i + 1] == '(' ? fmt_.find(')', i + 2) : std::string::npos;
    if (close == std::string::npos || close + 1 >= fmt_.size()) {
      throw ValueError(absl::StrCat("invalid logging format '", fmt_,
                                    "': expected %(name)s at offset ", i));
    }
    std::string key = fmt_.substr(i + 2, close - i - 2);
    char conv = fmt_[close + 1];
    if (key == "message") {
      out += r.message;
    } else if (key == "levelname") {
      out += r.levelname;
    } else if (key == "processName") {
      out += r.processName;
    } else if (key == "name") {
      out += r.name;
    } else if (key == "levelno") {
      absl::StrAppend(&out, r.levelno);
    } else if (key == "process") {
      absl::StrAppend(&out, r.process);
    } else if (key == "created") {
      absl::StrAppend(&out, absl::StrFormat("%f", r.created));
    } else if (key == "asctime") {
      out += AscTime(r.created);
    } else {
      throw KeyError(absl::StrCat("logging format field '", key,
                                  "' is not a LogRecord attribute"));
    }
    (void)conv;  // %s and %d print the same for these fields
    i = close + 2;
  }
  return out;
}

void Handler::setFormatter(Formatter formatter) {
  formatter_.store(std::make_shared<const Formatter>(std::move(formatter)));
}

void Handler::handle(const LogRecord& record) {
  if (record.levelno < level()) return;
  std::string line = formatter_.load()->format(record);
  line.push_back('\n');
  emit(line);
}

void StreamHandler::emit(const std::string& line) { WriteAll(fd_, line); }

FileHandler::FileHandler(const std::string& path)
    : StreamHandler(::open(path.c_str(),
                           O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) {
  if (fd() < 0) RaiseOSError(absl::StrCat("open ", path), errno);
}

FileHandler::~FileHandler() { ::close(fd()); }

int Logger::getEffectiveLevel() const {
  int level = this->level();
  return level == NOTSET ? WARNING : level;
}

void Logger::addHandler(std::shared_ptr<Handler> handler) {
  std::lock_guard<std::mutex> lock(mu_);
  auto current = handlers_.load();
  for (const auto& h : *current) {
    if (h == handler) return;
  }
  auto next = std::make_shared<HandlerList>(*current);
  next->push_back(std::move(handler));
  handlers_.store(std::move(next));
}

void Logger::removeHandler(const std::shared_ptr<Handler>& handler) {
  std::lock_guard<std::mutex> lock(mu_);
  auto next = std::make_shared<HandlerList>(*handlers_.load());
  std::erase(*next, handler);
  handlers_.store(std::move(next));
}

std::vector<std::shared_ptr<Handler>> Logger::handlers() const {
  return *handlers_.load();
}

void Logger::log(int level, std::string_view message) {
  if (!isEnabledFor(level)) return;
  LogRecord record;
  record.name = name_;
  record.levelno = level;
  record.levelname = getLevelName(level);
  record.message = std::string(message);
  record.processName = CurrentProcessName();
  record.process = static_cast<int>(::getpid());
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  record.created = static_cast<double>(tv.tv_sec) + tv.tv_usec / 1e6;
  auto handlers = handlers_.load();
  if (handlers->empty()) {
    // Python's logging.lastResort: with no handler anywhere, warnings and worse
    // still reach stderr.
    if (level >= WARNING) WriteAll(2, record.message + "\n");
    return;
  }
  for (const auto& handler : *handlers) handler->handle(record);
}

void SetProcessNameProvider(std::string (*provider)()) {
  process_name_provider.store(provider, std::memory_order_release);
}

}  // namespace logging

logging::Logger& get_logger() {
  // Never destroyed: children and exit handlers may log after static
  // destruction began.
  static auto* const logger = new logging::Logger("multiprocessing");
  return *logger;
}

logging::Logger& log_to_stderr(std::optional<int> level) {
  static const std::shared_ptr<logging::Handler> handler = [] {
    auto h = std::make_shared<logging::StreamHandler>(2);
    h->setFormatter(logging::Formatter(logging::kDefaultFormat));
    return h;
  }();
  logging::Logger& logger = get_logger();
  logger.addHandler(handler);
  if (level) logger.setLevel(*level);
  return logger;
}

}  // namespace multiprocessing
