#include "arch/x86/aml.h"

#include <string.h>

/* Opcodes and prefixes, ACPI 6.5 section 20.3. */
#define AML_ZERO_OP 0x00
#define AML_ONE_OP 0x01
#define AML_NAME_OP 0x08
#define AML_BYTE_PREFIX 0x0a
#define AML_WORD_PREFIX 0x0b
#define AML_DWORD_PREFIX 0x0c
#define AML_STRING_PREFIX 0x0d
#define AML_QWORD_PREFIX 0x0e
#define AML_SCOPE_OP 0x10
#define AML_BUFFER_OP 0x11
#define AML_PACKAGE_OP 0x12
#define AML_DUAL_NAME_PREFIX 0x2e
#define AML_MULTI_NAME_PREFIX 0x2f
#define AML_EXT_OP_PREFIX 0x5b
#define AML_DEVICE_OP 0x82 /* after AML_EXT_OP_PREFIX */
#define AML_ROOT_CHAR '\\'
#define AML_METHOD_OP 0x14
#define AML_ARG0_OP 0x68
#define AML_NOTIFY_OP 0x86
#define AML_LEQUAL_OP 0x93
#define AML_IF_OP 0xa0

/* Resource descriptor tags, ACPI 6.5 section 6.4. */
#define RES_IO 0x47	  /* small item 0x08, length 7 */
#define RES_END_TAG 0x79  /* small item 0x0f, length 1 */
#define RES_MEMORY32_FIXED 0x86
#define RES_EXT_INTERRUPT 0x89

#define NAMESEG_LEN 4
#define MAX_NAME_SEGS 8

static void fail(struct aml *a, const char *why)
{
	if (!a->error)
		a->error = why;
}

void aml_init(struct aml *a, uint8_t *buf, size_t cap)
{
	a->data = buf;
	a->len = 0;
	a->cap = cap;
	a->error = NULL;
}

/* Room for n more bytes? Sets the error if not. */
static bool room(struct aml *a, size_t n)
{
	if (a->error)
		return false;
	if (n > a->cap - a->len) {
		fail(a, "AML buffer is full");
		return false;
	}
	return true;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (!room(a, n))
		return;
	memcpy(a->data + a->len, p, n);
	a->len += n;
}

static void byte(struct aml *a, uint8_t v)
{
	aml_bytes(a, &v, 1);
}

