// config.c: the key table, the YAML schema made from it, strict conversion,
// overrides, preset resolution and writing the config back out.
#include "train/config.h"

#include <cyaml/cyaml.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "data/yaml_syntax.h"

// ---------------------------------------------------------------------------
// The key table: every config key once, with its type and place in tl_config.

typedef enum {
  KEY_INT, KEY_I64, KEY_U64, KEY_FLOAT, KEY_BOOL, KEY_WORD, KEY_PATH, KEY_PAIR
} key_kind;

typedef struct {
  const char *section;
  const char *name;
  key_kind kind;
  size_t offset;       // into tl_config
  const char *choices; // KEY_WORD: allowed values separated by '|'
} config_key;

#define KEY(sec, name, kind, member) {sec, name, kind, offsetof(tl_config, member), NULL}
#define WORD(sec, name, member, choices) \
  {sec, name, KEY_WORD, offsetof(tl_config, member), choices}

static const config_key g_keys[] = {
    WORD("model", "preset", model.preset, "tiny|mini|small|medium|base|large"),
    KEY("model", "hidden", KEY_INT, model.hidden),
    KEY("model", "layers", KEY_INT, model.layers),
    KEY("model", "heads", KEY_INT, model.heads),
    KEY("model", "ffn", KEY_INT, model.ffn),
    KEY("model", "vocab", KEY_INT, model.vocab),
    KEY("model", "max_pos", KEY_INT, model.max_pos),
    KEY("model", "type_vocab", KEY_INT, model.type_vocab),
    KEY("model", "dropout", KEY_FLOAT, model.dropout),
    KEY("model", "attn_dropout", KEY_FLOAT, model.attn_dropout),
    KEY("model", "ln_eps", KEY_FLOAT, model.ln_eps),
    KEY("model", "init", KEY_PATH, model.init),
    KEY("data", "dir", KEY_PATH, data.dir),
    KEY("data", "batch_size", KEY_INT, data.batch_size),
    KEY("data", "seq_len", KEY_INT, data.seq_len),
    KEY("data", "mask_prob", KEY_FLOAT, data.mask_prob),
    KEY("data", "shuffle", KEY_BOOL, data.shuffle),
    KEY("optim", "lr", KEY_FLOAT, optim.lr),
    KEY("optim", "betas", KEY_PAIR, optim.betas),
    KEY("optim", "eps", KEY_FLOAT, optim.eps),
    KEY("optim", "weight_decay", KEY_FLOAT, optim.weight_decay),
    KEY("optim", "bias_correction", KEY_BOOL, optim.bias_correction),
    KEY("optim", "warmup", KEY_FLOAT, optim.warmup),
    WORD("optim", "schedule", optim.schedule, "linear|cosine|constant"),
    KEY("optim", "min_lr", KEY_FLOAT, optim.min_lr),
    KEY("optim", "clip_norm", KEY_FLOAT, optim.clip_norm),
    KEY("loss", "w_mbm", KEY_FLOAT, loss.w_mbm),
    KEY("loss", "w_sbp", KEY_FLOAT, loss.w_sbp),
    KEY("train", "steps", KEY_I64, train.steps),
    KEY("train", "epochs", KEY_INT, train.epochs),
    KEY("train", "seed", KEY_U64, train.seed),
    KEY("train", "accum_steps", KEY_INT, train.accum_steps),
    KEY("train", "eval_every", KEY_INT, train.eval_every),
    KEY("train", "eval_batches", KEY_INT, train.eval_batches),
    KEY("train", "arena_mb", KEY_INT, train.arena_mb),
    KEY("train", "threads", KEY_INT, train.threads),
    WORD("train", "device", train.device, "cpu|cuda"),
    KEY("ckpt", "every", KEY_INT, ckpt.every),
    KEY("ckpt", "keep_last", KEY_INT, ckpt.keep_last),
    KEY("log", "every", KEY_INT, log.every),
    KEY("run", "dir", KEY_PATH, run.dir),
};
#define N_KEYS (sizeof g_keys / sizeof *g_keys)

static const char *const g_sections[] = {"model", "data",  "optim", "loss",
                                         "train", "ckpt", "log",   "run"};
#define N_SECTIONS (sizeof g_sections / sizeof *g_sections)

