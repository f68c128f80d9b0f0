/* A tiny multiboot guest that dirties memory at a paced rate, for the
 * QEMU side of relive's migration benchmark (migration.md 4.2).
 * Command line (QEMU -append): off=MB ws=MB fill=MB rate=pages/s mhz=TSC MHz
 *   fills `fill` MB from `off` MB with xorshift data, then for ever writes
 *   4 bytes (the pass number) into every 4 KiB page of the `ws` MB window
 *   from `off`, paced with rdtsc to `rate` pages/s (0 = as fast as it can);
 *   after each pass it stores the pass at 0x500 and prints "p<pass>" on the
 *   debug console (port 0xE9). ws=0 halts after the fill (an idle guest).
 * Build: see migrate-core/src/qemu.rs (`build_guest`). */

#define MB_MAGIC 0x1BADB002u
#define MB_FLAGS 0u

__attribute__((section(".multiboot"), aligned(4), used))
static const unsigned int multiboot_header[3] = {MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)};

static inline void outb(unsigned short port, unsigned char v) {
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline unsigned long long rdtsc(void) {
    unsigned lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((unsigned long long)hi << 32) | lo;
}

static void put(const char *s) {
    while (*s) outb(0xE9, (unsigned char)*s++);
}

static void putu(unsigned v) {
    char b[12];
    int i = 0;
    do {
        b[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i) outb(0xE9, (unsigned char)b[--i]);
}

static unsigned arg(const char *cmd, const char *key, unsigned fallback) {
    for (const char *c = cmd; c && *c; c++) {
        if (c != cmd && c[-1] != ' ') continue;
        const char *k = key, *v = c;
        while (*k && *v == *k) k++, v++;
        if (*k || *v != '=') continue;
        unsigned n = 0;
        for (v++; *v >= '0' && *v <= '9'; v++) n = n * 10 + (unsigned)(*v - '0');
        return n;
    }
    return fallback;
}

void kmain(unsigned magic, const unsigned *info) {
    const char *cmd = (magic == 0x2BADB002u && (info[0] & 4)) ? (const char *)info[4] : "";
    unsigned off = arg(cmd, "off", 16), ws = arg(cmd, "ws", 128), fill = arg(cmd, "fill", 200);
    unsigned rate = arg(cmd, "rate", 25600), mhz = arg(cmd, "mhz", 2000);
    volatile unsigned *base = (volatile unsigned *)(off << 20);
    unsigned x = 2463534242u;
    for (unsigned i = 0; i < (fill << 20) / 4; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        base[i] = x | 1u;
    }
    put("filled\n");
    if (ws == 0) {
        /* Idle: memory no longer changes (single-pass migrations). */
        put("idle\n");
        for (;;) __asm__ volatile("cli; hlt");
    }
    unsigned pages = ws << 8;
    unsigned ticks = rate ? (mhz * 1000000u) / rate : 0;
    /* The pass counter lives at 0x500 (below the kernel, in conventional memory). */
    volatile unsigned *counter = (volatile unsigned *)(unsigned long)arg("", "counter", 0x500);
    unsigned long long next = rdtsc();
    for (unsigned pass = 1;; pass++) {
        for (unsigned pg = 0; pg < pages; pg++) {
            base[(pg << 10) + (pass & 1023u)] = pass;
            if (ticks) {
                next += ticks;
                while (rdtsc() < next) {
                }
            }
        }
        *counter = pass;
        outb(0xE9, 'p');
        putu(pass);
        outb(0xE9, '\n');
    }
}
