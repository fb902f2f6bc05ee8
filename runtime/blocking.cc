#include "runtime/blocking.h"

#include <condition_variable>
#include <mutex>
#include <thread>

namespace weft::internal {

namespace {

// The pool lives for the whole process (never destroyed, so no thread is
// joined during static destruction). Threads wait on a condition variable:
// they are not workers, and blocking is their job.
class BlockingPool {
 public:
  void submit(BlockingJob* job) {
    bool start = false;
    {
      std::lock_guard<std::mutex> g(mu_);
      job->next = nullptr;
      if (tail_ != nullptr) {
        tail_->next = job;
      } else {
        head_ = job;
      }
      tail_ = job;
      ++queued_;
      if (idle_ < queued_ && threads_ < kMaxBlockingThreads) {
        ++threads_;
        start = true;
      }
    }
    if (start) {
      std::thread([this] { run(); }).detach();
    } else {
      cv_.notify_one();
    }
  }
  int threads() {
    std::lock_guard<std::mutex> g(mu_);
    return threads_;
  }

 private:
  void run() {
    std::unique_lock<std::mutex> l(mu_);
    for (;;) {
      ++idle_;
      cv_.wait(l, [&] { return head_ != nullptr; });
      --idle_;
      BlockingJob* job = head_;
      head_ = job->next;
      if (head_ == nullptr) tail_ = nullptr;
      --queued_;
      l.unlock();
      job->fn();
      job->done.set(absl::OkStatus());  // the job may be gone after this
      l.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  BlockingJob* head_ = nullptr;
  BlockingJob* tail_ = nullptr;
  int queued_ = 0;
  int idle_ = 0;
  int threads_ = 0;
};

BlockingPool& pool() {
  static BlockingPool* p = new BlockingPool();
  return *p;
}

}  // namespace

void submit_blocking(BlockingJob* job) { pool().submit(job); }
int blocking_threads() { return pool().threads(); }

}  // namespace weft::internal