void tl_config_defaults(tl_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  snprintf(cfg->model.preset, sizeof cfg->model.preset, "base");
  cfg->model.vocab = 65541;
  cfg->model.max_pos = 512;
  cfg->model.type_vocab = 3;
  cfg->model.dropout = 0.1;
  cfg->model.attn_dropout = 0.1;
  cfg->model.ln_eps = 1e-12;
  cfg->data.batch_size = 32;
  cfg->data.seq_len = 0;
  cfg->data.mask_prob = 0.15;
  cfg->data.shuffle = true;
  cfg->optim.lr = 1e-4;
  cfg->optim.betas[0] = 0.9;
  cfg->optim.betas[1] = 0.999;
  cfg->optim.eps = 1e-8;
  cfg->optim.weight_decay = 0.01;
  cfg->optim.bias_correction = true;
  cfg->optim.warmup = 0.1;
  snprintf(cfg->optim.schedule, sizeof cfg->optim.schedule, "linear");
  cfg->optim.clip_norm = 1.0;
  cfg->loss.w_mbm = 1.0;
  cfg->loss.w_sbp = 1.0;
  cfg->train.steps = 1000;
  cfg->train.seed = 42;
  cfg->train.accum_steps = 1;
  cfg->train.eval_every = 200;
  cfg->train.eval_batches = 20;
  cfg->train.arena_mb = 1024;
  snprintf(cfg->train.device, sizeof cfg->train.device, "cpu");
  cfg->ckpt.every = 500;
  cfg->ckpt.keep_last = 3;
  cfg->log.every = 10;
  snprintf(cfg->run.dir, sizeof cfg->run.dir, "runs/pretrain");
}

static const config_key *find_key(const char *section, const char *name) {
  for (size_t i = 0; i < N_KEYS; i++)
    if (!strcmp(g_keys[i].section, section) && !strcmp(g_keys[i].name, name)) return &g_keys[i];
  return NULL;
}

static bool is_section(const char *name) {
  for (size_t s = 0; s < N_SECTIONS; s++)
    if (!strcmp(g_sections[s], name)) return true;
  return false;
}

// ---------------------------------------------------------------------------
// Strict conversion of one text value. Returns NULL on success, else what was
// expected (for the error message).

static bool parse_double(const char *text, double *out) {
  char *end;
  errno = 0;
  double x = strtod(text, &end);
  while (*end == ' ') end++;
  if (end == text || *end || errno == ERANGE || !isfinite(x)) return false;
  *out = x;
  return true;
}

// Integers may be written "1000" or "1e5", but never with a fraction.
static bool parse_integer(const char *text, double lo, double hi, long double *out) {
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (end != text && !*end && errno == 0 && v >= lo && v <= hi) {
    *out = v;
    return true;
  }
  double x;
  if (!parse_double(text, &x) || x != floor(x) || x < lo || x > hi) return false;
  *out = x;
  return true;
}

static bool parse_bool(const char *text, bool *out) {
  static const char *yes[] = {"true", "True", "TRUE", "yes", "Yes", "on", "1"};
  static const char *no[] = {"false", "False", "FALSE", "no", "No", "off", "0"};
  for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
    if (!strcmp(text, yes[i])) return *out = true, true;
    if (!strcmp(text, no[i])) return *out = false, true;
  }
  return false;
}

static bool word_allowed(const char *choices, const char *text) {
  size_t n = strlen(text);
  for (const char *c = choices; c && *c;) {
    const char *bar = strchr(c, '|');
    size_t len = bar ? (size_t)(bar - c) : strlen(c);
    if (len == n && !strncmp(c, text, n)) return true;
    c = bar ? bar + 1 : NULL;
  }
  return false;
}

