#include "lifecycle/select.h"

namespace weft::internal {

size_t select_random(size_t n) {
  // xorshift64*, per thread: cheap, and good enough to spread the choice.
  thread_local uint64_t state = 0x9e3779b97f4a7c15ULL ^ reinterpret_cast<uintptr_t>(&state);
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return static_cast<size_t>((state * 0x2545f4914f6cdd1dULL) >> 33) % n;
}

}  // namespace weft::internal
