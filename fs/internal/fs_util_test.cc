// The write loop that fs::write_file, append_file, copy_file and File's
// write_all/pwrite share: short writes, EINTR, errors and a write(2) that
// takes nothing.
#include "fs/internal/fs_util.h"

#include <doctest/doctest.h>

#include <cerrno>
#include <string>
#include <vector>

namespace weft::fs::internal {
namespace {

TEST_CASE("write_all_with: short writes and EINTR add up to the whole buffer") {
  std::string sink;
  int calls = 0;
  uint64_t done = 99;
  absl::Status s = write_all_with("abcdefghij", &done, "write_file", "/x", "write",
                                  [&](const char* p, size_t n) -> ssize_t {
                                    ++calls;
                                    if (calls % 2 == 0) {
                                      errno = EINTR;
                                      return -1;
                                    }
                                    size_t take = n < 3 ? n : 3;
                                    sink.append(p, take);
                                    return static_cast<ssize_t>(take);
                                  });
  REQUIRE(s.ok());
  CHECK(done == 10);
  CHECK(sink == "abcdefghij");
  CHECK(calls == 7);  // 4 writes of 3, 3, 3, 1 and 3 EINTRs between them
}

TEST_CASE("write_all_with: a write that takes 0 bytes is an error, not an endless loop") {
  std::string sink;
  int calls = 0;
  uint64_t done = 0;
  absl::Status s = write_all_with("abcdef", &done, "append_file", "/dev/odd", "write",
                                  [&](const char* p, size_t n) -> ssize_t {
                                    if (++calls > 1) return 0;
                                    sink.append(p, 2);
                                    (void)n;
                                    return 2;
                                  });
  CHECK(calls == 2);
  CHECK(done == 2);
  CHECK(sink == "ab");
  CHECK(s.code() == absl::StatusCode::kResourceExhausted);
  CHECK(std::string(s.message()) ==
        "fs::append_file(\"/dev/odd\"): write returned 0 after 2 of 6 bytes: the file takes no more");
}

TEST_CASE("write_all_with: an errno names the call, the path and the progress") {
  uint64_t done = 0;
  int calls = 0;
  absl::Status s = write_all_with("abcdef", &done, "File::pwrite", "/f", "pwrite",
                                  [&](const char*, size_t) -> ssize_t {
                                    if (++calls == 1) return 4;
                                    errno = ENOSPC;
                                    return -1;
                                  });
  CHECK(done == 4);
  CHECK(s.code() == absl::StatusCode::kResourceExhausted);
  std::string m(s.message());
  CHECK(m.find("fs::File::pwrite(\"/f\"): pwrite (wrote 4 of 6 bytes)") == 0);
  CHECK(m.find("No space left on device") != std::string::npos);
}

TEST_CASE("write_all_with: an empty buffer makes no call") {
  uint64_t done = 5;
  bool called = false;
  absl::Status s = write_all_with("", &done, "write_file", "/x", "write", [&](const char*, size_t) -> ssize_t {
    called = true;
    return 0;
  });
  CHECK(s.ok());
  CHECK(done == 0);
  CHECK_FALSE(called);
}

}  // namespace
}  // namespace weft::fs::internal