// element: which of a pair's two numbers text is (0 for other kinds).
static const char *convert_value(const config_key *k, tl_config *cfg, const char *text,
                                 int element) {
  char *field = (char *)cfg + k->offset;
  long double iv;
  double dv;
  switch (k->kind) {
  case KEY_INT:
    if (!parse_integer(text, -2147483648.0, 2147483647.0, &iv)) return "an integer";
    *(int *)field = (int)iv;
    return NULL;
  case KEY_I64:
    if (!parse_integer(text, -9.2e18, 9.2e18, &iv)) return "an integer";
    *(int64_t *)field = (int64_t)iv;
    return NULL;
  case KEY_U64: {
    // Seeds use all 64 bits, beyond what strtoll and a double hold exactly.
    char *end;
    errno = 0;
    unsigned long long u = strtoull(text, &end, 10);
    if (!strchr(text, '-') && end != text && !*end && errno == 0) {
      *(uint64_t *)field = u;
      return NULL;
    }
    if (!parse_integer(text, 0, 1.8e19, &iv)) return "a non-negative integer";
    *(uint64_t *)field = (uint64_t)iv;
    return NULL;
  }
  case KEY_FLOAT:
    if (!parse_double(text, &dv)) return "a number";
    *(double *)field = dv;
    return NULL;
  case KEY_PAIR:
    if (!parse_double(text, &dv)) return "a list of two numbers";
    ((double *)field)[element] = dv;
    return NULL;
  case KEY_BOOL:
    if (!parse_bool(text, (bool *)field)) return "true or false";
    return NULL;
  case KEY_WORD:
    if (!word_allowed(k->choices, text)) return tl_fmt("one of %s", k->choices);
    snprintf(field, TL_CONFIG_WORD_MAX, "%s", text);
    return NULL;
  case KEY_PATH:
    if (strlen(text) >= TL_CONFIG_PATH_MAX) return "a path shorter than 1024 bytes";
    snprintf(field, TL_CONFIG_PATH_MAX, "%s", text);
    return NULL;
  }
  return "a known type";
}

// ---------------------------------------------------------------------------
// libyaml: the line of a key, since libcyaml reports an unknown key at the line
// of its enclosing mapping. section NULL looks for a top-level key. 0 = not found.

static int yaml_key_line(const char *yaml, const char *section, const char *key) {
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) return 0;
  yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, strlen(yaml));
  // Open collections; for mappings, whether the next node is a key.
  bool is_map[64] = {0}, expect_key[64] = {0};
  int depth = 0, line = 0;
  bool in_section = false, done = false;
  while (!done && !line) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) break;
    yaml_event_type_t t = ev.type;
    bool at_key = depth > 0 && is_map[depth - 1] && expect_key[depth - 1];
    if (t == YAML_SCALAR_EVENT && at_key) {
      const char *s = (const char *)ev.data.scalar.value;
      int here = (int)ev.start_mark.line + 1;
      if (depth == 1 && !section && !strcmp(s, key)) line = here;
      if (depth == 1 && section) in_section = !strcmp(s, section);
      if (depth == 2 && in_section && !strcmp(s, key)) line = here;
    }
    // Every node inside a mapping alternates key, value, key...
    bool node = t == YAML_SCALAR_EVENT || t == YAML_ALIAS_EVENT ||
                t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT;
    if (node && depth > 0 && is_map[depth - 1]) expect_key[depth - 1] = !expect_key[depth - 1];
    if ((t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT) && depth < 64) {
      is_map[depth] = t == YAML_MAPPING_START_EVENT;
      expect_key[depth++] = true;
    }
    if ((t == YAML_MAPPING_END_EVENT || t == YAML_SEQUENCE_END_EVENT) && depth > 0) depth--;
    done = t == YAML_STREAM_END_EVENT;
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  return line;
}

// "name:12: " or "name: " when the line is unknown.
static const char *where(const char *name, int line) {
  static _Thread_local char buf[TL_CONFIG_PATH_MAX + 32];
  if (line > 0) snprintf(buf, sizeof buf, "%s:%d: ", name, line);
  else snprintf(buf, sizeof buf, "%s: ", name);
  return buf;
}

// ---------------------------------------------------------------------------
// The raw document libcyaml fills: per section, one text slot per key (a pair
// key's slot holds a char *[2] with its count in n[]).

typedef struct {
  void *v[N_KEYS];
  uint32_t n[N_KEYS];
} raw_section;

typedef struct {
  raw_section *sec[N_SECTIONS];
} raw_doc;

typedef struct {
  cyaml_schema_value_t entry;                        // one text in a pair
  cyaml_schema_field_t fields[N_SECTIONS][N_KEYS + 1];
  cyaml_schema_field_t top[N_SECTIONS + 1];
  cyaml_schema_value_t doc;
} raw_schema;

