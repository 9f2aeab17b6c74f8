#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <string.h>

#include "mmds/token.h"

/* Fake clock: any start, to show nothing depends on the real one. */
#define T0 1000000

static bool valid(const struct mmds_tokens *t, const char *tok, uint64_t now)
{
	return mmds_token_valid(t, tok, strlen(tok), now);
}

static void ttl_bounds(void **state)
{
	(void)state;
	struct mmds_tokens *t = malloc(sizeof(*t));
	char tok[MMDS_TOKEN_LEN + 1];
	ember_err e = {{0}};
	mmds_tokens_init(t);
	assert_int_equal(mmds_token_issue(t, 0, T0, tok, &e), -1);
	assert_string_equal(e.msg, "Invalid time to live value provided for token: 0. Please "
			    "provide a value between 1 and 21600.");
	assert_int_equal(mmds_token_issue(t, 21601, T0, tok, &e), -1);
	assert_non_null(strstr(e.msg, "token: 21601."));
	assert_int_equal(mmds_token_issue(t, 1, T0, tok, &e), 0);
	assert_true(valid(t, tok, T0 + 999));
	assert_false(valid(t, tok, T0 + 1000));
	assert_int_equal(mmds_token_issue(t, 21600, T0, tok, &e), 0);
	assert_true(valid(t, tok, T0 + 21600ULL * 1000 - 1));
	assert_false(valid(t, tok, T0 + 21600ULL * 1000));
	free(t);
}

static void expiry_on_fake_clock(void **state)
{
	(void)state;
	struct mmds_tokens *t = malloc(sizeof(*t));
	char a[MMDS_TOKEN_LEN + 1], b[MMDS_TOKEN_LEN + 1];
	mmds_tokens_init(t);
	assert_int_equal(mmds_token_issue(t, 1, T0, a, NULL), 0);
	assert_int_equal(mmds_token_issue(t, 60, T0, b, NULL), 0);
	assert_int_equal(strlen(a), MMDS_TOKEN_LEN);
	for (size_t i = 0; i < MMDS_TOKEN_LEN; i++)
		assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				       "0123456789+/", a[i]));
	assert_string_not_equal(a, b);
	assert_true(valid(t, a, T0));
	assert_true(valid(t, a, T0 + 999));
	/* Valid while now < expiry, as Firecracker's expiry > now. */
	assert_false(valid(t, a, T0 + 1000));
	assert_true(valid(t, b, T0 + 59999));
	assert_false(valid(t, b, T0 + 60000));
	/* Near misses. */
	char c[MMDS_TOKEN_LEN + 1];
	memcpy(c, b, sizeof(c));
	c[MMDS_TOKEN_LEN - 1] ^= 1;
	assert_false(valid(t, c, T0));
	assert_false(mmds_token_valid(t, b, MMDS_TOKEN_LEN - 1, T0));
	assert_false(valid(t, "", T0));
	char longer[MMDS_TOKEN_LEN + 2];
	memcpy(longer, b, MMDS_TOKEN_LEN);
	strcpy(longer + MMDS_TOKEN_LEN, "A");
	assert_false(valid(t, longer, T0));
	free(t);
}

/* Tokens are stateless: however many a guest takes, none evicts another.
 * Before, a table of 1,024 live tokens replaced the one closest to expiring,
 * so any guest process could flush every other process's valid token. */
static void no_token_evicts_another(void **state)
{
	(void)state;
	enum { N = 5000 };
	struct mmds_tokens *t = malloc(sizeof(*t));
	static char toks[N][MMDS_TOKEN_LEN + 1];
	mmds_tokens_init(t);
	/* Token 0 is the closest to expiring, the first a table would drop. */
	assert_int_equal(mmds_token_issue(t, 100, T0, toks[0], NULL), 0);
	for (size_t i = 1; i < N; i++)
		assert_int_equal(mmds_token_issue(t, 21600, T0, toks[i], NULL), 0);
	for (size_t i = 0; i < N; i++)
		assert_true(valid(t, toks[i], T0 + 99999));
	/* No two of them alike (random IVs). */
	for (size_t i = 0; i < 200; i++)
		for (size_t k = i + 1; k < N; k++)
			assert_true(memcmp(toks[i], toks[k], MMDS_TOKEN_LEN));
	free(t);
}

/* Only the key makes tokens: any changed character, another VM's key, or
 * what is not strict base64 of 36 bytes is refused. */
static void forgeries_are_refused(void **state)
{
	(void)state;
	struct mmds_tokens *t = malloc(sizeof(*t)), *other = malloc(sizeof(*other));
	mmds_tokens_init(t);
	mmds_tokens_init(other);
	char tok[MMDS_TOKEN_LEN + 1], theirs[MMDS_TOKEN_LEN + 1];
	assert_int_equal(mmds_token_issue(t, 60, T0, tok, NULL), 0);
	assert_int_equal(mmds_token_issue(other, 60, T0, theirs, NULL), 0);
	assert_true(valid(t, tok, T0));
	assert_false(valid(t, theirs, T0));
	assert_false(valid(other, tok, T0));
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (size_t i = 0; i < MMDS_TOKEN_LEN; i++) {
		char f[MMDS_TOKEN_LEN + 1];
		memcpy(f, tok, sizeof(f));
		/* Another base64 character: another bit pattern in raw. */
		f[i] = abc[(strchr(abc, f[i]) - abc + 1) % 64];
		assert_false(valid(t, f, T0));
	}
	char bad[MMDS_TOKEN_LEN + 1];
	memcpy(bad, tok, sizeof(bad));
	bad[5] = '=';
	assert_false(valid(t, bad, T0));
	bad[5] = '\0';
	assert_false(mmds_token_valid(t, bad, MMDS_TOKEN_LEN, T0));
	char zeros[MMDS_TOKEN_LEN + 1];
	memset(zeros, 'A', MMDS_TOKEN_LEN);
	zeros[MMDS_TOKEN_LEN] = 0;
	assert_false(valid(t, zeros, T0));
	free(t);
	free(other);
}

static void clock_moves(void **state)
{
	(void)state;
	uint64_t a = mmds_now_ms(), b = mmds_now_ms();
	assert_true(b >= a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ttl_bounds),
		cmocka_unit_test(expiry_on_fake_clock),
		cmocka_unit_test(no_token_evicts_another),
		cmocka_unit_test(forgeries_are_refused),
		cmocka_unit_test(clock_moves),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
