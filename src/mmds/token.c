#include "mmds/token.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <nettle/memops.h>

/* Additional data bound into every tag: a token is only ever a token. */
static const uint8_t AAD[] = "ember mmds token v1";

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

static bool new_key(struct mmds_tokens *t)
{
	uint8_t key[32];
	t->keyed = false;
	if (random_bytes(key, sizeof(key)))
		return false;
	gcm_aes256_set_key(&t->key, key);
	memset(key, 0, sizeof(key));
	t->keyed = true;
	t->sealed = 0;
	return true;
}

void mmds_tokens_init(struct mmds_tokens *t)
{
	memset(t, 0, sizeof(*t));
	new_key(t);
}

uint64_t mmds_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* n is a multiple of 3: no padding. */
static void base64(const uint8_t *in, size_t n, char *out)
{
	for (size_t i = 0; i + 2 < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		*out++ = B64[v >> 18 & 63];
		*out++ = B64[v >> 12 & 63];
		*out++ = B64[v >> 6 & 63];
		*out++ = B64[v & 63];
	}
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Strict: exactly 4 * n / 3 characters of the alphabet, no padding. */
static bool unbase64(const char *in, size_t len, uint8_t *out, size_t n)
{
	if (len != n / 3 * 4)
		return false;
	for (size_t i = 0; i < len; i += 4) {
		unsigned v = 0;
		for (size_t k = 0; k < 4; k++) {
			int d = b64_value(in[i + k]);
			if (d < 0)
				return false;
			v = v << 6 | (unsigned)d;
		}
		*out++ = (uint8_t)(v >> 16);
		*out++ = (uint8_t)(v >> 8);
		*out++ = (uint8_t)v;
	}
	return true;
}

int mmds_token_issue(struct mmds_tokens *t, uint32_t ttl, uint64_t now_ms,
		     char out[MMDS_TOKEN_LEN + 1], ember_err *e)
{
	if (ttl < MMDS_TOKEN_TTL_MIN || ttl > MMDS_TOKEN_TTL_MAX)
		return err_set(e, "Invalid time to live value provided for token: %u. Please provide "
				  "a value between %d and %d.", ttl, MMDS_TOKEN_TTL_MIN,
			       MMDS_TOKEN_TTL_MAX);
	if ((!t->keyed || t->sealed >= MMDS_TOKEN_MAX_PER_KEY) && !new_key(t))
		return err_set(e, "Failed to generate a token.");
	uint8_t raw[MMDS_TOKEN_RAW];
	if (random_bytes(raw, MMDS_TOKEN_IV))
		return err_set(e, "Failed to generate a token.");
	uint64_t expiry = now_ms + (uint64_t)ttl * 1000;
	uint8_t payload[MMDS_TOKEN_PAYLOAD];
	for (int i = 0; i < MMDS_TOKEN_PAYLOAD; i++)
		payload[i] = (uint8_t)(expiry >> (8 * i));
	struct gcm_aes256_ctx c = t->key;
	gcm_aes256_set_iv(&c, MMDS_TOKEN_IV, raw);
	gcm_aes256_update(&c, sizeof(AAD) - 1, AAD);
	gcm_aes256_encrypt(&c, MMDS_TOKEN_PAYLOAD, raw + MMDS_TOKEN_IV, payload);
	gcm_aes256_digest(&c, MMDS_TOKEN_TAG, raw + MMDS_TOKEN_IV + MMDS_TOKEN_PAYLOAD);
	t->sealed++;
	base64(raw, sizeof(raw), out);
	out[MMDS_TOKEN_LEN] = '\0';
	memset(&c, 0, sizeof(c));
	return 0;
}

bool mmds_token_valid(const struct mmds_tokens *t, const char *tok, size_t len, uint64_t now_ms)
{
	uint8_t raw[MMDS_TOKEN_RAW];
	if (!t->keyed || !unbase64(tok, len, raw, sizeof(raw)))
		return false;
	struct gcm_aes256_ctx c = t->key;
	uint8_t payload[MMDS_TOKEN_PAYLOAD], tag[MMDS_TOKEN_TAG];
	gcm_aes256_set_iv(&c, MMDS_TOKEN_IV, raw);
	gcm_aes256_update(&c, sizeof(AAD) - 1, AAD);
	gcm_aes256_decrypt(&c, MMDS_TOKEN_PAYLOAD, payload, raw + MMDS_TOKEN_IV);
	gcm_aes256_digest(&c, MMDS_TOKEN_TAG, tag);
	memset(&c, 0, sizeof(c));
	if (!memeql_sec(tag, raw + MMDS_TOKEN_IV + MMDS_TOKEN_PAYLOAD, MMDS_TOKEN_TAG))
		return false;
	uint64_t expiry = 0;
	for (int i = 0; i < MMDS_TOKEN_PAYLOAD; i++)
		expiry |= (uint64_t)payload[i] << (8 * i);
	return now_ms < expiry;
}
