/* mail.c: the report by mail, through the system's sendmail interface
 * (Debian: msmtp-mta's /usr/sbin/sendmail, set up in /etc/msmtprc or the
 * user's ~/.msmtprc; any MTA's sendmail works the same). One message,
 * multipart/alternative: report.md as text/plain and report.html as
 * text/html (self-contained: inline CSS, charts as inline SVG). Both parts
 * are base64: the HTML's SVG lines are longer than SMTP's 998 characters.
 * sendmail gets the recipients as arguments (-i: a lone "." is no end). */
#include "report.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RCPT 16

/* sendmail's PID while it runs: --mail-timeout's alarm kills it. A
 * sendmail that hangs (an unreachable smarthost without a timeout of its
 * own) would otherwise hold the run, and the timer that starts the next
 * one, for ever. */
static volatile sig_atomic_t mail_child;
static volatile sig_atomic_t mail_killed;

static void on_mail_alarm(int sig) {
  (void)sig;
  if (mail_child > 0) {
    kill((pid_t)mail_child, SIGKILL);
    mail_killed = 1;
  }
}

/* An address we put in a header and an argument: no spaces, no control
 * characters, no quotes, one '@' that is neither first nor last. */
static bool address_ok(const char *a) {
  const char *at = strchr(a, '@');
  if (at == NULL || at == a || at[1] == '\0' || strchr(at + 1, '@') != NULL ||
      a[0] == '-')
    return false;
  for (const char *p = a; *p; p++)
    if ((unsigned char)*p <= ' ' || *p == '"' || *p == '<' || *p == '>' ||
        *p == ',' || *p == 0x7f)
      return false;
  return true;
}

/* Writes the file at PATH base64-encoded in 76-character lines. */
static bool put_base64(FILE *out, const char *path, char *err, size_t err_len) {
  static const char tab[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  FILE *in = fopen(path, "rb");
  if (in == NULL) {
    snprintf(err, err_len, "cannot read %s: %s", path, strerror(errno));
    return false;
  }
  unsigned char b[57]; /* 57 bytes -> one 76-character line */
  size_t n;
  while ((n = fread(b, 1, sizeof b, in)) > 0) {
    for (size_t i = 0; i < n; i += 3) {
      unsigned v = (unsigned)b[i] << 16 |
                   (i + 1 < n ? (unsigned)b[i + 1] << 8 : 0) |
                   (i + 2 < n ? b[i + 2] : 0);
      fputc(tab[v >> 18 & 63], out);
      fputc(tab[v >> 12 & 63], out);
      fputc(i + 1 < n ? tab[v >> 6 & 63] : '=', out);
      fputc(i + 2 < n ? tab[v & 63] : '=', out);
    }
    fputs("\r\n", out);
  }
  bool ok = !ferror(in);
  if (!ok)
    snprintf(err, err_len, "cannot read %s", path);
  fclose(in);
  return ok;
}

static void write_message(const report *r, FILE *out, const char *to,
                          const char *md_path, const char *html_path, char *err,
                          size_t err_len, bool *ok) {
  char date[64], a[32], b[32], boundary[64];
  time_t now = time(NULL), s = (time_t)r->start, e = (time_t)r->o.end;
  struct tm tm;
  strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000",
           gmtime_r(&now, &tm));
  strftime(a, sizeof a, "%Y-%m-%d %H:%M", gmtime_r(&s, &tm));
  strftime(b, sizeof b, "%Y-%m-%d %H:%M", gmtime_r(&e, &tm));
  snprintf(boundary, sizeof boundary, "orfeas-report-%ld-%d", (long)now,
           (int)getpid());
  fprintf(out,
          "From: %s\r\nTo: %s\r\nDate: %s\r\n"
          "Message-ID: <%ld.%d@orfeas-report>\r\n"
          "Subject: ORFEAS health report %s to %s UTC: %d alert%s fired%s\r\n"
          "MIME-Version: 1.0\r\n"
          "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n"
          "This is the ORFEAS health report in text and HTML.\r\n",
          r->o.mail_from, to, date, (long)now, (int)getpid(), a, b, r->nalerts,
          r->nalerts == 1 ? "" : "s",
          r->failures ? " (some queries failed)" : "", boundary);
  const char *paths[] = {md_path, html_path};
  const char *types[] = {"text/plain", "text/html"};
  for (int i = 0; i < 2 && *ok; i++) {
    fprintf(out,
            "\r\n--%s\r\nContent-Type: %s; charset=utf-8\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n",
            boundary, types[i]);
    *ok = put_base64(out, paths[i], err, err_len);
  }
  fprintf(out, "\r\n--%s--\r\n", boundary);
}

