/* ELF and bzImage parsing, with well-formed and malformed images built here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "arch/x86/loader.h"

#define MEM (32u << 20)
static uint8_t *mem;
static struct guest_mem gm;

static int setup(void **state)
{
	(void)state;
	mem = calloc(1, MEM);
	gm_init_from(&gm, mem, MEM, X86_MMIO_GAP_START);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	free(mem);
	return 0;
}

/* A minimal vmlinux: one PT_LOAD of 64 bytes (+64 bss) at 16 MiB. */
struct elf_img {
	Elf64_Ehdr eh;
	Elf64_Phdr ph;
	uint8_t code[64];
};

/* An x86-64 ELF header entering at 16 MiB, with phnum program headers at
 * phoff. */
static void elf_header(Elf64_Ehdr *eh, size_t phoff, uint16_t phnum)
{
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_machine = EM_X86_64;
	eh->e_entry = 0x1000000;
	eh->e_phoff = phoff;
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = phnum;
}

static void make_elf(struct elf_img *img)
{
	memset(img, 0, sizeof(*img));
	elf_header(&img->eh, offsetof(struct elf_img, ph), 1);
	img->ph.p_type = PT_LOAD;
	img->ph.p_offset = offsetof(struct elf_img, code);
	img->ph.p_paddr = 0x1000000;
	img->ph.p_filesz = 64;
	img->ph.p_memsz = 128;
	memset(img->code, 0xcc, sizeof(img->code));
}

static int load(const void *img, size_t len, struct kernel_image *k, ember_err *e)
{
	return loader_load_kernel(&gm, img, len, k, e);
}

static void elf_loads(void **state)
{
	(void)state;
	struct elf_img img;
	struct kernel_image k;
	ember_err e = {{0}};
	make_elf(&img);
	memset(mem + 0x1000000 + 64, 0x55, 64); /* bss must be zeroed */
	assert_int_equal(load(&img, sizeof(img), &k, &e), 0);
	assert_false(k.is_bzimage);
	assert_int_equal(k.entry, 0x1000000);
	assert_int_equal(k.load_end, 0x1000000 + 128);
	assert_int_equal(mem[0x1000000], 0xcc);
	assert_int_equal(mem[0x1000000 + 64], 0);
	assert_int_equal(k.cmdline_max, X86_CMDLINE_MAX);
}

/* A vmlinux with a PT_NOTE segment: an unrelated note, then Xen's PVH
 * entry note (type 18) with an 8-byte address, as Linux writes it. */
struct pvh_img {
	Elf64_Ehdr eh;
	Elf64_Phdr ph[2];
	struct {
		Elf64_Nhdr nh;
		char name[4];
		uint32_t desc;
	} other;
	struct {
		Elf64_Nhdr nh;
		char name[4];
		uint32_t desc[2]; /* 8 bytes, 4-aligned: notes are not padded to 8 */
	} pvh;
	uint8_t code[64];
};

_Static_assert(offsetof(struct pvh_img, pvh) == offsetof(struct pvh_img, other) + 20,
	       "the notes follow each other without padding");

static void make_pvh(struct pvh_img *img)
{
	memset(img, 0, sizeof(*img));
	elf_header(&img->eh, offsetof(struct pvh_img, ph), 2);
	img->ph[0].p_type = PT_LOAD;
	img->ph[0].p_offset = offsetof(struct pvh_img, code);
	img->ph[0].p_paddr = 0x1000000;
	img->ph[0].p_filesz = 64;
	img->ph[0].p_memsz = 64;
	img->ph[1].p_type = PT_NOTE;
	img->ph[1].p_offset = offsetof(struct pvh_img, other);
	img->ph[1].p_filesz = sizeof(img->other) + sizeof(img->pvh);
	img->other.nh = (Elf64_Nhdr){.n_namesz = 4, .n_descsz = 4, .n_type = 18};
	memcpy(img->other.name, "GNU", 4);
	img->pvh.nh = (Elf64_Nhdr){.n_namesz = 4, .n_descsz = 8, .n_type = 18};
	memcpy(img->pvh.name, "Xen", 4);
	img->pvh.desc[0] = 0x1000020;
}

