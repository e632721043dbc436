// test_prep.c: tl-prep as a library: YAML config (known keys, types, file:line
// errors, flags over config), and whole runs into the real dataset builder:
// same seed -> byte-identical shards, no flow id in two splits, the _edge folder
// handled end to end.
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <dirent.h>
#include <hdf5.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/prep.h"
#include "data/capture.h"
#include "data/names.h"

#define PCAPS TL_SHARED_DIR "/data/pcaps"

static const char *write_tmp(const char *text) {
  static char path[64];
  snprintf(path, sizeof path, "/tmp/tl_test_prep_XXXXXX.yaml");
  int fd = mkstemps(path, 5);
  cr_assert(fd >= 0);
  cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  return path;
}

Test(prep_config, loads_every_key) {
  const char *p = write_tmp("task: flow\n"
                            "in: [a, b]\n"
                            "out: /tmp/x\n"
                            "labels: l.csv\n"
                            "seq_len: 256\n"
                            "packet_bytes: 100\n"
                            "flow_packets: 3\n"
                            "burst_packets: 4\n"
                            "seed: 7\n"
                            "split: file\n"
                            "split_ratio: [6, 2, 2]\n"
                            "max_per_class: 50\n"
                            "min_per_class: 2\n"
                            "header_policy: keep\n"
                            "rows_per_shard: 1000\n"
                            "idle_timeout: 30.5\n"
                            "close_linger: 1\n"
                            "max_flows: 500\n"
                            "reorder_window: 16\n"
                            "flow_key_vlan: true\n"
                            "strict: true\n"
                            "progress: false\n"
                            "reassemble: false\n");
  int task;
  cr_assert_eq(tl_prep_config_task(p, &task), TL_OK, "%s", tl_last_error());
  cr_expect_eq(task, TL_TASK_FLOW);
  tl_prep_options o;
  tl_prep_options_default(&o, TL_TASK_FLOW);
  cr_assert_eq(tl_prep_config_load(p, &o), TL_OK, "%s", tl_last_error());
  cr_expect_eq(o.n_in, 2);
  cr_expect_str_eq(o.in[1], "b");
  cr_expect_str_eq(o.out_dir, "/tmp/x");
  cr_expect_str_eq(o.labels_csv, "l.csv");
  cr_expect_eq(o.ds.seq_len, 256);
  cr_expect_eq(o.ds.packet_bytes, 100);
  cr_expect_eq(o.flow.keep_bytes, 100);
  cr_expect_eq(o.ds.flow_packets, 3);
  cr_expect_eq(o.burst_packets, 4);
  cr_expect_eq(o.ds.seed, 7);
  cr_expect_eq(o.ds.split, TL_SPLIT_BY_FILE);
  cr_expect_float_eq(o.ds.split_ratio[0], 0.6, 1e-12);
  cr_expect_eq(o.ds.max_per_class, 50);
  cr_expect_eq(o.ds.min_per_class, 2);
  cr_expect_eq(o.policy, TL_HEADER_KEEP);
  cr_expect_eq(o.ds.rows_per_shard, 1000);
  cr_expect_float_eq(o.flow.idle_timeout_s, 30.5, 1e-12);
  cr_expect_eq(o.flow.max_flows, 500);
  cr_expect_eq(o.flow.reorder_window, 16);
  cr_expect_eq(o.flow.key_vlan, 1);
  cr_expect_eq(o.strict, 1);
  cr_expect_eq(o.progress, 0);
  cr_expect_eq(o.reassemble, 0);
  // a flag over the config
  cr_assert_eq(tl_prep_set_option(&o, "seq_len", "64", "--seq-len"), TL_OK);
  cr_expect_eq(o.ds.seq_len, 64);
  tl_prep_options_free(&o);
  unlink(p);
}

// Errors name the file, the line and the key.
Test(prep_config, errors_name_file_line_key) {
  struct { const char *yaml, *line, *key; } cases[] = {
      {"task: packet\nout: /tmp/x\nsequence_len: 5\n", ":3", "sequence_len"},
      {"task: packet\nseq_len: abc\n", ":2", "seq_len"},
      {"task: packet\n\nseq_len: -4\n", ":3", "seq_len"},
      {"task: packets\n", ":1", "task"},
      {"task: packet\nsplit_ratio: [1, 2]\n", ":2", "split_ratio"},
      {"task: packet\nstrict: maybe\n", ":2", "strict"},
      {"task: packet\nheader_policy: raw\n", ":2", "header_policy"},
      {"task: packet\nseq_len: [1, 2]\n", ":2", "seq_len"},
      {"task: packet\nout: /tmp/x\ncompress: 10\n", ":3", "compress"},
      {"task: packet\nrows_per_shard: 0\n", ":2", "rows_per_shard"},
      {"task: packet\nseq_len: 1\n", ":2", "seq_len"},
      {"task: packet\nseq_len: 64\n  seed: 3\n", ":3", "YAML syntax"},
      {"task: packet\nseed: 3\nseed: 4\n", ":3", "given twice (first on line 2)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *p = write_tmp(cases[i].yaml);
    char want[128];
    snprintf(want, sizeof want, "%s%s", p, cases[i].line);
    tl_prep_options o;
    tl_prep_options_default(&o, TL_TASK_PACKET);
    cr_expect_eq(tl_prep_config_load(p, &o), TL_ERR, "case %zu loaded", i);
    cr_expect(strstr(tl_last_error(), want) && strstr(tl_last_error(), cases[i].key),
              "case %zu: '%s'", i, tl_last_error());
    tl_prep_options_free(&o);
    unlink(p);
  }
}

// --- whole runs ---------------------------------------------------------------

// Paths under a folder of this test process, so that runs in parallel (release and
// sanitizer builds) do not meet; removed after each test. Eight rotating buffers.
static const char *T(const char *name) {
  static char buf[8][256];
  static int next;
  char *b = buf[next++ % 8];
  snprintf(b, sizeof buf[0], "/tmp/tl_test_prep_%d", (int)getpid());
  mkdir(b, 0755);
  snprintf(b + strlen(b), sizeof buf[0] - strlen(b), "/%s", name);
  return b;
}

static void cleanup(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf /tmp/tl_test_prep_%d", (int)getpid());
  if (system(cmd) != 0) fprintf(stderr, "cleanup failed: %s\n", cmd);
}

TestSuite(prep_run, .fini = cleanup);
TestSuite(prep_cli, .fini = cleanup);

// A class-folder tree of symlinks to three small classes.
static void make_tree(const char *root) {
  mkdir(root, 0755);
  const char *classes[] = {"ntp", "snmp", "wireguard"};
  for (int i = 0; i < 3; i++) {
    char link[512], target[512];
    snprintf(link, sizeof link, "%s/%s", root, classes[i]);
    snprintf(target, sizeof target, PCAPS "/%s", classes[i]);
    unlink(link);
    cr_assert_eq(symlink(target, link), 0);
  }
}

// Options of task for one input (none: NULL) into out, without a progress line.
static void options_for(tl_prep_options *o, tl_task task, const char *in, const char *out) {
  tl_prep_options_default(o, task);
  if (in) {
    o->in = tl_xmalloc(sizeof *o->in);
    o->in[0] = tl_xstrdup(in);
    o->n_in = 1;
  }
  o->out_dir = tl_xstrdup(out);
  o->progress = 0;
}

static tl_status run_into(const char *tree, const char *out, tl_task task, uint64_t seed,
                          tl_prep_counts *c) {
  tl_prep_options o;
  options_for(&o, task, tree, out);
  o.ds.seed = seed;
  if (task != TL_TASK_PRETRAIN) o.ds.min_per_class = 1;
  tl_status st = tl_prep_run(&o, NULL, c);
  tl_prep_options_free(&o);
  return st;
}

static long file_bytes(const char *path, char **data) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  *data = tl_xmalloc((size_t)n + 1);
  cr_assert_eq(fread(*data, 1, (size_t)n, f), (size_t)n);
  (*data)[n] = 0; // text readers (cJSON) want a terminated string
  fclose(f);
  return n;
}

