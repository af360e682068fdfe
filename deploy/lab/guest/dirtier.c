/* dirtier: the lab's bare-metal test guest. It dirties a working set of memory at a paced rate and checks,
 * page by page, that memory survives every migration; it reports on COM1 once a second.
 *
 * Command line (multiboot, space-separated key=<decimal>):
 *   mem=<MiB>    working-set size (default 64; clamped to the RAM the guest has)
 *   start=<MiB>  offset of the working set (default 4; the kernel lives at 1 MiB)
 *   rate=<n>     pages (4 KiB) dirtied per second; 0 = flat out (default 0)
 *
 * Console (COM1, 0x3f8):
 *   dirtier: start=<MiB>MiB mem=<MiB>MiB rate=<N> pages/s pmtmr=0x<port> ram_top=<MiB>MiB
 *   t=<s> pass=<n> rate=<pages in that second> total=<pages> err=<n>      (once a second)
 *   CORRUPT page=<n> have=<x> want=<y>                                  (first 10 only)
 *
 * Self-check: the first 32-bit word of each working-set page is a counter. In pass P every page must
 * hold P (written as P during pass P-1; fresh RAM is 0 for pass 0) and is then set to P+1. A page that
 * does not hold what the guest last wrote was lost or corrupted by a migration: err counts them.
 *
 * Time: the ACPI PM timer (3.579545 MHz, 24 bit). Pacing works in 10 ms windows. Between windows the
 * CPU halts until the next PIT tick (200 Hz), so a paced guest costs the host little CPU: the lab runs
 * several of these on a 2-core machine. rate=0 never halts.
 *
 * No headers and no libc: it builds with gcc -m32 -ffreestanding and ld alone (no multilib needed). */

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;
typedef int s32;

#define PM_HZ 3579545u
#define WINDOWS_PER_S 100u
#define WINDOW_TICKS (PM_HZ / WINDOWS_PER_S)
#define MAX_BEHIND_WINDOWS 10u
#define PAGE 4096u
#define MIB (1024u * 1024u)
#define FLAT_OUT_CHUNK 4096u
#define MAX_CORRUPT_LINES 10u
#define PIT_HZ 200u /* wake-ups per second while idle: 4 % of a core for an idle guest at 200 Hz, 8 % at 1 kHz */
#define PIT_INPUT_HZ 1193182u

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u32 inl(u16 port)
{
    u32 v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

/* ---- console ---- */

static void putc_(char c) { outb(0x3f8, (u8)c); }
static void puts_(const char *s)
{
    while (*s)
        putc_(*s++);
}
static void putu(u32 v)
{
    char buf[11];
    int i = 0;
    do {
        buf[i++] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v);
    while (i)
        putc_(buf[--i]);
}
static void puthex(u32 v)
{
    static const char digits[] = "0123456789abcdef";
    int shift = 28;
    while (shift > 0 && ((v >> shift) & 0xfu) == 0)
        shift -= 4;
    for (; shift >= 0; shift -= 4)
        putc_(digits[(v >> shift) & 0xfu]);
}

/* ---- command line ---- */

static int parse_key(const char *s, const char *key, u32 *out)
{
    const char *k = key;
    while (*k && *s == *k) {
        s++;
        k++;
    }
    if (*k || *s != '=')
        return 0;
    s++;
    if (*s < '0' || *s > '9')
        return 0;
    u32 v = 0;
    while (*s >= '0' && *s <= '9')
        v = v * 10u + (u32)(*s++ - '0');
    *out = v;
    return 1;
}

static void parse_cmdline(const char *s, u32 *mem_mib, u32 *start_mib, u32 *rate)
{
    while (*s) {
        while (*s == ' ')
            s++;
        if (!parse_key(s, "mem", mem_mib) && !parse_key(s, "start", start_mib))
            parse_key(s, "rate", rate);
        while (*s && *s != ' ')
            s++;
    }
}

/* ---- ACPI PM timer ---- */

static u32 pci_read(u32 bus, u32 dev, u32 fn, u32 off)
{
    outl(0xcf8, 0x80000000u | (bus << 16) | (dev << 11) | (fn << 8) | (off & 0xfcu));
    return inl(0xcfc);
}

/* q35: ICH9 LPC at 00:1f.0 holds PMBASE at 0x40; pc/i440fx: PIIX4 PM at 00:01.3, same offset. */
static u16 find_pm_timer(void)
{
    if (pci_read(0, 0x1f, 0, 0) == 0x29188086u)
        return (u16)((pci_read(0, 0x1f, 0, 0x40) & 0xff80u) + 8u);
    if (pci_read(0, 1, 3, 0) == 0x71138086u)
        return (u16)((pci_read(0, 1, 3, 0x40) & 0xffc0u) + 8u);
    return 0;
}

static u16 pm_port;
static u32 pm_last;
static u32 pm_ticks;

/* A 32-bit tick counter built from 24-bit deltas; callers compare with signed differences. */
static u32 now(void)
{
    u32 raw = inl(pm_port) & 0xffffffu;
    pm_ticks += (raw - pm_last) & 0xffffffu;
    pm_last = raw;
    return pm_ticks;
}

/* ---- interrupts: only the PIT, only to wake the CPU from hlt ---- */

struct idt_gate {
    u16 off_lo;
    u16 sel;
    u8 zero;
    u8 type;
    u16 off_hi;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(8)));

extern void isr_irq_master(void);
extern void isr_irq_slave(void);
extern void isr_fault(void);
extern void guest_idle(void);

