/*
 * driver.h
 *	  Driving a run with libcurl transfers and the latch (worker.c): the
 *	  background worker's loop, and electric.sync_now()'s in a backend.
 */
#ifndef PS_DRIVER_H
#define PS_DRIVER_H

#include "run.h"

typedef struct PsDriver PsDriver;

extern PsDriver *ps_driver_create(PsRun *run);
extern void ps_driver_destroy(PsDriver *d);
extern void ps_driver_step(PsDriver *d);
extern void ps_driver_abort_all(PsDriver *d);
extern void ps_driver_failed(PsDriver *d, ErrorData *e);

#endif