Test(prep_run, same_seed_gives_identical_shards) {
  make_tree(T("tree"));
  tl_prep_counts c1, c2;
  cr_assert_eq(run_into(T("tree"), T("out1"), TL_TASK_PACKET, 5, &c1), TL_OK,
               "%s", tl_last_error());
  cr_assert_eq(run_into(T("tree"), T("out2"), TL_TASK_PACKET, 5, &c2), TL_OK,
               "%s", tl_last_error());
  cr_expect_gt(c1.total_rows, 0);
  cr_expect_eq(c1.files_total, 28); // 14 ntp + 11 snmp + 3 wireguard
  DIR *d = opendir(T("out1"));
  cr_assert_not_null(d);
  int compared = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    char a[512], b[512], *da, *db;
    snprintf(a, sizeof a, "%s/%s", T("out1"), e->d_name);
    snprintf(b, sizeof b, "%s/%s", T("out2"), e->d_name);
    long na = file_bytes(a, &da), nb = file_bytes(b, &db);
    cr_expect(na == nb && na >= 0 && !memcmp(da, db, (size_t)na), "%s differs", e->d_name);
    if (na >= 0) free(da);
    if (nb >= 0) free(db);
    if (!strstr(e->d_name, "manifest")) compared++;
  }
  closedir(d);
  cr_expect_geq(compared, 3);
}

// Reads every flow_id of the shards of one split.
static int64_t *read_flow_ids(const char *dir, const char *split, size_t *n_out) {
  int64_t *ids = NULL;
  size_t n = 0;
  DIR *d = opendir(dir);
  cr_assert_not_null(d);
  for (struct dirent *e; (e = readdir(d));) {
    if (strncmp(e->d_name, split, strlen(split)) || !strstr(e->d_name, ".h5")) continue;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(f >= 0, "%s", path);
    hid_t ds = H5Dopen2(f, "flow_id", H5P_DEFAULT);
    cr_assert(ds >= 0, "%s: no flow_id dataset", path);
    hid_t sp = H5Dget_space(ds);
    hsize_t rows = 0;
    H5Sget_simple_extent_dims(sp, &rows, NULL);
    ids = tl_xrealloc(ids, (n + rows + 1) * sizeof *ids);
    if (rows) H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids + n);
    n += rows;
    H5Sclose(sp);
    H5Dclose(ds);
    H5Fclose(f);
  }
  closedir(d);
  *n_out = n;
  return ids;
}

Test(prep_run, no_flow_in_two_splits) {
  make_tree(T("tree"));
  tl_prep_counts c;
  cr_assert_eq(run_into(T("tree"), T("out3"), TL_TASK_FLOW, 9, &c), TL_OK,
               "%s", tl_last_error());
  const char *splits[] = {"train", "valid", "test"};
  int64_t *ids[3];
  size_t n[3];
  for (int s = 0; s < 3; s++) ids[s] = read_flow_ids(T("out3"), splits[s], &n[s]);
  cr_expect_gt(n[0], 0);
  for (int a = 0; a < 3; a++)
    for (int b = a + 1; b < 3; b++)
      for (size_t i = 0; i < n[a]; i++)
        for (size_t j = 0; j < n[b]; j++)
          cr_assert_neq(ids[a][i], ids[b][j], "flow %lld in %s and %s", (long long)ids[a][i],
                        splits[a], splits[b]);
  // flow task: one row per flow, so rows == flows seen (none dropped at min 1)
  cr_expect_eq((int64_t)(n[0] + n[1] + n[2]), c.flow.flows);
  for (int s = 0; s < 3; s++) free(ids[s]);
}

// Pre-training walks folders at any depth (here through symlinked folders).
Test(prep_run, pretrain_walks_nested_folders) {
  make_tree(T("tree"));
  tl_prep_counts c;
  cr_assert_eq(run_into(T("tree"), T("out4"), TL_TASK_PRETRAIN, 1, &c),
               TL_OK, "%s", tl_last_error());
  cr_expect_eq(c.files_total, 28);
  cr_expect_eq(c.files_read, 28);
  cr_expect_gt(c.total_rows, 0);
}