static void le(struct aml *a, uint64_t v, unsigned n)
{
	uint8_t b[8];
	for (unsigned i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	aml_bytes(a, b, n);
}

/* Inserts n bytes at position at, moving what follows. */
static void insert(struct aml *a, size_t at, const uint8_t *p, size_t n)
{
	if (at > a->len) {
		fail(a, "AML mark is past the end");
		return;
	}
	if (!room(a, n))
		return;
	memmove(a->data + at + n, a->data + at, a->len - at);
	memcpy(a->data + at, p, n);
	a->len += n;
}

size_t aml_pkglen_encode(size_t content, uint8_t out[4])
{
	/* One byte holds 6 bits; longer forms put 4 bits in the lead byte and
	 * 8 in each of up to 3 following ones; bits 7-6 count those. */
	if (content < 0x3f) {
		out[0] = (uint8_t)(content + 1);
		return 1;
	}
	for (size_t n = 2; n <= 4; n++) {
		size_t limit = ((size_t)1 << (4 + 8 * (n - 1))) - 1;
		if (content > limit - n)
			continue;
		size_t total = content + n;
		out[0] = (uint8_t)(((n - 1) << 6) | (total & 0x0f));
		for (size_t i = 1; i < n; i++)
			out[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
		return n;
	}
	return 0;
}

void aml_integer(struct aml *a, uint64_t v)
{
	if (v == 0) {
		byte(a, AML_ZERO_OP);
	} else if (v == 1) {
		byte(a, AML_ONE_OP);
	} else if (v <= UINT8_MAX) {
		byte(a, AML_BYTE_PREFIX);
		le(a, v, 1);
	} else if (v <= UINT16_MAX) {
		byte(a, AML_WORD_PREFIX);
		le(a, v, 2);
	} else if (v <= UINT32_MAX) {
		byte(a, AML_DWORD_PREFIX);
		le(a, v, 4);
	} else {
		byte(a, AML_QWORD_PREFIX);
		le(a, v, 8);
	}
}

void aml_string(struct aml *a, const char *s)
{
	size_t n = strlen(s);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] > 0x7f) {
			fail(a, "AML string is not ASCII");
			return;
		}
	byte(a, AML_STRING_PREFIX);
	aml_bytes(a, s, n + 1);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

void aml_eisaid(struct aml *a, const char *id)
{
	/* Three letters of 5 bits each, then four hex digits; the 32-bit
	 * value is stored big-endian, so its little-endian integer is swapped. */
	if (strlen(id) != 7) {
		fail(a, "EISA id is not 7 characters");
		return;
	}
	uint32_t v = 0;
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z') {
			fail(a, "EISA id vendor is not 3 capital letters");
			return;
		}
		v = (v << 5) | (uint32_t)(id[i] - '@');
	}
	for (int i = 3; i < 7; i++) {
		int h = hexval(id[i]);
		if (h < 0) {
			fail(a, "EISA id product is not 4 hex digits");
			return;
		}
		v = (v << 4) | (uint32_t)h;
	}
	uint32_t swapped = ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >> 8) & 0xff00) | (v >> 24);
	byte(a, AML_DWORD_PREFIX);
	le(a, swapped, 4);
}

static bool lead_char(char c)
{
	return (c >= 'A' && c <= 'Z') || c == '_';
}

static bool name_char(char c)
{
	return lead_char(c) || (c >= '0' && c <= '9');
}

/* Parses one segment of path at *p into seg (padded with '_'). */
static bool name_seg(const char **p, uint8_t seg[NAMESEG_LEN])
{
	const char *s = *p;
	size_t n = 0;
	if (!lead_char(s[0]))
		return false;
	while (name_char(s[n])) {
		if (n == NAMESEG_LEN)
			return false;
		seg[n] = (uint8_t)s[n];
		n++;
	}
	for (size_t i = n; i < NAMESEG_LEN; i++)
		seg[i] = '_';
	*p = s + n;
	return true;
}

void aml_name_string(struct aml *a, const char *path)
{
	uint8_t segs[NAMESEG_LEN * MAX_NAME_SEGS];
	size_t count = 0;
	const char *p = path;
	bool root = *p == AML_ROOT_CHAR;
	if (root)
		p++;
	for (;;) {
		if (count == MAX_NAME_SEGS || !name_seg(&p, segs + count * NAMESEG_LEN)) {
			fail(a, "bad AML name");
			return;
		}
		count++;
		if (*p == '\0')
			break;
		if (*p++ != '.') {
			fail(a, "bad AML name");
			return;
		}
	}
	if (root)
		byte(a, AML_ROOT_CHAR);
	if (count == 2) {
		byte(a, AML_DUAL_NAME_PREFIX);
	} else if (count > 2) {
		byte(a, AML_MULTI_NAME_PREFIX);
		byte(a, (uint8_t)count);
	}
	aml_bytes(a, segs, count * NAMESEG_LEN);
}

void aml_name(struct aml *a, const char *name)
{
	byte(a, AML_NAME_OP);
	aml_name_string(a, name);
}

size_t aml_scope_open(struct aml *a, const char *path)
{
	byte(a, AML_SCOPE_OP);
	size_t mark = a->len;
	aml_name_string(a, path);
	return mark;
}

size_t aml_device_open(struct aml *a, const char *name)
{
	byte(a, AML_EXT_OP_PREFIX);
	byte(a, AML_DEVICE_OP);
	size_t mark = a->len;
	aml_name_string(a, name);
	return mark;
}

