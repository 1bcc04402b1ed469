#include "config.h"
/*
 * Coroutine core: creation, enter/yield, deferred wake-ups.
 *
 * Each coroutine lives at the top of its own pooled stack (the Coroutine
 * struct is carved out of the stack's highest bytes, so creation costs no
 * malloc).  Switching uses a hand-written register swap on x86-64 and
 * aarch64 (coroutine/switch-*.S); other hosts use ucontext for the first
 * entry and _setjmp/_longjmp afterwards.  Define STRATA_CO_FORCE_SJLJ to
 * build the portable path on any host (used to test it).
 *
 * The thread's own stack is represented by a thread-local "leader"
 * Coroutine that is never visible to callers: co_self() is NULL there.
 */
#if (defined(HOST_X86_64) || defined(HOST_AARCH64)) && \
    !defined(STRATA_CO_FORCE_SJLJ)
#define CO_ASM_SWITCH 1
#else
/* _longjmp between stacks trips glibc's fortified longjmp check. */
#undef _FORTIFY_SOURCE
#include <setjmp.h>
#include <ucontext.h>
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coroutine/coroutine-int.h"

#if defined(__SANITIZE_ADDRESS__)
#define CO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CO_ASAN 1
#endif
#endif
#ifdef CO_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

struct Coroutine {
#ifdef CO_ASM_SWITCH
    void *sp;                   /* saved stack pointer while switched out */
#else
    jmp_buf jb;
    bool fresh;                 /* not started: first switch uses uc */
    ucontext_t uc;
#endif
    Coroutine *caller;          /* who entered us; NULL when not entered */
    Coroutine *wake_head;       /* co_wake_later() requests made by us */
    Coroutine *wake_tail;
    Coroutine *wake_next;       /* link in some coroutine's wake list */
    bool wake_queued;
    bool done;
    CoroutineEntry *entry;
    void *opaque;
    CoStack *stack;
#ifdef CO_ASAN
    const void *asan_bottom;    /* stack bounds told to AddressSanitizer */
    size_t asan_size;
#endif
};

static __thread Coroutine *current;     /* NULL outside coroutines */
static __thread Coroutine leader;

/* ---- architecture back ends ---- */

#ifdef CO_ASM_SWITCH
void strata_co_swap(void **save_sp, void *load_sp);
void strata_co_start(void);

static inline void co_arch_swap(Coroutine *from, Coroutine *to)
{
    strata_co_swap(&from->sp, to->sp);
}

#if defined(HOST_X86_64)
/* Lay out what strata_co_swap pops: r15..r12, rbx, rbp, return address. */
static void co_arch_init(Coroutine *co, char *top, void (*fn)(Coroutine *))
{
    uintptr_t *sp = (uintptr_t *)(((uintptr_t)top & ~(uintptr_t)15) - 72);

    memset(sp, 0, 72);
    sp[3] = (uintptr_t)fn;                  /* r12 */
    sp[4] = (uintptr_t)co;                  /* rbx */
    sp[6] = (uintptr_t)strata_co_start;     /* return address */
    co->sp = sp;
}
#else
/* Lay out the 160-byte frame strata_co_swap restores: x19..x30, d8..d15. */
static void co_arch_init(Coroutine *co, char *top, void (*fn)(Coroutine *))
{
    uintptr_t *sp = (uintptr_t *)(((uintptr_t)top & ~(uintptr_t)15) - 160);

    memset(sp, 0, 160);
    sp[0] = (uintptr_t)co;                  /* x19 */
    sp[1] = (uintptr_t)fn;                  /* x20 */
    sp[11] = (uintptr_t)strata_co_start;    /* x30 */
    co->sp = sp;
}
#endif

#else /* !CO_ASM_SWITCH */

static void co_main(Coroutine *co);

/* makecontext() passes only ints: rebuild the pointer and start. */
static void co_uc_start(unsigned hi, unsigned lo)
{
    co_main((Coroutine *)(uintptr_t)(((uint64_t)hi << 32) | lo));
}

static void co_arch_swap(Coroutine *from, Coroutine *to)
{
    if (_setjmp(from->jb) == 0) {
        if (to->fresh) {
            to->fresh = false;
            setcontext(&to->uc);
        }
        _longjmp(to->jb, 1);
    }
}

/* Prepare a ucontext that starts co_main(co) on the coroutine's stack. */
static void co_arch_init(Coroutine *co, char *top, void (*fn)(Coroutine *))
{
    uint64_t p = (uintptr_t)co;

    (void)fn;
    if (getcontext(&co->uc) != 0) {
        co_die("getcontext failed");
    }
    co->uc.uc_stack.ss_sp = co->stack->base;
    co->uc.uc_stack.ss_size = (size_t)(top - co->stack->base);
    co->uc.uc_link = NULL;
    makecontext(&co->uc, (void (*)(void))co_uc_start, 2,
                (unsigned)(p >> 32), (unsigned)p);
    co->fresh = true;
}
#endif

/* ---- AddressSanitizer fiber annotations (no-ops otherwise) ---- */

#ifdef CO_ASAN
static __thread Coroutine *asan_from;  /* who switched to the new stack */

