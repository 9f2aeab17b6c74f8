/* MMDS session tokens (PUT /latest/api/token, then X-metadata-token on each
 * GET). Firecracker issues stateless AES-GCM blobs; Ember has no crypto
 * library, so a token is instead 36 bytes from getrandom(2), base64-encoded
 * to 48 characters like Firecracker's, and kept in a bounded table with its
 * expiry. Unforgeable the same way: the guest can only present what it was
 * given; guessing means hitting 288 random bits. Time is passed in (ms of a
 * monotonic clock) so tests drive a fake clock. */
#ifndef EMBER_MMDS_TOKEN_H
#define EMBER_MMDS_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define MMDS_TOKEN_TTL_MIN 1
#define MMDS_TOKEN_TTL_MAX 21600 /* 6 hours */
#define MMDS_TOKEN_RAW 36
#define MMDS_TOKEN_LEN 48 /* base64 of MMDS_TOKEN_RAW bytes */
/* Live tokens kept. A new token past this replaces the one closest to
 * expiring, whose holder gets 401 and must ask again. 1024 covers a guest
 * taking a token per process, or one every 21 s for the 6 hours a token can
 * live; the table takes 56 KiB. */
#define MMDS_TOKEN_MAX_LIVE 1024

struct mmds_token {
	char text[MMDS_TOKEN_LEN];
	uint64_t expiry_ms; /* valid while now < expiry */
};

struct mmds_tokens {
	struct mmds_token live[MMDS_TOKEN_MAX_LIVE];
	size_t n;
};

void mmds_tokens_init(struct mmds_tokens *t);
/* Issues a token valid for ttl seconds from now_ms into out (NUL-terminated).
 * A ttl outside 1..21600 gets Firecracker's message. */
int mmds_token_issue(struct mmds_tokens *t, uint32_t ttl, uint64_t now_ms,
		     char out[MMDS_TOKEN_LEN + 1], ember_err *e);
/* Whether tok (len bytes, not NUL-terminated) is a live token at now_ms.
 * Compares in constant time per entry, so timing tells nothing of the table. */
bool mmds_token_valid(const struct mmds_tokens *t, const char *tok, size_t len, uint64_t now_ms);
/* Milliseconds of CLOCK_MONOTONIC, Firecracker's clock for token expiry. */
uint64_t mmds_now_ms(void);

#endif