// The awkward folder end to end: bad files warned about, good packets used.
Test(prep_run, edge_folder_pretrain) {
  tl_prep_options o;
  options_for(&o, TL_TASK_PRETRAIN, PCAPS "/_edge", T("out_edge"));
  tl_prep_counts c;
  cr_expect_eq(tl_prep_run(&o, NULL, &c), TL_OK, "%s", tl_last_error());
  cr_expect_eq(c.files_total, 56);
  cr_expect_eq(c.files_refused, 1);
  cr_expect_eq(c.files_stopped, 5);
  cr_expect_gt(c.total_rows, 0);
  long sum = 0;
  for (int k = 0; k < TL_SKIP_NUM_REASONS; k++) sum += c.skipped[k];
  // Every frame is used, skipped or a fragment; a reassembled datagram is one
  // packet (used or skipped) made of several fragments.
  cr_expect_eq(sum + c.packets_used + c.defrag.fragments - c.defrag.reassembled,
               c.packets_read);
  cr_expect_eq(c.skipped[TL_SKIP_FRAGMENT], 0, "fragments go to the reassembler");
  cr_expect_gt(c.defrag.reassembled, 0);
  long dropped = 0;
  for (int k = 0; k < TL_DEFRAG_NUM_DROPS; k++) dropped += c.defrag.dropped[k];
  cr_expect_eq(c.defrag.used + dropped, c.defrag.fragments, "none pending after the pass");

  // Reassembly off: today's count-and-skip, and nothing else changes.
  tl_prep_counts off;
  o.reassemble = 0;
  cr_expect_eq(tl_prep_run(&o, NULL, &off), TL_OK, "%s", tl_last_error());
  sum = 0;
  for (int k = 0; k < TL_SKIP_NUM_REASONS; k++) sum += off.skipped[k];
  cr_expect_eq(sum + off.packets_used, off.packets_read);
  cr_expect_eq(off.skipped[TL_SKIP_FRAGMENT], c.defrag.fragments);
  cr_expect_eq(off.defrag.fragments, 0);
  cr_expect_eq(off.packets_used, c.packets_used - c.defrag.reassembled);
  o.reassemble = 1;

  // --strict stops at the first bad file with an error naming it
  o.strict = 1;
  cr_expect_eq(tl_prep_run(&o, NULL, &c), TL_ERR);
  cr_expect(strstr(tl_last_error(), "_edge/derived__corrupt_reclen") != NULL, "%s",
            tl_last_error());
  tl_prep_options_free(&o);
}

// Labels from a CSV instead of class folders.
Test(prep_run, labels_from_csv) {
  char csv[256];
  snprintf(csv, sizeof csv, "%s", T("labels.csv"));
  FILE *f = fopen(csv, "w");
  fprintf(f, "path,label\n" PCAPS "/ntp/%s,time\n" PCAPS "/snmp/%s,mgmt\n", "zeek__ntp.pcap",
          "ndpi__snmp.pcap");
  fclose(f);
  tl_prep_options o;
  tl_prep_options_default(&o, TL_TASK_PACKET);
  o.labels_csv = tl_xstrdup(csv);
  o.out_dir = tl_xstrdup(T("out_csv"));
  o.ds.min_per_class = 1;
  o.progress = 0;
  tl_prep_counts c;
  cr_expect_eq(tl_prep_run(&o, NULL, &c), TL_OK, "%s", tl_last_error());
  cr_expect_eq(c.files_total, 2);
  cr_expect_eq(c.files_read, 2);
  tl_prep_options_free(&o);
}

// --- the command itself (skipped when tl-prep was not built beside this test) ---

#include <cjson/cJSON.h>
#include <libgen.h>

static int tl_prep_bin(char *out, size_t cap) {
  char self[1024];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return 0;
  self[n] = 0;
  snprintf(out, cap, "%s/tl-prep", dirname(self));
  return access(out, X_OK) == 0;
}

// Runs tl-prep with args; returns its exit status, its last stderr line in err.
static int run_cmd(const char *args, char *err, size_t cap) {
  char bin[1100], cmd[4096], line[1024];
  if (!tl_prep_bin(bin, sizeof bin)) cr_skip_test("tl-prep not built next to the test");
  snprintf(cmd, sizeof cmd, "%s %s --no-progress 2>&1 >/dev/null; echo \"rc=$?\"", bin, args);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  int rc = -1;
  err[0] = 0;
  while (fgets(line, sizeof line, p)) {
    if (sscanf(line, "rc=%d", &rc) == 1) break;
    snprintf(err, cap, "%s", line);
  }
  pclose(p);
  return rc;
}

Test(prep_cli, flags_override_config_and_exit_codes) {
  make_tree(T("tree"));
  char cfg[64];
  char yaml[1024];
  snprintf(yaml, sizeof yaml, "task: flow\nin: [%s]\nout: %s\nseq_len: 256\nmin_per_class: 1\n",
           T("tree"), T("cli"));
  snprintf(cfg, sizeof cfg, "%s", write_tmp(yaml));
  char err[1024], args[2048];
  snprintf(args, sizeof args, "--config %s --seq-len 64 --set seed=3", cfg);
  cr_assert_eq(run_cmd(args, err, sizeof err), 0, "%s", err);
  char *text;
  cr_assert_geq(file_bytes(tl_fmt("%s/manifest.json", T("cli")), &text), 0);
  cJSON *m = cJSON_Parse(text);
  cr_assert_not_null(m);
  cr_expect_eq(cJSON_GetObjectItem(m, "seq_len")->valueint, 64);
  cr_expect_str_eq(cJSON_GetObjectItem(m, "task")->valuestring, "flow");
  cJSON_Delete(m);
  free(text);

  // nothing usable: exit 1 with one line naming why
  snprintf(args, sizeof args, "--task pretrain --in %s --out %s",
           PCAPS "/_edge/derived__zero_length.pcap", T("cli2"));
  cr_expect_eq(run_cmd(args, err, sizeof err), 1);
  cr_expect(strstr(err, "tl-prep:") != NULL, "%s", err);
  // --strict on a folder with bad files
  snprintf(args, sizeof args, "--task pretrain --strict --in %s --out %s", PCAPS "/_edge",
           T("cli3"));
  cr_expect_eq(run_cmd(args, err, sizeof err), 1);
  // a bad config: exit 1, file and line
  const char *bad = write_tmp("task: flow\nseq_lenn: 5\n");
  snprintf(args, sizeof args, "--config %s --out %s", bad, T("cli4"));
  cr_expect_eq(run_cmd(args, err, sizeof err), 1);
  cr_expect(strstr(err, ":2:") && strstr(err, "seq_lenn"), "%s", err);
  unlink(cfg);
  unlink(bad);
}

// --- pre-training held away from test flows (--holdout-of) -------------------

static tl_status pretrain_holdout(const char *cls_dir, const char *out, double idle_timeout,
                                  tl_prep_counts *c) {
  tl_prep_options o;
  options_for(&o, TL_TASK_PRETRAIN, NULL, out);
  o.holdout_of = tl_xstrdup(cls_dir);
  o.flow.idle_timeout_s = idle_timeout;
  tl_status st = tl_prep_run(&o, NULL, c);
  tl_prep_options_free(&o);
  return st;
}

