// finetune_main.c: tl-finetune, ET-BERT fine-tuning on packet or flow shards,
// ending with the test-split report (finetune.h).
#include <unistd.h>

#include "train/finetune.h"
#include "train/run_cli.h"

static volatile sig_atomic_t g_stop;

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
  tl_run_cli cli;
  int status = tl_run_cli_parse(argc, argv, "tl-finetune", usage, tl_finetune_resume_config,
                                &cli);
  if (status >= 0) return status;

  // Train, then the test report.
  tl_run_cli_catch_signals(&g_stop);
  tl_finetune_opts opts = {.resume_dir = cli.resume, .progress = isatty(2), .print_table = true,
                           .stop = &g_stop};
  if (tl_finetune_run(&cli.cfg, &opts) != TL_OK) {
    fprintf(stderr, "tl-finetune: %s\n", tl_last_error());
    return 1;
  }
  return 0;
}
