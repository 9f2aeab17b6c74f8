/* The virtio-balloon device model (virtio 1.2 section 5.5). Queues, in
 * order: inflate, deflate, then statistics, free page hinting and free page
 * reporting, each only if configured (the spec numbers them that way). */
#include "devices/virtio_balloon.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "util/json_strict.h"
#include "util/log.h"

const struct metrics_group balloon_metrics_group =
	METRICS_SINGLE_GROUP("balloon", METRICS_BALLOON, struct balloon_metrics);

/* The inflate/deflate queues' indices; the others depend on the features. */
enum { Q_INFLATE = 0, Q_DEFLATE = 1 };
#define Q_NONE (-1)
/* Chains served per queue notification before the device lets the VMM
 * thread serve others (it comes back through its own notification). */
#define BUDGET VIRTIO_BALLOON_QUEUE_SIZE
/* Bytes of one statistic: le16 tag, le64 value, packed. */
#define STAT_SIZE 10
#define NR_STAT_TAGS 16

enum complaint {
	C_BAD_CHAIN, C_BROKEN_RING, C_BAD_PFN, C_DUP_PFN, C_BAD_RANGE, C_STATS, C_CONFIG,
	C_NOT_READY, C_NR
};

struct virtio_balloon {
	struct virtio_mmio mmio;
	struct virtio_dev_ops ops; /* the queue count depends on the config */
	const struct guest_mem *gm;
	struct balloon_metrics *m;
	struct balloon_metrics own_metrics;
	uint64_t complaints[C_NR];
	struct balloon_config cfg; /* as configured; amount_mib follows the target */
	int q_stats, q_hint, q_report; /* queue indices or Q_NONE */
	bool active;
	/* Config space (little-endian on the wire; x86 only). */
	uint32_t num_pages, actual_pages, hint_cmd_id;
	/* Statistics: the buffer held until the next poll, and the values. */
	int timer_fd;
	bool stats_held;
	uint16_t stats_head;
	uint64_t stat[NR_STAT_TAGS];
	uint32_t stat_known; /* bit per tag received */
	/* Free page hinting. */
	uint32_t host_cmd, last_cmd_id, guest_cmd;
	bool guest_cmd_set, ack_on_stop;
	/* One bit per 4 KiB page of guest-physical space: in the balloon. */
	uint64_t *inflated;
	uint64_t nr_pages, nr_inflated;
	struct virtq_seg segs[VIRTIO_BALLOON_QUEUE_SIZE];
	struct virtq_chain chain;
	uint32_t pfn[VIRTIO_BALLOON_MAX_PFNS];
	uint8_t stats_buf[VIRTIO_BALLOON_MAX_STATS * STAT_SIZE];
};

/* The names of the tags in BalloonStats, by tag number. */
static const char *const stat_names[NR_STAT_TAGS] = {
	"swap_in",	   "swap_out",	   "major_faults", "minor_faults",
	"free_memory",	   "total_memory", "available_memory", "disk_caches",
	"hugetlb_allocations", "hugetlb_failures", "oom_kill", "alloc_stall",
	"async_scan",	   "direct_scan",  "async_reclaim", "direct_reclaim",
};

__attribute__((format(printf, 3, 4))) static void complain(struct virtio_balloon *b,
							   enum complaint kind,
							   const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_guest_errorv(__FILE__, __LINE__, &b->complaints[kind], "balloon", fmt, ap);
	va_end(ap);
}

static struct virtq *queue(struct virtio_balloon *b, unsigned i)
{
	return virtio_mmio_queue(&b->mmio, i);
}

/* ---- The pages in the balloon ---- */

static bool page_ok(const struct virtio_balloon *b, uint32_t pfn)
{
	return pfn < b->nr_pages &&
	       gm_ptr(b->gm, (uint64_t)pfn << VIRTIO_BALLOON_PAGE_SHIFT, VIRTIO_BALLOON_PAGE_SIZE);
}

static bool test_and_set(uint64_t *map, uint32_t bit, bool value)
{
	uint64_t mask = 1ULL << (bit % 64);
	bool was = map[bit / 64] & mask;
	if (value)
		map[bit / 64] |= mask;
	else
		map[bit / 64] &= ~mask;
	return was;
}

/* An insertion sort of at most VIRTIO_BALLOON_MAX_PFNS numbers, nearly
 * sorted as Linux sends them. Not qsort: glibc's asks sysinfo() for the
 * machine's memory, a syscall no thread's seccomp filter allows. */
static void sort_u32(uint32_t *v, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		uint32_t x = v[i];
		size_t j = i;
		for (; j > 0 && v[j - 1] > x; j--)
			v[j] = v[j - 1];
		v[j] = x;
	}
}

/* Gives pfn[0..n) back to the host, as few madvise calls as runs of
 * consecutive pages. */
