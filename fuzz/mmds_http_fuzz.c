/* libFuzzer target: a hostile guest's byte stream to MMDS, fed in slices
 * the way a TCP stack hands them over, plus hostile JSON for the store.
 * Build: CC=clang meson setup build-fuzz -Dfuzz=true && ninja -C build-fuzz
 * Run:   build-fuzz/fuzz/mmds_http_fuzz -max_len=8192 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mmds/http.h"
#include "mmds/json.h"

static const char data_json[] =
	"{\"latest\": {\"meta-data\": {\"ami-id\": \"ami-1\", \"n\": 12.5, \"a\": [1, \"x\", {}],"
	" \"a/b\": {\"~\": \"t\"}}, \"user-data\": \"\"}}";

/* The stream as a TCP stack delivers it: step bytes at a time, answered
 * request by request, at most MMDS_HTTP_MAX_REQUEST bytes waiting. */
static void feed_stream(struct mmds *m, const uint8_t *in, size_t len, size_t step)
{
	uint8_t pending[MMDS_HTTP_MAX_REQUEST];
	size_t have = 0, off = 0;
	struct mmds_buf resp = {0};
	uint64_t now = 1000;
	while (off < len || have) {
		size_t n = len - off;
		if (n > step)
			n = step;
		if (n > sizeof(pending) - have)
			n = sizeof(pending) - have;
		memcpy(pending + have, in + off, n);
		have += n;
		off += n;
		for (;;) {
			size_t used;
			mmds_buf_reset(&resp);
			enum mmds_http_result r = mmds_http_handle(m, pending, have, now, &used, &resp);
			if (r == MMDS_HTTP_RESET)
				goto out;
			if (r == MMDS_HTTP_NEED_MORE)
				break;
			if (used == 0 || used > have || resp.failed)
				abort();
			memmove(pending, pending + used, have - used);
			have -= used;
			now += 700;
		}
		if (off == len)
			break;
	}
out:
	mmds_buf_free(&resp);
}

/* The API side: the input as a PUT, then as a PATCH over the data above. */
static void feed_store(struct mmds *m, const uint8_t *in, size_t len)
{
	json_t *j = mmds_json_parse((const char *)in, len, NULL);
	if (!j)
		return;
	mmds_store_put(&m->store, j, NULL);
	char *d = mmds_store_dump(&m->store);
	free(d);
	json_t *base = mmds_json_parse(data_json, sizeof(data_json) - 1, NULL);
	mmds_store_put(&m->store, base, NULL);
	json_decref(base);
	mmds_store_patch(&m->store, j, NULL);
	struct mmds_buf b = {0};
	mmds_store_get(&m->store, "/latest", 7, MMDS_FORMAT_IMDS, &b);
	mmds_store_get(&m->store, "/", 1, MMDS_FORMAT_JSON, &b);
	mmds_buf_free(&b);
	json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len)
{
	if (len < 1)
		return 0;
	/* First byte: bit 0 V2, bit 1 imds_compat, bit 2 store mode, rest slicing. */
	uint8_t ctl = in[0];
	struct mmds *m = malloc(sizeof(*m));
	if (!m)
		return 0;
	mmds_init(m, 4096);
	m->version = ctl & 1 ? MMDS_V2 : MMDS_V1;
	m->imds_compat = ctl & 2;
	json_t *j = mmds_json_parse(data_json, sizeof(data_json) - 1, NULL);
	mmds_store_put(&m->store, j, NULL);
	json_decref(j);
	if (ctl & 4)
		feed_store(m, in + 1, len - 1);
	else
		feed_stream(m, in + 1, len - 1, (size_t)(ctl >> 3) * 37 + 1);
	mmds_free(m);
	free(m);
	return 0;
}
