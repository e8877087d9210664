/*
 * pg_alloc.c
 *	  Allocation hooks of the pure C parts, inside the server: allocate in
 *	  CurrentMemoryContext so that a context reset frees whatever an ERROR
 *	  left behind.  jansson is pointed at the same hooks in _PG_init.
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "ps_alloc.h"

void *
ps_malloc(size_t size)
{
	return MemoryContextAllocExtended(CurrentMemoryContext, size ? size : 1,
									  MCXT_ALLOC_HUGE);
}

void *
ps_realloc(void *ptr, size_t size)
{
	if (ptr == NULL)
		return ps_malloc(size);
	return repalloc_huge(ptr, size ? size : 1);
}

void
ps_free(void *ptr)
{
	if (ptr != NULL)
		pfree(ptr);
}

char *
ps_strndup(const char *s, size_t len)
{
	return pnstrdup(s, len);
}

char *
ps_strdup(const char *s)
{
	return pstrdup(s);
}
