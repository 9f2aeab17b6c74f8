/* The guest-facing side of MMDS: HTTP/1.x requests as they arrive on a TCP
 * stream to the MMDS address, answered as Firecracker's MMDS answers them
 * (its status codes, bodies and headers, byte for byte where known). No
 * networking here: the TCP stack (a later issue) feeds the bytes it has and
 * sends what comes back.
 *
 * Use: keep the unconsumed stream bytes; call mmds_http_handle() with them;
 * on MMDS_HTTP_RESPONSE send resp and drop the consumed bytes, then call
 * again (requests may be pipelined); on MMDS_HTTP_NEED_MORE wait for more
 * bytes; on MMDS_HTTP_RESET reset the connection. As in Firecracker, a
 * request ends at its first empty line and any body is not read. */
#ifndef EMBER_MMDS_HTTP_H
#define EMBER_MMDS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mmds/buf.h"
#include "mmds/config.h"
#include "mmds/store.h"
#include "mmds/token.h"

/* Everything MMDS keeps for one microVM. */
struct mmds {
	struct mmds_store store;
	struct mmds_tokens tokens;
	enum mmds_version version;
	bool imds_compat;
};

void mmds_init(struct mmds *m, size_t size_limit);
void mmds_free(struct mmds *m);
/* Applies PUT /mmds/config's version and imds_compat (live tokens stay
 * valid, as in Firecracker). */
void mmds_configure(struct mmds *m, const struct mmds_config *c);

/* Firecracker's MMDS receive buffer: a request must end within this many
 * bytes, or the connection is reset. */
#define MMDS_HTTP_MAX_REQUEST 2500

enum mmds_http_result {
	MMDS_HTTP_NEED_MORE, /* no complete request yet */
	MMDS_HTTP_RESPONSE,  /* *consumed bytes answered; the answer is in resp */
	MMDS_HTTP_RESET,     /* MMDS_HTTP_MAX_REQUEST bytes without an end */
};

/* Looks at the first request in in[0..len): answers it (appending to resp,
 * which may be reused after mmds_buf_reset) or says why not. now_ms is
 * mmds_now_ms() or a test's clock. resp->failed after a response means out
 * of memory: reset the connection. */
enum mmds_http_result mmds_http_handle(struct mmds *m, const void *in, size_t len,
				       uint64_t now_ms, size_t *consumed, struct mmds_buf *resp);

#endif
