#include "arch/x86/loader.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "util/host_file.h"
#include "util/thread_stack.h"

#define PAGE_SIZE 4096ULL
/* The setup header starts at this offset in a bzImage and in boot_params. */
#define SETUP_HDR_OFFSET 0x1f1
#define BZ_MAGIC 0x53726448 /* "HdrS" */
/* What a 64-bit kernel without a header to say otherwise accepts. */
#define DEFAULT_INITRD_ADDR_MAX 0x7fffffffULL

/* Xen's ELF note that names the PVH entry point (a 32-bit physical
 * address): XEN_ELFNOTE_PHYS32_ENTRY, owner "Xen". */
#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* pread of [off, off+n) of an open file, all of it or an error. */
static int src_pread(const struct loader_src *s, uint64_t off, void *dst, uint64_t n,
		     ember_err *e)
{
	uint8_t *p = dst;
	while (n) {
		ssize_t r = pread(s->fd, p, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return err_set(e, "%s: read: %s", s->what, strerror(errno));
		if (r == 0)
			return err_set(e, "%s: the file shrank while it was read", s->what);
		p += r;
		off += (uint64_t)r;
		n -= (uint64_t)r;
	}
	return 0;
}

/* Reads [off, off+n) of the image, which the caller has checked lies
 * inside it: a short read means the file shrank since it was opened. */
static int src_read(const struct loader_src *s, uint64_t off, void *dst, uint64_t n,
		    ember_err *e)
{
	if (!s->buf)
		return src_pread(s, off, dst, n, e);
	memcpy(dst, s->buf + off, n);
	return 0;
}

/* Looks for the PVH entry note in one PT_NOTE segment [off, off+size) of
 * the file (already checked to lie inside it). Returns 1 and sets *entry if
 * found, 0 if not, -1 for a note that runs past its segment. */
static int find_pvh_note(const struct loader_src *img, uint64_t off, uint64_t size,
			 uint64_t *entry, ember_err *e)
{
	uint64_t pos = 0;
	while (size - pos >= sizeof(Elf64_Nhdr)) {
		Elf64_Nhdr nh;
		if (src_read(img, off + pos, &nh, sizeof(nh), e))
			return -1;
		pos += sizeof(nh);
		/* Name and descriptor are each padded to 4 bytes. */
		uint64_t name_len = ((uint64_t)nh.n_namesz + 3) & ~3ULL;
		uint64_t desc_len = ((uint64_t)nh.n_descsz + 3) & ~3ULL;
		if (name_len > size - pos || desc_len > size - pos - name_len)
			return err_set(e, "kernel image: ELF note runs past its segment");
		uint64_t name_at = off + pos, desc_at = name_at + name_len;
		pos += name_len + desc_len;
		char name[4];
		if (nh.n_type != XEN_ELFNOTE_PHYS32_ENTRY || nh.n_namesz != 4)
			continue;
		if (src_read(img, name_at, name, 4, e))
			return -1;
		if (memcmp(name, "Xen", 4))
			continue;
		/* Linux writes it as a pointer-sized value: 4 or 8 bytes. */
		uint64_t v = 0;
		if (nh.n_descsz == 4) {
			uint32_t v32;
			if (src_read(img, desc_at, &v32, 4, e))
				return -1;
			v = v32;
		} else if (nh.n_descsz == 8) {
			if (src_read(img, desc_at, &v, 8, e))
				return -1;
		} else {
			return err_set(e, "kernel image: PVH entry note of %u bytes (expected 4 or 8)",
				       nh.n_descsz);
		}
		if (v > UINT32_MAX)
			return err_set(e, "kernel image: PVH entry point 0x%llx is above 4 GiB",
				       (unsigned long long)v);
		*entry = v;
		return 1;
	}
	return 0;
}

/* Appends a job: len bytes from src at off (or zeros, src NULL) to dst. */
static int plan_add(struct load_plan *p, const struct loader_src *src, uint64_t off,
		    uint8_t *dst, uint64_t len, ember_err *e)
{
	if (!len)
		return 0;
	if (p->n == LOADER_JOBS_MAX)
		return err_set(e, "kernel image: more than %d pieces to load", LOADER_JOBS_MAX);
	p->job[p->n++] = (struct load_job){.src = src, .off = off, .dst = dst, .len = len};
	return 0;
}

static int load_elf(const struct guest_mem *gm, const struct loader_src *img,
		    struct kernel_image *k, struct load_plan *plan, ember_err *e)
{
	uint64_t len = img->len;
	Elf64_Ehdr eh;
	if (len < sizeof(eh))
		return err_set(e, "kernel image: ELF header truncated");
	if (src_read(img, 0, &eh, sizeof(eh), e))
		return -1;
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
		return err_set(e, "kernel image: not a 64-bit little-endian ELF file");
	if (eh.e_machine != EM_X86_64)
		return err_set(e, "kernel image: ELF machine %u is not x86_64", eh.e_machine);
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0)
		return err_set(e, "kernel image: ELF file has no usable program headers");
	if (eh.e_phoff > len || (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > len - eh.e_phoff)
		return err_set(e, "kernel image: ELF program headers past end of file (truncated?)");
	/* At most 64 K entries of 56 bytes, all inside the file. */
	Elf64_Phdr *phs = malloc((size_t)eh.e_phnum * sizeof(*phs));
	if (!phs)
		return err_set(e, "kernel image: out of memory for %u program headers", eh.e_phnum);
	int rc = -1;
	if (src_read(img, eh.e_phoff, phs, (uint64_t)eh.e_phnum * sizeof(*phs), e))
		goto out;

	bool entry_loaded = false, pvh = false, pvh_loaded = false;
	uint64_t pvh_entry = 0;
	int loads = 0;
	/* Notes first: where the PVH entry point is, if the kernel has one. */
	for (unsigned i = 0; i < eh.e_phnum && !pvh; i++) {
		const Elf64_Phdr ph = phs[i];
		if (ph.p_type != PT_NOTE)
			continue;
		if (ph.p_offset > len || ph.p_filesz > len - ph.p_offset) {
			err_set(e, "kernel image: ELF note segment %u extends past end of "
				   "file (truncated?)", i);
			goto out;
		}
		int found = find_pvh_note(img, ph.p_offset, ph.p_filesz, &pvh_entry, e);
		if (found < 0)
			goto out;
		pvh = found == 1;
	}
	k->load_start = UINT64_MAX;
	k->load_end = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		const Elf64_Phdr ph = phs[i];
		if (ph.p_type != PT_LOAD)
			continue;
		if (ph.p_offset > len || ph.p_filesz > len - ph.p_offset) {
			err_set(e, "kernel image: ELF segment %u extends past end of file "
				   "(truncated?)", i);
			goto out;
		}
		if (ph.p_filesz > ph.p_memsz) {
			err_set(e, "kernel image: ELF segment %u is larger in the file than "
				   "in memory", i);
			goto out;
		}
		if (ph.p_paddr < X86_HIMEM_START) {
			err_set(e, "kernel image: ELF segment %u loads below 1 MiB (0x%llx)", i,
				(unsigned long long)ph.p_paddr);
			goto out;
		}
		uint8_t *dst = gm_ptr_w(gm, ph.p_paddr, ph.p_memsz);
		if (!dst) {
			err_set(e, "kernel image: ELF segment %u [0x%llx, +0x%llx) does not "
				   "fit in guest memory", i, (unsigned long long)ph.p_paddr,
				(unsigned long long)ph.p_memsz);
			goto out;
		}
		/* The file's bytes, then zeros up to p_memsz (the bss). */
		if (plan_add(plan, img, ph.p_offset, dst, ph.p_filesz, e) ||
		    plan_add(plan, NULL, 0, dst + ph.p_filesz, ph.p_memsz - ph.p_filesz, e))
			goto out;
		if (ph.p_paddr < k->load_start)
			k->load_start = ph.p_paddr;
		if (ph.p_paddr + ph.p_memsz > k->load_end)
			k->load_end = ph.p_paddr + ph.p_memsz;
		if (eh.e_entry >= ph.p_paddr && eh.e_entry < ph.p_paddr + ph.p_memsz)
			entry_loaded = true;
		if (pvh && pvh_entry >= ph.p_paddr && pvh_entry < ph.p_paddr + ph.p_memsz)
			pvh_loaded = true;
		loads++;
	}
	if (!loads) {
		err_set(e, "kernel image: ELF file has no loadable segment");
		goto out;
	}
	if (!entry_loaded) {
		err_set(e, "kernel image: ELF entry point 0x%llx is outside its segments",
			(unsigned long long)eh.e_entry);
		goto out;
	}
	if (pvh && !pvh_loaded) {
		err_set(e, "kernel image: PVH entry point 0x%llx is outside its segments",
			(unsigned long long)pvh_entry);
		goto out;
	}
	/* As Firecracker: a kernel with a PVH entry point boots through it. */
	k->pvh = pvh;
	k->entry = pvh ? pvh_entry : eh.e_entry;
	k->is_bzimage = false;
	k->cmdline_max = X86_CMDLINE_MAX;
	k->initrd_addr_max = DEFAULT_INITRD_ADDR_MAX;
	rc = 0;
out:
	free(phs);
	return rc;
}

