/* http.c: libmicrohttpd glue.
 *
 * MHD calls the access handler several times per request: first with the
 * headers, then once per body chunk, then once with no data. A response is
 * queued only from the second call on: MHD 0.9.75 answers "Connection:
 * close" to a response queued on the first call, which would cost every
 * keep-alive client a new connection. The one exception is a body whose
 * Content-Length is over --max-upload-mb: that gets its 413 at once, before
 * MHD sends "100 Continue" or reads a byte of it (the connection closes).
 * A body without a length (chunked) that crosses the limit is discarded
 * from there on (never buffered) and gets its 413 at its end.
 *
 * Per-request metrics and the access log line are written in the
 * completion callback, which MHD calls once per request whatever happened,
 * so every answered request is counted exactly once with its final status.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <zlib.h>

#include "orfeasd.h"

/* ---- responses ------------------------------------------------------------ */

int od_respond(struct MHD_Connection *conn, od_req *req, int status,
               struct MHD_Response *resp, uint64_t bytes) {
  if (resp == NULL)
    return MHD_NO;
  req->status = status;
  req->resp_bytes = bytes;
  /* CORS (cors.c): decided when the request arrived, added to every answer
   * of an /api/ route, errors included, so a page can read them. */
  if (req->cors)
    MHD_add_response_header(resp, "Vary", "Origin");
  if (req->acao[0]) {
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", req->acao);
    MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                            OD_CORS_EXPOSE_HEADERS);
  }
  enum MHD_Result r = MHD_queue_response(conn, (unsigned)status, resp);
  MHD_destroy_response(resp);
  return r;
}

/* A JSON response (steals obj): Content-Type and no caching; NULL when out
 * of memory. */
static struct MHD_Response *json_response(json_t *obj, size_t *len) {
  char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
  json_decref(obj);
  if (text == NULL)
    return NULL;
  *len = strlen(text);
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(*len, text, MHD_RESPMEM_MUST_FREE);
  if (resp == NULL) {
    free(text);
    return NULL;
  }
  MHD_add_response_header(resp, "Content-Type", "application/json");
  MHD_add_response_header(resp, "Cache-Control", "no-store");
  return resp;
}

int od_respond_json(struct MHD_Connection *conn, od_req *req, int status,
                    json_t *obj) {
  size_t len = 0;
  /* Two statements: an argument list does not order json_response's write
   * of len before the read of len (GCC read it first: every JSON answer
   * was counted 0 bytes in orfeas_http_response_size_bytes). */
  struct MHD_Response *resp = json_response(obj, &len);
  return od_respond(conn, req, status, resp, len);
}

int od_respond_error_ex(od_service *svc, struct MHD_Connection *conn,
                        od_req *req, const od_error *e) {
  od_metric_error(&svc->m, e->type, req->route);
  json_t *o = json_pack("{s:s, s:i}", "error", e->message, "status", e->status);
  if (o != NULL && e->details != NULL)
    json_object_set(o, "details", e->details);
  json_decref(e->details);
  if (o != NULL && e->retry_after > 0)
    json_object_set_new(o, "retry_after", json_integer(e->retry_after));
  size_t len = 0;
  struct MHD_Response *resp = json_response(o, &len);
  if (resp != NULL && e->retry_after > 0) {
    char ra[16];
    snprintf(ra, sizeof ra, "%d", e->retry_after);
    MHD_add_response_header(resp, "Retry-After", ra);
  }
  if (resp != NULL && e->allow != NULL)
    MHD_add_response_header(resp, "Allow", e->allow);
  return od_respond(conn, req, e->status, resp, len);
}

int od_respond_error(od_service *svc, struct MHD_Connection *conn,
                     od_req *req, int status, const char *type,
                     const char *message, json_t *details) {
  return od_respond_error_ex(svc, conn, req,
                             &(od_error){.status = status,
                                         .type = type,
                                         .message = message,
                                         .details = details});
}

/* ---- gzip ----------------------------------------------------------------- */

int od_accepts_gzip(const char *ae) {
  if (ae == NULL)
    return 0;
  /* Tokens separated by commas, each "coding[;q=x]"; gzip (or *) with a
   * q above 0. */
  const char *p = ae;
  while (*p) {
    while (*p == ' ' || *p == '\t' || *p == ',')
      p++;
    const char *tok = p;
    while (*p && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
      p++;
    size_t tl = (size_t)(p - tok);
    double q = 1;
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p == ';') {
      const char *qp = strstr(p, "q=");
      const char *next = strchr(p, ',');
      if (qp && (next == NULL || qp < next))
        q = strtod(qp + 2, NULL);
    }
    while (*p && *p != ',')
      p++;
    if (((tl == 4 && strncasecmp(tok, "gzip", 4) == 0) ||
         (tl == 1 && tok[0] == '*')) && q > 0)
      return 1;
  }
  return 0;
}

