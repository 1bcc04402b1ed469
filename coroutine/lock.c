#include "config.h"
/*
 * Coroutine synchronisation: CoQueue, CoMutex, CoRwLock.
 *
 * Waiters are CoWaiter records on the waiting coroutine's own stack, kept
 * in FIFO order.  Wake-ups go through co_wake_later(), so a waker inside a
 * coroutine never nests into the woken one: the woken coroutine runs right
 * after the waker yields or terminates.
 *
 * CoMutex and CoRwLock hand ownership over at unlock time: the unlocker
 * updates the lock state on behalf of the waiter it wakes, so nobody can
 * barge in between, which gives strict FIFO fairness.
 */
#include "coroutine/coroutine-int.h"

struct CoWaiter {
    Coroutine *co;
    CoWaiter *next;
    bool writer;                /* CoRwLock: waiting for exclusive access */
};

/* ---- CoQueue ---- */

void co_queue_init(CoQueue *q)
{
    q->head = q->tail = NULL;
}

bool co_queue_empty(const CoQueue *q)
{
    return q->head == NULL;
}

static void queue_push(CoQueue *q, CoWaiter *w)
{
    w->next = NULL;
    if (q->tail) {
        q->tail->next = w;
    } else {
        q->head = w;
    }
    q->tail = w;
}

static CoWaiter *queue_pop(CoQueue *q)
{
    CoWaiter *w = q->head;

    if (w) {
        q->head = w->next;
        if (!q->head) {
            q->tail = NULL;
        }
    }
    return w;
}

/* Queue the calling coroutine on @q and yield until someone wakes it. */
static void coroutine_fn queue_sleep(CoQueue *q, bool writer)
{
    CoWaiter w = { .co = co_self(), .writer = writer };

    if (!w.co) {
        co_die("waiting on a coroutine lock or queue outside a coroutine");
    }
    queue_push(q, &w);
    co_yield();
}

void coroutine_fn co_queue_wait(CoQueue *q, CoMutex *lock)
{
    CoWaiter w = { .co = co_self() };

    if (!w.co) {
        co_die("co_queue_wait called outside coroutine context");
    }
    queue_push(q, &w);
    if (lock) {
        co_mutex_unlock(lock);
    }
    co_yield();
    if (lock) {
        co_mutex_lock(lock);
    }
}

bool co_queue_next(CoQueue *q)
{
    CoWaiter *w = queue_pop(q);

    if (!w) {
        return false;
    }
    co_wake_later(w->co);       /* @w dies with the waiter's frame: last use */
    return true;
}

void co_queue_restart_all(CoQueue *q)
{
    CoWaiter *w = q->head;

    q->head = q->tail = NULL;
    while (w) {
        CoWaiter *next = w->next;   /* read before @w's owner may run */

        co_wake_later(w->co);
        w = next;
    }
}

/* ---- CoMutex ---- */

void co_mutex_init(CoMutex *m)
{
    m->holder = NULL;
    m->locked = 0;
    co_queue_init(&m->waiters);
}

bool co_mutex_is_locked(const CoMutex *m)
{
    return m->locked != 0;
}

void coroutine_fn co_mutex_lock(CoMutex *m)
{
    Coroutine *self = co_self();

    m->locked++;                /* holder + waiters */
    if (m->locked == 1) {
        m->holder = self;
        return;
    }
    queue_sleep(&m->waiters, false);
    if (m->holder != self) {
        co_die("co_mutex_lock: woken without ownership of the mutex");
    }
}

void coroutine_fn co_mutex_unlock(CoMutex *m)
{
    CoWaiter *w;

    if (m->locked == 0 || m->holder != co_self()) {
        co_die("co_mutex_unlock: mutex not held by this coroutine");
    }
    m->locked--;
    w = queue_pop(&m->waiters);
    if (!w) {
        m->holder = NULL;
        return;
    }
    m->holder = w->co;
    co_wake_later(w->co);
}

/* ---- CoRwLock ---- */

void co_rwlock_init(CoRwLock *l)
{
    l->readers = 0;
    l->writer = false;
    l->pending_kind = NULL;
    co_queue_init(&l->waiters);
}

void coroutine_fn co_rwlock_rdlock(CoRwLock *l)
{
    /* Any waiter means a writer is queued ahead: queue behind it. */
    if (!l->writer && co_queue_empty(&l->waiters)) {
        l->readers++;
        return;
    }
    queue_sleep(&l->waiters, false);   /* the waker counted us in */
}

void coroutine_fn co_rwlock_wrlock(CoRwLock *l)
{
    if (!l->writer && l->readers == 0 && co_queue_empty(&l->waiters)) {
        l->writer = true;
        return;
    }
    queue_sleep(&l->waiters, true);    /* the waker set l->writer for us */
}

/* Grant the lock to the head of the queue: one writer or a run of readers. */
static void rwlock_dispatch(CoRwLock *l)
{
    CoWaiter *w = l->waiters.head;

    if (l->writer || l->readers > 0 || !w) {
        return;
    }
    if (w->writer) {
        queue_pop(&l->waiters);
        l->writer = true;
        co_wake_later(w->co);
        return;
    }
    while (l->waiters.head && !l->waiters.head->writer) {
        w = queue_pop(&l->waiters);
        l->readers++;
        co_wake_later(w->co);
    }
}

void coroutine_fn co_rwlock_unlock(CoRwLock *l)
{
    if (l->writer) {
        l->writer = false;
    } else if (l->readers > 0) {
        l->readers--;
    } else {
        co_die("co_rwlock_unlock: lock not held");
    }
    rwlock_dispatch(l);
}
