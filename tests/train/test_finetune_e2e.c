// test_finetune_e2e.c: the whole job on real captures from ../shared/data/pcaps:
// tl-prep (library) makes packet and pre-training shards of five protocols, a
// tiny BERT pre-trains briefly, tl-finetune fine-tunes it and scores the test
// split, tl-eval scores the best checkpoint again. Checks: the macro F1 is well
// above the majority-class baseline, no flow is in two splits, the report files
// are there and agree, and tl-eval repeats tl-finetune's figures exactly.
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/prep.h"
#include "data/shards.h"
#include "train/finetune.h"
#include "train/pretrain.h"

static char g_root[64];
static const char *k_classes[] = {"dns", "ntp", "snmp", "ssh", "dhcp"};
#define N_CLASSES 5

static void path_of(char *out, size_t cap, const char *name) {
  snprintf(out, cap, "%s/%s", g_root, name);
}

// A label CSV of every capture of the chosen classes (absolute paths), from the
// shared MANIFEST.tsv.
static void write_label_csv(const char *csv) {
  char manifest[512];
  snprintf(manifest, sizeof manifest, "%s/data/pcaps/MANIFEST.tsv", TL_SHARED_DIR);
  FILE *in = fopen(manifest, "r"), *out = fopen(csv, "w");
  cr_assert(in && out, "cannot read %s or write %s", manifest, csv);
  fprintf(out, "path,label\n");
  char line[4096];
  int n = 0;
  while (fgets(line, sizeof line, in)) {
    char *path = strtok(line, "\t"), *label = strtok(NULL, "\t");
    if (!path || !label) continue;
    for (int c = 0; c < N_CLASSES; c++)
      if (!strcmp(label, k_classes[c])) {
        fprintf(out, "%s/data/pcaps/%s,%s\n", TL_SHARED_DIR, path, label);
        n++;
      }
  }
  fclose(in);
  fclose(out);
  cr_assert_gt(n, 20, "only %d captures of the chosen classes", n);
}

// tl-prep through its library: task, output folder and a few options.
static void prep(const char *csv, tl_task task, const char *out, const char *const *opts,
                 int n_opts) {
  tl_prep_options o;
  tl_prep_options_default(&o, task);
  if (task != TL_TASK_PRETRAIN) {
    o.labels_csv = tl_xstrdup(csv);
  } else {
    // Pre-training takes every capture below its inputs: the class folders.
    o.in = tl_xcalloc(N_CLASSES, sizeof *o.in);
    for (int c = 0; c < N_CLASSES; c++) {
      char dir[512];
      snprintf(dir, sizeof dir, "%s/data/pcaps/%s", TL_SHARED_DIR, k_classes[c]);
      o.in[o.n_in++] = tl_xstrdup(dir);
    }
  }
  cr_assert_eq(tl_prep_set_option(&o, "out", out, "test"), TL_OK);
  for (int i = 0; i < n_opts; i += 2)
    cr_assert_eq(tl_prep_set_option(&o, opts[i], opts[i + 1], "test"), TL_OK, "%s",
                 tl_last_error());
  o.progress = 0;
  cr_assert_eq(tl_prep_run(&o, NULL, NULL), TL_OK, "%s", tl_last_error());
  tl_prep_options_free(&o);
}

static void set_all(tl_config *c, const char *const *sets, int n) {
  for (int i = 0; i < n; i++)
    cr_assert_eq(tl_config_set(c, sets[i]), TL_OK, "%s: %s", sets[i], tl_last_error());
}

