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
	assert_int_equal(t->n, 0);
	assert_int_equal(mmds_token_issue(t, 1, T0, tok, &e), 0);
	assert_int_equal(mmds_token_issue(t, 21600, T0, tok, &e), 0);
	assert_int_equal(t->n, 2);
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
	/* Issuing again drops what has expired. */
	assert_int_equal(mmds_token_issue(t, 5, T0 + 1000, c, NULL), 0);
	assert_int_equal(t->n, 2);
	free(t);
}

static void bounded_table(void **state)
{
	(void)state;
	struct mmds_tokens *t = malloc(sizeof(*t));
	static char toks[MMDS_TOKEN_MAX_LIVE + 1][MMDS_TOKEN_LEN + 1];
	mmds_tokens_init(t);
	/* Token i lives 100 + i seconds: token 0 is the closest to expiring. */
	for (size_t i = 0; i < MMDS_TOKEN_MAX_LIVE; i++)
		assert_int_equal(mmds_token_issue(t, (uint32_t)(100 + i), T0, toks[i], NULL), 0);
	assert_int_equal(t->n, MMDS_TOKEN_MAX_LIVE);
	assert_true(valid(t, toks[0], T0));
	assert_int_equal(mmds_token_issue(t, 10, T0, toks[MMDS_TOKEN_MAX_LIVE], NULL), 0);
	assert_int_equal(t->n, MMDS_TOKEN_MAX_LIVE);
	assert_false(valid(t, toks[0], T0));
	for (size_t i = 1; i <= MMDS_TOKEN_MAX_LIVE; i++)
		assert_true(valid(t, toks[i], T0));
	/* No two of them alike. */
	for (size_t i = 0; i <= MMDS_TOKEN_MAX_LIVE; i++)
		for (size_t k = i + 1; k <= MMDS_TOKEN_MAX_LIVE; k++)
			assert_true(memcmp(toks[i], toks[k], MMDS_TOKEN_LEN));
	free(t);
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
		cmocka_unit_test(bounded_table),
		cmocka_unit_test(clock_moves),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
