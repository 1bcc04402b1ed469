/*
 * Coroutine module internals shared between coroutine.c and stack.c.
 * Not for use outside coroutine/.
 */
#ifndef STRATA_COROUTINE_INT_H
#define STRATA_COROUTINE_INT_H

#include "coroutine/coroutine.h"

typedef struct CoSlab CoSlab;
typedef struct CoStack CoStack;

/* One coroutine stack: [guard][base .. base+size) inside a slab mapping. */
struct CoStack {
    CoSlab *slab;
    char *base;         /* lowest usable byte, just above the guard */
    size_t size;        /* usable bytes */
    CoStack *next;      /* link in the pool cache or the slab free list */
};

/* Take a stack of @size bytes (page multiple) from this thread's pool. */
CoStack *co_stack_alloc(size_t size);
/* Return @st to this thread's pool (cached, or released to its slab). */
void co_stack_free(CoStack *st);

/* Print "strata: coroutine: MSG" to stderr and abort(). */
void co_die(const char *msg) __attribute__((noreturn));

#endif