int od_gzip(const void *in, size_t in_len, uint8_t **out, size_t *out_len) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  /* 15 + 16: a gzip header and trailer, not raw zlib. Level 1: the text
   * compresses about as well and the scrape stays cheap. */
  if (deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return -1;
  size_t cap = deflateBound(&zs, (uLong)in_len) + 32;
  uint8_t *buf = malloc(cap);
  if (buf == NULL) {
    deflateEnd(&zs);
    return -1;
  }
  zs.next_in = (Bytef *)(uintptr_t)in;
  zs.avail_in = (uInt)in_len;
  zs.next_out = buf;
  zs.avail_out = (uInt)cap;
  int rc = deflate(&zs, Z_FINISH);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) {
    free(buf);
    return -1;
  }
  *out = buf;
  *out_len = cap - zs.avail_out;
  return 0;
}

/* ---- requests ------------------------------------------------------------ */

/* Printable copy of a URL for the log (no control bytes, bounded). */
static void log_safe(const char *in, char *out, size_t len) {
  size_t o = 0;
  for (; in && *in && o + 1 < len; in++)
    out[o++] = (*in >= 0x21 && *in < 0x7f) ? *in : '?';
  out[o] = '\0';
}

/* ---- MHD callbacks -------------------------------------------------------- */

/* 413, for a declared length over the limit and for a body that crossed
 * it. */
static int too_large(od_service *svc, struct MHD_Connection *conn,
                     od_req *req) {
  char msg[96];
  snprintf(msg, sizeof msg, "File too large (max %dMB)",
           svc->cfg.max_upload_mb);
  od_metric_validation(&svc->m, "body", "too_large");
  return od_respond_error(svc, conn, req, 413, "payload_too_large", msg,
                          NULL);
}

/* The first call, with the headers: the request's context, its route, and
 * the two answers given at once (over --max-connections, a declared body
 * over --max-upload-mb). */
