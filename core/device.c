// device.c: device selection, device arenas and tensors, and the parameter
// block on the GPU, over the C API of kernels/cuda (see device.h).
#include "core/device.h"

#include <math.h>
#include <string.h>

#ifdef TL_HAVE_CUDA
#include "kernels/cuda/tl_cuda.h"
_Static_assert((int)TL_CUDA_F32 == (int)TL_F32 && (int)TL_CUDA_BF16 == (int)TL_BF16,
               "tl_cuda_dtype mirrors tl_dtype");
#endif

static _Thread_local tl_arena *g_device_arena;

// Every GPU-only entry point without CUDA: a status error, or an abort for the
// functions a caller can only reach with device memory in hand.
#define NO_CUDA_STATUS() \
  do {                   \
    tl_set_error("%s: tl was built without CUDA", __func__); \
    return TL_ERR;       \
  } while (0)
#define NO_CUDA_ABORT() TL_ASSERTF(0, "%s: tl was built without CUDA", __func__)

bool tl_device_available(void) {
#ifdef TL_HAVE_CUDA
  static int count = -1; // probing a missing driver is slow; do it once
  if (count < 0) count = tl_cuda_device_count();
  return count > 0;
#else
  return false;
#endif
}

tl_status tl_device_init(int ordinal) {
#ifdef TL_HAVE_CUDA
  if (tl_cuda_init(ordinal) != 0) {
    tl_set_error("cannot use CUDA device %d: %s", ordinal, tl_cuda_error());
    return TL_ERR;
  }
  return TL_OK;
#else
  (void)ordinal;
  NO_CUDA_STATUS();
#endif
}

void tl_device_name(char *buf, size_t len) {
#ifdef TL_HAVE_CUDA
  if (tl_device_available()) {
    tl_cuda_device_info(buf, len, NULL, NULL);
    return;
  }
#endif
  snprintf(buf, len, "none");
}

void tl_device_sync(void) {
#ifdef TL_HAVE_CUDA
  tl_cuda_sync();
#endif
}

void *tl_device_malloc(size_t bytes) {
#ifdef TL_HAVE_CUDA
  void *p = tl_cuda_malloc(bytes);
  if (!p) tl_set_error("device memory: %s", tl_cuda_error());
  return p;
#else
  (void)bytes;
  tl_set_error("tl_device_malloc: tl was built without CUDA");
  return NULL;
#endif
}

void tl_device_free(void *p) {
#ifdef TL_HAVE_CUDA
  tl_cuda_free(p);
#else
  TL_ASSERTF(!p, "tl_device_free: tl was built without CUDA");
#endif
}

void tl_device_upload(void *dst_device, const void *src_host, size_t bytes) {
#ifdef TL_HAVE_CUDA
  tl_cuda_memcpy_h2d(dst_device, src_host, bytes);
#else
  (void)dst_device, (void)src_host, (void)bytes;
  NO_CUDA_ABORT();
#endif
}

void tl_device_download(void *dst_host, const void *src_device, size_t bytes) {
#ifdef TL_HAVE_CUDA
  tl_cuda_memcpy_d2h(dst_host, src_device, bytes);
#else
  (void)dst_host, (void)src_device, (void)bytes;
  NO_CUDA_ABORT();
#endif
}

// --- device arena and tensors -------------------------------------------------------

tl_status tl_device_arena_init(tl_arena *a, size_t capacity) {
  memset(a, 0, sizeof *a);
  a->base = tl_device_malloc(capacity);
  if (!a->base) return TL_ERR;
  a->capacity = capacity;
  a->device = TL_CUDA;
  return TL_OK;
}

void tl_device_arena_free(tl_arena *a) {
  if (!a) return;
  if (g_device_arena == a) g_device_arena = NULL;
  if (a->base) tl_device_free(a->base);
  memset(a, 0, sizeof *a);
}

void tl_set_device_arena(tl_arena *a) {
  TL_ASSERTF(!a || a->device == TL_CUDA, "tl_set_device_arena: not a device arena");
  g_device_arena = a;
}

tl_arena *tl_get_device_arena(void) { return g_device_arena; }

tl_tensor *tl_device_empty(tl_arena *dev, tl_dtype dtype, int rank, const int64_t *shape) {
  TL_ASSERTF(dev && dev->device == TL_CUDA,
             "no device arena: call tl_set_device_arena before running ops on CUDA");
  // The header (and its contiguous strides) from the host arena, data from dev.
  tl_tensor *t = tl_from_data(dtype, rank, shape, NULL);
  t->data = tl_arena_alloc(dev, (size_t)tl_numel(t) * tl_dtype_size(dtype));
  t->device = TL_CUDA;
  return t;
}

