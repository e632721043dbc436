// dataset.c: the dataset builder behind dataset.h.
//
// Rows are tokenized as they arrive and dropped, encoded, into random bucket
// files in a private folder of out_dir (data/row_shuffle.h); memory holds one
// small entry per flow (label, file, row counts, split). finish() then decides,
// per class, which classes stay (min_per_class), which rows stay (max_per_class,
// spread over as many flows as possible) and where each flow goes (by flow, by
// file or by row), and drains the buckets in a random order into the three
// splits' shards. Shards thus hold uniformly shuffled splits while memory stays
// bounded by one bucket.
//
// Pre-training pairs need their B halves from the same split as A (a negative
// must not carry a test flow's bytes into train), so there a row's split is
// fixed when it is first seen, from a seeded hash of its flow (or file, or the
// row itself).
#include "data/dataset.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/dataset_vocab.h"
#include "data/id_map.h"
#include "data/names.h"
#include "data/publish.h"
#include "data/row_shuffle.h"
#include "data/shard_writer.h"
#include "data/split.h"
#include "data/tokenizer.h"

enum { RESERVOIR_SLOTS = 64 }; // recent second halves kept per split as negative B candidates

// Streams of the seeded generator, one per purpose, so that changing one
// choice (say the cap) does not reshuffle another.
enum { STREAM_PAIRS = 1, STREAM_FLOWS = 1000, STREAM_FILES = 1u << 20, STREAM_ROWS = 2u << 20,
       STREAM_BUCKET = 3u << 20, STREAM_UNIT = 5u << 20 };

static const char *const g_split_names[TL_NUM_SPLITS] = {"train", "valid", "test"};
static const char *const g_task_names[] = {"pretrain", "packet", "flow"};
static const char *const g_policy_names[] = {"flow", "file", "packet"};
static const char *const g_pair_names[] = {"same-origin", "other-origin"};

typedef struct {
  uint64_t flow_id;
  int32_t label;      // class (0 when pre-training)
  int32_t file_index; // source file of the flow's first row
  int64_t rows;       // rows added
  int64_t keep;       // rows kept under the cap
  uint8_t split;      // the flow's split (not used by the per-row policy)
  uint8_t in_split;   // bit s: a kept row of the flow went to split s
} flow_entry;

typedef struct {
  uint64_t flow_id;
  int len;
  int32_t *tokens; // [seq_len]
} half_slot;

typedef struct {
  half_slot slot[RESERVOIR_SLOTS];
  int n, next; // slots filled; the slot the next half overwrites
} reservoir;

struct tl_dataset_builder {
  tl_dataset_options opt;
  char *out_dir, *header_policy, *tmp_dir;
  char *flow_identity; // JSON text or NULL
  int lock_fd; // flock on OUT/.tl-prep.lock: one builder per output folder
  char *made_from;  // the first (topmost) folder of OUT this builder made (NULL: none)
  int made_lock;    // OUT/.tl-prep.lock did not exist before this builder
  int published;    // this builder's set is in OUT
  char **label_names, **source_files; // as recorded: valid UTF-8
  char **raw_source_files;            // as given
  int n_labels, n_files;
  int n_classes; // n_labels, or 1 when pre-training
  tl_tokenizer *tok;
  const tl_tokenizer *table; // what tokenizing uses: NULL (no table) for the native one

  tl_row_shuffle *buckets; // every row added, encoded, in random buckets
  int64_t n_rows;          // rows added
  int64_t *class_rows;     // [n_classes] rows added
  flow_entry *flows;
  int64_t n_flows, cap_flows;
  tl_id_map flow_index; // flow id -> index into flows
  int32_t *row;         // scratch [seq_len]
  int32_t *burst;       // scratch for a burst's tokens
  size_t burst_cap;

  // pre-training pairs
  reservoir res[TL_NUM_SPLITS];
  tl_split_rng pair_rng;
  int64_t negative_debt[TL_NUM_SPLITS]; // negatives owed (the reservoir had none)
  int next_label[TL_NUM_SPLITS];        // 0: draw a coin; 1 + label: give that label
  int64_t pairs[2], skipped_bursts;
  int64_t split_pairs[TL_NUM_SPLITS][2]; // pairs by split and label

  // decided at finish()
  int *new_label;        // [n_classes] label in the shards, -1 when dropped
  uint8_t **row_split;   // [n_classes][kept rows] for the per-row policy only
  int64_t *kept_ordinal; // [n_classes] kept rows met so far while draining
  int64_t (*rows)[TL_NUM_SPLITS];
  int64_t flows_in[TL_NUM_SPLITS];
  int64_t pair_rows[2][TL_NUM_SPLITS]; // pre-training rows per same-origin label
  char **shard_names[TL_NUM_SPLITS];
  int64_t *shard_rows[TL_NUM_SPLITS];
  int n_shards[TL_NUM_SPLITS];
  tl_dataset_summary summary;
  int finished;
};

// --- options and setup

void tl_dataset_options_default(tl_dataset_options *opt, tl_task task) {
  memset(opt, 0, sizeof *opt);
  opt->task = task;
  opt->out_dir = "shards";
  // ET-BERT's shapes: 128 tokens per packet or pair, 512 for 5-packet flows.
  opt->seq_len = task == TL_TASK_FLOW ? 512 : 128;
  // 128 bytes fill a 128-token packet row; 64 per packet for bursts and flows.
  opt->packet_bytes = task == TL_TASK_PACKET ? 128 : 64;
  opt->flow_packets = 5;
  opt->seed = 42;
  opt->split = TL_SPLIT_BY_FLOW;
  // Pre-training only needs held-out pairs for its own evaluation.
  opt->split_ratio[TL_SPLIT_TRAIN] = task == TL_TASK_PRETRAIN ? 0.9 : 0.8;
  opt->split_ratio[TL_SPLIT_VALID] = 0.1;
  opt->split_ratio[TL_SPLIT_TEST] = task == TL_TASK_PRETRAIN ? 0.0 : 0.1;
  opt->max_per_class = 0;
  opt->min_per_class = task == TL_TASK_PRETRAIN ? 0 : 10;
  opt->header_policy = "anonymous";
  opt->rows_per_shard = 65536;
}