static void build_schema(raw_schema *s) {
  memset(s, 0, sizeof *s);
  s->entry = (cyaml_schema_value_t){CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0,
                                                       CYAML_UNLIMITED)};
  for (size_t sec = 0; sec < N_SECTIONS; sec++) {
    int n = 0;
    for (size_t i = 0; i < N_KEYS; i++) {
      if (strcmp(g_keys[i].section, g_sections[sec])) continue;
      cyaml_schema_field_t *f = &s->fields[sec][n++];
      if (g_keys[i].kind == KEY_PAIR) {
        *f = (cyaml_schema_field_t){
            .key = g_keys[i].name,
            .count_offset = (uint32_t)(offsetof(raw_section, n) + i * sizeof(uint32_t)),
            .count_size = sizeof(uint32_t),
            .value = {CYAML_VALUE_SEQUENCE(CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL |
                                               CYAML_FLAG_FLOW,
                                           char *, &s->entry, 2, 2)}};
      } else {
        *f = (cyaml_schema_field_t)CYAML_FIELD_STRING_PTR(
            "", CYAML_FLAG_OPTIONAL, raw_section, v[0], 0, CYAML_UNLIMITED);
        f->key = g_keys[i].name;
      }
      f->data_offset = (uint32_t)(offsetof(raw_section, v) + i * sizeof(void *));
    }
    s->fields[sec][n] = (cyaml_schema_field_t)CYAML_FIELD_END;
    s->top[sec] = (cyaml_schema_field_t)CYAML_FIELD_MAPPING_PTR(
        "", CYAML_FLAG_OPTIONAL, raw_doc, sec[0], s->fields[sec]);
    s->top[sec].key = g_sections[sec];
    s->top[sec].data_offset = (uint32_t)(offsetof(raw_doc, sec) + sec * sizeof(void *));
  }
  s->top[N_SECTIONS] = (cyaml_schema_field_t)CYAML_FIELD_END;
  s->doc = (cyaml_schema_value_t){CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, raw_doc, s->top)};
}

// libcyaml's messages (reason, then a backtrace, innermost first) collected so
// they can be turned into one line.
typedef struct {
  char text[4096];
  size_t len;
} log_buf;

static void collect_log(cyaml_log_t level, void *ctx, const char *fmt, va_list args) {
  log_buf *b = ctx;
  if (b->len + 1 >= sizeof b->text) return;
  int n = vsnprintf(b->text + b->len, sizeof b->text - b->len, fmt, args);
  if (n > 0) b->len += (size_t)n;
  if (b->len >= sizeof b->text) b->len = sizeof b->text - 1;
}

// libcyaml's "Expecting MAPPING, got event: SCALAR" in a user's words.
static void translate_reason(char *reason, size_t cap) {
  static const struct {
    const char *what, *word;
  } kinds[] = {{"MAPPING", "a section of 'key: value' lines"},
               {"SEQUENCE", "a list"},
               {"SCALAR", "a single value"},
               {"STRING", "a single value"}};
  char want[32], got[32];
  if (sscanf(reason, "Expecting %31[A-Z_], got event: %31[A-Z_]", want, got) != 2) return;
  const char *w = want, *g = got;
  for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
    if (!strncmp(want, kinds[i].what, strlen(kinds[i].what))) w = kinds[i].word;
    if (!strncmp(got, kinds[i].what, strlen(kinds[i].what))) g = kinds[i].word;
  }
  snprintf(reason, cap, "expected %s, got %s", w, g);
}

