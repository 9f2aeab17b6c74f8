/* libFuzzer target: a hostile driver sending virtio-block requests through
 * either I/O engine's submit path (Sync or io_uring), with a 16 KiB memfd
 * as the disk. The input's first byte picks the engine, read-only and the
 * cache type; the rest is a script (fuzz_driver.h) whose own ops notify
 * the queue, reap completions, and swap the backing file (PATCH /drives).
 *
 * Checked: every request the device popped is eventually answered (the
 * used ring catches up with the available ring once completions are
 * reaped, unless the queue broke), and the disk never grows.
 * Build: CC=clang meson setup build-fuzz -Dfuzz=true && ninja -C build-fuzz
 * Run:   tools/fuzz.sh virtio_block_fuzz (docs/fuzzing.md) */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_quiet.h"
#include "devices/virtio_block.h"
#include "fuzz_driver.h"

#define DISK_BYTES (32 * VIRTIO_BLK_SECTOR_SIZE)

static int disk_fd = -1;
static char disk_path[64];

static void hook_irq(void *ctx)
{
	(void)ctx;
}

static uint64_t fake_clock(void *ctx)
{
	(void)ctx;
	return 1000000000;
}

/* The same disk contents for every input, so a crash reproduces. */
static void reset_disk(void)
{
	static uint8_t pattern[DISK_BYTES];
	if (disk_fd < 0) {
		disk_fd = memfd_create("fuzz-disk", MFD_CLOEXEC);
		if (disk_fd < 0)
			abort();
		snprintf(disk_path, sizeof(disk_path), "/proc/self/fd/%d", disk_fd);
		for (size_t i = 0; i < sizeof(pattern); i++)
			pattern[i] = (uint8_t)(i * 7 + (i >> 9));
	}
	if (ftruncate(disk_fd, 0) || pwrite(disk_fd, pattern, sizeof(pattern), 0) != DISK_BYTES)
		abort();
}

/* Waits (bounded) for the engine to answer every popped request. */
static void settle(struct virtio_block *b)
{
	struct virtio_mmio *m = virtio_block_mmio(b);
	struct virtq *q = virtio_mmio_queue(m, 0);
	int fd = virtio_block_completion_fd(b);
	for (int tries = 0; q->used_idx != q->last_avail; tries++) {
		if (q->broken)
			break; /* what is in flight is drained by destroy */
		if (fd < 0 || tries > 1000) {
			fprintf(stderr, "block fuzz: used %u, popped %u, broken %d\n", q->used_idx,
				q->last_avail, q->broken);
			abort();
		}
		struct pollfd p = {.fd = fd, .events = POLLIN};
		poll(&p, 1, 10);
		virtio_block_process_completions(b);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len)
{
	if (len < 1)
		return 0;
	reset_disk();
	struct fz f = {in, len, 1};
	struct fz_mem mem;
	fz_mem_init(&mem);
	struct drive_config cfg = {
		.drive_id = "fuzz",
		.path_on_host = disk_path,
		.is_read_only = in[0] & 2,
		.cache_type = in[0] & 4 ? DRIVE_CACHE_WRITEBACK : DRIVE_CACHE_UNSAFE,
		.io_engine = in[0] & 1 ? DRIVE_IO_ASYNC : DRIVE_IO_SYNC,
	};
	struct virtio_block_params p = {.drive = &cfg, .gm = &mem.gm,
					.hooks = {.raise_irq = hook_irq},
					.now_ns = fake_clock};
	struct virtio_block *b;
	ember_err e;
	if (virtio_block_create(&b, &p, &e)) {
		fprintf(stderr, "virtio_block_create: %s\n", e.msg);
		abort();
	}
	struct fz_driver d = {.m = virtio_block_mmio(b), .gm = &mem.gm};
	/* Most inputs want a working device: bring it up unless asked not to. */
	if (!(in[0] & 8))
		fz_bring_up(&d, ~0ULL, in[0] >> 4);
	while (fz_more(&f)) {
		uint8_t op = fz_u8(&f) % 11;
		if (fz_driver_op(&d, op, &f))
			continue;
		switch (op) {
		case 7: /* the queue's ioeventfd fired */
		case 8:
			virtio_block_process_queue(b);
			settle(b);
			break;
		case 9:
			virtio_block_process_completions(b);
			break;
		case 10: /* PATCH /drives: the same file again (drains, swaps, interrupts) */
			if (virtio_block_update_path(b, disk_path, &e))
				abort();
			break;
		}
	}
	struct stat st;
	if (fstat(disk_fd, &st) || st.st_size != DISK_BYTES)
		abort(); /* a write past the capacity reached the file */
	virtio_block_destroy(b);
	fz_mem_free(&mem);
	return 0;
}
