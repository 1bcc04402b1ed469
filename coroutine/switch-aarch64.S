/*
 * AArch64 (AAPCS64) coroutine context switch.
 *
 * void strata_co_swap(void **save_sp, void *load_sp)
 *   Save x19-x30 and d8-d15 in a 160-byte frame on the current stack,
 *   store sp in *save_sp, switch to load_sp, restore the frame found there
 *   and return through the restored x30.
 *
 * strata_co_start
 *   Initial x30 of a fresh stack: calls x20(x19); never returns.
 */
#if defined(__aarch64__)
        .text
        .globl  strata_co_swap
        .hidden strata_co_swap
        .type   strata_co_swap, %function
        .p2align 4
strata_co_swap:
        sub     sp, sp, #160
        stp     x19, x20, [sp, #0]
        stp     x21, x22, [sp, #16]
        stp     x23, x24, [sp, #32]
        stp     x25, x26, [sp, #48]
        stp     x27, x28, [sp, #64]
        stp     x29, x30, [sp, #80]
        stp     d8, d9, [sp, #96]
        stp     d10, d11, [sp, #112]
        stp     d12, d13, [sp, #128]
        stp     d14, d15, [sp, #144]
        mov     x2, sp
        str     x2, [x0]
        mov     sp, x1
        ldp     x19, x20, [sp, #0]
        ldp     x21, x22, [sp, #16]
        ldp     x23, x24, [sp, #32]
        ldp     x25, x26, [sp, #48]
        ldp     x27, x28, [sp, #64]
        ldp     x29, x30, [sp, #80]
        ldp     d8, d9, [sp, #96]
        ldp     d10, d11, [sp, #112]
        ldp     d12, d13, [sp, #128]
        ldp     d14, d15, [sp, #144]
        add     sp, sp, #160
        ret
        .size   strata_co_swap, .-strata_co_swap

        .globl  strata_co_start
        .hidden strata_co_start
        .type   strata_co_start, %function
        .p2align 4
strata_co_start:
        mov     x29, #0
        mov     x0, x19
        blr     x20
        brk     #1000
        .size   strata_co_start, .-strata_co_start
#endif
        .section .note.GNU-stack,"",%progbits
