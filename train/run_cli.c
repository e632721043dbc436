#include "train/run_cli.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int tl_run_cli_parse(int argc, char **argv, const char *cmd, void (*usage)(FILE *),
                     tl_resume_config_fn resume_config, tl_run_cli *out) {
  const char *config = NULL;
  const char **sets = tl_xcalloc((size_t)argc, sizeof *sets);
  int n_sets = 0, status = -1;
  out->resume = NULL;

  // Arguments.
  for (int i = 1; i < argc && status < 0; i++) {
    const char *a = argv[i];
    bool has_value = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      status = 0;
    } else if (!strcmp(a, "--config") && has_value) {
      config = argv[++i];
    } else if (!strcmp(a, "--resume") && has_value) {
      out->resume = argv[++i];
    } else if (!strcmp(a, "--set") && has_value) {
      sets[n_sets++] = argv[++i];
    } else {
      fprintf(stderr, "%s: unexpected argument '%s' (or a missing value)\n", cmd, a);
      usage(stderr);
      status = 2;
    }
  }
  if (status < 0 && !config && !out->resume) {
    fprintf(stderr, "%s: --config FILE or --resume RUN_DIR is required\n", cmd);
    usage(stderr);
    status = 2;
  }
  if (status >= 0) {
    free(sets);
    return status;
  }

  // Config: the file (or the checkpoint's, to resume), then overrides, then presets.
  tl_config *cfg = &out->cfg;
  tl_config_defaults(cfg);
  tl_status st;
  if (out->resume) {
    if (config) tl_warn("--resume uses the config saved in the checkpoint; ignoring %s", config);
    st = resume_config(out->resume, cfg);
  } else {
    st = tl_config_load(cfg, config);
  }
  for (int i = 0; i < n_sets && st == TL_OK; i++) st = tl_config_set(cfg, sets[i]);
  if (st == TL_OK && out->resume) snprintf(cfg->run.dir, sizeof cfg->run.dir, "%s", out->resume);
  if (st == TL_OK) st = tl_config_resolve(cfg);
  free(sets);
  if (st != TL_OK) {
    fprintf(stderr, "%s: %s\n", cmd, tl_last_error());
    return 2;
  }
  return -1;
}

static volatile sig_atomic_t *g_stop;

static void on_signal(int sig) {
  *g_stop = 1;
  signal(sig, SIG_DFL);
}

void tl_run_cli_catch_signals(volatile sig_atomic_t *stop) {
  g_stop = stop;
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
}
