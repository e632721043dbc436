// log.h: the small leveled logger, programmer-error asserts, and the error
// message buffer that recoverable failures (files, configs, captures) use.
#pragma once
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef enum { TL_LOG_DEBUG, TL_LOG_INFO, TL_LOG_WARN, TL_LOG_ERROR } tl_log_level;

// Messages below this level are dropped (default TL_LOG_INFO; env TL_LOG=debug).
void tl_log_set_level(tl_log_level level);
void tl_log(tl_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define tl_debug(...) tl_log(TL_LOG_DEBUG, __VA_ARGS__)
#define tl_info(...) tl_log(TL_LOG_INFO, __VA_ARGS__)
#define tl_warn(...) tl_log(TL_LOG_WARN, __VA_ARGS__)
#define tl_error(...) tl_log(TL_LOG_ERROR, __VA_ARGS__)

// Programmer errors: stays on under -DNDEBUG, prints the expression and location.
#define TL_ASSERT(cond)                                                          \
  do {                                                                           \
    if (!(cond)) tl_assert_fail(#cond, __FILE__, __LINE__, NULL);                \
  } while (0)
#define TL_ASSERTF(cond, ...)                                                    \
  do {                                                                           \
    if (!(cond)) tl_assert_fail(#cond, __FILE__, __LINE__, tl_fmt(__VA_ARGS__)); \
  } while (0)
_Noreturn void tl_assert_fail(const char *expr, const char *file, int line, const char *msg);

// Formats into a per-thread scratch buffer; valid until the next call.
const char *tl_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Recoverable errors: functions return TL_OK or TL_ERR and leave a one-line reason
// (naming the file, record or config line) here for the caller to print.
typedef enum { TL_OK = 0, TL_ERR = 1 } tl_status;
void tl_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *tl_last_error(void);

// malloc/calloc that abort with a message on failure (sizes are programmer-chosen).
void *tl_xmalloc(size_t n);
void *tl_xcalloc(size_t count, size_t size);
void *tl_xrealloc(void *p, size_t n);
char *tl_xstrdup(const char *s);

// Reads a whole file into a malloc'd NUL-terminated buffer (caller frees).
// Returns NULL with tl_last_error() = "PATH: cannot open: REASON" on failure.
char *tl_read_text_file(const char *path);
