/*
 * Coroutines: cooperative user-space threads, one stack each.
 *
 * Contract:
 *  - co_create() takes a stack from a per-thread pool; nothing runs yet.
 *  - co_enter(co) runs @co on the caller's thread until it yields or its
 *    entry function returns.  The caller (a coroutine or plain code) is
 *    suspended meanwhile; co_enter() returns when @co yields/terminates.
 *    Entering a coroutine that is running, or is somewhere on the chain of
 *    callers of the current one, aborts.
 *  - co_yield() returns control to whoever entered the current coroutine.
 *    Calling it outside a coroutine aborts.
 *  - When the entry function returns the coroutine is destroyed and its
 *    stack goes back to the pool.
 *  - Deferred wake-ups: co_wake_later(co) from inside a coroutine queues
 *    @co to be entered right after the current coroutine yields or
 *    terminates (this is how CoQueue/CoMutex hand over without recursion).
 *    Outside a coroutine it enters @co immediately.
 *  - Coroutines never migrate between threads.
 *
 * Functions marked coroutine_fn may yield and must only be called from
 * coroutine context.
 */
#ifndef STRATA_COROUTINE_H
#define STRATA_COROUTINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <glib.h>

#define coroutine_fn /* may yield: call only from a coroutine */

typedef struct Coroutine Coroutine;
typedef void coroutine_fn CoroutineEntry(void *opaque);

Coroutine *co_create(CoroutineEntry *entry, void *opaque);
void co_enter(Coroutine *co);
void coroutine_fn co_yield(void);
Coroutine *co_self(void);           /* NULL outside a coroutine */
bool co_in_coroutine(void);
bool co_is_entered(const Coroutine *co);  /* running or suspended in co_enter */
void co_wake_later(Coroutine *co);

/* Stack size for coroutines created from now on (default 1 MiB, min 64 KiB). */
void co_set_stack_size(size_t bytes);
size_t co_get_stack_size(void);
/* Statistics for tests: stacks currently cached in this thread's pool. */
size_t co_pool_cached(void);

/* ---- CoQueue: coroutines waiting for a condition (FIFO) ---- */
typedef struct CoWaiter CoWaiter;
typedef struct CoQueue {
    CoWaiter *head, *tail;
} CoQueue;

typedef struct CoMutex CoMutex;

void co_queue_init(CoQueue *q);
/* Wait on @q; @lock (may be NULL) is released while waiting and retaken. */
void coroutine_fn co_queue_wait(CoQueue *q, CoMutex *lock);
bool co_queue_next(CoQueue *q);          /* wake one; false if empty */
void co_queue_restart_all(CoQueue *q);
bool co_queue_empty(const CoQueue *q);

/* ---- CoMutex: fair (FIFO hand-off) sleeping lock ---- */
struct CoMutex {
    Coroutine *holder;
    unsigned locked;
    CoQueue waiters;
};
void co_mutex_init(CoMutex *m);
void coroutine_fn co_mutex_lock(CoMutex *m);
void coroutine_fn co_mutex_unlock(CoMutex *m);   /* hands over to the first waiter */
bool co_mutex_is_locked(const CoMutex *m);

/* ---- CoRwLock: readers share, writers exclusive, FIFO fairness ---- */
typedef struct CoRwLock {
    int readers;
    bool writer;
    CoQueue waiters;
    CoWaiter *pending_kind;   /* implementation detail */
} CoRwLock;
void co_rwlock_init(CoRwLock *l);
void coroutine_fn co_rwlock_rdlock(CoRwLock *l);
void coroutine_fn co_rwlock_wrlock(CoRwLock *l);
void coroutine_fn co_rwlock_unlock(CoRwLock *l);

/* co_sleep_ns() lives in util/aio.h: it needs the event loop's timers. */

#endif