static void elf_pvh_note(void **state)
{
	(void)state;
	struct pvh_img img;
	struct kernel_image k;
	ember_err e = {{0}};
	make_pvh(&img);
	assert_int_equal(load(&img, sizeof(img), &k, &e), 0);
	assert_true(k.pvh);
	assert_int_equal(k.entry, 0x1000020);

	/* No note for Xen: the ELF entry, Linux boot. */
	make_pvh(&img);
	img.pvh.nh.n_type = 1;
	assert_int_equal(load(&img, sizeof(img), &k, &e), 0);
	assert_false(k.pvh);
	assert_int_equal(k.entry, 0x1000000);

	make_pvh(&img);
	img.pvh.desc[0] = 0x5000000; /* not in a loaded segment */
	assert_int_equal(load(&img, sizeof(img), &k, &e), -1);
	assert_non_null(strstr(e.msg, "PVH entry point"));

	make_pvh(&img);
	img.pvh.desc[1] = 1; /* a 32-bit entry cannot be above 4 GiB */
	assert_int_equal(load(&img, sizeof(img), &k, &e), -1);

	make_pvh(&img);
	img.pvh.nh.n_descsz = 2;
	assert_int_equal(load(&img, sizeof(img), &k, &e), -1);

	make_pvh(&img);
	img.pvh.nh.n_descsz = UINT32_MAX; /* runs past the segment, length wraps if unchecked */
	assert_int_equal(load(&img, sizeof(img), &k, &e), -1);
	assert_non_null(strstr(e.msg, "note"));

	make_pvh(&img);
	img.other.nh.n_namesz = UINT32_MAX - 1;
	assert_int_equal(load(&img, sizeof(img), &k, &e), -1);

	make_pvh(&img);
	img.ph[1].p_filesz = sizeof(img) * 2; /* note segment past end of file */
	assert_int_equal(load(&img, sizeof(img), &k, &e), -1);

	/* A segment too short for a note header holds no note. */
	make_pvh(&img);
	img.ph[1].p_filesz = 5;
	assert_int_equal(load(&img, sizeof(img), &k, &e), 0);
	assert_false(k.pvh);
}

static void elf_malformed(void **state)
{
	(void)state;
	struct elf_img img;
	struct kernel_image k;
	ember_err e = {{0}};

	make_elf(&img);
	assert_int_equal(load(&img, 40, &k, &e), -1); /* header cut short */
	assert_non_null(strstr(e.msg, "kernel"));

	make_elf(&img);
	img.eh.e_ident[EI_CLASS] = ELFCLASS32;
	assert_int_equal(load(&img, sizeof(img), &k, &e), -1);

	make_elf(&img);
	img.eh.e_machine = EM_AARCH64;
	assert_int_equal(load(&img, sizeof(img), &k, &e), -1);

	make_elf(&img);
	img.eh.e_phoff = 0xffffffffffffff00ULL; /* headers past the end, offset wraps */
	assert_int_equal(load(&img, sizeof(img), &k, &e), -1);

	make_elf(&img);
	img.eh.e_phnum = 0xffff;
	assert_int_equal(load(&img, sizeof(img), &k, &e), -1);

	make_elf(&img);
	assert_int_equal(load(&img, sizeof(img) - 1, &k, &e), -1); /* truncated segment */
	assert_non_null(strstr(e.msg, "truncated"));

	make_elf(&img);
	img.ph.p_offset = UINT64_MAX - 8; /* offset + size wraps */
	assert_int_equal(load(&img, sizeof(img), &k, &e), -1);

	make_elf(&img);
	img.ph.p_filesz = 256; /* larger in file than in memory */
	img.ph.p_memsz = 128;
	assert_int_equal(load(&img, sizeof(img), &k, &e), -1);

	make_elf(&img);
	img.ph.p_paddr = MEM - 16; /* runs off the end of guest memory */
	img.eh.e_entry = MEM - 16;
	assert_int_equal(load(&img, sizeof(img), &k, &e), -1);
	assert_non_null(strstr(e.msg, "guest memory"));

	make_elf(&img);
	img.ph.p_paddr = UINT64_MAX - 16; /* wraps */
	assert_int_equal(load(&img, sizeof(img), &k, &e), -1);

	make_elf(&img);
	img.ph.p_paddr = 0x1000; /* below 1 MiB would overwrite boot tables */
	img.eh.e_entry = 0x1000;
	assert_int_equal(load(&img, sizeof(img), &k, &e), -1);

	make_elf(&img);
	img.eh.e_entry = 0x2000000; /* entry outside any segment */
	assert_int_equal(load(&img, sizeof(img), &k, &e), -1);

	make_elf(&img);
	img.ph.p_type = PT_NOTE; /* nothing to load */
	assert_int_equal(load(&img, sizeof(img), &k, &e), -1);
}