static void discard_pages(struct virtio_balloon *b, uint32_t *pfn, size_t n)
{
	sort_u32(pfn, n);
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && pfn[j] == pfn[j - 1] + 1)
			j++;
		uint64_t gpa = (uint64_t)pfn[i] << VIRTIO_BALLOON_PAGE_SHIFT;
		if (gm_discard(b->gm, gpa, (uint64_t)(j - i) << VIRTIO_BALLOON_PAGE_SHIFT)) {
			metric_inc(&b->m->event_fails);
			LOG_E("balloon: cannot give %zu pages at %#llx back to the host: %s", j - i,
			      (unsigned long long)gpa, strerror(errno));
		}
		i = j;
	}
}

/* The page numbers of an inflate/deflate buffer into b->pfn; how many, or
 * -1 for a buffer that is not one. */
static int read_pfns(struct virtio_balloon *b)
{
	const struct virtq_chain *c = &b->chain;
	if (c->nr_read != c->nr_segs || c->read_len % 4 ||
	    c->read_len > VIRTIO_BALLOON_MAX_PFNS * 4) {
		complain(b, C_BAD_CHAIN, "page list of %u readable and %u writable bytes",
			 c->read_len, c->write_len);
		return -1;
	}
	if (virtq_chain_read(b->gm, c, 0, b->pfn, c->read_len))
		return -1;
	return (int)(c->read_len / 4);
}

static void inflate(struct virtio_balloon *b)
{
	int n = read_pfns(b);
	if (n < 0) {
		metric_inc(&b->m->event_fails);
		return;
	}
	size_t k = 0;
	for (int i = 0; i < n; i++) {
		uint32_t pfn = b->pfn[i];
		if (!page_ok(b, pfn)) {
			metric_inc(&b->m->bad_pfn_count);
			complain(b, C_BAD_PFN, "inflate: page %#x is not guest RAM", pfn);
		} else if (test_and_set(b->inflated, pfn, true)) {
			metric_inc(&b->m->duplicate_pfn_count);
			complain(b, C_DUP_PFN, "inflate: page %#x is in the balloon already", pfn);
		} else {
			b->pfn[k++] = pfn; /* k <= i: compacts in place */
			b->nr_inflated++;
		}
	}
	metric_add(&b->m->inflated_pages, k);
	discard_pages(b, b->pfn, k);
}

static void deflate(struct virtio_balloon *b)
{
	int n = read_pfns(b);
	if (n < 0) {
		metric_inc(&b->m->event_fails);
		return;
	}
	for (int i = 0; i < n; i++) {
		uint32_t pfn = b->pfn[i];
		if (!page_ok(b, pfn)) {
			metric_inc(&b->m->bad_pfn_count);
			complain(b, C_BAD_PFN, "deflate: page %#x is not guest RAM", pfn);
		} else if (!test_and_set(b->inflated, pfn, false)) {
			metric_inc(&b->m->duplicate_pfn_count);
			complain(b, C_DUP_PFN, "deflate: page %#x is not in the balloon", pfn);
		} else {
			b->nr_inflated--;
			metric_inc(&b->m->deflated_pages);
		}
	}
	/* Nothing to do to the memory: the guest's next touch of a page
	 * given back faults in a fresh zero page. */
}

/* ---- Statistics ---- */

static void give_back_stats(struct virtio_balloon *b)
{
	struct virtq *q = queue(b, (unsigned)b->q_stats);
	b->stats_held = false;
	if (virtq_push(q, b->gm, b->stats_head, 0) == 0)
		virtio_mmio_signal_used(&b->mmio, q);
}

static void read_stats(struct virtio_balloon *b)
{
	const struct virtq_chain *c = &b->chain;
	/* As Firecracker: a second buffer while one is held returns the
	 * first; an oversized one is held but not read. */
	if (b->stats_held) {
		complain(b, C_STATS, "a second statistics buffer while one is held");
		give_back_stats(b);
	}
	b->stats_held = true;
	b->stats_head = c->head;
	uint32_t len = c->read_len;
	if (c->nr_read != c->nr_segs || len > sizeof(b->stats_buf) || len % STAT_SIZE) {
		metric_inc(&b->m->stats_update_fails);
		complain(b, C_STATS, "statistics buffer of %u readable and %u writable bytes", len,
			 c->write_len);
		if (c->nr_read != c->nr_segs || len > sizeof(b->stats_buf))
			return;
		len -= len % STAT_SIZE;
	}
	if (virtq_chain_read(b->gm, c, 0, b->stats_buf, len)) {
		metric_inc(&b->m->stats_update_fails);
		return;
	}
	for (uint32_t off = 0; off < len; off += STAT_SIZE) {
		uint16_t tag;
		uint64_t val;
		memcpy(&tag, b->stats_buf + off, 2);
		memcpy(&val, b->stats_buf + off + 2, 8);
		if (tag >= NR_STAT_TAGS) {
			metric_inc(&b->m->stats_update_fails); /* as Firecracker */
			continue;
		}
		b->stat[tag] = val;
		b->stat_known |= 1u << tag;
	}
}

void virtio_balloon_timer_event(struct virtio_balloon *b)
{
	uint64_t n;
	if (read(b->timer_fd, &n, sizeof(n)) != sizeof(n))
		return;
	if (!b->active || b->q_stats == Q_NONE)
		return;
	if (!b->stats_held) {
		/* The driver still has the buffer, or never gave one. */
		complain(b, C_STATS, "statistics poll without a buffer from the driver");
		return;
	}
	give_back_stats(b);
}

