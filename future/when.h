// future/when.h
//
// when_all() and when_any(): one future for several.
//
//   weft::Future<std::vector<int>> all = weft::when_all(std::move(futures));
//   weft::Future<std::tuple<int, std::string>> both = weft::when_all(std::move(a), std::move(b));
//   weft::Future<weft::WhenAnyResult<int>> first = weft::when_any(std::move(futures));
//
// when_all succeeds with every value, in the order of its arguments, once
// all have succeeded; it fails with the first failure to arrive, at once,
// and drops the others' results as they come. A Future<void> argument of
// the variadic form is a std::monostate in the tuple; the vector form of
// Future<void> gives a Future<void>.
//
// when_any completes with the first future to complete, whichever way: its
// index and value, or its failure. The others keep running; their results
// are destroyed when they arrive.
//
// The result future's callbacks run on the runtime of the first argument.
// The arguments' results are gathered by forwarders that run where each
// argument completes (a plain thread included; they only move values),
// never by a fiber per argument. An empty when_all() is ready at once and
// must be called on a runtime, whose fibers run its callbacks; an empty
// when_any() never completes and aborts.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "future/future.h"

namespace weft {

// The result of when_any(): which future completed first, and its value.
template <class T>
struct WhenAnyResult {
  size_t index;
  T value;
};
template <>
struct WhenAnyResult<void> {
  size_t index;
};

namespace internal {

// Part: the forwarder installed on one argument of a combinator; hands
// its result to `on_done(index, src, runner)` of the shared gatherer.
template <class T, class Gather>
class Part final : public Continuation {
 public:
  Part(std::shared_ptr<Gather> g, size_t index) : Continuation(true), g_(std::move(g)), index_(index) {}
  void run(FutureStateBase* base, Runner* runner) override {
    g_->on_done(index_, static_cast<FutureState<T>*>(base), runner);
  }

 private:
  std::shared_ptr<Gather> g_;
  size_t index_;
};

inline constexpr const char* kGatherWhat = "weft::when_all()/when_any()";

template <class T>
class AllOfVector {
 public:
  using Out = std::conditional_t<std::is_void_v<T>, void, std::vector<T>>;
  AllOfVector(size_t n, Producer<Out> out) : remaining_(n), out_(std::move(out)) {
    if constexpr (!std::is_void_v<T>) values_.resize(n);
  }
  void on_done(size_t i, FutureState<T>* src, Runner* runner) {
    if (src->failed()) {
      if (!finished_.exchange(true, std::memory_order_acq_rel)) out_.fail(kGatherWhat, src->take_failure(), runner);
      return;
    }
    if constexpr (!std::is_void_v<T>) values_[i].emplace(std::move(src->value()));
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1 &&
        !finished_.exchange(true, std::memory_order_acq_rel)) {
      if constexpr (std::is_void_v<T>) {
        out_.set_value(kGatherWhat, runner, std::monostate{});
      } else {
        std::vector<T> all;
        all.reserve(values_.size());
        for (auto& v : values_) all.push_back(std::move(*v));
        out_.set_value(kGatherWhat, runner, std::move(all));
      }
    }
  }

 private:
  std::atomic<size_t> remaining_;
  std::atomic<bool> finished_{false};
  std::vector<std::optional<Stored<T>>> values_;  // each written by one part, read by the last
  Producer<Out> out_;
};

template <class... Ts>
class AllOfTuple {
 public:
  using Out = std::tuple<Stored<Ts>...>;
  explicit AllOfTuple(Producer<Out> out) : out_(std::move(out)) {}
  template <size_t I, class T>
  void on_done_at(FutureState<T>* src, Runner* runner) {
    if (src->failed()) {
      if (!finished_.exchange(true, std::memory_order_acq_rel)) out_.fail(kGatherWhat, src->take_failure(), runner);
      return;
    }
    std::get<I>(values_).emplace(std::move(src->value()));
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1 &&
        !finished_.exchange(true, std::memory_order_acq_rel)) {
      out_.set_value(kGatherWhat, runner,
                     std::apply([](auto&... v) { return Out(std::move(*v)...); }, values_));
    }
  }

 private:
  std::atomic<size_t> remaining_{sizeof...(Ts)};
  std::atomic<bool> finished_{false};
  std::tuple<std::optional<Stored<Ts>>...> values_;
  Producer<Out> out_;
};

// TuplePart: Part for argument I of the variadic when_all.
template <size_t I, class T, class Gather>
class TuplePart final : public Continuation {
 public:
  explicit TuplePart(std::shared_ptr<Gather> g) : Continuation(true), g_(std::move(g)) {}
  void run(FutureStateBase* base, Runner* runner) override {
    g_->template on_done_at<I>(static_cast<FutureState<T>*>(base), runner);
  }

