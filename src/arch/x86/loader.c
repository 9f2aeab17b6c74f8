#include "arch/x86/loader.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/layout.h"
#include "util/host_file.h"

#define PAGE_SIZE 4096ULL
/* The setup header starts at this offset in a bzImage and in boot_params. */
#define SETUP_HDR_OFFSET 0x1f1
#define BZ_MAGIC 0x53726448 /* "HdrS" */
/* What a 64-bit kernel without a header to say otherwise accepts. */
#define DEFAULT_INITRD_ADDR_MAX 0x7fffffffULL

/* Xen's ELF note that names the PVH entry point (a 32-bit physical
 * address): XEN_ELFNOTE_PHYS32_ENTRY, owner "Xen". */
#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* Looks for the PVH entry note in one PT_NOTE segment [off, off+size) of
 * the file (already checked to lie inside it). Returns 1 and sets *entry if
 * found, 0 if not, -1 for a note that runs past its segment. */
static int find_pvh_note(const uint8_t *img, uint64_t off, uint64_t size, uint64_t *entry,
			 ember_err *e)
{
	uint64_t pos = 0;
	while (size - pos >= sizeof(Elf64_Nhdr)) {
		Elf64_Nhdr nh;
		memcpy(&nh, img + off + pos, sizeof(nh));
		pos += sizeof(nh);
		/* Name and descriptor are each padded to 4 bytes. */
		uint64_t name_len = ((uint64_t)nh.n_namesz + 3) & ~3ULL;
		uint64_t desc_len = ((uint64_t)nh.n_descsz + 3) & ~3ULL;
		if (name_len > size - pos || desc_len > size - pos - name_len)
			return err_set(e, "kernel image: ELF note runs past its segment");
		const uint8_t *name = img + off + pos, *desc = name + name_len;
		pos += name_len + desc_len;
		if (nh.n_type != XEN_ELFNOTE_PHYS32_ENTRY || nh.n_namesz != 4 ||
		    memcmp(name, "Xen", 4))
			continue;
		/* Linux writes it as a pointer-sized value: 4 or 8 bytes. */
		uint64_t v = 0;
		if (nh.n_descsz == 4) {
			uint32_t v32;
			memcpy(&v32, desc, 4);
			v = v32;
		} else if (nh.n_descsz == 8) {
			memcpy(&v, desc, 8);
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

static int load_elf(const struct guest_mem *gm, const uint8_t *img, size_t len,
		    struct kernel_image *k, ember_err *e)
{
	Elf64_Ehdr eh;
	if (len < sizeof(eh))
		return err_set(e, "kernel image: ELF header truncated");
	memcpy(&eh, img, sizeof(eh));
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
		return err_set(e, "kernel image: not a 64-bit little-endian ELF file");
	if (eh.e_machine != EM_X86_64)
		return err_set(e, "kernel image: ELF machine %u is not x86_64", eh.e_machine);
	if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0)
		return err_set(e, "kernel image: ELF file has no usable program headers");
	if (eh.e_phoff > len || (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > len - eh.e_phoff)
		return err_set(e, "kernel image: ELF program headers past end of file (truncated?)");

	bool entry_loaded = false, pvh = false, pvh_loaded = false;
	uint64_t pvh_entry = 0;
	int loads = 0;
	/* Notes first: where the PVH entry point is, if the kernel has one. */
	for (unsigned i = 0; i < eh.e_phnum && !pvh; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, img + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_NOTE)
			continue;
		if (ph.p_offset > len || ph.p_filesz > len - ph.p_offset)
			return err_set(e, "kernel image: ELF note segment %u extends past end of "
					  "file (truncated?)", i);
		int rc = find_pvh_note(img, ph.p_offset, ph.p_filesz, &pvh_entry, e);
		if (rc < 0)
			return -1;
		pvh = rc == 1;
	}
	k->load_start = UINT64_MAX;
	k->load_end = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, img + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD)
			continue;
		if (ph.p_offset > len || ph.p_filesz > len - ph.p_offset)
			return err_set(e, "kernel image: ELF segment %u extends past end of file "
					  "(truncated?)", i);
		if (ph.p_filesz > ph.p_memsz)
			return err_set(e, "kernel image: ELF segment %u is larger in the file than "
					  "in memory", i);
		if (ph.p_paddr < X86_HIMEM_START)
			return err_set(e, "kernel image: ELF segment %u loads below 1 MiB (0x%llx)",
				       i, (unsigned long long)ph.p_paddr);
		uint8_t *dst = gm_ptr(gm, ph.p_paddr, ph.p_memsz);
		if (!dst)
			return err_set(e, "kernel image: ELF segment %u [0x%llx, +0x%llx) does not "
					  "fit in guest memory", i, (unsigned long long)ph.p_paddr,
				       (unsigned long long)ph.p_memsz);
		memcpy(dst, img + ph.p_offset, ph.p_filesz);
		memset(dst + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
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
	if (!loads)
		return err_set(e, "kernel image: ELF file has no loadable segment");
	if (!entry_loaded)
		return err_set(e, "kernel image: ELF entry point 0x%llx is outside its segments",
			       (unsigned long long)eh.e_entry);
	if (pvh && !pvh_loaded)
		return err_set(e, "kernel image: PVH entry point 0x%llx is outside its segments",
			       (unsigned long long)pvh_entry);
	/* As Firecracker: a kernel with a PVH entry point boots through it. */
	k->pvh = pvh;
	k->entry = pvh ? pvh_entry : eh.e_entry;
	k->is_bzimage = false;
	k->cmdline_max = X86_CMDLINE_MAX;
	k->initrd_addr_max = DEFAULT_INITRD_ADDR_MAX;
	return 0;
}

static int load_bzimage(const struct guest_mem *gm, const uint8_t *img, size_t len,
			struct kernel_image *k, ember_err *e)
{
	struct setup_header h;
	if (len < SETUP_HDR_OFFSET + sizeof(h))
		return err_set(e, "kernel image: too short to be a vmlinux or a bzImage");
	memcpy(&h, img + SETUP_HDR_OFFSET, sizeof(h));
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
	uint8_t *dst = gm_ptr(gm, X86_HIMEM_START, need);
	if (!dst)
		return err_set(e, "kernel image: bzImage needs %llu MiB at 1 MiB, more than guest "
				  "memory holds", (unsigned long long)(need >> 20) + 1);
	memcpy(dst, img + setup_size, payload);

	/* The header ends at 0x202 plus the byte at 0x201 (the jump offset). */
	size_t hdr_end = 0x202 + img[0x201];
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

int loader_load_kernel(const struct guest_mem *gm, const uint8_t *img, size_t len,
		       struct kernel_image *k, ember_err *e)
{
	memset(k, 0, sizeof(*k));
	if (len >= SELFMAG && !memcmp(img, ELFMAG, SELFMAG))
		return load_elf(gm, img, len, k, e);
	return load_bzimage(gm, img, len, k, e);
}

int loader_load_initrd(const struct guest_mem *gm, const struct kernel_image *k,
		       const uint8_t *data, size_t len, uint64_t *addr, ember_err *e)
{
	uint64_t top = gm_lowmem_end(gm);
	if (top > k->initrd_addr_max + 1)
		top = k->initrd_addr_max + 1;
	if (len > top || ((top - len) & ~(PAGE_SIZE - 1)) < k->load_end)
		return err_set(e, "initrd of %llu MiB does not fit in guest memory above the kernel",
			       (unsigned long long)(len >> 20));
	uint64_t at = (top - len) & ~(PAGE_SIZE - 1);
	if (gm_write(gm, at, data, len))
		return err_set(e, "initrd does not fit in guest memory");
	*addr = at;
	return 0;
}

int loader_map_file(const char *path, const char *what, const uint8_t **data, size_t *len,
		    ember_err *e)
{
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
	void *p = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	int saved = errno;
	close(fd);
	if (p == MAP_FAILED)
		return err_set(e, "%s %s: %s", what, path, strerror(saved));
	*data = p;
	*len = st.st_size;
	return 0;
}

void loader_unmap_file(const uint8_t *data, size_t len)
{
	if (data)
		munmap((void *)data, len);
}