static cJSON *read_json(const char *path) {
  FILE *f = fopen(path, "rb");
  cr_assert(f, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = malloc((size_t)len + 1);
  cr_assert_eq(fread(text, 1, (size_t)len, f), (size_t)len);
  text[len] = 0;
  fclose(f);
  cJSON *o = cJSON_Parse(text);
  free(text);
  cr_assert(o, "bad JSON in %s", path);
  return o;
}

static double num(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  cr_assert(cJSON_IsNumber(v), "no number '%s'", key);
  return v->valuedouble;
}

// Flow ids of one split, sorted.
static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static int64_t *split_flows(const char *dir, const char *split, int64_t *n) {
  tl_shards *s = tl_shards_open(dir, split);
  cr_assert(s, "%s", tl_last_error());
  *n = tl_shards_rows(s);
  int64_t *ids = malloc((size_t)(*n > 0 ? *n : 1) * sizeof *ids);
  cr_assert_eq(tl_shards_read(s, 0, *n, &(tl_shard_rows){.flow_ids = ids}), TL_OK);
  tl_shards_close(s);
  qsort(ids, (size_t)*n, sizeof *ids, cmp_i64);
  return ids;
}

static int64_t shared_ids(const int64_t *a, int64_t na, const int64_t *b, int64_t nb) {
  int64_t i = 0, j = 0, shared = 0;
  while (i < na && j < nb) {
    if (a[i] < b[j]) i++;
    else if (a[i] > b[j]) j++;
    else shared++, i++, j++;
  }
  return shared;
}

static int count_lines(const char *path) {
  FILE *f = fopen(path, "r");
  cr_assert(f, "cannot open %s", path);
  int n = 0, ch;
  while ((ch = fgetc(f)) != EOF) n += ch == '\n';
  fclose(f);
  return n;
}

static void setup(void) {
  snprintf(g_root, sizeof g_root, "/tmp/tl_test_e2e_XXXXXX");
  cr_assert_not_null(mkdtemp(g_root));
}

static void teardown(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_root);
}

