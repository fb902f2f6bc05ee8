// lifecycle/select.h
//
// weft::select(): wait for the first of several events, like Go's select.
//
//   auto r = weft::select(weft::recv(requests), weft::recv(control),
//                         weft::after(absl::Seconds(1)), weft::cancelled(stop));
//   if (!r.ok()) return r.status();               // this fiber was cancelled
//   switch (r->index()) {
//     case 0: handle(std::get<0>(*r)); break;     // absl::StatusOr<Request>
//     case 1: ...                                  // absl::StatusOr<Command>
//     case 2: /* a second passed */ break;
//     case 3: /* stop was cancelled */ break;
//   }
//
// Cases and what each yields in the variant:
//   recv(ch)          absl::StatusOr<T>: a value, or kOutOfRange if the
//                     channel is closed and drained (always ready then)
//   send(ch, v)       absl::Status: OK once v is in the channel, or
//                     kFailedPrecondition if it is closed
//   after(d), at(t)   std::monostate: the time came
//   cancelled(token)  std::monostate: the token was cancelled
//   finished(handle)  std::monostate: the fiber ended; handle.join() now
//                     returns at once
//   is_set(event)     std::monostate: the event is set
//   net::readable(s), net::writable(s)   (net/select.h) absl::Status: a
//                     socket call would not wait now, or why not
//
// Exactly one case completes, and only that one has an effect: a value is
// taken from (or put into) a channel only by the case that won, so nothing
// is lost from cases that did not. Among cases ready when select() is
// called, the choice is uniformly random (fair); otherwise the first to
// become ready wins. select() returns kCancelled if the calling fiber is
// cancelled before any case completes (a case that completes at the same
// moment wins instead). Must be called on a fiber.
//
// # The select protocol
//   1. Poll: try every case without waiting, in a random order (a
//      shuffle, not a rotation: rotating from a random start favours the
//      case after one that is not ready); the first ready one completes
//      and select() returns.
//   2. Arm: make one Waiter per case, all sharing one park sequence and one
//      SelectGroup (park.h), and queue each on its source under the
//      source's lock, re-checking readiness there. A case found ready wins
//      the group (CAS) and completes under that lock.
//   3. A waker that pops a case's waiter completes its operation only if
//      it wins the group (pop_winnable); losers are dropped as if absent.
//      The winner claims the park and schedules the fiber.
//   4. Park (cancellable, until the earliest after()/at()). Woken with no
//      winner, the fiber tries to win for the timer case or, if it was
//      cancelled, for "cancelled"; losing that CAS means a case won
//      concurrently, and the case is honoured.
//   5. Disarm: take every waiter off its source under the source's lock
//      (remove a token callback, waiting for it if it runs). After that no
//      waker touches the frame, and the winner's operation is complete.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/cancel.h"
#include "runtime/internal/cancel.h"
#include "runtime/internal/park.h"
#include "runtime/platform/check.h"
#include "runtime/platform/monotonic.h"
#include "runtime/runtime.h"
#include "sync/channel.h"
#include "sync/event.h"

