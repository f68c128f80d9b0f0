/* Multiboot entry: a stack, then kmain(magic, info). */
    .section .text
    .global _start
_start:
    mov $stack_top, %esp
    push %ebx
    push %eax
    call kmain
1:  hlt
    jmp 1b

    .section .bss
    .align 16
stack:
    .skip 16384
stack_top:

    .section .note.GNU-stack,"",@progbits
