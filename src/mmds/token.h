/* MMDS session tokens (PUT /latest/api/token, then X-metadata-token on each
 * GET), stateless as Firecracker's: a token is its own expiry time, sealed
 * with AES-256-GCM (nettle) under a key drawn from getrandom(2) when the VM's
 * MMDS is set up, base64-encoded:
 *
 *     base64( iv[12] || AES-256-GCM(key, iv, expiry_ms as 8 bytes LE) || tag[16] )
 *
 * 36 bytes, 48 characters, the same layout and length as Firecracker's.
 * Nothing is stored per token, so nothing can be evicted: any number of
 * guest processes can hold tokens, each valid until its own expiry. Only the
 * key can make a token, and a changed byte fails the tag check (compared in
 * constant time). Time is passed in (ms of a monotonic clock) so tests drive
 * a fake clock. */
#ifndef EMBER_MMDS_TOKEN_H
#define EMBER_MMDS_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nettle/gcm.h>

#include "util/err.h"

#define MMDS_TOKEN_TTL_MIN 1
#define MMDS_TOKEN_TTL_MAX 21600 /* 6 hours */
#define MMDS_TOKEN_IV 12
#define MMDS_TOKEN_PAYLOAD 8
#define MMDS_TOKEN_TAG 16
#define MMDS_TOKEN_RAW (MMDS_TOKEN_IV + MMDS_TOKEN_PAYLOAD + MMDS_TOKEN_TAG) /* 36 */
#define MMDS_TOKEN_LEN 48 /* base64 of MMDS_TOKEN_RAW bytes */
/* Tokens sealed under one key at most: random 96-bit IVs stay safe for
 * 2^32 of them (NIST SP 800-38D). Then a new key; tokens of the old one
 * stop being valid (as Firecracker's regenerated key). */
#define MMDS_TOKEN_MAX_PER_KEY (1ULL << 32)

struct mmds_tokens {
	struct gcm_aes256_ctx key; /* the key schedule; copied for each use */
	bool keyed;
	uint64_t sealed; /* tokens issued under this key */
};

/* Draws a new random key (the VM's). If the kernel gives no randomness,
 * issuing fails ("Failed to generate a token.") until it does. */
void mmds_tokens_init(struct mmds_tokens *t);
/* Issues a token valid for ttl seconds from now_ms into out (NUL-terminated).
 * A ttl outside 1..21600 gets Firecracker's message. */
int mmds_token_issue(struct mmds_tokens *t, uint32_t ttl, uint64_t now_ms,
		     char out[MMDS_TOKEN_LEN + 1], ember_err *e);
/* Whether tok (len bytes, not NUL-terminated) was issued under this key and
 * has not expired at now_ms (valid while now_ms < expiry). */
bool mmds_token_valid(const struct mmds_tokens *t, const char *tok, size_t len, uint64_t now_ms);
/* Milliseconds of CLOCK_MONOTONIC, Firecracker's clock for token expiry. */
uint64_t mmds_now_ms(void);

#endif
