/* virtio-balloon, Firecracker's balloon device (virtio 1.2 section 5.5):
 * the host asks the guest for memory (a target in 4 KiB pages in config
 * space); the guest's driver hands pages over on the inflate queue and Ember
 * gives them back to the host (gm_discard), takes them back on the deflate
 * queue, reports memory statistics on the stats queue when polled, and with
 * free page hinting and free page reporting tells the host which of its
 * free pages it may drop. One per VM, configured by PUT /balloon or the
 * config file's "balloon" section; resized by PATCH /balloon.
 *
 * Everything the guest sends is hostile: page numbers out of guest RAM or in
 * the MMIO gap are refused and counted, duplicates are counted (a bitmap of
 * inflated pages), every ring walk is bounded by the queue size and every
 * descriptor by its length limit. Nothing waits for the guest: a driver that
 * never acks a target or never returns a stats buffer only leaves the
 * numbers where they are. */
#ifndef EMBER_VIRTIO_BALLOON_H
#define EMBER_VIRTIO_BALLOON_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "util/err.h"
#include "util/metrics.h"
#include "virtio/mmio.h"
#include "guest/guest_mem.h"

#define VIRTIO_ID_BALLOON 5
#define VIRTIO_BALLOON_QUEUE_SIZE 256
#define VIRTIO_BALLOON_PAGE_SHIFT 12
#define VIRTIO_BALLOON_PAGE_SIZE (1u << VIRTIO_BALLOON_PAGE_SHIFT)
#define VIRTIO_BALLOON_PAGES_PER_MIB 256u
/* Page numbers in one inflate/deflate buffer (Linux sends at most 256). */
#define VIRTIO_BALLOON_MAX_PFNS 256
/* Stats tags read from one buffer (the spec has 16; newer kernels more). */
#define VIRTIO_BALLOON_MAX_STATS 256

/* Feature bits. */
#define VIRTIO_BALLOON_F_STATS_VQ 1
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM 2
#define VIRTIO_BALLOON_F_FREE_PAGE_HINT 3
#define VIRTIO_BALLOON_F_REPORTING 5

/* free_page_hint_cmd_id values with a meaning of their own; a run uses
 * ids from 2 on. */
#define VIRTIO_BALLOON_HINT_STOP 0
#define VIRTIO_BALLOON_HINT_DONE 1

/* Firecracker's "balloon" metrics group, then Ember's own counters of what
 * the guest did wrong and of the pages it holds. */
#define METRICS_BALLOON(X, a) \
	X(a, inc, activate_fails) \
	X(a, inc, inflate_count) \
	X(a, inc, stats_updates_count) \
	X(a, inc, stats_update_fails) \
	X(a, inc, deflate_count) \
	X(a, inc, event_fails) \
	X(a, inc, free_page_report_count) \
	X(a, inc, free_page_report_freed) \
	X(a, inc, free_page_report_fails) \
	X(a, inc, free_page_hint_count) \
	X(a, inc, free_page_hint_freed) \
	X(a, inc, free_page_hint_fails) \
	X(a, inc, inflated_pages) \
	X(a, inc, deflated_pages) \
	X(a, inc, bad_pfn_count) \
	X(a, inc, duplicate_pfn_count)

struct balloon_metrics { METRICS_BALLOON(METRICS_MEMBER, _) };
extern const struct metrics_group balloon_metrics_group;

/* Firecracker's Balloon object. */
struct balloon_config {
	uint32_t amount_mib;
	bool deflate_on_oom;
	uint16_t stats_polling_interval_s; /* 0: no statistics queue */
	bool free_page_hinting;
	bool free_page_reporting;
};

int balloon_config_parse(json_t *j, struct balloon_config *out, ember_err *e);
json_t *balloon_config_json(const struct balloon_config *c);
/* BalloonUpdate {"amount_mib"} and BalloonStatsUpdate
 * {"stats_polling_interval_s"}. */
int balloon_update_parse(json_t *j, uint32_t *amount_mib, ember_err *e);
int balloon_stats_update_parse(json_t *j, uint16_t *interval_s, ember_err *e);
/* PATCH /balloon/hinting/start's optional body {"acknowledge_on_stop"}
 * (j may be NULL: the default, true). */
int balloon_hint_start_parse(json_t *j, bool *ack_on_stop, ember_err *e);

struct virtio_balloon;

struct virtio_balloon_params {
	const struct balloon_config *cfg;
	const struct guest_mem *gm;
	struct virtio_mmio_hooks hooks;
	struct balloon_metrics *metrics; /* NULL counts into a private set */
};

int virtio_balloon_create(struct virtio_balloon **out, const struct virtio_balloon_params *p,
			  ember_err *e);
void virtio_balloon_destroy(struct virtio_balloon *b);
struct virtio_mmio *virtio_balloon_mmio(struct virtio_balloon *b);
struct balloon_metrics *virtio_balloon_metrics(struct virtio_balloon *b);
/* The statistics timer (a timerfd, -1 without statistics). */
int virtio_balloon_timer_fd(const struct virtio_balloon *b);

/* The guest notified queue `queue`. */
void virtio_balloon_queue_event(struct virtio_balloon *b, unsigned queue);
/* The statistics timer fired: hand the guest its stats buffer back so it
 * refills it. */
void virtio_balloon_timer_event(struct virtio_balloon *b);

/* The API's requests, on the VMM thread under the device's lock. Each
 * returns -1 with Firecracker's message (without its prefix) in e. */
int virtio_balloon_set_target(struct virtio_balloon *b, uint32_t amount_mib, ember_err *e);
int virtio_balloon_set_stats_interval(struct virtio_balloon *b, uint16_t interval_s, ember_err *e);
int virtio_balloon_hint_start(struct virtio_balloon *b, bool ack_on_stop, ember_err *e);
int virtio_balloon_hint_stop(struct virtio_balloon *b, ember_err *e);
/* BalloonHintingStatus, or NULL with e set. */
json_t *virtio_balloon_hint_status(const struct virtio_balloon *b, ember_err *e);
/* BalloonStats, or NULL with e set (statistics disabled). */
json_t *virtio_balloon_stats_json(const struct virtio_balloon *b, ember_err *e);
json_t *virtio_balloon_config_json(const struct virtio_balloon *b);
/* Pages the guest has in the balloon now (by Ember's own count). */
uint64_t virtio_balloon_inflated_pages(const struct virtio_balloon *b);

/* Snapshots: the device's state besides its transport (target and actual
 * pages, statistics interval, values and held buffer, hinting state, the
 * pages in the balloon), NULL without memory; and back, on a device just
 * created from the same config whose transport is restored. Every field is
 * checked: -1 with e set for a state this device cannot have. */
json_t *virtio_balloon_save(struct virtio_balloon *b);
int virtio_balloon_restore(struct virtio_balloon *b, json_t *state, ember_err *e);

#endif
