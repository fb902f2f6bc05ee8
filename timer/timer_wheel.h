// timer/timer_wheel.h
//
// TimerWheel: a hierarchical timing wheel in abstract ticks (the runtime
// uses 1 tick = 1 ms). Six levels of 64 slots; a slot of level L spans 64^L
// ticks. Insert and cancel are O(1) pointer operations on intrusive
// entries; advance() skips empty slots with per-level occupancy bitmaps, so
// a large jump costs O(levels + fired), not O(ticks). Entries on higher
// levels cascade down as time reaches their slot, so each entry fires at
// exactly its deadline tick: never early, and never later than the
// advance() call that reaches it.
//
// Not thread-safe: the owner serializes calls (each worker guards its wheel
// with a lock). Never reads a clock; tests drive it tick by tick.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace weft {

class TimerWheel;

// TimerEntry: an intrusive timer owned by the caller; the wheel only links
// it. Must not be moved or destroyed while linked.
struct TimerEntry {
  // Set by the user before insert; the wheel never interprets it.
  void* owner = nullptr;

  uint64_t deadline() const { return deadline_; }
  bool linked() const { return where_ != kUnlinked; }

 private:
  friend class TimerWheel;
  static constexpr uint8_t kUnlinked = 0xff;
  static constexpr uint8_t kDue = 6;       // deadline already reached
  static constexpr uint8_t kOverflow = 7;  // beyond the wheel's range
  TimerEntry* prev_ = nullptr;
  TimerEntry* next_ = nullptr;
  uint64_t deadline_ = 0;
  uint8_t where_ = kUnlinked;  // level 0-5, kDue or kOverflow
  uint8_t slot_ = 0;
};

class TimerWheel {
 public:
  static constexpr int kLevels = 6;
  static constexpr int kSlotBits = 6;
  static constexpr int kSlots = 1 << kSlotBits;
  // Ticks covered by the whole wheel: 64^6.
  static constexpr uint64_t kRange = uint64_t{1} << (kLevels * kSlotBits);

  explicit TimerWheel(uint64_t now_tick = 0) : now_(now_tick) {}
  // Entries still linked are left unlinked.
  ~TimerWheel();
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // now() is the tick the wheel has advanced to.
  uint64_t now() const { return now_; }
  // size() is the number of linked entries.
  size_t size() const { return size_; }

  // insert() links e to fire at deadline_tick. O(1). A deadline <= now()
  // fires on the next advance() call, even advance(now()). e must not be
  // linked.
  void insert(TimerEntry* e, uint64_t deadline_tick);

  // cancel() unlinks e. O(1). Returns whether e was linked.
  bool cancel(TimerEntry* e);

  // advance() moves time to now_tick (an earlier tick is treated as now())
  // and calls fn(TimerEntry*) for every entry whose deadline <= now_tick,
  // each exactly once, after unlinking it. fn may insert or cancel any
  // entry, including the one it was given. Returns the number fired.
  template <class Fn>
  size_t advance(uint64_t now_tick, Fn&& fn);

  // next_deadline() is the earliest tick at which advance() may fire
  // something: <= the earliest deadline (it may be earlier for entries on
  // higher levels, whose slot cascades first), now() if something is due,
  // nullopt if the wheel is empty. O(levels).
  std::optional<uint64_t> next_deadline() const;

 private:
  struct Next {
    uint64_t tick;
    int level;  // -1: the overflow boundary
    int slot;
  };
  static int level_for(uint64_t now, uint64_t when);
  void link(TimerEntry** head, TimerEntry* e);
  void unlink(TimerEntry** head, TimerEntry* e);
  TimerEntry** list_of(const TimerEntry* e);
  void place(TimerEntry* e);
  std::optional<Next> next_event() const;

  uint64_t now_;
  size_t size_ = 0;
  uint64_t occupied_[kLevels] = {};
  TimerEntry* slots_[kLevels][kSlots] = {};
  TimerEntry* due_ = nullptr;
  TimerEntry* overflow_ = nullptr;
};

template <class Fn>
size_t TimerWheel::advance(uint64_t now_tick, Fn&& fn) {
  size_t fired = 0;
  // Entries that were already due when inserted.
  while (due_ != nullptr) {
    TimerEntry* e = due_;
    unlink(&due_, e);
    ++fired;
    fn(e);
  }
  for (;;) {
    std::optional<Next> n = next_event();
    if (!n || n->tick > now_tick) break;
    if (n->tick > now_) now_ = n->tick;
    if (n->level < 0) {
      // Time reached a new wheel range: re-place every far entry (some go
      // back to the overflow list, due ones are fired below). No callbacks
      // run while the list is detached.
      TimerEntry* far = overflow_;
      overflow_ = nullptr;
      while (far != nullptr) {
        TimerEntry* e = far;
        far = e->next_;
        e->prev_ = e->next_ = nullptr;
        --size_;
        place(e);
      }
    } else {
      TimerEntry** head = &slots_[n->level][n->slot];
      // Take entries one at a time so fn can cancel the others.
      while (*head != nullptr) {
        TimerEntry* e = *head;
        unlink(head, e);
        if (e->deadline_ <= now_) {
          ++fired;
          fn(e);
        } else {
          place(e);  // cascade to a lower level
        }
      }
    }
    // fn may have inserted entries that are due already.
    while (due_ != nullptr) {
      TimerEntry* e = due_;
      unlink(&due_, e);
      ++fired;
      fn(e);
    }
  }
  if (now_tick > now_) now_ = now_tick;
  return fired;
}

}  // namespace weft
