// timer/timer_wheel.cc
//
// TimerWheel: filing, cascading and the occupancy-bitmap search. See
// timer_wheel.h for the design.
#include "timer/timer_wheel.h"

#include <algorithm>
#include <bit>

#include "absl/base/internal/raw_logging.h"
#include "absl/base/macros.h"

namespace weft::internal {

TimerEntry::TimerEntry(const TimerEntry& other) : owner(other.owner) {
  ABSL_RAW_CHECK(!other.linked(), "TimerEntry copied or moved while linked");
}

TimerEntry& TimerEntry::operator=(const TimerEntry& other) {
  ABSL_RAW_CHECK(!linked() && !other.linked(), "TimerEntry assigned while linked");
  owner = other.owner;
  return *this;
}

TimerWheel::~TimerWheel() {
  auto drop = [](TimerEntry* e) {
    while (e != nullptr) {
      TimerEntry* next = e->next_;
      e->prev_ = e->next_ = nullptr;
      e->where_ = TimerEntry::kUnlinked;
      e = next;
    }
  };
  for (int level = 0; level < kLevels; ++level) {
    for (uint64_t occ = occupied_[level]; occ != 0; occ &= occ - 1) {
      drop(slots_[level][std::countr_zero(occ)]);
    }
  }
  drop(due_[0]);
  drop(due_[1]);
  drop(expired_);
  drop(overflow_);
}

void TimerWheel::push(TimerEntry** head, TimerEntry* e) {
  e->prev_ = nullptr;
  e->next_ = *head;
  if (*head != nullptr) (*head)->prev_ = e;
  *head = e;
}

TimerEntry** TimerWheel::list_of(const TimerEntry* e) {
  switch (e->where_) {
    case TimerEntry::kDue:
      return &due_[e->slot_];
    case TimerEntry::kExpired:
      return &expired_;
    case TimerEntry::kOverflow:
      return &overflow_;
    default:
      return &slots_[e->where_][e->slot_];
  }
}

void TimerWheel::unlink(TimerEntry* e) {
  TimerEntry** head = list_of(e);
  if (e->prev_ != nullptr) {
    e->prev_->next_ = e->next_;
  } else {
    *head = e->next_;
    if (*head == nullptr && e->where_ < kLevels) {
      occupied_[e->where_] &= ~(uint64_t{1} << e->slot_);
    }
  }
  if (e->next_ != nullptr) e->next_->prev_ = e->prev_;
  e->prev_ = e->next_ = nullptr;
  e->where_ = TimerEntry::kUnlinked;
  --size_;
}

void TimerWheel::file(TimerEntry* e) {
  const uint64_t d = e->deadline_;
  ABSL_ASSERT(d > now_);
  // The most significant base-64 digit in which d differs from now_ names
  // the level; d's digit there is the slot, and it exceeds now_'s digit.
  const int level = (63 - std::countl_zero(d ^ now_)) / kSlotBits;
  if (level >= kLevels) {
    overflow_min_ = overflow_ == nullptr ? d : std::min(overflow_min_, d);
    e->where_ = TimerEntry::kOverflow;
    push(&overflow_, e);
    return;
  }
  const int slot = static_cast<int>((d >> (level * kSlotBits)) & (kSlots - 1));
  e->where_ = static_cast<uint8_t>(level);
  e->slot_ = static_cast<uint8_t>(slot);
  push(&slots_[level][slot], e);
  occupied_[level] |= uint64_t{1} << slot;
}

void TimerWheel::insert(TimerEntry* e, uint64_t deadline_tick) {
  ABSL_RAW_CHECK(!e->linked(), "TimerWheel::insert() of an entry that is already linked");
  e->deadline_ = deadline_tick;
  ++size_;
  if (deadline_tick <= now_) {
    e->where_ = TimerEntry::kDue;
    e->slot_ = due_index_;
    push(&due_[due_index_], e);
  } else {
    file(e);
  }
}

bool TimerWheel::cancel(TimerEntry* e) {
  if (!e->linked()) return false;
  unlink(e);
  return true;
}

bool TimerWheel::next_event(Event* ev) const {
  // Entries on level L are in now_'s 64^(L+1)-tick block but a later
  // 64^L-tick block than now_; lower levels hold only entries in now_'s
  // 64^L-tick block. So the first occupied level has the earliest event,
  // and its lowest occupied slot is the next one.
  for (int level = 0; level < kLevels; ++level) {
    const uint64_t occ = occupied_[level];
    if (occ == 0) continue;
    const int shift = level * kSlotBits;
    const int slot = std::countr_zero(occ);
    const uint64_t block = now_ & ~((uint64_t{1} << (shift + kSlotBits)) - 1);
    ev->tick = block | (static_cast<uint64_t>(slot) << shift);
    ev->level = level;
    ev->slot = slot;
    return true;
  }
  if (overflow_ != nullptr) {
    // The start of the earliest overflow deadline's 64^6-tick block: from
    // there the levels can hold it.
    ev->tick = overflow_min_ & ~(kRange - 1);
    ev->level = kLevels;
    ev->slot = 0;
    return true;
  }
  return false;
}

std::optional<uint64_t> TimerWheel::next_deadline() const {
  if (due_[0] != nullptr || due_[1] != nullptr || expired_ != nullptr) return now_;
  Event ev;
  if (!next_event(&ev)) return std::nullopt;
  // Within an advance() callback, the level-0 slot being fired is at now_.
  return std::max(ev.tick, now_);
}

void TimerWheel::begin_advance() {
  ABSL_RAW_CHECK(!advancing_, "TimerWheel::advance() called from a timer callback");
  advancing_ = true;
}

void TimerWheel::end_advance(TimerEntry** batch) {
  // Non-empty only if fn threw: keep the rest due, for a later advance().
  if (batch != nullptr) {
    while (TimerEntry* e = *batch) {
      if (e->where_ == TimerEntry::kDue) break;  // already on a due list
      unlink(e);
      insert(e, e->deadline_);
    }
  }
  advancing_ = false;
}

TimerEntry** TimerWheel::take_due() {
  TimerEntry** due = &due_[due_index_];
  due_index_ ^= 1;
  return due;
}

TimerEntry** TimerWheel::next_batch(uint64_t limit) {
  Event ev;
  while (next_event(&ev) && ev.tick <= limit) {
    ABSL_ASSERT(ev.tick > now_);
    now_ = ev.tick;
    // A level-0 slot holds the single deadline now_. No insert can reach it
    // while it fires: new deadlines after now_ go to later slots.
    if (ev.level == 0) return &slots_[0][ev.slot];
    // Detach the list and re-file it against the new now_, running no
    // callbacks: entries due exactly now go to expired_, the rest to lower
    // levels (or, for the overflow list, back to overflow_).
    TimerEntry* list;
    if (ev.level == kLevels) {
      list = overflow_;
      overflow_ = nullptr;
    } else {
      list = slots_[ev.level][ev.slot];
      slots_[ev.level][ev.slot] = nullptr;
      occupied_[ev.level] &= ~(uint64_t{1} << ev.slot);
    }
    while (list != nullptr) {
      TimerEntry* e = list;
      list = e->next_;
      if (e->deadline_ == now_) {
        e->where_ = TimerEntry::kExpired;
        push(&expired_, e);
      } else {
        file(e);
      }
    }
    if (expired_ != nullptr) return &expired_;
  }
  return nullptr;
}

}  // namespace weft::internal
