/* ws.c: WebSocket connections, owned by one hub thread.
 *
 * routes.c answers the upgrade (Sec-WebSocket-Accept from wsproto.c's
 * od_ws_accept_key) and MHD hands the raw socket to od_ws_adopt() on its
 * own thread; that only pushes the socket on a pending list and wakes the
 * hub through an eventfd. The hub thread owns epoll, every socket and every
 * wslay context, so wslay needs no lock. Workers publish events into an
 * outbox (mutex + eventfd); the hub copies each into the wslay send queue of
 * every subscriber.
 *
 * Slow clients: each socket's kernel send buffer is --ws-sndbuf-kb; a
 * client whose wslay queue still holds --ws-queue frames after a flush into
 * that buffer gets no more progress frames (2x that for the rest); each refused
 * frame is counted in orfeas_websocket_messages_dropped_total. A job's end
 * (generation_complete/_error) is never dropped silently: a client too far
 * behind to take one is closed (1008, reason "slow"), so it knows it missed
 * something; reconnecting and subscribing again gives it each job's current
 * state, ends included (send_current). Progress frames are only dropped:
 * the next one, or the end, says where the job stands. The hub never
 * blocks on a socket (non-blocking sends; EPOLLOUT when the kernel buffer is
 * full), so one stalled reader costs the others nothing. The outbox is bounded
 * too (OUTBOX_MAX frames), in case the hub itself falls behind.
 *
 * Hostile and dead clients (issue #13):
 *  - Flood: wslay answers every ping with a pong queued for the client, and
 *    each text or binary message gets a reply; a client that sends them and
 *    never reads would grow its queue without end. A client message that
 *    finds the client's queue at 2 x --ws-queue (the cap of replies) is a
 *    flood: the hub stops reading from it, queues a close 1008 and closes
 *    the socket CLOSE_GRACE_S later at the latest.
 *  - Idle: every --ws-ping-interval the hub sends a ping; a client that
 *    has not answered with a pong within --ws-ping-timeout (one that does
 *    not read, or is gone without a FIN) is closed (1001, "idle"). Each
 *    ping's payload is the client's random key and the ping's number, and
 *    only a pong that echoes one counts: an unsolicited pong proves
 *    nothing about reading.
 *  - Fairness: one recv turn reads at most RECV_TURN_BYTES from a client,
 *    so a client that sends without pause cannot hold the hub.
 *  - Churn (cluster mode): a client's subscribes waiting for their job's
 *    current state are bounded, so one looping subscribe and unsubscribe
 *    cannot crowd the others out of the node's refresh queue (ask_current).
 * Every close is counted by reason in
 * orfeas_websocket_disconnections_total. Upgraded sockets are budgeted
 * apart from HTTP connections (--max-ws-clients, not --max-connections:
 * svc->ws_open, read by http.c).
 *
 * Socket.IO clients (/socket.io/, the original ORFEAS page's protocol) are
 * the same kind of client with a protocol state (c->sio): their frames go
 * through socketio.c (sio_on_msg), the hub's job events reach them as
 * job_update (queue_text translates), and the same heartbeat pings them
 * every --sio-ping-interval, the Engine.IO way ("2", answered "3") and
 * with a numbered WebSocket ping, and closes one that has not echoed that
 * ping within --sio-ping-timeout (a "3" names no ping: heartbeat). Everything
 * else (subscriptions, queues, limits, floods, drops) is shared.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <wslay/wslay.h>

#include "orfeas_build.h" /* generated: version, git revision, build type */
#include "orfeasd.h"

#define OUTBOX_MAX 65536
/* A client that does not answer our close frame (or does not even read
 * it) is not waited for longer than this. */
#define CLOSE_GRACE_S 1.0
#define RECV_TURN_BYTES 65536

/* Why a client went: the reason label of orfeas_websocket_disconnections_total
 * (svc_metrics.c creates each at 0). */
const char *const OD_WS_CLOSE_REASONS[OD_WS_CLOSE_REASONS_N] = {
    "client", "idle", "flood", "protocol", "shutdown", "error", "slow"};

typedef struct client {
  od_hub *hub;
  int fd;
  struct MHD_UpgradeResponseHandle *urh;
  wslay_event_context_ptr ctx; /* owned */
  uint8_t *extra;              /* bytes MHD read past the headers; owned */
  size_t extra_len, extra_off;
  int nsubs, max_subs; /* subs[] holds max_subs (--ws-max-subscriptions) */
  uint64_t serial;     /* this connection's number: its refreshes' owner */
  uint32_t armed;      /* epoll events registered */
  int dead;
  int closing;                   /* our close frame is queued */
  od_ws_close_reason reason;     /* why it closes, once we know */
  size_t turn_bytes;             /* read in this recv turn */
  double ping_at;                /* the next ping is due */
  double pong_by;                /* a pong is due by then; 0 when none */
  char ping_key[37];             /* random, in each ping's payload */
  unsigned long long pings;      /* pings sent, the last one's number */
  unsigned long long armed_ping; /* the ping that set pong_by */
  double close_by;               /* closing: the socket closes then, whether
                                    the client answered the close or not */
  int in_recv;                   /* inside wslay_event_recv() */
  int peer_closed;               /* the close we send echoes the client's own */
  int io_gone;                   /* EOF: the client closed its end */
  int io_error;                  /* a socket error (a reset, a timeout) */
  int mid_frame;                 /* part of a frame is out, the rest not */
  int short_close;               /* its close frame had a 1-byte body */
  od_sio_conn *sio;              /* Socket.IO state (owned); NULL for /ws */
  struct client *next;
  char subs[][37]; /* the jobs followed; allocated with the client */
} client;

