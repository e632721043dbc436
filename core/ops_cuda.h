// ops_cuda.h: the CUDA paths of the ops whose device code is shaped differently
// from their CPU glue (results that stay on the device, host-side checks that
// move after the kernel). Each tl_X_cuda has the contract of tl_X in ops.h for
// inputs that live on the GPU; the op itself calls it after its shape checks,
// so callers keep using ops.h. Only with TL_HAVE_CUDA. Index inputs (ids,
// targets, key masks) may live on the CPU: they are copied to the GPU.
#pragma once
#include "core/ops.h"

#ifdef TL_HAVE_CUDA
tl_tensor *tl_attention_cuda(tl_tensor *q, tl_tensor *k, tl_tensor *v,
                             const tl_attention_opts *o);
// logits on the GPU, targets i32 on the GPU; out-of-range targets abort after
// the kernel (the check waits for the device).
tl_tensor *tl_cross_entropy_cuda(tl_tensor *logits, tl_tensor *targets, int ignore_index);
tl_tensor *tl_rope_cuda(tl_tensor *x, int64_t pos0, float theta);
// Sum (mean = false) or mean of every element, to a rank-0 tensor on the GPU.
tl_tensor *tl_reduce_cuda(tl_tensor *x, bool mean, const char *name);
// embedding / gather_rows: table [rows, C] and ids i32 on the GPU.
tl_tensor *tl_lookup_cuda(tl_tensor *table, tl_tensor *ids, const char *name);
#endif
