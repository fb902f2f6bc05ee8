// tools/bench/fs_bench_util.h
//
// The file workloads that fs_benchmark and uring_benchmark both run, kept
// in one place so that the two measure the same thing: cold reads of a few
// large files by fibers on fs::File, and stats of many small files, by a
// plain loop and by fibers on fs::stat. Timing stays with the callers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/runtime.h"

namespace weft::bench {

// kReadChunk is the size of each read of the cold-read workload.
inline constexpr size_t kReadChunk = 1 << 20;

// write_big_files() writes `count` files of `mib` MiB each into dir (named
// big0, big1, ...; one byte in every 4 KiB page set, synced to disk) from
// a fiber of rt, and returns their paths. Aborts on failure.
std::vector<std::string> write_big_files(Runtime* rt, const std::string& dir, int count, int64_t mib);

// write_small_files() creates `count` files of one byte in dir (named s0,
// s1, ...) with plain system calls, and returns their paths. Aborts on
// failure.
std::vector<std::string> write_small_files(const std::string& dir, int count);

// read_on_fibers() reads each file whole on a fiber of its own through
// fs::File::read, kReadChunk bytes at a time, and returns the bytes read
// by all of them. Aborts on failure.
uint64_t read_on_fibers(Runtime* rt, const std::vector<std::string>& files);

// plain_stats() calls stat(2) `n` times on this thread, going round the
// paths in order, and returns the sum of the sizes seen. Aborts on failure.
uint64_t plain_stats(const std::vector<std::string>& paths, int64_t n);

// stats_on_fibers() makes the same `n` stats from `fibers` fibers calling
// fs::stat (fiber f takes stats f, f + fibers, ...), and returns the same
// sum as plain_stats(). Aborts on failure.
uint64_t stats_on_fibers(Runtime* rt, const std::vector<std::string>& paths, int64_t n, int fibers);

}  // namespace weft::bench