typedef struct outmsg {
  char job_id[37];
  od_ws_event ev;
  size_t len;
  struct outmsg *next;
  char text[]; /* the frame payload */
} outmsg;

struct od_hub {
  od_service *svc;
  int epfd, evfd;
  pthread_t thread;
  int started;
  pthread_mutex_t mu; /* pending, outbox, stop, exited */
  client *pending;
  /* No hub thread will adopt what is pending (not started, or gone): an
   * upgrade then closes at once, from MHD's thread. Else one that came
   * after the thread's last adopt_pending would wait on pending until
   * od_hub_free, after the HTTP daemon stopped and freed its handle. */
  int exited;
  outmsg *out_head, *out_tail;
  size_t out_n;
  int stop;
  double stop_by;   /* od_now() deadline of od_hub_stop */
  client *clients;  /* hub thread only */
  uint64_t serials; /* hub thread only: connections adopted */
  _Atomic int nclients;
  _Atomic int resync; /* od_hub_resync asked */
};

static void wake(od_hub *h) {
  uint64_t one = 1;
  ssize_t n = write(h->evfd, &one, sizeof one);
  (void)n; /* a full counter already means "wake up" */
}

/* ---- wslay callbacks (hub thread) ---------------------------------------- */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                       int flags, void *user) {
  (void)flags;
  client *c = user;
  if (c->turn_bytes >= RECV_TURN_BYTES) { /* the rest next turn */
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  if (c->extra_off < c->extra_len) {
    size_t n = c->extra_len - c->extra_off;
    if (n > len)
      n = len;
    memcpy(buf, c->extra + c->extra_off, n);
    c->extra_off += n;
    return (ssize_t)n;
  }
  ssize_t r;
  while ((r = recv(c->fd, buf, len, 0)) < 0 && errno == EINTR)
    ;
  if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    c->io_error = 1;
  if (r < 0) {
    wslay_event_set_error(ctx, c->io_error ? WSLAY_ERR_CALLBACK_FAILURE
                                           : WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  if (r == 0) {
    c->io_gone = 1;
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  c->turn_bytes += (size_t)r;
  return r;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data,
                       size_t len, int flags, void *user) {
  client *c = user;
  int f = MSG_NOSIGNAL | ((flags & WSLAY_MSG_MORE) ? MSG_MORE : 0);
  ssize_t r;
  while ((r = send(c->fd, data, len, f)) < 0 && errno == EINTR)
    ;
  if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
    c->io_error = 1;
  if (r < 0) {
    wslay_event_set_error(ctx, c->io_error ? WSLAY_ERR_CALLBACK_FAILURE
                                           : WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  /* wslay hands over a frame's header (MSG_MORE when a payload follows),
   * then the whole rest of its payload: a frame is all out when a call
   * without MSG_MORE took every byte. */
  c->mid_frame = (size_t)r < len || (flags & WSLAY_MSG_MORE);
  return r;
}

/* Queues our close frame (once), stops reading, and sets when the socket
 * closes anyway. */
static void begin_close(client *c, od_ws_close_reason why, uint16_t code,
                        const char *text, double close_by) {
  if (c->closing)
    return;
  c->closing = 1;
  c->reason = why;
  c->close_by = close_by;
  wslay_event_queue_close(c->ctx, code, (const uint8_t *)text, strlen(text));
  if (why != OD_WS_CLOSE_SHUTDOWN)
    wslay_event_shutdown_read(c->ctx); /* nothing it sends matters now */
}

/* A client message that needs an answer (a ping, a text message) while the
 * client's queue is already at the replies' cap: it sends and does not
 * read. 1 when the client was closed for it. */
static int flooding(client *c) {
  size_t cap = 2 * (size_t)c->hub->svc->cfg.ws_queue;
  if (c->closing || wslay_event_get_queued_msg_count(c->ctx) < cap)
    return 0;
  begin_close(c, OD_WS_CLOSE_FLOOD, WSLAY_CODE_POLICY_VIOLATION,
              "flood: requests faster than their answers are read",
              od_now() + CLOSE_GRACE_S);
  return 1;
}

static const struct wslay_event_callbacks CALLBACKS;

/* A broken frame, counted once: by client_recv for the frames wslay's
 * parser refuses, by close_client for those wslay closes itself. */
static void count_protocol(client *c, const char *etype) {
  od_metrics *m = &c->hub->svc->m;
  od_metric_error(m, "ws_protocol", c->sio ? OD_ROUTE_SOCKETIO : OD_ROUTE_WS);
  od_metric_validation(m, "ws_frame", etype);
  if (c->reason == OD_WS_CLOSE_CLIENT)
    c->reason = OD_WS_CLOSE_PROTOCOL;
}

/* Reads what the client sent. wslay closes by itself (1002, 1007, 1009)
 * for what it can read past; a frame its parser refuses (a 64-bit length
 * with the top bit set, a control frame over 125 bytes or fragmented)
 * fails the read instead, having queued a close without a status code.
 * That is told apart from the socket's end (EOF, an error: recv_cb) and
 * answered with 1002 and the grace period like the others: from a fresh
 * wslay context when no frame is half sent (always, but for a client that
 * also stopped reading), else with wslay's close. */
static void client_recv(client *c) {
  c->in_recv = 1;
  int rv = wslay_event_recv(c->ctx);
  c->in_recv = 0;
  if (rv == 0 && c->short_close && !c->closing && !c->dead) {
    /* A close frame whose body is one byte (RFC 6455 5.5.1: a code is two):
     * wslay echoes it as a close with no code, a client's own close. It
     * is a broken frame like the others: 1002, counted. */
    c->short_close = 0;
    c->peer_closed = 0;
    rv = WSLAY_ERR_CALLBACK_FAILURE;
  }
  if (rv == 0 || c->dead)
    return;
  /* Already closing (our close queued, maybe from the fresh context
   * below, whose parser then starts mid-frame): dropped, counted once. */
  if (c->io_gone || c->io_error || rv != WSLAY_ERR_CALLBACK_FAILURE ||
      c->closing) {
    c->dead = 1;
    return;
  }
  count_protocol(c, "malformed");
  wslay_event_context_ptr fresh;
  if (!c->closing && !c->mid_frame &&
      wslay_event_context_server_init(&fresh, &CALLBACKS, c) == 0) {
    wslay_event_context_free(c->ctx);
    c->ctx = fresh;
  }
  begin_close(c, OD_WS_CLOSE_PROTOCOL, WSLAY_CODE_PROTOCOL_ERROR,
              "malformed frame", od_now() + CLOSE_GRACE_S);
}

static int subscribed(const client *c, const char *id) {
  for (int i = 0; i < c->nsubs; i++)
    if (strcmp(c->subs[i], id) == 0)
      return i;
  return -1;
}

static void unsubscribe(client *c, const char *id) {
  int at = id ? subscribed(c, id) : -1;
  if (at >= 0) {
    memcpy(c->subs[at], c->subs[c->nsubs - 1], 37);
    c->nsubs--;
  }
}

/* A job's end (complete or error) is the last event it has: once it is
 * queued to a client, that subscription is over and frees its slot, so a
 * client following many jobs in turn never reaches --ws-max-subscriptions. */
static int is_end(od_ws_event ev) {
  return ev == OD_WS_COMPLETE || ev == OD_WS_ERROR_EVENT;
}

/* Queues one text frame to one client, or drops and counts it. A full
 * queue is first flushed into the socket (a burst of events from two
 * workers is not a slow client); only a client whose kernel buffer is also
 * full loses frames. Progress frames go past --ws-queue, the end of a job
 * (and the replies to the client) only past twice that, so a lagging client
 * loses intermediate progress first; an end that does not fit closes the
 * client as slow instead of leaving it waiting for an end that never comes. */
static void queue_text(client *c, od_ws_event ev, const char *text,
                       size_t len) {
  od_metrics *m = &c->hub->svc->m;
  if (c->dead || !wslay_event_get_write_enabled(c->ctx))
    return;
  char *sio_text = NULL;
  if (c->sio != NULL) {
    /* A Socket.IO client hears the job events only, as job_update. */
    sio_text = od_sio_job_update(text, len);
    if (sio_text == NULL)
      return;
    text = sio_text;
    len = strlen(sio_text);
  }
  size_t cap = (size_t)c->hub->svc->cfg.ws_queue;
  if (ev != OD_WS_PROGRESS && ev != OD_WS_STAGE_CHANGE)
    cap *= 2;
  /* No flush from inside wslay's own receive callback (replies to the
   * client): wslay is not re-entrant. */
  if (!c->in_recv && wslay_event_get_queued_msg_count(c->ctx) >= cap &&
      wslay_event_send(c->ctx) != 0)
    c->dead = 1;
  if (c->dead || wslay_event_get_queued_msg_count(c->ctx) >= cap) {
    om_counter_inc(m->ws_dropped);
    free(sio_text);
    /* 1008: wslay 1.1 refuses 1013 (try again later). */
    if (is_end(ev) && !c->dead)
      begin_close(c, OD_WS_CLOSE_SLOW, WSLAY_CODE_POLICY_VIOLATION,
                  "slow: events were dropped; reconnect and subscribe again",
                  od_now() + CLOSE_GRACE_S);
    return;
  }
  struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, (const uint8_t *)text, len};
  if (wslay_event_queue_msg(c->ctx, &msg) == 0)
    om_counter_inc(m->ws_sent[ev]);
  free(sio_text);
}

/* A protocol frame of the client's own (Socket.IO replies, pings): queued
 * unless the client is dead or hopelessly behind (2x --ws-queue). len
 * bytes (a CONNECT_ERROR may hold a NUL: od_sio_handle). */
static void queue_raw_n(client *c, const char *text, size_t len) {
  if (text == NULL || c->dead || !wslay_event_get_write_enabled(c->ctx))
    return;
  if (wslay_event_get_queued_msg_count(c->ctx) >=
      2 * (size_t)c->hub->svc->cfg.ws_queue) {
    om_counter_inc(c->hub->svc->m.ws_dropped);
    return;
  }
  struct wslay_event_msg msg = {WSLAY_TEXT_FRAME, (const uint8_t *)text, len};
  wslay_event_queue_msg(c->ctx, &msg);
}

static void queue_raw(client *c, const char *text) {
  if (text != NULL)
    queue_raw_n(c, text, strlen(text));
}

static void send_event(client *c, od_ws_event ev, json_t *data) {
  if (is_end(ev)) /* send_current: the job had ended before the subscribe */
    unsubscribe(c, json_string_value(json_object_get(data, "job_id")));
  json_object_set_new(data, "timestamp", json_real(od_wall()));
  char *text = od_ws_event_json(ev, data);
  if (text) {
    queue_text(c, ev, text, strlen(text));
    free(text);
  }
}

/* Cluster mode: asks the refresher for the job's current state, which
 * comes back through od_hub_publish to every subscriber (fanout.c). The
 * connection may have --ws-max-subscriptions of them waiting: as many as
 * it can follow, so only a client that churns subscriptions meets it.
 * A refusal (that, or the node's queue full) is told to the client with an
 * error naming the job: nothing else would say that its current state is
 * not coming, and a job that had already ended would never send its end.
 * The subscription stands (the job's next events still reach it); a
 * subscribe again asks again. A read asked for that then fails (Redis slow
 * or answering an error) is told the same way, by the refresher through
 * the hub (fanout.c store_failed). */
static void ask_current(client *c, const char *id) {
  od_refresh r = od_jobs_refresh(c->hub->svc->jobs, id, c->serial, c->max_subs);
  if (r == OD_REFRESH_ASKED)
    return;
  char msg[200];
  if (r == OD_REFRESH_CLIENT)
    snprintf(msg, sizeof msg,
             "no current state sent for this job: this connection already "
             "has %d subscribes waiting for theirs (--ws-max-subscriptions); "
             "subscribe again later",
             c->max_subs);
  else
    snprintf(msg, sizeof msg,
             "no current state sent for this job: this node's queue of "
             "job-state reads is full; subscribe again later");
  json_t *data = od_ws_error_data(OD_WSE_RESUBSCRIBE, msg, id);
  if (c->sio != NULL) {
    char *text = od_sio_event_text("error", data);
    queue_raw(c, text);
    free(text);
  } else {
    send_event(c, OD_WS_ERROR, data);
  }
}

/* After a subscribe: tell the client where the job stands, so one that
 * subscribes after the job ended (or while it runs) still gets its end. */
static void send_current(client *c, const char *id) {
  od_job_view v;
  od_ws_event ev;
  json_t *data;
  /* Cluster mode: the store is Redis, never read on the hub's thread. */
  if (od_jobs_shared(c->hub->svc->jobs)) {
    ask_current(c, id);
    return;
  }
  /* A removed job's current state is its removal (generation_error). */
  if ((od_jobs_view(c->hub->svc->jobs, id, &v) ||
       od_jobs_gone(c->hub->svc->jobs, id, &v)) &&
      (data = od_job_event_json(&v, &ev)) != NULL)
    send_event(c, ev, data);
}

/* The answer to a subscribe past --ws-max-subscriptions; it names the job,
 * so a client waiting for that job's "subscribed" stops waiting at once. */
static json_t *too_many_subs(const client *c, const char *id) {
  char msg[160];
  snprintf(msg, sizeof msg,
           "at most %d subscriptions per connection (--ws-max-subscriptions): "
           "unsubscribe from a job first, or wait for one to end",
           c->max_subs);
  return od_ws_error_data(OD_WSE_TOO_MANY_SUBSCRIPTIONS, msg, id);
}

/* Adds a subscription (at most --ws-max-subscriptions); 0, or -1 when full
 * (counted). */
static int subscribe(client *c, const char *id, od_route r) {
  if (subscribed(c, id) >= 0)
    return 0;
  if (c->nsubs == c->max_subs) {
    od_metric_error(&c->hub->svc->m, "bad_message", r);
    od_metric_validation(&c->hub->svc->m, "ws_message",
                         "too_many_subscriptions");
    return -1;
  }
  snprintf(c->subs[c->nsubs++], 37, "%s", id);
  return 0;
}

/* One text frame from a Socket.IO client (socketio.c parses it). */
static void sio_on_msg(client *c, const uint8_t *msg, size_t len) {
  od_metrics *m = &c->hub->svc->m;
  char id[37], err[160], *reply = NULL;
  size_t reply_len = 0;
  od_sio_kind k =
      od_sio_handle(c->sio, msg, len, id, &reply, &reply_len, err, sizeof err);
  switch (k) {
  case OD_SIO_PONG:
    /* Engine.IO's pong carries no payload, so it cannot say which ping it
     * answers: a client that never reads could send "3" on a timer and
     * stay. The WebSocket ping sent beside each "2" is what proves it
     * reads (heartbeat). */
    break;
  case OD_SIO_CONNECTED:
    queue_raw(c, reply);
    free(reply);
    reply = od_sio_event_text(
        "connected", json_pack("{s:s, s:s, s:s}", "status", "connected", "mode",
                               "orfeasd", "version", ORFEAS_VERSION));
    if (id[0] != '\0') {
      /* A reconnect: the job its last session followed (socketio.c). A
       * fresh connection has room for it (--ws-max-subscriptions is at
       * least 1); a CONNECT sent again on a full one is refused as an
       * explicit subscribe is, or the client would wait for the job. */
      queue_raw(c, reply);
      free(reply);
      reply = NULL;
      if (subscribe(c, id, OD_ROUTE_SOCKETIO) == 0)
        send_current(c, id);
      else
        reply = od_sio_event_text("error", too_many_subs(c, id));
    }
    break;
  case OD_SIO_SUBSCRIBE:
    if (subscribe(c, id, OD_ROUTE_SOCKETIO) != 0) {
      free(reply);
      reply = od_sio_event_text("error", too_many_subs(c, id));
      break;
    }
    queue_raw(c, reply);
    free(reply);
    reply = NULL;
    send_current(c, id); /* where the job stands, as a job_update */
    break;
  case OD_SIO_UNSUBSCRIBE:
    unsubscribe(c, id);
    break;
  case OD_SIO_CLOSE:
    /* The client leaves: 1000, and the socket closes once that frame is
     * out (RFC 6455 5.5.1: a close frame before the TCP close), the grace
     * period at most; until 2026-12-03 it closed on this turn, and a
     * client whose window was full got EOF without the close frame. */
    begin_close(c, OD_WS_CLOSE_CLIENT, WSLAY_CODE_NORMAL_CLOSURE, "",
                od_now() + CLOSE_GRACE_S);
    break;
  case OD_SIO_BAD:
    od_metric_error(m, "bad_message", OD_ROUTE_SOCKETIO);
    od_metric_validation(m, "ws_message", "invalid");
    /* As long as od_sio_handle says: a CONNECT_ERROR may hold a NUL. */
    queue_raw_n(c, reply, reply_len);
    free(reply);
    reply = NULL;
    break;
  case OD_SIO_NOTHING:
    break;
  }
  queue_raw(c, reply);
  free(reply);
}

/* A ping's payload: "<ping_key>.<number>". */
static int ping_payload(const client *c, unsigned long long n, char *buf,
                        size_t len) {
  return snprintf(buf, len, "%s.%llu", c->ping_key, n);
}

/* 1 when a pong echoes one of our pings since the one that set pong_by:
 * the client read it. An unsolicited pong (RFC 6455 allows them) or a
 * stale one proves nothing, or a client that never reads could stay
 * forever by sending empty pongs. Parsed, not compared with each ping
 * outstanding: a pong costs its length, however many are. */
static int answers_ping(const client *c, const uint8_t *msg, size_t len) {
  const size_t key = sizeof c->ping_key - 1;
  if (c->armed_ping == 0 || len <= key + 1 || len > key + 1 + 19 ||
      memcmp(msg, c->ping_key, key) != 0 || msg[key] != '.')
    return 0;
  unsigned long long n = 0;
  for (size_t i = key + 1; i < len; i++) {
    if (msg[i] < '0' || msg[i] > '9')
      return 0;
    n = n * 10 + (unsigned)(msg[i] - '0');
  }
  return n >= c->armed_ping && n <= c->pings;
}

static void on_msg(wslay_event_context_ptr ctx,
                   const struct wslay_event_on_msg_recv_arg *arg, void *user) {
  client *c = user;
  od_metrics *m = &c->hub->svc->m;
  if (arg->opcode == WSLAY_PONG) {
    if (answers_ping(c, arg->msg, arg->msg_length)) {
      c->pong_by = 0; /* alive: it reads, and answers */
      c->armed_ping = 0;
    }
    return;
  }
  /* The client closed first: wslay has queued the echo of its status code
   * (1002 included), which says nothing of what the client sent us. */
  if (arg->opcode == WSLAY_CONNECTION_CLOSE && !c->closing &&
      !wslay_event_get_close_sent(ctx))
    c->peer_closed = 1;
  if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->msg_length == 1)
    c->short_close = 1; /* client_recv answers it, out of wslay's call */
  /* A ping's pong is already queued (wslay), a text or binary message's
   * reply is about to be. */
  if ((arg->opcode == WSLAY_PING || arg->opcode == WSLAY_TEXT_FRAME ||
       arg->opcode == WSLAY_BINARY_FRAME) &&
      flooding(c))
    return;
  /* A binary frame: the same error event on both protocols (Socket.IO's
   * 42["error", ...]), as a bad message or packet is answered; the
   * connection stays. */
  if (arg->opcode == WSLAY_BINARY_FRAME) {
    od_metric_error(m, "bad_message", c->sio ? OD_ROUTE_SOCKETIO : OD_ROUTE_WS);
    od_metric_validation(m, "ws_message", "binary");
    json_t *e =
        od_ws_error_data(OD_WSE_BINARY_FRAME,
                         "binary frames are not used; send JSON text", NULL);
    if (c->sio == NULL) {
      send_event(c, OD_WS_ERROR, e);
    } else {
      char *text = od_sio_event_text("error", e);
      queue_raw(c, text);
      free(text);
    }
    return;
  }
  if (c->sio != NULL) {
    if (arg->opcode == WSLAY_TEXT_FRAME)
      sio_on_msg(c, arg->msg, arg->msg_length);
    return;
  }
  if (arg->opcode != WSLAY_TEXT_FRAME)
    return; /* ping/pong/close: wslay answers them itself */
  char id[37], err[160];
  od_ws_err code;
  od_wsmsg_kind k =
      od_wsmsg_parse(arg->msg, arg->msg_length, id, err, sizeof err, &code);
  switch (k) {
  case OD_WSMSG_PING:
    send_event(c, OD_WS_PONG, json_object());
    break;
  case OD_WSMSG_SUBSCRIBE:
    if (subscribe(c, id, OD_ROUTE_WS) != 0) {
      send_event(c, OD_WS_ERROR, too_many_subs(c, id));
      break;
    }
    send_event(c, OD_WS_SUBSCRIBED, json_pack("{s:s}", "job_id", id));
    send_current(c, id);
    break;
  case OD_WSMSG_UNSUBSCRIBE:
    unsubscribe(c, id);
    send_event(c, OD_WS_UNSUBSCRIBED, json_pack("{s:s}", "job_id", id));
    break;
  case OD_WSMSG_BAD:
    od_metric_error(m, "bad_message", OD_ROUTE_WS);
    od_metric_validation(m, "ws_message", "invalid");
    send_event(c, OD_WS_ERROR, od_ws_error_data(code, err, NULL));
    break;
  }
}

static const struct wslay_event_callbacks CALLBACKS = {
    recv_cb, send_cb, NULL, NULL, NULL, NULL, on_msg};

/* ---- hub thread ---------------------------------------------------------- */

/* One heartbeat for both protocols, from the hub loop: a ping every
 * interval (a WebSocket ping frame; Socket.IO clients get Engine.IO's "2"
 * too, which their library waits for, each protocol with its own flags),
 * and a client that has not answered one within the timeout (it neither
 * reads nor answers) is closed as idle. Only the echo of a numbered
 * WebSocket ping counts as an answer (on_msg): every WebSocket stack sends
 * it on its own (RFC 6455 5.5.2: browsers, socket.io-client's ws), and a
 * client cannot make it up without reading the ping. */
static void heartbeat(od_hub *h, double now) {
  const od_config *cfg = &h->svc->cfg;
  for (client *c = h->clients; c; c = c->next) {
    if (c->dead || c->closing)
      continue;
    if (c->pong_by > 0 && now > c->pong_by) {
      if (c->sio != NULL)
        od_metric_error(&h->svc->m, "ws_timeout", OD_ROUTE_SOCKETIO);
      begin_close(c, OD_WS_CLOSE_IDLE, WSLAY_CODE_GOING_AWAY,
                  c->sio ? "idle: no pong within --sio-ping-timeout"
                         : "idle: no pong within --ws-ping-timeout",
                  now + CLOSE_GRACE_S);
      continue;
    }
    if (now >= c->ping_at) {
      double every =
          c->sio ? cfg->sio_ping_interval_s : cfg->ws_ping_interval_s;
      double within = c->sio ? cfg->sio_ping_timeout_s : cfg->ws_ping_timeout_s;
      if (c->sio != NULL)
        queue_raw(c, "2");
      /* Numbered: only the echo of one of these counts (on_msg). */
      char payload[80];
      int n = ping_payload(c, ++c->pings, payload, sizeof payload);
      struct wslay_event_msg ping = {WSLAY_PING, (const uint8_t *)payload,
                                     n > 0 ? (size_t)n : 0};
      wslay_event_queue_msg(c->ctx, &ping);
      c->ping_at = now + every;
      if (c->pong_by == 0) {
        c->pong_by = now + within;
        c->armed_ping = c->pings;
      }
    }
  }
}

/* Hands the connection back to MHD to close and frees the client with
 * what it owns (its wslay context, if it got one). The caller counts. */
static void client_free(client *c) {
  if (c->ctx)
    wslay_event_context_free(c->ctx);
  MHD_upgrade_action(c->urh, MHD_UPGRADE_ACTION_CLOSE);
  free(c->extra);
  free(c->sio);
  free(c);
}

static void close_client(od_hub *h, client *c) {
  uint16_t code = wslay_event_get_status_code_sent(c->ctx);
  /* A close we sent for a broken frame (1002 protocol, 1007 bad UTF-8,
   * 1009 too big) is a client error worth counting; the same code echoed
   * back to a client that closed with it first is not (any client could
   * move an alert's counter that way). */
  if (!c->peer_closed && c->reason != OD_WS_CLOSE_PROTOCOL &&
      (code == WSLAY_CODE_PROTOCOL_ERROR ||
       code == WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA ||
       code == WSLAY_CODE_MESSAGE_TOO_BIG))
    count_protocol(c, code == WSLAY_CODE_MESSAGE_TOO_BIG ? "too_big"
                                                         : "malformed");
  /* A connection that broke (a reset, a timeout) rather than closed. */
  if (c->io_error && c->reason == OD_WS_CLOSE_CLIENT && !c->peer_closed &&
      !wslay_event_get_close_received(c->ctx))
    c->reason = OD_WS_CLOSE_ERROR;
  om_counter_inc(h->svc->m.ws_closed[c->reason]);
  if (c->reason == OD_WS_CLOSE_FLOOD || c->reason == OD_WS_CLOSE_IDLE)
    od_logl(OD_LOG_WARN, "ws: client closed: %s",
            OD_WS_CLOSE_REASONS[c->reason]);
  atomic_fetch_sub(&h->svc->ws_open, 1);
  /* Unread bytes at close make the kernel answer with a reset, which can
   * cost the client the close frame it has not read yet: read off what
   * is there (bounded) first. */
  uint8_t sink[16384];
  for (int i = 0; i < 64 && recv(c->fd, sink, sizeof sink, MSG_DONTWAIT) > 0;
       i++)
    ;
  epoll_ctl(h->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  client_free(c);
  h->nclients--;
  om_gauge_dec(h->svc->m.ws_active);
}

/* The upgrades waiting for the hub thread, taken off the list; with
 * exiting, no more are left there after (od_hub.exited). */
static client *take_pending(od_hub *h, int exiting) {
  pthread_mutex_lock(&h->mu);
  client *list = h->pending;
  h->pending = NULL;
  if (exiting)
    h->exited = 1;
  pthread_mutex_unlock(&h->mu);
  return list;
}

static void adopt_pending(od_hub *h) {
  client *list = take_pending(h, 0);
  while (list) {
    client *c = list;
    list = c->next;
    int fl = fcntl(c->fd, F_GETFL);
    /* A bounded kernel buffer too: with the frame cap it bounds what one
     * client that stopped reading can hold (about 2 x this + the cap). */
    int sndbuf = h->svc->cfg.ws_sndbuf_kb * 1024;
    setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    struct epoll_event ee = {.events = EPOLLIN, .data.ptr = c};
    if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
        wslay_event_context_server_init(&c->ctx, &CALLBACKS, c) != 0 ||
        epoll_ctl(h->epfd, EPOLL_CTL_ADD, c->fd, &ee) != 0) {
      od_log("ws: cannot adopt a connection: %s", strerror(errno));
      client_free(c);
      h->nclients--;
      atomic_fetch_sub(&h->svc->ws_open, 1);
      continue;
    }
    /* Client messages are small JSON; anything larger is an attack. */
    wslay_event_config_set_max_recv_msg_length(c->ctx, 4096);
    c->armed = EPOLLIN;
    c->serial = ++h->serials; /* never 0, never reused */
    /* The first ping is due an interval later. */
    c->ping_at = od_now() + (c->sio ? h->svc->cfg.sio_ping_interval_s
                                    : h->svc->cfg.ws_ping_interval_s);
    c->next = h->clients;
    h->clients = c;
    om_gauge_inc(h->svc->m.ws_active);
    if (c->sio != NULL) {
      /* Engine.IO's open packet (it tells the heartbeat's figures). */
      char *open = od_sio_open(c->sio->sid, h->svc->cfg.sio_ping_interval_s,
                               h->svc->cfg.sio_ping_timeout_s);
      queue_raw(c, open);
      free(open);
    } else {
      send_event(c, OD_WS_CONNECTION_ESTABLISHED,
                 json_pack("{s:s, s:s}", "message", "connected to orfeasd",
                           "version", ORFEAS_VERSION));
    }
    /* Bytes that came with the upgrade request are read now. */
    if (c->extra_len > 0)
      client_recv(c);
  }
}

static void dispatch_outbox(od_hub *h) {
  pthread_mutex_lock(&h->mu);
  outmsg *list = h->out_head;
  h->out_head = h->out_tail = NULL;
  h->out_n = 0;
  pthread_mutex_unlock(&h->mu);
  while (list) {
    outmsg *o = list;
    list = o->next;
    for (client *c = h->clients; c; c = c->next)
      if (subscribed(c, o->job_id) >= 0) {
        queue_text(c, o->ev, o->text, o->len);
        if (is_end(o->ev))
          unsubscribe(c, o->job_id);
      }
    free(o);
  }
}

/* Sends what can be sent, re-arms epoll, closes finished clients. */
static void service_clients(od_hub *h, double now) {
  client **pp = &h->clients;
  while (*pp) {
    client *c = *pp;
    if (!c->dead && wslay_event_want_write(c->ctx) &&
        wslay_event_send(c->ctx) != 0)
      c->dead = 1;
    if (c->closing && now > c->close_by)
      c->dead = 1;
    int wr = wslay_event_want_write(c->ctx), rd = wslay_event_want_read(c->ctx);
    if (c->dead || (!wr && !rd)) {
      *pp = c->next;
      close_client(h, c);
      continue;
    }
    uint32_t want = (rd ? EPOLLIN : 0) | (wr ? EPOLLOUT : 0);
    if (want != c->armed) {
      struct epoll_event ee = {.events = want, .data.ptr = c};
      epoll_ctl(h->epfd, EPOLL_CTL_MOD, c->fd, &ee);
      c->armed = want;
    }
    pp = &c->next;
  }
}

static void *hub_main(void *arg) {
  od_hub *h = arg;
  pthread_setname_np(pthread_self(), "od-hub");
  struct epoll_event evs[64];
  double stop_deadline = 0, stop_start = 0;
  for (;;) {
    int n = epoll_wait(h->epfd, evs, 64, stop_deadline > 0 ? 10 : 200);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == NULL) {
        uint64_t v;
        ssize_t r = read(h->evfd, &v, sizeof v);
        (void)r;
        continue;
      }
      client *c = evs[i].data.ptr;
      if (c->dead)
        continue;
      c->turn_bytes = 0;
      if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        client_recv(c);
      if (!c->dead && (evs[i].events & EPOLLOUT) &&
          wslay_event_send(c->ctx) != 0)
        c->dead = 1;
    }
    adopt_pending(h);
    dispatch_outbox(h);
    if (atomic_exchange(&h->resync, 0))
      for (client *c = h->clients; c; c = c->next)
        for (int k = 0; k < c->nsubs; k++)
          ask_current(c, c->subs[k]);
    heartbeat(h, od_now());
    pthread_mutex_lock(&h->mu);
    int stop = h->stop;
    if (stop && stop_deadline == 0) {
      stop_start = od_now();
      stop_deadline = h->stop_by;
    }
    pthread_mutex_unlock(&h->mu);
    if (stop) {
      /* Say goodbye (1001) only once a client's queue is empty: wslay sends
       * control frames ahead of queued messages and nothing after a close,
       * so an early close would swallow the last job events. Halfway to
       * the deadline, say it anyway; at the deadline, close. */
      double now = od_now();
      int late = now > (stop_start + stop_deadline) / 2;
      double by = now + CLOSE_GRACE_S < stop_deadline ? now + CLOSE_GRACE_S
                                                      : stop_deadline;
      for (client *c = h->clients; c; c = c->next)
        if (!c->closing &&
            (late || wslay_event_get_queued_msg_count(c->ctx) == 0))
          begin_close(c, OD_WS_CLOSE_SHUTDOWN, WSLAY_CODE_GOING_AWAY,
                      "server shutting down", by);
    }
    service_clients(h, od_now());
    if (stop && (h->clients == NULL || od_now() > stop_deadline))
      break;
  }
  while (h->clients) {
    client *c = h->clients;
    h->clients = c->next;
    close_client(h, c);
  }
  /* Upgrades made since the last adopt_pending: closed now, while the HTTP
   * daemon (stopped after the hub) still holds their handles. */
  client *late = take_pending(h, 1);
  while (late) {
    client *c = late;
    late = c->next;
    client_free(c);
    atomic_fetch_sub(&h->svc->ws_open, 1);
  }
  return NULL;
}

/* ---- public -------------------------------------------------------------- */

od_hub *od_hub_new(od_service *svc, char *err, size_t err_len) {
  od_hub *h = calloc(1, sizeof *h);
  if (h == NULL) {
    snprintf(err, err_len, "ws: out of memory");
    return NULL;
  }
  h->svc = svc;
  h->exited = 1; /* until od_hub_start */
  pthread_mutex_init(&h->mu, NULL);
  h->epfd = epoll_create1(EPOLL_CLOEXEC);
  h->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct epoll_event ee = {.events = EPOLLIN, .data.ptr = NULL};
  if (h->epfd < 0 || h->evfd < 0 ||
      epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->evfd, &ee) != 0) {
    snprintf(err, err_len, "ws: epoll/eventfd: %s", strerror(errno));
    od_hub_free(h);
    return NULL;
  }
  return h;
}

int od_hub_start(od_hub *h, char *err, size_t err_len) {
  pthread_mutex_lock(&h->mu);
  h->exited = 0;
  pthread_mutex_unlock(&h->mu);
  int rc = pthread_create(&h->thread, NULL, hub_main, h);
  if (rc != 0) {
    pthread_mutex_lock(&h->mu);
    h->exited = 1;
    pthread_mutex_unlock(&h->mu);
    snprintf(err, err_len, "ws: cannot start the hub thread: %s", strerror(rc));
    return -1;
  }
  h->started = 1;
  return 0;
}

void od_hub_stop(od_hub *h, double deadline) {
  if (h == NULL || !h->started)
    return;
  pthread_mutex_lock(&h->mu);
  h->stop = 1;
  h->stop_by = deadline;
  pthread_mutex_unlock(&h->mu);
  wake(h);
  pthread_join(h->thread, NULL);
  h->started = 0;
}

void od_hub_free(od_hub *h) {
  if (h == NULL)
    return;
  od_hub_stop(h, od_now() + 1.0);
  while (h->out_head) {
    outmsg *o = h->out_head;
    h->out_head = o->next;
    free(o);
  }
  while (h->pending) {
    client *c = h->pending;
    h->pending = c->next;
    client_free(c);
    atomic_fetch_sub(&h->svc->ws_open, 1);
  }
  if (h->epfd >= 0)
    close(h->epfd);
  if (h->evfd >= 0)
    close(h->evfd);
  pthread_mutex_destroy(&h->mu);
  free(h);
}

void od_hub_publish(od_hub *h, const char *job_id, od_ws_event ev,
                    const char *json) {
  if (h == NULL)
    return;
  size_t len = strlen(json);
  outmsg *o = malloc(sizeof *o + len + 1);
  if (o == NULL)
    return;
  snprintf(o->job_id, sizeof o->job_id, "%s", job_id);
  o->ev = ev;
  o->len = len;
  o->next = NULL;
  memcpy(o->text, json, len + 1);
  pthread_mutex_lock(&h->mu);
  int full = h->out_n >= OUTBOX_MAX || !h->started;
  if (!full) {
    if (h->out_tail)
      h->out_tail->next = o;
    else
      h->out_head = o;
    h->out_tail = o;
    h->out_n++;
  }
  pthread_mutex_unlock(&h->mu);
  if (full) {
    om_counter_inc(h->svc->m.ws_dropped);
    free(o);
    return;
  }
  wake(h);
}

int od_hub_clients(od_hub *h) { return h ? h->nclients : 0; }

void od_hub_resync(od_hub *h) {
  if (h == NULL)
    return;
  h->resync = 1;
  wake(h);
}

int od_hub_reserve(od_hub *h) {
  /* Counted at the upgrade request, so the limit holds before adoption. */
  int n = ++h->nclients;
  if (n > h->svc->cfg.max_ws_clients) {
    h->nclients--;
    return -1;
  }
  return 0;
}

void od_hub_release(od_hub *h) { h->nclients--; }

static void adopt(od_hub *h, int fd, struct MHD_UpgradeResponseHandle *urh,
                  const char *extra, size_t extra_len, int socketio) {
  /* From here the socket is a WebSocket client, not an HTTP connection
   * (http.c's --max-connections check subtracts these). */
  atomic_fetch_add(&h->svc->ws_open, 1);
  /* The subscriptions are part of the client's one allocation (37 bytes
   * each: --ws-max-subscriptions x --max-ws-clients bounds them all). */
  int max_subs = h->svc->cfg.ws_max_subs;
  client *c = calloc(1, sizeof *c + (size_t)max_subs * sizeof c->subs[0]);
  uint8_t *copy = extra_len ? malloc(extra_len) : NULL;
  od_sio_conn *sio = socketio ? calloc(1, sizeof *sio) : NULL;
  if (c == NULL || (extra_len && copy == NULL) || (socketio && sio == NULL) ||
      (sio && od_uuid_new(sio->sid) != 0) || od_uuid_new(c->ping_key) != 0) {
    free(c);
    free(copy);
    free(sio);
    h->nclients--;
    atomic_fetch_sub(&h->svc->ws_open, 1);
    MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
    return;
  }
  c->sio = sio;
  c->max_subs = max_subs;
  if (extra_len)
    memcpy(copy, extra, extra_len);
  c->hub = h;
  c->fd = fd;
  c->urh = urh;
  c->extra = copy;
  c->extra_len = extra_len;
  pthread_mutex_lock(&h->mu);
  int gone = h->exited;
  if (!gone) {
    c->next = h->pending;
    h->pending = c;
  }
  pthread_mutex_unlock(&h->mu);
  if (gone) { /* no hub thread to take it (see od_hub.exited) */
    client_free(c);
    h->nclients--;
    atomic_fetch_sub(&h->svc->ws_open, 1);
    return;
  }
  wake(h);
}

void od_ws_adopt(od_hub *h, int fd, struct MHD_UpgradeResponseHandle *urh,
                 const char *extra, size_t extra_len) {
  adopt(h, fd, urh, extra, extra_len, 0);
}

void od_ws_adopt_socketio(od_hub *h, int fd,
                          struct MHD_UpgradeResponseHandle *urh,
                          const char *extra, size_t extra_len) {
  adopt(h, fd, urh, extra, extra_len, 1);
}
