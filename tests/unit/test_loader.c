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
#include <sys/mman.h>
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

/* loader_open_file refuses what is not a regular file, naming it, and never
 * blocks on the way: a FIFO with no writer used to park the caller in
 * open() forever (the alarm turns such a hang into a failed test). */
static void open_file_refuses_non_files(void **state)
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

	struct loader_src src;
	ember_err e = {{0}};
	alarm(10);
	assert_int_equal(loader_open_file(fifo, "kernel_image_path", &src, &e), -1);
	assert_non_null(strstr(e.msg, "kernel_image_path"));
	assert_non_null(strstr(e.msg, fifo));
	assert_non_null(strstr(e.msg, "FIFO"));
	assert_int_equal(loader_open_file(dir, "initrd_path", &src, &e), -1);
	assert_non_null(strstr(e.msg, dir));
	assert_non_null(strstr(e.msg, "directory"));
	assert_int_equal(loader_open_file("/dev/null", "initrd_path", &src, &e), -1);
	assert_non_null(strstr(e.msg, "/dev/null"));
	assert_non_null(strstr(e.msg, "character device"));
	assert_int_equal(loader_open_file(empty, "initrd_path", &src, &e), -1);
	assert_non_null(strstr(e.msg, "empty"));
	alarm(0);

	unlink(fifo);
	unlink(empty);
	rmdir(dir);
}

/* A vmlinux file with a 3 MiB segment and 1 MiB of bss, and a 1.5 MiB
 * initrd, loaded from their files as vmm_build does: in pieces on two
 * threads, into fresh memory (bss left as it is) or into memory that held
 * something (bss zeroed). Every byte must land as the in-memory load puts
 * it. */
#define BIG_SEG (3u << 20)
#define BIG_BSS (1u << 20)
#define BIG_RD (3u << 19)

static uint8_t pattern(uint64_t i)
{
	return (uint8_t)(i * 2654435761u >> 13);
}

static void write_file(const char *path, const void *a, size_t alen, const void *b, size_t blen)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, a, alen), (ssize_t)alen);
	if (blen)
		assert_int_equal(write(fd, b, blen), (ssize_t)blen);
	close(fd);
}

