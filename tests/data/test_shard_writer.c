// test_shard_writer.c: chunks that tl compresses itself (h5_chunk.h) must read
// back through HDF5's own shuffle and zlib filters, and a shard file must hold
// exactly the rows appended, the partial last chunk included.
#include <criterion/criterion.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/h5_chunk.h"
#include "data/shard_writer.h"

static uint64_t g_state = 0x9e3779b97f4a7c15u;
static uint32_t next_random(void) {
  g_state ^= g_state << 13;
  g_state ^= g_state >> 7;
  g_state ^= g_state << 17;
  return (uint32_t)g_state;
}

static const char *tmp_path(const char *name) {
  static char path[256];
  snprintf(path, sizeof path, "/tmp/tl_test_shard_writer_%d_%s", (int)getpid(), name);
  return path;
}

// A 1-D dataset of n elements of `type`, chunks of chunk elements, declared as
// shuffle then deflate level 1, written chunk by chunk by tl, read by HDF5.
static void round_trip(hid_t type, size_t elem, hsize_t n, hsize_t chunk) {
  const char *path = tmp_path("chunks.h5");
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t space = H5Screate_simple(1, &n, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, 1, &chunk);
  H5Pset_shuffle(dcpl);
  H5Pset_deflate(dcpl, 1);
  hid_t ds = H5Dcreate2(f, "x", type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  cr_assert(ds >= 0);
  // Small values in wide elements: the high bytes repeat, as token ids do.
  size_t whole = (size_t)((n + chunk - 1) / chunk * chunk) * elem;
  unsigned char *data = calloc(whole, 1);
  for (size_t i = 0; i < (size_t)n * elem; i++)
    data[i] = (i % elem == 0 || elem == 1) ? (unsigned char)next_random() : 0;
  tl_h5_chunk_writer *w = tl_h5_chunk_writer_new(1);
  for (hsize_t at = 0; at < n; at += chunk)
    cr_assert(tl_h5_chunk_write(w, ds, &at, data + at * elem, chunk * elem, elem) == TL_OK,
              "%s", tl_last_error());
  tl_h5_chunk_writer_free(w);
  H5Dclose(ds);
  H5Fclose(f);

  f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  ds = H5Dopen2(f, "x", H5P_DEFAULT);
  unsigned char *back = calloc((size_t)n * elem, 1);
  cr_assert(H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, back) >= 0);
  cr_assert(memcmp(back, data, (size_t)n * elem) == 0, "elem %zu, n %llu, chunk %llu", elem,
            (unsigned long long)n, (unsigned long long)chunk);
  H5Dclose(ds);
  H5Fclose(f);
  H5Pclose(dcpl);
  H5Sclose(space);
  free(back);
  free(data);
  unlink(path);
}

Test(h5_chunk, hdf5_reads_what_tl_compressed) {
  round_trip(H5T_NATIVE_INT32, 4, 1000, 128); // partial last chunk
  round_trip(H5T_NATIVE_INT64, 8, 64, 64);
  round_trip(H5T_NATIVE_INT8, 1, 777, 100);
  round_trip(H5T_NATIVE_INT32, 4, 5, 1); // one element per chunk: no shuffle
  round_trip(H5T_NATIVE_INT16, 2, 3, 2);
}

