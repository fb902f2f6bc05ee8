// net/common.h
//
// What every weft::net socket type shares: error_number() to read the
// errno a status carries, and the ByteSpan concept of the write calls.
#pragma once

#include <optional>
#include <span>
#include <string_view>
#include <type_traits>

#include "absl/status/status.h"

namespace weft::net {

// error_number() is the errno a status from weft::net carries, if any
// (ECONNRESET, EPIPE, ...).
std::optional<int> error_number(const absl::Status& s);

// ByteSpan: contiguous bytes that are not text. Write calls take a
// std::string_view; other byte ranges (std::span<const char>,
// std::vector<char>) go through this overload. A string literal is text:
// its terminating NUL is never sent.
template <class S>
concept ByteSpan = std::is_convertible_v<const S&, std::span<const char>> &&
                   !std::is_convertible_v<const S&, std::string_view>;

}  // namespace weft::net
