/* A tiny writer of ACPI Machine Language (ACPI 6.5, chapter 20): just what
 * Ember's DSDT needs. Bytes go into a caller-provided buffer; the first
 * error (buffer full, bad name, value out of range) sticks in `error` and
 * every later call does nothing, so a builder checks once at the end.
 *
 * Objects with a PkgLength (Scope, Device, Package, Buffer) are written as
 * open ... close: *_open returns a mark, the contents follow, and the close
 * call inserts the length (1 to 4 bytes) in front of the contents. */
#ifndef EMBER_X86_AML_H
#define EMBER_X86_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml {
	uint8_t *data;
	size_t len;
	size_t cap;
	const char *error; /* NULL, or what went wrong first */
};

/* The largest PkgLength: 28 bits, including its own 4 bytes. */
#define AML_PKGLEN_MAX 0x0fffffffU

void aml_init(struct aml *a, uint8_t *buf, size_t cap);

/* Encodes the PkgLength of `content` bytes (the value counts the encoding's
 * own bytes too) into out; returns its size, 1 to 4, or 0 if too long. */
size_t aml_pkglen_encode(size_t content, uint8_t out[4]);

void aml_bytes(struct aml *a, const void *p, size_t n);
/* Integer constant in its smallest form: Zero, One, Byte, Word, DWord or
 * QWord. (Ones is not used: its value depends on the table revision.) */
void aml_integer(struct aml *a, uint64_t v);
/* String constant of ASCII 0x01..0x7f, NUL-terminated. */
void aml_string(struct aml *a, const char *s);
/* An EISA id such as "PNP0501", compressed to a DWord as ASL's EISAID(). */
void aml_eisaid(struct aml *a, const char *id);
/* A NameString: optional leading '\', then 1 or more '.'-separated name
 * segments of 1 to 4 characters ([A-Z_] then [A-Z0-9_], padded with '_'). */
void aml_name_string(struct aml *a, const char *path);
/* Name(name, ...): the caller writes the one data object that follows. */
void aml_name(struct aml *a, const char *name);

size_t aml_scope_open(struct aml *a, const char *path);
size_t aml_device_open(struct aml *a, const char *name);
size_t aml_package_open(struct aml *a, uint8_t elements);
/* Method(name, nargs){...}, not serialized. */
size_t aml_method_open(struct aml *a, const char *name, uint8_t nargs);
/* If (LEqual(Arg0, v)) {...} */
size_t aml_if_arg0_equals_open(struct aml *a, uint64_t v);
/* Notify(path, value) */
void aml_notify(struct aml *a, const char *path, uint64_t value);
/* Closes a Scope, Device, Package, Method or If. */
void aml_close(struct aml *a, size_t mark);
/* Buffer(){...}: the bytes written between open and close. */
size_t aml_buffer_open(struct aml *a);
void aml_buffer_close(struct aml *a, size_t mark);

/* ResourceTemplate(){...}: a Buffer of resource descriptors that the close
 * call ends with an End Tag carrying the template's checksum. */
size_t aml_restemplate_open(struct aml *a);
void aml_restemplate_close(struct aml *a, size_t mark);
/* Descriptors for inside a resource template (ACPI 6.5, 6.4). */
void aml_res_memory32_fixed(struct aml *a, bool writable, uint32_t base, uint32_t len);
void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len);
/* Extended Interrupt descriptor, one interrupt, as a resource consumer. */
void aml_res_interrupt(struct aml *a, bool edge, bool active_low, bool shared, uint32_t gsi);

#endif
