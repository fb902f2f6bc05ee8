// sync/sync.h
//
// Umbrella header for weft's fiber-aware synchronization primitives. Every
// primitive here parks the waiting fiber (never its worker thread), works
// across workers, and may also be used from plain threads, which then block
// on a futex.
#pragma once

#include "sync/channel.h"
#include "sync/condition_variable.h"
#include "sync/event.h"
#include "sync/mutex.h"
#include "sync/oneshot.h"
#include "sync/semaphore.h"
#include "sync/wait_group.h"