static tl_status check_options(const tl_dataset_options *o) {
  if (o->task < TL_TASK_PRETRAIN || o->task > TL_TASK_FLOW) {
    tl_set_error("dataset: unknown task %d", (int)o->task);
    return TL_ERR;
  }
  if (!o->out_dir || !o->out_dir[0]) {
    tl_set_error("dataset: out_dir is empty");
    return TL_ERR;
  }
  // A pair needs [CLS] a [SEP] b [SEP]; a classification row [CLS] and a token.
  int min_len = o->task == TL_TASK_PRETRAIN ? 5 : 2;
  if (o->seq_len < min_len) {
    tl_set_error("dataset: seq_len %d is too short (at least %d)", o->seq_len, min_len);
    return TL_ERR;
  }
  double sum = 0;
  for (int s = 0; s < TL_NUM_SPLITS; s++) {
    if (!(o->split_ratio[s] >= 0)) {
      tl_set_error("dataset: split ratio %s is negative", g_split_names[s]);
      return TL_ERR;
    }
    sum += o->split_ratio[s];
  }
  if (!(sum > 0)) {
    tl_set_error("dataset: split ratios are all zero");
    return TL_ERR;
  }
  if (o->rows_per_shard <= 0 || o->packet_bytes < 0 || o->max_per_class < 0 ||
      o->min_per_class < 0 || o->compress < 0 || o->compress > 9 ||
      (o->task == TL_TASK_FLOW && o->flow_packets <= 0) ||
      (o->split < TL_SPLIT_BY_FLOW || o->split > TL_SPLIT_BY_PACKET)) {
    tl_set_error("dataset: rows_per_shard, flow_packets must be positive, caps and "
                 "packet_bytes non-negative, compress 0 to 9, split a known policy");
    return TL_ERR;
  }
  return TL_OK;
}

// mkdir -p: creates each missing component of path. *made_from is the first
// folder it created (caller frees), or NULL when path existed.
static tl_status make_dirs(const char *path, char **made_from) {
  char *p = tl_xstrdup(path);
  *made_from = NULL;
  for (char *s = p + 1;; s++) {
    if (*s != '/' && *s != '\0') continue;
    char c = *s;
    *s = '\0';
    if (mkdir(p, 0755) == 0) {
      if (!*made_from) *made_from = tl_xstrdup(p);
    } else if (errno != EEXIST) {
      tl_set_error("%s: cannot create directory: %s", p, strerror(errno));
      free(p);
      return TL_ERR;
    }
    *s = c;
    if (c == '\0') break;
  }
  free(p);
  return TL_OK;
}

// Whether two class names are the same as recorded (a Latin-1 "caf\xe9" and a
// folder literally named "caf\xe9" escape alike); sets the error when so.
static int repeated_name(char *const *names, int n) {
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      if (!strcmp(names[i], names[j])) {
        tl_set_error("dataset: two classes are both named '%s' once recorded as UTF-8; "
                     "rename one folder", names[i]);
        return 1;
      }
  return 0;
}

// path without empty or "." components ("a//b/./c/" is "a/b/c"), so that its
// parents are found by cutting at a slash. Caller frees.
static char *normal_dir(const char *path) {
  char *out = tl_xmalloc(strlen(path) + 2), *o = out;
  if (path[0] == '/') *o++ = '/';
  for (const char *p = path; *p;) {
    p += strspn(p, "/");
    size_t n = strcspn(p, "/");
    int skip = n == 0 || (n == 1 && p[0] == '.');
    if (!skip) {
      if (o > out && o[-1] != '/') *o++ = '/';
      memcpy(o, p, n);
      o += n;
    }
    p += n;
  }
  if (o == out) *o++ = '.';
  *o = 0;
  return out;
}

// Removes path and its parents while they are empty, down to a path of top_len
// characters (the topmost folder made).
static void remove_made_dirs(const char *path, size_t top_len) {
  char *p = tl_xstrdup(path);
  while (rmdir(p) == 0 && strlen(p) > top_len) {
    char *slash = strrchr(p, '/');
    if (!slash) break;
    *slash = 0;
  }
  free(p);
}

// Copies of names as the manifest and shards record them: valid UTF-8 (names.h).
static char **copy_names(const char *const *v, int n) {
  char **out = tl_xcalloc((size_t)(n > 0 ? n : 1), sizeof *out);
  for (int i = 0; i < n; i++) out[i] = tl_utf8_escape(v[i] ? v[i] : "");
  return out;
}

// The exact bytes of the source file names that had to be escaped, as
// {"index": "hex"}, so that --holdout-of can open those files again; NULL
// when every name is valid UTF-8.
static cJSON *escaped_source_files(const tl_dataset_builder *b) {
  cJSON *o = NULL;
  for (int i = 0; i < b->n_files; i++) {
    if (tl_utf8_valid(b->raw_source_files[i])) continue;
    if (!o) o = cJSON_CreateObject();
    char *hex = tl_hex_encode(b->raw_source_files[i]);
    cJSON_AddStringToObject(o, tl_fmt("%d", i), hex);
    free(hex);
  }
  return o;
}

// Takes OUT/.tl-prep.lock, so two runs never write one folder at once. The
// lock dies with the process, also when it is killed.
static tl_status lock_out_dir(tl_dataset_builder *b) {
  const char *path = tl_fmt("%s/.tl-prep.lock", b->out_dir);
  b->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (b->lock_fd < 0) {
    tl_set_error("%s: cannot create: %s", path, strerror(errno));
    return TL_ERR;
  }
  if (flock(b->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    tl_set_error("%s: another tl-prep is writing this folder (%s is locked)", b->out_dir,
                 path);
    close(b->lock_fd);
    b->lock_fd = -1; // lock_fd >= 0 means the lock is held
    return TL_ERR;
  }
  return TL_OK;
}

// Temporary folders of runs that were killed: with the lock held, no other
// run can own them. A complete one is published, a partial one deleted.
// Returns how many there were.
static int recover_stale_tmp_dirs(const char *out_dir, int dry_run) {
  DIR *d = opendir(out_dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, ".tl-prep-", 9) != 0) continue;
    n++;
    if (dry_run) continue;
    char *path = tl_xstrdup(tl_fmt("%s/%s", out_dir, e->d_name));
    tl_publish_recover(out_dir, path);
    free(path);
  }
  closedir(d);
  return n;
}

void tl_dataset_recover(const char *out_dir) {
  if (recover_stale_tmp_dirs(out_dir, 1) == 0) return;
  int fd = open(tl_fmt("%s/.tl-prep.lock", out_dir), O_RDWR | O_CLOEXEC);
  if (fd < 0) return;
  if (flock(fd, LOCK_EX | LOCK_NB) == 0) recover_stale_tmp_dirs(out_dir, 0);
  close(fd); // also releases the lock
}

