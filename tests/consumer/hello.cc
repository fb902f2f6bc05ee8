// A program in another workspace, built against @weft.
#include <cstdio>

#include "runtime/runtime.h"
#include "sync/sync.h"

int main() {
  auto rt = weft::Runtime::create({.workers = 2});
  if (!rt.ok()) return 1;
  int sum = (*rt)->block_on([] {
    weft::Channel<int> ch(4);
    auto producer = weft::spawn([&] {
      for (int i = 1; i <= 10; ++i) (void)ch.send(i);
      ch.close();
    });
    int s = 0;
    for (auto v = ch.recv(); v.ok(); v = ch.recv()) s += *v;
    producer.join();
    return s;
  });
  std::printf("consumer: sum %d\n", sum);
  return sum == 55 ? 0 : 1;
}