static void load_from_files(bool fresh)
{
	char dir[] = "/tmp/ember-test-loader-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char kpath[64], rpath[64];
	snprintf(kpath, sizeof(kpath), "%s/vmlinux", dir);
	snprintf(rpath, sizeof(rpath), "%s/initrd", dir);
	struct elf_img img;
	make_elf(&img);
	img.ph.p_offset = sizeof(img);
	img.ph.p_filesz = BIG_SEG;
	img.ph.p_memsz = BIG_SEG + BIG_BSS;
	uint8_t *seg = malloc(BIG_SEG), *rd = malloc(BIG_RD);
	assert_non_null(seg);
	assert_non_null(rd);
	for (uint64_t i = 0; i < BIG_SEG; i++)
		seg[i] = pattern(i);
	for (uint64_t i = 0; i < BIG_RD; i++)
		rd[i] = pattern(i + 7);
	write_file(kpath, &img, sizeof(img), seg, BIG_SEG);
	write_file(rpath, rd, BIG_RD, NULL, 0);

	/* Fresh: a new anonymous mapping, as vmm_build's; otherwise the
	 * calloc'd memory of the other tests, dirtied. */
	uint8_t *host = mem;
	struct guest_mem g = gm;
	if (fresh) {
		host = mmap(NULL, MEM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		assert_true(host != MAP_FAILED);
		gm_init_from(&g, host, MEM, X86_MMIO_GAP_START);
	} else {
		memset(mem, 0x55, MEM);
	}
	struct loader_src ks, rs;
	struct load_plan plan = {.fresh = fresh};
	struct kernel_image k;
	uint64_t at;
	ember_err e = {{0}};
	assert_int_equal(loader_open_file(kpath, "kernel_image_path", &ks, &e), 0);
	assert_int_equal(loader_open_file(rpath, "initrd_path", &rs, &e), 0);
	assert_int_equal(loader_plan_kernel(&g, &ks, &k, &plan, &e), 0);
	assert_int_equal(loader_plan_initrd(&g, &k, &rs, &at, &plan, &e), 0);
	assert_int_equal(loader_run(&plan, true, &e), 0);
	assert_memory_equal(host + 0x1000000, seg, BIG_SEG);
	for (uint64_t i = 0; i < BIG_BSS; i++)
		assert_int_equal(host[0x1000000 + BIG_SEG + i], 0);
	assert_int_equal(at % 4096, 0);
	assert_memory_equal(host + at, rd, BIG_RD);
	assert_int_equal(k.load_end, 0x1000000 + BIG_SEG + BIG_BSS);

	/* A file that shrinks between the plan and the load is an error
	 * that names it, not a crash. */
	struct load_plan again = {.fresh = fresh};
	assert_int_equal(loader_plan_initrd(&g, &k, &rs, &at, &again, &e), 0);
	assert_int_equal(truncate(rpath, BIG_RD / 2), 0);
	assert_int_equal(loader_run(&again, true, &e), -1);
	assert_non_null(strstr(e.msg, "initrd_path"));
	assert_non_null(strstr(e.msg, "shrank"));

	loader_close_file(&ks);
	loader_close_file(&rs);
	if (fresh)
		munmap(host, MEM);
	free(seg);
	free(rd);
	unlink(kpath);
	unlink(rpath);
	rmdir(dir);
}

static void files_load_into_fresh_memory(void **state)
{
	(void)state;
	load_from_files(true);
}

static void files_load_into_used_memory(void **state)
{
	(void)state;
	load_from_files(false);
}

/* Two ELF segments that write the same bytes land in file order, as one
 * after the other would, even with a helper thread. */
static void overlapping_segments_load_in_order(void **state)
{
	(void)state;
	struct {
		Elf64_Ehdr eh;
		Elf64_Phdr ph[2];
	} hdr;
	size_t len = sizeof(hdr) + 2 * BIG_SEG;
	uint8_t *file = calloc(1, len);
	assert_non_null(file);
	struct elf_img one;
	make_elf(&one);
	memset(&hdr, 0, sizeof(hdr));
	hdr.eh = one.eh;
	hdr.eh.e_phnum = 2;
	hdr.eh.e_phoff = offsetof(__typeof__(hdr), ph);
	for (int i = 0; i < 2; i++) {
		hdr.ph[i] = one.ph;
		hdr.ph[i].p_offset = sizeof(hdr) + (uint64_t)i * BIG_SEG;
		hdr.ph[i].p_filesz = BIG_SEG;
		hdr.ph[i].p_memsz = BIG_SEG;
		hdr.ph[i].p_paddr = 0x1000000 + (uint64_t)i * (BIG_SEG / 2);
	}
	memcpy(file, &hdr, sizeof(hdr));
	memset(file + sizeof(hdr), 0x11, BIG_SEG);
	memset(file + sizeof(hdr) + BIG_SEG, 0x22, BIG_SEG);
	const struct loader_src src = {.fd = -1, .buf = file, .len = len, .what = "kernel"};
	struct load_plan plan = {.fresh = false};
	struct kernel_image k;
	ember_err e = {{0}};
	assert_int_equal(loader_plan_kernel(&gm, &src, &k, &plan, &e), 0);
	assert_int_equal(loader_run(&plan, true, &e), 0);
	assert_int_equal(mem[0x1000000], 0x11);
	assert_int_equal(mem[0x1000000 + BIG_SEG / 2 - 1], 0x11);
	assert_int_equal(mem[0x1000000 + BIG_SEG / 2], 0x22);
	assert_int_equal(mem[0x1000000 + BIG_SEG - 1], 0x22);
	free(file);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(elf_loads),	     cmocka_unit_test(elf_malformed),
		cmocka_unit_test(elf_pvh_note),
		cmocka_unit_test(bzimage_loads),     cmocka_unit_test(bzimage_malformed),
		cmocka_unit_test(initrd_placement),  cmocka_unit_test(open_file_refuses_non_files),
		cmocka_unit_test(files_load_into_fresh_memory),
		cmocka_unit_test(files_load_into_used_memory),
		cmocka_unit_test(overlapping_segments_load_in_order),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