tl_dataset_builder *tl_dataset_builder_open(const tl_dataset_options *opt,
                                            const char *const *label_names, int n_labels,
                                            const char *const *source_files, int n_files) {
  if (check_options(opt) != TL_OK) return NULL;
  if (opt->task != TL_TASK_PRETRAIN && n_labels <= 0) {
    tl_set_error("dataset: a classification data set needs at least one label");
    return NULL;
  }
  tl_dataset_builder *b = tl_xcalloc(1, sizeof *b);
  b->lock_fd = -1;
  b->opt = *opt;
  b->out_dir = normal_dir(opt->out_dir);
  b->header_policy = tl_xstrdup(opt->header_policy ? opt->header_policy : "anonymous");
  b->opt.out_dir = b->out_dir;
  b->opt.header_policy = b->header_policy;
  b->flow_identity = opt->flow_identity ? tl_xstrdup(opt->flow_identity) : NULL;
  b->opt.flow_identity = b->flow_identity;
  b->n_labels = opt->task == TL_TASK_PRETRAIN ? 0 : n_labels;
  b->label_names = copy_names(label_names, b->n_labels);
  b->n_files = n_files > 0 ? n_files : 0;
  b->source_files = copy_names(source_files, b->n_files);
  b->raw_source_files = tl_xcalloc((size_t)b->n_files + 1, sizeof *b->raw_source_files);
  for (int i = 0; i < b->n_files; i++)
    b->raw_source_files[i] = tl_xstrdup(source_files[i] ? source_files[i] : "");
  b->n_classes = opt->task == TL_TASK_PRETRAIN ? 1 : n_labels;
  b->class_rows = tl_xcalloc((size_t)b->n_classes, sizeof *b->class_rows);
  b->tok = tl_tokenizer_native();
  b->row = tl_xmalloc((size_t)opt->seq_len * sizeof *b->row);
  tl_id_map_init(&b->flow_index);
  tl_split_rng_seed(&b->pair_rng, opt->seed, STREAM_PAIRS);
  for (int s = 0; s < TL_NUM_SPLITS; s++)
    for (int i = 0; i < RESERVOIR_SLOTS; i++)
      b->res[s].slot[i].tokens = tl_xmalloc((size_t)opt->seq_len * sizeof(int32_t));

  // The buckets live in a private folder of out_dir: same disk as the shards.
  if (repeated_name(b->label_names, b->n_labels)) goto fail;
  b->made_lock = access(tl_fmt("%s/.tl-prep.lock", b->out_dir), F_OK) != 0;
  if (make_dirs(b->out_dir, &b->made_from) != TL_OK || lock_out_dir(b) != TL_OK) goto fail;
  recover_stale_tmp_dirs(b->out_dir, 0);
  if (tl_check_out_dir(b->out_dir) != TL_OK) goto fail;
  b->tmp_dir = tl_xstrdup(tl_fmt("%s/.tl-prep-XXXXXX", b->out_dir));
  if (!mkdtemp(b->tmp_dir)) {
    tl_set_error("%s: cannot create a temporary folder: %s", b->out_dir, strerror(errno));
    free(b->tmp_dir);
    b->tmp_dir = NULL;
    goto fail;
  }
  b->buckets = tl_row_shuffle_open(b->tmp_dir, opt->seed, STREAM_BUCKET);
  if (!b->buckets) goto fail;
  return b;

fail:
  tl_dataset_builder_free(b);
  return NULL;
}

tl_status tl_dataset_builder_set_vocab(tl_dataset_builder *b, const char *path) {
  if (b->n_rows > 0 || b->finished) {
    tl_set_error("%s: the vocabulary must be set before rows are added", path);
    return TL_ERR;
  }
  tl_tokenizer *t = tl_tokenizer_import(path);
  if (!t) return TL_ERR;
  tl_tokenizer_free(b->tok);
  b->tok = t;
  b->table = t;
  return TL_OK;
}

// --- adding rows

// The split of a pre-training row, fixed when first seen (see the top
// comment): by its flow, its file, or the row itself (its flow and index in it).
static int pretrain_split(const tl_dataset_builder *b, uint64_t flow_id, int file_index,
                          int64_t index_in_flow) {
  uint64_t unit = b->opt.split == TL_SPLIT_BY_FLOW ? flow_id
                  : b->opt.split == TL_SPLIT_BY_FILE
                      ? (uint64_t)(uint32_t)file_index
                      : tl_split_hash(flow_id, (uint64_t)index_in_flow);
  uint64_t stream = STREAM_UNIT + (uint64_t)b->opt.split;
  return tl_split_of_hash(tl_split_hash(b->opt.seed ^ stream, unit), b->opt.split_ratio);
}

// Finds or adds the entry of flow_id; NULL with an error when the flow was
// already seen under another label.
static flow_entry *flow_for_row(tl_dataset_builder *b, uint64_t flow_id, int label,
                                int file_index) {
  int64_t i = tl_id_map_get(&b->flow_index, flow_id);
  if (i >= 0) {
    flow_entry *f = &b->flows[i];
    if (f->label != label) {
      tl_set_error("dataset: flow %llu came with labels %s and %s", (unsigned long long)flow_id,
                   b->label_names[f->label], b->label_names[label]);
      return NULL;
    }
    return f;
  }
  if (b->n_flows == b->cap_flows) {
    b->cap_flows = b->cap_flows ? 2 * b->cap_flows : 1024;
    b->flows = tl_xrealloc(b->flows, (size_t)b->cap_flows * sizeof *b->flows);
  }
  flow_entry *f = &b->flows[b->n_flows];
  memset(f, 0, sizeof *f);
  f->flow_id = flow_id;
  f->label = label;
  f->file_index = file_index;
  if (b->opt.task == TL_TASK_PRETRAIN)
    f->split = (uint8_t)pretrain_split(b, flow_id, file_index, 0);
  tl_id_map_put(&b->flow_index, flow_id, b->n_flows);
  b->n_flows++;
  return f;
}

static tl_status check_file_index(const tl_dataset_builder *b, int file_index) {
  if (b->n_files > 0 && (file_index < 0 || file_index >= b->n_files)) {
    tl_set_error("dataset: file index %d out of range [0, %d)", file_index, b->n_files);
    return TL_ERR;
  }
  return TL_OK;
}

// Drops a finished row (tokens in b->row) into the buckets and counts it.
static tl_status spool_row(tl_dataset_builder *b, flow_entry *f, tl_spool_row *h) {
  h->index_in_flow = f->rows;
  if (tl_row_shuffle_add(b->buckets, h, b->row) != TL_OK) return TL_ERR;
  f->rows++;
  b->class_rows[f->label]++;
  b->n_rows++;
  return TL_OK;
}

// Bytes of a packet that are tokenized: the first packet_bytes when set.
static size_t kept_bytes(const tl_dataset_builder *b, size_t len) {
  size_t cap = (size_t)b->opt.packet_bytes;
  return cap > 0 && len > cap ? cap : len;
}

