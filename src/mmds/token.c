#include "mmds/token.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

void mmds_tokens_init(struct mmds_tokens *t)
{
	memset(t, 0, sizeof(*t));
}

uint64_t mmds_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int random_bytes(unsigned char *p, size_t n)
{
	while (n) {
		ssize_t r = getrandom(p, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static void base64(const unsigned char *in, size_t n, char *out)
{
	static const char abc[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	/* n is a multiple of 3: no padding. */
	for (size_t i = 0; i + 2 < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		*out++ = abc[v >> 18 & 63];
		*out++ = abc[v >> 12 & 63];
		*out++ = abc[v >> 6 & 63];
		*out++ = abc[v & 63];
	}
}

/* Drops expired tokens; when still full, the one closest to expiring. */
static void make_room(struct mmds_tokens *t, uint64_t now_ms)
{
	size_t w = 0;
	for (size_t r = 0; r < t->n; r++)
		if (t->live[r].expiry_ms > now_ms)
			t->live[w++] = t->live[r];
	t->n = w;
	if (t->n < MMDS_TOKEN_MAX_LIVE)
		return;
	size_t soonest = 0;
	for (size_t i = 1; i < t->n; i++)
		if (t->live[i].expiry_ms < t->live[soonest].expiry_ms)
			soonest = i;
	t->live[soonest] = t->live[--t->n];
}

int mmds_token_issue(struct mmds_tokens *t, uint32_t ttl, uint64_t now_ms,
		     char out[MMDS_TOKEN_LEN + 1], ember_err *e)
{
	if (ttl < MMDS_TOKEN_TTL_MIN || ttl > MMDS_TOKEN_TTL_MAX)
		return err_set(e, "Invalid time to live value provided for token: %u. Please provide "
				  "a value between %d and %d.", ttl, MMDS_TOKEN_TTL_MIN,
			       MMDS_TOKEN_TTL_MAX);
	unsigned char raw[MMDS_TOKEN_RAW];
	if (random_bytes(raw, sizeof(raw)))
		return err_set(e, "Failed to generate a token.");
	make_room(t, now_ms);
	struct mmds_token *tok = &t->live[t->n++];
	base64(raw, sizeof(raw), tok->text);
	tok->expiry_ms = now_ms + (uint64_t)ttl * 1000;
	memcpy(out, tok->text, MMDS_TOKEN_LEN);
	out[MMDS_TOKEN_LEN] = '\0';
	memset(raw, 0, sizeof(raw));
	return 0;
}

bool mmds_token_valid(const struct mmds_tokens *t, const char *tok, size_t len, uint64_t now_ms)
{
	if (len != MMDS_TOKEN_LEN)
		return false;
	bool found = false;
	for (size_t i = 0; i < t->n; i++) {
		unsigned char diff = 0;
		for (size_t k = 0; k < MMDS_TOKEN_LEN; k++)
			diff |= (unsigned char)(t->live[i].text[k] ^ tok[k]);
		found |= diff == 0 && t->live[i].expiry_ms > now_ms;
	}
	return found;
}