static int load_bzimage(const struct guest_mem *gm, const struct loader_src *img,
			struct kernel_image *k, struct load_plan *plan, ember_err *e)
{
	uint64_t len = img->len;
	struct setup_header h;
	if (len < SETUP_HDR_OFFSET + sizeof(h))
		return err_set(e, "kernel image: too short to be a vmlinux or a bzImage");
	if (src_read(img, SETUP_HDR_OFFSET, &h, sizeof(h), e))
		return -1;
	if (h.boot_flag != 0xaa55 || h.header != BZ_MAGIC)
		return err_set(e, "kernel image: neither an ELF vmlinux nor a bzImage");
	if (h.version < 0x206)
		return err_set(e, "kernel image: bzImage boot protocol %u.%02u is older than 2.06",
			       h.version >> 8, h.version & 0xff);
	if (!(h.loadflags & LOADED_HIGH))
		return err_set(e, "kernel image: zImage (not loaded high) is not supported");
	if (h.version >= 0x20c && !(h.xloadflags & XLF_KERNEL_64))
		return err_set(e, "kernel image: bzImage has no 64-bit entry point");

	uint64_t setup_size = ((uint64_t)(h.setup_sects ? h.setup_sects : 4) + 1) * 512;
	if (setup_size >= len)
		return err_set(e, "kernel image: bzImage truncated inside its setup code");
	uint64_t payload = len - setup_size;
	/* The 64-bit entry point is 0x200 into the payload: it must be there. */
	if (payload <= 0x200)
		return err_set(e, "kernel image: bzImage payload of %llu bytes ends before its "
				  "64-bit entry point", (unsigned long long)payload);
	if ((uint64_t)h.syssize * 16 > payload)
		return err_set(e, "kernel image: bzImage truncated (%llu of %llu payload bytes)",
			       (unsigned long long)payload, (unsigned long long)h.syssize * 16);
	/* The kernel decompresses in place and needs init_size bytes there. */
	uint64_t need = h.init_size > payload ? h.init_size : payload;
	uint8_t *dst = gm_ptr_w(gm, X86_HIMEM_START, need);
	if (!dst)
		return err_set(e, "kernel image: bzImage needs %llu MiB at 1 MiB, more than guest "
				  "memory holds", (unsigned long long)(need >> 20) + 1);
	if (plan_add(plan, img, setup_size, dst, payload, e))
		return -1;