tl_status tl_dataset_add_sample(tl_dataset_builder *b, int label, uint64_t flow_id,
                                int file_index, const uint8_t *const *pkts,
                                const size_t *lens, int n_pkts) {
  TL_ASSERTF(!b->finished, "add after finish");
  if (b->opt.task == TL_TASK_PRETRAIN) {
    tl_set_error("dataset: add_sample on a pre-training builder (use add_burst)");
    return TL_ERR;
  }
  if (label < 0 || label >= b->n_labels) {
    tl_set_error("dataset: label %d out of range [0, %d)", label, b->n_labels);
    return TL_ERR;
  }
  if (n_pkts < 1 || (b->opt.task == TL_TASK_PACKET && n_pkts != 1)) {
    tl_set_error("dataset: %d packets in a %s sample", n_pkts, g_task_names[b->opt.task]);
    return TL_ERR;
  }
  if (check_file_index(b, file_index) != TL_OK) return TL_ERR;
  flow_entry *f = flow_for_row(b, flow_id, label, file_index);
  if (!f) return TL_ERR;

  // [CLS], then each packet's bigrams, until the row is full; no final [SEP].
  int len = 0;
  b->row[len++] = TL_TOK_CLS;
  int n_use = b->opt.task == TL_TASK_FLOW && n_pkts > b->opt.flow_packets ? b->opt.flow_packets
                                                                           : n_pkts;
  for (int p = 0; p < n_use && len < b->opt.seq_len; p++)
    len += (int)tl_tokenize_packet(b->table, pkts[p], kept_bytes(b, lens[p]), b->row + len,
                                   (size_t)(b->opt.seq_len - len));
  tl_spool_row h = {.flow_id = flow_id, .file_index = file_index, .label = label,
                    .length = len, .a_end = len};
  return spool_row(b, f, &h);
}

// A random second half from another flow of the same split, or NULL.
static const half_slot *pick_other_half(tl_dataset_builder *b, int split, uint64_t flow_id) {
  reservoir *r = &b->res[split];
  if (r->n == 0) return NULL;
  int start = (int)tl_split_rng_below(&b->pair_rng, (uint64_t)r->n);
  for (int k = 0; k < r->n; k++) {
    const half_slot *h = &r->slot[(start + k) % r->n];
    if (h->flow_id != flow_id) return h;
  }
  return NULL;
}

static void remember_half(tl_dataset_builder *b, int split, uint64_t flow_id, const int32_t *t,
                          int len) {
  reservoir *r = &b->res[split];
  // One long flow (hundreds of bursts) would otherwise fill every slot, leaving
  // no other flow's half for a negative pair: a flow holds at most 1/8 of them,
  // replacing its own oldest slot beyond that.
  int own = 0, own_oldest = -1;
  for (int k = 0; k < r->n; k++) {
    int slot = (r->next + k) % r->n; // oldest first once the ring is full
    if (r->slot[slot].flow_id != flow_id) continue;
    if (own_oldest < 0) own_oldest = slot;
    own++;
  }
  bool replace_own = own >= RESERVOIR_SLOTS / 8;
  half_slot *h = &r->slot[replace_own ? own_oldest : r->next];
  int cap = b->opt.seq_len - 3;
  h->flow_id = flow_id;
  h->len = len < cap ? len : cap;
  memcpy(h->tokens, t, (size_t)h->len * sizeof *t);
  if (replace_own) return;
  r->next = (r->next + 1) % RESERVOIR_SLOTS;
  if (r->n < RESERVOIR_SLOTS) r->n++;
}

// Tokens each half keeps so that [CLS] a [SEP] b [SEP] fits seq_len: nothing is
// cut when both fit; otherwise the longer half gives way, never below its share.
static void fit_halves(int avail, int a_len, int b_len, int *a_keep, int *b_keep) {
  int a_share = avail - avail / 2, b_share = avail / 2;
  if (a_len + b_len <= avail) {
    *a_keep = a_len;
    *b_keep = b_len;
  } else if (a_len <= a_share) {
    *a_keep = a_len;
    *b_keep = avail - a_len;
  } else if (b_len <= b_share) {
    *b_keep = b_len;
    *a_keep = avail - b_len;
  } else {
    *a_keep = a_share;
    *b_keep = b_share;
  }
}

// Concatenates the bigrams of every packet of a burst into b->burst.
static size_t tokenize_burst(tl_dataset_builder *b, const uint8_t *const *pkts,
                             const size_t *lens, int n_pkts) {
  size_t total = 0;
  for (int p = 0; p < n_pkts; p++) total += tl_tokenize_count(kept_bytes(b, lens[p]));
  if (total > b->burst_cap) {
    b->burst_cap = total;
    b->burst = tl_xrealloc(b->burst, total * sizeof *b->burst);
  }
  size_t n = 0;
  for (int p = 0; p < n_pkts; p++)
    n += tl_tokenize_packet(b->table, pkts[p], kept_bytes(b, lens[p]), b->burst + n, total - n);
  return n;
}

// Same-origin label for the next pair of a split: labels come in pairs, a
// seeded coin for the first and the other label for the second, so each split
// is 50/50 to within one row. A negative the reservoir cannot supply yet is
// owed and paid back at the next chance.
static const half_slot *choose_pair(tl_dataset_builder *b, int split, uint64_t flow_id,
                                    int *label) {
  int owed = b->next_label[split];
  int want_other = owed ? owed - 1 : (int)(tl_split_rng_next(&b->pair_rng) >> 63);
  b->next_label[split] = owed ? 0 : 2 - want_other; // 0: draw; 1 + label: that label
  const half_slot *other = NULL;
  if (want_other || b->negative_debt[split] > 0) other = pick_other_half(b, split, flow_id);
  if (want_other && !other) b->negative_debt[split]++;
  if (!want_other && other) b->negative_debt[split]--;
  *label = other ? 1 : 0;
  return other;
}

tl_status tl_dataset_add_burst(tl_dataset_builder *b, uint64_t flow_id, int file_index,
                               const uint8_t *const *pkts, const size_t *lens, int n_pkts) {
  TL_ASSERTF(!b->finished, "add after finish");
  if (b->opt.task != TL_TASK_PRETRAIN) {
    tl_set_error("dataset: add_burst on a %s builder", g_task_names[b->opt.task]);
    return TL_ERR;
  }
  if (n_pkts < 1) {
    tl_set_error("dataset: empty burst");
    return TL_ERR;
  }
  if (check_file_index(b, file_index) != TL_OK) return TL_ERR;

  // Halves of the burst's tokens: A the first ceil(n/2), B the rest.
  int n = (int)tokenize_burst(b, pkts, lens, n_pkts);
  if (n < 2) {
    b->skipped_bursts++;
    return TL_OK;
  }
  flow_entry *f = flow_for_row(b, flow_id, 0, file_index);
  if (!f) return TL_ERR;
  int split = b->opt.split == TL_SPLIT_BY_PACKET ? pretrain_split(b, flow_id, 0, f->rows)
                                                  : f->split;
  int a_len = (n + 1) / 2;
  const int32_t *a = b->burst, *own_b = b->burst + a_len;
  int own_b_len = n - a_len;

  // B: A's own second half (label 0) or another flow's second half (label 1).
  int label;
  const half_slot *other = choose_pair(b, split, flow_id, &label);
  const int32_t *bt = other ? other->tokens : own_b;
  int b_len = other ? other->len : own_b_len;

  // [CLS] A [SEP] B [SEP], halves shortened to fit; segment 1 up to the first
  // [SEP] included, 2 after it.
  int a_keep, b_keep, len = 0;
  fit_halves(b->opt.seq_len - 3, a_len, b_len, &a_keep, &b_keep);
  b->row[len++] = TL_TOK_CLS;
  memcpy(b->row + len, a, (size_t)a_keep * sizeof *a);
  len += a_keep;
  b->row[len++] = TL_TOK_SEP;
  int a_end = len;
  memcpy(b->row + len, bt, (size_t)b_keep * sizeof *bt);
  len += b_keep;
  b->row[len++] = TL_TOK_SEP;
  b->pairs[label]++;
  b->split_pairs[split][label]++;

  remember_half(b, split, flow_id, own_b, own_b_len);
  tl_spool_row h = {.flow_id = flow_id, .file_index = file_index, .label = label,
                    .length = len, .a_end = a_end};
  return spool_row(b, f, &h);
}