static int arm_timer(struct virtio_balloon *b, uint16_t interval_s)
{
	struct itimerspec t = {{interval_s, 0}, {interval_s, 0}};
	return timerfd_settime(b->timer_fd, 0, &t, NULL);
}

/* ---- Free page hinting and reporting ---- */

static bool hinting_running(const struct virtio_balloon *b)
{
	return b->host_cmd != VIRTIO_BALLOON_HINT_STOP && b->host_cmd != VIRTIO_BALLOON_HINT_DONE;
}

static void set_hint_cmd(struct virtio_balloon *b, uint32_t cmd)
{
	b->host_cmd = b->hint_cmd_id = cmd;
	virtio_mmio_config_changed(&b->mmio);
}

/* Gives a free range the guest told us about back to the host; false if
 * the range is not whole pages of guest RAM. */
static bool discard_range(struct virtio_balloon *b, const struct virtq_seg *s)
{
	if (gm_discard(b->gm, s->gpa, s->len)) {
		complain(b, C_BAD_RANGE, "free range %#llx+%#x is not whole pages of guest RAM",
			 (unsigned long long)s->gpa, s->len);
		return false;
	}
	return true;
}

/* Returns whether the guest said its run is over. */
static bool hint_chain(struct virtio_balloon *b)
{
	bool complete = false;
	for (unsigned i = 0; i < b->chain.nr_segs; i++) {
		const struct virtq_seg *s = &b->segs[i];
		if (!s->write && s->len == 4) { /* a command id */
			uint32_t cmd;
			if (gm_read(b->gm, s->gpa, &cmd, 4))
				continue;
			b->guest_cmd = cmd;
			b->guest_cmd_set = true;
			complete = cmd == VIRTIO_BALLOON_HINT_STOP || cmd == VIRTIO_BALLOON_HINT_DONE;
			continue;
		}
		/* Hints of a run that ended, or of an earlier one, are stale:
		 * the guest may be using those pages again. */
		if (!hinting_running(b) || !b->guest_cmd_set || b->guest_cmd != b->host_cmd)
			continue;
		metric_inc(&b->m->free_page_hint_count);
		if (discard_range(b, s))
			metric_add(&b->m->free_page_hint_freed, s->len);
		else
			metric_inc(&b->m->free_page_hint_fails);
	}
	return complete;
}

static void report_chain(struct virtio_balloon *b)
{
	for (unsigned i = 0; i < b->chain.nr_segs; i++) {
		const struct virtq_seg *s = &b->segs[i];
		metric_inc(&b->m->free_page_report_count);
		if (discard_range(b, s))
			metric_add(&b->m->free_page_report_freed, s->len);
		else
			metric_inc(&b->m->free_page_report_fails);
	}
}

/* ---- The queues ---- */

void virtio_balloon_queue_event(struct virtio_balloon *b, unsigned qi)
{
	if (!b->active || qi >= b->ops.nr_queues)
		return;
	if ((int)qi == b->q_stats)
		metric_inc(&b->m->stats_updates_count);
	else if (qi == Q_INFLATE)
		metric_inc(&b->m->inflate_count);
	else if (qi == Q_DEFLATE)
		metric_inc(&b->m->deflate_count);
	struct virtq *q = queue(b, qi);
	bool pushed = false, hint_done = false;
	for (unsigned served = 0;; served++) {
		if (served == BUDGET) {
			b->mmio.hooks.queue_notify(b->mmio.hooks.ctx, qi);
			break;
		}
		enum virtq_pop_result res = virtq_pop(q, b->gm, &b->chain);
		if (res == VIRTQ_EMPTY) {
			if (virtq_enable_notify(q, b->gm))
				continue;
			break;
		}
		if (res == VIRTQ_BROKEN) {
			complain(b, C_BROKEN_RING, "queue %u broken (%s); device needs reset", qi,
				 virtq_strerror(b->chain.err));
			metric_inc(&b->m->event_fails);
			virtio_mmio_needs_reset(&b->mmio);
			break;
		}
		if (res == VIRTQ_BAD_CHAIN) {
			complain(b, C_BAD_CHAIN, "queue %u: bad descriptor chain (%s)", qi,
				 virtq_strerror(b->chain.err));
			metric_inc(&b->m->event_fails);
			if ((int)qi == b->q_stats)
				metric_inc(&b->m->stats_update_fails);
			pushed |= virtq_push(q, b->gm, b->chain.head, 0) == 0;
			continue;
		}
		if ((int)qi == b->q_stats) {
			read_stats(b); /* held until the next poll */
			continue;
		}
		if (qi == Q_INFLATE)
			inflate(b);
		else if (qi == Q_DEFLATE)
			deflate(b);
		else if ((int)qi == b->q_hint)
			hint_done |= hint_chain(b);
		else
			report_chain(b);
		pushed |= virtq_push(q, b->gm, b->chain.head, 0) == 0;
	}
	if (pushed)
		virtio_mmio_signal_used(&b->mmio, q);
	if (hint_done && b->ack_on_stop && hinting_running(b))
		set_hint_cmd(b, VIRTIO_BALLOON_HINT_DONE);
}

