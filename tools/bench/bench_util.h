// tools/bench/bench_util.h
//
// Shared pieces of weft's benchmarks: timing, RSS, and the baselines that
// each benchmark measures in the same run (these machines are noisy, so a
// ratio to a baseline measured seconds apart is what we compare).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace weft::bench {

// now_ns() is CLOCK_MONOTONIC in nanoseconds.
int64_t now_ns();

// rss_bytes() is the resident set size of this process (VmRSS).
int64_t rss_bytes();

// raw_switch_ns() times a raw Boost.Context (fcontext) switch: two contexts
// jump back and forth `n` times on one thread; returns ns per switch.
double raw_switch_ns(int64_t n);

// raw_start_ns() times starting and finishing a raw Boost.Context context
// on a reused stack (make_fcontext + jump in + jump out); ns per context.
double raw_start_ns(int64_t n);

// raw_parked_bytes() is the RSS per raw Boost.Context context left
// suspended on its own 64 KiB mmap'd stack, over `n` contexts.
double raw_parked_bytes(int64_t n);

// flag() returns the value of --name=value in argv, or def.
int64_t flag(int argc, char** argv, const std::string& name, int64_t def);

// flag_str() returns the value of --name=value in argv, or def.
std::string flag_str(int argc, char** argv, const std::string& name, const std::string& def);

// drop_cache() evicts a file from the page cache (fdatasync, then
// posix_fadvise DONTNEED), for cold-read measurements.
void drop_cache(const std::string& path);

// median() of a non-empty list (sorts it).
double median(std::vector<double>* v);

// report() prints one result line: name, ns/op (or the unit given), the
// baseline and the ratio, and the target.
void report(const std::string& name, double value, const std::string& unit, const std::string& baseline_name,
            double baseline, double target_ratio_or_value, const std::string& target_desc);

}  // namespace weft::bench