// --- finish: classes, caps and splits

// Drops the classes under min_per_class (and empty ones), numbers the others.
static tl_status choose_classes(tl_dataset_builder *b) {
  b->new_label = tl_xmalloc((size_t)b->n_classes * sizeof *b->new_label);
  int kept = 0;
  for (int c = 0; c < b->n_classes; c++) {
    int64_t rows = b->class_rows[c];
    int keep = b->opt.task == TL_TASK_PRETRAIN ||
               (rows > 0 && rows >= (int64_t)b->opt.min_per_class);
    b->new_label[c] = keep ? kept++ : -1;
    if (!keep) {
      tl_warn("class %s: %lld rows, fewer than min_per_class %d: dropped", b->label_names[c],
              (long long)rows, b->opt.min_per_class);
      b->summary.n_dropped_labels++;
    }
  }
  if (kept == 0) {
    tl_set_error("dataset: no class has at least min_per_class = %d rows", b->opt.min_per_class);
    return TL_ERR;
  }
  if (b->n_rows == 0) {
    tl_set_error("dataset: no rows were added");
    return TL_ERR;
  }
  return TL_OK;
}

// Splits the units of one class: flows, or the files its flows came from.
static void split_class_units(tl_dataset_builder *b, int c, const int64_t *fl, int64_t m,
                              const int64_t *order) {
  double *ratio = b->opt.split_ratio;
  int64_t *w = tl_xmalloc((size_t)(m ? m : 1) * sizeof *w);
  int64_t *ord = tl_xmalloc((size_t)(m ? m : 1) * sizeof *ord);
  uint8_t *split_of = tl_xmalloc((size_t)(m ? m : 1));

  if (b->opt.split == TL_SPLIT_BY_FLOW) {
    // Only flows that keep rows under the cap count as units, in the seeded order.
    int64_t n_units = 0;
    for (int64_t i = 0; i < m; i++) {
      const flow_entry *f = &b->flows[fl[order[i]]];
      if (f->keep == 0) continue;
      ord[n_units] = fl[order[i]];
      w[n_units] = f->keep;
      n_units++;
    }
    int64_t *identity = tl_xmalloc((size_t)(n_units ? n_units : 1) * sizeof *identity);
    for (int64_t u = 0; u < n_units; u++) identity[u] = u;
    tl_split_assign(w, identity, n_units, ratio, split_of);
    for (int64_t u = 0; u < n_units; u++) b->flows[ord[u]].split = split_of[u];
    free(identity);
  } else {
    // One unit per source file, in a seeded order of their own.
    tl_id_map files;
    tl_id_map_init(&files);
    int64_t n_units = 0;
    int64_t *unit_of = tl_xmalloc((size_t)(m ? m : 1) * sizeof *unit_of);
    for (int64_t i = 0; i < m; i++) {
      unit_of[i] = -1;
      if (b->flows[fl[i]].keep == 0) continue;
      uint64_t key = (uint64_t)(uint32_t)b->flows[fl[i]].file_index;
      int64_t u = tl_id_map_get(&files, key);
      if (u < 0) {
        u = n_units++;
        tl_id_map_put(&files, key, u);
        w[u] = 0;
      }
      unit_of[i] = u;
      w[u] += b->flows[fl[i]].keep;
    }
    // Units are numbered in flow arrival order; shuffle them with the seed.
    for (int64_t u = 0; u < n_units; u++) ord[u] = u;
    tl_split_rng r;
    tl_split_rng_seed(&r, b->opt.seed, STREAM_FILES + (uint64_t)c);
    tl_split_shuffle(ord, n_units, &r);
    tl_split_assign(w, ord, n_units, ratio, split_of);
    for (int64_t i = 0; i < m; i++)
      if (unit_of[i] >= 0) b->flows[fl[i]].split = split_of[unit_of[i]];
    free(unit_of);
    tl_id_map_free(&files);
  }
  free(w);
  free(ord);
  free(split_of);
}

// Per-row policy: a seeded shuffle of the class's kept rows, cut 8:1:1.
static void split_class_rows(tl_dataset_builder *b, int c, int64_t n_kept) {
  int64_t *ones = tl_xmalloc((size_t)(n_kept ? n_kept : 1) * sizeof *ones);
  int64_t *perm = tl_xmalloc((size_t)(n_kept ? n_kept : 1) * sizeof *perm);
  uint8_t *in_order = tl_xmalloc((size_t)(n_kept ? n_kept : 1));
  for (int64_t i = 0; i < n_kept; i++) ones[i] = 1, perm[i] = i;
  tl_split_assign(ones, perm, n_kept, b->opt.split_ratio, in_order);
  tl_split_rng r;
  tl_split_rng_seed(&r, b->opt.seed, STREAM_ROWS + (uint64_t)c);
  tl_split_shuffle(perm, n_kept, &r);
  b->row_split[c] = tl_xmalloc((size_t)(n_kept ? n_kept : 1));
  for (int64_t i = 0; i < n_kept; i++) b->row_split[c][perm[i]] = in_order[i];
  free(ones);
  free(perm);
  free(in_order);
}

