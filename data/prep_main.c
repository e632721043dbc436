// prep_main.c: tl-prep, captures to training shards. A YAML config and flags
// share one set of keys (flag --seq-len is key seq_len); flags override the config.
#include <getopt.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "data/prep.h"

static void usage(FILE *f) {
  fputs(
      "usage: tl-prep [--config FILE.yaml] [options]\n"
      "Reads captures (pcap, pcapng, .gz; any link type) in one streaming pass and writes\n"
      "HDF5 shards for pre-training (burst pairs) or packet / flow classification.\n"
      "\n"
      "inputs and outputs\n"
      "  --config FILE       YAML with the keys below (flag --seq-len = key seq_len)\n"
      "  --in PATH           input folder or file; repeatable. Classification: one folder\n"
      "                      per class below it ('_' folders skipped). Pre-training: all files\n"
      "  --labels CSV        CSV/TSV with path and label columns instead of class folders\n"
      "                      (relative paths from the CSV's folder; MANIFEST.tsv works)\n"
      "  --out DIR           output folder (created)\n"
      "  --task T            pretrain | packet | flow\n"
      "samples\n"
      "  --seq-len N         tokens per row, specials included (default by task; <= 65536)\n"
      "  --packet-bytes N    bytes kept per packet before tokenizing (0: whole packet)\n"
      "  --flow-packets K    first K packets of a flow (flow task; <= 1024)\n"
      "  --holdout-of DIRS   pretrain: read the captures of the packet/flow set DIR and\n"
      "                      leave out its valid and test flows (no held-out byte is\n"
      "                      pre-trained on; --in is then not needed). DIR1,DIR2: both\n"
      "                      sets' held-out flows (same captures, same flow options)\n"
      "  --min-payload N     leave out packets with fewer transport payload bytes from\n"
      "                      packet rows (default 1: no pure ACKs) and from a flow's\n"
      "                      first K packets (default 0: as ET-BERT, handshake included)\n"
      "  --burst-packets N   packets kept per burst (pretrain; default 8; <= 1024)\n"
      "  --header-policy P   anonymous (addresses and ports zeroed; default) | keep |\n"
      "                      compat (ET-BERT's fixed offsets: whole frame / frame[38:])\n"
      "splits and classes\n"
      "  --split S           flow (default) | file | packet\n"
      "  --split-ratio A,B,C train,valid,test (default 8,1,1; pretrain 9,1,0)\n"
      "  --seed N            split and pairing seed\n"
      "  --max-per-class N   cap per class (0: none)\n"
      "  --min-per-class N   classes with fewer samples are dropped, with a warning\n"
      "  --rows-per-shard N  rows per HDF5 file\n"
      "  --compress N        deflate level of the shards, 0-9 (default 0: none; 1 makes\n"
      "                      them about 4x smaller and tl-prep about 2.5x slower)\n"
      "flows\n"
      "  --idle-timeout S    a flow silent this long ends (default 60; 0: never)\n"
      "  --close-linger S    a TCP flow ends this long after FIN both ways / RST (2)\n"
      "  --max-flows N       flows held at once (default 100000; oldest end first)\n"
      "  --reorder-window N  packets held back to restore time order (default 4096; <= 65536)\n"
      "  --flow-key-vlan     VLAN and tunnel ids are part of a flow's identity\n"
      "  --no-reassemble     count and skip IP fragments (key reassemble: false). By\n"
      "                      default IPv4/IPv6 fragments are reassembled (30 s of capture\n"
      "                      time, 64 MiB held at most, never across files) and the whole\n"
      "                      datagram is used like any packet; compat then counts its\n"
      "                      offsets from the datagram's IP header (it has no link header)\n"
      "behaviour\n"
      "  --strict            stop with an error at the first bad file\n"
      "  --progress / --no-progress   progress line (default: on a terminal)\n"
      "  --set KEY=VALUE     any config key\n"
      "  --help\n"
      "Exit status: 0 when shards were written; 1 when nothing usable remains, on bad\n"
      "options, or with --strict at the first bad file; 130 when stopped by Ctrl-C or\n"
      "SIGTERM. Bad files are warned about (file and packet number) and their good packets\n"
      "are used. OUT changes only when the new set is complete (data/FORMAT.md); a second\n"
      "tl-prep into the same OUT is refused while one runs (OUT/.tl-prep.lock).\n",
      f);
}

