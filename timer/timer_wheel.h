// timer/timer_wheel.h
//
// TimerWheel: a hierarchical timing wheel in abstract ticks (the runtime
// uses 1 tick = 1 ms), with intrusive, caller-owned TimerEntry nodes.
//
// Six levels of 64 slots; a slot on level L spans 64^L ticks. An entry is
// filed by the most significant base-64 digit in which its deadline differs
// from now(): on that digit's level, in the slot named by the deadline's
// digit there. Every occupied slot therefore lies strictly ahead of now()
// on its level, and all entries of a lower level are earlier than any slot
// of a higher level. When time reaches a slot on level L > 0, its entries
// cascade to lower levels; a level-0 slot holds exactly one deadline tick.
// So each entry fires at exactly its deadline tick: never early, and never
// later than the advance() call that reaches it. Deadlines whose digits
// above the top level differ from now() (at most 64^6 ticks away, or
// further) wait on an overflow list that is re-filed when time reaches the
// 64^6-tick block of the earliest of them.
//
// insert() and cancel() are O(1) pointer operations and never allocate.
// advance() and next_deadline() find the next occupied slot through
// per-level 64-bit occupancy bitmaps, so a jump of any length costs
// O(levels) per cascade or fired slot, never O(ticks).
//
// Not thread-safe: the owner serializes calls (each runtime worker guards
// its wheel with a lock). Never reads a clock; tests drive it tick by tick.
#pragma once
// NOT for users: the runtime's timer machinery, in weft::internal.

#include <cstddef>
#include <cstdint>
#include <optional>

namespace weft::internal {

class TimerWheel;

// TimerEntry: an intrusive timer, owned by the caller; the wheel only links
// it. A linked entry must not be destroyed, and must stay where it is,
// until it fires, is cancelled, or its wheel is destroyed. An entry is
// linked in at most one wheel at a time.
struct TimerEntry {
  // Set by the user before insert; the wheel never interprets it.
  void* owner = nullptr;

  TimerEntry() = default;
  // Copies carry only `owner` and are unlinked. Neither the source nor (for
  // assignment) the target may be linked: a linked entry is not copyable or
  // movable.
  TimerEntry(const TimerEntry& other);
  TimerEntry& operator=(const TimerEntry& other);

  // deadline() is the tick at which the entry fires (valid while linked).
  uint64_t deadline() const { return deadline_; }
  // linked() is whether the entry is in a wheel, waiting to fire.
  bool linked() const { return where_ != kUnlinked; }

 private:
  friend class TimerWheel;

  // Values of where_ beyond the levels 0..5.
  static constexpr uint8_t kDue = 6;        // deadline <= now() at insert; slot_ is the due list
  static constexpr uint8_t kExpired = 7;    // cascaded onto its deadline; fires in this advance()
  static constexpr uint8_t kOverflow = 8;   // beyond the top level
  static constexpr uint8_t kUnlinked = 0xff;

  TimerEntry* prev_ = nullptr;
  TimerEntry* next_ = nullptr;
  uint64_t deadline_ = 0;
  uint8_t where_ = kUnlinked;  // a level, kDue, kExpired, kOverflow or kUnlinked
  uint8_t slot_ = 0;           // the slot on level where_, or the due list
};

// TimerWheel: see the file comment.
class TimerWheel {
 public:
  static constexpr int kLevels = 6;
  static constexpr int kSlotBits = 6;
  static constexpr int kSlots = 1 << kSlotBits;
  // Ticks spanned by the top level: 64^6.
  static constexpr uint64_t kRange = uint64_t{1} << (kLevels * kSlotBits);

  explicit TimerWheel(uint64_t now_tick = 0) : now_(now_tick) {}
  // Entries still linked are unlinked (linked() becomes false); their
  // callbacks never run.
  ~TimerWheel();

  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // now() is the tick the wheel has advanced to. During an advance()
  // callback it is the tick being processed: the entry's deadline, or for
  // an entry that was already due when advance() began, the now() of that
  // moment.
  uint64_t now() const { return now_; }

  // size() is the number of linked entries.
  size_t size() const { return size_; }

  // insert() links e to fire at deadline_tick. O(1). An entry whose deadline
  // is not after now() fires on the next advance() call, even advance(now());
  // when inserted from an advance() callback, that is the following call, so
  // a callback that re-inserts its entry at now() cannot loop forever. e
  // must not be linked (checked).
  void insert(TimerEntry* e, uint64_t deadline_tick);