// Turns libcyaml's log into "name:LINE: what" (unknown keys located by libyaml).
static void set_load_error(const char *yaml, const char *name, const char *log,
                           cyaml_err_t err) {
  // The reason is the first message; fields of the backtrace name where it was.
  char reason[256] = "", inner[64] = "", outer[64] = "";
  int line = 0;
  const char *nl = strchr(log, '\n');
  size_t rlen = nl ? (size_t)(nl - log) : strlen(log);
  if (rlen >= sizeof reason) rlen = sizeof reason - 1;
  memcpy(reason, log, rlen);
  if (!strncmp(reason, "Load: ", 6)) memmove(reason, reason + 6, strlen(reason + 6) + 1);
  // A syntax error: libyaml places it; libcyaml would name the field before it.
  char syntax[256];
  int syntax_line = strstr(reason, "libyaml") ? tl_yaml_syntax_error(yaml, syntax, sizeof syntax)
                                              : 0;
  if (syntax_line > 0) {
    tl_set_error("%sYAML syntax: %s", where(name, syntax_line), syntax);
    return;
  }
  char twice_key[128];
  int first = 0;
  int twice = strstr(reason, "already seen")
                  ? tl_yaml_duplicate_key(yaml, &first, twice_key, sizeof twice_key)
                  : 0;
  if (twice > 0) {
    tl_set_error("%s%s: given twice (first on line %d)", where(name, twice), twice_key, first);
    return;
  }
  for (const char *p = log; (p = strstr(p, "  in ")); p++) {
    char field[64];
    int l = 0;
    const char *lp = strstr(p, "(line: ");
    if (lp && !line) sscanf(lp, "(line: %d", &l), line = l;
    if (sscanf(p, "  in mapping field '%63[^']'", field) == 1) {
      if (!inner[0]) snprintf(inner, sizeof inner, "%s", field);
      snprintf(outer, sizeof outer, "%s", field);
    }
  }
  char key[128];
  if (sscanf(reason, "Unexpected key: %127s", key) == 1) {
    // Unknown key: inside a section (outer) or a whole unknown section.
    if (outer[0] && is_section(outer)) {
      tl_set_error("%sunknown key '%s' in section '%s'",
                   where(name, yaml_key_line(yaml, outer, key)), key, outer);
    } else {
      tl_set_error("%sunknown section '%s' (expected one of model, data, optim, loss, "
                   "train, ckpt, log, run)", where(name, yaml_key_line(yaml, NULL, key)), key);
    }
    return;
  }
  if (!reason[0]) snprintf(reason, sizeof reason, "%s", cyaml_strerror(err));
  translate_reason(reason, sizeof reason);
  if (inner[0] && strcmp(inner, outer))
    tl_set_error("%s%s.%s: %s", where(name, line), outer, inner, reason);
  else if (inner[0])
    tl_set_error("%s%s: %s", where(name, line), inner, reason);
  else
    tl_set_error("%s%s", where(name, line), reason);
}

static const cyaml_config_t *cyaml_cfg(log_buf *log) {
  static _Thread_local cyaml_config_t c;
  c = (cyaml_config_t){.log_fn = collect_log,
                       .log_ctx = log,
                       .mem_fn = cyaml_mem,
                       .log_level = CYAML_LOG_ERROR,
                       .flags = CYAML_CFG_STYLE_BLOCK};
  return &c;
}

// Converts every value present in the raw document; first failure wins.
static tl_status convert_doc(tl_config *cfg, const raw_doc *doc, const char *yaml,
                             const char *name) {
  for (size_t i = 0; i < N_KEYS; i++) {
    const config_key *k = &g_keys[i];
    size_t sec = 0;
    while (strcmp(g_sections[sec], k->section)) sec++;
    const raw_section *rs = doc->sec[sec];
    if (!rs || !rs->v[i]) continue;
    const char *bad = NULL, *shown = NULL;
    if (k->kind == KEY_PAIR) {
      char **pair = rs->v[i];
      for (int e = 0; e < 2 && !bad; e++) bad = convert_value(k, cfg, shown = pair[e], e);
    } else {
      bad = convert_value(k, cfg, shown = rs->v[i], 0);
    }
    if (bad) {
      int line = yaml_key_line(yaml, k->section, k->name);
      tl_set_error("%s%s.%s: expected %s, got '%s'", where(name, line), k->section, k->name,
                   bad, shown);
      return TL_ERR;
    }
  }
  return TL_OK;
}

tl_status tl_config_load_string(tl_config *cfg, const char *yaml, const char *name) {
  raw_schema *schema = tl_xmalloc(sizeof *schema);
  build_schema(schema);
  log_buf log = {.len = 0};
  raw_doc *doc = NULL;
  tl_status st = TL_OK;

  // Structure first: libcyaml rejects unknown keys, lists where a value belongs...
  cyaml_err_t err = cyaml_load_data((const uint8_t *)yaml, strlen(yaml), cyaml_cfg(&log),
                                    &schema->doc, (cyaml_data_t **)&doc, NULL);
  if (err != CYAML_OK) {
    set_load_error(yaml, name, log.text, err);
    st = TL_ERR;
  } else if (doc) {
    // ... then every value by its type, strictly.
    st = convert_doc(cfg, doc, yaml, name);
  }
  if (doc) cyaml_free(cyaml_cfg(&log), &schema->doc, doc, 0);
  free(schema);
  return st;
}

