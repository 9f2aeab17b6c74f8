/* libFuzzer target: the VM state file (vmm/snapshot_file.c) and what a
 * load does with its payload short of KVM: the saved config, the virtio
 * transport and queue state (against a device with guest memory), the
 * serial and i8042 state, and every KVM structure's decoding (the ioctls
 * themselves fail on fd -1).
 *
 * Input: a whole state file; or 'J' and a payload, which the target wraps
 * in a valid header (both checksums right) so the fuzzer reaches the JSON
 * consumers without forging CRCs.
 * Checked: no crash, no leak, a refusal always says why.
 * Build: CC=clang meson setup build-fuzz -Dfuzz=true && ninja -C build-fuzz
 * Run:   tools/fuzz.sh snapshot_file_fuzz (docs/fuzzing.md) */
#include <stdlib.h>
#include <string.h>

#include "fuzz_quiet.h"
#include "arch/x86/kvm_state.h"
#include "devices/i8042.h"
#include "devices/serial.h"
#include "util/blob.h"
#include "virtio/mmio.h"
#include "vmm/config.h"
#include "vmm/snapshot_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len);

static uint64_t features(void *dev)
{
	(void)dev;
	return 0;
}

static void cfg_read(void *dev, uint32_t off, uint8_t *data, uint32_t len)
{
	(void)dev, (void)off;
	memset(data, 0, len);
}

static int activate(void *dev, struct virtio_mmio *m)
{
	(void)dev, (void)m;
	return 0;
}

static const struct virtio_dev_ops fake_ops = {
	.device_id = 2, .nr_queues = 1, .queue_max_size = {256}, .config_size = 8,
	.features = features, .config_read = cfg_read, .activate = activate,
};

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void check_refusal(const ember_err *e)
{
	if (!e->msg[0])
		abort(); /* a refusal must say why */
}

static void consume(json_t *st)
{
	ember_err e = {{0}};
	json_t *cfgj = json_object_get(st, "config");
	if (json_is_object(cfgj)) {
		char *text = json_dumps(cfgj, JSON_COMPACT);
		struct vmm_config cfg;
		config_init(&cfg);
		if (text && config_parse_text(text, strlen(text), &cfg, &e))
			check_refusal(&e);
		config_free(&cfg);
		free(text);
	}
	static uint8_t ram[1 << 16];
	struct guest_mem gm;
	gm_init_from(&gm, ram, sizeof(ram), 1ULL << 32);
	json_t *devs = json_object_get(st, "devices");
	size_t i;
	json_t *d;
	json_array_foreach(devs, i, d) {
		struct virtio_mmio m;
		struct virtio_mmio_hooks hooks = {0};
		if (virtio_mmio_init(&m, &fake_ops, NULL, &gm, &hooks, &e))
			abort();
		e.msg[0] = 0;
		if (virtio_mmio_restore(&m, json_object_get(d, "transport"), &e))
			check_refusal(&e);
		json_decref(virtio_mmio_save(&m));
	}
	struct serial s;
	serial_init(&s, -1, -1);
	e.msg[0] = 0;
	if (serial_restore(&s, json_object_get(st, "serial"), &e))
		check_refusal(&e);
	json_decref(serial_save(&s));
	serial_destroy(&s);
	struct i8042 k;
	i8042_init(&k, -1, NULL, NULL);
	e.msg[0] = 0;
	if (i8042_restore(&k, json_object_get(st, "i8042"), &e))
		check_refusal(&e);
	json_decref(i8042_save(&k));
	i8042_destroy(&k);
	json_array_foreach(json_object_get(st, "vcpus"), i, d) {
		e.msg[0] = 0;
		if (kvm_vcpu_restore(-1, d, &e))
			check_refusal(&e);
	}
	e.msg[0] = 0;
	if (kvm_vm_restore(-1, json_object_get(st, "vm"), &e))
		check_refusal(&e);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len)
{
	uint8_t *buf = NULL;
	if (len && in[0] == 'J') {
		size_t n = len - 1;
		buf = malloc(SNAPSHOT_HEADER_SIZE + n + 1);
		memcpy(buf, SNAPSHOT_MAGIC, 8);
		put32(buf + 8, SNAPSHOT_FORMAT_VERSION);
		put32(buf + 12, SNAPSHOT_HEADER_SIZE);
		put32(buf + 16, (uint32_t)n);
		put32(buf + 20, 0);
		put32(buf + 24, crc32_ieee(0, in + 1, n));
		put32(buf + 28, crc32_ieee(0, buf, 28));
		memcpy(buf + SNAPSHOT_HEADER_SIZE, in + 1, n);
		in = buf;
		len = SNAPSHOT_HEADER_SIZE + n;
	}
	json_t *st;
	uint32_t version;
	ember_err e = {{0}};
	if (snapshot_file_parse(in, len, &st, &version, &e)) {
		check_refusal(&e);
	} else {
		consume(st);
		json_decref(st);
	}
	free(buf);
	return 0;
}