static enum MHD_Result req_begin(od_service *svc, struct MHD_Connection *conn,
                                 const char *url, const char *method,
                                 void **con_cls) {
  od_req *req = calloc(1, sizeof *req);
  if (req == NULL)
    return MHD_NO;
  *con_cls = req;
  if (svc->cfg.http_metrics || svc->cfg.access_log)
    req->t0 = od_ticks();
  req->method_idx = (int)od_method_index(method);
  req->method = od_method_name((od_method)req->method_idx);
  od_route_match(url, req);
  /* CORS (cors.c): decided here, applied to every answer (od_respond). */
  if (od_route_flags(req->route) & OD_RF_CORS) {
    const char *acao = od_cors_allow(
        &svc->cors, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin"));
    req->cors = 1;
    if (acao != NULL && strlen(acao) < sizeof req->acao)
      snprintf(req->acao, sizeof req->acao, "%s", acao);
  }
  req->body_limit = (size_t)svc->cfg.max_upload_mb * 1024 * 1024;
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
    inet_ntop(AF_INET,
              &((const struct sockaddr_in *)(const void *)ci->client_addr)
                   ->sin_addr,
              req->client, sizeof req->client);
  else
    snprintf(req->client, sizeof req->client, "unknown");
  /* Over --max-connections: answer 429 (and close, since the answer is
   * queued on the first call) instead of letting the kernel or MHD drop the
   * connection unseen; MHD's own hard limit is set a little higher so this
   * path sees them. Monitoring routes (OD_RF_PAST_CONN_LIMIT) stay
   * reachable for whoever must tell an operator about it. */
  /* Upgraded sockets (WebSocket clients) are budgeted apart, under
   * --max-ws-clients (ws.c). */
  if (atomic_load(&svc->open_conns) - atomic_load(&svc->ws_open) >
          svc->cfg.max_connections &&
      !(od_route_flags(req->route) & OD_RF_PAST_CONN_LIMIT)) {
    req->calls++;
    return (enum MHD_Result)od_respond_error(
        svc, conn, req, 429, "too_many_connections",
        "Too many open connections; retry later", NULL);
  }
  const char *cl =
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
  if (cl != NULL) {
    char *end;
    errno = 0;
    unsigned long long n = strtoull(cl, &end, 10);
    if (errno == 0 && end != cl && n > req->body_limit) {
      req->calls++;
      return (enum MHD_Result)too_large(svc, conn, req);
    }
  }
  return MHD_YES;
}

/* A body chunk: kept up to the limit. A body without a declared length that
 * crosses the limit: MHD 0.9.75 refuses a response queued mid-body, so the
 * rest is discarded unread into memory and answered 413 at its end (see
 * access_cb); past 4x the limit the connection is simply closed. */
static enum MHD_Result req_body(od_service *svc, struct MHD_Connection *conn,
                                od_req *req, const char *data,
                                size_t *size) {
  if (req->overflow > 0 || req->body_len + *size > req->body_limit) {
    req->overflow += *size;
    *size = 0;
    return req->overflow > 4 * (uint64_t)req->body_limit ? MHD_NO : MHD_YES;
  }
  if (req->body_len + *size > req->body_cap) {
    size_t nc = req->body_cap ? req->body_cap : 16384;
    while (nc < req->body_len + *size)
      nc *= 2;
    if (nc > req->body_limit)
      nc = req->body_limit;
    uint8_t *nb = realloc(req->body, nc);
    if (nb == NULL) {
      *size = 0;
      return (enum MHD_Result)od_respond_error(
          svc, conn, req, 503, "internal",
          "out of memory for the request body", NULL);
    }
    req->body = nb;
    req->body_cap = nc;
  }
  memcpy(req->body + req->body_len, data, *size);
  req->body_len += *size;
  *size = 0;
  return MHD_YES;
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn,
                                 const char *url, const char *method,
                                 const char *version, const char *upload_data,
                                 size_t *upload_size, void **con_cls) {
  (void)version;
  od_service *svc = cls;
  od_req *req = *con_cls;
  if (req == NULL)
    return req_begin(svc, conn, url, method, con_cls);
  req->calls++;
  if (*upload_size > 0)
    return req_body(svc, conn, req, upload_data, upload_size);
  /* The whole request is in: answer it. */
  if (req->overflow > 0)
    return (enum MHD_Result)too_large(svc, conn, req);
  od_route_dispatch(svc, conn, req);
  if (req->status == 0)
    return MHD_NO; /* could not queue anything: MHD closes the connection */
  return MHD_YES;
}

void od_req_record(od_service *svc, od_req *req, int aborted) {
  if (req->recorded)
    return;
  req->recorded = 1;
  if (!svc->cfg.http_metrics && !svc->cfg.access_log)
    return; /* the overhead benchmark's baseline: no clock read either */
  double dt = od_ticks_seconds(req->t0, od_ticks());
  int status = req->status ? req->status : 499; /* client went away first */
  if (svc->cfg.http_metrics) {
    od_reqev e = {.method = req->method, .route = (int)req->route,
                  .method_idx = req->method_idx, .status = status, .seconds = dt,
                  .req_bytes = req->body_len, .resp_bytes = req->resp_bytes};
    od_reqstats_add(&svc->m, &e);
  }
  /* Scrapes and health checks (the admin routes) are debug lines: at
   * info they would be most of the log and say nothing. */
  od_log_level lvl = (od_route_flags(req->route) & OD_RF_ADMIN) && status < 500
                         ? OD_LOG_DEBUG
                         : OD_LOG_INFO;
  if (svc->cfg.access_log && od_log_enabled(lvl)) {
    char path[160];
    log_safe(od_route_template(req->route), path, sizeof path);
    od_logl(lvl, "req %s %s %d %.2fms in=%zu out=%llu client=%s%s", req->method,
            path, status, dt * 1e3, req->body_len,
            (unsigned long long)req->resp_bytes, req->client,
            aborted ? " (aborted)" : "");
  }
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)conn;
  od_service *svc = cls;
  od_req *req = *con_cls;
  if (req == NULL)
    return;
  *con_cls = NULL;
  /* A 101 was queued but the upgrade never happened (the client left):
   * give the WebSocket slot back, or it would leak. */
  if (req->ws_reserved)
    od_hub_release(svc->hub);
  od_req_record(svc, req, toe != MHD_REQUEST_TERMINATED_COMPLETED_OK);
  free(req->body);
  free(req);
}

