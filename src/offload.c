/* offload.c: the requests that do real work, answered off the HTTP event
 * threads.
 *
 * A libmicrohttpd pool thread serves many connections from one event loop.
 * While it checks an upload (a whole decode: ~5 ms for a 1024 px PNG, ~100
 * ms at 4096 px) or waits for the syncs that back a 2xx, every other
 * connection it holds waits too: status polls, downloads, health checks,
 * other clients' next requests (head-of-line blocking; docs/performance.md
 * saw one thread check uploads for 38 ms while the other core idled). So
 * upload-image and generate-3d, once their body is in, are suspended
 * (MHD_suspend_connection), answered on one of --request-threads threads,
 * and resumed: MHD queues a response only from its own callback, so
 * od_respond keeps the answer in the request (od_req.deferred) and the
 * access handler, called again after the resume, queues it (http.c).
 *
 * Bound: a connection has one request at a time, so at most
 * --max-connections wait here; orfeas_http_offloaded_requests shows how
 * many are waiting or running. Stop (od_offload_stop, before the HTTP
 * daemon stops): new requests are answered inline, the queued ones run,
 * and every connection is resumed (MHD aborts when stopped with a
 * connection suspended). --request-threads 0 answers everything inline.
 */
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "orfeasd.h"

#define MAX_THREADS 64

struct od_offload {
  od_service *svc;
  pthread_mutex_t mu;
  pthread_cond_t work; /* a request queued, or stopping */
  pthread_cond_t idle; /* nothing queued or running */
  od_req *head, *tail; /* queued, oldest first (od_req.off_next) */
  int pending;         /* queued + running: the gauge */
  int resuming;        /* answered, MHD_resume_connection not yet back */
  int stopping;
  int nthreads;
  pthread_t th[MAX_THREADS];
};

static void set_gauge(od_offload *o) {
  om_gauge_set(o->svc->m.http_offloaded, (double)o->pending);
}

static void *run(void *arg) {
  od_offload *o = arg;
  pthread_setname_np(pthread_self(), "od-request");
  pthread_mutex_lock(&o->mu);
  for (;;) {
    while (o->head == NULL && !o->stopping)
      pthread_cond_wait(&o->work, &o->mu);
    od_req *req = o->head;
    if (req == NULL)
      break; /* stopping, and nothing left */
    o->head = req->off_next;
    if (o->head == NULL)
      o->tail = NULL;
    pthread_mutex_unlock(&o->mu);
    /* The connection is suspended: MHD does not touch it or req until
     * the resume below. */
    struct MHD_Connection *conn = req->off_conn;
    od_route_dispatch(o->svc, conn, req);
    req->offloaded = OD_OFFLOAD_ANSWERED;
    /* Off the gauge before the client can have its answer; still counted
     * for od_offload_stop until the resume is done. */
    pthread_mutex_lock(&o->mu);
    o->pending--;
    o->resuming++;
    set_gauge(o);
    pthread_mutex_unlock(&o->mu);
    MHD_resume_connection(conn);
    pthread_mutex_lock(&o->mu);
    o->resuming--;
    if (o->pending == 0 && o->resuming == 0)
      pthread_cond_broadcast(&o->idle);
  }
  pthread_mutex_unlock(&o->mu);
  return NULL;
}

od_offload *od_offload_start(od_service *svc, int threads, char *err,
                             size_t err_len) {
  if (threads <= 0)
    return NULL; /* inline: not an error */
  od_offload *o = calloc(1, sizeof *o);
  if (o == NULL) {
    snprintf(err, err_len, "out of memory");
    return NULL;
  }
  o->svc = svc;
  pthread_mutex_init(&o->mu, NULL);
  pthread_cond_init(&o->work, NULL);
  pthread_cond_init(&o->idle, NULL);
  for (int i = 0; i < threads && i < MAX_THREADS; i++) {
    if (pthread_create(&o->th[i], NULL, run, o) != 0) {
      snprintf(err, err_len, "cannot start request thread %d of %d", i + 1,
               threads);
      od_offload_stop(o);
      return NULL;
    }
    o->nthreads++;
  }
  return o;
}

int od_offload_submit(od_offload *o, struct MHD_Connection *conn, od_req *req) {
  if (o == NULL)
    return 0;
  pthread_mutex_lock(&o->mu);
  if (o->stopping) {
    pthread_mutex_unlock(&o->mu);
    return 0;
  }
  /* Suspended before it is queued: a request thread may resume it at
   * once. */
  MHD_suspend_connection(conn);
  req->off_conn = conn;
  req->offloaded = OD_OFFLOAD_QUEUED;
  req->off_next = NULL;
  if (o->tail)
    o->tail->off_next = req;
  else
    o->head = req;
  o->tail = req;
  o->pending++;
  set_gauge(o);
  pthread_cond_signal(&o->work);
  pthread_mutex_unlock(&o->mu);
  return 1;
}

void od_offload_stop(od_offload *o) {
  if (o == NULL)
    return;
  pthread_mutex_lock(&o->mu);
  o->stopping = 1;
  pthread_cond_broadcast(&o->work);
  while (o->pending > 0 || o->resuming > 0)
    pthread_cond_wait(&o->idle, &o->mu);
  pthread_mutex_unlock(&o->mu);
  for (int i = 0; i < o->nthreads; i++)
    pthread_join(o->th[i], NULL);
  pthread_mutex_destroy(&o->mu);
  pthread_cond_destroy(&o->work);
  pthread_cond_destroy(&o->idle);
  free(o);
}