Test(finetune_e2e, real_captures_prep_pretrain_finetune_eval, .init = setup,
     .fini = teardown, .timeout = 900) {
  char csv[128], packet[128], pre[128], pre_run[128], ft_run[128], ev_dir[128], p[256];
  path_of(csv, sizeof csv, "labels.csv");
  path_of(packet, sizeof packet, "packet");
  path_of(pre, sizeof pre, "pretrain");
  path_of(pre_run, sizeof pre_run, "run-pretrain");
  path_of(ft_run, sizeof ft_run, "run-finetune");
  path_of(ev_dir, sizeof ev_dir, "eval");

  // 1. Shards: packet classification (split by flow) and burst pairs.
  write_label_csv(csv);
  const char *popts[] = {"seq_len", "64", "packet_bytes", "64", "max_per_class", "150",
                         "min_per_class", "10", "seed", "7"};
  prep(csv, TL_TASK_PACKET, packet, popts, 10);
  const char *bopts[] = {"seq_len", "64", "seed", "7"};
  prep(csv, TL_TASK_PRETRAIN, pre, bopts, 4);

  // 2. No flow in two splits.
  int64_t n[3];
  int64_t *ids[3] = {split_flows(packet, "train", &n[0]), split_flows(packet, "valid", &n[1]),
                     split_flows(packet, "test", &n[2])};
  cr_assert(n[0] > 0 && n[1] > 0 && n[2] > 0, "rows %lld %lld %lld", (long long)n[0],
            (long long)n[1], (long long)n[2]);
  cr_assert_eq(shared_ids(ids[0], n[0], ids[1], n[1]), 0, "a flow in train and valid");
  cr_assert_eq(shared_ids(ids[0], n[0], ids[2], n[2]), 0, "a flow in train and test");
  cr_assert_eq(shared_ids(ids[1], n[1], ids[2], n[2]), 0, "a flow in valid and test");
  for (int s = 0; s < 3; s++) free(ids[s]);

  // 3. A brief pre-training of a very small BERT.
  tl_config pc;
  tl_config_defaults(&pc);
  const char *psets[] = {"model.preset=tiny", "model.hidden=64", "model.heads=2",
                         "model.layers=2", "model.max_pos=64", "data.batch_size=16",
                         "optim.lr=1e-3", "train.steps=40", "train.eval_every=0",
                         "train.eval_batches=2", "train.arena_mb=128", "ckpt.every=0",
                         "log.every=10"};
  set_all(&pc, psets, sizeof psets / sizeof *psets);
  snprintf(pc.data.dir, sizeof pc.data.dir, "%s", pre);
  snprintf(pc.run.dir, sizeof pc.run.dir, "%s", pre_run);
  cr_assert_eq(tl_config_resolve(&pc), TL_OK, "%s", tl_last_error());
  tl_pretrain_opts po = {0};
  cr_assert_eq(tl_pretrain_run(&pc, &po), TL_OK, "%s", tl_last_error());

  // 4. Fine-tune from it (sizes come from the checkpoint; the preset here is ignored).
  tl_config fc;
  tl_config_defaults(&fc);
  const char *fsets[] = {"model.preset=base", "data.batch_size=16", "optim.lr=1e-3",
                         "optim.warmup=0.1", "train.epochs=4", "train.arena_mb=128",
                         "ckpt.keep_last=1", "log.every=10"};
  set_all(&fc, fsets, sizeof fsets / sizeof *fsets);
  snprintf(fc.data.dir, sizeof fc.data.dir, "%s", packet);
  snprintf(fc.run.dir, sizeof fc.run.dir, "%s", ft_run);
  snprintf(fc.model.init, sizeof fc.model.init, "%s", pre_run); // a run folder: newest ckpt
  cr_assert_eq(tl_config_resolve(&fc), TL_OK, "%s", tl_last_error());
  tl_finetune_opts fo = {0};
  cr_assert_eq(tl_finetune_run(&fc, &fo), TL_OK, "%s", tl_last_error());

  // 5. The report: F1 well above always answering the commonest train class.
  snprintf(p, sizeof p, "%s/eval.json", ft_run);
  cJSON *ev = read_json(p);
  double f1 = num(ev, "macro_f1");
  double maj = num(cJSON_GetObjectItemCaseSensitive(ev, "majority"), "macro_f1");
  double shortcut = num(cJSON_GetObjectItemCaseSensitive(ev, "shortcut"), "macro_f1");
  fprintf(stderr, "e2e: test macro F1 %.4f, majority %.4f, shortcut %.4f\n", f1, maj, shortcut);
  cr_assert_lt(maj, 1.0 / N_CLASSES + 1e-9, "majority baseline %.4f", maj);
  cr_assert_gt(f1, maj + 0.3, "macro F1 %.4f vs majority %.4f", f1, maj);
  cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(ev, "split_policy")->valuestring, "flow");
  cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(ev, "per_class")),
               N_CLASSES);
  snprintf(p, sizeof p, "%s/predictions.csv", ft_run);
  cr_assert_eq(count_lines(p), n[2] + 1, "header + one line per test row");
  const char *files[] = {"confusion.csv", "confusion.svg", "best.safetensors", "labels.json",
                         "config.yaml", "metrics.jsonl"};
  struct stat sb;
  for (int i = 0; i < 6; i++) {
    snprintf(p, sizeof p, "%s/%s", ft_run, files[i]);
    cr_assert_eq(stat(p, &sb), 0, "missing %s", p);
  }

  // 6. tl-eval on the best checkpoint repeats the figures exactly.
  snprintf(p, sizeof p, "%s/best.safetensors", ft_run);
  tl_eval_opts eo = {.checkpoint = p, .data_dir = packet, .split = "test", .out_dir = ev_dir,
                     .shortcut = true};
  tl_eval_summary s;
  cr_assert_eq(tl_eval_run(&eo, &s), TL_OK, "%s", tl_last_error());
  // eval.json went through cJSON, which prints 15 significant digits whenever
  // they read back within DBL_EPSILON: equal up to that, not bit for bit.
  cr_assert_float_eq(s.macro_f1, f1, 1e-14, "%.17g vs %.17g", s.macro_f1, f1);
  cr_assert_float_eq(s.shortcut_macro_f1, shortcut, 1e-14, "%.17g vs %.17g",
                     s.shortcut_macro_f1, shortcut);
  cr_assert_eq(s.n, n[2]);
  cJSON_Delete(ev);
}