/* ---- virtio_dev_ops ---- */

static uint64_t balloon_features(void *dev)
{
	struct virtio_balloon *b = dev;
	uint64_t f = 0;
	if (b->cfg.deflate_on_oom)
		f |= 1ULL << VIRTIO_BALLOON_F_DEFLATE_ON_OOM;
	if (b->q_stats != Q_NONE)
		f |= 1ULL << VIRTIO_BALLOON_F_STATS_VQ;
	if (b->q_hint != Q_NONE)
		f |= 1ULL << VIRTIO_BALLOON_F_FREE_PAGE_HINT;
	if (b->q_report != Q_NONE)
		f |= 1ULL << VIRTIO_BALLOON_F_REPORTING;
	return f;
}

/* Config space: num_pages, actual, free_page_hint_cmd_id, poison_val. */
static void config_bytes(const struct virtio_balloon *b, uint8_t out[16])
{
	uint32_t v[4] = {b->num_pages, b->actual_pages, b->hint_cmd_id, 0};
	memcpy(out, v, 16);
}

static void balloon_config_read(void *dev, uint32_t offset, uint8_t *data, uint32_t len)
{
	uint8_t c[16];
	config_bytes(dev, c);
	memcpy(data, c + offset, len);
}

/* The driver writes `actual` (how many pages it holds); nothing else is
 * its to write. */
static void balloon_config_write(void *dev, uint32_t offset, const uint8_t *data, uint32_t len)
{
	struct virtio_balloon *b = dev;
	if (offset < 4 || offset + len > 8) {
		complain(b, C_CONFIG, "config write of %u bytes at %u", len, offset);
		return;
	}
	uint8_t c[16];
	config_bytes(b, c);
	memcpy(c + offset, data, len);
	memcpy(&b->actual_pages, c + 4, 4);
}

static int balloon_activate(void *dev, struct virtio_mmio *m)
{
	struct virtio_balloon *b = dev;
	for (unsigned i = 0; i < b->ops.nr_queues; i++)
		if (!virtio_mmio_queue(m, i)->ready) {
			metric_inc(&b->m->activate_fails);
			complain(b, C_NOT_READY, "DRIVER_OK without queue %u ready", i);
			return -1;
		}
	b->active = true;
	/* Linux queues its first statistics buffer, and kicks, before it sets
	 * DRIVER_OK: that kick found the device inactive. Look at every queue
	 * again, on the VMM thread (this runs on a vCPU's). */
	for (unsigned i = 0; i < b->ops.nr_queues; i++)
		m->hooks.queue_notify(m->hooks.ctx, i);
	return 0;
}

/* The driver reset the device (a guest reboot, a driver reload): the guest
 * owns all of its memory again. */
static void balloon_reset(void *dev)
{
	struct virtio_balloon *b = dev;
	b->active = b->stats_held = false;
	b->actual_pages = 0;
	b->hint_cmd_id = b->host_cmd = VIRTIO_BALLOON_HINT_STOP;
	b->guest_cmd_set = false;
	b->stat_known = 0;
	memset(b->inflated, 0, (b->nr_pages + 63) / 64 * 8);
	b->nr_inflated = 0;
}

/* ---- Life cycle ---- */

int virtio_balloon_create(struct virtio_balloon **out, const struct virtio_balloon_params *p,
			  ember_err *e)
{
	struct virtio_balloon *b = calloc(1, sizeof(*b));
	if (!b)
		return err_set(e, "balloon: out of memory");
	b->timer_fd = -1;
	b->gm = p->gm;
	b->cfg = *p->cfg;
	b->m = p->metrics ? p->metrics : &b->own_metrics;
	b->num_pages = p->cfg->amount_mib * VIRTIO_BALLOON_PAGES_PER_MIB;
	b->ack_on_stop = true;
	virtq_chain_init(&b->chain, b->segs, VIRTIO_BALLOON_QUEUE_SIZE);
	unsigned nq = 2;
	b->q_stats = p->cfg->stats_polling_interval_s ? (int)nq++ : Q_NONE;
	b->q_hint = p->cfg->free_page_hinting ? (int)nq++ : Q_NONE;
	b->q_report = p->cfg->free_page_reporting ? (int)nq++ : Q_NONE;
	b->ops = (struct virtio_dev_ops){
		.device_id = VIRTIO_ID_BALLOON, .nr_queues = nq, .config_size = 16,
		.features = balloon_features, .config_read = balloon_config_read,
		.config_write = balloon_config_write, .activate = balloon_activate,
		.reset = balloon_reset};
	for (unsigned i = 0; i < nq; i++)
		b->ops.queue_max_size[i] = VIRTIO_BALLOON_QUEUE_SIZE;
	/* The bitmap covers guest-physical space up to the end of RAM (the
	 * MMIO gap too: simpler indexing for at most 128 KiB). */
	uint64_t top = 0;
	for (int i = 0; i < p->gm->nr_regions; i++) {
		uint64_t end = p->gm->region[i].gpa + p->gm->region[i].size;
		top = end > top ? end : top;
	}
	b->nr_pages = top >> VIRTIO_BALLOON_PAGE_SHIFT;
	if (b->nr_pages > UINT32_MAX)
		b->nr_pages = (uint64_t)UINT32_MAX + 1; /* page numbers are 32-bit */
	b->inflated = calloc((b->nr_pages + 63) / 64 + 1, 8);
	if (!b->inflated) {
		virtio_balloon_destroy(b);
		return err_set(e, "balloon: out of memory");
	}
	if (b->q_stats != Q_NONE) {
		b->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		/* Armed from the start, on the VMM thread: it does nothing until
		 * the driver is there (activation runs on a vCPU thread). */
		if (b->timer_fd < 0 || arm_timer(b, p->cfg->stats_polling_interval_s)) {
			err_set(e, "balloon: statistics timer: %s", strerror(errno));
			virtio_balloon_destroy(b);
			return -1;
		}
	}
	if (virtio_mmio_init(&b->mmio, &b->ops, b, p->gm, &p->hooks, e)) {
		virtio_balloon_destroy(b);
		return err_prefix(e, "balloon");
	}
	*out = b;
	return 0;
}