static bool contains(const int64_t *ids, size_t n, int64_t id) {
  for (size_t i = 0; i < n; i++)
    if (ids[i] == id) return true;
  return false;
}

Test(prep_run, holdout_keeps_test_flows_out_of_pretraining) {
  make_tree(T("tree"));
  tl_prep_counts c;
  cr_assert_eq(run_into(T("tree"), T("flow"), TL_TASK_FLOW, 7, &c), TL_OK, "%s",
               tl_last_error());
  cr_assert_eq(pretrain_holdout(T("flow"), T("pre"), 60, &c), TL_OK, "%s", tl_last_error());
  cr_expect_gt(c.held_out_bursts, 0);

  // No pre-training row comes from a flow the classifier is validated or tested on.
  size_t n_valid, n_test, n_pre_train, n_pre_valid;
  int64_t *valid = read_flow_ids(T("flow"), "valid", &n_valid);
  int64_t *test = read_flow_ids(T("flow"), "test", &n_test);
  int64_t *pre_train = read_flow_ids(T("pre"), "train", &n_pre_train);
  int64_t *pre_valid = read_flow_ids(T("pre"), "valid", &n_pre_valid);
  cr_assert_gt(n_valid + n_test, 0);
  cr_assert_gt(n_pre_train, 0);
  for (size_t i = 0; i < n_pre_train; i++) {
    cr_assert_not(contains(valid, n_valid, pre_train[i]), "flow %ld", (long)pre_train[i]);
    cr_assert_not(contains(test, n_test, pre_train[i]), "flow %ld", (long)pre_train[i]);
  }
  for (size_t i = 0; i < n_pre_valid; i++)
    cr_assert_not(contains(test, n_test, pre_valid[i]), "flow %ld", (long)pre_valid[i]);
  free(valid), free(test), free(pre_train), free(pre_valid);
}

// Flow ids line up only when flows are cut the same way: pre-training takes the
// held-out set's flow options (its manifest's flow_identity), whatever it is
// given; a set made with a 0.5 s idle timeout once leaked its test flows into
// pre-training run with the default 60 s.
Test(prep_run, holdout_takes_the_sets_flow_options) {
  make_tree(T("tree"));
  tl_prep_options o;
  options_for(&o, TL_TASK_FLOW, T("tree"), T("flow"));
  o.flow.idle_timeout_s = 0.5;
  o.ds.min_per_class = 1;
  cr_assert_eq(tl_prep_run(&o, NULL, NULL), TL_OK, "%s", tl_last_error());
  tl_prep_options_free(&o);
  tl_prep_counts c60, c05;
  cr_assert_eq(pretrain_holdout(T("flow"), T("pre"), 60, &c60), TL_OK, "%s", tl_last_error());
  cr_assert_eq(pretrain_holdout(T("flow"), T("pre05"), 0.5, &c05), TL_OK, "%s",
               tl_last_error());
  cr_expect_gt(c05.held_out_bursts, 0);
  cr_expect_eq(c60.held_out_bursts, c05.held_out_bursts, "the given 60 s was not used");
  size_t n_test, n_pre;
  int64_t *test = read_flow_ids(T("flow"), "test", &n_test);
  int64_t *pre = read_flow_ids(T("pre"), "train", &n_pre);
  for (size_t i = 0; i < n_pre; i++)
    cr_assert_not(contains(test, n_test, pre[i]), "flow %ld", (long)pre[i]);
  free(test), free(pre);

  // A set without flow_identity (an earlier tl-prep's) is refused.
  char *text = NULL;
  cr_assert_gt(file_bytes(T("flow/manifest.json"), &text), 0);
  cJSON *m = cJSON_Parse(text);
  cJSON_DeleteItemFromObject(m, "flow_identity");
  char *out = cJSON_Print(m);
  FILE *f = fopen(T("flow/manifest.json"), "w");
  fputs(out, f);
  fclose(f);
  free(out), free(text);
  cJSON_Delete(m);
  cr_expect_eq(pretrain_holdout(T("flow"), T("pre_old"), 60, NULL), TL_ERR);
  cr_expect(strstr(tl_last_error(), "make it again"), "%s", tl_last_error());
  cr_expect_eq(pretrain_holdout(T("nothing-here"), T("pre2"), 60, NULL), TL_ERR);
  cr_expect(strstr(tl_last_error(), "manifest.json"), "%s", tl_last_error());
}

static tl_status run_csv(const char *text, const char *out, tl_prep_counts *c) {
  char csv[256];
  snprintf(csv, sizeof csv, "%s", T("awkward.csv"));
  FILE *f = fopen(csv, "w");
  fputs(text, f);
  fclose(f);
  tl_prep_options o;
  options_for(&o, TL_TASK_PACKET, NULL, out);
  o.labels_csv = tl_xstrdup(csv);
  o.ds.min_per_class = 1;
  tl_status st = tl_prep_run(&o, NULL, c);
  tl_prep_options_free(&o);
  return st;
}

// Spreadsheet exports: a byte order mark, CRLF, quoted cells; a file listed twice
// is read once (never split twice into train and test); two labels are an error.
Test(prep_run, labels_csv_bom_quotes_repeats) {
  tl_prep_counts c;
  const char *ok = "\xef\xbb\xbfpath,label\r\n"
                   "\"" PCAPS "/ntp/zeek__ntp.pcap\",\"time\"\r\n"
                   PCAPS "/snmp/ndpi__snmp.pcap, mgmt\r\n"
                   PCAPS "/ntp/zeek__ntp.pcap,time\r\n";
  cr_assert_eq(run_csv(ok, T("out_bom"), &c), TL_OK, "%s", tl_last_error());
  cr_expect_eq(c.files_total, 2);
  cr_expect_eq(c.files_read, 2);
  const char *clash = "path,label\n" PCAPS "/ntp/zeek__ntp.pcap,time\n"
                      PCAPS "/ntp/zeek__ntp.pcap,mgmt\n";
  cr_expect_eq(run_csv(clash, T("out_clash"), &c), TL_ERR);
  cr_expect(strstr(tl_last_error(), "two labels"), "%s", tl_last_error());
}

