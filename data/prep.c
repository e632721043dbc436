// prep.c: tl-prep's streaming pass: find the inputs, read every capture once,
// normalise, group into flows and bursts, hand samples to the dataset builder,
// and report what was used and what was skipped, by reason.
#include "data/prep.h"

#include <dirent.h>
#include <errno.h>
#include <search.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data/capture.h"
#include "data/holdout.h"
#include "data/label_csv.h"

void tl_prep_options_default(tl_prep_options *o, tl_task task) {
  memset(o, 0, sizeof *o);
  tl_dataset_options_default(&o->ds, task);
  tl_flow_options_default(&o->flow);
  o->policy = TL_HEADER_ANONYMOUS;
  o->ds.header_policy = tl_header_policy_name(o->policy);
  o->flow.keep_bytes = o->ds.packet_bytes > 0 ? (size_t)o->ds.packet_bytes : 1600;
  if (o->ds.flow_packets > 0) o->flow.flow_packets = o->ds.flow_packets;
  // A packet without payload (a pure ACK) looks the same in every TCP class, so
  // packet-level sets leave them out by default, as Deep Packet and others do.
  o->flow.min_payload = task == TL_TASK_PACKET ? 1 : 0;
  o->progress = -1;
  o->burst_packets = 8;
  o->reassemble = 1;
}

const char *tl_header_policy_name(tl_header_policy p) {
  return p == TL_HEADER_KEEP ? "keep" : p == TL_HEADER_COMPAT ? "compat" : "anonymous";
}

void tl_prep_options_free(tl_prep_options *o) {
  for (int i = 0; i < o->n_in; i++) free(o->in[i]);
  free(o->in);
  free(o->labels_csv);
  free(o->holdout_of);
  free(o->out_dir);
  o->in = NULL;
  o->n_in = 0;
  o->labels_csv = o->out_dir = o->holdout_of = NULL;
}

// --- inputs -----------------------------------------------------------------

typedef struct {
  char *path;
  int label; // -1 for pre-training
} tl_input;

typedef struct {
  tl_input *v;
  int n, cap;
  char **labels; // sorted label names
  int n_labels;
} tl_inputs;

static void inputs_add(tl_inputs *in, const char *path, int label) {
  if (in->n == in->cap) {
    in->cap = in->cap ? 2 * in->cap : 64;
    in->v = tl_xrealloc(in->v, (size_t)in->cap * sizeof *in->v);
  }
  in->v[in->n++] = (tl_input){tl_xstrdup(path), label};
}

static void inputs_free(tl_inputs *in) {
  for (int i = 0; i < in->n; i++) free(in->v[i].path);
  for (int i = 0; i < in->n_labels; i++) free(in->labels[i]);
  free(in->v);
  free(in->labels);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

// dir/name, without a doubled slash when dir ends in one (--in caps/). Valid
// until the next tl_fmt() call.
static const char *join_path(const char *dir, const char *name) {
  int n = (int)strlen(dir);
  while (n > 1 && dir[n - 1] == '/') n--;
  return tl_fmt("%.*s%s%s", n, dir, n == 1 && dir[0] == '/' ? "" : "/", name);
}

// Sorted entry names of a folder, dot files left out; NULL (errno set) when the
// folder cannot be listed. Free with free_names().
static char **dir_names(const char *dir, int *n_out) {
  *n_out = 0;
  DIR *d = opendir(dir);
  if (!d) return NULL;
  char **names = tl_xmalloc(sizeof *names);
  int n = 0, cap = 1;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    if (n == cap) names = tl_xrealloc(names, (size_t)(cap *= 2) * sizeof *names);
    names[n++] = tl_xstrdup(e->d_name);
  }
  closedir(d);
  if (n) qsort(names, (size_t)n, sizeof *names, cmp_str); // strcmp: locale-free order
  *n_out = n;
  return names;
}

static void free_names(char **names, int n) {
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
}

// The folder walk. Folders are remembered by device, inode and label, so that a
// link back up the tree (a loop) ends, and a folder reached by several links is
// listed once per label; a folder under two labels is still listed under both,
// so that drop_repeated_files() can name the clash.
typedef struct {
  dev_t dev;
  ino_t ino;
  int label;
} tl_dir_key;

typedef struct {
  tl_inputs *in;
  void *seen; // tsearch() tree of tl_dir_key
  const volatile sig_atomic_t *stop;
  int revisits;
  int too_deep;          // paths that stat() refuses for too many links or length
  int files_beside;      // files directly in a classification --in, not in a class
  int has_out;           // --out exists: never read it, also when a link leads in
  dev_t out_dev;
  ino_t out_ino;
} tl_walk;

static int cmp_dir_key(const void *a, const void *b) {
  const tl_dir_key *x = a, *y = b;
  if (x->dev != y->dev) return x->dev < y->dev ? -1 : 1;
  if (x->ino != y->ino) return x->ino < y->ino ? -1 : 1;
  return (x->label > y->label) - (x->label < y->label);
}

// Whether the folder was walked before (under this label); remembers it if not.
static int seen_before(tl_walk *w, const struct stat *st, int label) {
  tl_dir_key *k = tl_xmalloc(sizeof *k);
  *k = (tl_dir_key){st->st_dev, st->st_ino, label};
  tl_dir_key **found = tsearch(k, &w->seen, cmp_dir_key);
  TL_ASSERTF(found, "out of memory");
  if (*found == k) return 0;
  free(k);
  return 1;
}

