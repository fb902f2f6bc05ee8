// runtime/internal/paged_table.h
//
// PagedTable<T>: a table that grows at the end, whose elements never move
// (a TimerEntry linked into a wheel stays where it is), indexed in a few
// instructions. Worker's I/O slot table: every epoll event looks its slot
// up, four times with the dispatch prefetch (worker_io.cc step 3). It used
// to be a std::deque, whose size() and operator[] cost about 37
// instructions a call in Debian's libstdc++ (cachegrind, http_hello:
// 173 instructions a request in slot lookups); here a lookup is a shift,
// a mask and two loads. Pages of 2^kPageBits elements, allocated as the
// table grows and kept until it is destroyed. Single-threaded: the owner
// guards it. NOT for users.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace weft::internal {

template <class T, unsigned kPageBits = 8>
class PagedTable {
 public:
  static constexpr size_t kPageSize = size_t{1} << kPageBits;

  size_t size() const { return size_; }

  // Precondition: i < size().
  T& operator[](size_t i) { return pages_[i >> kPageBits][i & (kPageSize - 1)]; }
  const T& operator[](size_t i) const { return pages_[i >> kPageBits][i & (kPageSize - 1)]; }

  // A new value-initialised element at the end; earlier elements stay put.
  T& emplace_back() {
    if ((size_ & (kPageSize - 1)) == 0 && (size_ >> kPageBits) == pages_.size()) {
      pages_.push_back(std::make_unique<T[]>(kPageSize));
    }
    return (*this)[size_++];
  }

 private:
  std::vector<std::unique_ptr<T[]>> pages_;
  size_t size_ = 0;
};

}  // namespace weft::internal