 private:
  std::shared_ptr<Gather> g_;
};

template <class T>
class AnyOf {
 public:
  explicit AnyOf(Producer<WhenAnyResult<T>> out) : out_(std::move(out)) {}
  void on_done(size_t i, FutureState<T>* src, Runner* runner) {
    if (won_.exchange(true, std::memory_order_acq_rel)) return;  // a loser: its result dies with src
    if (src->failed()) {
      out_.fail("weft::when_any()", src->take_failure(), runner);
    } else if constexpr (std::is_void_v<T>) {
      out_.set_value("weft::when_any()", runner, WhenAnyResult<void>{i});
    } else {
      out_.set_value("weft::when_any()", runner, WhenAnyResult<T>{i, std::move(src->value())});
    }
  }

 private:
  std::atomic<bool> won_{false};
  Producer<WhenAnyResult<T>> out_;
};

}  // namespace internal

// when_all(std::vector<Future<T>>)
//
// A future of every value (Future<void> for void), or of the first failure.
template <class T>
Future<std::conditional_t<std::is_void_v<T>, void, std::vector<T>>> when_all(std::vector<Future<T>> futures) {
  using G = internal::AllOfVector<T>;
  using Out = typename G::Out;
  if (futures.empty()) {
    Promise<Out> p;  // the calling fiber's runtime
    if constexpr (std::is_void_v<T>) {
      p.set_value();
    } else {
      p.set_value(std::vector<T>{});
    }
    return p.get_future();
  }
  std::vector<internal::FutureState<T>*> states;
  states.reserve(futures.size());
  for (auto& f : futures) states.push_back(internal::FutureAccess::release(f));
  auto [out, producer] = internal::new_linked<Out>(states[0]->executor(), "weft::when_all()");
  auto g = std::make_shared<G>(states.size(), std::move(producer));
  for (size_t i = 0; i < states.size(); ++i) {
    states[i]->set_continuation(new internal::Part<T, G>(g, i), nullptr);
  }
  return std::move(out);
}

// when_all(Future<Ts>...)
//
// A future of a tuple of the values (std::monostate for a Future<void>),
// or of the first failure.
template <class T0, class... Ts>
Future<std::tuple<internal::Stored<T0>, internal::Stored<Ts>...>> when_all(Future<T0> f0, Future<Ts>... fs) {
  using G = internal::AllOfTuple<T0, Ts...>;
  using Out = typename G::Out;
  auto* s0 = internal::FutureAccess::release(f0);
  auto [out, producer] = internal::new_linked<Out>(s0->executor(), "weft::when_all()");
  auto g = std::make_shared<G>(std::move(producer));
  auto states = std::make_tuple(s0, internal::FutureAccess::release(fs)...);
  [&]<size_t... I>(std::index_sequence<I...>) {
    (std::get<I>(states)->set_continuation(
         new internal::TuplePart<I, std::tuple_element_t<I, std::tuple<T0, Ts...>>, G>(g),
         nullptr),
     ...);
  }(std::index_sequence_for<T0, Ts...>{});
  return std::move(out);
}

// when_any(std::vector<Future<T>>)
//
// A future of the first future to complete: its index and value, or its
// failure. At least one future is required.
template <class T>
Future<WhenAnyResult<T>> when_any(std::vector<Future<T>> futures) {
  WEFT_CHECK(!futures.empty(), "weft::when_any() of no futures would never complete");
  using G = internal::AnyOf<T>;
  std::vector<internal::FutureState<T>*> states;
  states.reserve(futures.size());
  for (auto& f : futures) states.push_back(internal::FutureAccess::release(f));
  auto [out, producer] = internal::new_linked<WhenAnyResult<T>>(states[0]->executor(), "weft::when_any()");
  auto g = std::make_shared<G>(std::move(producer));
  for (size_t i = 0; i < states.size(); ++i) {
    states[i]->set_continuation(new internal::Part<T, G>(g, i), nullptr);
  }
  return std::move(out);
}

// when_any(Future<T>...)
template <class T, class... Ts>
  requires(std::is_same_v<Future<T>, Ts> && ...)
Future<WhenAnyResult<T>> when_any(Future<T> f0, Ts... fs) {
  std::vector<Future<T>> v;
  v.reserve(1 + sizeof...(Ts));
  v.push_back(std::move(f0));
  (v.push_back(std::move(fs)), ...);
  return when_any(std::move(v));
}

}  // namespace weft