static void walk_free(tl_walk *w) {
  tdestroy(w->seen, free);
  w->seen = NULL;
}

// Every file below path (path itself if it is a file), in sorted order. Fails
// only on a stop request (Ctrl-C): a tree can take long to list.
static tl_status walk(tl_walk *w, const char *path, int label) {
  if (w->stop && *w->stop) {
    tl_set_error("interrupted while looking for captures in %s", path);
    return TL_ERR;
  }
  struct stat st;
  int found = stat(path, &st) == 0;
  if (!found && (errno == ELOOP || errno == ENAMETOOLONG)) {
    // A maze of links to folders nests paths until the system refuses them.
    if (w->too_deep++ == 0) tl_warn("%s: %s; skipped", path, strerror(errno));
    return TL_OK;
  }
  if (!found || !S_ISDIR(st.st_mode)) {
    inputs_add(w->in, path, label); // a file, or a path that is refused when opened
    return TL_OK;
  }
  if (w->has_out && st.st_dev == w->out_dev && st.st_ino == w->out_ino) {
    tl_warn("%s is the output folder (--out), reached through a link; not read", path);
    return TL_OK;
  }
  if (seen_before(w, &st, label)) {
    if (w->revisits++ == 0)
      tl_warn("%s: this folder was already listed (given twice, or reached again through a "
              "link); listed once", path);
    return TL_OK;
  }
  int n;
  char **names = dir_names(path, &n);
  if (!names) {
    tl_warn("%s: cannot list this folder (%s); its files are not used", path, strerror(errno));
    return TL_OK;
  }
  tl_status s = TL_OK;
  for (int i = 0; i < n && s == TL_OK; i++) {
    char *sub = tl_xstrdup(join_path(path, names[i])); // tl_fmt's buffer is reused below
    s = walk(w, sub, label);
    free(sub);
  }
  free_names(names, n);
  return s;
}

// Interns a label name; returns its index in the unsorted table.
static int label_index(tl_inputs *in, const char *name) {
  for (int i = 0; i < in->n_labels; i++)
    if (!strcmp(in->labels[i], name)) return i;
  in->labels = tl_xrealloc(in->labels, (size_t)(in->n_labels + 1) * sizeof *in->labels);
  in->labels[in->n_labels] = tl_xstrdup(name);
  return in->n_labels++;
}

// Sorts the label names and renumbers the inputs to match.
static void sort_labels(tl_inputs *in) {
  int n = in->n_labels;
  char **sorted = tl_xmalloc((size_t)(n ? n : 1) * sizeof *sorted);
  if (n) memcpy(sorted, in->labels, (size_t)n * sizeof *sorted); // labels is NULL when n = 0
  qsort(sorted, (size_t)n, sizeof *sorted, cmp_str);
  int *map = tl_xmalloc((size_t)(n ? n : 1) * sizeof *map);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++)
      if (in->labels[i] == sorted[j]) map[i] = j;
  for (int i = 0; i < in->n; i++)
    if (in->v[i].label >= 0) in->v[i].label = map[in->v[i].label];
  free(in->labels);
  in->labels = sorted;
  free(map);
}

// Class folders: each folder directly below an input is a class; files below it
// (at any depth) are its captures. Folders starting with '_' are not classes.
static tl_status find_class_folders(const tl_prep_options *o, tl_walk *w) {
  for (int k = 0; k < o->n_in; k++) {
    struct stat st;
    if (stat(o->in[k], &st) != 0) {
      tl_set_error("--in %s: %s", o->in[k], strerror(errno));
      return TL_ERR;
    }
    if (!S_ISDIR(st.st_mode)) {
      tl_set_error("%s: not a folder (classification wants one folder per class below it)",
                   o->in[k]);
      return TL_ERR;
    }
    int n;
    char **names = dir_names(o->in[k], &n);
    if (!names) {
      tl_set_error("%s: cannot list this folder (%s)", o->in[k], strerror(errno));
      return TL_ERR;
    }
    tl_status s = TL_OK;
    for (int i = 0; i < n && s == TL_OK; i++) {
      char *sub = tl_xstrdup(join_path(o->in[k], names[i]));
      if (!is_dir(sub)) {
        tl_debug("%s: a file beside the class folders, not used", sub);
        w->files_beside++;
      } else if (names[i][0] == '_') {
        tl_info("%s: folder starts with '_', not a class; skipped", sub);
      } else {
        s = walk(w, sub, label_index(w->in, names[i]));
      }
      free(sub);
    }
    free_names(names, n);
    if (s != TL_OK) return s;
  }
  return TL_OK;
}

static int cmp_input_key(const void *a, const void *b, void *keys) {
  char *const *k = keys;
  int i = *(const int *)a, j = *(const int *)b;
  int c = strcmp(k[i], k[j]);
  return c ? c : i - j;
}