size_t aml_package_open(struct aml *a, uint8_t elements)
{
	byte(a, AML_PACKAGE_OP);
	size_t mark = a->len;
	byte(a, elements);
	return mark;
}

void aml_close(struct aml *a, size_t mark)
{
	if (a->error)
		return;
	if (mark > a->len) {
		fail(a, "AML mark is past the end");
		return;
	}
	uint8_t pl[4];
	size_t n = aml_pkglen_encode(a->len - mark, pl);
	if (n == 0) {
		fail(a, "AML package is too long");
		return;
	}
	insert(a, mark, pl, n);
}

size_t aml_buffer_open(struct aml *a)
{
	byte(a, AML_BUFFER_OP);
	return a->len;
}

void aml_buffer_close(struct aml *a, size_t mark)
{
	if (a->error)
		return;
	if (mark > a->len) {
		fail(a, "AML mark is past the end");
		return;
	}
	/* BufferSize is an integer in front of the bytes, inside the package. */
	uint8_t size[9];
	struct aml s;
	aml_init(&s, size, sizeof(size));
	aml_integer(&s, a->len - mark);
	insert(a, mark, size, s.len);
	aml_close(a, mark);
}

size_t aml_restemplate_open(struct aml *a)
{
	return aml_buffer_open(a);
}

void aml_restemplate_close(struct aml *a, size_t mark)
{
	if (a->error)
		return;
	if (mark > a->len) {
		fail(a, "AML mark is past the end");
		return;
	}
	/* The End Tag's checksum makes the template's bytes sum to zero. */
	uint8_t sum = RES_END_TAG;
	for (size_t i = mark; i < a->len; i++)
		sum += a->data[i];
	uint8_t end[2] = {RES_END_TAG, (uint8_t)-sum};
	aml_bytes(a, end, sizeof(end));
	aml_buffer_close(a, mark);
}

void aml_res_memory32_fixed(struct aml *a, bool writable, uint32_t base, uint32_t len)
{
	uint8_t d[] = {RES_MEMORY32_FIXED, 9, 0, writable ? 1 : 0};
	aml_bytes(a, d, sizeof(d));
	le(a, base, 4);
	le(a, len, 4);
}

void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
	/* Information bit 0: the device decodes all 16 address bits. */
	uint8_t d[] = {RES_IO, 1};
	aml_bytes(a, d, sizeof(d));
	le(a, min, 2);
	le(a, max, 2);
	le(a, align, 1);
	le(a, len, 1);
}

void aml_res_interrupt(struct aml *a, bool edge, bool active_low, bool shared, uint32_t gsi)
{
	/* Flags: bit 0 consumer (Linux takes the interrupt as a GSI only from
	 * a consumer), bit 1 edge, bit 2 active low, bit 3 shared. */
	uint8_t flags = (uint8_t)(1 | (edge ? 2 : 0) | (active_low ? 4 : 0) | (shared ? 8 : 0));
	uint8_t d[] = {RES_EXT_INTERRUPT, 6, 0, flags, 1};
	aml_bytes(a, d, sizeof(d));
	le(a, gsi, 4);
}

size_t aml_method_open(struct aml *a, const char *name, uint8_t nargs)
{
	byte(a, AML_METHOD_OP);
	size_t mark = a->len;
	aml_name_string(a, name);
	if (nargs > 7)
		fail(a, "AML method with more than 7 arguments");
	byte(a, nargs & 7); /* not serialized, sync level 0 */
	return mark;
}

size_t aml_if_arg0_equals_open(struct aml *a, uint64_t v)
{
	byte(a, AML_IF_OP);
	size_t mark = a->len;
	byte(a, AML_LEQUAL_OP);
	byte(a, AML_ARG0_OP);
	aml_integer(a, v);
	return mark;
}

void aml_notify(struct aml *a, const char *path, uint64_t value)
{
	byte(a, AML_NOTIFY_OP);
	aml_name_string(a, path);
	aml_integer(a, value);
}