Test(prep_run, out_of_range_options_and_fifos_are_refused) {
  tl_prep_options o;
  options_for(&o, TL_TASK_PACKET, T("tree"), T("out_opts"));
  o.flow.max_flows = 0;
  make_tree(T("tree"));
  cr_expect_eq(tl_prep_run(&o, NULL, NULL), TL_ERR);
  cr_expect(strstr(tl_last_error(), "--max-flows 0"), "%s", tl_last_error());

  // Sizes have upper bounds too: 1e8 packet bytes once asked for 400 GB at start.
  o.flow.max_flows = 1000;
  o.ds.packet_bytes = 100000000;
  cr_expect_eq(tl_prep_run(&o, NULL, NULL), TL_ERR);
  cr_expect(strstr(tl_last_error(), "--packet-bytes 1e+08: expected a number from 0 to 65535"),
            "%s", tl_last_error());
  cr_expect_eq(tl_prep_set_option(&o, "seq_len", "1000000", "--seq-len"), TL_ERR);
  cr_expect(strstr(tl_last_error(), "from 2 to 65536"), "%s", tl_last_error());
  cr_expect_eq(tl_prep_set_option(&o, "reorder_window", "100000000", "run.yaml:3"), TL_ERR);
  cr_expect_eq(tl_prep_set_option(&o, "flow_packets", "1025", "--flow-packets"), TL_ERR);
  cr_expect_eq(tl_prep_set_option(&o, "seq_len", "65536", "--seq-len"), TL_OK);
  o.ds.packet_bytes = 1; // a bigram needs two bytes
  cr_expect_eq(tl_prep_run(&o, NULL, NULL), TL_ERR);
  cr_expect(strstr(tl_last_error(), "--packet-bytes 1: expected 0"), "%s", tl_last_error());
  o.ds.packet_bytes = 64;
  o.ds.task = TL_TASK_PRETRAIN;
  o.ds.seq_len = 4; // too short for [CLS] a [SEP] b [SEP]
  cr_expect_eq(tl_prep_run(&o, NULL, NULL), TL_ERR);
  cr_expect(strstr(tl_last_error(), "--seq-len 4: expected a number from 5"), "%s",
            tl_last_error());
  tl_prep_options_free(&o);

  // A FIFO among the captures is refused at once instead of blocking the run.
  char fifo[512];
  snprintf(fifo, sizeof fifo, "%s", T("fifo.pcap"));
  cr_assert_eq(mkfifo(fifo, 0600), 0);
  tl_capture *cap = tl_capture_open(fifo);
  cr_expect_null(cap);
  cr_expect(strstr(tl_last_error(), "FIFO"), "%s", tl_last_error());
}

// The same captures reached twice (a folder given twice, a link into a folder
// already given) are read once: otherwise their flows could land in train and
// test.
Test(prep_run, a_file_reached_twice_is_read_once) {
  make_tree(T("tree_twice"));
  char alias[512];
  snprintf(alias, sizeof alias, "%s", T("tree_alias"));
  unlink(alias);
  cr_assert_eq(symlink(PCAPS "/ntp", alias), 0);
  tl_prep_options o;
  tl_prep_options_default(&o, TL_TASK_PRETRAIN);
  o.in = tl_xmalloc(3 * sizeof *o.in);
  o.in[0] = tl_xstrdup(T("tree_twice"));
  o.in[1] = tl_xstrdup(T("tree_twice"));
  o.in[2] = tl_xstrdup(alias);
  o.n_in = 3;
  o.out_dir = tl_xstrdup(T("out_twice"));
  o.progress = 0;
  tl_prep_counts c;
  cr_assert_eq(tl_prep_run(&o, NULL, &c), TL_OK, "%s", tl_last_error());
  tl_prep_options_free(&o);
  cr_expect_eq(c.files_total, 28, "each of the 28 captures once");

  // Class folders: one capture in two classes is an error, not a leak.
  char cls[512];
  snprintf(cls, sizeof cls, "%s", T("classes_twice"));
  mkdir(cls, 0755);
  char a[600], b[600];
  snprintf(a, sizeof a, "%s/a", cls);
  snprintf(b, sizeof b, "%s/b", cls);
  unlink(a), unlink(b);
  cr_assert_eq(symlink(PCAPS "/ntp", a), 0);
  cr_assert_eq(symlink(PCAPS "/ntp", b), 0);
  tl_prep_counts c2;
  cr_expect_eq(run_into(cls, T("out_twice2"), TL_TASK_PACKET, 1, &c2), TL_ERR);
  cr_expect(strstr(tl_last_error(), "two labels"), "%s", tl_last_error());

  // Hard links are the same file too (when the file system allows them here).
  char hl[512], ha[600], hb[600], fa[700], fb[700];
  snprintf(hl, sizeof hl, "%s", T("hardlinks"));
  snprintf(ha, sizeof ha, "%s/a", hl);
  snprintf(hb, sizeof hb, "%s/b", hl);
  mkdir(hl, 0755), mkdir(ha, 0755), mkdir(hb, 0755);
  snprintf(fa, sizeof fa, "%s/one.pcap", ha);
  snprintf(fb, sizeof fb, "%s/two.pcap", hb);
  unlink(fa), unlink(fb);
  if (link(PCAPS "/ntp/ndpi__NTPv2.pcap", fa) == 0 && link(fa, fb) == 0) {
    cr_expect_eq(run_into(hl, T("out_twice3"), TL_TASK_PACKET, 1, &c2), TL_ERR);
    cr_expect(strstr(tl_last_error(), "two labels"), "%s", tl_last_error());
  }
}

// A stop request (tl-prep's Ctrl-C handler sets it) ends the run with an
// error and leaves the output folder as it was.
Test(prep_run, a_stop_request_leaves_the_output_as_it_was) {
  make_tree(T("tree_stop"));
  tl_prep_counts c;
  cr_assert_eq(run_into(T("tree_stop"), T("out_stop"), TL_TASK_PRETRAIN, 1, &c), TL_OK);
  char *before = NULL, *after = NULL;
  long n_before = file_bytes(T("out_stop/manifest.json"), &before);
  volatile sig_atomic_t stop = 1;
  tl_prep_options o;
  options_for(&o, TL_TASK_PRETRAIN, T("tree_stop"), T("out_stop"));
  o.ds.seed = 2;
  o.ds.stop = &stop;
  cr_assert_eq(tl_prep_run(&o, NULL, &c), TL_ERR);
  cr_expect(strstr(tl_last_error(), "interrupted"), "%s", tl_last_error());
  tl_prep_options_free(&o);
  long n_after = file_bytes(T("out_stop/manifest.json"), &after);
  cr_expect(n_before > 0 && n_after == n_before && !memcmp(before, after, (size_t)n_before));
  free(before), free(after);
}

