#include "timer/timer_wheel.h"

#include <bit>

namespace weft {

TimerWheel::~TimerWheel() {
  auto drop = [](TimerEntry* e) {
    while (e != nullptr) {
      TimerEntry* n = e->next_;
      e->where_ = TimerEntry::kUnlinked;
      e->prev_ = e->next_ = nullptr;
      e = n;
    }
  };
  for (auto& level : slots_) {
    for (TimerEntry* head : level) drop(head);
  }
  drop(due_);
  drop(overflow_);
}

int TimerWheel::level_for(uint64_t now, uint64_t when) {
  uint64_t masked = (now ^ when) | (kSlots - 1);
  int significant = 63 - std::countl_zero(masked);
  return significant / kSlotBits;
}

void TimerWheel::link(TimerEntry** head, TimerEntry* e) {
  e->prev_ = nullptr;
  e->next_ = *head;
  if (*head != nullptr) (*head)->prev_ = e;
  *head = e;
}

void TimerWheel::unlink(TimerEntry** head, TimerEntry* e) {
  if (e->prev_ != nullptr) {
    e->prev_->next_ = e->next_;
  } else {
    *head = e->next_;
  }
  if (e->next_ != nullptr) e->next_->prev_ = e->prev_;
  if (e->where_ < kLevels && *head == nullptr) occupied_[e->where_] &= ~(uint64_t{1} << e->slot_);
  e->prev_ = e->next_ = nullptr;
  e->where_ = TimerEntry::kUnlinked;
  --size_;
}

TimerEntry** TimerWheel::list_of(const TimerEntry* e) {
  if (e->where_ == TimerEntry::kDue) return &due_;
  if (e->where_ == TimerEntry::kOverflow) return &overflow_;
  return &slots_[e->where_][e->slot_];
}

void TimerWheel::place(TimerEntry* e) {
  ++size_;
  if (e->deadline_ <= now_) {
    e->where_ = TimerEntry::kDue;
    link(&due_, e);
    return;
  }
  int level = level_for(now_, e->deadline_);
  if (level >= kLevels) {
    e->where_ = TimerEntry::kOverflow;
    link(&overflow_, e);
    return;
  }
  int slot = static_cast<int>((e->deadline_ >> (level * kSlotBits)) & (kSlots - 1));
  e->where_ = static_cast<uint8_t>(level);
  e->slot_ = static_cast<uint8_t>(slot);
  link(&slots_[level][slot], e);
  occupied_[level] |= uint64_t{1} << slot;
}

void TimerWheel::insert(TimerEntry* e, uint64_t deadline_tick) {
  e->deadline_ = deadline_tick;
  place(e);
}

bool TimerWheel::cancel(TimerEntry* e) {
  if (!e->linked()) return false;
  unlink(list_of(e), e);
  return true;
}

std::optional<TimerWheel::Next> TimerWheel::next_event() const {
  // Every entry on level L lies in a later 64^L block than any entry on
  // level L-1, so the first occupied level holds the next event.
  for (int level = 0; level < kLevels; ++level) {
    uint64_t occ = occupied_[level];
    if (occ == 0) continue;
    const int shift = level * kSlotBits;
    const uint64_t slot_range = uint64_t{1} << shift;
    const uint64_t level_range = slot_range << kSlotBits;
    int now_slot = static_cast<int>((now_ >> shift) & (kSlots - 1));
    int slot = (std::countr_zero(std::rotr(occ, now_slot)) + now_slot) % kSlots;
    uint64_t level_start = now_ & ~(level_range - 1);
    uint64_t tick = level_start + static_cast<uint64_t>(slot) * slot_range;
    if (tick < (now_ & ~(slot_range - 1))) tick += level_range;
    if (tick < now_) tick = now_;  // the slot holding now: cascade at once
    return Next{tick, level, slot};
  }
  if (overflow_ != nullptr) {
    uint64_t boundary = ((now_ / kRange) + 1) * kRange;
    return Next{boundary, -1, 0};
  }
  return std::nullopt;
}

std::optional<uint64_t> TimerWheel::next_deadline() const {
  if (due_ != nullptr) return now_;
  std::optional<Next> n = next_event();
  if (!n) return std::nullopt;
  return n->tick;
}

}  // namespace weft
