// AtomicFileWriter over POSIX file descriptors: write loops handle short writes and EINTR;
// the temporary name carries the process id and a counter, so concurrent writers in one
// directory never share a temporary file.
#include "core/io/AtomicFile.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "core/base/Error.h"

namespace lathe {
namespace {

std::string errnoText() {
  return std::strerror(errno);
}

std::string directoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::atomic<uint64_t> g_temp_counter{0};

}  // namespace

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
  LATHE_CHECK(!path_.empty() && path_.back() != '/', "cannot write a file at the path '", path_,
              "'");
  temp_path_ = path_ + ".tmp." + std::to_string(::getpid()) + "." +
               std::to_string(g_temp_counter.fetch_add(1));
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  LATHE_CHECK(fd_ >= 0, path_, ": cannot create the temporary file ", temp_path_, ": ",
              errnoText());
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

void AtomicFileWriter::write(const void* data, size_t nbytes) {
  LATHE_CHECK(fd_ >= 0 && !committed_, path_, ": write after commit");
  const char* p = static_cast<const char*>(data);
  size_t left = nbytes;
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    LATHE_CHECK(n > 0, path_, ": write failed at byte ", written_, " (temporary file ", temp_path_,
                "): ", n < 0 ? errnoText() : std::string("no progress"));
    p += n;
    left -= static_cast<size_t>(n);
    written_ += static_cast<size_t>(n);
  }
}

void AtomicFileWriter::commit() {
  LATHE_CHECK(fd_ >= 0 && !committed_, path_, ": commit twice");
  LATHE_CHECK(::fsync(fd_) == 0, path_, ": fsync of ", temp_path_, " failed: ", errnoText());
  const int rc = ::close(fd_);
  fd_ = -1;
  LATHE_CHECK(rc == 0, path_, ": close of ", temp_path_, " failed: ", errnoText());
  LATHE_CHECK(::rename(temp_path_.c_str(), path_.c_str()) == 0, path_, ": rename from ", temp_path_,
              " failed: ", errnoText());
  committed_ = true;
  const std::string dir = directoryOf(path_);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  LATHE_CHECK(dfd >= 0, path_, ": cannot open its directory ", dir, " to fsync it: ", errnoText());
  const int src = ::fsync(dfd);
  ::close(dfd);
  LATHE_CHECK(src == 0, path_, ": fsync of the directory ", dir, " failed: ", errnoText());
}

void writeFileAtomically(const std::string& path, const std::string& bytes) {
  AtomicFileWriter w(path);
  w.write(bytes.data(), bytes.size());
  w.commit();
}

}  // namespace lathe