// For each kept class: a seeded order of its flows, the cap, then the split.
static void plan_classes(tl_dataset_builder *b) {
  // Flow indexes grouped by class (counting sort keeps arrival order inside).
  int64_t *start = tl_xcalloc((size_t)b->n_classes + 1, sizeof *start);
  int64_t *by_class = tl_xmalloc((size_t)(b->n_flows ? b->n_flows : 1) * sizeof *by_class);
  for (int64_t i = 0; i < b->n_flows; i++) start[b->flows[i].label + 1]++;
  for (int c = 0; c < b->n_classes; c++) start[c + 1] += start[c];
  int64_t *fill = tl_xmalloc((size_t)(b->n_classes + 1) * sizeof *fill);
  memcpy(fill, start, (size_t)(b->n_classes + 1) * sizeof *fill);
  for (int64_t i = 0; i < b->n_flows; i++) by_class[fill[b->flows[i].label]++] = i;

  b->row_split = tl_xcalloc((size_t)b->n_classes, sizeof *b->row_split);
  for (int c = 0; c < b->n_classes; c++) {
    if (b->new_label[c] < 0) continue;
    const int64_t *fl = by_class + start[c];
    int64_t m = start[c + 1] - start[c];
    int64_t *rows = tl_xmalloc((size_t)(m ? m : 1) * sizeof *rows);
    int64_t *keep = tl_xmalloc((size_t)(m ? m : 1) * sizeof *keep);
    int64_t *order = tl_xmalloc((size_t)(m ? m : 1) * sizeof *order);
    for (int64_t i = 0; i < m; i++) rows[i] = b->flows[fl[i]].rows, order[i] = i;
    tl_split_rng r;
    tl_split_rng_seed(&r, b->opt.seed, STREAM_FLOWS + (uint64_t)c);
    tl_split_shuffle(order, m, &r);

    int64_t n_kept = tl_split_cap(rows, order, m, b->opt.max_per_class, keep);
    for (int64_t i = 0; i < m; i++) b->flows[fl[i]].keep = keep[i];
    if (b->opt.task != TL_TASK_PRETRAIN) {
      if (b->opt.split == TL_SPLIT_BY_PACKET) split_class_rows(b, c, n_kept);
      else split_class_units(b, c, fl, m, order);
    }
    free(rows);
    free(keep);
    free(order);
  }
  free(start);
  free(fill);
  free(by_class);
}

// Rolls shard files over every rows_per_shard rows of one split.
typedef struct {
  tl_dataset_builder *b;
  int split;
  int64_t left;      // rows of the split not yet written
  int64_t in_shard;  // rows the current shard still takes
  tl_shard_writer *w;
  tl_shard_meta meta;
} shard_set;

static tl_status shard_set_append(shard_set *ss, const tl_spool_row *h, const int32_t *tokens) {
  tl_dataset_builder *b = ss->b;
  if (ss->in_shard == 0) {
    if (tl_shard_writer_close(ss->w) != TL_OK) return ss->w = NULL, TL_ERR;
    ss->w = NULL;
    int idx = b->n_shards[ss->split]++;
    int64_t n = ss->left < b->opt.rows_per_shard ? ss->left : b->opt.rows_per_shard;
    char *name = tl_xstrdup(tl_fmt("%s-%05d.h5", g_split_names[ss->split], idx));
    b->shard_names[ss->split] =
        tl_xrealloc(b->shard_names[ss->split], (size_t)(idx + 1) * sizeof(char *));
    b->shard_rows[ss->split] =
        tl_xrealloc(b->shard_rows[ss->split], (size_t)(idx + 1) * sizeof(int64_t));
    b->shard_names[ss->split][idx] = name;
    b->shard_rows[ss->split][idx] = n;
    ss->meta.shard_index = idx;
    // Written in the temporary folder: the set in out_dir stays whole until
    // the new one is (publish_shards).
    ss->w = tl_shard_writer_open(tl_fmt("%s/%s", b->tmp_dir, name), &ss->meta, n);
    if (!ss->w) return TL_ERR;
    ss->in_shard = n;
  }
  ss->in_shard--;
  ss->left--;
  return tl_shard_writer_append(ss->w, h, tokens);
}

static void fill_meta(tl_dataset_builder *b, int split, const char **kept_names, int n_kept,
                      tl_shard_meta *m) {
  memset(m, 0, sizeof *m);
  m->tokenizer = b->tok->name;
  m->vocab_size = b->tok->vocab_size;
  m->header_policy = b->header_policy;
  m->task = g_task_names[b->opt.task];
  m->split_policy = g_policy_names[b->opt.split];
  m->split = g_split_names[split];
  m->split_seed = b->opt.seed;
  m->seq_len = b->opt.seq_len;
  m->packet_bytes = b->opt.packet_bytes;
  m->flow_packets = b->opt.flow_packets;
  m->deflate_level = b->opt.compress;
  m->label_names = kept_names;
  m->n_labels = n_kept;
  m->source_files = (const char *const *)b->source_files;
  m->n_files = b->n_files;
}

// Rows each split will get: kept rows of kept classes, by flow, file or row.
static void count_split_rows(tl_dataset_builder *b, int64_t n[TL_NUM_SPLITS]) {
  int64_t *class_kept = tl_xcalloc((size_t)b->n_classes, sizeof *class_kept);
  for (int64_t i = 0; i < b->n_flows; i++) {
    const flow_entry *f = &b->flows[i];
    if (b->new_label[f->label] < 0) continue;
    class_kept[f->label] += f->keep;
    if (b->opt.split != TL_SPLIT_BY_PACKET) n[f->split] += f->keep;
    else if (b->opt.task == TL_TASK_PRETRAIN)
      for (int64_t j = 0; j < f->rows; j++)
        if (tl_split_keep_row(j, f->rows, f->keep)) n[pretrain_split(b, f->flow_id, 0, j)]++;
  }
  if (b->opt.split == TL_SPLIT_BY_PACKET && b->opt.task != TL_TASK_PRETRAIN)
    for (int c = 0; c < b->n_classes; c++)
      for (int64_t k = 0; b->new_label[c] >= 0 && k < class_kept[c]; k++) n[b->row_split[c][k]]++;
  free(class_kept);
}

// What draining needs: the three splits' shard sets.
typedef struct {
  tl_dataset_builder *b;
  shard_set set[TL_NUM_SPLITS];
} drain_ctx;

// Called for each row from the buckets, in random order: drops the rows the
// plan leaves out, counts the others and appends them to their split.
static tl_status place_row(const tl_spool_row *h, const int32_t *tokens, void *ctx) {
  drain_ctx *dc = ctx;
  tl_dataset_builder *b = dc->b;
  if (b->opt.stop && *b->opt.stop) {
    tl_set_error("interrupted while writing the shards");
    return TL_ERR;
  }
  flow_entry *f = &b->flows[tl_id_map_get(&b->flow_index, h->flow_id)];
  if (b->new_label[f->label] < 0 || !tl_split_keep_row(h->index_in_flow, f->rows, f->keep))
    return TL_OK;
  int split = f->split;
  if (b->opt.split == TL_SPLIT_BY_PACKET)
    split = b->opt.task == TL_TASK_PRETRAIN
                ? pretrain_split(b, h->flow_id, 0, h->index_in_flow)
                : b->row_split[f->label][b->kept_ordinal[f->label]++];
  tl_spool_row row = *h;
  if (b->opt.task != TL_TASK_PRETRAIN) row.label = b->new_label[f->label];
  else b->pair_rows[h->label][split]++;
  b->rows[f->label][split]++;
  if (!(f->in_split & (1u << split))) b->flows_in[split]++;
  f->in_split |= (uint8_t)(1u << split);
  return shard_set_append(&dc->set[split], &row, tokens);
}