// Pre-training into the very set it holds out would replace that set.
Test(prep_run, holdout_set_is_not_the_output) {
  make_tree(T("tree_ho"));
  tl_prep_counts c;
  cr_assert_eq(run_into(T("tree_ho"), T("out_ho"), TL_TASK_PACKET, 1, &c), TL_OK, "%s",
               tl_last_error());
  tl_prep_options o;
  tl_prep_options_default(&o, TL_TASK_PRETRAIN);
  o.holdout_of = tl_xstrdup(tl_fmt("%s,%s", T("out_elsewhere"), T("out_ho")));
  o.out_dir = tl_xstrdup(T("out_ho"));
  o.progress = 0;
  cr_expect_eq(tl_prep_run(&o, NULL, &c), TL_ERR);
  cr_expect(strstr(tl_last_error(), "would be replaced"), "%s", tl_last_error());
  tl_prep_options_free(&o);
  char *m = NULL;
  cr_expect_gt(file_bytes(T("out_ho/manifest.json"), &m), 0, "the packet set is still there");
  free(m);
}

// Links back up the tree (loop/a/up -> .., loop/b/sib -> ../a) used to be walked
// without end; each folder is now listed once, with one warning, and a stop
// request ends the listing itself.
Test(prep_run, folder_link_loops_are_listed_once, .timeout = 60) {
  char root[512], a[600], b[600], link[700];
  snprintf(root, sizeof root, "%s", T("loop"));
  snprintf(a, sizeof a, "%s/a", root);
  snprintf(b, sizeof b, "%s/b", root);
  mkdir(root, 0755), mkdir(a, 0755), mkdir(b, 0755);
  snprintf(link, sizeof link, "%s/up", a);
  cr_assert_eq(symlink("..", link), 0);
  snprintf(link, sizeof link, "%s/sib", b);
  cr_assert_eq(symlink("../a", link), 0);
  snprintf(link, sizeof link, "%s/ntp.pcap", a);
  cr_assert_eq(symlink(PCAPS "/ntp/zeek__ntp.pcap", link), 0);
  snprintf(link, sizeof link, "%s/snmp.pcap", b);
  cr_assert_eq(symlink(PCAPS "/snmp/ndpi__snmp.pcap", link), 0);

  tl_prep_counts c;
  cr_assert_eq(run_into(root, T("out_loop"), TL_TASK_PRETRAIN, 1, &c), TL_OK, "%s",
               tl_last_error());
  cr_expect_eq(c.files_total, 2, "two captures, each once (got %d)", c.files_total);

  volatile sig_atomic_t stop = 1;
  tl_prep_options o;
  options_for(&o, TL_TASK_PRETRAIN, root, T("out_loop_stop"));
  o.ds.stop = &stop;
  cr_expect_eq(tl_prep_run(&o, NULL, NULL), TL_ERR);
  cr_expect(strstr(tl_last_error(), "interrupted while looking for captures"), "%s",
            tl_last_error());
  tl_prep_options_free(&o);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "%s", path);
  fputs(text, f);
  fclose(f);
}

// --out a folder tl-prep did not write: files with shard names, or a manifest.json
// of another tool, would be deleted or overwritten, so the run is refused and
// they stay; other files beside a tl-prep set are left alone.
Test(prep_run, out_folder_files_tl_did_not_write_are_kept) {
  make_tree(T("tree_own"));
  char dir[512], user_shard[600], user_manifest[600], notes[600], *data = NULL;
  snprintf(dir, sizeof dir, "%s", T("out_user"));
  mkdir(dir, 0755);
  snprintf(user_shard, sizeof user_shard, "%s/train-00007.h5", dir);
  write_text(user_shard, "my own data\n");
  tl_prep_counts c;
  cr_expect_eq(run_into(T("tree_own"), dir, TL_TASK_PACKET, 1, &c), TL_ERR);
  cr_expect(strstr(tl_last_error(), "train-00007.h5"), "%s", tl_last_error());
  char lock[700];
  snprintf(lock, sizeof lock, "%s/.tl-prep.lock", dir);
  cr_expect_neq(access(lock, F_OK), 0, "no lock file left in a refused folder");
  cr_expect_eq(file_bytes(user_shard, &data), 12, "the user's file is untouched");
  free(data), data = NULL;

  unlink(user_shard);
  snprintf(user_manifest, sizeof user_manifest, "%s/manifest.json", dir);
  write_text(user_manifest, "{\"name\": \"my captures\"}\n");
  cr_expect_eq(run_into(T("tree_own"), dir, TL_TASK_PACKET, 1, &c), TL_ERR);
  cr_expect(strstr(tl_last_error(), "not a tl-prep manifest"), "%s", tl_last_error());
  cr_expect_eq(file_bytes(user_manifest, &data), 24);
  free(data), data = NULL;
  write_text(user_manifest, "{\"format_version\": \"2.1\"}\n");
  cr_expect_eq(run_into(T("tree_own"), dir, TL_TASK_PACKET, 1, &c), TL_ERR);
  cr_expect(strstr(tl_last_error(), "not a tl-prep manifest"), "%s", tl_last_error());
  cr_expect_neq(access(lock, F_OK), 0, "no lock file left beside another tool's manifest");

  unlink(user_manifest);
  snprintf(notes, sizeof notes, "%s/notes.txt", dir);
  write_text(notes, "run 1\n");
  cr_assert_eq(run_into(T("tree_own"), dir, TL_TASK_PACKET, 1, &c), TL_OK, "%s",
               tl_last_error());
  cr_assert_eq(run_into(T("tree_own"), dir, TL_TASK_PACKET, 2, &c), TL_OK, "%s",
               tl_last_error());
  cr_expect_eq(file_bytes(notes, &data), 6, "a file beside the set is left alone");
  free(data);
}

