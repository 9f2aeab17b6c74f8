#include "arch/x86/mptable.h"

#include <string.h>

#include "arch/x86/layout.h"

/* Layouts from the MP specification, version 1.4, chapter 4. */
struct mpf_intel {
	char signature[4]; /* "_MP_" */
	uint32_t physptr;
	uint8_t length; /* in 16-byte units */
	uint8_t specification;
	uint8_t checksum;
	uint8_t feature[5];
} __attribute__((packed));

struct mpc_table {
	char signature[4]; /* "PCMP" */
	uint16_t length;
	uint8_t spec;
	uint8_t checksum;
	char oem[8];
	char productid[12];
	uint32_t oemptr;
	uint16_t oemsize;
	uint16_t oemcount;
	uint32_t lapic;
	uint32_t reserved;
} __attribute__((packed));

struct mpc_cpu {
	uint8_t type, apicid, apicver, cpuflag;
	uint32_t cpufeature, featureflag, reserved[2];
} __attribute__((packed));

struct mpc_bus {
	uint8_t type, busid;
	char bustype[6];
} __attribute__((packed));

struct mpc_ioapic {
	uint8_t type, apicid, apicver, flags;
	uint32_t apicaddr;
} __attribute__((packed));

struct mpc_intsrc {
	uint8_t type, irqtype;
	uint16_t irqflag;
	uint8_t srcbus, srcbusirq, dstapic, dstirq;
} __attribute__((packed));

enum { MP_PROCESSOR = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_INTSRC = 3, MP_LINTSRC = 4 };
enum { MP_INT = 0, MP_NMI = 1, MP_EXTINT = 3 };
#define CPU_ENABLED 1
#define CPU_BOOTPROCESSOR 2
#define MPC_APIC_USABLE 1
#define APIC_VERSION 0x14
#define IOAPIC_VERSION 0x11
/* CPUID family 6 signature and FPU+APIC feature bits, as real BIOSes report. */
#define CPU_STEPPING 0x600
#define CPU_FEATURE_APIC 0x200
#define CPU_FEATURE_FPU 0x001

uint8_t mptable_checksum(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum += p[i];
	return (uint8_t)-sum;
}

int mptable_write(const struct guest_mem *gm, unsigned cpus, ember_err *e)
{
	if (cpus == 0 || cpus > X86_MAX_VCPUS)
		return err_set(e, "mptable: %u CPUs is out of range", cpus);
	/* Laid out in a local buffer, then copied in one checked write. */
	uint8_t buf[X86_EBDA_END - X86_EBDA_START];
	size_t size = sizeof(struct mpf_intel) + sizeof(struct mpc_table) +
		      cpus * sizeof(struct mpc_cpu) + sizeof(struct mpc_bus) +
		      sizeof(struct mpc_ioapic) + (MPTABLE_IOAPIC_PINS + 2) * sizeof(struct mpc_intsrc);
	if (size > sizeof(buf))
		return err_set(e, "mptable: %zu bytes do not fit in the EBDA", size);
	memset(buf, 0, sizeof(buf));

	struct mpf_intel *mpf = (void *)buf;
	struct mpc_table *mpc = (void *)(buf + sizeof(*mpf));
	uint8_t *p = (uint8_t *)(mpc + 1);
	uint8_t ioapic_id = (uint8_t)(cpus + 1);

	for (unsigned i = 0; i < cpus; i++) {
		struct mpc_cpu c = {
			.type = MP_PROCESSOR,
			.apicid = (uint8_t)i,
			.apicver = APIC_VERSION,
			.cpuflag = CPU_ENABLED | (i == 0 ? CPU_BOOTPROCESSOR : 0),
			.cpufeature = CPU_STEPPING,
			.featureflag = CPU_FEATURE_APIC | CPU_FEATURE_FPU,
		};
		memcpy(p, &c, sizeof(c));
		p += sizeof(c);
	}
	struct mpc_bus bus = {.type = MP_BUS, .busid = 0, .bustype = {'I', 'S', 'A', ' ', ' ', ' '}};
	memcpy(p, &bus, sizeof(bus));
	p += sizeof(bus);
	struct mpc_ioapic io = {.type = MP_IOAPIC, .apicid = ioapic_id, .apicver = IOAPIC_VERSION,
				.flags = MPC_APIC_USABLE, .apicaddr = (uint32_t)X86_IOAPIC_ADDR};
	memcpy(p, &io, sizeof(io));
	p += sizeof(io);
	/* ISA IRQ n arrives on IOAPIC pin n, with the bus's default polarity. */
	for (unsigned irq = 0; irq < MPTABLE_IOAPIC_PINS; irq++) {
		struct mpc_intsrc s = {.type = MP_INTSRC, .irqtype = MP_INT, .srcbus = 0,
				       .srcbusirq = (uint8_t)irq, .dstapic = ioapic_id,
				       .dstirq = (uint8_t)irq};
		memcpy(p, &s, sizeof(s));
		p += sizeof(s);
	}
	/* The PIC reaches every LAPIC's LINT0, NMIs their LINT1. */
	struct mpc_intsrc lint0 = {.type = MP_LINTSRC, .irqtype = MP_EXTINT, .dstapic = 0xff,
				   .dstirq = 0};
	struct mpc_intsrc lint1 = {.type = MP_LINTSRC, .irqtype = MP_NMI, .dstapic = 0xff,
				   .dstirq = 1};
	memcpy(p, &lint0, sizeof(lint0));
	p += sizeof(lint0);
	memcpy(p, &lint1, sizeof(lint1));
	p += sizeof(lint1);

	memcpy(mpc->signature, "PCMP", 4);
	mpc->length = (uint16_t)(p - (uint8_t *)mpc);
	mpc->spec = 4;
	memcpy(mpc->oem, "EMBER   ", 8);
	memcpy(mpc->productid, "MICROVM     ", 12);
	mpc->lapic = (uint32_t)X86_LAPIC_ADDR;
	mpc->checksum = mptable_checksum(mpc, mpc->length);

	memcpy(mpf->signature, "_MP_", 4);
	mpf->physptr = (uint32_t)(X86_EBDA_START + sizeof(*mpf));
	mpf->length = 1;
	mpf->specification = 4;
	mpf->checksum = mptable_checksum(mpf, sizeof(*mpf));

	if (gm_write(gm, X86_EBDA_START, buf, (size_t)(p - buf)))
		return err_set(e, "mptable: guest memory does not cover the EBDA");
	return 0;
}