// Flags that take a value and map 1:1 to config keys (dashes become underscores).
static const char *const g_value_flags[] = {
    "out",           "labels",        "task",          "seq-len",        "packet-bytes",
    "flow-packets",  "burst-packets", "seed",          "split",          "max-per-class",
    "min-per-class", "header-policy", "rows-per-shard", "idle-timeout",  "close-linger",
    "max-flows",     "reorder-window", "min-payload",
    "holdout-of",    "compress"};
enum { N_VALUE_FLAGS = sizeof g_value_flags / sizeof g_value_flags[0] };
enum { OPT_CONFIG = 1000, OPT_IN, OPT_RATIO, OPT_SET, OPT_VLAN, OPT_STRICT, OPT_PROGRESS,
       OPT_NO_PROGRESS, OPT_NO_REASSEMBLE, OPT_HELP, OPT_VALUE0 };

static void make_longopts(struct option *lo) {
  int n = 0;
  lo[n++] = (struct option){"config", required_argument, 0, OPT_CONFIG};
  lo[n++] = (struct option){"in", required_argument, 0, OPT_IN};
  lo[n++] = (struct option){"split-ratio", required_argument, 0, OPT_RATIO};
  lo[n++] = (struct option){"set", required_argument, 0, OPT_SET};
  lo[n++] = (struct option){"flow-key-vlan", no_argument, 0, OPT_VLAN};
  lo[n++] = (struct option){"strict", no_argument, 0, OPT_STRICT};
  lo[n++] = (struct option){"progress", no_argument, 0, OPT_PROGRESS};
  lo[n++] = (struct option){"no-progress", no_argument, 0, OPT_NO_PROGRESS};
  lo[n++] = (struct option){"no-reassemble", no_argument, 0, OPT_NO_REASSEMBLE};
  lo[n++] = (struct option){"help", no_argument, 0, OPT_HELP};
  for (int i = 0; i < N_VALUE_FLAGS; i++)
    lo[n++] = (struct option){g_value_flags[i], required_argument, 0, OPT_VALUE0 + i};
  lo[n] = (struct option){0, 0, 0, 0};
}

static const char *flag_key(const char *flag) {
  static char key[64];
  snprintf(key, sizeof key, "%s", flag);
  for (char *p = key; *p; p++)
    if (*p == '-') *p = '_';
  return key;
}

// "0.8,0.1,0.1" -> split ratio.
static tl_status set_ratio_text(tl_prep_options *o, const char *text, const char *at) {
  char buf[256], *v[8];
  int n = 0;
  snprintf(buf, sizeof buf, "%s", text);
  for (char *tok = strtok(buf, ","); tok && n < 8; tok = strtok(NULL, ",")) v[n++] = tok;
  return tl_prep_set_ratio(o, v, n, at);
}