bool report_mail(const report *r, const char *md_path, const char *html_path,
                 char *err, size_t err_len) {
  /* The recipients, checked: they go into a header and onto a command line. */
  char list[1024];
  snprintf(list, sizeof list, "%s", r->o.mail_to);
  char *rcpt[MAX_RCPT];
  int n = 0;
  for (char *save, *t = strtok_r(list, ",", &save); t;
       t = strtok_r(NULL, ",", &save)) {
    while (*t == ' ')
      t++;
    if (n == MAX_RCPT || !address_ok(t)) {
      snprintf(err, err_len,
               "--mail-to: '%.80s' is not an address (or more than %d)", t,
               MAX_RCPT);
      return false;
    }
    rcpt[n++] = t;
  }
  if (n == 0 || !address_ok(r->o.mail_from)) {
    snprintf(err, err_len,
             "--mail-to needs an address, --mail-from a valid one");
    return false;
  }
  char to[1100] = "";
  for (int i = 0; i < n; i++)
    snprintf(to + strlen(to), sizeof to - strlen(to), "%s%s", i ? ", " : "",
             rcpt[i]);

  int fds[2];
  if (pipe(fds) != 0) {
    snprintf(err, err_len, "pipe: %s", strerror(errno));
    return false;
  }
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(err, err_len, "fork: %s", strerror(errno));
    close(fds[0]);
    close(fds[1]);
    return false;
  }
  if (pid == 0) { /* the child: sendmail -i -f FROM -- RCPT... on the pipe */
    char *argv[MAX_RCPT + 6] = {"sendmail", "-i", "-f", (char *)r->o.mail_from,
                                "--"};
    for (int i = 0; i < n; i++)
      argv[5 + i] = rcpt[i];
    argv[5 + n] = NULL;
    dup2(fds[0], 0);
    close(fds[0]);
    close(fds[1]);
    execv(r->o.sendmail, argv);
    fprintf(stderr,
            "orfeas-report: cannot run %s: %s (install msmtp-mta and "
            "set up /etc/msmtprc, or give --sendmail)\n",
            r->o.sendmail, strerror(errno));
    _exit(127);
  }
  close(fds[0]);
  /* The deadline covers the writes too: a sendmail that stops reading
   * would block them once the pipe is full. Killed, it ends them with
   * EPIPE (no SA_RESTART: a blocked write also returns at the alarm). */
  mail_child = pid;
  mail_killed = 0;
  struct sigaction sa, old_alrm;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_mail_alarm;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, &old_alrm);
  alarm((unsigned)r->o.mail_timeout_s);
  /* sendmail may exit early (bad config): a write then gets EPIPE, not a
   * signal, and the exit status says what happened. */
  void (*old)(int) = signal(SIGPIPE, SIG_IGN);
  FILE *out = fdopen(fds[1], "w");
  bool ok = out != NULL;
  if (out) {
    write_message(r, out, to, md_path, html_path, err, err_len, &ok);
    if (fclose(out) != 0 && ok) {
      snprintf(err, err_len, "%s did not take the whole message",
               r->o.sendmail);
      ok = false;
    }
  } else {
    close(fds[1]);
    snprintf(err, err_len, "fdopen: %s", strerror(errno));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  alarm(0);
  mail_child = 0;
  sigaction(SIGALRM, &old_alrm, NULL);
  signal(SIGPIPE, old);
  if (mail_killed) {
    snprintf(err, err_len,
             "%s did not finish within %d s (--mail-timeout): killed; the "
             "mail may not have been sent (check its configuration and the "
             "smarthost)",
             r->o.sendmail, r->o.mail_timeout_s);
    return false;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    if (ok)
      snprintf(err, err_len,
               "%s failed (exit status %d): the mail was not sent",
               r->o.sendmail, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return false;
  }
  return ok;
}
