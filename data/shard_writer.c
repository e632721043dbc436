// shard_writer.c: HDF5 shard files: chunked, shuffled and deflated datasets,
// attributes on the root group. Object time stamps are off so the same rows
// give byte-identical files. Rows are buffered a chunk at a time and each
// chunk goes to the file already compressed (data/h5_chunk.h).
#include "data/shard_writer.h"

#include <hdf5.h>
#include <string.h>

#include "data/h5_chunk.h"
#include "data/tokenizer.h"

// Chunks bypass HDF5's type conversion, so host order must be the file's.
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shard_writer.c writes little-endian chunks directly; port write_chunk first"
#endif

enum { DS_TOKENS, DS_SEGMENTS, DS_LENGTH, DS_LABEL, DS_FLOW_ID, DS_FILE_INDEX, DS_COUNT };
static const char *const g_ds_names[DS_COUNT] = {"tokens", "segments", "length",
                                                 "label",  "flow_id",  "file_index"};

struct tl_shard_writer {
  char *path;
  hid_t file;
  hid_t ds[DS_COUNT];
  tl_h5_chunk_writer *chunks;
  int seq_len;
  int64_t n_rows, written; // rows promised, rows flushed to the file
  int64_t chunk_rows, buffered;
  int32_t *tokens;   // [chunk_rows, seq_len]
  int8_t *segments;  // [chunk_rows, seq_len]
  int32_t *length;   // [chunk_rows]
  int32_t *label;    // [chunk_rows]
  int64_t *flow_id;  // [chunk_rows]
  int32_t *file_idx; // [chunk_rows]
  int failed;
};

// --- attributes

static herr_t put_string_array(hid_t loc, const char *name, const char *const *v, int n) {
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  hsize_t dim = (hsize_t)n;
  hid_t space = n > 0 ? H5Screate_simple(1, &dim, NULL) : H5Screate(H5S_NULL);
  hid_t attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  herr_t err = attr < 0 ? -1 : (n > 0 ? H5Awrite(attr, type, v) : 0);
  if (attr >= 0) H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
  return err;
}

static herr_t put_string(hid_t loc, const char *name, const char *value) {
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  herr_t err = attr < 0 ? -1 : H5Awrite(attr, type, &value);
  if (attr >= 0) H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
  return err;
}

static herr_t put_scalar(hid_t loc, const char *name, hid_t file_type, hid_t mem_type,
                         const void *value) {
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attr = H5Acreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
  herr_t err = attr < 0 ? -1 : H5Awrite(attr, mem_type, value);
  if (attr >= 0) H5Aclose(attr);
  H5Sclose(space);
  return err;
}