// A Latin-1 folder and file name (not UTF-8) is recorded escaped, so that the
// manifest stays valid JSON text for json.load; its bytes are kept too, and
// --holdout-of opens that file again from them.
Test(prep_run, names_that_are_not_utf8_are_escaped) {
  char root[512], cls[600], link[700], *text = NULL;
  snprintf(root, sizeof root, "%s", T("tree_latin"));
  mkdir(root, 0755);
  snprintf(cls, sizeof cls, "%s/cl\xe9", root);
  mkdir(cls, 0755);
  snprintf(link, sizeof link, "%s/caf\xe9.pcap", cls);
  cr_assert_eq(symlink(PCAPS "/ntp/zeek__ntp.pcap", link), 0);
  snprintf(cls, sizeof cls, "%s/snmp", root);
  mkdir(cls, 0755);
  snprintf(link, sizeof link, "%s/snmp.pcap", cls);
  cr_assert_eq(symlink(PCAPS "/snmp/ndpi__snmp.pcap", link), 0);

  tl_prep_counts c;
  cr_assert_eq(run_into(root, T("out_latin"), TL_TASK_FLOW, 1, &c), TL_OK, "%s",
               tl_last_error());
  cr_assert_gt(file_bytes(T("out_latin/manifest.json"), &text), 0);
  cr_expect(tl_utf8_valid(text), "manifest.json is UTF-8 text");
  cJSON *m = cJSON_Parse(text);
  cr_assert_not_null(m);
  const cJSON *labels = cJSON_GetObjectItem(m, "label_names");
  cr_expect_str_eq(cJSON_GetArrayItem(labels, 0)->valuestring, "cl\\xe9");
  const cJSON *files = cJSON_GetObjectItem(m, "source_files");
  cr_expect(strstr(cJSON_GetArrayItem(files, 0)->valuestring, "/cl\\xe9/caf\\xe9.pcap"));
  const cJSON *hex = cJSON_GetObjectItem(cJSON_GetObjectItem(m, "source_files_hex"), "0");
  cr_expect(cJSON_IsString(hex));
  cr_expect_null(cJSON_GetObjectItem(cJSON_GetObjectItem(m, "source_files_hex"), "1"));
  cJSON_Delete(m);
  free(text);

  cr_assert_eq(pretrain_holdout(T("out_latin"), T("out_latin_pre"), 60, &c), TL_OK, "%s",
               tl_last_error());
  cr_expect_eq(c.files_read, 2, "both captures opened again (refused: %d)", c.files_refused);
}

// Runs o (which it frees) with stderr redirected (the test calls
// cr_redirect_stderr() first); returns what was printed, in a static buffer.
static const char *run_for_warnings(tl_prep_options *o) {
  static char text[32768];
  cr_assert_eq(tl_prep_run(o, NULL, NULL), TL_OK, "%s", tl_last_error());
  tl_prep_options_free(o);
  fflush(stderr);
  size_t n = fread(text, 1, sizeof text - 1, cr_get_redirected_stderr());
  text[n] = 0;
  return text;
}

// Pre-training on one flow gives only same-origin pairs; that is said.
Test(prep_run, one_flow_pretraining_warns_of_unbalanced_pairs) {
  cr_redirect_stderr();
  tl_prep_options o;
  options_for(&o, TL_TASK_PRETRAIN, PCAPS "/ntp/ndpi__NTPv2.pcap", T("out_one_flow"));
  const char *text = run_for_warnings(&o);
  cr_expect(strstr(text, "pairs in train: only 0 of 1 are other-origin"), "%s", text);
  cr_expect(strstr(text, "pairs in valid: none: too few flows"), "%s", text);
}

// --holdout-of reads the captures again by the recorded paths: two sets made
// from one tree, by a relative and an absolute path, are the same captures;
// a capture gone since is named instead of shifting flow ids.
Test(prep_run, holdout_paths_relative_absolute_and_gone) {
  make_tree(T("tree_rel"));
  cr_assert_eq(chdir(T("")), 0);
  tl_prep_counts c;
  cr_assert_eq(run_into("tree_rel", T("flow_rel"), TL_TASK_FLOW, 3, &c), TL_OK, "%s",
               tl_last_error());
  cr_assert_eq(run_into(T("tree_rel"), T("flow_abs"), TL_TASK_FLOW, 3, &c), TL_OK, "%s",
               tl_last_error());
  char both[600];
  snprintf(both, sizeof both, "%s,%s", T("flow_rel"), T("flow_abs"));
  cr_expect_eq(pretrain_holdout(both, T("pre_both"), 60, &c), TL_OK, "%s", tl_last_error());

  char link[600];
  snprintf(link, sizeof link, "%s/snmp", T("tree_rel"));
  cr_assert_eq(unlink(link), 0);
  cr_expect_eq(pretrain_holdout(T("flow_rel"), T("pre_gone"), 60, &c), TL_ERR);
  cr_expect(strstr(tl_last_error(), "is not found from here"), "%s", tl_last_error());
  cr_expect(strstr(tl_last_error(), "relative paths count from"), "%s", tl_last_error());
}

// --out inside an input folder would be read back as captures (or a class).
Test(prep_run, out_inside_the_inputs_is_refused) {
  make_tree(T("tree_in"));
  tl_prep_counts c;
  cr_expect_eq(run_into(T("tree_in"), T("tree_in/shards"), TL_TASK_PACKET, 1, &c), TL_ERR);
  cr_expect(strstr(tl_last_error(), "is inside --in"), "%s", tl_last_error());
  cr_assert_eq(chdir(T("tree_in")), 0);
  cr_expect_eq(run_into(".", "new/deeper", TL_TASK_PACKET, 1, &c), TL_ERR);
  cr_expect(strstr(tl_last_error(), "is inside --in"), "%s", tl_last_error());
  cr_expect_eq(run_into(".", "../tree_in_shards", TL_TASK_PACKET, 1, &c), TL_OK, "%s",
               tl_last_error());
}

// An option the task does not use is named, not silently dropped.
Test(prep_run, options_a_task_does_not_use_are_named) {
  cr_redirect_stderr();
  make_tree(T("tree_unused"));
  tl_prep_options o;
  options_for(&o, TL_TASK_PACKET, T("tree_unused"), T("out_unused"));
  o.ds.min_per_class = 1;
  o.ds.flow_packets = 9;
  const char *text = run_for_warnings(&o);
  cr_expect(strstr(text, "--flow-packets does not apply to --task packet"), "%s", text);
  cr_expect(!strstr(text, "--burst-packets"), "only options set away from their default");
}

// A first run that fails leaves no empty output folder behind.
Test(prep_run, a_failed_first_run_leaves_no_folder) {
  char empty[512];
  snprintf(empty, sizeof empty, "%s", T("tree_empty"));
  mkdir(empty, 0755);
  mkdir(T("tree_empty/cls"), 0755);
  FILE *f = fopen(T("tree_empty/cls/not-a-capture.pcap"), "w");
  fputs("hello\n", f);
  fclose(f);
  const char *outs[] = {"out_never/a/b", "out_never/a/b/", "out_never//a/./b"};
  for (int i = 0; i < 3; i++) {
    cr_expect_eq(run_into(empty, T(outs[i]), TL_TASK_PACKET, 1, NULL), TL_ERR);
    cr_expect_neq(access(T("out_never"), F_OK), 0, "%s: a folder is left", outs[i]);
  }
}

