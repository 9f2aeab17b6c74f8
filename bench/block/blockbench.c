/* blockbench: throughput of the virtio-block device model, native.
 *
 * A fake driver keeps `depth` requests in flight on a 256-entry queue whose
 * rings live in host memory laid out as guest memory, and the device serves
 * them from a host file through the Sync or the io_uring engine, exactly as
 * the VMM thread would (process_queue on a notification, process_completions
 * when the completion eventfd fires). No KVM, no guest: this measures the
 * device model and the host I/O path, with the file in the page cache.
 *
 *   blockbench [-f FILE] [-s SIZE_MIB] [-t SECONDS] [-d DEPTH]
 *
 * Prints one line per case: workload, engine, requests, MiB/s, and CPU time
 * (user + system, io_uring workers included) per request. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio_block.h"
#include "guest/guest_mem.h"

#define QSIZE 256
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define HDRS 0x8000
#define STATUS 0xa000
#define DATA 0x100000
#define MAX_DEPTH 64
#define MIB (1024ULL * 1024)

struct bench {
	struct guest_mem gm;
	struct virtio_block *b;
	struct virtio_mmio *m;
	uint16_t avail_idx, used_seen;
	uint64_t rng;
	uint64_t disk_sectors;
	uint64_t seq_sector;
};

struct workload {
	const char *name;
	uint32_t type;
	uint32_t len;
	bool random;
};

static void die(const char *what)
{
	fprintf(stderr, "blockbench: %s\n", what);
	exit(1);
}

static void w32(struct bench *x, uint64_t off, uint32_t v)
{
	virtio_mmio_write(x->m, off, (const uint8_t *)&v, 4);
}

static uint32_t r32(struct bench *x, uint64_t off)
{
	uint32_t v;
	virtio_mmio_read(x->m, off, (uint8_t *)&v, 4);
	return v;
}

static void bring_up(struct bench *x)
{
	w32(x, VIRTIO_MMIO_STATUS, 0);
	w32(x, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	w32(x, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	for (uint32_t sel = 0; sel < 2; sel++) {
		w32(x, VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel);
		uint32_t f = r32(x, VIRTIO_MMIO_DEVICE_FEATURES);
		w32(x, VIRTIO_MMIO_DRIVER_FEATURES_SEL, sel);
		w32(x, VIRTIO_MMIO_DRIVER_FEATURES, f);
	}
	uint32_t s = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK;
	w32(x, VIRTIO_MMIO_STATUS, s);
	w32(x, VIRTIO_MMIO_QUEUE_SEL, 0);
	w32(x, VIRTIO_MMIO_QUEUE_NUM, QSIZE);
	w32(x, VIRTIO_MMIO_QUEUE_DESC_LOW, DESC);
	w32(x, VIRTIO_MMIO_QUEUE_DRIVER_LOW, AVAIL);
	w32(x, VIRTIO_MMIO_QUEUE_DEVICE_LOW, USED);
	w32(x, VIRTIO_MMIO_QUEUE_READY, 1);
	w32(x, VIRTIO_MMIO_STATUS, s | VIRTIO_STATUS_DRIVER_OK);
	if (r32(x, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET)
		die("the device did not come up");
	x->avail_idx = x->used_seen = 0;
}

static void desc(struct bench *x, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		 uint16_t next)
{
	uint8_t d[16];
	memcpy(d, &addr, 8);
	memcpy(d + 8, &len, 4);
	memcpy(d + 12, &flags, 2);
	memcpy(d + 14, &next, 2);
	gm_write(&x->gm, DESC + 16ULL * i, d, 16);
}

static uint64_t next_sector(struct bench *x, const struct workload *w)
{
	uint64_t span = w->len / VIRTIO_BLK_SECTOR_SIZE;
	uint64_t slots = x->disk_sectors / span;
	if (!w->random) {
		uint64_t s = x->seq_sector;
		x->seq_sector = (x->seq_sector + span) % (slots * span);
		return s;
	}
	x->rng ^= x->rng << 13;
	x->rng ^= x->rng >> 7;
	x->rng ^= x->rng << 17;
	return (x->rng % slots) * span;
}

/* Request slot i: descriptors 3i..3i+2, its own header, data and status. */
static void post(struct bench *x, unsigned i, const struct workload *w)
{
	struct virtio_blk_outhdr h = {.type = w->type, .sector = next_sector(x, w)};
	gm_write(&x->gm, HDRS + 16ULL * i, &h, sizeof(h));
	uint16_t d = (uint16_t)(3 * i);
	bool in = w->type == VIRTIO_BLK_T_IN;
	desc(x, d, HDRS + 16ULL * i, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(d + 1));
	desc(x, (uint16_t)(d + 1), DATA + (uint64_t)w->len * i, w->len,
	     VIRTQ_DESC_F_NEXT | (in ? VIRTQ_DESC_F_WRITE : 0), (uint16_t)(d + 2));
	desc(x, (uint16_t)(d + 2), STATUS + i, 1, VIRTQ_DESC_F_WRITE, 0);
	uint16_t slot = x->avail_idx % QSIZE;
	gm_write(&x->gm, AVAIL + 4 + 2ULL * slot, &d, 2);
	x->avail_idx++;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	gm_write(&x->gm, AVAIL + 2, &x->avail_idx, 2);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void run(struct bench *x, const struct workload *w, const char *engine, unsigned depth,
		double seconds)
{
	bring_up(x);
	x->seq_sector = 0;
	for (unsigned i = 0; i < depth; i++)
		post(x, i, w);
	uint64_t done = 0, errors = 0;
	int cfd = virtio_block_completion_fd(x->b);
	double t0 = now_s(), c0 = cpu_s(), t;
	virtio_block_process_queue(x->b);
	while ((t = now_s()) - t0 < seconds) {
		if (cfd >= 0) {
			struct pollfd p = {.fd = cfd, .events = POLLIN};
			if (poll(&p, 1, 1000) < 0 && errno != EINTR)
				die("poll");
			virtio_block_process_completions(x->b);
		}
		uint16_t used;
		gm_read(&x->gm, USED + 2, &used, 2);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		while (x->used_seen != used) {
			uint32_t id;
			gm_read(&x->gm, USED + 4 + 8ULL * (x->used_seen % QSIZE), &id, 4);
			unsigned i = id / 3;
			uint8_t st;
			gm_read(&x->gm, STATUS + i, &st, 1);
			errors += st != VIRTIO_BLK_S_OK;
			done++;
			x->used_seen++;
			post(x, i, w);
		}
		virtio_block_process_queue(x->b); /* the notification */
	}
	double cpu = cpu_s() - c0;
	/* Let the last requests finish before the next case resets the device. */
	for (int k = 0; k < 100 && cfd >= 0; k++) {
		struct pollfd p = {.fd = cfd, .events = POLLIN};
		if (poll(&p, 1, 10) <= 0)
			break;
		virtio_block_process_completions(x->b);
	}
	if (errors)
		fprintf(stderr, "blockbench: %llu requests failed\n", (unsigned long long)errors);
	printf("%-16s %-6s %10llu %10.1f %12.2f\n", w->name, engine, (unsigned long long)done,
	       (double)done * w->len / MIB / (t - t0), cpu * 1e6 / (double)(done ? done : 1));
	fflush(stdout);
}

static void make_disk(const char *path, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die("cannot create the disk file");
	static uint8_t chunk[MIB];
	for (size_t i = 0; i < sizeof(chunk); i++)
		chunk[i] = (uint8_t)(i * 31 + 7);
	for (uint64_t off = 0; off < size; off += sizeof(chunk))
		if (pwrite(fd, chunk, sizeof(chunk), (off_t)off) != (ssize_t)sizeof(chunk))
			die("cannot write the disk file");
	fsync(fd);
	close(fd);
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	uint64_t size_mib = 256;
	double seconds = 3;
	unsigned depth = 32;
	int opt;
	while ((opt = getopt(argc, argv, "f:s:t:d:h")) != -1) {
		switch (opt) {
		case 'f': path = optarg; break;
		case 's': size_mib = strtoull(optarg, NULL, 0); break;
		case 't': seconds = atof(optarg); break;
		case 'd': depth = (unsigned)atoi(optarg); break;
		default:
			fprintf(stderr, "usage: %s [-f FILE] [-s SIZE_MIB] [-t SECONDS] [-d DEPTH]\n",
				argv[0]);
			return opt == 'h' ? 0 : 2;
		}
	}
	if (depth < 1 || depth > MAX_DEPTH || size_mib < 2)
		die("depth must be 1..64 and the disk at least 2 MiB");
	char tmp[] = "/var/tmp/ember-blockbench-XXXXXX";
	bool own = !path;
	if (own) {
		int fd = mkstemp(tmp);
		if (fd < 0)
			die("mkstemp");
		close(fd);
		path = tmp;
		make_disk(path, size_mib * MIB);
	}

	static const struct workload loads[] = {
		{"4k-randread", VIRTIO_BLK_T_IN, 4096, true},
		{"4k-randwrite", VIRTIO_BLK_T_OUT, 4096, true},
		{"1m-seqread", VIRTIO_BLK_T_IN, 1 << 20, false},
		{"1m-seqwrite", VIRTIO_BLK_T_OUT, 1 << 20, false},
	};
	struct bench x = {.rng = 0x9e3779b97f4a7c15ULL};
	ember_err e;
	if (gm_create(&x.gm, DATA + (uint64_t)MAX_DEPTH * MIB, 3ULL << 30, &e))
		die(e.msg);
	printf("# depth %u, %llu MiB file, %.1f s per case\n", depth,
	       (unsigned long long)size_mib, seconds);
	printf("%-16s %-6s %10s %10s %12s\n", "workload", "engine", "requests", "MiB/s",
	       "cpu-us/req");
	for (size_t l = 0; l < sizeof(loads) / sizeof(loads[0]); l++) {
		for (int eng = 0; eng < 2; eng++) {
			struct drive_config cfg = {
				.drive_id = "bench", .path_on_host = (char *)path,
				.io_engine = eng ? DRIVE_IO_ASYNC : DRIVE_IO_SYNC,
			};
			struct virtio_block_params p = {.drive = &cfg, .gm = &x.gm};
			if (virtio_block_create(&x.b, &p, &e))
				die(e.msg);
			x.m = virtio_block_mmio(x.b);
			x.disk_sectors = virtio_block_capacity(x.b);
			run(&x, &loads[l], eng ? "Async" : "Sync", depth, seconds);
			virtio_block_destroy(x.b);
		}
	}
	gm_destroy(&x.gm);
	if (own)
		unlink(path);
	return 0;
}
