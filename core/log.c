#include "core/log.h"

#include <errno.h>
#include <string.h>

static tl_log_level g_level = TL_LOG_INFO;
static int g_level_from_env = 0;
static _Thread_local char g_error[1024];
static _Thread_local char g_fmt[1024];

void tl_log_set_level(tl_log_level level) {
  g_level = level;
  g_level_from_env = 1;
}

static void read_level_from_env(void) {
  if (g_level_from_env) return;
  g_level_from_env = 1;
  const char *env = getenv("TL_LOG");
  if (!env) return;
  if (!strcmp(env, "debug")) g_level = TL_LOG_DEBUG;
  else if (!strcmp(env, "warn")) g_level = TL_LOG_WARN;
  else if (!strcmp(env, "error")) g_level = TL_LOG_ERROR;
}

void tl_log(tl_log_level level, const char *fmt, ...) {
  static const char *names[] = {"debug", "info", "warning", "error"};
  read_level_from_env();
  if (level < g_level) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "tl %s: ", names[level]);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

_Noreturn void tl_assert_fail(const char *expr, const char *file, int line, const char *msg) {
  fprintf(stderr, "tl: internal error at %s:%d: assertion '%s' failed%s%s\n", file, line,
          expr, msg ? ": " : "", msg ? msg : "");
  abort();
}

const char *tl_fmt(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_fmt, sizeof g_fmt, fmt, ap);
  va_end(ap);
  return g_fmt;
}

void tl_set_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  // Through a copy: callers may pass tl_last_error() itself as an argument.
  char msg[sizeof g_error];
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  memcpy(g_error, msg, sizeof g_error);
}

const char *tl_last_error(void) { return g_error[0] ? g_error : "unknown error"; }

static void *check_alloc(void *p, size_t n) {
  if (!p && n) {
    fprintf(stderr, "tl: out of memory allocating %zu bytes\n", n);
    abort();
  }
  return p;
}

void *tl_xmalloc(size_t n) { return check_alloc(malloc(n ? n : 1), n); }
void *tl_xcalloc(size_t count, size_t size) {
  return check_alloc(calloc(count ? count : 1, size ? size : 1), count * size);
}
void *tl_xrealloc(void *p, size_t n) { return check_alloc(realloc(p, n ? n : 1), n); }
char *tl_xstrdup(const char *s) { return check_alloc(strdup(s), strlen(s) + 1); }

char *tl_read_text_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    tl_set_error("%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  // Read in chunks rather than trusting ftell: pipes and /proc files have no size.
  size_t cap = 4096, len = 0, n;
  char *buf = tl_xmalloc(cap);
  while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
    len += n;
    if (cap - len - 1 == 0) buf = tl_xrealloc(buf, cap *= 2);
  }
  int failed = ferror(f);
  fclose(f);
  if (failed) {
    tl_set_error("%s: cannot read (a folder?)", path);
    free(buf);
    return NULL;
  }
  buf[len] = 0;
  return buf;
}