static void set_gate(u32 vec, void (*handler)(void))
{
    u32 addr = (u32)handler;
    idt[vec].off_lo = (u16)(addr & 0xffffu);
    idt[vec].sel = 0x08;
    idt[vec].zero = 0;
    idt[vec].type = 0x8e; /* present, DPL 0, 32-bit interrupt gate */
    idt[vec].off_hi = (u16)(addr >> 16);
}

static void setup_interrupts(void)
{
    for (u32 v = 0; v < 256u; v++)
        set_gate(v, v < 32u ? isr_fault : v < 40u ? isr_irq_master : v < 48u ? isr_irq_slave : isr_fault);
    struct {
        u16 limit;
        u32 base;
    } __attribute__((packed)) idtr = {sizeof(idt) - 1u, (u32)idt};
    __asm__ volatile("lidt %0" : : "m"(idtr));

    /* 8259 PICs: IRQ 0-7 -> vectors 32-39, IRQ 8-15 -> 40-47, only IRQ 0 (the PIT) unmasked. */
    outb(0x20, 0x11);
    outb(0xa0, 0x11);
    outb(0x21, 0x20);
    outb(0xa1, 0x28);
    outb(0x21, 0x04);
    outb(0xa1, 0x02);
    outb(0x21, 0x01);
    outb(0xa1, 0x01);
    outb(0x21, 0xfe);
    outb(0xa1, 0xff);

    /* PIT channel 0, mode 2 (rate generator), 1 kHz. */
    u32 divisor = PIT_INPUT_HZ / PIT_HZ;
    outb(0x43, 0x34);
    outb(0x40, (u8)(divisor & 0xffu));
    outb(0x40, (u8)(divisor >> 8));
}

void guest_fault(void) { puts_("\nFAULT: CPU exception in the dirtier guest; halted\n"); }

/* ---- the working set ---- */

static volatile u32 *ws_base;
static u32 ws_pages;
static u32 cursor;
static u32 pass;
static u32 errors;
static u32 total;

static void dirty_pages(u32 n)
{
    while (n--) {
        volatile u32 *p = ws_base + cursor * (PAGE / 4u);
        u32 have = *p;
        if (have != pass) {
            errors++;
            if (errors <= MAX_CORRUPT_LINES) {
                puts_("CORRUPT page=");
                putu(cursor);
                puts_(" have=");
                putu(have);
                puts_(" want=");
                putu(pass);
                putc_('\n');
            }
        }
        *p = pass + 1u;
        total++;
        if (++cursor == ws_pages) {
            cursor = 0;
            pass++;
        }
    }
}

static void status_line(u32 t_s, u32 rate_pages)
{
    puts_("t=");
    putu(t_s);
    puts_(" pass=");
    putu(pass);
    puts_(" rate=");
    putu(rate_pages);
    puts_(" total=");
    putu(total);
    puts_(" err=");
    putu(errors);
    putc_('\n');
}

void guest_main(u32 magic, const u32 *mbi)
{
    u32 mem_mib = 64, start_mib = 4, rate = 0;
    u32 ram_top_mib = 0;

    if (magic == 0x2badb002u && mbi) {
        if (mbi[0] & 1u)
            ram_top_mib = 1u + mbi[2] / 1024u; /* upper memory starts at 1 MiB */
        if (mbi[0] & 4u)
            parse_cmdline((const char *)mbi[4], &mem_mib, &start_mib, &rate);
    }
    if (ram_top_mib && start_mib + mem_mib + 1u > ram_top_mib)
        mem_mib = ram_top_mib > start_mib + 2u ? ram_top_mib - start_mib - 1u : 1u;
    if (mem_mib == 0)
        mem_mib = 1;

    pm_port = find_pm_timer();
    puts_("dirtier: start=");
    putu(start_mib);
    puts_("MiB mem=");
    putu(mem_mib);
    puts_("MiB rate=");
    putu(rate);
    puts_(" pages/s pmtmr=0x");
    puthex(pm_port);
    puts_(" ram_top=");
    putu(ram_top_mib);
    puts_("MiB\n");
    if (!pm_port) {
        puts_("dirtier: no ACPI PM timer found (need q35 or pc machine); halted\n");
        return;
    }

    ws_base = (volatile u32 *)(start_mib * MIB);
    ws_pages = mem_mib * (MIB / PAGE);
    setup_interrupts();

    pm_last = inl(pm_port) & 0xffffffu;
    u32 t0 = now();
    u32 next_window = t0 + WINDOW_TICKS;
    u32 next_second = t0 + PM_HZ;
    u32 seconds = 0, credit = 0, this_second = 0;

    for (;;) {
        u32 n = now();
        if ((s32)(n - next_second) >= 0) {
            seconds++;
            status_line(seconds, this_second);
            this_second = 0;
            next_second += PM_HZ;
            if ((s32)(n - next_second) >= 0) /* paused or stalled for a long time: do not replay */
                next_second = n + PM_HZ;
        }
        if (rate == 0) {
            dirty_pages(FLAT_OUT_CHUNK);
            this_second += FLAT_OUT_CHUNK;
            continue;
        }
        if ((s32)(n - next_window) < 0) {
            guest_idle(); /* boot.S: sti; hlt until the next PIT tick */
            continue;
        }
        if ((s32)(n - next_window) >= (s32)(MAX_BEHIND_WINDOWS * WINDOW_TICKS)) {
            /* Far behind (paused, migration downtime): resynchronise instead of bursting. */
            next_window = n + WINDOW_TICKS;
            continue;
        }
        credit += rate;
        u32 todo = credit / WINDOWS_PER_S;
        credit -= todo * WINDOWS_PER_S;
        dirty_pages(todo);
        this_second += todo;
        next_window += WINDOW_TICKS;
    }
}
