/* One API connection: its bytes in and out, request framing (keep-alive,
 * pipelining, Content-Length bodies, Expect: 100-continue) and every
 * refusal as a JSON fault. Buffers exist only while a request or a response
 * is under way: an idle connection holds none. server.c owns the socket. */
#ifndef EMBER_API_HTTP_CONN_H
#define EMBER_API_HTTP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/http_request.h"
#include "vmm/request.h"

struct api_conn {
	int fd;
	char *in; /* received, not yet answered */
	size_t in_len, in_cap;
	char *out; /* to send: out[out_off..out_len) */
	size_t out_len, out_off;
	uint64_t discard;      /* body bytes of a refused request still to skip */
	uint64_t busy_since;   /* ms: when the request under way began; 0 if none */
	uint64_t last_active;  /* ms: the last byte in or out */
	bool continue_sent;    /* 100 Continue sent for the request under way */
	bool closing;          /* close once out is sent */
	bool eof;              /* the client has shut its side */
	bool answered;         /* has had a response: until then it counts as busy */
};

/* Answers one complete request into resp (h->path and the body are
 * NUL-terminated). A request refused before its body came (too large) has
 * body NULL and its answer already in resp: only to be counted. */
typedef void api_dispatch_fn(void *ctx, const struct api_http_head *h, const char *body,
			     size_t len, struct vmm_response *resp);

/* Reads what the socket has, at most what one request may take. 0, or -1
 * when the socket failed (the connection is to be dropped). */
int api_conn_read(struct api_conn *c, size_t max_payload);
/* Answers every complete request received, in order, while the answers
 * leave nothing unsent. */
void api_conn_process(struct api_conn *c, size_t max_payload, api_dispatch_fn *dispatch,
		      void *ctx);
/* Sends what it can of out. -1 when the socket failed. */
int api_conn_flush(struct api_conn *c);
/* Queues a {"fault_message": ...} response and closes after it. */
void api_conn_fault(struct api_conn *c, int status, const char *msg);
/* A request or response under way, or no request yet on a new connection
 * (which the request timeout bounds). */
bool api_conn_busy(const struct api_conn *c);
bool api_conn_done(const struct api_conn *c); /* to be closed now */
void api_conn_free(struct api_conn *c);
uint64_t api_now_ms(void);

#endif