void virtio_balloon_destroy(struct virtio_balloon *b)
{
	if (!b)
		return;
	if (b->timer_fd >= 0)
		close(b->timer_fd);
	free(b->inflated);
	free(b);
}

struct virtio_mmio *virtio_balloon_mmio(struct virtio_balloon *b)
{
	return &b->mmio;
}

struct balloon_metrics *virtio_balloon_metrics(struct virtio_balloon *b)
{
	return b->m;
}

int virtio_balloon_timer_fd(const struct virtio_balloon *b)
{
	return b->timer_fd;
}

uint64_t virtio_balloon_inflated_pages(const struct virtio_balloon *b)
{
	return b->nr_inflated;
}

/* ---- The API's requests ---- */

int virtio_balloon_set_target(struct virtio_balloon *b, uint32_t amount_mib, ember_err *e)
{
	if (!b->active)
		return err_set(e, "Device not activated yet.");
	uint64_t mem_mib = gm_total(b->gm) >> 20;
	if (amount_mib > mem_mib)
		return err_set(e, "Requested memory should be less than %lluMiB",
			       (unsigned long long)mem_mib);
	b->cfg.amount_mib = amount_mib;
	b->num_pages = amount_mib * VIRTIO_BALLOON_PAGES_PER_MIB;
	virtio_mmio_config_changed(&b->mmio);
	return 0;
}

int virtio_balloon_set_stats_interval(struct virtio_balloon *b, uint16_t interval_s, ember_err *e)
{
	if (interval_s == b->cfg.stats_polling_interval_s)
		return 0;
	if (!interval_s || !b->cfg.stats_polling_interval_s)
		return err_set(e, "Statistics cannot be enabled/disabled after activation.");
	/* As Firecracker: poll now, then at the new interval. */
	if (b->active && b->stats_held)
		give_back_stats(b);
	if (arm_timer(b, interval_s))
		return err_set(e, "statistics timer: %s", strerror(errno));
	b->cfg.stats_polling_interval_s = interval_s;
	return 0;
}

#define ERR_NO_HINTING "Attempting to use hinting when not enabled"

int virtio_balloon_hint_start(struct virtio_balloon *b, bool ack_on_stop, ember_err *e)
{
	if (b->q_hint == Q_NONE)
		return err_set(e, ERR_NO_HINTING);
	if (!b->active)
		return err_set(e, "Device not activated yet.");
	uint32_t id = b->last_cmd_id + 1;
	if (id <= VIRTIO_BALLOON_HINT_DONE)
		id = VIRTIO_BALLOON_HINT_DONE + 1;
	b->last_cmd_id = id;
	b->ack_on_stop = ack_on_stop;
	set_hint_cmd(b, id);
	return 0;
}

int virtio_balloon_hint_stop(struct virtio_balloon *b, ember_err *e)
{
	if (b->q_hint == Q_NONE)
		return err_set(e, ERR_NO_HINTING);
	if (!b->active)
		return err_set(e, "Device not activated yet.");
	set_hint_cmd(b, VIRTIO_BALLOON_HINT_DONE);
	return 0;
}

json_t *virtio_balloon_hint_status(const struct virtio_balloon *b, ember_err *e)
{
	if (b->q_hint == Q_NONE) {
		err_set(e, ERR_NO_HINTING);
		return NULL;
	}
	json_t *j = json_pack("{s:I}", "host_cmd", (json_int_t)b->host_cmd);
	json_object_set_new(j, "guest_cmd",
			    b->guest_cmd_set ? json_integer(b->guest_cmd) : json_null());
	return j;
}