tl_tensor *tl_device_zeros(tl_arena *dev, tl_dtype dtype, int rank, const int64_t *shape) {
  tl_tensor *t = tl_device_empty(dev, dtype, rank, shape);
#ifdef TL_HAVE_CUDA
  tl_cuda_memset0(t->data, (size_t)tl_numel(t) * tl_dtype_size(dtype));
#endif
  return t;
}

tl_tensor *tl_to_device(tl_arena *dev, const tl_tensor *host) {
  TL_ASSERTF(host->device == TL_CPU && tl_is_contiguous(host),
             "tl_to_device: needs a contiguous CPU tensor, got %s", tl_shape_str(host));
  tl_tensor *t = tl_device_empty(dev, host->dtype, host->rank, host->shape);
  tl_device_upload(t->data, host->data, (size_t)tl_numel(t) * tl_dtype_size(t->dtype));
  return t;
}

tl_tensor *tl_to_host(const tl_tensor *dev) {
  TL_ASSERTF(dev->device == TL_CUDA && tl_is_contiguous(dev),
             "tl_to_host: needs a contiguous device tensor, got %s", tl_shape_str(dev));
  tl_tensor *t = tl_empty(dev->dtype, dev->rank, dev->shape);
  tl_device_download(t->data, dev->data, (size_t)tl_numel(t) * tl_dtype_size(t->dtype));
  return t;
}

tl_tensor *tl_empty_on(tl_device dev, tl_dtype dtype, int rank, const int64_t *shape) {
  if (dev == TL_CPU) return tl_empty(dtype, rank, shape);
  return tl_device_empty(tl_get_device_arena(), dtype, rank, shape);
}

tl_tensor *tl_zeros_on(tl_device dev, tl_dtype dtype, int rank, const int64_t *shape) {
  if (dev == TL_CPU) return tl_zeros(dtype, rank, shape);
  return tl_device_zeros(tl_get_device_arena(), dtype, rank, shape);
}

void *tl_alloc_on(tl_device dev, size_t bytes) {
  if (dev == TL_CPU) return tl_arena_alloc(tl_get_arena(), bytes);
  tl_arena *a = tl_get_device_arena();
  TL_ASSERTF(a, "no device arena: call tl_set_device_arena before running ops on CUDA");
  return tl_arena_alloc(a, bytes);
}

float tl_scalar_value(const tl_tensor *t) {
  TL_ASSERTF(t->dtype == TL_F32 && tl_numel(t) == 1, "tl_scalar_value: %s is not one f32",
             tl_shape_str(t));
  float v = 0.0f;
  if (t->device == TL_CPU) v = *(const float *)t->data;
  else tl_device_download(&v, t->data, sizeof v);
  return v;
}

// --- parameter block ------------------------------------------------------------------

// Points every parameter (and grad) of p at `values` / `grads` regions on `device`.
static void point_params(tl_params *p, float *values, float *grads, tl_device device) {
  for (int i = 0; i < p->count; i++) {
    tl_tensor *t = p->info[i].tensor;
    t->data = values + p->info[i].offset;
    t->device = device;
    if (t->grad) {
      t->grad->data = grads + p->info[i].offset;
      t->grad->device = device;
    }
  }
}

#ifdef TL_HAVE_CUDA
// One AdamW segment per parameter, in offset order (tl_params_add appends).
static tl_status upload_segments(tl_device_params *d, const tl_params *p) {
  int n = p->count;
  int64_t *start = tl_xmalloc((size_t)(n ? n : 1) * sizeof *start);
  uint8_t *flags = tl_xmalloc((size_t)(n ? n : 1));
  for (int i = 0; i < n; i++) {
    start[i] = (int64_t)p->info[i].offset;
    flags[i] = (uint8_t)((p->info[i].frozen ? TL_CUDA_SEG_FROZEN : 0) |
                         (p->info[i].no_decay ? TL_CUDA_SEG_NO_DECAY : 0));
    TL_ASSERT(i == 0 || start[i] >= start[i - 1]);
  }
  d->seg_start = tl_device_malloc((size_t)(n ? n : 1) * sizeof *start);
  d->seg_flags = tl_device_malloc((size_t)(n ? n : 1));
  tl_status st = d->seg_start && d->seg_flags ? TL_OK : TL_ERR;
  if (st == TL_OK) {
    tl_device_upload(d->seg_start, start, (size_t)n * sizeof *start);
    tl_device_upload(d->seg_flags, flags, (size_t)n);
    tl_cuda_sync(); // the host arrays are freed next
    d->nseg = n;
  }
  free(start);
  free(flags);
  return st;
}
#endif