// --in with --holdout-of: more captures are pre-trained on after the set's own
// (a config's in: list once vanished without a word); repeats are read once.
Test(prep_run, holdout_with_more_inputs_reads_them_too) {
  make_tree(T("tree_more"));
  cr_assert_eq(run_into(T("tree_more"), T("flow_more"), TL_TASK_FLOW, 1, NULL), TL_OK);
  tl_prep_counts alone, more, again;
  cr_assert_eq(pretrain_holdout(T("flow_more"), T("pre_alone"), 60, &alone), TL_OK);
  const char *extra[] = {PCAPS "/stun", T("tree_more")};
  tl_prep_counts *counts[] = {&more, &again};
  for (int i = 0; i < 2; i++) {
    tl_prep_options o;
    options_for(&o, TL_TASK_PRETRAIN, extra[i], T(i ? "pre_again" : "pre_more"));
    o.holdout_of = tl_xstrdup(T("flow_more"));
    cr_assert_eq(tl_prep_run(&o, NULL, counts[i]), TL_OK, "%s", tl_last_error());
    tl_prep_options_free(&o);
  }
  cr_expect_gt(more.files_total, alone.files_total, "the stun captures are read too");
  cr_expect_eq(again.files_total, alone.files_total, "the set's own captures, once");
  cr_expect_eq(more.held_out_bursts, alone.held_out_bursts);
}

// Paths the system refuses (a chain of links deeper than it follows) are
// skipped, not recorded as captures; the output folder reached through a link
// is never read back.
Test(prep_run, link_chains_and_the_output_behind_a_link) {
  char root[512], dir[600], link[700];
  snprintf(root, sizeof root, "%s", T("chain"));
  mkdir(root, 0755);
  for (int i = 0; i <= 45; i++) {
    snprintf(dir, sizeof dir, "%s/d%02d", root, i);
    mkdir(dir, 0755);
    snprintf(link, sizeof link, "%s/next", dir);
    char target[32];
    snprintf(target, sizeof target, "../d%02d", i + 1);
    if (i < 45) cr_assert_eq(symlink(target, link), 0);
  }
  snprintf(link, sizeof link, "%s/d00/ntp.pcap", root);
  cr_assert_eq(symlink(PCAPS "/ntp/zeek__ntp.pcap", link), 0);
  tl_prep_counts c;
  char start[600];
  snprintf(start, sizeof start, "%s/d00", root);
  cr_assert_eq(run_into(start, T("out_chain"), TL_TASK_PRETRAIN, 1, &c), TL_OK, "%s",
               tl_last_error());
  cr_expect_eq(c.files_total, 1, "no folder taken for a capture (got %d)", c.files_total);
  cr_expect_eq(c.files_refused, 0);

  // in/link -> a folder holding --out: the set is written, then not read back.
  mkdir(T("elsewhere"), 0755);
  snprintf(link, sizeof link, "%s/d00/link", root);
  cr_assert_eq(symlink(T("elsewhere"), link), 0);
  cr_assert_eq(run_into(start, T("elsewhere/set"), TL_TASK_PRETRAIN, 1, &c), TL_OK);
  cr_assert_eq(run_into(start, T("elsewhere/set"), TL_TASK_PRETRAIN, 1, &c), TL_OK);
  cr_expect_eq(c.files_total, 1, "the shards are not read as captures (got %d)", c.files_total);
}

// Small things a first run meets: captures directly in --in, a typo in --in,
// "--in caps/", spaces in a --holdout-of list, two classes alike once escaped.
Test(prep_run, first_run_messages) {
  char flat[512], link[700];
  snprintf(flat, sizeof flat, "%s", T("flat"));
  mkdir(flat, 0755);
  snprintf(link, sizeof link, "%s/ntp.pcap", flat);
  cr_assert_eq(symlink(PCAPS "/ntp/zeek__ntp.pcap", link), 0);
  cr_expect_eq(run_into(flat, T("out_flat"), TL_TASK_PACKET, 1, NULL), TL_ERR);
  cr_expect(strstr(tl_last_error(), "no class folders below --in, only 1 files"), "%s",
            tl_last_error());
  cr_expect_eq(run_into(T("no-such-folder"), T("out_typo"), TL_TASK_PRETRAIN, 1, NULL),
               TL_ERR);
  cr_expect(strstr(tl_last_error(), "No such file or directory"), "%s", tl_last_error());

  make_tree(T("tree_slash"));
  char slash[600], *text = NULL;
  snprintf(slash, sizeof slash, "%s//", T("tree_slash"));
  cr_assert_eq(run_into(slash, T("out_slash"), TL_TASK_PACKET, 1, NULL), TL_OK);
  cr_assert_gt(file_bytes(T("out_slash/manifest.json"), &text), 0);
  cr_expect_null(strstr(text, "tree_slash//"), "no doubled slash in source_files");
  free(text);

  tl_prep_options o;
  options_for(&o, TL_TASK_PRETRAIN, NULL, T("x"));
  cr_assert_eq(tl_prep_set_option(&o, "holdout_of", " a , b ,c", "--holdout-of"), TL_OK);
  cr_expect_str_eq(o.holdout_of, "a,b,c");
  tl_prep_options_free(&o);

  char twins[512], cls[600];
  snprintf(twins, sizeof twins, "%s", T("twins"));
  mkdir(twins, 0755);
  const char *names[] = {"caf\xe9", "caf\\xe9"};
  const char *files[] = {PCAPS "/ntp/zeek__ntp.pcap", PCAPS "/snmp/ndpi__snmp.pcap"};
  for (int i = 0; i < 2; i++) {
    snprintf(cls, sizeof cls, "%s/%s", twins, names[i]);
    mkdir(cls, 0755);
    snprintf(link, sizeof link, "%s/x.pcap", cls);
    cr_assert_eq(symlink(files[i], link), 0);
  }
  cr_expect_eq(run_into(twins, T("out_twins"), TL_TASK_PACKET, 1, NULL), TL_ERR);
  cr_expect(strstr(tl_last_error(), "two classes are both named"), "%s", tl_last_error());
}