namespace weft {

namespace select_case {

enum Arm { kDone, kQueued, kLost };

inline Arm from_source(internal::SelectArm a) {
  switch (a) {
    case internal::SelectArm::kDone:
      return kDone;
    case internal::SelectArm::kQueued:
      return kQueued;
    case internal::SelectArm::kLost:
      break;
  }
  return kLost;
}

template <class T>
Arm from_channel(typename Channel<T>::SelectArm a) {
  switch (a) {
    case Channel<T>::kDone:
      return kDone;
    case Channel<T>::kQueued:
      return kQueued;
    case Channel<T>::kLost:
      break;
  }
  return kLost;
}

template <class T>
struct Recv {
  using Result = absl::StatusOr<T>;
  Channel<T>* ch;
  std::optional<T> slot;
  bool poll(Result* out) {
    Result r = ch->try_recv();
    if (r.ok() || absl::IsOutOfRange(r.status())) {
      *out = std::move(r);
      return true;
    }
    return false;
  }
  Arm arm(internal::Waiter& w, Result* out) {
    return from_channel<T>(ch->select_recv(w, &slot, out));
  }
  void disarm(internal::Waiter& w) { ch->select_disarm_recv(w); }
  Result take(internal::Waiter& w) {
    if (Channel<T>::select_closed(w)) return absl::OutOfRangeError("channel closed");
    return std::move(*slot);
  }
  int64_t deadline() const { return -1; }
};

template <class T>
struct Send {
  using Result = absl::Status;
  Channel<T>* ch;
  T value;
  bool poll(Result* out) {
    absl::Status s = ch->try_send(std::move(value));  // untouched on failure
    if (s.ok() || absl::IsFailedPrecondition(s)) {
      *out = s;
      return true;
    }
    return false;
  }
  Arm arm(internal::Waiter& w, Result* out) {
    return from_channel<T>(ch->select_send(w, &value, out));
  }
  void disarm(internal::Waiter& w) { ch->select_disarm_send(w); }
  Result take(internal::Waiter& w) {
    if (Channel<T>::select_closed(w)) return absl::FailedPreconditionError("send on a closed channel");
    return absl::OkStatus();  // a receiver took the value
  }
  int64_t deadline() const { return -1; }
};

struct After {
  using Result = std::monostate;
  int64_t at_nanos;
  bool poll(Result*) { return internal::monotonic_now() >= at_nanos; }
  Arm arm(internal::Waiter&, Result*) { return kQueued; }  // the park's deadline
  void disarm(internal::Waiter&) {}
  Result take(internal::Waiter&) { return {}; }
  int64_t deadline() const { return at_nanos; }
};

struct Cancelled {
  using Result = std::monostate;
  CancellationToken token;
  struct Node final : internal::CancelNode {
    Node() = default;
    Node(Node&&) noexcept {}  // cases move before they are armed: nothing linked to move
    internal::SelectGroup* group = nullptr;
    int idx = 0;
    void on_cancel(internal::CancelCause) noexcept override {
      if (group->try_win(idx) && internal::try_claim(group->fiber, group->seq)) internal::schedule(group->fiber);
    }
  } node;
  bool registered = false;
  bool poll(Result*) { return token.cancelled(); }
  Arm arm(internal::Waiter& w, Result*);
  void disarm(internal::Waiter&) {
    if (registered) token.state()->remove(&node);
  }
  Result take(internal::Waiter&) { return {}; }
  int64_t deadline() const { return -1; }
};

struct Finished {
  using Result = std::monostate;
  internal::JoinStateBase* state;
  bool poll(Result*) { return state->done(); }
  Arm arm(internal::Waiter& w, Result*) { return from_source(state->select_arm(w)); }
  void disarm(internal::Waiter& w) { state->select_disarm(w); }
  Result take(internal::Waiter&) { return {}; }
  int64_t deadline() const { return -1; }
};

struct EventSet {
  using Result = std::monostate;
  Event* event;
  bool poll(Result*) { return event->is_set(); }
  Arm arm(internal::Waiter& w, Result*) { return from_source(event->select_arm(w)); }
  void disarm(internal::Waiter& w) { event->select_disarm(w); }
  Result take(internal::Waiter&) { return {}; }
  int64_t deadline() const { return -1; }
};

}  // namespace select_case

template <class T>
select_case::Recv<T> recv(Channel<T>& ch) {
  return {&ch, std::nullopt};
}
template <class T, class U>
select_case::Send<T> send(Channel<T>& ch, U&& v) {
  return {&ch, T(std::forward<U>(v))};
}
inline select_case::After at(absl::Time t) { return {internal::to_monotonic(t)}; }
inline select_case::After after(absl::Duration d) { return at(absl::Now() + d); }
inline select_case::Cancelled cancelled(const CancellationToken& t) { return {t, {}, false}; }
template <class T>
select_case::Finished finished(const JoinHandle<T>& h) {
  WEFT_CHECK(h.joinable(), "weft::finished() on an empty JoinHandle");
  return {h.internal_state()};
}
inline select_case::EventSet is_set(Event& e) { return {&e}; }

namespace internal {

// select_random() is a random index below n.
size_t select_random(size_t n);

// select_order() is a uniformly random order of n cases (Fisher-Yates, as
// Go's pollorder): the first ready case in it is a uniform choice among
// the ready ones, wherever the cases that are not ready sit.
template <size_t N>
std::array<size_t, N> select_order() {
  std::array<size_t, N> order;
  for (size_t i = 0; i < N; ++i) order[i] = i;
  for (size_t i = N - 1; i > 0; --i) std::swap(order[i], order[select_random(i + 1)]);
  return order;
}

template <class Tuple, class F, size_t... Is>
void visit_case(Tuple& t, size_t i, F&& f, std::index_sequence<Is...>) {
  ((i == Is ? (void)f(std::get<Is>(t), std::integral_constant<size_t, Is>{}) : void()), ...);
}

}  // namespace internal

template <class... Cases>
absl::StatusOr<std::variant<typename std::decay_t<Cases>::Result...>> select(Cases&&... cases) {
  using Out = std::variant<typename std::decay_t<Cases>::Result...>;
  constexpr size_t N = sizeof...(Cases);
  static_assert(N >= 1, "weft::select() needs at least one case");
  using Seq = std::make_index_sequence<N>;
  internal::Fiber* self = internal::current_fiber();
  WEFT_CHECK(self != nullptr, "weft::select() must be called on a fiber");
  std::tuple<std::decay_t<Cases>...> cs(std::forward<Cases>(cases)...);
  // Not std::optional<Out>: g++ 12 reports a disengaged optional of a
  // variant of statuses as maybe used uninitialized.
  Out out;
  bool have = false;
  const std::array<size_t, N> order = internal::select_order<N>();

  // Step 1.
  for (size_t k = 0; k < N && !have; ++k) {
    internal::visit_case(cs, order[k], [&](auto& c, auto I) {
      typename std::decay_t<decltype(c)>::Result r;
      if (c.poll(&r)) {
        out.template emplace<I>(std::move(r));
        have = true;
      }
    }, Seq{});
  }
  if (have) return out;
  if (internal::fiber_cancelled(self)) return absl::CancelledError("select cancelled");

  // Step 2.
  internal::SelectGroup group(self);
  std::array<std::optional<internal::Waiter>, N> ws;
  bool armed[N] = {};
  int64_t deadline = -1;
  int deadline_case = -1;
  bool stop = false;
  for (size_t k = 0; k < N && !stop; ++k) {
    const size_t i = order[k];
    internal::visit_case(cs, i, [&](auto& c, auto I) {
      ws[I].emplace(&group, static_cast<int>(I));
      typename std::decay_t<decltype(c)>::Result r;
      switch (c.arm(*ws[I], &r)) {
        case select_case::kDone:
          out.template emplace<I>(std::move(r));
          have = true;
          stop = true;
          break;
        case select_case::kQueued:
          armed[I] = true;
          if (int64_t d = c.deadline(); d >= 0 && (deadline < 0 || d < deadline)) {
            deadline = d;
            deadline_case = static_cast<int>(I);
          }
          break;
        case select_case::kLost:
          stop = true;
          break;
      }
    }, Seq{});
  }

  // Step 4.
  constexpr int kCancelledCase = static_cast<int>(N);
  constexpr int kShutdownCase = static_cast<int>(N) + 1;
  if (!stop) {
    internal::park(self, group.seq, deadline, internal::Cancellable::kYes);
    if (group.winner.load(std::memory_order_acquire) < 0) {
      int mine;
      if (internal::unwind_pending(self)) {
        mine = kShutdownCase;
      } else if (deadline_case >= 0 && internal::monotonic_now() >= deadline) {
        mine = deadline_case;
      } else {
        mine = kCancelledCase;
      }
      (void)group.try_win(mine);
    }
  }

  // Step 5.
  for (size_t i = 0; i < N; ++i) {
    if (!armed[i]) continue;
    internal::visit_case(cs, i, [&](auto& c, auto I) { c.disarm(*ws[I]); }, Seq{});
  }
  internal::unwind_if_cancelled(self);
  if (have) return out;
  const int winner = group.winner.load(std::memory_order_acquire);
  if (winner == kCancelledCase || winner < 0) return absl::CancelledError("select cancelled");
  internal::visit_case(cs, static_cast<size_t>(winner), [&](auto& c, auto I) {
    out.template emplace<I>(c.take(*ws[I]));
  }, Seq{});
  return out;
}

inline select_case::Arm select_case::Cancelled::arm(internal::Waiter& w, Result*) {
  node.group = w.group();
  node.idx = w.case_index();
  if (!token.state()->add(&node)) return w.try_win() ? kDone : kLost;  // already cancelled
  registered = true;
  return kQueued;
}

}  // namespace weft