Test(h5_chunk, shuffle_groups_bytes_by_position) {
  const unsigned char in[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  unsigned char out[9];
  tl_h5_shuffle(in, out, 9, 4); // two elements and one trailing byte
  const unsigned char want[9] = {1, 5, 2, 6, 3, 7, 4, 8, 9};
  cr_assert(memcmp(out, want, 9) == 0);
  tl_h5_shuffle(in, out, 4, 4); // one element stays as it is
  cr_assert(memcmp(out, in, 4) == 0);
}

// Reads dataset name of the shard into buf as mem_type.
static void read_all(hid_t f, const char *name, hid_t mem_type, void *buf, int filters) {
  hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
  cr_assert(ds >= 0, "%s", name);
  hid_t dcpl = H5Dget_create_plist(ds);
  cr_assert(H5Pget_nfilters(dcpl) == filters, "%s: %d filters declared", name, filters);
  H5Pclose(dcpl);
  cr_assert(H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0, "%s", name);
  H5Dclose(ds);
}

// Writes N random rows at a deflate level and reads them back through HDF5.
static void rows_read_back(int level) {
  enum { L = 300, N = 250 }; // 109 rows per chunk: two whole chunks and a partial one
  const char *path = tmp_path("shard.h5");
  const char *labels[] = {"a", "b"}, *files[] = {"x.pcap"};
  tl_shard_meta meta = {.tokenizer = "etbert-bigram", .vocab_size = 65541,
                        .header_policy = "anonymous", .task = "pretrain",
                        .split_policy = "flow", .split = "train", .seq_len = L,
                        .label_names = labels, .n_labels = 2, .source_files = files,
                        .n_files = 1, .deflate_level = level};
  tl_shard_writer *w = tl_shard_writer_open(path, &meta, N);
  cr_assert(w, "%s", tl_last_error());
  static int32_t want_tok[N][L];
  static int8_t want_seg[N][L];
  tl_spool_row h[N];
  for (int r = 0; r < N; r++) {
    int len = 1 + (int)(next_random() % L);
    h[r] = (tl_spool_row){.flow_id = ((uint64_t)next_random() << 32) | next_random(),
                          .file_index = 0, .label = (int32_t)(next_random() % 2),
                          .length = len, .a_end = len / 2};
    for (int i = 0; i < L; i++) {
      want_tok[r][i] = i < len ? (int32_t)(next_random() % 65541) : 0;
      want_seg[r][i] = (int8_t)(i < len / 2 ? 1 : (i < len ? 2 : 0));
    }
    cr_assert(tl_shard_writer_append(w, &h[r], want_tok[r]) == TL_OK);
  }
  cr_assert(tl_shard_writer_close(w) == TL_OK, "%s", tl_last_error());

  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  int filters = level > 0 ? 2 : 0;
  static int32_t tok[N][L];
  static int8_t seg[N][L];
  int32_t length[N], label[N], file_index[N];
  int64_t flow_id[N];
  read_all(f, "tokens", H5T_NATIVE_INT32, tok, filters);
  read_all(f, "segments", H5T_NATIVE_INT8, seg, filters);
  read_all(f, "length", H5T_NATIVE_INT32, length, filters);
  read_all(f, "label", H5T_NATIVE_INT32, label, filters);
  read_all(f, "flow_id", H5T_NATIVE_INT64, flow_id, filters);
  read_all(f, "file_index", H5T_NATIVE_INT32, file_index, filters);
  H5Fclose(f);
  unlink(path);
  cr_assert(memcmp(tok, want_tok, sizeof tok) == 0);
  cr_assert(memcmp(seg, want_seg, sizeof seg) == 0);
  for (int r = 0; r < N; r++) {
    cr_assert(length[r] == h[r].length && label[r] == h[r].label, "row %d", r);
    cr_assert(flow_id[r] == (int64_t)h[r].flow_id && file_index[r] == 0, "row %d", r);
  }
}

Test(shard_writer, rows_read_back_across_chunks) {
  rows_read_back(0);
  rows_read_back(1);
  rows_read_back(9);
}

Test(shard_writer, thousands_of_source_files_fit) {
  // 6,000 names: far past the 64 KiB an HDF5 object header holds.
  enum { N_FILES = 6000 };
  static char names[N_FILES][48];
  static const char *files[N_FILES];
  for (int i = 0; i < N_FILES; i++) {
    snprintf(names[i], sizeof names[i], "session-%05d-of-a-long-capture-name.pcap", i);
    files[i] = names[i];
  }
  const char *labels[] = {"a"}, *path = tmp_path("many.h5");
  tl_shard_meta meta = {.tokenizer = "etbert-bigram", .vocab_size = 65541,
                        .header_policy = "anonymous", .task = "packet", .split_policy = "flow",
                        .split = "train", .seq_len = 4, .label_names = labels, .n_labels = 1,
                        .source_files = files, .n_files = N_FILES};
  tl_shard_writer *w = tl_shard_writer_open(path, &meta, 1);
  cr_assert(w, "%s", tl_last_error());
  int32_t tokens[4] = {2, 9, 9, 9};
  tl_spool_row h = {.length = 4, .a_end = 4, .file_index = N_FILES - 1};
  cr_assert(tl_shard_writer_append(w, &h, tokens) == TL_OK);
  cr_assert(tl_shard_writer_close(w) == TL_OK, "%s", tl_last_error());

  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t a = H5Aopen(f, "source_files", H5P_DEFAULT);
  cr_assert(a >= 0);
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  hid_t space = H5Aget_space(a);
  cr_assert_eq(H5Sget_simple_extent_npoints(space), N_FILES);
  char **back = calloc(N_FILES, sizeof *back);
  cr_assert(H5Aread(a, type, back) >= 0);
  cr_assert_str_eq(back[N_FILES - 1], names[N_FILES - 1]);
  H5Dvlen_reclaim(type, space, H5P_DEFAULT, back);
  free(back);
  H5Sclose(space), H5Tclose(type), H5Aclose(a), H5Fclose(f);
  unlink(path);
}
