/* memtab.h: the in-memory job table of the local backends (store_mem.c,
 * store_sqlite.c). Internal to the store: nothing else includes it.
 *
 * One table holds the records (by value, found by id through a chained
 * hash, threaded in seq order), the tombstones of removed jobs (a bounded
 * ring, found by id through a second hash), the counts by state and the
 * stored bytes (kept as records change, so stats are O(1)), and the
 * dispatch queue of job ids (queue.c, its own lock).
 *
 * The decisions every backend must make alike live here once: the
 * compare-and-set of a transition (od_memtab_check), which job a claim
 * takes and what it writes (od_memtab_claim_rec), which idle job an evict
 * picks (od_memtab_pick). A backend that keeps its records elsewhere as
 * well (sqlite) asks first, writes its record, then applies the change.
 *
 * Locking: one mutex (od_memtab_lock/unlock). Every function below marked
 * "locked" must be called with it held; the queue is safe without it.
 * Lock order: table, then queue.
 */
#ifndef ORFEAS_MEMTAB_H
#define ORFEAS_MEMTAB_H

#include "store.h"

typedef struct od_memtab od_memtab;

/* max_jobs records and as many tombstones at most (arrays grow by doubling
 * up to it), queue_size waiting ids. NULL with err filled on a bad bound
 * or out of memory. */
od_memtab *od_memtab_new(const od_store_opts *o, char *err, size_t err_len);
void od_memtab_free(od_memtab *t);
void od_memtab_lock(od_memtab *t);
void od_memtab_unlock(od_memtab *t);
od_queue *od_memtab_queue(od_memtab *t);

/* locked: the record, or NULL. Valid until the lock is released. */
od_job_rec *od_memtab_find(od_memtab *t, const char *id);
/* locked: OK and *out, or GONE and the tombstone in *out (store.h's get),
 * or NOT_FOUND. */
od_store_rc od_memtab_get(od_memtab *t, const char *id, od_job_rec *out);
/* locked: adds r (a copy). keep_seq 0: assigns r->seq (next in line) and
 * clears attempt and owner, as insert does; 1: keeps r as it is (loading
 * stored records). Drops a tombstone of the same id. CONFLICT: the id is
 * held; FULL: max_jobs records are. */
od_store_rc od_memtab_add(od_memtab *t, od_job_rec *r, int keep_seq);
/* locked: the compare-and-set of od_store_transition without the write:
 * *prev gets the stored record (on OK, CONFLICT, FENCED), *w what the
 * transition would store (next with the store-owned fields kept). */
od_store_rc od_memtab_check(od_memtab *t, const od_job_rec *next, unsigned from,
                            int fence, od_job_rec *prev, od_job_rec *w);
/* locked: replaces the record w->id by w (it must exist). */
void od_memtab_put(od_memtab *t, const od_job_rec *w);
/* A transition from PROCESSING (was) to QUEUED released its claim (store.h):
 * the job goes back to the head of the dispatch queue, past its bound. A
 * closed queue takes nothing (a drain): the record stays QUEUED and the
 * next start queues it (recover). Not locked: the queue has its own. */
void od_memtab_released(od_memtab *t, od_job_state was, const od_job_rec *w);
/* locked: what a claim by owner at wall time now would write for id: OK
 * and *w (processing, attempt and tries + 1) when the record is QUEUED,
 * else NOT_FOUND (nothing to run under that id). */
od_store_rc od_memtab_claim_rec(od_memtab *t, const char *id, const char *owner,
                                double now, od_job_rec *w);
/* locked: the job od_store_evict(sel) would remove at wall time now, into
 * *victim; the rcs of od_store_evict. */
od_store_rc od_memtab_pick(od_memtab *t, const od_evict_sel *sel, double now,
                           od_job_rec *victim);
/* locked: removes record id (it must exist) and, with a reason, leaves a
 * tombstone dated t_gone (the oldest tombstone goes past max_jobs). */
void od_memtab_remove(od_memtab *t, const char *id, const char *reason,
                      double t_gone);
/* locked: adds a tombstone without a record (loading stored ones). */
void od_memtab_bury(od_memtab *t, const char *id, const char *reason,
                    double t_gone);
/* locked: orders the idle records by when they last changed (t_ended, or
 * t_created): after loading stored records, which od_memtab_add put in the
 * order given. 0, or -1 when out of memory (the order is then kept). */
int od_memtab_sort_idle(od_memtab *t);
/* locked: counts, bytes, queue depth and age of its head. */
void od_memtab_stats(od_memtab *t, od_store_stats *st);
/* Whole store calls that only the table answers: both backends put them
 * in their od_store_ops as they are. `be` is the backend's state, whose
 * first member must be its od_memtab * (so these find the table). Each
 * takes and releases the lock itself; the contracts are store.h's get,
 * enqueue, position, get_stats and close_queue. */
od_store_rc od_memtab_call_get(void *be, const char *id, od_job_rec *out);
od_store_rc od_memtab_call_enqueue(void *be, const char *id, int *position);
od_store_rc od_memtab_call_position(void *be, const char *id, int *position);
od_store_rc od_memtab_call_stats(void *be, od_store_stats *st);
od_store_rc od_memtab_call_requeue_stranded(void *be, double before, int *n);
void od_memtab_call_close_queue(void *be, void (*each)(const char *id, void *u),
                                void *u);

/* locked: a malloc'd copy of every record in seq order (*n of them); NULL
 * with *n 0 when there are none; NULL with *n > 0 when out of memory. */
od_job_rec *od_memtab_all(od_memtab *t, size_t *n);

#endif
