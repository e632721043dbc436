// prep_config.c: tl-prep's YAML config. libcyaml reads the document as text
// values against a schema of known keys (unknown keys and wrong shapes are its
// errors); each value is then converted strictly here, so that every error
// names the file, the line and the key.
#include <cyaml/cyaml.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/prep.h"
#include "data/yaml_syntax.h"

// The raw document: one text per scalar key, lists for in and split_ratio.
typedef struct {
  char **in;
  unsigned in_count;
  char **ratio;
  unsigned ratio_count;
  char *v[32];
} tl_raw_cfg;

typedef enum { K_STR, K_INT, K_U64, K_NUM, K_BOOL, K_ENUM } tl_key_kind;

typedef struct {
  const char *name;
  tl_key_kind kind;
  const char *choices; // K_ENUM: "a|b|c"
  int lo, hi;          // K_INT: the accepted range (hi 0: up to 1e9)
} tl_cfg_key;

// Scalar keys, in the order of tl_raw_cfg.v.
static const tl_cfg_key g_keys[] = {
    {"out", K_STR, NULL, 0, 0},
    {"labels", K_STR, NULL, 0, 0},
    {"task", K_ENUM, "pretrain|packet|flow", 0, 0},
    {"seq_len", K_INT, NULL, 2, TL_PREP_MAX_SEQ_LEN},
    {"packet_bytes", K_INT, NULL, 0, TL_PREP_MAX_PACKET_BYTES},
    {"flow_packets", K_INT, NULL, 1, TL_PREP_MAX_PACKETS},
    {"burst_packets", K_INT, NULL, 1, TL_PREP_MAX_PACKETS},
    {"seed", K_U64, NULL, 0, 0},
    {"split", K_ENUM, "flow|file|packet", 0, 0},
    {"max_per_class", K_INT, NULL, 0, 0},
    {"min_per_class", K_INT, NULL, 0, 0},
    {"header_policy", K_ENUM, "anonymous|keep|compat", 0, 0},
    {"rows_per_shard", K_INT, NULL, 1, 0},
    {"idle_timeout", K_NUM, NULL, 0, 0},
    {"close_linger", K_NUM, NULL, 0, 0},
    {"max_flows", K_INT, NULL, 1, 0},
    {"reorder_window", K_INT, NULL, 0, TL_PREP_MAX_REORDER_WINDOW},
    {"flow_key_vlan", K_BOOL, NULL, 0, 0},
    {"strict", K_BOOL, NULL, 0, 0},
    {"progress", K_BOOL, NULL, 0, 0},
    {"min_payload", K_INT, NULL, 0, 0},
    {"holdout_of", K_STR, NULL, 0, 0},
    {"compress", K_INT, NULL, 0, 9},
    {"reassemble", K_BOOL, NULL, 0, 0},
};
enum { N_KEYS = sizeof g_keys / sizeof g_keys[0] };

// Line of a top-level key (the config is one flat mapping); 0 if not found.
static int key_line(const char *path, const char *key) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[4096];
  size_t kl = strlen(key);
  for (int n = 1; fgets(line, sizeof line, f); n++) {
    const char *p = line;
    if (*p == '"' || *p == '\'') p++;
    if (!strncmp(p, key, kl) && strchr(":\"' \t", p[kl])) {
      fclose(f);
      return n;
    }
  }
  fclose(f);
  return 0;
}

static const char *where(const char *path, const char *key) {
  int line = key_line(path, key);
  return line ? tl_fmt("%s:%d", path, line) : tl_fmt("%s", path);
}

// --- libcyaml ---------------------------------------------------------------

typedef struct {
  char text[2048];
  size_t len;
} tl_cyaml_log;

static void collect_log(cyaml_log_t level, void *ctx, const char *fmt, va_list args) {
  tl_cyaml_log *b = ctx;
  if (b->len + 1 >= sizeof b->text) return;
  int n = vsnprintf(b->text + b->len, sizeof b->text - b->len, fmt, args);
  if (n > 0) b->len += (size_t)n;
  if (b->len >= sizeof b->text) b->len = sizeof b->text - 1;
}

// A YAML syntax error as libyaml places it: sets the error and returns 1.
static int syntax_error(const char *path) {
  char *text = tl_read_text_file(path);
  char msg[256];
  int line = text ? tl_yaml_syntax_error(text, msg, sizeof msg) : 0;
  free(text);
  if (line > 0) tl_set_error("%s:%d: YAML syntax: %s", path, line, msg);
  return line > 0;
}