// Pass 1: --help, --config and --task decide the defaults everything else edits.
static int first_pass(int argc, char **argv, struct option *lo, const char **config,
                      const char **task) {
  opterr = 0;
  optind = 1;
  for (int c; (c = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
    if (c == OPT_HELP) return 1;
    if (c == OPT_CONFIG) *config = optarg;
    if (c >= OPT_VALUE0 && !strcmp(g_value_flags[c - OPT_VALUE0], "task")) *task = optarg;
  }
  return 0;
}

// Pass 2: every flag, over the config's values.
static tl_status second_pass(int argc, char **argv, struct option *lo, tl_prep_options *o) {
  int replaced_in = 0;
  opterr = 1;
  optind = 1;
  for (int c; (c = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
    tl_status st = TL_OK;
    if (c == '?') {
      tl_set_error("bad command line (see --help)");
      return TL_ERR;
    } else if (c == OPT_IN) {
      if (!replaced_in++) { // flags replace the config's inputs
        for (int i = 0; i < o->n_in; i++) free(o->in[i]);
        o->n_in = 0;
      }
      o->in = tl_xrealloc(o->in, (size_t)(o->n_in + 1) * sizeof *o->in);
      o->in[o->n_in++] = tl_xstrdup(optarg);
    } else if (c == OPT_RATIO) {
      st = set_ratio_text(o, optarg, "--split-ratio");
    } else if (c == OPT_SET) {
      char key[64];
      const char *eq = strchr(optarg, '=');
      if (!eq || eq == optarg || (size_t)(eq - optarg) >= sizeof key) {
        tl_set_error("--set %s: expected KEY=VALUE", optarg);
        return TL_ERR;
      }
      snprintf(key, sizeof key, "%.*s", (int)(eq - optarg), optarg);
      st = !strcmp(key, "split_ratio") ? set_ratio_text(o, eq + 1, "--set")
                                       : tl_prep_set_option(o, key, eq + 1, "--set");
    } else if (c == OPT_VLAN) {
      o->flow.key_vlan = 1;
    } else if (c == OPT_STRICT) {
      o->strict = 1;
    } else if (c == OPT_PROGRESS || c == OPT_NO_PROGRESS) {
      o->progress = c == OPT_PROGRESS;
    } else if (c == OPT_NO_REASSEMBLE) {
      o->reassemble = 0;
    } else if (c >= OPT_VALUE0) {
      const char *flag = g_value_flags[c - OPT_VALUE0];
      st = tl_prep_set_option(o, flag_key(flag), optarg, tl_fmt("--%s", flag));
    }
    if (st != TL_OK) return TL_ERR;
  }
  if (optind < argc) {
    tl_set_error("unexpected argument '%s' (inputs go after --in)", argv[optind]);
    return TL_ERR;
  }
  return TL_OK;
}

static volatile sig_atomic_t g_stop;
static struct timespec g_first_signal;

// The first signal asks for a clean stop. Another one a second or more later
// ends the process at once (the impatient second Ctrl-C); one sooner is the
// same request again, as timeout(1) sends to the process and then its group.
static void on_signal(int sig) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  if (!g_stop) {
    g_first_signal = now;
    g_stop = 1;
  } else if (now.tv_sec - g_first_signal.tv_sec >= 2 ||
             (now.tv_sec - g_first_signal.tv_sec == 1 &&
              now.tv_nsec >= g_first_signal.tv_nsec)) {
    _exit(128 + sig);
  }
}

// Ctrl-C or a kill stops the run cleanly: temporary files go and the output
// folder keeps what it had.
static void catch_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

int main(int argc, char **argv) {
  // HDF5's exit-time clean-up crashes on a shard whose close failed (a full
  // disk); tl-prep closes every file it writes itself, so it goes without.
  H5dont_atexit();
  // HDF5 failures become tl-prep's one-line errors; its own stack print is noise.
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  struct option lo[N_VALUE_FLAGS + 16];
  make_longopts(lo);
  const char *config = NULL, *task_text = NULL;
  if (argc < 2 || first_pass(argc, argv, lo, &config, &task_text)) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 1 : 0;
  }

  // The task decides the defaults: the flag, else the config's, else an error.
  tl_prep_options o;
  int task = -1;
  tl_prep_options_default(&o, TL_TASK_PACKET);
  if (task_text && tl_prep_set_option(&o, "task", task_text, "--task") != TL_OK) goto fail;
  if (task_text) task = (int)o.ds.task;
  else if (config && tl_prep_config_task(config, &task) != TL_OK) goto fail;
  if (task < 0) {
    tl_set_error("no task: give --task pretrain|packet|flow or 'task:' in the config");
    goto fail;
  }
  tl_prep_options_free(&o);
  tl_prep_options_default(&o, (tl_task)task);

  // Config, then flags over it.
  if (config && tl_prep_config_load(config, &o) != TL_OK) goto fail;
  if (second_pass(argc, argv, lo, &o) != TL_OK) goto fail;
  o.ds.task = (tl_task)task;
  if (!o.out_dir || (o.n_in == 0 && !o.labels_csv && !o.holdout_of)) {
    tl_set_error("need %s (see --help)",
                 !o.out_dir ? "--out DIR" : "--in PATH, --labels CSV or --holdout-of DIR");
    goto fail;
  }

  catch_signals();
  o.ds.stop = &g_stop;
  tl_status st = tl_prep_run(&o, stdout, NULL);
  if (st != TL_OK && g_stop) {
    fprintf(stderr, "tl-prep: %s; %s is as it was before this run\n", tl_last_error(),
            o.out_dir);
    tl_prep_options_free(&o);
    return 130; // as a shell reports a process ended by SIGINT
  }
  if (st != TL_OK) goto fail;
  tl_prep_options_free(&o);
  return 0;

fail:
  fprintf(stderr, "tl-prep: %s\n", tl_last_error());
  tl_prep_options_free(&o);
  return 1;
}