/* A bzImage: 4 setup sectors + boot sector, then a 4 KiB payload. */
#define BZ_SETUP_SECTS 4
#define BZ_PAYLOAD 4096
#define BZ_SIZE ((BZ_SETUP_SECTS + 1) * 512 + BZ_PAYLOAD)

static void make_bz(uint8_t *img)
{
	memset(img, 0, BZ_SIZE);
	struct setup_header h = {0};
	h.setup_sects = BZ_SETUP_SECTS;
	h.syssize = BZ_PAYLOAD / 16;
	h.boot_flag = 0xaa55;
	h.jump = 0x66eb; /* header ends at 0x202 + 0x66 = 0x268 */
	h.header = 0x53726448;
	h.version = 0x20f;
	h.loadflags = LOADED_HIGH;
	h.xloadflags = XLF_KERNEL_64;
	h.cmdline_size = 2047;
	h.initrd_addr_max = 0x7fffffff;
	h.init_size = 0x10000;
	memcpy(img + 0x1f1, &h, sizeof(h));
	memset(img + (BZ_SETUP_SECTS + 1) * 512, 0xab, BZ_PAYLOAD);
}

static void bzimage_loads(void **state)
{
	(void)state;
	static uint8_t img[BZ_SIZE];
	struct kernel_image k;
	ember_err e = {{0}};
	make_bz(img);
	assert_int_equal(load(img, sizeof(img), &k, &e), 0);
	assert_true(k.is_bzimage);
	assert_int_equal(k.entry, X86_HIMEM_START + 0x200);
	assert_int_equal(k.load_end, X86_HIMEM_START + 0x10000); /* init_size wins */
	assert_int_equal(mem[X86_HIMEM_START], 0xab);
	assert_int_equal(k.hdr_len, 0x268 - 0x1f1);
	assert_int_equal(k.cmdline_max, 2048);
}

static void bzimage_malformed(void **state)
{
	(void)state;
	static uint8_t img[BZ_SIZE];
	struct kernel_image k;
	ember_err e = {{0}};
	struct setup_header *h = (void *)(img + 0x1f1);

	make_bz(img);
	assert_int_equal(load(img, 0x200, &k, &e), -1); /* too short for a header */

	make_bz(img);
	h->header = 0;
	assert_int_equal(load(img, sizeof(img), &k, &e), -1);
	assert_non_null(strstr(e.msg, "neither"));

	make_bz(img);
	h->version = 0x205;
	assert_int_equal(load(img, sizeof(img), &k, &e), -1);

	make_bz(img);
	h->xloadflags = 0; /* no 64-bit entry */
	assert_int_equal(load(img, sizeof(img), &k, &e), -1);
	assert_non_null(strstr(e.msg, "64-bit"));

	make_bz(img);
	h->loadflags = 0;
	assert_int_equal(load(img, sizeof(img), &k, &e), -1);

	make_bz(img);
	assert_int_equal(load(img, sizeof(img) - 100, &k, &e), -1); /* payload cut */
	assert_non_null(strstr(e.msg, "truncated"));

	make_bz(img);
	assert_int_equal(load(img, 4 * 512, &k, &e), -1); /* cut inside setup */
	assert_non_null(strstr(e.msg, "truncated"));

	make_bz(img);
	h->setup_sects = 0xff; /* setup larger than the file */
	assert_int_equal(load(img, sizeof(img), &k, &e), -1);

	make_bz(img);
	h->init_size = 0xffffffff; /* needs more than guest memory */
	assert_int_equal(load(img, sizeof(img), &k, &e), -1);
	assert_non_null(strstr(e.msg, "memory"));

	/* Found by fuzz/loader_fuzz: a payload that ends before the 64-bit
	 * entry point at 0x200 was accepted, and the guest would jump into
	 * zeroes. */
	make_bz(img);
	h->syssize = 0x200 / 16;
	h->init_size = 0;
	assert_int_equal(load(img, (BZ_SETUP_SECTS + 1) * 512 + 0x200, &k, &e), -1);
	assert_non_null(strstr(e.msg, "entry point"));
	assert_int_equal(load(img, (BZ_SETUP_SECTS + 1) * 512 + 0x201, &k, &e), 0);

	/* Found by fuzz/loader_fuzz: cmdline_size 0xffffffff wrapped to a
	 * limit of 0, refusing every command line. */
	make_bz(img);
	h->cmdline_size = 0xffffffff;
	assert_int_equal(load(img, sizeof(img), &k, &e), 0);
	assert_int_equal(k.cmdline_max, X86_CMDLINE_MAX);

	make_bz(img);
	img[0x201] = 0xff; /* header claims to run past the struct: clamped */
	assert_int_equal(load(img, sizeof(img), &k, &e), 0);
	assert_int_equal(k.hdr_len, sizeof(struct setup_header));
}

