/* malloc-based allocation hooks for the standalone unit tests and fuzzers */
#include <stdlib.h>
#include <string.h>

#include "ps_alloc.h"

void *
ps_malloc(size_t size)
{
	void	   *p = malloc(size ? size : 1);

	if (p == NULL)
		abort();
	return p;
}

void *
ps_realloc(void *ptr, size_t size)
{
	void	   *p = realloc(ptr, size ? size : 1);

	if (p == NULL)
		abort();
	return p;
}

void
ps_free(void *ptr)
{
	free(ptr);
}

char *
ps_strndup(const char *s, size_t len)
{
	char	   *p = ps_malloc(len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *
ps_strdup(const char *s)
{
	return ps_strndup(s, strlen(s));
}
