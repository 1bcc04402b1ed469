/*
 * x86-64 (System V) coroutine context switch.
 *
 * void strata_co_swap(void **save_sp, void *load_sp)
 *   Push the callee-saved registers on the current stack, store the stack
 *   pointer in *save_sp, switch to load_sp and pop the registers saved
 *   there.  MXCSR and the x87 control word are not switched: coroutines
 *   share the thread's floating-point environment.
 *   The final pop+jmp instead of ret is deliberate: the return address
 *   belongs to another call chain, so ret would always miss the return
 *   stack buffer, while the indirect predictor learns the ping-pong (about
 *   10 ns per round trip here).  Not CET-compatible; this object carries
 *   no IBT/SHSTK property note, so the linker marks the program as such.
 *
 * strata_co_start
 *   First "return address" on a fresh stack: calls %r12(%rbx).  The
 *   called function never returns.
 */
#if defined(__x86_64__)
        .text
        .globl  strata_co_swap
        .hidden strata_co_swap
        .type   strata_co_swap, @function
        .p2align 4
strata_co_swap:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        popq    %rcx
        jmpq    *%rcx
        .cfi_endproc
        .size   strata_co_swap, .-strata_co_swap

        .globl  strata_co_start
        .hidden strata_co_start
        .type   strata_co_start, @function
        .p2align 4
strata_co_start:
        .cfi_startproc
        .cfi_undefined rip
        xorl    %ebp, %ebp
        movq    %rbx, %rdi
        call    *%r12
        ud2
        .cfi_endproc
        .size   strata_co_start, .-strata_co_start
#endif
        .section .note.GNU-stack,"",%progbits