static void initrd_placement(void **state)
{
	(void)state;
	struct kernel_image k = {.load_end = 0x1000000, .initrd_addr_max = 0x7fffffff};
	ember_err e = {{0}};
	uint64_t addr = 0;
	static uint8_t rd[10000];
	memset(rd, 0x42, sizeof(rd));
	assert_int_equal(loader_load_initrd(&gm, &k, rd, sizeof(rd), &addr, &e), 0);
	assert_int_equal(addr % 4096, 0);
	assert_true(addr + sizeof(rd) <= MEM);
	assert_true(addr >= k.load_end);
	assert_int_equal(mem[addr], 0x42);

	/* Below initrd_addr_max even when memory extends above it. */
	k.initrd_addr_max = 0x17fffff;
	k.load_end = 0x100000;
	assert_int_equal(loader_load_initrd(&gm, &k, rd, sizeof(rd), &addr, &e), 0);
	assert_true(addr + sizeof(rd) <= 0x1800000);
	assert_true(addr + sizeof(rd) > 0x1800000 - 8192);

	/* Does not fit above the kernel. */
	k.initrd_addr_max = 0x7fffffff;
	k.load_end = MEM - 4096;
	assert_int_equal(loader_load_initrd(&gm, &k, rd, sizeof(rd), &addr, &e), -1);
	assert_non_null(strstr(e.msg, "initrd"));
}

/* loader_map_file refuses what is not a regular file, naming it, and never
 * blocks on the way: a FIFO with no writer used to park the caller in
 * open() forever (the alarm turns such a hang into a failed test). */
static void map_file_refuses_non_files(void **state)
{
	(void)state;
	char dir[] = "/tmp/ember-test-loader-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char fifo[64], empty[64];
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	snprintf(empty, sizeof(empty), "%s/empty", dir);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	int fd = open(empty, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);

	const uint8_t *data = NULL;
	size_t len = 0;
	ember_err e = {{0}};
	alarm(10);
	assert_int_equal(loader_map_file(fifo, "kernel_image_path", &data, &len, &e), -1);
	assert_non_null(strstr(e.msg, "kernel_image_path"));
	assert_non_null(strstr(e.msg, fifo));
	assert_non_null(strstr(e.msg, "FIFO"));
	assert_int_equal(loader_map_file(dir, "initrd_path", &data, &len, &e), -1);
	assert_non_null(strstr(e.msg, dir));
	assert_non_null(strstr(e.msg, "directory"));
	assert_int_equal(loader_map_file("/dev/null", "initrd_path", &data, &len, &e), -1);
	assert_non_null(strstr(e.msg, "/dev/null"));
	assert_non_null(strstr(e.msg, "character device"));
	assert_int_equal(loader_map_file(empty, "initrd_path", &data, &len, &e), -1);
	assert_non_null(strstr(e.msg, "empty"));
	alarm(0);

	unlink(fifo);
	unlink(empty);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(elf_loads),	     cmocka_unit_test(elf_malformed),
		cmocka_unit_test(elf_pvh_note),
		cmocka_unit_test(bzimage_loads),     cmocka_unit_test(bzimage_malformed),
		cmocka_unit_test(initrd_placement),  cmocka_unit_test(map_file_refuses_non_files),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