// A key given twice, named at its second line: sets the error and returns 1.
static int duplicate_key(const char *path) {
  char *text = tl_read_text_file(path);
  char key[128];
  int first = 0, line = text ? tl_yaml_duplicate_key(text, &first, key, sizeof key) : 0;
  free(text);
  if (line > 0) tl_set_error("%s:%d: %s: given twice (first on line %d)", path, line, key, first);
  return line > 0;
}

// Turns libcyaml's messages into one line: file:line: key: reason.
static void cyaml_error(const char *path, const tl_cyaml_log *log, cyaml_err_t err) {
  char reason[256] = "", key[128] = "";
  const char *nl = strchr(log->text, '\n');
  size_t rl = nl ? (size_t)(nl - log->text) : strlen(log->text);
  if (rl >= sizeof reason) rl = sizeof reason - 1;
  memcpy(reason, log->text, rl);
  const char *r = strncmp(reason, "Load: ", 6) ? reason : reason + 6;
  if (strstr(r, "libyaml") && syntax_error(path)) return;
  if (strstr(r, "already seen") && duplicate_key(path)) return;
  if (sscanf(r, "Unexpected key: %127s", key) == 1) {
    tl_set_error("%s: unknown key '%s' (see configs/prep-*.yaml for the known ones)",
                 where(path, key), key);
    return;
  }
  if (strstr(r, "Expecting STRING")) r = "expected a single value, got a list or mapping";
  else if (strstr(r, "Expecting SEQUENCE")) r = "expected a list such as [a, b]";
  const char *f = strstr(log->text, "in mapping field '");
  if (f && sscanf(f, "in mapping field '%127[^']'", key) == 1) {
    tl_set_error("%s: %s: %s", where(path, key), key, r[0] ? r : cyaml_strerror(err));
    return;
  }
  tl_set_error("%s: %s", path, r[0] ? r : cyaml_strerror(err));
}

static tl_status load_raw(const char *path, tl_raw_cfg **raw) {
  static const cyaml_schema_value_t str = {
      CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, CYAML_UNLIMITED)};
  cyaml_schema_field_t fields[N_KEYS + 3];
  fields[0] = (cyaml_schema_field_t)CYAML_FIELD_SEQUENCE(
      "in", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, tl_raw_cfg, in, &str, 0, CYAML_UNLIMITED);
  fields[1] = (cyaml_schema_field_t)CYAML_FIELD_SEQUENCE(
      "split_ratio", CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL | CYAML_FLAG_FLOW, tl_raw_cfg,
      ratio, &str, 0, CYAML_UNLIMITED);
  for (int i = 0; i < N_KEYS; i++) {
    fields[2 + i] = (cyaml_schema_field_t)CYAML_FIELD_STRING_PTR(
        "", CYAML_FLAG_OPTIONAL, tl_raw_cfg, v[0], 0, CYAML_UNLIMITED);
    fields[2 + i].key = g_keys[i].name;
    fields[2 + i].data_offset = (uint32_t)(offsetof(tl_raw_cfg, v) + (size_t)i * sizeof(char *));
  }
  fields[N_KEYS + 2] = (cyaml_schema_field_t)CYAML_FIELD_END;
  cyaml_schema_value_t top = {CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, tl_raw_cfg, fields)};

  tl_cyaml_log log = {0};
  cyaml_config_t cfg = {.log_fn = collect_log, .log_ctx = &log, .mem_fn = cyaml_mem,
                        .log_level = CYAML_LOG_ERROR};
  FILE *probe = fopen(path, "r");
  if (!probe) {
    tl_set_error("%s: cannot open the config: %s", path, strerror(errno));
    return TL_ERR;
  }
  fclose(probe);
  *raw = NULL;
  cyaml_err_t err = cyaml_load_file(path, &cfg, &top, (cyaml_data_t **)raw, NULL);
  if (err != CYAML_OK) {
    cyaml_error(path, &log, err);
    return TL_ERR;
  }
  if (!*raw) {
    tl_set_error("%s: empty config", path);
    return TL_ERR;
  }
  return TL_OK;
}

static void free_raw(tl_raw_cfg *raw) {
  if (!raw) return;
  for (unsigned i = 0; i < raw->in_count; i++) free(raw->in[i]);
  for (unsigned i = 0; i < raw->ratio_count; i++) free(raw->ratio[i]);
  for (int i = 0; i < N_KEYS; i++) free(raw->v[i]);
  free(raw->in);
  free(raw->ratio);
  free(raw);
}