// Writes every split: all buckets drained once into three shard sets.
static tl_status write_splits(tl_dataset_builder *b, const char **kept_names, int n_kept) {
  int64_t n[TL_NUM_SPLITS] = {0};
  count_split_rows(b, n);
  drain_ctx dc = {.b = b};
  for (int s = 0; s < TL_NUM_SPLITS; s++) {
    dc.set[s] = (shard_set){.b = b, .split = s, .left = n[s]};
    fill_meta(b, s, kept_names, n_kept, &dc.set[s].meta);
    b->summary.total_rows += n[s];
  }
  tl_status st = tl_row_shuffle_drain(b->buckets, b->opt.seq_len, place_row, &dc);
  // After a failure the other splits' writers are closed too; the message
  // that counts is the first one.
  char first_error[1024] = "";
  if (st != TL_OK) snprintf(first_error, sizeof first_error, "%s", tl_last_error());
  for (int s = 0; s < TL_NUM_SPLITS; s++) {
    if (tl_shard_writer_close(dc.set[s].w) != TL_OK) st = TL_ERR;
    if (st == TL_OK && dc.set[s].left != 0) {
      tl_set_error("dataset: %s: %lld rows missing after the shuffle", g_split_names[s],
                   (long long)dc.set[s].left);
      st = TL_ERR;
    }
  }
  if (first_error[0]) tl_set_error("%s", first_error);
  return st;
}

// Moves the new set, complete in the temporary folder, into out_dir.
static tl_status publish_shards(tl_dataset_builder *b) {
  int n = 0;
  for (int s = 0; s < TL_NUM_SPLITS; s++) n += b->n_shards[s];
  char **names = tl_xmalloc((size_t)(n ? n : 1) * sizeof *names);
  n = 0;
  for (int s = 0; s < TL_NUM_SPLITS; s++)
    for (int i = 0; i < b->n_shards[s]; i++) names[n++] = b->shard_names[s][i];
  tl_status st = tl_publish_set(b->out_dir, b->tmp_dir, names, n);
  free(names);
  return st;
}

// --- finish: manifest

static cJSON *string_array(const char *const *v, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
  return a;
}

static cJSON *manifest_json(tl_dataset_builder *b, const char **kept_names, int n_kept) {
  cJSON *m = cJSON_CreateObject();
  cJSON_AddStringToObject(m, "format_version", TL_SHARDS_FORMAT_VERSION);
  cJSON_AddStringToObject(m, "task", g_task_names[b->opt.task]);
  cJSON_AddStringToObject(m, "tokenizer", b->tok->name);
  cJSON_AddNumberToObject(m, "vocab_size", b->tok->vocab_size);
  cJSON_AddNumberToObject(m, "seq_len", b->opt.seq_len);
  cJSON_AddNumberToObject(m, "packet_bytes", b->opt.packet_bytes);
  cJSON_AddNumberToObject(m, "flow_packets", b->opt.flow_packets);
  cJSON_AddStringToObject(m, "header_policy", b->header_policy);
  cJSON *identity = b->flow_identity ? cJSON_Parse(b->flow_identity) : NULL;
  if (identity) cJSON_AddItemToObject(m, "flow_identity", identity);
  cJSON_AddStringToObject(m, "split_policy", g_policy_names[b->opt.split]);
  // JSON numbers are doubles: seeds past 2^53 are written as a decimal string.
  if (b->opt.seed <= (1ULL << 53)) cJSON_AddNumberToObject(m, "split_seed", (double)b->opt.seed);
  else cJSON_AddStringToObject(m, "split_seed", tl_fmt("%llu", (unsigned long long)b->opt.seed));
  cJSON_AddItemToObject(m, "split_ratio", cJSON_CreateDoubleArray(b->opt.split_ratio, 3));
  cJSON_AddNumberToObject(m, "max_per_class", b->opt.max_per_class);
  cJSON_AddNumberToObject(m, "min_per_class", b->opt.min_per_class);
  cJSON_AddNumberToObject(m, "rows_per_shard", b->opt.rows_per_shard);
  cJSON_AddItemToObject(m, "label_names", string_array(kept_names, n_kept));
  cJSON_AddItemToObject(m, "source_files",
                        string_array((const char *const *)b->source_files, b->n_files));
  cJSON *escaped = escaped_source_files(b);
  if (escaped) cJSON_AddItemToObject(m, "source_files_hex", escaped);
  cJSON *dropped = cJSON_AddArrayToObject(m, "dropped_labels");
  for (int c = 0; c < b->n_classes; c++) {
    if (b->new_label[c] >= 0) continue;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "name", b->label_names[c]);
    cJSON_AddNumberToObject(d, "rows", (double)b->class_rows[c]);
    cJSON_AddItemToArray(dropped, d);
  }

  cJSON *splits = cJSON_AddObjectToObject(m, "splits");
  for (int s = 0; s < TL_NUM_SPLITS; s++) {
    cJSON *sp = cJSON_AddObjectToObject(splits, g_split_names[s]);
    int64_t total = 0;
    cJSON *per = cJSON_CreateArray();
    for (int c = 0; c < b->n_classes; c++) {
      if (b->new_label[c] < 0) continue;
      total += b->rows[c][s];
      if (b->opt.task != TL_TASK_PRETRAIN)
        cJSON_AddItemToArray(per, cJSON_CreateNumber((double)b->rows[c][s]));
    }
    for (int l = 0; l < 2 && b->opt.task == TL_TASK_PRETRAIN; l++)
      cJSON_AddItemToArray(per, cJSON_CreateNumber((double)b->pair_rows[l][s]));
    cJSON_AddNumberToObject(sp, "rows", (double)total);
    cJSON_AddNumberToObject(sp, "flows", (double)b->flows_in[s]);
    cJSON_AddItemToObject(sp, "rows_per_label", per);
    cJSON *shards = cJSON_AddArrayToObject(sp, "shards");
    for (int i = 0; i < b->n_shards[s]; i++) {
      cJSON *sh = cJSON_CreateObject();
      cJSON_AddStringToObject(sh, "file", b->shard_names[s][i]);
      cJSON_AddNumberToObject(sh, "rows", (double)b->shard_rows[s][i]);
      cJSON_AddItemToArray(shards, sh);
    }
  }
  if (b->opt.task == TL_TASK_PRETRAIN) {
    cJSON *p = cJSON_AddObjectToObject(m, "pairs");
    cJSON_AddNumberToObject(p, "same_origin", (double)b->pairs[0]);
    cJSON_AddNumberToObject(p, "other_origin", (double)b->pairs[1]);
    cJSON_AddNumberToObject(p, "skipped_bursts", (double)b->skipped_bursts);
  }
  return m;
}