// A file met twice (listed twice, a folder given twice, a link to a file
// already in) would be read twice and its flows split independently, so the
// same bytes could land in train and test: repeats are dropped with a warning,
// and a file given two labels is an error. Files are compared by device and
// inode, so hard links count as the same file too.
static tl_status drop_repeated_files(const char *source, tl_inputs *in) {
  int *order = tl_xmalloc((size_t)(in->n + 1) * sizeof *order);
  char *drop = tl_xcalloc((size_t)in->n + 1, 1);
  char **keys = tl_xmalloc((size_t)(in->n + 1) * sizeof *keys);
  for (int i = 0; i < in->n; i++) {
    order[i] = i;
    struct stat st;
    keys[i] = stat(in->v[i].path, &st) == 0
                  ? tl_xstrdup(tl_fmt("%llu:%llu", (unsigned long long)st.st_dev,
                                      (unsigned long long)st.st_ino))
                  : tl_xstrdup(in->v[i].path); // unreadable: refused later
  }
  qsort_r(order, (size_t)in->n, sizeof *order, cmp_input_key, keys);
  tl_status st = TL_OK;
  int repeats = 0, named_twice = 0;
  for (int k = 1; k < in->n && st == TL_OK; k++) {
    const tl_input *a = &in->v[order[k - 1]], *b = &in->v[order[k]];
    if (strcmp(keys[order[k - 1]], keys[order[k]])) continue;
    if (a->label != b->label) {
      tl_set_error("%s: %s and %s are the same file with two labels", source, a->path,
                   b->path);
      st = TL_ERR;
    } else if (!strcmp(a->path, b->path)) { // one folder given twice: said once, below
      named_twice++;
      drop[order[k]] = 1;
    } else {
      if (++repeats <= 5) tl_warn("%s: %s is the same file as %s; read once", source, b->path,
                                  a->path);
      drop[order[k]] = 1;
    }
  }
  if (repeats > 5) tl_warn("%s: %d more repeated files, each read once", source, repeats - 5);
  if (named_twice)
    tl_warn("%s: %d files are named twice (an input given twice, or --in holding the "
            "--holdout-of set's captures); each is read once", source, named_twice);
  int n = 0;
  for (int i = 0; i < in->n; i++) {
    free(keys[i]);
    if (drop[i]) free(in->v[i].path);
    else in->v[n++] = in->v[i];
  }
  in->n = n;
  free(keys);
  free(order);
  free(drop);
  return st;
}

typedef struct {
  const tl_prep_options *o;
  tl_inputs *in;
  int outside; // listed files not below --in
} tl_csv_inputs;

static tl_status add_csv_row(void *ctx, const char *path, const char *label, int line) {
  tl_csv_inputs *c = ctx;
  int keep = c->o->n_in == 0;
  for (int k = 0; k < c->o->n_in && !keep; k++)
    keep = !strncmp(path, c->o->in[k], strlen(c->o->in[k]));
  struct stat st;
  if (keep && stat(path, &st) != 0) // named here, where the CSV line is known
    tl_warn("%s:%d: %s: %s; left out", c->o->labels_csv, line, path, strerror(errno));
  else if (keep) inputs_add(c->in, path, label_index(c->in, label));
  else c->outside++;
  return TL_OK;
}

// The files and labels --labels lists (data/label_csv.h). With inputs given,
// only files below them are kept.
static tl_status find_from_csv(const tl_prep_options *o, tl_inputs *in) {
  tl_csv_inputs c = {.o = o, .in = in};
  if (tl_label_csv_read(o->labels_csv, add_csv_row, &c) != TL_OK) return TL_ERR;
  if (c.outside > 0)
    tl_warn("%s: %d listed files are not below --in (as the CSV names them) and are left out",
            o->labels_csv, c.outside);
  return TL_OK;
}

static tl_status find_inputs(const tl_prep_options *o, tl_inputs *in) {
  tl_walk w = {.in = in, .stop = o->ds.stop};
  struct stat out;
  if (o->out_dir && stat(o->out_dir, &out) == 0)
    w.has_out = 1, w.out_dev = out.st_dev, w.out_ino = out.st_ino;
  tl_status s = TL_OK;
  if (o->ds.task == TL_TASK_PRETRAIN) {
    for (int k = 0; k < o->n_in && s == TL_OK; k++) {
      struct stat st;
      if (stat(o->in[k], &st) != 0) { // a typo must not just shrink the data
        tl_set_error("--in %s: %s", o->in[k], strerror(errno));
        s = TL_ERR;
      } else {
        s = walk(&w, o->in[k], -1);
      }
    }
  } else {
    s = o->labels_csv ? find_from_csv(o, in) : find_class_folders(o, &w);
    if (s == TL_OK) sort_labels(in);
  }
  walk_free(&w);
  if (w.too_deep > 1) tl_warn("%d paths skipped in all: too many links deep", w.too_deep);
  if (s != TL_OK) return s;
  if (drop_repeated_files(o->labels_csv ? o->labels_csv : "inputs", in) != TL_OK) return TL_ERR;
  if (in->n == 0 && w.files_beside > 0) {
    tl_set_error("no class folders below --in, only %d files: classification wants the "
                 "captures of each class in a folder named after it (or a --labels CSV)",
                 w.files_beside);
    return TL_ERR;
  }
  if (in->n == 0) {
    tl_set_error("no input files found (inputs: %d, labels: %s)", o->n_in,
                 o->labels_csv                  ? o->labels_csv
                 : o->ds.task == TL_TASK_PRETRAIN ? "none, pretrain"
                                                  : "class folders");
    return TL_ERR;
  }
  return TL_OK;
}

