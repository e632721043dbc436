// Config tests: a good file, unknown keys and wrong types reported with file and
// line, --set overrides, preset resolution and a write/read round trip.
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "train/config.h"

// Writes text to a fresh file under /tmp; returns its path (static buffer).
static const char *write_tmp(const char *text) {
  static char path[64];
  snprintf(path, sizeof path, "/tmp/tl_test_config_XXXXXX");
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  return path;
}

Test(config, good_file) {
  const char *path = write_tmp("# a comment\n"
                               "model:\n  preset: tiny\n  layers: 3\n"
                               "data:\n  dir: /data/shards\n  batch_size: 8\n"
                               "optim:\n  lr: 2e-5\n  betas: [0.9, 0.98]\n"
                               "  bias_correction: false\n  schedule: cosine\n"
                               "train:\n  steps: 1e5\n  seed: 7\n"
                               "ckpt:\n  every: 100\n"
                               "run:\n  dir: runs/x\n");
  tl_config cfg;
  tl_config_defaults(&cfg);
  cr_assert_eq(tl_config_load(&cfg, path), TL_OK, "%s", tl_last_error());
  unlink(path);
  cr_assert_str_eq(cfg.model.preset, "tiny");
  cr_assert_str_eq(cfg.data.dir, "/data/shards");
  cr_assert_eq(cfg.data.batch_size, 8);
  cr_assert_eq(cfg.optim.lr, 2e-5);
  cr_assert_eq(cfg.optim.betas[0], 0.9);
  cr_assert_eq(cfg.optim.betas[1], 0.98);
  cr_assert_not(cfg.optim.bias_correction);
  cr_assert_str_eq(cfg.optim.schedule, "cosine");
  cr_assert_eq(cfg.train.steps, 100000);
  cr_assert_eq(cfg.train.seed, 7);
  cr_assert_eq(cfg.ckpt.every, 100);
  cr_assert_str_eq(cfg.run.dir, "runs/x");
  // Keys absent from the file keep their defaults.
  cr_assert_eq(cfg.optim.eps, 1e-8);
  cr_assert_eq(cfg.loss.w_mbm, 1.0);

  // Resolution expands the preset and keeps the explicit override.
  cr_assert_eq(tl_config_resolve(&cfg), TL_OK, "%s", tl_last_error());
  cr_assert_eq(cfg.model.hidden, 128);
  cr_assert_eq(cfg.model.heads, 2);
  cr_assert_eq(cfg.model.layers, 3);
  cr_assert_eq(cfg.model.ffn, 512);
  cr_assert_eq(tl_config_warmup_steps(&cfg), 10000);
}

Test(config, unknown_key_names_file_and_line) {
  const char *path = write_tmp("model:\n  preset: tiny\n"
                               "optim:\n  lr: 1e-3\n\n"
                               "  lerning_rate: 3\n");
  tl_config cfg;
  tl_config_defaults(&cfg);
  cr_assert_eq(tl_config_load(&cfg, path), TL_ERR);
  char want[256];
  snprintf(want, sizeof want, "%s:6: unknown key 'lerning_rate' in section 'optim'", path);
  cr_assert_str_eq(tl_last_error(), want);
  cr_assert_null(strchr(tl_last_error(), '\n'), "the message is one line");
  unlink(path);
}

Test(config, unknown_section) {
  const char *path = write_tmp("model:\n  preset: tiny\noptimizer:\n  lr: 1\n");
  tl_config cfg;
  tl_config_defaults(&cfg);
  cr_assert_eq(tl_config_load(&cfg, path), TL_ERR);
  char want[128];
  snprintf(want, sizeof want, "%s:3: unknown section 'optimizer'", path);
  cr_assert(strstr(tl_last_error(), want), "%s", tl_last_error());
  unlink(path);
}

