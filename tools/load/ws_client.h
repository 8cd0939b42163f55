/* ws_client.h: a minimal WebSocket client (RFC 6455) for orfeas-load: plain
 * TCP, text frames, client masking, ping answered, close honoured. */
#ifndef ORFEAS_LOAD_WS_CLIENT_H
#define ORFEAS_LOAD_WS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ws_client {
  int fd;
  char buf[65536];
  size_t len;
} ws_client;

/* Connects to host:port, upgrades GET path, checks Sec-WebSocket-Accept.
 * false + err on failure. */
bool ws_connect(ws_client *c, const char *host, int port, const char *path,
                char *err, size_t errlen);
/* Sends one text message. */
bool ws_send_text(ws_client *c, const char *text, size_t len);
/* Receives the next text message into out (NUL-terminated, cut to cap).
 * Returns its length, 0 on timeout (timeout_ms), -1 when closed/failed. */
int ws_recv_text(ws_client *c, char *out, size_t cap, int timeout_ms);
void ws_close(ws_client *c);

#endif
