# Accelerator probe guest: a 64 KiB BIOS ROM that runs real guest code in real, protected and long mode.
#
# QEMU maps it at the top of the first megabyte and the CPU starts at its reset vector (F000:FFF0) in real mode. The
# guest writes one word per CPU mode to the first serial port, computes a xorshift64 checksum in long mode, prints it
# as 16 hex digits, and ends QEMU through the isa-debug-exit port (exit status (0x10 << 1) | 1 = 33). Under a KVM
# that cannot run guests the output stops early (or QEMU reports an internal error), which is the point.
#
# Build (scripts/gen-accel-probe.mjs does this and writes src/drivers/qemu/accel-probe-rom.ts):
#   as --64 -o accel-probe.o accel-probe.S && ld -m elf_x86_64 -Ttext=0 -e 0 --oformat binary -o accel-probe.rom accel-probe.o
# Offsets inside the ROM are link addresses (linked at 0); BASE turns them into physical addresses.

        .set BASE, 0xF0000
        .set COM1, 0x3f8
        .set EXIT_PORT, 0xf4
        .set PML4, 0x1000

        .text
        .code16
start:
        cli
        cld
        movw $COM1, %dx
        movw $msg_real, %si
1:      lodsb %cs:(%si), %al
        testb %al, %al
        jz 2f
        outb %al, %dx
        jmp 1b
2:      lgdtl %cs:gdtr
        movl %cr0, %eax
        orl $1, %eax                    # CR0.PE
        movl %eax, %cr0
        ljmpl $0x08, $(BASE + pm32)

        .code32
pm32:
        movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movl $(BASE + msg_prot), %esi
1:      lodsb
        testb %al, %al
        jz 2f
        outb %al, %dx
        jmp 1b
        # Identity-map the first 2 MiB with one large page: PML4 -> PDPT -> PD in RAM at 0x1000-0x3fff.
2:      movl $PML4, %edi
        xorl %eax, %eax
        movl $3072, %ecx
        rep stosl
        movl $(PML4 + 0x1003), PML4
        movl $(PML4 + 0x2003), PML4 + 0x1000
        movl $0x83, PML4 + 0x2000
        movl %cr4, %eax
        orl $0x20, %eax                 # CR4.PAE
        movl %eax, %cr4
        movl $PML4, %eax
        movl %eax, %cr3
        movl $0xC0000080, %ecx          # EFER.LME
        rdmsr
        orl $0x100, %eax
        wrmsr
        movl %cr0, %eax
        orl $0x80000000, %eax           # CR0.PG
        movl %eax, %cr0
        ljmpl $0x18, $(BASE + lm64)

        .code64
lm64:
        movw $COM1, %dx                 # rdmsr clobbered it
        movq $(BASE + msg_long), %rsi
1:      lodsb
        testb %al, %al
        jz 2f
        outb %al, %dx
        jmp 1b
        # xorshift64 (13, 7, 17) from a fixed seed, 65536 rounds: arithmetic the host can check.
2:      movabsq $0x9E3779B97F4A7C15, %rax
        movl $65536, %ecx
3:      movq %rax, %rbx
        shlq $13, %rbx
        xorq %rbx, %rax
        movq %rax, %rbx
        shrq $7, %rbx
        xorq %rbx, %rax
        movq %rax, %rbx
        shlq $17, %rbx
        xorq %rbx, %rax
        loop 3b
        movq %rax, %rbx
        movl $16, %ecx
4:      rolq $4, %rbx
        movb %bl, %al
        andb $0x0f, %al
        addb $0x30, %al
        cmpb $0x39, %al
        jbe 5f
        addb $0x27, %al                 # a-f
5:      outb %al, %dx
        loop 4b
        movb $0x0a, %al
        outb %al, %dx
        movb $0x10, %al
        outb %al, $EXIT_PORT
6:      hlt
        jmp 6b

        .p2align 3
gdt:    .quad 0
        .quad 0x00CF9B000000FFFF        # 0x08: 32-bit code
        .quad 0x00CF93000000FFFF        # 0x10: data
        .quad 0x00AF9B000000FFFF        # 0x18: 64-bit code
gdt_end:
gdtr:   .word gdt_end - gdt - 1
        .long BASE + gdt
msg_real: .asciz "hangar-probe: real"
msg_prot: .asciz " protected"
msg_long: .asciz " long "
code_end:

        .code16
        .org 0xFFF0
reset:  ljmp $0xF000, $start
        .org 0x10000