static tl_status write_manifest(tl_dataset_builder *b, const char **kept_names, int n_kept) {
  cJSON *m = manifest_json(b, kept_names, n_kept);
  char *text = cJSON_Print(m);
  cJSON_Delete(m);
  // Into the temporary folder, beside the new shards: out_dir changes only
  // when both are complete (publish_shards). Its presence there marks the
  // set complete for a later run's recovery, so it is renamed in whole.
  char *tmp = tl_xstrdup(tl_fmt("%s/manifest.json.part", b->tmp_dir));
  char *path = tl_xstrdup(tl_fmt("%s/manifest.json", b->tmp_dir));
  FILE *f = fopen(tmp, "w");
  tl_status st = TL_OK;
  if (!f || fputs(text, f) < 0 || fputc('\n', f) < 0 || fclose(f) != 0 || rename(tmp, path)) {
    tl_set_error("%s: cannot write manifest: %s", path, strerror(errno));
    st = TL_ERR;
  }
  free(text);
  free(tmp);
  free(path);
  return st;
}

// An other-origin pair needs a burst of another flow in the same split. With
// one flow, or a split of few flows, most pairs are same-origin, and the
// same-origin objective can be met by always answering "same"; a split with
// no pairs at all gives no validation or test figure.
static void warn_unbalanced_pairs(const tl_dataset_builder *b) {
  if (b->opt.task != TL_TASK_PRETRAIN) return;
  for (int s = 0; s < TL_NUM_SPLITS; s++) {
    const int64_t *p = b->split_pairs[s];
    int64_t total = p[0] + p[1];
    if (total == 0 && b->opt.split_ratio[s] > 0)
      tl_warn("pairs in %s: none: too few flows to split; add captures with more flows",
              g_split_names[s]);
    else if (total > 0 && (double)p[1] < 0.4 * (double)total)
      tl_warn("pairs in %s: only %lld of %lld are other-origin (aim: half): other-origin "
              "pairs need bursts of other flows in the same split; add captures with more "
              "flows", g_split_names[s], (long long)p[1], (long long)total);
  }
}

static void log_summary(const tl_dataset_builder *b) {
  for (int s = 0; s < TL_NUM_SPLITS; s++) {
    int64_t total = 0;
    for (int c = 0; c < b->n_classes; c++) total += b->rows[c][s];
    tl_info("%s: %lld rows from %lld flows in %d shard(s)", g_split_names[s], (long long)total,
            (long long)b->flows_in[s], b->n_shards[s]);
  }
  if (b->opt.task == TL_TASK_PRETRAIN)
    tl_info("pairs: %lld same-origin, %lld other-origin; %lld bursts under 2 tokens skipped",
            (long long)b->pairs[0], (long long)b->pairs[1], (long long)b->skipped_bursts);
  warn_unbalanced_pairs(b);
}

tl_status tl_dataset_builder_finish(tl_dataset_builder *b, const tl_dataset_summary **summary) {
  TL_ASSERTF(!b->finished, "finish called twice");
  b->finished = 1;
  if (b->opt.split == TL_SPLIT_BY_PACKET && b->opt.task != TL_TASK_PRETRAIN)
    tl_warn("split by packet: rows of one flow land in train and test, so test scores "
            "overstate accuracy on unseen flows");

  // Decide: classes, caps, splits.
  if (choose_classes(b) != TL_OK) return TL_ERR;
  plan_classes(b);
  b->kept_ordinal = tl_xcalloc((size_t)b->n_classes, sizeof *b->kept_ordinal);
  b->rows = tl_xcalloc((size_t)b->n_classes, sizeof *b->rows);

  // Names of the kept classes, in their new order (pairs name the SOP labels).
  int n_kept = 0;
  const char **kept_names = tl_xcalloc((size_t)b->n_classes + 2, sizeof *kept_names);
  if (b->opt.task == TL_TASK_PRETRAIN) {
    kept_names[0] = g_pair_names[0];
    kept_names[1] = g_pair_names[1];
    n_kept = 2;
  } else {
    for (int c = 0; c < b->n_classes; c++)
      if (b->new_label[c] >= 0) kept_names[n_kept++] = b->label_names[c];
  }

  // The buckets drain into the shards of all splits; the manifest lists them.
  tl_status st = write_splits(b, kept_names, n_kept);
  if (st == TL_OK) st = write_manifest(b, kept_names, n_kept);
  if (st == TL_OK) st = publish_shards(b);
  b->published = st == TL_OK;
  free(kept_names);
  if (st != TL_OK) return TL_ERR;

  log_summary(b);
  b->summary.n_labels = b->n_classes;
  b->summary.rows = b->rows;
  if (summary) *summary = &b->summary;
  return TL_OK;
}

// --- free

static void remove_tmp(tl_dataset_builder *b) {
  tl_row_shuffle_free(b->buckets);
  b->buckets = NULL;
  if (b->tmp_dir) tl_remove_flat_dir(b->tmp_dir); // with the shards of a failed finish
  // What this builder made and never published into goes again, so that a
  // failed run leaves no lock in a refused folder and no empty folders.
  if (b->lock_fd >= 0 && !b->published) {
    if (b->made_lock) unlink(tl_fmt("%s/.tl-prep.lock", b->out_dir));
    if (b->made_from) remove_made_dirs(b->out_dir, strlen(b->made_from));
  }
  if (b->lock_fd >= 0) close(b->lock_fd);
  b->lock_fd = -1;
}

void tl_dataset_builder_free(tl_dataset_builder *b) {
  if (!b) return;
  remove_tmp(b);
  for (int i = 0; i < b->n_labels; i++) free(b->label_names[i]);
  for (int i = 0; i < b->n_files; i++) free(b->source_files[i]), free(b->raw_source_files[i]);
  free(b->label_names);
  free(b->source_files);
  free(b->raw_source_files);
  for (int s = 0; s < TL_NUM_SPLITS; s++) {
    for (int i = 0; i < RESERVOIR_SLOTS; i++) free(b->res[s].slot[i].tokens);
    for (int i = 0; i < b->n_shards[s]; i++) free(b->shard_names[s][i]);
    free(b->shard_names[s]);
    free(b->shard_rows[s]);
  }
  if (b->row_split)
    for (int c = 0; c < b->n_classes; c++) free(b->row_split[c]);
  free(b->row_split);
  free(b->new_label);
  free(b->kept_ordinal);
  free(b->rows);
  free(b->class_rows);
  free(b->flows);
  tl_id_map_free(&b->flow_index);
  free(b->row);
  free(b->burst);
  tl_tokenizer_free(b->tok);
  free(b->out_dir);
  free(b->header_policy);
  free(b->flow_identity);
  free(b->made_from);
  free(b->tmp_dir);
  free(b);
}