	/* The header ends at 0x202 plus the byte at 0x201 (the jump offset):
	 * the high byte of h.jump, the 2-byte jump at 0x200. */
	size_t hdr_end = 0x202 + (uint8_t)(h.jump >> 8);
	if (hdr_end > SETUP_HDR_OFFSET + sizeof(h))
		hdr_end = SETUP_HDR_OFFSET + sizeof(h);
	k->hdr = h;
	k->hdr_len = hdr_end - SETUP_HDR_OFFSET;
	k->is_bzimage = true;
	k->entry = X86_HIMEM_START + 0x200; /* the 64-bit entry, boot protocol 2.06+ */
	k->load_start = X86_HIMEM_START;
	k->load_end = X86_HIMEM_START + need;
	/* 64-bit: a cmdline_size of 0xffffffff must not wrap to a limit of 0. */
	uint64_t cmdline_max = (uint64_t)h.cmdline_size + 1;
	k->cmdline_max = cmdline_max < X86_CMDLINE_MAX ? (uint32_t)cmdline_max : X86_CMDLINE_MAX;
	k->initrd_addr_max = h.initrd_addr_max ? h.initrd_addr_max : DEFAULT_INITRD_ADDR_MAX;
	return 0;
}

int loader_plan_kernel(const struct guest_mem *gm, const struct loader_src *img,
		       struct kernel_image *k, struct load_plan *plan, ember_err *e)
{
	memset(k, 0, sizeof(*k));
	uint8_t magic[SELFMAG];
	if (img->len >= SELFMAG) {
		if (src_read(img, 0, magic, SELFMAG, e))
			return -1;
		if (!memcmp(magic, ELFMAG, SELFMAG))
			return load_elf(gm, img, k, plan, e);
	}
	return load_bzimage(gm, img, k, plan, e);
}

