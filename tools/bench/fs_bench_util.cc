#include "tools/bench/fs_bench_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <span>

#include "fs/fs.h"

namespace weft::bench {

std::vector<std::string> write_big_files(Runtime* rt, const std::string& dir, int count, int64_t mib) {
  std::vector<std::string> files;
  rt->block_on([&] {
    std::string data(static_cast<size_t>(mib) << 20, '\0');
    for (size_t i = 0; i < data.size(); i += 4096) data[i] = static_cast<char>(i >> 12);
    for (int i = 0; i < count; ++i) {
      files.push_back(dir + "/big" + std::to_string(i));
      if (!fs::write_file(files.back(), data, {.sync = true}).ok()) std::abort();
    }
  });
  return files;
}

std::vector<std::string> write_small_files(const std::string& dir, int count) {
  std::vector<std::string> small;
  for (int i = 0; i < count; ++i) {
    small.push_back(dir + "/s" + std::to_string(i));
    int fd = ::open(small.back().c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || ::write(fd, "x", 1) != 1) std::abort();
    ::close(fd);
  }
  return small;
}

uint64_t read_on_fibers(Runtime* rt, const std::vector<std::string>& files) {
  return rt->block_on([&] {
    std::vector<JoinHandle<uint64_t>> hs;
    for (auto& f : files) {
      hs.push_back(spawn([&f] {
        auto file = fs::File::open(f);
        if (!file.ok()) std::abort();
        auto b = std::make_unique<char[]>(kReadChunk);
        uint64_t n = 0;
        for (;;) {
          auto got = file->read(std::span<char>(b.get(), kReadChunk));
          if (!got.ok()) std::abort();
          if (*got == 0) break;
          n += *got;
        }
        return n;
      }));
    }
    uint64_t t = 0;
    for (auto& h : hs) t += h.join();
    return t;
  });
}

uint64_t plain_stats(const std::vector<std::string>& paths, int64_t n) {
  const int64_t count = static_cast<int64_t>(paths.size());
  uint64_t sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    struct stat st;
    if (::stat(paths[static_cast<size_t>(i % count)].c_str(), &st) != 0) std::abort();
    sum += static_cast<uint64_t>(st.st_size);
  }
  return sum;
}

uint64_t stats_on_fibers(Runtime* rt, const std::vector<std::string>& paths, int64_t n, int fibers) {
  const int64_t count = static_cast<int64_t>(paths.size());
  return rt->block_on([&] {
    std::vector<JoinHandle<uint64_t>> hs;
    for (int f = 0; f < fibers; ++f) {
      hs.push_back(spawn([&, f] {
        uint64_t s = 0;
        for (int64_t i = f; i < n; i += fibers) {
          auto st = fs::stat(paths[static_cast<size_t>(i % count)]);
          if (!st.ok()) std::abort();
          s += st->size;
        }
        return s;
      }));
    }
    uint64_t t = 0;
    for (auto& h : hs) t += h.join();
    return t;
  });
}

}  // namespace weft::bench
