// Crash-safe file replacement (the checkpoint pattern): bytes go to a temporary file in the
// target's directory, which is fsynced, renamed over the target and followed by an fsync of the
// directory. A crash at any point leaves either the complete old file or the complete new one;
// an exception or destruction before commit() removes the temporary file. POSIX only.
#pragma once

#include <cstddef>
#include <string>

namespace lathe {

class AtomicFileWriter {
 public:
  // Creates the temporary file; throws a lathe::Error naming the path and the system error.
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t nbytes);
  // fsync, close, rename over the target, fsync the directory.
  void commit();
  const std::string& path() const { return path_; }
  size_t bytesWritten() const { return written_; }

 private:
  std::string path_, temp_path_;
  int fd_ = -1;
  size_t written_ = 0;
  bool committed_ = false;
};

// Writes `bytes` to `path` through AtomicFileWriter.
void writeFileAtomically(const std::string& path, const std::string& bytes);

}  // namespace lathe
