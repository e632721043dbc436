// finetune_main.c: tl-finetune, ET-BERT fine-tuning on packet or flow shards,
// ending with the test-split report (finetune.h).
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "train/finetune.h"

static volatile sig_atomic_t g_stop;

// First Ctrl-C: finish the step, checkpoint, exit. Second: the default (die).
static void on_signal(int sig) {
  g_stop = 1;
  signal(sig, SIG_DFL);
}

static void usage(FILE *f) {
  fputs("usage: tl-finetune --config FILE.yaml [--set section.key=value ...]\n"
        "       tl-finetune --resume RUN_DIR [--set section.key=value ...]\n"
        "Fine-tunes an ET-BERT classifier on shards made by `tl-prep --task packet|flow`,\n"
        "keeps the epoch with the best validation macro F1, then scores the test split\n"
        "(beside a header-only shortcut baseline) and prints the F1 table.\n"
        "  --config FILE    run configuration (configs/finetune-*.yaml)\n"
        "  --set K=V        override one key, e.g. --set model.init=runs/etbert-tiny\n"
        "                   (a tl-pretrain checkpoint, or a run folder: its newest one)\n"
        "                   (model.init empty: random init, the no-pre-training baseline)\n"
        "  --resume DIR     continue the run in DIR from its newest checkpoint\n"
        "  --help           this text\n"
        "Writes into run.dir: config.yaml, labels.json, metrics.jsonl, checkpoints/,\n"
        "best.safetensors, eval.json, predictions.csv, confusion.csv, confusion.svg.\n",
        f);
}

int main(int argc, char **argv) {
  const char *config = NULL, *resume = NULL;
  const char **sets = calloc((size_t)argc, sizeof *sets);
  int n_sets = 0;

  // Arguments.
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has_value = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--config") && has_value) {
      config = argv[++i];
    } else if (!strcmp(a, "--resume") && has_value) {
      resume = argv[++i];
    } else if (!strcmp(a, "--set") && has_value) {
      sets[n_sets++] = argv[++i];
    } else {
      fprintf(stderr, "tl-finetune: unexpected argument '%s' (or a missing value)\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!config && !resume) {
    fprintf(stderr, "tl-finetune: --config FILE or --resume RUN_DIR is required\n");
    usage(stderr);
    return 2;
  }

  // Config: the file (or the checkpoint's, to resume), then overrides, then presets.
  tl_config cfg;
  tl_config_defaults(&cfg);
  tl_status st;
  if (resume) {
    if (config) tl_warn("--resume uses the config saved in the checkpoint; ignoring %s", config);
    st = tl_finetune_resume_config(resume, &cfg);
  } else {
    st = tl_config_load(&cfg, config);
  }
  for (int i = 0; i < n_sets && st == TL_OK; i++) st = tl_config_set(&cfg, sets[i]);
  if (st == TL_OK && resume) snprintf(cfg.run.dir, sizeof cfg.run.dir, "%s", resume);
  if (st == TL_OK) st = tl_config_resolve(&cfg);
  if (st != TL_OK) {
    fprintf(stderr, "tl-finetune: %s\n", tl_last_error());
    return 2;
  }

  // Train, then the test report.
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  tl_finetune_opts opts = {.resume_dir = resume, .progress = isatty(2), .print_table = true,
                           .stop = &g_stop};
  st = tl_finetune_run(&cfg, &opts);
  free(sets);
  if (st != TL_OK) {
    fprintf(stderr, "tl-finetune: %s\n", tl_last_error());
    return 1;
  }
  return 0;
}
