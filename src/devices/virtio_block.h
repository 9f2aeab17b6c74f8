/* The virtio-block device (virtio 1.1 section 5.2) with Firecracker's Drive
 * semantics, backed by a host file through a Sync or io_uring engine
 * (devices/block_io.h). Pure device logic: it is driven through its
 * virtio-mmio register file and the entry points below, and needs no KVM.
 *
 * Locking: not locked. The owner holds one lock per device around every
 * call here and around the register accesses of virtio_block_mmio(), as
 * docs/virtio.md says; the mmio ops and hooks run with it held.
 *
 * The VMM thread polls three file descriptors per drive:
 *  - the queue's ioeventfd (its own):   read it, virtio_block_process_queue()
 *  - virtio_block_completion_fd() (Async only, else -1), EPOLLIN:
 *					   virtio_block_process_completions()
 *  - virtio_block_rate_limiter_fd(), EPOLLIN: virtio_block_rate_limiter_event()
 * See docs/block.md. */
#ifndef EMBER_VIRTIO_BLOCK_H
#define EMBER_VIRTIO_BLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "devices/drive_config.h"
#include "devices/rate_limiter.h"
#include "virtio/mmio.h"
#include "util/err.h"
#include "guest/guest_mem.h"
#include "util/metrics.h"

/* Firecracker's block device metrics: "block_<drive_id>" per drive,
 * summed into "block". */
#define METRICS_BLOCK(X, a) \
	X(a, inc, activate_fails) \
	X(a, inc, cfg_fails) \
	X(a, inc, no_avail_buffer) \
	X(a, inc, event_fails) \
	X(a, inc, execute_fails) \
	X(a, inc, invalid_reqs_count) \
	X(a, inc, flush_count) \
	X(a, inc, queue_event_count) \
	X(a, inc, rate_limiter_event_count) \
	X(a, inc, update_count) \
	X(a, inc, update_fails) \
	X(a, inc, read_bytes) \
	X(a, inc, write_bytes) \
	X(a, inc, read_count) \
	X(a, inc, write_count) \
	X(a, latency, read_agg) \
	X(a, latency, write_agg) \
	X(a, inc, rate_limiter_throttled_events) \
	X(a, inc, io_engine_throttled_events) \
	X(a, inc, remaining_reqs_count)

struct block_metrics { METRICS_BLOCK(METRICS_MEMBER, _) };
extern const struct metrics_group block_metrics_group;


#define VIRTIO_ID_BLOCK 2
#define VIRTIO_BLK_QUEUE_SIZE 256
/* Requests taken from the queue per call of the VMM thread at most: a
 * driver that keeps refilling the queue must not keep that thread (and so
 * the other devices and the API) to itself. Past it, the device notifies
 * its own queue (hooks.queue_notify, the ioeventfd's path) and goes on at
 * its next turn in the event loop. */
#define VIRTIO_BLK_WORK_BUDGET 64
#define VIRTIO_BLK_SECTOR_SIZE 512
#define VIRTIO_BLK_SECTOR_SHIFT 9
/* Data buffers per request the device accepts (config seg_max). */
#define VIRTIO_BLK_SEG_MAX 128
#define VIRTIO_BLK_ID_BYTES 20

/* Feature bits. */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_FLUSH 9

/* Request types and status values. */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2

/* The request header, device-readable, at the start of every chain. */
struct virtio_blk_outhdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

/* The part of struct virtio_blk_config the device exposes: capacity in
 * 512-byte sectors, size_max (0: not offered), seg_max. */
#define VIRTIO_BLK_CONFIG_SIZE 16

struct virtio_block;

struct virtio_block_params {
	const struct drive_config *drive; /* copied */
	const struct guest_mem *gm;
	struct virtio_mmio_hooks hooks;
	/* From metrics_block_register(); NULL counts into a private set. */
	struct block_metrics *metrics;
	/* CLOCK_MONOTONIC nanoseconds for the rate limiter; NULL means
	 * rate_limiter_now_ns. Tests pass a fake clock. */
	uint64_t (*now_ns)(void *ctx);
	void *clock_ctx;
};

/* Opens the backing file (read-only or read-write by is_read_only,
 * O_CLOEXEC; a regular file or a block device), sizes it (capacity is the
 * size rounded down to whole sectors, as in Firecracker), sets up the I/O
 * engine, the rate limiter and its timer, and the virtio-mmio transport. */
int virtio_block_create(struct virtio_block **out, const struct virtio_block_params *p,
			ember_err *e);
/* Waits for I/O in flight, fdatasyncs a Writeback drive, closes everything.
 * NULL is ignored. */
void virtio_block_destroy(struct virtio_block *b);

/* The register file, for the MMIO bus (under the device's lock). */
struct virtio_mmio *virtio_block_mmio(struct virtio_block *b);
struct block_metrics *virtio_block_metrics(struct virtio_block *b);
uint64_t virtio_block_capacity(const struct virtio_block *b); /* sectors */
/* The engine's completion eventfd (Async), or -1 (Sync). */
int virtio_block_completion_fd(const struct virtio_block *b);
int virtio_block_rate_limiter_fd(const struct virtio_block *b);

/* The queue's ioeventfd fired (the caller has read it). Counts the event
 * and works through the available ring, unless the rate limiter or a full
 * I/O engine holds the queue: then the timer or a completion resumes it. */
void virtio_block_process_queue(struct virtio_block *b);
/* The completion eventfd is readable: finishes completed requests, and
 * resumes the queue if it waited for room in the engine. */
void virtio_block_process_completions(struct virtio_block *b);
/* The rate limiter's timerfd is readable. */
void virtio_block_rate_limiter_event(struct virtio_block *b);

/* PATCH /drives: a new backing file. Finishes the I/O in flight, opens the
 * file with the drive's read-only mode, and swaps it in with its capacity
 * and device ID; then a configuration change interrupt tells the driver.
 * On failure the old file stays. */
/* Waits for every request in flight and returns it to the driver (a
 * snapshot of a paused VM: guest memory then holds every completion). */
void virtio_block_quiesce(struct virtio_block *b);
int virtio_block_update_path(struct virtio_block *b, const char *path, ember_err *e);
/* PATCH /drives: new rate-limiter buckets (absent ones keep their state). */
int virtio_block_update_rate_limiter(struct virtio_block *b, const struct rate_limiter_config *c,
				     ember_err *e);
/* Both, as PATCH /drives/{id} does: path first, then the limiter. */
int virtio_block_patch(struct virtio_block *b, const struct drive_patch *p, ember_err *e);

/* The drive's configuration as now in force (path and rate limiter after
 * any PATCH), in GET /vm/config's shape. New reference. */
json_t *virtio_block_config_json(const struct virtio_block *b);
const char *virtio_block_drive_id(const struct virtio_block *b);

#endif
