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
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <zlib.h>

#include "orfeasd.h"

double od_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double od_wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void od_log(const char *fmt, ...) {
  char line[1024];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ orfeasd: ",
                        ts.tv_nsec / 1000000);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - n, fmt, ap);
  va_end(ap);
  /* One write per line, so lines from different threads never interleave. */
  fprintf(stderr, "%s\n", line);
}

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

int od_respond_json(struct MHD_Connection *conn, od_req *req, int status,
                    json_t *obj) {
  return od_respond_json_hdr(conn, req, status, obj, NULL, NULL);
}

int od_respond_json_hdr(struct MHD_Connection *conn, od_req *req, int status,
                        json_t *obj, const char *header, const char *value) {
  char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
  json_decref(obj);
  if (text == NULL)
    return MHD_NO;
  size_t len = strlen(text);
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
  if (resp == NULL) {
    free(text);
    return MHD_NO;
  }
  MHD_add_response_header(resp, "Content-Type", "application/json");
  MHD_add_response_header(resp, "Cache-Control", "no-store");
  if (header != NULL)
    MHD_add_response_header(resp, header, value);
  return od_respond(conn, req, status, resp, len);
}

int od_respond_error(od_service *svc, struct MHD_Connection *conn,
                     od_req *req, int status, const char *type,
                     const char *message, json_t *details) {
  od_metric_error(&svc->m, type, req->route);
  json_t *o = json_pack("{s:s, s:i}", "error", message, "status", status);
  if (details)
    json_object_set_new(o, "details", details);
  return od_respond_json(conn, req, status, o);
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

/* ---- routing -------------------------------------------------------------- */

/* "{job_id}/{filename}" into arg1 and arg2 (bounded; checked later). */
static void split_id_file(const char *rest, od_req *req) {
  const char *slash = strchr(rest, '/');
  size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
  snprintf(req->arg1, sizeof req->arg1, "%.*s", (int)(n < 63 ? n : 63), rest);
  if (n >= sizeof req->arg1)
    req->arg1[0] = '!'; /* too long: can never be a UUID */
  snprintf(req->arg2, sizeof req->arg2, "%s", slash ? slash + 1 : "");
}

static od_route match_route(const char *url, od_req *req) {
  static const struct {
    od_route r;
    const char *path;
  } exact[] = {
    {OD_ROUTE_UPLOAD, "/api/upload-image"}, {OD_ROUTE_GENERATE, "/api/generate-3d"},
    {OD_ROUTE_HEALTH, "/health"}, {OD_ROUTE_READY, "/ready"},
    {OD_ROUTE_API_HEALTH, "/api/health"}, {OD_ROUTE_METRICS, "/metrics"},
    {OD_ROUTE_WS, "/ws"}, {OD_ROUTE_MODELS_INFO, "/api/models-info"},
  };
  for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
    if (strcmp(url, exact[i].path) == 0)
      return exact[i].r;
  /* The two templated routes: the pieces are copied (bounded) and checked
   * later; an over-long or extra piece simply fails validation. */
  /* Socket.IO's default path, with or without its trailing slash. */
  if (strcmp(url, "/socket.io/") == 0 || strcmp(url, "/socket.io") == 0)
    return OD_ROUTE_SOCKETIO;
  /* The Studio page (static.c): "/" and "/studio" are index.html. */
  if (strcmp(url, "/") == 0 || strcmp(url, "/studio") == 0) {
    snprintf(req->arg2, sizeof req->arg2, "index.html");
    return OD_ROUTE_PAGE;
  }
  if (strncmp(url, "/static/", 8) == 0) {
    if (strlen(url + 8) >= sizeof req->arg2)
      req->arg2[0] = '\0'; /* too long: never a valid path */
    else
      snprintf(req->arg2, sizeof req->arg2, "%s", url + 8);
    return OD_ROUTE_STATIC;
  }
  if (strncmp(url, "/api/job-status/", 16) == 0) {
    snprintf(req->arg1, sizeof req->arg1, "%s", url + 16);
    return OD_ROUTE_STATUS;
  }
  if (strncmp(url, "/api/preview/", 13) == 0) {
    snprintf(req->arg1, sizeof req->arg1, "%s", url + 13);
    return OD_ROUTE_PREVIEW;
  }
  if (strncmp(url, "/api/download-base64/", 21) == 0) {
    split_id_file(url + 21, req);
    return OD_ROUTE_DOWNLOAD_B64;
  }
  if (strncmp(url, "/api/download/", 14) == 0) {
    split_id_file(url + 14, req);
    return OD_ROUTE_DOWNLOAD;
  }
  return OD_ROUTE_OTHER;
}

static const char *const METHODS[OD_METHODS] = {"GET", "POST", "HEAD", "PUT",
                                                "DELETE", "OPTIONS", "PATCH", "OTHER"};

/* Index into METHODS; "OTHER" for anything else, so a client string never
 * becomes a label value. */
static int method_index(const char *m) {
  for (int i = 0; i < OD_METHODS - 1; i++)
    if (strcmp(m, METHODS[i]) == 0)
      return i;
  return OD_METHODS - 1;
}

/* Printable copy of a URL for the log (no control bytes, bounded). */
static void log_safe(const char *in, char *out, size_t len) {
  size_t o = 0;
  for (; in && *in && o + 1 < len; in++)
    out[o++] = (*in >= 0x21 && *in < 0x7f) ? *in : '?';
  out[o] = '\0';
}

/* ---- MHD callbacks -------------------------------------------------------- */

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn,
                                 const char *url, const char *method,
                                 const char *version, const char *upload_data,
                                 size_t *upload_size, void **con_cls) {
  (void)version;
  od_service *svc = cls;
  od_req *req = *con_cls;
  if (req == NULL) {
    req = calloc(1, sizeof *req);
    if (req == NULL)
      return MHD_NO;
    *con_cls = req;
    if (svc->cfg.http_metrics || svc->cfg.access_log)
      req->t0 = od_ticks();
    req->method_idx = method_index(method);
    req->method = METHODS[req->method_idx];
    req->route = match_route(url, req);
    if (strncmp(od_route_template(req->route), "/api/", 5) == 0) {
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
      inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)ci->client_addr)->sin_addr,
                req->client, sizeof req->client);
    else
      snprintf(req->client, sizeof req->client, "unknown");
    /* Over --max-connections: answer 429 (and close, since the answer is
     * queued on the first call) instead of letting the kernel or MHD drop
     * the connection unseen; MHD's own hard limit is set a little higher so
     * this path sees them. /metrics and /health stay reachable for the
     * monitoring that must tell an operator about it. */
    if (atomic_load(&svc->open_conns) > svc->cfg.max_connections &&
        req->route != OD_ROUTE_METRICS && req->route != OD_ROUTE_HEALTH) {
      req->calls++;
      return (enum MHD_Result)od_respond_error(svc, conn, req, 429, "too_many_connections",
                                               "Too many open connections; retry later", NULL);
    }
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl != NULL) {
      char *end;
      errno = 0;
      unsigned long long n = strtoull(cl, &end, 10);
      if (errno == 0 && end != cl && n > req->body_limit) {
        req->calls++;
        char msg[96];
        snprintf(msg, sizeof msg, "File too large (max %dMB)", svc->cfg.max_upload_mb);
        od_metric_validation(&svc->m, "body", "too_large");
        return (enum MHD_Result)od_respond_error(svc, conn, req, 413, "payload_too_large",
                                                 msg, NULL);
      }
    }
    return MHD_YES;
  }
  req->calls++;
  if (*upload_size > 0) {
    /* A body without a declared length that crosses the limit: MHD 0.9.75
     * refuses a response queued mid-body, so the rest is discarded unread
     * into memory and answered 413 at its end; past 4x the limit the
     * connection is simply closed. */
    if (req->overflow > 0 || req->body_len + *upload_size > req->body_limit) {
      req->overflow += *upload_size;
      *upload_size = 0;
      return req->overflow > 4 * (uint64_t)req->body_limit ? MHD_NO : MHD_YES;
    }
    if (req->body_len + *upload_size > req->body_cap) {
      size_t nc = req->body_cap ? req->body_cap : 16384;
      while (nc < req->body_len + *upload_size)
        nc *= 2;
      if (nc > req->body_limit)
        nc = req->body_limit;
      uint8_t *nb = realloc(req->body, nc);
      if (nb == NULL) {
        *upload_size = 0;
        return (enum MHD_Result)od_respond_error(svc, conn, req, 503, "internal",
                                                 "out of memory for the request body", NULL);
      }
      req->body = nb;
      req->body_cap = nc;
    }
    memcpy(req->body + req->body_len, upload_data, *upload_size);
    req->body_len += *upload_size;
    *upload_size = 0;
    return MHD_YES;
  }
  if (req->overflow > 0) {
    char msg[96];
    snprintf(msg, sizeof msg, "File too large (max %dMB)", svc->cfg.max_upload_mb);
    od_metric_validation(&svc->m, "body", "too_large");
    return (enum MHD_Result)od_respond_error(svc, conn, req, 413, "payload_too_large", msg,
                                             NULL);
  }
  od_route_dispatch(svc, conn, req, url);
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
  if (svc->cfg.access_log) {
    char path[160];
    log_safe(od_route_template(req->route), path, sizeof path);
    od_log("req %s %s %d %.2fms in=%zu out=%llu client=%s%s", req->method, path,
           status, dt * 1e3, req->body_len, (unsigned long long)req->resp_bytes,
           req->client, aborted ? " (aborted)" : "");
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

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
    msg[--n] = '\0';
  od_log("http: %s", msg);
}