/* Counts open connections, for the --max-connections answer in access_cb. */
static void notify_conn_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                           enum MHD_ConnectionNotificationCode toe) {
  (void)conn;
  (void)socket_context;
  od_service *svc = cls;
  if (toe == MHD_CONNECTION_NOTIFY_STARTED)
    atomic_fetch_add(&svc->open_conns, 1);
  else if (toe == MHD_CONNECTION_NOTIFY_CLOSED)
    atomic_fetch_sub(&svc->open_conns, 1);
}

/* MHD's accept policy: while draining, a new connection is closed at once.
 * The listener itself stays open until MHD_stop_daemon closes it: taking
 * it away earlier (MHD_quiesce_daemon) races inside MHD 0.9.75 with a pool
 * thread at its connection limit removing it from its epoll set (a panic,
 * "Failed to remove listen FD from epoll set", seen at SIGTERM). */
static enum MHD_Result accept_cb(void *cls, const struct sockaddr *addr,
                                 socklen_t addrlen) {
  (void)addr;
  (void)addrlen;
  od_service *svc = cls;
  return atomic_load(&svc->draining) ? MHD_NO : MHD_YES;
}

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
    msg[--n] = '\0';
  od_logl(OD_LOG_WARN, "http: %s", msg);
}

int od_listen_socket(const char *host, uint16_t port, int reuse_port,
                     uint16_t *bound_port, char *err, size_t err_len) {
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    snprintf(err, err_len, "%s is not a numeric IPv4 address", host);
    return -1;
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(err, err_len, "cannot create a socket: %s", strerror(errno));
    return -1;
  }
  /* SO_REUSEADDR: a restart binds while the last run's connections linger
   * in TIME_WAIT; it never lets two listeners share the port. Sharing
   * (SO_REUSEPORT: the kernel splits connections between the processes)
   * only when asked. */
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port &&
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    snprintf(err, err_len, "--reuse-port: %s", strerror(errno));
    close(fd);
    return -1;
  }
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    int e = errno;
    snprintf(err, err_len, "cannot listen on %s:%u: %s%s", host, port,
             strerror(e),
             e == EADDRINUSE      ? " (another process listens there; "
                                    "--reuse-port shares a port on purpose)"
             : e == EADDRNOTAVAIL ? " (not an address of this host)"
             : e == EACCES ? " (a port below 1024 needs CAP_NET_BIND_SERVICE)"
                           : "");
    close(fd);
    return -1;
  }
  socklen_t sl = sizeof sa;
  if (listen(fd, SOMAXCONN) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
    snprintf(err, err_len, "cannot listen on %s:%u: %s", host, port,
             strerror(errno));
    close(fd);
    return -1;
  }
  *bound_port = ntohs(sa.sin_port);
  return fd;
}

int od_http_start(od_service *svc, char *err, size_t err_len) {
  /* Before the daemon's threads exist: they read the clock it picks. */
  if (od_clock_init() == OD_CLOCK_TSC)
    od_log("request timing: TSC at %.3f GHz", od_clock_tsc_hz() / 1e9);
  else
    od_log("request timing: CLOCK_MONOTONIC");
  uint16_t port = 0;
  int lfd = od_listen_socket(svc->cfg.listen_host, svc->cfg.listen_port,
                             svc->cfg.reuse_port, &port, err, err_len);
  if (lfd < 0)
    return -1;
  /* MHD owns lfd from a successful start on (it closes it at stop). */
  svc->daemon = MHD_start_daemon(
      MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_UPGRADE | MHD_USE_ITC |
          MHD_USE_ERROR_LOG,
      0, accept_cb, svc, access_cb, svc,
      MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
      MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lfd,
      MHD_OPTION_THREAD_POOL_SIZE, (unsigned)svc->cfg.http_threads,
      /* The hard limit, past ours (see access_cb): room to answer 429, and
       * the WebSocket clients, which MHD still counts as connections. */
      MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)svc->cfg.max_connections + (unsigned)svc->cfg.max_ws_clients +
          64u,
      MHD_OPTION_NOTIFY_CONNECTION, notify_conn_cb, svc,
      MHD_OPTION_CONNECTION_TIMEOUT, 60u,
      MHD_OPTION_NOTIFY_COMPLETED, completed_cb, svc,
      MHD_OPTION_END);
  if (svc->daemon == NULL) {
    close(lfd);
    snprintf(err, err_len,
             "the HTTP server did not start on %s:%u (the log line before "
             "says why)",
             svc->cfg.listen_host, port);
    return -1;
  }
  svc->cfg.listen_port = port;
  return 0;
}


void od_http_stop(od_service *svc) {
  if (svc->daemon)
    MHD_stop_daemon(svc->daemon);
  svc->daemon = NULL;
}
