// safetensors.h: read and write the safetensors format (Hugging Face), the
// file format of tl's model weights and checkpoints.
//
// Layout of a file:
//   u64 little-endian N | N bytes of JSON header | raw tensor data
// The header is a JSON object: one entry per tensor,
//   "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
// with offsets in bytes from the start of the data section, and an optional
// "__metadata__" entry holding a flat string -> string map. Data is stored
// little-endian, row-major, with no padding between tensors.
//
// The writer writes a temporary file next to the target, flushes and fsyncs it,
// then renames it over the target, so a reader (or a crash) never sees a
// half-written checkpoint. The reader parses and validates the whole header on
// open; tensors are then read one at a time with pread, into caller memory.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

#define TL_ST_MAX_RANK 8

// --- writer -----------------------------------------------------------------

// One tensor to write: data is contiguous, row-major, of numel(shape) elements
// of dtype. rank 0 is a scalar (one element). The name is copied into the header.
typedef struct tl_st_item {
  const char *name;
  tl_dtype dtype;
  int rank;
  int64_t shape[TL_ST_MAX_RANK];
  const void *data;
} tl_st_item;

// One metadata entry ("__metadata__" in the header); both strings are copied.
typedef struct tl_st_meta {
  const char *key;
  const char *value;
} tl_st_meta;

// Shorthand: the item describing a contiguous tensor t under the given name.
tl_st_item tl_st_item_of(const char *name, const tl_tensor *t);

// Writes n items and n_meta metadata entries (meta may be NULL when n_meta is 0)
// to path, atomically: PATH.tmp.PID is written, fflush'd and fsync'd, then
// renamed to path. Names must be unique and not "__metadata__". Returns TL_OK,
// or TL_ERR with tl_last_error() naming the file and what failed (the temporary
// file is removed). Nothing is kept by the callee.
tl_status tl_safetensors_write(const char *path, const tl_st_item *items, int n,
                               const tl_st_meta *meta, int n_meta);

// --- reader -----------------------------------------------------------------

// One tensor's header entry. dtype is valid only when supported is true (tl
// reads F32, BF16, F16, I32 and U8; others, e.g. I64 buffers in some Hugging
// Face checkpoints, are listed but cannot be loaded).
typedef struct tl_st_tensor {
  char *name;
  char dtype_name[8];   // as in the file: "F32", "BF16", "I64", ...
  bool supported;
  tl_dtype dtype;
  int rank;
  int64_t shape[TL_ST_MAX_RANK];
  uint64_t begin, end;  // byte offsets in the data section
} tl_st_tensor;

typedef struct tl_safetensors {
  char *path;
  int fd;
  uint64_t data_start;  // file offset of the data section (8 + header length)
  uint64_t data_size;   // bytes in the data section
  int count;
  tl_st_tensor *tensors; // in header order
  int n_meta;
  tl_st_meta *meta;     // owned strings
} tl_safetensors;

// Opens path and validates its header: length within the file, a JSON object,
// every entry with a known-size dtype, a shape of non-negative sizes, and
// data_offsets inside the data section that match dtype and shape and do not
// overlap another tensor. Returns TL_OK, or TL_ERR with a one-line reason
// naming the file (and the tensor). On success free with tl_safetensors_close;
// on failure st holds nothing.
tl_status tl_safetensors_open(tl_safetensors *st, const char *path);
// Closes the file and frees the header; accepts a zeroed or closed reader.
void tl_safetensors_close(tl_safetensors *st);

// The header entry of a tensor, or NULL when the file has no tensor of that name.
const tl_st_tensor *tl_safetensors_find(const tl_safetensors *st, const char *name);
// A metadata value, or NULL when absent. Owned by st.
const char *tl_safetensors_meta(const tl_safetensors *st, const char *key);

// Reads tensor name's raw bytes into dst (exactly nbytes = its stored size).
// TL_ERR when absent, when nbytes differs, or on a read error.
tl_status tl_safetensors_read_raw(const tl_safetensors *st, const char *name, void *dst,
                                  size_t nbytes);

// Copies tensor name into the caller's contiguous CPU tensor dst. The shapes
// must match exactly (same rank and sizes); dtypes must match, except that a
// BF16 or F16 tensor may be loaded into an F32 one. TL_ERR names the file, the
// tensor and the mismatch.
tl_status tl_safetensors_load(const tl_safetensors *st, const char *name, tl_tensor *dst);

// Loads every parameter of p (allocated) whose name is in the file, by name
// with tl_safetensors_load. When strict, a parameter missing from the file is
// an error; tensors in the file that are not parameters are ignored. Returns the
// count loaded in *n_loaded (may be NULL).
tl_status tl_safetensors_load_params(const tl_safetensors *st, tl_params *p, bool strict,
                                     int *n_loaded);
