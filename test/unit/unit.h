/* A minimal TAP-producing test harness for the pure C unit tests. */
#ifndef PS_UNIT_H
#define PS_UNIT_H

#include <stdio.h>
#include <string.h>

static int	unit_count;
static int	unit_failed;

#define CHECK(cond) do { \
	unit_count++; \
	if (cond) printf("ok %d - %s\n", unit_count, #cond); \
	else { unit_failed++; printf("not ok %d - %s (%s:%d)\n", unit_count, #cond, __FILE__, __LINE__); } \
} while (0)

#define CHECK_STR(a, b) do { \
	const char *a_ = (a), *b_ = (b); \
	unit_count++; \
	if (a_ && b_ && strcmp(a_, b_) == 0) printf("ok %d - %s == \"%s\"\n", unit_count, #a, b_); \
	else { unit_failed++; printf("not ok %d - %s: got \"%s\", want \"%s\" (%s:%d)\n", unit_count, #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)", __FILE__, __LINE__); } \
} while (0)

#define CHECK_MEM(p, n, s) do { \
	const char *p_ = (p); size_t n_ = (n); const char *s_ = (s); \
	unit_count++; \
	if (p_ && n_ == strlen(s_) && memcmp(p_, s_, n_) == 0) printf("ok %d - %s == \"%s\"\n", unit_count, #p, s_); \
	else { unit_failed++; printf("not ok %d - %s: got \"%.*s\", want \"%s\" (%s:%d)\n", unit_count, #p, (int) (p_ ? n_ : 6), p_ ? p_ : "(null)", s_, __FILE__, __LINE__); } \
} while (0)

#define UNIT_DONE() (printf("1..%d\n", unit_count), unit_failed ? 1 : 0)

#endif
