#include <doctest/doctest.h>
#include "absl/status/statusor.h"
#include <boost/context/detail/fcontext.hpp>
TEST_CASE("smoke") { absl::StatusOr<int> s = absl::InternalError("x"); CHECK(!s.ok()); }