// --- the pass -----------------------------------------------------------------

typedef struct {
  const tl_prep_options *o;
  tl_dataset_builder *b;
  tl_prep_counts *c;
  tl_flow_table *table;
  tl_defrag *defrag;         // NULL with reassembly off
  const tl_holdout *holdout; // NULL unless --holdout-of
  int label, file_index;
  // progress
  int show_progress, n_files;
  double t0, last_progress;
} tl_prep_run_ctx;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static tl_status sink_packet(void *ctx, uint64_t flow_id, int dir, const uint8_t *bytes,
                             size_t n) {
  tl_prep_run_ctx *r = ctx;
  return tl_dataset_add_sample(r->b, r->label, flow_id, r->file_index, &bytes, &n, 1);
}

static tl_status sink_burst(void *ctx, uint64_t flow_id, const uint8_t *const *pkts,
                            const size_t *lens, int n) {
  tl_prep_run_ctx *r = ctx;
  bool mismatch = false;
  if (r->holdout && tl_holdout_has(r->holdout, (int64_t)flow_id, r->file_index, &mismatch)) {
    if (mismatch) {
      tl_set_error("%s: flow %llu is not from the file --holdout-of recorded for it: "
                   "flow ids do not line up (has a capture changed since the set was made?)",
                   r->o->holdout_of, (unsigned long long)flow_id);
      return TL_ERR;
    }
    r->c->held_out_bursts++;
    return TL_OK;
  }
  return tl_dataset_add_burst(r->b, flow_id, r->file_index, pkts, lens, n);
}

static tl_status sink_flow(void *ctx, uint64_t flow_id, const uint8_t *const *pkts,
                           const size_t *lens, int n) {
  tl_prep_run_ctx *r = ctx;
  return tl_dataset_add_sample(r->b, r->label, flow_id, r->file_index, pkts, lens, n);
}

static void progress(tl_prep_run_ctx *r, int force) {
  if (!r->show_progress) return;
  double t = now_s();
  if (!force && t - r->last_progress < 0.5) return;
  r->last_progress = t;
  double el = t - r->t0;
  fprintf(stderr, "\r\033[Ktl-prep: file %d/%d, %lld packets, %lld flows, %.0f packets/s",
          r->file_index + 1, r->n_files, (long long)r->c->packets_read,
          (long long)tl_flow_table_stats(r->table)->flows,
          el > 0 ? (double)r->c->packets_read / el : 0.0);
  if (force) fputc('\n', stderr);
  fflush(stderr);
}

// Clears the progress line so that a warning starts on a clean line.
static void clear_progress(const tl_prep_run_ctx *r) {
  if (r->show_progress) fputs("\r\033[K", stderr);
}

// Reads one capture into the flow table. Returns TL_ERR only for a builder
// failure; bad files are counted and warned about.
static tl_status prep_file(tl_prep_run_ctx *r, tl_flow_table *t, const char *path,
                           int *bad_file) {
  const tl_prep_options *o = r->o;
  tl_prep_counts *c = r->c;
  *bad_file = 0;
  tl_capture *cap = tl_capture_open(path);
  if (!cap) {
    clear_progress(r);
    tl_warn("%s", tl_last_error());
    c->files_refused++;
    *bad_file = 1;
    return TL_OK;
  }

  uint8_t buf[65536];
  size_t keep = o->flow.keep_bytes < sizeof buf ? o->flow.keep_bytes : sizeof buf;
  int for_pretrain = o->ds.task == TL_TASK_PRETRAIN;
  uint64_t first_cut = 0, first_badts = 0, n_cut = 0, n_file = 0;
  tl_capture_packet p;
  int rc;
  while ((rc = tl_capture_next(cap, &p)) == 1) {
    if (o->ds.stop && *o->ds.stop) {
      tl_set_error("interrupted while reading %s", path);
      tl_capture_close(cap);
      return TL_ERR;
    }
    c->packets_read++;
    n_file++;
    c->bytes_read += p.caplen;
    if (p.bad_timestamp && !first_badts) first_badts = p.number;
    tl_packet_info pi;
    tl_skip_reason why = tl_packet_parse(p.linktype, p.data, p.caplen, p.wirelen, &pi);
    // A fragment goes to the reassembler; a whole datagram comes back as the
    // frame (raw IP), so compat's offsets then count from its IP header.
    const uint8_t *frame = p.data;
    uint32_t frame_len = p.caplen;
    if (r->defrag) why = tl_defrag_frame(r->defrag, why, &pi, p.ts_ns, &frame, &frame_len);
    if (why == TL_SKIP_FRAGMENT && r->defrag) continue; // counted by the reassembler
    if (why != TL_SKIP_NONE) {
      c->skipped[why]++;
      continue;
    }
    if (pi.cut && !n_cut++) first_cut = p.number;
    c->tunnelled += pi.tunnels > 0;
    c->outer_tunnels += pi.outer_tunnel;
    c->packets_used++;
    size_t n = tl_packet_bytes(&pi, o->policy, for_pretrain, frame, frame_len, buf, keep);
    if (tl_flow_table_add(t, &pi, p.ts_ns, p.number, buf, n) != TL_OK) {
      tl_capture_close(cap);
      return TL_ERR;
    }
    if ((c->packets_read & 4095) == 0) progress(r, 0);
  }

  // One line per problem and file, naming the packet.
  if (rc < 0 || n_cut || first_badts) clear_progress(r);
  if (rc < 0) {
    tl_warn("%s (the %llu packets before it are used)", tl_last_error(),
            (unsigned long long)n_file);
    c->files_stopped++;
    *bad_file = 1;
  }
  if (n_cut) {
    tl_warn("%s: %llu packets cut by the snaplen, first at packet %llu (kept as captured)",
            path, (unsigned long long)n_cut, (unsigned long long)first_cut);
    c->packets_cut += (int64_t)n_cut;
  }
  if (first_badts) {
    tl_warn("%s: packet %llu: timestamp fraction out of range (kept as read)", path,
            (unsigned long long)first_badts);
    c->bad_timestamps++;
  }
  tl_capture_close(cap);
  c->files_read++;
  if (r->defrag) tl_defrag_flush(r->defrag); // like flows, never across files
  return tl_flow_table_flush(t);
}