// --- conversion -------------------------------------------------------------

static int parse_int(const char *s, long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || end == s || *end) return 0;
  *out = v;
  return 1;
}

static int parse_num(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !isfinite(v)) return 0;
  *out = v;
  return 1;
}

static int parse_bool(const char *s, int *out) {
  if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")) return *out = 1, 1;
  if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")) return *out = 0, 1;
  return 0;
}

// Index of s in "a|b|c", or -1.
static int parse_enum(const char *s, const char *choices) {
  int i = 0;
  size_t n = strlen(s);
  for (const char *p = choices; p; i++) {
    const char *bar = strchr(p, '|');
    size_t len = bar ? (size_t)(bar - p) : strlen(p);
    if (len == n && !strncmp(p, s, n)) return i;
    p = bar ? bar + 1 : NULL;
  }
  return -1;
}

// Sets one option from its text; errors name `at` (a file:line or "--flag").
// "a, b ,c" as "a,b,c": spaces around the commas of a folder list are not names.
static char *comma_list(const char *val) {
  char *out = tl_xmalloc(strlen(val) + 1), *o = out;
  for (const char *p = val; *p;) {
    p += strspn(p, " \t");
    size_t n = strcspn(p, ",");
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
    memcpy(o, p, n);
    o += n;
    p += strcspn(p, ",");
    if (*p == ',') *o++ = *p++;
  }
  *o = 0;
  return out;
}

void tl_prep_key_range(const char *key, double *lo, double *hi) {
  *lo = 0;
  *hi = 1e9;
  for (int i = 0; i < N_KEYS; i++) {
    if (strcmp(g_keys[i].name, key) != 0 || g_keys[i].kind != K_INT) continue;
    *lo = g_keys[i].lo;
    if (g_keys[i].hi) *hi = g_keys[i].hi;
  }
}

tl_status tl_prep_set_option(tl_prep_options *o, const char *key, const char *val,
                             const char *at) {
  const tl_cfg_key *k = NULL;
  for (int i = 0; i < N_KEYS; i++)
    if (!strcmp(g_keys[i].name, key)) k = &g_keys[i];
  if (!k) {
    tl_set_error("%s: unknown option '%s'", at, key);
    return TL_ERR;
  }
  long long iv = 0;
  double dv = 0;
  int bv = 0, ev = 0;
  const char *want = NULL;
  int lo = k->lo, hi = k->hi ? k->hi : 1000000000;
  char range[64]; // not tl_fmt: `at` may live in its buffer
  if (hi < 1000000000) snprintf(range, sizeof range, "a whole number from %d to %d", lo, hi);
  else snprintf(range, sizeof range, "a whole number, at least %d", lo);
  if (k->kind == K_INT && (!parse_int(val, &iv) || iv < lo || iv > hi)) want = range;
  if (k->kind == K_U64 && (!parse_int(val, &iv) || iv < 0)) want = "a non-negative integer";
  if (k->kind == K_NUM && (!parse_num(val, &dv) || dv < 0)) want = "a non-negative number";
  if (k->kind == K_BOOL && !parse_bool(val, &bv)) want = "true or false";
  if (k->kind == K_ENUM && (ev = parse_enum(val, k->choices)) < 0) want = k->choices;
  if (want) {
    // A flag names itself ("--compress: ..."); a config line or --set, the key.
    if (at[0] == '-' && strcmp(at, "--set") != 0)
      tl_set_error("%s: expected %s, got '%s'", at, want, val);
    else tl_set_error("%s: %s: expected %s, got '%s'", at, key, want, val);
    return TL_ERR;
  }

  // Why one table: flags and config keys share names and checks.
  int i = (int)iv;
  if (!strcmp(key, "out")) free(o->out_dir), o->out_dir = tl_xstrdup(val);
  else if (!strcmp(key, "labels")) free(o->labels_csv), o->labels_csv = tl_xstrdup(val);
  else if (!strcmp(key, "task")) o->ds.task = (tl_task)ev;
  else if (!strcmp(key, "seq_len")) o->ds.seq_len = i;
  else if (!strcmp(key, "packet_bytes")) {
    o->ds.packet_bytes = i;
    o->flow.keep_bytes = i ? (size_t)i : 1600; // 0: the whole packet, up to 1600 bytes
  }
  else if (!strcmp(key, "flow_packets")) o->ds.flow_packets = i, o->flow.flow_packets = i;
  else if (!strcmp(key, "burst_packets")) o->burst_packets = i;
  else if (!strcmp(key, "seed")) o->ds.seed = (uint64_t)iv;
  else if (!strcmp(key, "split")) o->ds.split = (tl_split_policy)ev;
  else if (!strcmp(key, "max_per_class")) o->ds.max_per_class = i;
  else if (!strcmp(key, "min_per_class")) o->ds.min_per_class = i;
  else if (!strcmp(key, "header_policy")) o->policy = (tl_header_policy)ev;
  else if (!strcmp(key, "rows_per_shard")) o->ds.rows_per_shard = i;
  else if (!strcmp(key, "compress")) o->ds.compress = i;
  else if (!strcmp(key, "idle_timeout")) o->flow.idle_timeout_s = dv;
  else if (!strcmp(key, "close_linger")) o->flow.close_linger_s = dv;
  else if (!strcmp(key, "max_flows")) o->flow.max_flows = i;
  else if (!strcmp(key, "reorder_window")) o->flow.reorder_window = i;
  else if (!strcmp(key, "flow_key_vlan")) o->flow.key_vlan = bv;
  else if (!strcmp(key, "strict")) o->strict = bv;
  else if (!strcmp(key, "progress")) o->progress = bv;
  else if (!strcmp(key, "reassemble")) o->reassemble = bv;
  else if (!strcmp(key, "min_payload")) o->flow.min_payload = i;
  else if (!strcmp(key, "holdout_of")) free(o->holdout_of), o->holdout_of = comma_list(val);
  return TL_OK;
}