int loader_plan_initrd(const struct guest_mem *gm, const struct kernel_image *k,
		       const struct loader_src *img, uint64_t *addr, struct load_plan *plan,
		       ember_err *e)
{
	uint64_t len = img->len;
	uint64_t top = gm_lowmem_end(gm);
	if (top > k->initrd_addr_max + 1)
		top = k->initrd_addr_max + 1;
	if (len > top || ((top - len) & ~(PAGE_SIZE - 1)) < k->load_end)
		return err_set(e, "initrd of %llu MiB does not fit in guest memory above the kernel",
			       (unsigned long long)(len >> 20));
	uint64_t at = (top - len) & ~(PAGE_SIZE - 1);
	uint8_t *dst = gm_ptr_w(gm, at, len);
	if (!dst)
		return err_set(e, "initrd does not fit in guest memory");
	if (plan_add(plan, img, 0, dst, len, e))
		return -1;
	*addr = at;
	return 0;
}

/* ---- running a plan ---------------------------------------------------- */

/* Workers take the plan in pieces of this size, in order. */
#define LOAD_CHUNK (1ULL << 20)

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

struct plan_run {
	const struct load_plan *plan;
	uint64_t chunks;
	atomic_uint_fast64_t next;
	atomic_bool failed;
	ember_err err; /* written by the first worker that fails, only */
};

static uint64_t job_chunks(const struct load_job *j)
{
	return (j->len + LOAD_CHUNK - 1) / LOAD_CHUNK;
}

/* Chunk number c of the plan: its job, and where it starts in that job. */
static const struct load_job *find_chunk(const struct load_plan *p, uint64_t c, uint64_t *at)
{
	for (unsigned i = 0; i < p->n; i++) {
		uint64_t n = job_chunks(&p->job[i]);
		if (c < n) {
			*at = c * LOAD_CHUNK;
			return &p->job[i];
		}
		c -= n;
	}
	return NULL;
}

static int run_chunk(const struct load_plan *p, const struct load_job *j, uint64_t at,
		     ember_err *e)
{
	uint64_t n = j->len - at < LOAD_CHUNK ? j->len - at : LOAD_CHUNK;
	uint8_t *dst = j->dst + at;
	if (!j->src) {
		if (!p->fresh)
			memset(dst, 0, n);
		return 0;
	}
	if (p->fresh) {
		/* Fresh memory has no pages yet: one call allocates the
		 * chunk's pages, cheaper than a fault for each. An error
		 * (an old kernel) leaves it to the faults. */
		uintptr_t a = (uintptr_t)dst & ~(uintptr_t)(PAGE_SIZE - 1);
		uintptr_t b = ((uintptr_t)dst + n + PAGE_SIZE - 1) & ~(uintptr_t)(PAGE_SIZE - 1);
		(void)madvise((void *)a, b - a, MADV_POPULATE_WRITE);
	}
	return src_read(j->src, j->off + at, dst, n, e);
}