// --- summary ----------------------------------------------------------------

static const char *task_name(tl_task t) {
  return t == TL_TASK_PRETRAIN ? "pretrain" : t == TL_TASK_PACKET ? "packet" : "flow";
}

static const char *split_name(tl_split_policy s) {
  return s == TL_SPLIT_BY_FLOW ? "flow" : s == TL_SPLIT_BY_FILE ? "file" : "packet";
}

// A kept class with no rows in a split that should have some: its F1 is then
// missing from the test table (or its model pick noisy), which a user must know.
static void warn_empty_splits(const tl_prep_options *o, const char *name,
                              const int64_t rows[TL_NUM_SPLITS], int64_t sum) {
  static const char *split_names[] = {"train", "valid", "test"};
  if (!sum || o->ds.task == TL_TASK_PRETRAIN) return;
  for (int k = 0; k < TL_NUM_SPLITS; k++)
    if (o->ds.split_ratio[k] > 0 && rows[k] == 0)
      tl_warn("class %s has no %s rows: too few flows (or files) to split; "
              "add captures, or drop the class", name,
              split_names[k]);
}

// Fragments: how many came, how many datagrams they made, what was dropped and why.
static void print_fragments(FILE *f, const tl_prep_options *o, const tl_prep_counts *c) {
  const tl_defrag_stats *d = &c->defrag;
  if (!o->reassemble) {
    fprintf(f, "  fragments %lld skipped, not reassembled (reassemble: false)\n",
            (long long)c->skipped[TL_SKIP_FRAGMENT]);
    return;
  }
  fprintf(f, "  fragments %lld arrived, %lld datagrams reassembled from %lld of them "
          "(%lld repeats); dropped:", (long long)d->fragments, (long long)d->reassembled,
          (long long)d->used, (long long)d->duplicates);
  int any = 0;
  for (int k = 0; k < TL_DEFRAG_NUM_DROPS; k++) {
    if (!d->dropped[k]) continue;
    fprintf(f, "%s %s %lld", any ? "," : "", tl_defrag_drop_name((tl_defrag_drop)k),
            (long long)d->dropped[k]);
    any = 1;
  }
  fprintf(f, "%s\n", any ? "" : " none");
}