  // cancel() unlinks e if it is linked in this wheel. O(1). Returns whether
  // e was linked. e must not be linked in another wheel.
  bool cancel(TimerEntry* e);

  // advance() moves time forward to now_tick (an earlier tick is treated as
  // now()) and calls fn(TimerEntry*) once for every entry whose deadline is
  // <= now_tick, after unlinking it. Entries fire in non-decreasing deadline
  // order, except that those already due when advance() began fire first,
  // in any order. Returns the number of entries fired.
  //
  // fn may insert and cancel entries, including re-inserting the one it was
  // given: an entry inserted with a deadline after the tick being processed
  // and <= now_tick fires within this call. fn must not call advance()
  // (checked). If fn throws, the exception propagates and the wheel stays
  // consistent: entries not yet fired fire on a later advance().
  template <class Fn>
  size_t advance(uint64_t now_tick, Fn&& fn);

  // next_deadline() is the earliest tick at which advance() may fire
  // something: now() if an entry is due, otherwise a tick <= the earliest
  // deadline (earlier when that entry waits on a higher level: then it is
  // the tick at which its slot cascades), or nullopt if the wheel is empty.
  // Advancing to it repeatedly reaches every deadline. O(levels).
  std::optional<uint64_t> next_deadline() const;

 private:
  // An instant at which advance() must act: a slot to fire (level 0) or to
  // cascade (level > 0), or the overflow list to re-file (level kLevels).
  struct Event {
    uint64_t tick;
    int level;
    int slot;
  };

  // Marks the wheel as advancing for the scope of one advance() call.
  class AdvanceScope {
   public:
    explicit AdvanceScope(TimerWheel* w) : w_(w) { w_->begin_advance(); }
    ~AdvanceScope() { w_->end_advance(batch); }
    AdvanceScope(const AdvanceScope&) = delete;
    AdvanceScope& operator=(const AdvanceScope&) = delete;

    TimerEntry** batch = nullptr;  // the list being fired

   private:
    TimerWheel* const w_;
  };

  // begin_advance() checks that advance() is not re-entered.
  void begin_advance();
  // end_advance() moves what is left of `batch` (only after fn threw) back
  // onto a due list and ends the advance() call.
  void end_advance(TimerEntry** batch);
  // take_due() returns the due list for this advance() to fire; entries due
  // at insert from now on go to the other one, for the next call.
  TimerEntry** take_due();
  // next_batch() moves time to the next event at or before limit, cascading
  // as it goes, and returns the list of entries due at that tick, or nullptr
  // (leaving now() alone) when there is no such event.
  TimerEntry** next_batch(uint64_t limit);
  // next_event() finds the earliest event in the levels and overflow list.
  bool next_event(Event* ev) const;
  // file() links e, whose deadline is after now(), on its level or the
  // overflow list. size_ is the caller's business.
  void file(TimerEntry* e);
  // unlink() removes e from its list, updates occupancy and size_, and
  // marks e unlinked.
  void unlink(TimerEntry* e);
  TimerEntry** list_of(const TimerEntry* e);
  static void push(TimerEntry** head, TimerEntry* e);

  uint64_t now_;
  size_t size_ = 0;
  uint8_t due_index_ = 0;  // the due list insert() uses
  bool advancing_ = false;
  // <= the earliest deadline on overflow_ (a cancel may leave it stale).
  uint64_t overflow_min_ = 0;
  uint64_t occupied_[kLevels] = {};  // bit s: slots_[level][s] is non-empty
  TimerEntry* slots_[kLevels][kSlots] = {};
  TimerEntry* due_[2] = {};
  TimerEntry* expired_ = nullptr;  // empty outside advance()
  TimerEntry* overflow_ = nullptr;
};

template <class Fn>
size_t TimerWheel::advance(uint64_t now_tick, Fn&& fn) {
  AdvanceScope scope(this);
  size_t fired = 0;
  // Entries are taken one at a time so that fn can cancel the rest; fn never
  // adds to the list being fired (see take_due() and next_batch()).
  scope.batch = take_due();
  for (;;) {
    while (TimerEntry* e = *scope.batch) {
      unlink(e);
      ++fired;
      fn(e);
    }
    scope.batch = next_batch(now_tick);
    if (scope.batch == nullptr) break;
  }
  if (now_tick > now_) now_ = now_tick;
  return fired;
}

}  // namespace weft::internal
