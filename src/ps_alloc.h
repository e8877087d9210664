/*
 * ps_alloc.h
 *	  Allocation hooks for the pure C parts (protocol, parsers, URL building).
 *
 * The pure files compile without PostgreSQL headers so they can be unit
 * tested and fuzzed standalone.  Inside the server these hooks allocate in
 * CurrentMemoryContext (see pg_alloc.c), so a memory context reset frees
 * everything even when an ERROR unwinds past the pure code; the unit tests
 * link a malloc-based version instead.
 */
#ifndef PS_ALLOC_H
#define PS_ALLOC_H

#include <stddef.h>

extern void *ps_malloc(size_t size);
extern void *ps_realloc(void *ptr, size_t size);
extern void ps_free(void *ptr);
extern char *ps_strndup(const char *s, size_t len);
extern char *ps_strdup(const char *s);

#endif