static void print_summary(FILE *f, const tl_prep_options *o, const tl_inputs *in,
                          const tl_prep_counts *c, const tl_dataset_summary *s) {
  fprintf(f, "tl-prep summary: task %s, header policy %s, split by %s, seed %llu -> %s\n",
          task_name(o->ds.task), tl_header_policy_name(o->policy), split_name(o->ds.split),
          (unsigned long long)o->ds.seed, o->out_dir);
  fprintf(f, "  files    %d found, %d read, %d refused, %d stopped early (their good packets "
          "used)\n", c->files_total, c->files_read, c->files_refused, c->files_stopped);
  fprintf(f, "  packets  %lld read, %lld used (%lld cut by snaplen, %lld from tunnels, "
          "%lld in tunnels kept as outer)\n", (long long)c->packets_read,
          (long long)c->packets_used, (long long)c->packets_cut, (long long)c->tunnelled,
          (long long)c->outer_tunnels);
  fprintf(f, "  skipped ");
  int any = 0;
  for (int k = 1; k < TL_SKIP_NUM_REASONS; k++) {
    if (!c->skipped[k]) continue;
    fprintf(f, "%s %s %lld", any ? "," : "", tl_skip_reason_name((tl_skip_reason)k),
            (long long)c->skipped[k]);
    any = 1;
  }
  fprintf(f, "%s\n", any ? "" : " none");
  print_fragments(f, o, c);
  const tl_flow_stats *fl = &c->flow;
  fprintf(f, "  flows    %lld (ended: closed %lld, idle %lld, evicted %lld, end of file %lld; "
          "peak %lld held), bursts %lld\n", (long long)fl->flows,
          (long long)fl->ended[TL_FLOW_END_CLOSED], (long long)fl->ended[TL_FLOW_END_IDLE],
          (long long)fl->ended[TL_FLOW_END_EVICTED], (long long)fl->ended[TL_FLOW_END_EOF],
          (long long)fl->peak_flows, (long long)fl->bursts);
  fprintf(f, "  order    %lld packets out of time order, %lld beyond the %d-packet window\n",
          (long long)fl->reordered, (long long)fl->late, o->flow.reorder_window);
  if (o->holdout_of)
    fprintf(f, "  holdout  %lld bursts of %s's valid and test flows left out\n",
            (long long)c->held_out_bursts, o->holdout_of);
  if (o->ds.task == TL_TASK_FLOW && o->flow.min_payload > 0)
    fprintf(f, "  payload  flow samples take the first %d packets with >= %d payload bytes\n",
            o->ds.flow_packets, o->flow.min_payload);
  if (o->ds.task == TL_TASK_PACKET)
    fprintf(f, "  payload  %lld packets with under %d payload bytes left out (--min-payload)\n",
            (long long)fl->small_payload, o->flow.min_payload);
  if (s) {
    fprintf(f, "  samples  %-24s %10s %10s %10s\n", "label", "train", "valid", "test");
    for (int l = 0; l < s->n_labels; l++) {
      const char *name = o->ds.task == TL_TASK_PRETRAIN ? "(burst pairs)"
                         : l < in->n_labels                ? in->labels[l]
                                                           : "?";
      int64_t sum = s->rows[l][0] + s->rows[l][1] + s->rows[l][2];
      fprintf(f, "           %-24s %10lld %10lld %10lld%s\n", name, (long long)s->rows[l][0],
              (long long)s->rows[l][1], (long long)s->rows[l][2], sum ? "" : "  (dropped)");
      warn_empty_splits(o, name, s->rows[l], sum);
    }
    fprintf(f, "           total %lld rows, %d labels dropped (below min_per_class)\n",
            (long long)s->total_rows, s->n_dropped_labels);
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double sec = c->seconds > 0 ? c->seconds : 1e-9;
  fprintf(f, "  speed    %.1f s, %.0f packets/s, %.1f MB/s, peak memory %.1f MiB\n", c->seconds,
          (double)c->packets_read / sec, (double)c->bytes_read / sec / 1e6,
          (double)ru.ru_maxrss / 1024.0);
}

// --- run --------------------------------------------------------------------

// One line naming the first option out of range, before any file is touched.
// The ranges are the config keys' (prep_config.c), so library callers meet the
// same bounds as flags and YAML.
static tl_status check_options(const tl_prep_options *o) {
  struct { const char *key; double value; } checks[] = {
      {"max_flows", o->flow.max_flows},       {"reorder_window", o->flow.reorder_window},
      {"idle_timeout", o->flow.idle_timeout_s}, {"close_linger", o->flow.close_linger_s},
      {"burst_packets", o->burst_packets},    {"min_payload", o->flow.min_payload},
      {"rows_per_shard", o->ds.rows_per_shard}, {"seq_len", o->ds.seq_len},
      {"packet_bytes", o->ds.packet_bytes},   {"max_per_class", o->ds.max_per_class},
      {"min_per_class", o->ds.min_per_class}, {"compress", o->ds.compress},
      {"flow_packets", o->ds.task == TL_TASK_FLOW ? o->ds.flow_packets : 1},
  };
  if (!o->out_dir || !o->out_dir[0]) {
    tl_set_error("--out: expected the folder the shards go to");
    return TL_ERR;
  }
  if (o->ds.packet_bytes == 1) { // a bigram needs two bytes: rows would hold [CLS] alone
    tl_set_error("--packet-bytes 1: expected 0 (whole packets) or 2 to %d",
                 TL_PREP_MAX_PACKET_BYTES);
    return TL_ERR;
  }
  for (size_t i = 0; i < sizeof checks / sizeof *checks; i++) {
    double lo, hi, v = checks[i].value;
    tl_prep_key_range(checks[i].key, &lo, &hi);
    // A pair needs [CLS] a [SEP] b [SEP]; a classification row [CLS] and a token.
    if (!strcmp(checks[i].key, "seq_len") && o->ds.task == TL_TASK_PRETRAIN) lo = 5;
    if (v >= lo && v <= hi) continue;
    char flag[32]; // the key as its flag: seq_len is --seq-len
    snprintf(flag, sizeof flag, "%s", checks[i].key);
    for (char *p = flag; *p; p++) *p = *p == '_' ? '-' : *p;
    if (hi < 1e9)
      tl_set_error("--%s %g: expected a number from %g to %g", flag, v, lo, hi);
    else
      tl_set_error("--%s %g: expected a number >= %g", flag, v, lo);
    return TL_ERR;
  }
  return TL_OK;
}

// Options a task does not use, set away from their default, get one warning
// each: a researcher who sets --flow-packets for a packet set expects it to act.
static void warn_unused_options(const tl_prep_options *o) {
  tl_prep_options d;
  tl_prep_options_default(&d, o->ds.task);
  int pretrain = o->ds.task == TL_TASK_PRETRAIN;
  struct { const char *name; int set, used; } opts[] = {
      {"--burst-packets", o->burst_packets != d.burst_packets, pretrain},
      {"--flow-packets", o->ds.flow_packets != d.ds.flow_packets, o->ds.task == TL_TASK_FLOW},
      {"--labels", o->labels_csv != NULL, !pretrain},
      {"--min-per-class", o->ds.min_per_class != d.ds.min_per_class, !pretrain},
      {"--min-payload", o->flow.min_payload != d.flow.min_payload, !pretrain},
  };
  for (size_t i = 0; i < sizeof opts / sizeof *opts; i++)
    if (opts[i].set && !opts[i].used)
      tl_warn("%s does not apply to --task %s; ignored", opts[i].name, task_name(o->ds.task));
  tl_prep_options_free(&d);
}

// Whether --out is one of the --holdout-of sets (DIR or DIR1,DIR2): writing it
// would replace the set being held out. Sets the error when it is.
static int holdout_is_out(const tl_prep_options *o) {
  char *out = realpath(o->out_dir, NULL);
  char *list = tl_xstrdup(o->holdout_of), *save = NULL;
  int same = 0;
  for (char *dir = strtok_r(list, ",", &save); dir && out && !same;
       dir = strtok_r(NULL, ",", &save)) {
    char *real = realpath(dir, NULL);
    same = real && !strcmp(real, out);
    free(real);
  }
  if (same) tl_set_error("--out %s is a --holdout-of set: it would be replaced", o->out_dir);
  free(list);
  free(out);
  return same;
}

// The absolute path of p with links resolved, also when its last components do
// not exist yet (an --out about to be made): those are appended as given.
// Caller frees.
static char *resolved_path(const char *p) {
  char *head = tl_xstrdup(p), *tail = tl_xstrdup(""), *real;
  while (!(real = realpath(head[0] ? head : ".", NULL))) {
    char *slash = strrchr(head, '/');
    if (!head[0] || !strcmp(head, "/")) break; // even the start is gone
    char *t = tl_xstrdup(tl_fmt("/%s%s", slash ? slash + 1 : head, tail));
    free(tail);
    tail = t;
    if (slash == head) head[1] = 0; // up to the root
    else if (slash) *slash = 0;
    else head[0] = 0; // relative: from the working folder
  }
  const char *base = real && strcmp(real, "/") ? real : "";
  char *out = tl_xstrdup(tl_fmt("%s%s", base, tail));
  free(real);
  free(head);
  free(tail);
  return out;
}

// Whether --out lies inside an input folder: its shards would then be read as
// captures (or become a class) on the next run. Sets the error when it does.
static int out_inside_inputs(const tl_prep_options *o) {
  char *out = resolved_path(o->out_dir);
  int inside = 0;
  for (int k = 0; k < o->n_in && !inside; k++) {
    if (!is_dir(o->in[k])) continue;
    char *in = resolved_path(o->in[k]);
    size_t n = strlen(in);
    inside = !strncmp(out, in, n) && (out[n] == '/' || out[n] == 0);
    if (inside)
      tl_set_error("--out %s is inside --in %s: the next run would read its shards as "
                   "captures; choose a folder outside the inputs", o->out_dir, o->in[k]);
    free(in);
  }
  free(out);
  return inside;
}

static tl_flow_identity identity_of(const tl_prep_options *o) {
  return (tl_flow_identity){o->flow.idle_timeout_s, o->flow.close_linger_s, o->flow.max_flows,
                            o->flow.key_vlan,       o->flow.reorder_window, o->reassemble};
}

// Pre-training that holds a set out must cut flows as that set did, or flow ids
// no longer line up and held-out flows could slip in: the set's options win.
static void adopt_identity(tl_prep_options *o, const tl_flow_identity *set) {
  tl_flow_identity given = identity_of(o);
  tl_prep_options d;
  tl_prep_options_default(&d, o->ds.task);
  tl_flow_identity def = identity_of(&d);
  tl_prep_options_free(&d);
  // A value the user set (not the default) that the set overrides is worth a warning.
  double vg[TL_FLOW_IDENTITY_FIELDS], vs[TL_FLOW_IDENTITY_FIELDS], vd[TL_FLOW_IDENTITY_FIELDS];
  tl_flow_identity_values(&given, vg);
  tl_flow_identity_values(set, vs);
  tl_flow_identity_values(&def, vd);
  for (int i = 0; i < TL_FLOW_IDENTITY_FIELDS; i++)
    if (vg[i] != vs[i] && vg[i] != vd[i])
      tl_warn("%s %g is not used: --holdout-of cuts flows as its set did (%g), so that "
              "flow ids line up", tl_flow_identity_key(i), vg[i], vs[i]);
  if (!tl_flow_identity_equal(&given, set))
    tl_info("--holdout-of: flow options taken from the held-out set (idle_timeout %g, "
            "close_linger %g, max_flows %d, flow_key_vlan %d, reorder_window %d, "
            "reassemble %d)", set->idle_timeout_s, set->close_linger_s, set->max_flows,
            set->key_vlan, set->reorder_window, set->reassemble);
  o->flow.idle_timeout_s = set->idle_timeout_s;
  o->flow.close_linger_s = set->close_linger_s;
  o->flow.max_flows = set->max_flows;
  o->flow.key_vlan = set->key_vlan;
  o->flow.reorder_window = set->reorder_window;
  o->reassemble = set->reassemble;
}

tl_status tl_prep_run(const tl_prep_options *given, FILE *report, tl_prep_counts *counts) {
  tl_prep_options effective = *given; // --holdout-of may set the flow options
  tl_prep_options *o = &effective;
  tl_prep_counts local;
  tl_prep_counts *c = counts ? counts : &local;
  memset(c, 0, sizeof *c);
  tl_inputs in = {0};
  tl_dataset_builder *b = NULL;
  tl_flow_table *t = NULL;
  tl_defrag *defrag = NULL;
  const char **srcs = NULL;
  tl_status st = TL_ERR;
  double t0 = now_s();

  // Step 1: inputs, then the builder, which wants labels and files up front.
  tl_holdout holdout = {0};
  // A set a killed run left half moved in is completed even if this run fails.
  if (o->out_dir) tl_dataset_recover(o->out_dir);
  if (check_options(o) != TL_OK || out_inside_inputs(o)) goto done;
  warn_unused_options(o);
  if (o->holdout_of) {
    if (o->ds.task != TL_TASK_PRETRAIN) {
      tl_set_error("--holdout-of is for --task pretrain");
      goto done;
    }
    if (holdout_is_out(o)) goto done;
    if (tl_holdout_load(&holdout, o->holdout_of) != TL_OK) goto done;
    adopt_identity(o, &holdout.identity);
    // The same captures in the same order, so flow ids match the set's; more
    // inputs come after them (repeats of the set's captures are read once).
    for (int i = 0; i < holdout.n_files; i++) inputs_add(&in, holdout.files_in[i], -1);
    if (o->n_in > 0 && find_inputs(o, &in) != TL_OK) goto done;
  } else if (find_inputs(o, &in) != TL_OK) {
    goto done;
  }
  c->files_total = in.n;
  srcs = tl_xmalloc((size_t)in.n * sizeof *srcs);
  for (int i = 0; i < in.n; i++) srcs[i] = in.v[i].path;
  tl_dataset_options ds = o->ds;
  ds.out_dir = o->out_dir;
  ds.header_policy = tl_header_policy_name(o->policy);
  tl_flow_identity identity = identity_of(o);
  char *identity_json = tl_flow_identity_json(&identity);
  ds.flow_identity = identity_json;
  b = tl_dataset_builder_open(&ds, (const char *const *)in.labels, in.n_labels, srcs, in.n);
  free(identity_json);
  if (!b) goto done;

  // Step 2: the flow table reports to the builder through the task's sink.
  tl_prep_run_ctx r = {.o = o, .b = b, .c = c, .n_files = in.n, .t0 = t0,
                       .holdout = o->holdout_of ? &holdout : NULL};
  r.show_progress = o->progress > 0 || (o->progress < 0 && isatty(2));
  tl_flow_sink sink = {.ctx = &r};
  if (o->ds.task == TL_TASK_PRETRAIN) sink.on_burst = sink_burst;
  else if (o->ds.task == TL_TASK_PACKET) sink.on_packet = sink_packet;
  else sink.on_flow = sink_flow;
  tl_flow_options fo = o->flow;
  fo.flow_packets = o->ds.flow_packets > 0 ? o->ds.flow_packets : fo.flow_packets;
  fo.burst_packets = o->burst_packets > 0 ? o->burst_packets : fo.burst_packets;
  t = tl_flow_table_new(&fo, &sink, 0);
  r.table = t;
  if (o->reassemble) r.defrag = defrag = tl_defrag_new(NULL);

  // Step 3: one streaming pass over the files.
  for (int i = 0; i < in.n; i++) {
    r.label = in.v[i].label;
    r.file_index = i;
    int bad = 0;
    if (prep_file(&r, t, in.v[i].path, &bad) != TL_OK) goto done;
    if (bad && o->strict) {
      // The reason already names the file; copy it before the buffer is rewritten.
      char reason[1024];
      snprintf(reason, sizeof reason, "%s", tl_last_error());
      tl_set_error("stopping at the first bad file (--strict): %s", reason);
      goto done;
    }
    progress(&r, 0);
  }
  if (r.show_progress) progress(&r, 1);
  c->flow = *tl_flow_table_stats(t);
  if (defrag) c->defrag = *tl_defrag_stats_get(defrag);

  // Step 4: split and write; then the summary.
  const tl_dataset_summary *sum = NULL;
  if (tl_dataset_builder_finish(b, &sum) != TL_OK) {
    // Still show what was read, so the reason nothing was written is visible.
    c->seconds = now_s() - t0;
    char reason[1024];
    snprintf(reason, sizeof reason, "%s", tl_last_error());
    if (report) print_summary(report, o, &in, c, NULL);
    tl_set_error("%s", reason);
    goto done;
  }
  c->total_rows = sum ? sum->total_rows : 0;
  if (sum && o->ds.task != TL_TASK_PRETRAIN && sum->n_labels - sum->n_dropped_labels < 2)
    tl_warn("only %d class kept: tl-finetune needs at least 2 (one folder per class "
            "below --in, or a label column in --labels)", sum->n_labels - sum->n_dropped_labels);
  c->seconds = now_s() - t0;
  if (report) print_summary(report, o, &in, c, sum);
  if (c->packets_used == 0 || c->total_rows == 0) {
    tl_set_error("nothing usable: %d files, %lld packets read, %lld used, %lld rows written",
                 c->files_total, (long long)c->packets_read, (long long)c->packets_used,
                 (long long)c->total_rows);
    goto done;
  }
  st = TL_OK;

done:
  if (st != TL_OK && c->seconds == 0) c->seconds = now_s() - t0;
  tl_flow_table_free(t);
  tl_defrag_free(defrag);
  tl_dataset_builder_free(b);
  tl_holdout_free(&holdout);
  free(srcs);
  inputs_free(&in);
  return st;
}