static herr_t put_attributes(hid_t f, const tl_shard_meta *m) {
  herr_t err = 0;
  err |= put_string(f, "format_version", TL_SHARDS_FORMAT_VERSION);
  err |= put_string(f, "tokenizer", m->tokenizer);
  err |= put_scalar(f, "vocab_size", H5T_STD_I32LE, H5T_NATIVE_INT32, &m->vocab_size);
  err |= put_string(f, "header_policy", m->header_policy);
  err |= put_string(f, "task", m->task);
  err |= put_string(f, "split_policy", m->split_policy);
  err |= put_string(f, "split", m->split);
  err |= put_scalar(f, "split_seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &m->split_seed);
  err |= put_scalar(f, "seq_len", H5T_STD_I32LE, H5T_NATIVE_INT32, &m->seq_len);
  err |= put_scalar(f, "packet_bytes", H5T_STD_I32LE, H5T_NATIVE_INT32, &m->packet_bytes);
  err |= put_scalar(f, "flow_packets", H5T_STD_I32LE, H5T_NATIVE_INT32, &m->flow_packets);
  err |= put_scalar(f, "shard_index", H5T_STD_I32LE, H5T_NATIVE_INT32, &m->shard_index);
  err |= put_string_array(f, "label_names", m->label_names, m->n_labels);
  err |= put_string_array(f, "source_files", m->source_files, m->n_files);
  return err;
}

// --- datasets

// One dataset of rank 1 ([n_rows]) or 2 ([n_rows, seq_len]), chunked by rows,
// and when compressed byte-shuffled then deflated: token ids compress well
// once their high bytes line up.
static hid_t make_dataset(hid_t f, const char *name, hid_t type, int rank, int64_t n_rows,
                          int seq_len, int64_t chunk_rows, int level) {
  hsize_t dims[2] = {(hsize_t)n_rows, (hsize_t)seq_len};
  hsize_t chunk[2] = {(hsize_t)chunk_rows, (hsize_t)seq_len};
  hid_t space = H5Screate_simple(rank, dims, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, rank, chunk);
  if (level > 0) {
    H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, (unsigned)level);
  }
  H5Pset_obj_track_times(dcpl, 0);
  hid_t ds = H5Dcreate2(f, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  H5Pclose(dcpl);
  H5Sclose(space);
  return ds;
}

static void free_writer(tl_shard_writer *w) {
  for (int i = 0; i < DS_COUNT; i++)
    if (w->ds[i] > 0) H5Dclose(w->ds[i]);
  if (w->file > 0) H5Fclose(w->file);
  tl_h5_chunk_writer_free(w->chunks);
  free(w->tokens);
  free(w->segments);
  free(w->length);
  free(w->label);
  free(w->flow_id);
  free(w->file_idx);
  free(w->path);
  free(w);
}

tl_shard_writer *tl_shard_writer_open(const char *path, const tl_shard_meta *meta, int64_t n_rows) {
  TL_ASSERT(n_rows > 0 && meta->seq_len > 0);
  tl_shard_writer *w = tl_xcalloc(1, sizeof *w);
  w->path = tl_xstrdup(path);
  w->seq_len = meta->seq_len;
  w->n_rows = n_rows;
  w->chunks = tl_h5_chunk_writer_new(meta->deflate_level);
  if (!w->chunks) {
    free_writer(w);
    return NULL;
  }
  // About 128 KiB of tokens per chunk: small enough for cheap random reads.
  w->chunk_rows = 32768 / meta->seq_len;
  if (w->chunk_rows < 1) w->chunk_rows = 1;
  if (w->chunk_rows > n_rows) w->chunk_rows = n_rows;

  // The root group's time stamps would make every run's file differ.
  hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
  H5Pset_obj_track_times(fcpl, 0);
  // Attributes in dense storage (HDF5 1.8 format): a compact one lives in the
  // object header, which holds 64 KiB, and source_files of a few thousand
  // captures is larger.
  H5Pset_attr_phase_change(fcpl, 0, 0);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
  w->file = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
  H5Pclose(fapl);
  H5Pclose(fcpl);
  if (w->file < 0) {
    tl_set_error("%s: cannot create HDF5 shard", path);
    free_writer(w);
    return NULL;
  }
  const hid_t types[DS_COUNT] = {H5T_STD_I32LE, H5T_STD_I8LE,  H5T_STD_I32LE,
                                 H5T_STD_I32LE, H5T_STD_I64LE, H5T_STD_I32LE};
  for (int i = 0; i < DS_COUNT; i++) {
    int rank = i <= DS_SEGMENTS ? 2 : 1;
    w->ds[i] = make_dataset(w->file, g_ds_names[i], types[i], rank, n_rows, w->seq_len,
                            w->chunk_rows, meta->deflate_level);
    if (w->ds[i] < 0) {
      tl_set_error("%s: cannot create dataset %s", path, g_ds_names[i]);
      free_writer(w);
      return NULL;
    }
  }
  if (put_attributes(w->file, meta) < 0) {
    tl_set_error("%s: cannot write attributes", path);
    free_writer(w);
    return NULL;
  }
  size_t cells = (size_t)w->chunk_rows * (size_t)w->seq_len;
  w->tokens = tl_xmalloc(cells * sizeof *w->tokens);
  w->segments = tl_xmalloc(cells * sizeof *w->segments);
  w->length = tl_xmalloc((size_t)w->chunk_rows * sizeof *w->length);
  w->label = tl_xmalloc((size_t)w->chunk_rows * sizeof *w->label);
  w->flow_id = tl_xmalloc((size_t)w->chunk_rows * sizeof *w->flow_id);
  w->file_idx = tl_xmalloc((size_t)w->chunk_rows * sizeof *w->file_idx);
  return w;
}

// Writes the buffered chunk of one dataset: rows [written, written +
// chunk_rows), the rows past `buffered` zeroed (they lie beyond the extent).
static tl_status write_chunk(tl_shard_writer *w, int i, void *buf, size_t row_bytes) {
  size_t used = (size_t)w->buffered * row_bytes, whole = (size_t)w->chunk_rows * row_bytes;
  memset((char *)buf + used, 0, whole - used);
  hsize_t offset[2] = {(hsize_t)w->written, 0};
  size_t elem = i == DS_SEGMENTS ? 1 : (i == DS_FLOW_ID ? 8 : 4);
  return tl_h5_chunk_write(w->chunks, w->ds[i], offset, buf, whole, elem);
}

static tl_status flush_rows(tl_shard_writer *w) {
  if (w->buffered == 0) return TL_OK;
  size_t L = (size_t)w->seq_len;
  tl_status st = write_chunk(w, DS_TOKENS, w->tokens, L * sizeof *w->tokens);
  if (st == TL_OK) st = write_chunk(w, DS_SEGMENTS, w->segments, L);
  if (st == TL_OK) st = write_chunk(w, DS_LENGTH, w->length, sizeof *w->length);
  if (st == TL_OK) st = write_chunk(w, DS_LABEL, w->label, sizeof *w->label);
  if (st == TL_OK) st = write_chunk(w, DS_FLOW_ID, w->flow_id, sizeof *w->flow_id);
  if (st == TL_OK) st = write_chunk(w, DS_FILE_INDEX, w->file_idx, sizeof *w->file_idx);
  w->written += w->buffered;
  w->buffered = 0;
  if (st != TL_OK) {
    tl_set_error("%s: near row %lld: %s", w->path, (long long)w->written, tl_last_error());
    w->failed = 1;
  }
  return st;
}

tl_status tl_shard_writer_append(tl_shard_writer *w, const tl_spool_row *h,
                                 const int32_t *tokens) {
  TL_ASSERTF(w->written + w->buffered < w->n_rows, "%s: more rows than announced", w->path);
  TL_ASSERT(h->length <= w->seq_len);
  int64_t r = w->buffered;
  int32_t *row = w->tokens + r * w->seq_len;
  int8_t *seg = w->segments + r * w->seq_len;
  // Segments in three runs: 1 up to a_end, 2 up to length, 0 on padding
  // (tl_spool_segment, written out for speed).
  int a_end = h->a_end < 0 ? 0 : (h->a_end < h->length ? h->a_end : h->length);
  memcpy(row, tokens, (size_t)h->length * sizeof *row);
  for (int i = h->length; i < w->seq_len; i++) row[i] = TL_TOK_PAD;
  memset(seg, 1, (size_t)a_end);
  memset(seg + a_end, 2, (size_t)(h->length - a_end));
  memset(seg + h->length, 0, (size_t)(w->seq_len - h->length));
  w->length[r] = h->length;
  w->label[r] = h->label;
  w->flow_id[r] = (int64_t)h->flow_id;
  w->file_idx[r] = h->file_index;
  w->buffered++;
  return w->buffered == w->chunk_rows ? flush_rows(w) : TL_OK;
}

tl_status tl_shard_writer_close(tl_shard_writer *w) {
  if (!w) return TL_OK;
  tl_status st = w->failed ? TL_ERR : flush_rows(w);
  if (st == TL_OK && w->written != w->n_rows) {
    tl_set_error("%s: %lld rows written, %lld announced", w->path, (long long)w->written,
                 (long long)w->n_rows);
    st = TL_ERR;
  }
  // H5Fclose writes the metadata; a failure there is a failed shard too.
  for (int i = 0; i < DS_COUNT; i++) {
    if (w->ds[i] > 0) H5Dclose(w->ds[i]);
    w->ds[i] = 0;
  }
  if (H5Fclose(w->file) < 0 && st == TL_OK) {
    tl_set_error("%s: closing the HDF5 file failed", w->path);
    st = TL_ERR;
  }
  w->file = 0;
  free_writer(w);
  return st;
}
