// run_cli.h: the command line shared by tl-pretrain and tl-finetune:
// --config FILE, --set section.key=value (repeatable), --resume RUN_DIR, --help,
// and Ctrl-C handling (finish the step, checkpoint, exit).
#pragma once
#include <signal.h>
#include <stdio.h>

#include "train/config.h"

// Reads the config a run saved in its newest checkpoint (to resume it).
typedef tl_status (*tl_resume_config_fn)(const char *run_dir, tl_config *cfg);

typedef struct {
  const char *resume; // RUN_DIR of --resume, or NULL
  tl_config cfg;      // the file's (or the checkpoint's) config, overrides, presets
} tl_run_cli;

// Parses argv and resolves the config. Returns -1 when the command should run,
// otherwise the exit status to return: 0 after --help, 2 on bad arguments or a
// bad config (the one-line reason printed as "cmd: reason").
int tl_run_cli_parse(int argc, char **argv, const char *cmd, void (*usage)(FILE *),
                     tl_resume_config_fn resume_config, tl_run_cli *out);

// First SIGINT/SIGTERM sets *stop (the loop checkpoints and exits); a second one
// kills the process as usual.
void tl_run_cli_catch_signals(volatile sig_atomic_t *stop);