json_t *virtio_balloon_stats_json(const struct virtio_balloon *b, ember_err *e)
{
	if (b->q_stats == Q_NONE) {
		err_set(e, "Received stats query when stats are disabled.");
		return NULL;
	}
	json_t *j = json_pack("{s:I, s:I, s:I, s:I}", "target_pages", (json_int_t)b->num_pages,
			      "actual_pages", (json_int_t)b->actual_pages, "target_mib",
			      (json_int_t)(b->num_pages / VIRTIO_BALLOON_PAGES_PER_MIB),
			      "actual_mib",
			      (json_int_t)(b->actual_pages / VIRTIO_BALLOON_PAGES_PER_MIB));
	/* Only the statistics the guest reported, as Firecracker. Values are
	 * u64; JSON integers here are signed 64-bit, so clamp the absurd. */
	for (unsigned t = 0; t < NR_STAT_TAGS; t++)
		if (b->stat_known & (1u << t))
			json_object_set_new(j, stat_names[t],
					    json_integer(b->stat[t] > INT64_MAX ? INT64_MAX
										: (json_int_t)b->stat[t]));
	return j;
}

json_t *virtio_balloon_config_json(const struct virtio_balloon *b)
{
	return balloon_config_json(&b->cfg);
}

/* ---- Config ---- */

static int get_u32(const char *what, const char *field, const struct jint *v, uint64_t max,
		   uint64_t *out, ember_err *e)
{
	if (v->v < 0 || (uint64_t)v->v > max)
		return err_set(e, "%s: %s: invalid value: integer `%lld`, expected u%d", what,
			       field, (long long)v->v, max == UINT16_MAX ? 16 : 32);
	*out = (uint64_t)v->v;
	return 0;
}

int balloon_config_parse(json_t *j, struct balloon_config *out, ember_err *e)
{
	struct {
		struct jint amount_mib;
		int deflate_on_oom;
		struct jint stats_polling_interval_s;
		int free_page_hinting, free_page_reporting;
	} v;
	static const struct jfield f[] = {
		JFIELD(__typeof__(v), amount_mib, JF_INT, true),
		JFIELD(__typeof__(v), deflate_on_oom, JF_BOOL, true),
		JFIELD(__typeof__(v), stats_polling_interval_s, JF_INT, false),
		JFIELD(__typeof__(v), free_page_hinting, JF_BOOL, false),
		JFIELD(__typeof__(v), free_page_reporting, JF_BOOL, false),
	};
	if (json_strict_parse("balloon", j, f, 5, &v, e))
		return -1;
	uint64_t amount = 0, interval = 0;
	if (get_u32("balloon", "amount_mib", &v.amount_mib, UINT32_MAX, &amount, e) ||
	    (v.stats_polling_interval_s.set &&
	     get_u32("balloon", "stats_polling_interval_s", &v.stats_polling_interval_s,
		     UINT16_MAX, &interval, e)))
		return -1;
	/* amount_mib pages must fit the 32-bit num_pages. */
	if (amount > UINT32_MAX / VIRTIO_BALLOON_PAGES_PER_MIB)
		return err_set(e, "balloon: amount_mib: Requested memory should be less than "
				  "%uMiB", UINT32_MAX / VIRTIO_BALLOON_PAGES_PER_MIB);
	*out = (struct balloon_config){
		.amount_mib = (uint32_t)amount,
		.deflate_on_oom = v.deflate_on_oom == 1,
		.stats_polling_interval_s = (uint16_t)interval,
		.free_page_hinting = v.free_page_hinting == 1,
		.free_page_reporting = v.free_page_reporting == 1,
	};
	return 0;
}

json_t *balloon_config_json(const struct balloon_config *c)
{
	return json_pack("{s:I, s:b, s:I, s:b, s:b}", "amount_mib", (json_int_t)c->amount_mib,
			 "deflate_on_oom", c->deflate_on_oom, "stats_polling_interval_s",
			 (json_int_t)c->stats_polling_interval_s, "free_page_hinting",
			 c->free_page_hinting, "free_page_reporting", c->free_page_reporting);
}

int balloon_update_parse(json_t *j, uint32_t *amount_mib, ember_err *e)
{
	struct {
		struct jint amount_mib;
	} v;
	static const struct jfield f[] = {JFIELD(__typeof__(v), amount_mib, JF_INT, true)};
	uint64_t a = 0;
	if (json_strict_parse("balloon", j, f, 1, &v, e) ||
	    get_u32("balloon", "amount_mib", &v.amount_mib, UINT32_MAX, &a, e))
		return -1;
	*amount_mib = (uint32_t)a;
	return 0;
}

int balloon_stats_update_parse(json_t *j, uint16_t *interval_s, ember_err *e)
{
	struct {
		struct jint stats_polling_interval_s;
	} v;
	static const struct jfield f[] = {
		JFIELD(__typeof__(v), stats_polling_interval_s, JF_INT, true)};
	uint64_t s = 0;
	if (json_strict_parse("balloon statistics", j, f, 1, &v, e) ||
	    get_u32("balloon statistics", "stats_polling_interval_s", &v.stats_polling_interval_s,
		    UINT16_MAX, &s, e))
		return -1;
	*interval_s = (uint16_t)s;
	return 0;
}

