// h5_chunk.c: the chunk writer behind h5_chunk.h.
#include "data/h5_chunk.h"

#include <errno.h>
#include <libdeflate.h>
#include <string.h>

struct tl_h5_chunk_writer {
  struct libdeflate_compressor *compressor;
  unsigned char *shuffled, *packed; // scratch, grown to the largest chunk seen
  size_t shuffled_cap, packed_cap;
};

tl_h5_chunk_writer *tl_h5_chunk_writer_new(int level) {
  struct libdeflate_compressor *c = level > 0 ? libdeflate_alloc_compressor(level) : NULL;
  if (level > 0 && !c) {
    tl_set_error("libdeflate: no compressor for deflate level %d", level);
    return NULL;
  }
  tl_h5_chunk_writer *w = tl_xcalloc(1, sizeof *w);
  w->compressor = c;
  return w;
}

void tl_h5_chunk_writer_free(tl_h5_chunk_writer *w) {
  if (!w) return;
  if (w->compressor) libdeflate_free_compressor(w->compressor);
  free(w->shuffled);
  free(w->packed);
  free(w);
}

void tl_h5_shuffle(const unsigned char *in, unsigned char *out, size_t nbytes, size_t elem_size) {
  size_t n = elem_size > 0 ? nbytes / elem_size : 0;
  if (elem_size <= 1 || n <= 1) {
    memcpy(out, in, nbytes);
    return;
  }
  for (size_t j = 0; j < elem_size; j++) {
    unsigned char *dst = out + j * n;
    const unsigned char *src = in + j;
    for (size_t i = 0; i < n; i++) dst[i] = src[i * elem_size];
  }
  size_t done = n * elem_size;
  memcpy(out + done, in + done, nbytes - done);
}

static void *grow(unsigned char **buf, size_t *cap, size_t need) {
  if (need > *cap) {
    *buf = tl_xrealloc(*buf, need);
    *cap = need;
  }
  return *buf;
}

// Hands HDF5 a finished chunk. Filter mask 0: every filter of the dataset's
// pipeline has been applied (none for an unfiltered dataset).
static tl_status put_chunk(hid_t ds, const hsize_t *offset, const void *bytes, size_t n) {
  errno = 0;
  if (H5Dwrite_chunk(ds, H5P_DEFAULT, 0, offset, n, bytes) < 0) {
    tl_set_error("HDF5: writing a chunk of %zu bytes failed%s%s", n, errno ? ": " : "",
                 errno ? strerror(errno) : "");
    return TL_ERR;
  }
  return TL_OK;
}

tl_status tl_h5_chunk_write(tl_h5_chunk_writer *w, hid_t ds, const hsize_t *offset,
                            const void *data, size_t nbytes, size_t elem_size) {
  if (!w->compressor) return put_chunk(ds, offset, data, nbytes);
  grow(&w->shuffled, &w->shuffled_cap, nbytes);
  tl_h5_shuffle(data, w->shuffled, nbytes, elem_size);
  size_t bound = libdeflate_zlib_compress_bound(w->compressor, nbytes);
  grow(&w->packed, &w->packed_cap, bound);
  size_t n = libdeflate_zlib_compress(w->compressor, w->shuffled, nbytes, w->packed, bound);
  if (n == 0) {
    tl_set_error("libdeflate: chunk of %zu bytes did not compress", nbytes);
    return TL_ERR;
  }
  return put_chunk(ds, offset, w->packed, n);
}
