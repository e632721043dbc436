// eval_main.c: tl-eval, scores a fine-tuned checkpoint on a shard split and
// writes the report files (finetune.h, report.h).
#include <stdlib.h>
#include <string.h>

#include "train/finetune.h"

static void usage(FILE *f) {
  fputs("usage: tl-eval --checkpoint CKPT --data SHARD_DIR [--split test] --out DIR\n"
        "               [--batch N] [--threads N] [--no-shortcut]\n"
        "Scores a checkpoint made by tl-finetune on one split of a packet or flow shard\n"
        "set: accuracy, macro and weighted precision/recall/F1, per-class table,\n"
        "confusion matrix, per-row predictions, and the F1 of a header-only shortcut\n"
        "baseline fitted on the set's train split.\n"
        "  --checkpoint F   e.g. runs/finetune-packet/best.safetensors\n"
        "  --data DIR       shard set (tl-prep output, manifest.json inside)\n"
        "  --split S        train, valid or test (default test)\n"
        "  --out DIR        writes eval.json, predictions.csv, confusion.csv, confusion.svg\n"
        "  --batch N        rows per forward pass (default: the checkpoint's data.batch_size)\n"
        "  --threads N      OpenMP threads (default: the runtime's)\n"
        "  --no-shortcut    skip the header-only shortcut audit\n",
        f);
}

// A positive integer argument, or -1.
static int positive(const char *s) {
  char *end;
  long v = strtol(s, &end, 10);
  return *s && !*end && v > 0 && v < 1 << 30 ? (int)v : -1;
}

int main(int argc, char **argv) {
  tl_eval_opts o = {.split = "test", .shortcut = true, .print_table = true};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has_value = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--checkpoint") && has_value) {
      o.checkpoint = argv[++i];
    } else if (!strcmp(a, "--data") && has_value) {
      o.data_dir = argv[++i];
    } else if (!strcmp(a, "--split") && has_value) {
      o.split = argv[++i];
    } else if (!strcmp(a, "--out") && has_value) {
      o.out_dir = argv[++i];
    } else if ((!strcmp(a, "--batch") || !strcmp(a, "--threads")) && has_value) {
      int v = positive(argv[++i]);
      if (v < 0) {
        fprintf(stderr, "tl-eval: %s '%s': expected a positive integer\n", a, argv[i]);
        return 2;
      }
      if (!strcmp(a, "--batch")) o.batch_size = v;
      else o.threads = v;
    } else if (!strcmp(a, "--no-shortcut")) {
      o.shortcut = false;
    } else {
      fprintf(stderr, "tl-eval: unexpected argument '%s' (or a missing value)\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!o.checkpoint || !o.data_dir || !o.out_dir) {
    fprintf(stderr, "tl-eval: --checkpoint, --data and --out are required\n");
    usage(stderr);
    return 2;
  }
  if (strcmp(o.split, "train") && strcmp(o.split, "valid") && strcmp(o.split, "test")) {
    fprintf(stderr, "tl-eval: --split '%s': expected train, valid or test\n", o.split);
    return 2;
  }
  if (tl_eval_run(&o, NULL) != TL_OK) {
    fprintf(stderr, "tl-eval: %s\n", tl_last_error());
    return 1;
  }
  return 0;
}