// True when text holds nothing but blanks and comments.
static bool yaml_is_empty(const char *text) {
  for (const char *p = text; *p; p++) {
    if (*p == '#') p += strcspn(p, "\n");
    if (!*p) break;
    if (!strchr(" \t\r\n", *p)) return false;
  }
  return true;
}

tl_status tl_config_load(tl_config *cfg, const char *path) {
  char *yaml = tl_read_text_file(path);
  if (!yaml) return TL_ERR;
  // An empty file would silently train the defaults (a base-size model).
  if (yaml_is_empty(yaml)) {
    free(yaml);
    tl_set_error("%s: empty config (expected sections such as model, data, optim, train)",
                 path);
    return TL_ERR;
  }
  tl_status st = tl_config_load_string(cfg, yaml, path);
  free(yaml);
  return st;
}

// ---------------------------------------------------------------------------
// Overrides: "section.key=value", typed by the key table.

tl_status tl_config_set(tl_config *cfg, const char *assignment) {
  char buf[TL_CONFIG_PATH_MAX + 128];
  snprintf(buf, sizeof buf, "%s", assignment);
  char *eq = strchr(buf, '='), *dot = strchr(buf, '.');
  if (!eq || !dot || dot > eq) {
    tl_set_error("--set %s: expected section.key=value", assignment);
    return TL_ERR;
  }
  *eq = 0;
  *dot = 0;
  const char *section = buf, *name = dot + 1;
  char *value = eq + 1;
  const config_key *k = find_key(section, name);
  if (!k) {
    tl_set_error("--set %s: unknown key '%s' in section '%s'", assignment, name, section);
    return TL_ERR;
  }

  // A pair is "a,b" or "[a, b]"; everything else is one value.
  const char *bad = NULL;
  if (k->kind == KEY_PAIR) {
    char *v = value + strspn(value, " [");
    char *end = v + strlen(v);
    while (end > v && (end[-1] == ']' || end[-1] == ' ')) *--end = 0;
    char *comma = strchr(v, ',');
    if (!comma) {
      bad = "a list of two numbers";
    } else {
      *comma = 0;
      char *second = comma + 1 + strspn(comma + 1, " ");
      tl_config tmp = *cfg;
      bad = convert_value(k, &tmp, v, 0);
      if (!bad) bad = convert_value(k, &tmp, second, 1);
      if (!bad && strchr(second, ',')) bad = "a list of two numbers";
      if (!bad) *cfg = tmp;
    }
  } else {
    bad = convert_value(k, cfg, value, 0);
  }
  if (bad) {
    tl_set_error("--set %s: %s.%s expects %s", assignment, section, name, bad);
    return TL_ERR;
  }
  return TL_OK;
}

// ---------------------------------------------------------------------------
// Presets and cross-key checks.

typedef struct {
  const char *name;
  int hidden, layers, heads;
} model_preset;

// ET-BERT's shipped sizes (REFERENCE.md); FFN is 4x hidden for all of them.
static const model_preset g_presets[] = {
    {"tiny", 128, 2, 2},    {"mini", 256, 4, 4},   {"small", 512, 4, 8},
    {"medium", 512, 8, 8},  {"base", 768, 12, 12}, {"large", 1024, 24, 16},
};

#define CHECK(cond, ...)           \
  do {                             \
    if (!(cond)) {                 \
      tl_set_error(__VA_ARGS__);   \
      return TL_ERR;               \
    }                              \
  } while (0)

