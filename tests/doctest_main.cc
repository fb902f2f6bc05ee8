#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include "tests/test_util.h"
#include <cstdlib>
#include <cstring>
#include <vector>
namespace weft::testing {
namespace { int64_t g_scale = 1; }
int64_t scale() { return g_scale; }
}
int main(int argc, char** argv) {
  std::vector<char*> args;
  if (const char* e = std::getenv("WEFT_STRESS_SCALE")) weft::testing::g_scale = std::atoll(e);
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--scale=", 8) == 0) { weft::testing::g_scale = std::atoll(argv[i] + 8); continue; }
    args.push_back(argv[i]);
  }
  if (weft::testing::g_scale < 1) weft::testing::g_scale = 1;
  doctest::Context ctx(static_cast<int>(args.size()), args.data());
  return ctx.run();
}
