// pretrain_main.c: tl-pretrain, ET-BERT pre-training (MBM + SBP) from the
// shards of `tl-prep --task pretrain`.
#include <unistd.h>

#include "train/pretrain.h"
#include "train/run_cli.h"

static volatile sig_atomic_t g_stop;

static void usage(FILE *f) {
  fputs("usage: tl-pretrain --config FILE.yaml [--set section.key=value ...]\n"
        "       tl-pretrain --resume RUN_DIR [--set section.key=value ...]\n"
        "Pre-trains an ET-BERT encoder (masked-burst model + same-origin burst\n"
        "prediction) on shards made by `tl-prep --task pretrain`.\n"
        "  --config FILE    run configuration (configs/etbert-*.yaml)\n"
        "  --set K=V        override one key, e.g. --set train.steps=200 --set data.dir=shards\n"
        "  --resume DIR     continue the run in DIR from its newest checkpoint, exactly\n"
        "                   (its saved config; --set may extend train.steps)\n"
        "  --help           this text\n"
        "Writes DIR/config.yaml, DIR/metrics.jsonl and DIR/checkpoints/ (run.dir).\n"
        "Ctrl-C checkpoints at the end of the current step and exits.\n",
        f);
}

// The saved config of a run, for --resume.
static tl_status resume_config(const char *run_dir, tl_config *cfg) {
  return tl_pretrain_resume_config(run_dir, cfg, NULL, 0);
}

int main(int argc, char **argv) {
  tl_run_cli cli;
  int status = tl_run_cli_parse(argc, argv, "tl-pretrain", usage, resume_config, &cli);
  if (status >= 0) return status;

  // Train.
  tl_run_cli_catch_signals(&g_stop);
  tl_pretrain_opts opts = {.resume_dir = cli.resume, .progress = isatty(2), .stop = &g_stop};
  if (tl_pretrain_run(&cli.cfg, &opts) != TL_OK) {
    fprintf(stderr, "tl-pretrain: %s\n", tl_last_error());
    return 1;
  }
  return 0;
}
