/*
 * upload.h
 *	  The worker's upload of local writes (upload.c).
 */
#ifndef PS_UPLOAD_H
#define PS_UPLOAD_H

#include "http.h"
#include "run.h"

typedef struct PsUpload PsUpload;

extern PsUpload *ps_upload_create(PsRun *run, PsHttpPool *pool);
extern bool ps_upload_owns(PsUpload *u, PsHttpXfer *x);

/* Start the next write if there is one and it is due; *wake: when to look again. */
extern void ps_upload_step(PsUpload *u, TimestampTz now, TimestampTz *wake);

/* Its transfer completed: record the answer. */
extern void ps_upload_done(PsUpload *u);

/* Abandon the write in flight (stop, reload): it is sent again, same key. */
extern void ps_upload_abort(PsUpload *u);
extern void ps_upload_failed(PsUpload *u);

#endif