tl_status tl_config_resolve(tl_config *cfg) {
  // Sizes left at 0 come from the preset.
  const model_preset *p = NULL;
  for (size_t i = 0; i < sizeof g_presets / sizeof *g_presets; i++)
    if (!strcmp(g_presets[i].name, cfg->model.preset)) p = &g_presets[i];
  CHECK(p, "config: model.preset '%s' is not one of tiny|mini|small|medium|base|large",
        cfg->model.preset);
  if (cfg->model.hidden == 0) cfg->model.hidden = p->hidden;
  if (cfg->model.layers == 0) cfg->model.layers = p->layers;
  if (cfg->model.heads == 0) cfg->model.heads = p->heads;
  if (cfg->model.ffn == 0) cfg->model.ffn = 4 * cfg->model.hidden;

  // Shapes.
  CHECK(cfg->model.hidden > 0 && cfg->model.layers > 0 && cfg->model.heads > 0 &&
            cfg->model.ffn > 0, "config: model sizes must be positive");
  CHECK(cfg->model.hidden % cfg->model.heads == 0,
        "config: model.heads (%d) must divide model.hidden (%d)", cfg->model.heads,
        cfg->model.hidden);
  CHECK(cfg->model.vocab > 5, "config: model.vocab (%d) must exceed the 5 special tokens",
        cfg->model.vocab);
  CHECK(cfg->model.max_pos > 0 && cfg->model.type_vocab > 0,
        "config: model.max_pos and model.type_vocab must be positive");
  CHECK(cfg->model.dropout >= 0 && cfg->model.dropout < 1 && cfg->model.attn_dropout >= 0 &&
            cfg->model.attn_dropout < 1, "config: model dropout rates must be in [0, 1)");
  CHECK(cfg->data.seq_len <= cfg->model.max_pos,
        "config: data.seq_len (%d) exceeds model.max_pos (%d)", cfg->data.seq_len,
        cfg->model.max_pos);

  // Data and optimisation.
  CHECK(cfg->data.dir[0], "config: data.dir is required (the shard folder)");
  CHECK(cfg->run.dir[0], "config: run.dir is required");
  CHECK(cfg->data.batch_size > 0, "config: data.batch_size must be positive");
  CHECK(cfg->data.seq_len >= 0, "config: data.seq_len must be >= 0 (0: the shards')");
  CHECK(cfg->data.mask_prob > 0 && cfg->data.mask_prob < 1,
        "config: data.mask_prob (%g) must be in (0, 1)", cfg->data.mask_prob);
  CHECK(cfg->optim.lr >= 0, "config: optim.lr must be >= 0");
  CHECK(cfg->optim.betas[0] >= 0 && cfg->optim.betas[0] < 1 && cfg->optim.betas[1] >= 0 &&
            cfg->optim.betas[1] < 1, "config: optim.betas must be in [0, 1)");
  CHECK(cfg->optim.eps > 0, "config: optim.eps must be positive");
  CHECK(cfg->optim.weight_decay >= 0, "config: optim.weight_decay must be >= 0");
  CHECK(cfg->optim.warmup >= 0, "config: optim.warmup must be >= 0");
  CHECK(cfg->optim.clip_norm >= 0, "config: optim.clip_norm must be >= 0 (0: off)");
  CHECK(cfg->optim.min_lr >= 0 && cfg->optim.min_lr <= cfg->optim.lr,
        "config: optim.min_lr must be in [0, optim.lr]");

  // The loop.
  CHECK(cfg->train.steps > 0 || cfg->train.epochs > 0,
        "config: train.steps (or train.epochs) must be positive");
  CHECK(cfg->train.accum_steps > 0, "config: train.accum_steps must be positive");
  CHECK(cfg->train.eval_every >= 0 && cfg->train.eval_batches >= 0,
        "config: train.eval_every and train.eval_batches must be >= 0");
  CHECK(cfg->train.arena_mb > 0, "config: train.arena_mb must be positive");
  CHECK(cfg->train.threads >= 0, "config: train.threads must be >= 0");
  CHECK(cfg->ckpt.every >= 0 && cfg->ckpt.keep_last >= 0,
        "config: ckpt.every and ckpt.keep_last must be >= 0");
  CHECK(cfg->log.every > 0, "config: log.every must be positive");
  return TL_OK;
}

int64_t tl_config_warmup_steps(const tl_config *cfg) {
  if (cfg->optim.warmup < 1) return (int64_t)llround(cfg->optim.warmup * cfg->train.steps);
  return (int64_t)cfg->optim.warmup;
}

