// h5_chunk.h: writes whole HDF5 chunks already shuffled and deflated, with
// libdeflate in place of HDF5's own zlib pipeline.
//
// HDF5's deflate filter (zlib, level 1) took half of tl-prep's time. libdeflate
// writes the same zlib stream several times faster. HDF5 does not let a
// program replace its built-in filters, so tl applies the dataset's declared
// pipeline (byte shuffle, then deflate) itself and hands HDF5 the finished
// chunk (H5Dwrite_chunk). The file is a standard shuffle+deflate dataset that
// h5py, h5dump and tl's reader decode with their own zlib.
#pragma once
#include <hdf5.h>
#include <stddef.h>

#include "core/log.h"

typedef struct tl_h5_chunk_writer tl_h5_chunk_writer;

// A writer with scratch buffers, compressing at deflate level (1..9), or
// writing chunks as they are for level 0 (a dataset without filters). Returns
// NULL with tl_last_error() set when libdeflate has no compressor for it.
// Free with tl_h5_chunk_writer_free.
tl_h5_chunk_writer *tl_h5_chunk_writer_new(int level);
void tl_h5_chunk_writer_free(tl_h5_chunk_writer *w);

// Writes the chunk of dataset ds that starts at offset (dataset coordinates, a
// multiple of the chunk shape). data is the whole chunk, nbytes long, even at
// the dataset's edge (the part beyond the extent is ignored by readers).
// elem_size is the element size in bytes. ds must have been created with
// exactly H5Pset_shuffle then H5Pset_deflate(level), or with no filter for
// level 0. TL_ERR on failure.
tl_status tl_h5_chunk_write(tl_h5_chunk_writer *w, hid_t ds, const hsize_t *offset,
                            const void *data, size_t nbytes, size_t elem_size);

// HDF5's byte shuffle: byte j of element i goes to j * n + i, for n elements of
// elem_size bytes; a trailing partial element is copied as is. As HDF5 does,
// one-byte elements and single-element chunks are left unchanged.
void tl_h5_shuffle(const unsigned char *in, unsigned char *out, size_t nbytes, size_t elem_size);