// Sets split_ratio from three texts ("0.8", "0.1", "0.1").
tl_status tl_prep_set_ratio(tl_prep_options *o, char *const *v, int n, const char *at) {
  double r[3], sum = 0;
  if (n != 3) {
    tl_set_error("%s: split_ratio: expected three numbers (train, valid, test), got %d", at, n);
    return TL_ERR;
  }
  for (int i = 0; i < 3; i++) {
    if (!parse_num(v[i], &r[i]) || r[i] < 0) {
      tl_set_error("%s: split_ratio: expected a non-negative number, got '%s'", at, v[i]);
      return TL_ERR;
    }
    sum += r[i];
  }
  if (sum <= 0) {
    tl_set_error("%s: split_ratio: the three numbers add up to 0", at);
    return TL_ERR;
  }
  for (int i = 0; i < 3; i++) o->ds.split_ratio[i] = r[i] / sum;
  return TL_OK;
}

tl_status tl_prep_config_task(const char *path, int *task) {
  tl_raw_cfg *raw;
  if (load_raw(path, &raw) != TL_OK) return TL_ERR;
  *task = -1;
  const char *t = raw->v[2]; // g_keys[2] is "task"
  tl_status st = TL_OK;
  if (t && (*task = parse_enum(t, g_keys[2].choices)) < 0) {
    tl_set_error("%s: task: expected %s, got '%s'", where(path, "task"), g_keys[2].choices, t);
    st = TL_ERR;
  }
  free_raw(raw);
  return st;
}

tl_status tl_prep_config_load(const char *path, tl_prep_options *o) {
  tl_raw_cfg *raw;
  if (load_raw(path, &raw) != TL_OK) return TL_ERR;
  tl_status st = TL_OK;

  // The task first: its defaults are the base the other keys change.
  if (raw->v[2]) {
    int task = parse_enum(raw->v[2], g_keys[2].choices);
    if (task >= 0 && (tl_task)task != o->ds.task) {
      tl_prep_options_free(o);
      tl_prep_options_default(o, (tl_task)task);
    }
  }
  for (int i = 0; i < N_KEYS && st == TL_OK; i++)
    if (raw->v[i]) st = tl_prep_set_option(o, g_keys[i].name, raw->v[i],
                                           where(path, g_keys[i].name));
  if (st == TL_OK && raw->ratio)
    st = tl_prep_set_ratio(o, raw->ratio, (int)raw->ratio_count, where(path, "split_ratio"));
  if (st == TL_OK && raw->in) {
    for (unsigned i = 0; i < raw->in_count; i++) {
      o->in = tl_xrealloc(o->in, (size_t)(o->n_in + 1) * sizeof *o->in);
      o->in[o->n_in++] = tl_xstrdup(raw->in[i]);
    }
  }
  free_raw(raw);
  return st;
}