/* Tell ASan we are about to run on @to's stack. */
static inline void co_asan_start(Coroutine *from, Coroutine *to, void **fake)
{
    asan_from = from;
    __sanitizer_start_switch_fiber(from->done ? NULL : fake,
                                   to->asan_bottom, to->asan_size);
}

/* Back on our own stack: learn the leader's bounds on first sight. */
static inline void co_asan_finish(void *fake)
{
    const void *bottom;
    size_t size;

    __sanitizer_finish_switch_fiber(fake, &bottom, &size);
    if (asan_from == &leader && !leader.asan_size) {
        leader.asan_bottom = bottom;
        leader.asan_size = size;
    }
}
#else
static inline void co_asan_start(Coroutine *from, Coroutine *to, void **fake)
{
}

static inline void co_asan_finish(void *fake)
{
}
#endif

static inline void co_swap(Coroutine *from, Coroutine *to)
{
    void *fake = NULL;

    co_asan_start(from, to, &fake);
    co_arch_swap(from, to);
    co_asan_finish(fake);
}

/* ---- core ---- */

/* Leave @self for whoever entered it (yield or termination). */
static inline void co_switch_out(Coroutine *self)
{
    Coroutine *to = self->caller;

    self->caller = NULL;
    current = to == &leader ? NULL : to;
    co_swap(self, to);
}

/* Body of every coroutine: run the entry function, then leave for good. */
static void co_main(Coroutine *co)
{
    co_asan_finish(NULL);
    co->entry(co->opaque);
    if (co->wake_queued) {
        co_die("coroutine terminated while queued by co_wake_later()");
    }
    co->done = true;
    co_switch_out(co);
    co_die("terminated coroutine was resumed");
}

Coroutine *co_create(CoroutineEntry *entry, void *opaque)
{
    size_t hdr = (sizeof(Coroutine) + 63) & ~(size_t)63;
    CoStack *st = co_stack_alloc(co_get_stack_size());
    char *top = st->base + st->size - hdr;
    Coroutine *co = (Coroutine *)top;

    memset(co, 0, sizeof(*co));
    co->entry = entry;
    co->opaque = opaque;
    co->stack = st;
#ifdef CO_ASAN
    co->asan_bottom = st->base;
    co->asan_size = (size_t)(top - st->base);
    /* A pooled stack still carries the shadow poison of its previous
     * coroutine's last frames, which never returned: clear it. */
    __asan_unpoison_memory_region(st->base, st->size);
#endif
    co_arch_init(co, top, co_main);
    return co;
}

/* Switch from @from into @co after checking that it may be entered. */
static inline void co_resume(Coroutine *from, Coroutine *co)
{
    if (G_UNLIKELY(co->caller != NULL)) {
        co_die("co_enter: coroutine is already entered (running or "
               "waiting on a coroutine it entered)");
    }
    if (G_UNLIKELY(co->wake_queued)) {
        co_die("co_enter: coroutine is queued by co_wake_later()");
    }
    co->caller = from;
    current = co;
    co_swap(from, co);
}

/* Append @co's wake list to the work list [*head, *tail]. */
static void co_take_wakes(Coroutine *co, Coroutine **head, Coroutine **tail)
{
    if (!co->wake_head) {
        return;
    }
    if (*tail) {
        (*tail)->wake_next = co->wake_head;
    } else {
        *head = co->wake_head;
    }
    *tail = co->wake_tail;
    co->wake_head = co->wake_tail = NULL;
}

/* Called after @co switched back: free it if it finished. */
static inline void co_reap(Coroutine *co)
{
    if (co->done) {
        co_stack_free(co->stack);
    }
}

/*
 * Run the deferred wake-ups issued by @co (and, transitively, by the
 * coroutines they wake) from @from's context, iteratively so that long
 * hand-off chains do not grow the stack.
 */
static G_GNUC_NO_INLINE void co_drain(Coroutine *from, Coroutine *co)
{
    Coroutine *head = NULL, *tail = NULL;

    co_take_wakes(co, &head, &tail);
    co_reap(co);
    while (head) {
        Coroutine *next = head;

        head = next->wake_next;
        if (!head) {
            tail = NULL;
        }
        next->wake_next = NULL;
        next->wake_queued = false;
        co_resume(from, next);
        co_take_wakes(next, &head, &tail);
        co_reap(next);
    }
}

void co_enter(Coroutine *co)
{
    Coroutine *from = current ? current : &leader;

    co_resume(from, co);
    if (G_UNLIKELY(co->wake_head != NULL)) {
        co_drain(from, co);
    } else {
        co_reap(co);
    }
}

void coroutine_fn co_yield(void)
{
    Coroutine *self = current;

    if (G_UNLIKELY(!self)) {
        co_die("co_yield called outside coroutine context");
    }
    co_switch_out(self);
}

Coroutine *co_self(void)
{
    return current;
}

bool co_in_coroutine(void)
{
    return current != NULL;
}

bool co_is_entered(const Coroutine *co)
{
    return co->caller != NULL;
}

void co_wake_later(Coroutine *co)
{
    Coroutine *self = current;

    if (!self) {
        co_enter(co);
        return;
    }
    if (co->wake_queued) {
        return;
    }
    co->wake_queued = true;
    co->wake_next = NULL;
    if (self->wake_tail) {
        self->wake_tail->wake_next = co;
    } else {
        self->wake_head = co;
    }
    self->wake_tail = co;
}