int balloon_hint_start_parse(json_t *j, bool *ack_on_stop, ember_err *e)
{
	*ack_on_stop = true;
	if (!j)
		return 0;
	struct {
		int acknowledge_on_stop;
	} v;
	static const struct jfield f[] = {
		JFIELD(__typeof__(v), acknowledge_on_stop, JF_BOOL, false)};
	if (json_strict_parse("balloon hinting", j, f, 1, &v, e))
		return -1;
	if (v.acknowledge_on_stop >= 0)
		*ack_on_stop = v.acknowledge_on_stop;
	return 0;
}

/* ---- Snapshots (docs/snapshot-format.md) ---- */

/* state's `key`: an integer in [0, max], or -1 with e set. */
static int snap_uint(json_t *state, const char *key, uint64_t max, uint64_t *out, ember_err *e)
{
	json_t *v = json_object_get(state, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return err_set(e, "balloon state: %s is not an integer in [0, %llu]", key,
			       (unsigned long long)max);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int snap_bool(json_t *state, const char *key, bool *out, ember_err *e)
{
	json_t *v = json_object_get(state, key);
	if (!json_is_boolean(v))
		return err_set(e, "balloon state: %s is not a boolean", key);
	*out = json_is_true(v);
	return 0;
}

/* The pages in the balloon as [first, count] runs, in order. */
static json_t *inflated_runs(const struct virtio_balloon *b)
{
	json_t *a = json_array();
	for (uint64_t p = 0; a && p < b->nr_pages;) {
		if (!b->inflated[p / 64]) {
			p = (p / 64 + 1) * 64;
			continue;
		}
		if (!(b->inflated[p / 64] & 1ULL << (p % 64))) {
			p++;
			continue;
		}
		uint64_t first = p;
		while (p < b->nr_pages && b->inflated[p / 64] & 1ULL << (p % 64))
			p++;
		json_array_append_new(a, json_pack("[I, I]", (json_int_t)first,
						   (json_int_t)(p - first)));
	}
	return a;
}

json_t *virtio_balloon_save(struct virtio_balloon *b)
{
	json_t *stats = json_array();
	for (unsigned t = 0; stats && t < NR_STAT_TAGS; t++)
		if (b->stat_known & 1u << t)
			/* Bit for bit: a value above INT64_MAX comes back the same. */
			json_array_append_new(stats, json_pack("[i, I]", (int)t,
							       (json_int_t)b->stat[t]));
	return json_pack("{s:I, s:I, s:i, s:b, s:i, s:o, s:{s:I, s:I, s:I, s:I, s:b, s:b}, s:o}",
			 "target_pages", (json_int_t)b->num_pages, "actual_pages",
			 (json_int_t)b->actual_pages, "stats_polling_interval_s",
			 (int)b->cfg.stats_polling_interval_s, "stats_held", b->stats_held,
			 "stats_head", (int)b->stats_head, "stats", stats, "hinting", "host_cmd",
			 (json_int_t)b->host_cmd, "cmd_id", (json_int_t)b->hint_cmd_id,
			 "last_cmd_id", (json_int_t)b->last_cmd_id, "guest_cmd",
			 (json_int_t)b->guest_cmd, "guest_cmd_set", b->guest_cmd_set, "ack_on_stop",
			 b->ack_on_stop, "inflated", inflated_runs(b));
}

static int restore_stats(struct virtio_balloon *b, json_t *state, ember_err *e)
{
	uint64_t interval = 0, head = 0;
	bool held = false;
	json_t *stats = json_object_get(state, "stats");
	if (snap_uint(state, "stats_polling_interval_s", UINT16_MAX, &interval, e) ||
	    snap_bool(state, "stats_held", &held, e) ||
	    snap_uint(state, "stats_head", VIRTIO_BALLOON_QUEUE_SIZE - 1, &head, e))
		return -1;
	if ((interval == 0) != (b->q_stats == Q_NONE))
		return err_set(e, "balloon state: statistics interval %llu, the device %s statistics",
			       (unsigned long long)interval, b->q_stats == Q_NONE ? "has no" : "has");
	if (held && (!b->active || head >= queue(b, (unsigned)b->q_stats)->size))
		return err_set(e, "balloon state: held statistics buffer %llu is not on the queue",
			       (unsigned long long)head);
	if (!json_is_array(stats) || json_array_size(stats) > NR_STAT_TAGS)
		return err_set(e, "balloon state: stats is not an array of at most %d", NR_STAT_TAGS);
	size_t i;
	json_t *s;
	json_array_foreach(stats, i, s) {
		json_t *tag = json_array_get(s, 0), *val = json_array_get(s, 1);
		if (json_array_size(s) != 2 || !json_is_integer(tag) || !json_is_integer(val) ||
		    json_integer_value(tag) < 0 || json_integer_value(tag) >= NR_STAT_TAGS)
			return err_set(e, "balloon state: stats entry %zu is not [tag, value]", i);
		b->stat[json_integer_value(tag)] = (uint64_t)json_integer_value(val);
		b->stat_known |= 1u << json_integer_value(tag);
	}
	b->stats_held = held;
	b->stats_head = (uint16_t)head;
	if (interval) {
		b->cfg.stats_polling_interval_s = (uint16_t)interval;
		if (arm_timer(b, (uint16_t)interval))
			return err_set(e, "balloon: statistics timer: %s", strerror(errno));
	}
	return 0;
}

static int restore_hinting(struct virtio_balloon *b, json_t *h, ember_err *e)
{
	uint64_t host = 0, id = 0, last = 0, guest = 0;
	bool set = false, ack = false;
	if (!json_is_object(h))
		return err_set(e, "balloon state: hinting is not an object");
	if (snap_uint(h, "host_cmd", UINT32_MAX, &host, e) ||
	    snap_uint(h, "cmd_id", UINT32_MAX, &id, e) ||
	    snap_uint(h, "last_cmd_id", UINT32_MAX, &last, e) ||
	    snap_uint(h, "guest_cmd", UINT32_MAX, &guest, e) ||
	    snap_bool(h, "guest_cmd_set", &set, e) || snap_bool(h, "ack_on_stop", &ack, e))
		return err_prefix(e, "hinting");
	bool idle = host == VIRTIO_BALLOON_HINT_STOP && id == VIRTIO_BALLOON_HINT_STOP &&
		    !last && !set;
	if (b->q_hint == Q_NONE && !idle)
		return err_set(e, "balloon state: hinting state for a device without hinting");
	/* A run's id is one Ember handed out: at most the last one. */
	if (host != id || (host > VIRTIO_BALLOON_HINT_DONE && host > last))
		return err_set(e, "balloon state: hinting command %llu (id %llu) after %llu",
			       (unsigned long long)host, (unsigned long long)id,
			       (unsigned long long)last);
	b->host_cmd = (uint32_t)host;
	b->hint_cmd_id = (uint32_t)id;
	b->last_cmd_id = (uint32_t)last;
	b->guest_cmd = (uint32_t)guest;
	b->guest_cmd_set = set;
	b->ack_on_stop = ack;
	return 0;
}

static int restore_inflated(struct virtio_balloon *b, json_t *runs, ember_err *e)
{
	if (!json_is_array(runs) || json_array_size(runs) > b->nr_pages)
		return err_set(e, "balloon state: inflated is not an array of page runs");
	uint64_t next = 0, total = 0;
	size_t i;
	json_t *r;
	json_array_foreach(runs, i, r) {
		json_t *f = json_array_get(r, 0), *n = json_array_get(r, 1);
		if (json_array_size(r) != 2 || !json_is_integer(f) || !json_is_integer(n))
			return err_set(e, "balloon state: inflated run %zu is not [first, count]", i);
		json_int_t first = json_integer_value(f), count = json_integer_value(n);
		/* In order, apart, inside guest RAM. */
		if (first < 0 || (uint64_t)first < next || count <= 0 ||
		    (uint64_t)count > b->nr_pages - (uint64_t)first ||
		    !gm_ptr(b->gm, (uint64_t)first << VIRTIO_BALLOON_PAGE_SHIFT,
			    (uint64_t)count << VIRTIO_BALLOON_PAGE_SHIFT))
			return err_set(e, "balloon state: inflated run %zu ([%lld, %lld]) is not "
					  "guest RAM after the run before it",
				       i, (long long)first, (long long)count);
		for (uint64_t p = (uint64_t)first; p < (uint64_t)(first + count); p++)
			test_and_set(b->inflated, (uint32_t)p, true);
		next = (uint64_t)(first + count) + 1;
		total += (uint64_t)count;
	}
	b->nr_inflated = total;
	return 0;
}

int virtio_balloon_restore(struct virtio_balloon *b, json_t *state, ember_err *e)
{
	uint64_t target = 0, actual = 0;
	if (!json_is_object(state))
		return err_set(e, "balloon state is not an object");
	if (snap_uint(state, "target_pages", UINT32_MAX, &target, e) ||
	    snap_uint(state, "actual_pages", UINT32_MAX, &actual, e))
		return -1;
	uint64_t mem_mib = gm_total(b->gm) >> 20;
	if (target % VIRTIO_BALLOON_PAGES_PER_MIB ||
	    target / VIRTIO_BALLOON_PAGES_PER_MIB > mem_mib)
		return err_set(e, "balloon state: target of %llu pages is not whole MiB of at most "
				  "%llu", (unsigned long long)target, (unsigned long long)mem_mib);
	/* Each part checks before it changes anything; a failure fails the
	 * whole load, which destroys the device. */
	if (restore_stats(b, state, e) ||
	    restore_hinting(b, json_object_get(state, "hinting"), e) ||
	    restore_inflated(b, json_object_get(state, "inflated"), e))
		return -1;
	b->num_pages = (uint32_t)target;
	b->cfg.amount_mib = (uint32_t)(target / VIRTIO_BALLOON_PAGES_PER_MIB);
	b->actual_pages = (uint32_t)actual;
	return 0;
}