static void *plan_worker(void *arg)
{
	struct plan_run *r = arg;
	ember_err e = {{0}};
	for (;;) {
		if (atomic_load(&r->failed))
			break;
		uint64_t c = atomic_fetch_add(&r->next, 1);
		uint64_t at;
		const struct load_job *j = c < r->chunks ? find_chunk(r->plan, c, &at) : NULL;
		if (!j)
			break;
		if (run_chunk(r->plan, j, at, &e)) {
			if (!atomic_exchange(&r->failed, true))
				r->err = e;
			break;
		}
	}
	return NULL;
}

/* Whether two pieces of the plan write the same guest bytes (only a
 * strange ELF file does): they must then be written in order. */
static bool plan_overlaps(const struct load_plan *p)
{
	for (unsigned i = 0; i < p->n; i++)
		for (unsigned k = i + 1; k < p->n; k++)
			if (p->job[i].dst < p->job[k].dst + p->job[k].len &&
			    p->job[k].dst < p->job[i].dst + p->job[i].len)
				return true;
	return false;
}

int loader_run(const struct load_plan *p, bool helper, ember_err *e)
{
	struct plan_run r = {.plan = p};
	for (unsigned i = 0; i < p->n; i++)
		r.chunks += job_chunks(&p->job[i]);
	atomic_init(&r.next, 0);
	atomic_init(&r.failed, false);
	pthread_t t;
	bool started = false;
	if (helper && r.chunks > 1 && !plan_overlaps(p)) {
		pthread_attr_t attr;
		if (!pthread_attr_init(&attr)) {
			started = !pthread_attr_setstacksize(&attr, EMBER_THREAD_STACK_SIZE) &&
				  !pthread_create(&t, &attr, plan_worker, &r);
			pthread_attr_destroy(&attr);
		}
	}
	plan_worker(&r);
	if (started)
		pthread_join(t, NULL);
	if (atomic_load(&r.failed)) {
		if (e)
			*e = r.err;
		return -1;
	}
	return 0;
}

/* ---- the in-memory forms (unit tests, fuzzing) ------------------------- */

int loader_load_kernel(const struct guest_mem *gm, const uint8_t *img, size_t len,
		       struct kernel_image *k, ember_err *e)
{
	const struct loader_src src = {.fd = -1, .buf = img, .len = len, .what = "kernel image"};
	struct load_plan plan = {.n = 0};
	if (loader_plan_kernel(gm, &src, k, &plan, e))
		return -1;
	return loader_run(&plan, false, e);
}

int loader_load_initrd(const struct guest_mem *gm, const struct kernel_image *k,
		       const uint8_t *data, size_t len, uint64_t *addr, ember_err *e)
{
	const struct loader_src src = {.fd = -1, .buf = data, .len = len, .what = "initrd"};
	struct load_plan plan = {.n = 0};
	if (loader_plan_initrd(gm, k, &src, addr, &plan, e))
		return -1;
	return loader_run(&plan, false, e);
}

/* ---- files ------------------------------------------------------------- */

int loader_open_file(const char *path, const char *what, struct loader_src *src, ember_err *e)
{
	*src = (struct loader_src){.fd = -1, .what = what};
	int fd = host_file_open(path, O_RDONLY, HOST_FILE_REGULAR, what, e);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st)) {
		err_set(e, "%s %s: %s", what, path, strerror(errno));
		close(fd);
		return -1;
	}
	if (st.st_size == 0) {
		close(fd);
		return err_set(e, "%s %s: file is empty", what, path);
	}
	src->fd = fd;
	src->len = (uint64_t)st.st_size;
	return 0;
}

void loader_close_file(struct loader_src *src)
{
	if (src->fd >= 0)
		close(src->fd);
	src->fd = -1;
}
