/* ws_client.c: see ws_client.h. */
#include "ws_client.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static bool send_all(int fd, const void *p, size_t n) {
  const char *s = p;
  while (n > 0) {
    ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
    if (w <= 0)
      return false;
    s += w;
    n -= (size_t)w;
  }
  return true;
}

/* Connect, send the upgrade, read and check the 101 with its
 * Sec-WebSocket-Accept: a straight sequence with an error at each step
 * (81 lines). */
bool ws_connect(ws_client *c, const char *host, int port, const char *path,
                char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  c->fd = -1;
  char portstr[16];
  snprintf(portstr, sizeof portstr, "%d", port);
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
  if (getaddrinfo(host, portstr, &hints, &ai) != 0) {
    snprintf(err, errlen, "cannot resolve %s", host);
    return false;
  }
  c->fd = socket(ai->ai_family, SOCK_STREAM, 0);
  if (c->fd < 0 || connect(c->fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    snprintf(err, errlen, "cannot connect to %s:%d", host, port);
    freeaddrinfo(ai);
    ws_close(c);
    return false;
  }
  freeaddrinfo(ai);
  unsigned char nonce[16];
  RAND_bytes(nonce, sizeof nonce);
  char key[32];
  EVP_EncodeBlock((unsigned char *)key, nonce, sizeof nonce);
  char req[512];
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   path, host, port, key);
  if (!send_all(c->fd, req, (size_t)n)) {
    snprintf(err, errlen, "WebSocket handshake: send failed");
    ws_close(c);
    return false;
  }
  /* Read the response head; anything after it stays in c->buf. */
  char *end = NULL;
  while (end == NULL) {
    struct pollfd p = {c->fd, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0 || c->len >= sizeof c->buf - 1) {
      snprintf(err, errlen, "WebSocket handshake: no answer");
      ws_close(c);
      return false;
    }
    ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len, 0);
    if (r <= 0) {
      snprintf(err, errlen, "WebSocket handshake: connection closed");
      ws_close(c);
      return false;
    }
    c->len += (size_t)r;
    c->buf[c->len] = '\0';
    end = strstr(c->buf, "\r\n\r\n");
  }
  /* Expected accept = base64(SHA-1(key + GUID)). */
  char cat[96];
  snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
  unsigned char sha[EVP_MAX_MD_SIZE];
  unsigned int shalen;
  EVP_Digest(cat, strlen(cat), sha, &shalen, EVP_sha1(), NULL);
  char want[64];
  EVP_EncodeBlock((unsigned char *)want, sha, (int)shalen);
  bool ok = strncmp(c->buf, "HTTP/1.1 101", 12) == 0;
  const char *acc = strcasestr(c->buf, "Sec-WebSocket-Accept:");
  if (ok && acc) {
    acc += 21;
    while (*acc == ' ')
      acc++;
    ok = strncmp(acc, want, strlen(want)) == 0;
  } else {
    ok = false;
  }
  if (!ok) {
    snprintf(err, errlen, "WebSocket upgrade refused: %.60s", c->buf);
    ws_close(c);
    return false;
  }
  size_t head = (size_t)(end + 4 - c->buf);
  memmove(c->buf, c->buf + head, c->len - head);
  c->len -= head;
  return true;
}

static bool send_frame(ws_client *c, int opcode, const void *data, size_t len) {
  unsigned char h[14];
  size_t hl = 0;
  h[hl++] = (unsigned char)(0x80 | opcode);
  if (len < 126) {
    h[hl++] = (unsigned char)(0x80 | len);
  } else if (len < 65536) {
    h[hl++] = 0x80 | 126;
    h[hl++] = (unsigned char)(len >> 8);
    h[hl++] = (unsigned char)len;
  } else {
    h[hl++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
      h[hl++] = (unsigned char)((uint64_t)len >> (8 * i));
  }
  unsigned char mask[4];
  RAND_bytes(mask, 4);
  memcpy(h + hl, mask, 4);
  hl += 4;
  unsigned char tmp[4096];
  if (!send_all(c->fd, h, hl))
    return false;
  const unsigned char *s = data;
  for (size_t off = 0; off < len;) {
    size_t n = len - off < sizeof tmp ? len - off : sizeof tmp;
    for (size_t i = 0; i < n; i++)
      tmp[i] = s[off + i] ^ mask[(off + i) & 3];
    if (!send_all(c->fd, tmp, n))
      return false;
    off += n;
  }
  return true;
}

bool ws_send_text(ws_client *c, const char *text, size_t len) {
  return c->fd >= 0 && send_frame(c, 1, text, len);
}

/* Fills buf until it holds n bytes; false on close or timeout. */
static int fill(ws_client *c, size_t n, int timeout_ms) {
  while (c->len < n) {
    struct pollfd p = {c->fd, POLLIN, 0};
    int pr = poll(&p, 1, timeout_ms);
    if (pr == 0)
      return 0;
    if (pr < 0)
      return -1;
    ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    if (r <= 0)
      return -1;
    c->len += (size_t)r;
  }
  return 1;
}

int ws_recv_text(ws_client *c, char *out, size_t cap, int timeout_ms) {
  for (;;) {
    int f = fill(c, 2, timeout_ms);
    if (f <= 0)
      return f;
    unsigned char *b = (unsigned char *)c->buf;
    int op = b[0] & 0x0f;
    uint64_t len = b[1] & 0x7f;
    size_t hl = 2;
    if (len == 126) {
      if ((f = fill(c, 4, timeout_ms)) <= 0)
        return f; /* 0: timed out mid-frame; the bytes stay in buf */
      len = ((uint64_t)b[2] << 8) | b[3];
      hl = 4;
    } else if (len == 127) {
      if ((f = fill(c, 10, timeout_ms)) <= 0)
        return f; /* 0: timed out mid-frame; the bytes stay in buf */
      len = 0;
      for (int i = 0; i < 8; i++)
        len = (len << 8) | b[2 + i];
      hl = 10;
    }
    if (hl + len > sizeof c->buf) /* larger than we ever expect: give up */
      return -1;
    if ((f = fill(c, hl + (size_t)len, timeout_ms)) <= 0)
      return f; /* 0: timed out mid-frame; the bytes stay in buf */
    const char *payload = c->buf + hl;
    int result = -2;
    if (op == 1) { /* text */
      size_t n = len < cap - 1 ? (size_t)len : cap - 1;
      memcpy(out, payload, n);
      out[n] = '\0';
      result = (int)n;
    } else if (op == 9) { /* ping */
      send_frame(c, 10, payload, (size_t)len);
    } else if (op == 8) { /* close */
      send_frame(c, 8, payload, len < 2 ? (size_t)len : 2);
      result = -1;
    }
    memmove(c->buf, c->buf + hl + len, c->len - hl - (size_t)len);
    c->len -= hl + (size_t)len;
    if (result != -2)
      return result;
  }
}

void ws_close(ws_client *c) {
  if (c->fd >= 0) {
    send_frame(c, 8, "\x03\xe8", 2);
    close(c->fd);
  }
  c->fd = -1;
}