int od_http_start(od_service *svc, char *err, size_t err_len) {
  /* Before the daemon's threads exist: they read the clock it picks. */
  if (od_clock_init() == OD_CLOCK_TSC)
    od_log("request timing: TSC at %.3f GHz", od_clock_tsc_hz() / 1e9);
  else
    od_log("request timing: CLOCK_MONOTONIC");
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(svc->cfg.listen_port);
  if (inet_pton(AF_INET, svc->cfg.listen_host, &sa.sin_addr) != 1) {
    snprintf(err, err_len, "--listen: bad address %s", svc->cfg.listen_host);
    return -1;
  }
  svc->daemon = MHD_start_daemon(
      MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_UPGRADE | MHD_USE_ITC |
          MHD_USE_ERROR_LOG,
      0, NULL, NULL, access_cb, svc,
      MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
      MHD_OPTION_THREAD_POOL_SIZE, (unsigned)svc->cfg.http_threads,
      /* The hard limit, past ours (see access_cb): room to answer 429. */
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)svc->cfg.max_connections + 64u,
      MHD_OPTION_NOTIFY_CONNECTION, notify_conn_cb, svc,
      MHD_OPTION_CONNECTION_TIMEOUT, 60u,
      MHD_OPTION_NOTIFY_COMPLETED, completed_cb, svc,
      MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u,
      MHD_OPTION_END);
  if (svc->daemon == NULL) {
    snprintf(err, err_len,
             "cannot listen on %s:%u (in use, or not an address of this host?)",
             svc->cfg.listen_host, svc->cfg.listen_port);
    return -1;
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(svc->daemon, MHD_DAEMON_INFO_BIND_PORT);
  if (di != NULL)
    svc->cfg.listen_port = di->port;
  return 0;
}

void od_http_quiesce(od_service *svc) {
  if (svc->daemon == NULL)
    return;
  MHD_socket fd = MHD_quiesce_daemon(svc->daemon);
  if (fd != MHD_INVALID_SOCKET)
    close(fd);
}

void od_http_stop(od_service *svc) {
  if (svc->daemon)
    MHD_stop_daemon(svc->daemon);
  svc->daemon = NULL;
}