Test(config, wrong_types_rejected_with_line) {
  struct {
    const char *yaml;
    const char *want; // after "path:"
  } cases[] = {
      {"train:\n  seed: 1\n  steps: abc\n", "3: train.steps: expected an integer, got 'abc'"},
      {"train:\n  steps: 1.5\n", "2: train.steps: expected an integer, got '1.5'"},
      {"optim:\n  lr: 1e-3x\n", "2: optim.lr: expected a number, got '1e-3x'"},
      {"optim:\n  bias_correction: maybe\n", "2: optim.bias_correction: expected true or false"},
      {"optim:\n  schedule: step\n", "2: optim.schedule: expected one of linear|cosine"},
      {"model:\n  preset: huge\n", "2: model.preset: expected one of tiny|"},
      {"optim:\n  lr: [1, 2]\n", "2: optim.lr: "},
      {"optim:\n  betas: [0.9]\n", "2: optim.betas: "},
      {"train:\n  seed: -1\n", "2: train.seed: expected a non-negative integer"},
      // Syntax errors at libyaml's line, keys given twice at the second one.
      {"model:\n  preset: tiny\n    layers: 3\n", "3: YAML syntax: mapping values"},
      {"model:\n  preset: \"tiny\n  hidden: 64\n", "4: YAML syntax: found unexpected end"},
      {"model:\n  hidden: 64\n  hidden: 32\n", "3: hidden: given twice (first on line 2)"},
      {"model:\n  hidden: 64\nmodel:\n  layers: 2\n", "3: model: given twice (first on line 1)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const char *path = write_tmp(cases[i].yaml);
    tl_config cfg;
    tl_config_defaults(&cfg);
    cr_assert_eq(tl_config_load(&cfg, path), TL_ERR, "case %zu accepted", i);
    char want[256];
    snprintf(want, sizeof want, "%s:%s", path, cases[i].want);
    cr_assert(!strncmp(tl_last_error(), want, strlen(want)), "case %zu: got '%s', want '%s'",
              i, tl_last_error(), want);
    cr_assert_null(strchr(tl_last_error(), '\n'));
    unlink(path);
  }
}

Test(config, set_overrides) {
  tl_config cfg;
  tl_config_defaults(&cfg);
  cr_assert_eq(tl_config_set(&cfg, "optim.lr=3e-4"), TL_OK, "%s", tl_last_error());
  cr_assert_eq(cfg.optim.lr, 3e-4);
  cr_assert_eq(tl_config_set(&cfg, "optim.betas=0.8,0.95"), TL_OK, "%s", tl_last_error());
  cr_assert_eq(cfg.optim.betas[0], 0.8);
  cr_assert_eq(cfg.optim.betas[1], 0.95);
  cr_assert_eq(tl_config_set(&cfg, "optim.betas=[0.7, 0.9]"), TL_OK, "%s", tl_last_error());
  cr_assert_eq(cfg.optim.betas[0], 0.7);
  cr_assert_eq(tl_config_set(&cfg, "data.dir=/x/y=z"), TL_OK, "%s", tl_last_error());
  cr_assert_str_eq(cfg.data.dir, "/x/y=z");
  cr_assert_eq(tl_config_set(&cfg, "train.steps=20"), TL_OK);
  cr_assert_eq(cfg.train.steps, 20);

  // Errors name the key, and a failed pair leaves the old value.
  cr_assert_eq(tl_config_set(&cfg, "optim.lr=fast"), TL_ERR);
  cr_assert(strstr(tl_last_error(), "optim.lr"), "%s", tl_last_error());
  cr_assert_eq(tl_config_set(&cfg, "optim.lerning_rate=1"), TL_ERR);
  cr_assert(strstr(tl_last_error(), "unknown key 'lerning_rate'"), "%s", tl_last_error());
  cr_assert_eq(tl_config_set(&cfg, "steps=1"), TL_ERR);
  cr_assert_eq(tl_config_set(&cfg, "optim.betas=0.5,x"), TL_ERR);
  cr_assert_eq(cfg.optim.betas[0], 0.7);
  cr_assert_eq(tl_config_set(&cfg, "train.device=tpu"), TL_ERR);
}

Test(config, resolve_checks) {
  tl_config cfg;
  tl_config_defaults(&cfg);
  cr_assert_eq(tl_config_resolve(&cfg), TL_ERR, "data.dir is required");
  cr_assert(strstr(tl_last_error(), "data.dir"));
  tl_config_defaults(&cfg);
  tl_config_set(&cfg, "data.dir=x");
  tl_config_set(&cfg, "model.heads=5");
  cr_assert_eq(tl_config_resolve(&cfg), TL_ERR);
  cr_assert(strstr(tl_last_error(), "model.heads"), "%s", tl_last_error());
}

Test(config, round_trip) {
  // A config unlike the defaults in every section.
  tl_config a;
  tl_config_defaults(&a);
  const char *sets[] = {"model.preset=mini", "model.ln_eps=1e-6", "model.init=ck pt/a.st",
                        "data.dir=/d", "data.batch_size=3", "data.shuffle=false",
                        "optim.lr=2e-5", "optim.betas=0.85,0.975", "optim.eps=1e-6",
                        "optim.weight_decay=0", "optim.bias_correction=no",
                        "optim.warmup=0.1", "optim.clip_norm=0", "loss.w_mbm=0.1",
                        "train.steps=123456789012", "train.seed=18446744073709551615",
                        "train.device=cuda", "ckpt.keep_last=7", "log.every=3",
                        "run.dir=runs/r 1"};
  for (size_t i = 0; i < sizeof sets / sizeof *sets; i++)
    cr_assert_eq(tl_config_set(&a, sets[i]), TL_OK, "%s", tl_last_error());
  cr_assert_eq(tl_config_resolve(&a), TL_OK, "%s", tl_last_error());

  // Save, then load over plain defaults.
  char path[] = "/tmp/tl_test_config_rt_XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  cr_assert_eq(tl_config_save(&a, path), TL_OK, "%s", tl_last_error());
  tl_config b;
  tl_config_defaults(&b);
  cr_assert_eq(tl_config_load(&b, path), TL_OK, "%s", tl_last_error());
  unlink(path);

  cr_assert_str_eq(b.model.preset, "mini");
  cr_assert_eq(b.model.hidden, 256);
  cr_assert_eq(b.model.ffn, 1024);
  cr_assert_eq(b.model.ln_eps, 1e-6);
  cr_assert_str_eq(b.model.init, "ck pt/a.st");
  cr_assert_str_eq(b.data.dir, "/d");
  cr_assert_eq(b.data.batch_size, 3);
  cr_assert_not(b.data.shuffle);
  cr_assert_eq(b.optim.lr, 2e-5);
  cr_assert_eq(b.optim.betas[0], 0.85);
  cr_assert_eq(b.optim.betas[1], 0.975);
  cr_assert_eq(b.optim.eps, 1e-6);
  cr_assert_eq(b.optim.weight_decay, 0);
  cr_assert_not(b.optim.bias_correction);
  cr_assert_eq(b.optim.clip_norm, 0);
  cr_assert_eq(b.loss.w_mbm, 0.1);
  cr_assert_eq(b.train.steps, 123456789012LL);
  cr_assert_eq(b.train.seed, 18446744073709551615ULL);
  cr_assert_str_eq(b.train.device, "cuda");
  cr_assert_eq(b.ckpt.keep_last, 7);
  cr_assert_eq(b.log.every, 3);
  cr_assert_str_eq(b.run.dir, "runs/r 1");

  // And the text of the two is the same.
  char *ta = tl_config_to_yaml(&a), *tb = tl_config_to_yaml(&b);
  cr_assert_str_eq(ta, tb);
  free(ta);
  free(tb);
}

Test(config, shipped_configs_load_and_resolve) {
  const char *names[] = {"etbert-tiny", "etbert-mini", "etbert-base", "etbert-compat"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/configs/%s.yaml", TL_SOURCE_DIR, names[i]);
    tl_config cfg;
    tl_config_defaults(&cfg);
    cr_assert_eq(tl_config_load(&cfg, path), TL_OK, "%s", tl_last_error());
    cr_assert_eq(tl_config_resolve(&cfg), TL_OK, "%s: %s", path, tl_last_error());
  }
  // The compat preset is the published recipe (REFERENCE.md).
  char path[512];
  snprintf(path, sizeof path, "%s/configs/etbert-compat.yaml", TL_SOURCE_DIR);
  tl_config c;
  tl_config_defaults(&c);
  cr_assert_eq(tl_config_load(&c, path), TL_OK);
  cr_assert_eq(tl_config_resolve(&c), TL_OK);
  cr_assert_eq(c.model.hidden, 768);
  cr_assert_eq(c.model.layers, 12);
  cr_assert_eq(c.optim.lr, 2e-5);
  cr_assert_eq(tl_config_warmup_steps(&c), c.train.steps / 10);
  cr_assert_str_eq(c.optim.schedule, "linear");
  cr_assert_not(c.optim.bias_correction);
  cr_assert_eq(c.optim.eps, 1e-6);
  cr_assert_eq(c.optim.weight_decay, 0);
  cr_assert_eq(c.optim.clip_norm, 0);
  cr_assert_eq(c.loss.w_mbm, 0.1);
  cr_assert_eq(c.loss.w_sbp, 1);
  cr_assert_eq(c.data.batch_size, 32);
  cr_assert_eq(c.data.seq_len, 128);
}

// An empty file (or only comments) is refused rather than training the defaults.
Test(config, empty_file_is_refused) {
  const char *path = write_tmp("# only a comment\n\n");
  tl_config c;
  tl_config_defaults(&c);
  cr_assert_eq(tl_config_load(&c, path), TL_ERR);
  cr_expect(strstr(tl_last_error(), "empty config"), "%s", tl_last_error());
  cr_expect(strstr(tl_last_error(), path), "%s", tl_last_error());
}
