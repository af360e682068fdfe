/* Entry of the lab's test guest: multiboot v1 header, own GDT, zeroed .bss, stack, then guest_main().
 * QEMU's multiboot loader enters _start in 32-bit protected mode with paging off, EAX = 0x2BADB002 and
 * EBX = the multiboot information. The GDT the loader used is not ours to keep (the multiboot spec says
 * so), and interrupt gates need a valid code selector, so we install our own before anything else. */

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003 /* page-align modules, want memory info */

    .section .multiboot, "a"
    .align 4
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)

    .section .text
    .globl _start
_start:
    cli
    movl %eax, %esi             /* keep the multiboot magic and info pointer */
    movl %ebx, %ebp
    lgdt gdt_desc
    ljmp $0x08, $1f
1:  movw $0x10, %cx
    movw %cx, %ds
    movw %cx, %es
    movw %cx, %fs
    movw %cx, %gs
    movw %cx, %ss
    cld
    movl $__bss_start, %edi     /* fresh RAM is zero, but do not rely on the loader for .bss */
    movl $__bss_end, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb
    movl $stack_top, %esp
    pushl %ebp
    pushl %esi
    call guest_main
2:  cli
    hlt
    jmp 2b

/* Waiting for the next timer tick. Interrupts are enabled only across this hlt (sti's one-instruction
 * shadow makes "sti; hlt" race-free), so every IRQ interrupts exactly this instruction. */
    .globl guest_idle
guest_idle:
    sti
    hlt
idle_resume:
    cli
    ret

/* IRQ handlers acknowledge the PIC and resume after the hlt WITHOUT iret: under kvm-pvm a guest with
 * paging off runs in KVM's instruction emulator, which cannot emulate a protected-mode iret ("KVM
 * internal error. Suberror: 1 ... emulation failure" at the iret). Since an IRQ can only arrive in
 * guest_idle's hlt, dropping the CPU's EIP/CS/EFLAGS frame and jumping to idle_resume is exact. */
    .globl isr_irq_master
isr_irq_master:
    pushl %eax
    movb $0x20, %al
    outb %al, $0x20
    popl %eax
    addl $12, %esp
    jmp idle_resume

    .globl isr_irq_slave
isr_irq_slave:
    pushl %eax
    movb $0x20, %al
    outb %al, $0xA0
    outb %al, $0x20
    popl %eax
    addl $12, %esp
    jmp idle_resume

/* CPU exceptions (and any unexpected vector): report on the console and stop; a fault means the guest
 * (or its migration) broke. */
    .globl isr_fault
isr_fault:
    cli
    call guest_fault
3:  hlt
    jmp 3b

    .section .data
    .align 8
gdt:
    .quad 0x0000000000000000    /* null */
    .quad 0x00CF9A000000FFFF    /* 0x08: flat 32-bit code */
    .quad 0x00CF92000000FFFF    /* 0x10: flat 32-bit data */
gdt_end:
    .align 4
    .word 0
gdt_desc:
    .word gdt_end - gdt - 1
    .long gdt

    .section .bss
    .align 16
    .skip 16384
stack_top:

    .section .note.GNU-stack, "", @progbits