// ---------------------------------------------------------------------------
// Writing: every key as text through the same schema, so what is written reads back.

// The shortest decimal that reads back as exactly x.
static void format_double(char *out, size_t cap, double x) {
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(out, cap, "%.*g", prec, x);
    if (strtod(out, NULL) == x) return;
  }
}

static char *format_value(const config_key *k, const tl_config *cfg, int element) {
  const char *field = (const char *)cfg + k->offset;
  char buf[TL_CONFIG_PATH_MAX + 8];
  switch (k->kind) {
  case KEY_INT: snprintf(buf, sizeof buf, "%d", *(const int *)field); break;
  case KEY_I64: snprintf(buf, sizeof buf, "%lld", (long long)*(const int64_t *)field); break;
  case KEY_U64:
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)*(const uint64_t *)field);
    break;
  case KEY_FLOAT: format_double(buf, sizeof buf, *(const double *)field); break;
  case KEY_PAIR: format_double(buf, sizeof buf, ((const double *)field)[element]); break;
  case KEY_BOOL: snprintf(buf, sizeof buf, "%s", *(const bool *)field ? "true" : "false"); break;
  case KEY_WORD:
  case KEY_PATH: snprintf(buf, sizeof buf, "%s", field); break;
  }
  return tl_xstrdup(buf);
}

static void free_raw(raw_doc *doc) {
  for (size_t s = 0; s < N_SECTIONS; s++) {
    raw_section *rs = doc->sec[s];
    if (!rs) continue;
    for (size_t i = 0; i < N_KEYS; i++) {
      if (!rs->v[i]) continue;
      if (g_keys[i].kind == KEY_PAIR) {
        char **pair = rs->v[i];
        free(pair[0]);
        free(pair[1]);
      }
      free(rs->v[i]);
    }
    free(rs);
  }
}

char *tl_config_to_yaml(const tl_config *cfg) {
  // Fill a raw document with every key's text.
  raw_doc doc = {0};
  for (size_t s = 0; s < N_SECTIONS; s++) doc.sec[s] = tl_xcalloc(1, sizeof(raw_section));
  for (size_t i = 0; i < N_KEYS; i++) {
    size_t s = 0;
    while (strcmp(g_sections[s], g_keys[i].section)) s++;
    if (g_keys[i].kind == KEY_PAIR) {
      char **pair = tl_xmalloc(2 * sizeof *pair);
      pair[0] = format_value(&g_keys[i], cfg, 0);
      pair[1] = format_value(&g_keys[i], cfg, 1);
      doc.sec[s]->v[i] = pair;
      doc.sec[s]->n[i] = 2;
    } else {
      doc.sec[s]->v[i] = format_value(&g_keys[i], cfg, 0);
    }
  }

  // Emit it with libcyaml; its buffer is copied into a NUL-terminated string.
  raw_schema *schema = tl_xmalloc(sizeof *schema);
  build_schema(schema);
  log_buf log = {.len = 0};
  char *out = NULL, *text = NULL;
  size_t len = 0;
  cyaml_err_t err = cyaml_save_data(&out, &len, cyaml_cfg(&log), &schema->doc, &doc, 0);
  if (err == CYAML_OK) {
    text = tl_xmalloc(len + 1);
    memcpy(text, out, len);
    text[len] = 0;
  } else {
    tl_set_error("config: cannot write YAML: %s", cyaml_strerror(err));
  }
  cyaml_mem(NULL, out, 0);
  free(schema);
  free_raw(&doc);
  return text;
}

tl_status tl_config_save(const tl_config *cfg, const char *path) {
  char *text = tl_config_to_yaml(cfg);
  if (!text) return TL_ERR;
  char tmp[TL_CONFIG_PATH_MAX + 16];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);

  // Temp file then rename: a reader never sees half a config.
  tl_status st = TL_ERR;
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    tl_set_error("%s: cannot write config: %s", tmp, strerror(errno));
  } else {
    bool ok = fputs("# resolved by tl: every key, presets expanded\n", f) >= 0 &&
              fputs(text, f) >= 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok) tl_set_error("%s: cannot write config: %s", tmp, strerror(errno));
    else if (rename(tmp, path) != 0)
      tl_set_error("%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    else st = TL_OK;
  }
  free(text);
  return st;
}