tl_status tl_device_params_attach(tl_device_params *d, tl_params *p, bool bf16_copy) {
  memset(d, 0, sizeof *d);
#ifdef TL_HAVE_CUDA
  TL_ASSERTF(p->allocated, "tl_device_params_attach: call tl_params_alloc first");
  size_t n = p->numel;
  d->numel = n;
  d->block = tl_device_malloc((4 * n + 16) * sizeof(float)); // + a spare float
  if (!d->block) goto fail;
  d->values = d->block, d->grads = d->block + n, d->m = d->block + 2 * n, d->v = d->block + 3 * n;
  if (bf16_copy && !(d->values_bf16 = tl_device_malloc(n * sizeof(uint16_t) + 64))) goto fail;
  if (upload_segments(d, p) != TL_OK) goto fail;

  // Values and moments up, gradients zero, then the tensors follow the data.
  tl_device_params_upload(d, p);
  tl_cuda_memset0(d->grads, n * sizeof(float));
  point_params(p, d->values, d->grads, TL_CUDA);
  return TL_OK;
fail:
  tl_device_params_detach(d, NULL);
  return TL_ERR;
#else
  (void)p, (void)bf16_copy;
  NO_CUDA_STATUS();
#endif
}

void tl_device_params_download(const tl_device_params *d, tl_params *p) {
  TL_ASSERT(d->numel == p->numel);
  tl_device_download(p->values, d->values, d->numel * sizeof(float));
  tl_device_download(p->m, d->m, d->numel * sizeof(float));
  tl_device_download(p->v, d->v, d->numel * sizeof(float));
}

void tl_device_params_upload(tl_device_params *d, const tl_params *p) {
  TL_ASSERT(d->numel == p->numel);
  tl_device_upload(d->values, p->values, d->numel * sizeof(float));
  tl_device_upload(d->m, p->m, d->numel * sizeof(float));
  tl_device_upload(d->v, p->v, d->numel * sizeof(float));
#ifdef TL_HAVE_CUDA
  if (d->values_bf16) tl_cuda_convert(TL_CUDA_BF16, d->values_bf16, TL_CUDA_F32, d->values,
                                      (int64_t)d->numel);
#endif
}

void tl_device_params_detach(tl_device_params *d, tl_params *p) {
  if (p && d->block) {
    tl_device_params_download(d, p);
    point_params(p, p->values, p->grads, TL_CPU);
  }
  tl_device_free(d->block);
  tl_device_free(d->values_bf16);
  tl_device_free(d->seg_start);
  tl_device_free(d->seg_flags);
  memset(d, 0, sizeof *d);
}

void tl_device_params_zero_grad(tl_device_params *d) {
#ifdef TL_HAVE_CUDA
  tl_cuda_memset0(d->grads, d->numel * sizeof(float));
#else
  (void)d;
  NO_CUDA_ABORT();
#endif
}

void tl_device_adamw_step(tl_device_params *d, float lr, float beta1, float beta2, float eps,
                          float weight_decay, float grad_scale, int64_t step,
                          bool bias_correction) {
#ifdef TL_HAVE_CUDA
  TL_ASSERTF(step >= 1, "AdamW step counts from 1, got %ld", (long)step);
  tl_cuda_adamw_hp hp = {lr, beta1, beta2, eps, weight_decay, grad_scale, step,
                         !bias_correction};
  tl_cuda_adamw(d->values, d->grads, d->m, d->v, (int64_t)d->numel, &hp, d->seg_start,
                d->seg_flags, d->nseg, d->values_bf16);
#else
  (void)d, (void)lr, (void)beta1, (void)beta2, (void)eps, (void)weight_decay;
  (void)grad_scale, (void)step, (void)bias_correction;
  NO_CUDA_ABORT();
#endif
}

float tl_device_grad_norm(const tl_device_params *d) {
#ifdef TL_HAVE_CUDA
  // The sum lands in the spare float after the four regions (see attach).
  float *sum = d->block + 4 * d->numel, host = 0.0f;
  tl_cuda_sumsq(sum, d->grads, (int64_t)d->numel);
  tl_cuda_memcpy_d2h(&host, sum, sizeof host);
  return sqrtf(host);
#else
  (void)d;
  NO_CUDA_ABORT();
  return 0.0f;
#endif
}
