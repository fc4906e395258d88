/* hangar-cpuid: prints the CPUID hypervisor signature (leaf 0x40000000); exit 0 printed, 1 no hypervisor bit, 2 bit set but empty signature, 3 not x86. */
#include <stdio.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

int main(void) {
    unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
    char sig[13];

    /* Leaf 1, ECX bit 31: "hypervisor present". Without it leaf 0x40000000 is meaningless. */
    __cpuid(1, eax, ebx, ecx, edx);
    if (!(ecx & (1u << 31))) return 1;

    __cpuid(0x40000000, eax, ebx, ecx, edx);
    memcpy(sig + 0, &ebx, 4);
    memcpy(sig + 4, &ecx, 4);
    memcpy(sig + 8, &edx, 4);
    sig[12] = '\0';
    /* Printed up to the first NUL (KVM pads "KVMKVMKVM" with NULs); spaces are kept; one newline ends it. */
    if (sig[0] == '\0') return 2;
    printf("%s\n", sig);
    return 0;
}
#else
int main(void) {
    return 3;
}
#endif
