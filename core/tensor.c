#include "core/tensor.h"

#include "core/device.h"

#include <math.h>
#include <string.h>

// Under AddressSanitizer the arena poisons what is not handed out and leaves a
// red zone after each block, so an op writing past its output is caught even
// though the arena is one big allocation.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define TL_ARENA_REDZONE 64
// Only host memory can be poisoned: a device arena's addresses are not ours.
#define TL_POISON(p, n) \
  do { if (a->device == TL_CPU) ASAN_POISON_MEMORY_REGION(p, n); } while (0)
#define TL_UNPOISON(p, n) \
  do { if (a->device == TL_CPU) ASAN_UNPOISON_MEMORY_REGION(p, n); } while (0)
#else
#define TL_ARENA_REDZONE 0
#define TL_POISON(p, n) ((void)(p), (void)(n))
#define TL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

size_t tl_dtype_size(tl_dtype dtype) {
  static const size_t sizes[] = {[TL_F32] = 4, [TL_BF16] = 2, [TL_F16] = 2,
                                 [TL_I32] = 4, [TL_U8] = 1};
  return sizes[dtype];
}

const char *tl_dtype_name(tl_dtype dtype) {
  static const char *names[] = {[TL_F32] = "f32", [TL_BF16] = "bf16", [TL_F16] = "f16",
                                [TL_I32] = "i32", [TL_U8] = "u8"};
  return names[dtype];
}

int64_t tl_numel(const tl_tensor *t) {
  int64_t n = 1;
  for (int d = 0; d < t->rank; d++) n *= t->shape[d];
  return n;
}

bool tl_is_contiguous(const tl_tensor *t) {
  int64_t expected = 1;
  for (int d = t->rank - 1; d >= 0; d--) {
    // A dimension of size 1 can have any stride without breaking contiguity.
    if (t->shape[d] != 1 && t->stride[d] != expected) return false;
    expected *= t->shape[d];
  }
  return true;
}

bool tl_same_shape(const tl_tensor *a, const tl_tensor *b) {
  if (a->rank != b->rank) return false;
  for (int d = 0; d < a->rank; d++)
    if (a->shape[d] != b->shape[d]) return false;
  return true;
}

const char *tl_shape_str(const tl_tensor *t) {
  static _Thread_local char buf[96];
  int n = snprintf(buf, sizeof buf, "[");
  for (int d = 0; d < t->rank; d++)
    n += snprintf(buf + n, sizeof buf - n, d ? ", %ld" : "%ld", (long)t->shape[d]);
  snprintf(buf + n, sizeof buf - n, "]");
  return buf;
}

uint16_t tl_f32_to_bf16(float x) {
  uint32_t bits;
  memcpy(&bits, &x, 4);
  if (isnan(x)) return (uint16_t)((bits >> 16) | 0x40);  // keep NaN a NaN
  uint32_t rounding = 0x7fff + ((bits >> 16) & 1);       // round to nearest even
  return (uint16_t)((bits + rounding) >> 16);
}

float tl_bf16_to_f32(uint16_t x) {
  uint32_t bits = (uint32_t)x << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

// --- arena -----------------------------------------------------------------

static _Thread_local tl_arena *g_arena;

void tl_arena_init(tl_arena *a, size_t capacity) {
  memset(a, 0, sizeof *a);
  a->base = aligned_alloc(64, (capacity + 63) & ~(size_t)63);
  if (!a->base) {
    fprintf(stderr, "tl: cannot reserve an arena of %zu bytes\n", capacity);
    abort();
  }
  a->capacity = capacity;
  a->device = TL_CPU;
  TL_POISON(a->base, a->capacity);
}

void tl_arena_free(tl_arena *a) {
  if (!a) return;
  if (g_arena == a) g_arena = NULL;
  TL_UNPOISON(a->base, a->capacity);
  free(a->base);
  memset(a, 0, sizeof *a);
}

void *tl_arena_alloc(tl_arena *a, size_t n) {
  TL_ASSERTF(a && a->base, "no arena: call tl_set_arena before running ops");
  size_t start = (a->used + TL_ARENA_REDZONE + 63) & ~(size_t)63;
  if (start + n > a->capacity) {
    fprintf(stderr, "tl: activation arena full: %zu of %zu bytes used, %zu more asked; "
            "raise the arena size (train.arena_mb)\n", a->used, a->capacity, n);
    abort();
  }
  a->used = start + n;
  if (a->used > a->high_water) a->high_water = a->used;
  TL_UNPOISON(a->base + start, n);
  return a->base + start;
}

void tl_arena_rewind(tl_arena *a, size_t mark) {
  TL_ASSERT(mark <= a->used);
  TL_POISON(a->base + mark, a->used - mark);
  a->used = mark;
}

void tl_arena_reset(tl_arena *a) {
  a->used = 0;
  TL_POISON(a->base, a->capacity);
}

void tl_set_arena(tl_arena *a) { g_arena = a; }
tl_arena *tl_get_arena(void) { return g_arena; }

// --- tensor constructors -----------------------------------------------------

static tl_tensor *new_header(tl_dtype dtype, int rank, const int64_t *shape) {
  TL_ASSERTF(rank >= 0 && rank <= TL_MAX_RANK, "rank %d", rank);
  tl_tensor *t = tl_arena_alloc(tl_get_arena(), sizeof *t);
  memset(t, 0, sizeof *t);
  t->dtype = dtype;
  t->device = TL_CPU;
  t->rank = rank;
  int64_t stride = 1;
  for (int d = rank - 1; d >= 0; d--) {
    TL_ASSERTF(shape[d] >= 0, "negative dimension %ld", (long)shape[d]);
    t->shape[d] = shape[d];
    t->stride[d] = stride;
    stride *= shape[d];
  }
  return t;
}

tl_tensor *tl_empty(tl_dtype dtype, int rank, const int64_t *shape) {
  tl_tensor *t = new_header(dtype, rank, shape);
  t->data = tl_arena_alloc(tl_get_arena(), (size_t)tl_numel(t) * tl_dtype_size(dtype));
  return t;
}

tl_tensor *tl_zeros(tl_dtype dtype, int rank, const int64_t *shape) {
  tl_tensor *t = tl_empty(dtype, rank, shape);
  memset(t->data, 0, (size_t)tl_numel(t) * tl_dtype_size(dtype));
  return t;
}

// On t's device: a CUDA tensor's likeness comes from the device arena (device.h).
tl_tensor *tl_empty_like(const tl_tensor *t) {
  return tl_empty_on(t->device, t->dtype, t->rank, t->shape);
}
tl_tensor *tl_zeros_like(const tl_tensor *t) {
  return tl_zeros_on(t->device, t->dtype, t->rank, t->shape);
}

tl_tensor *tl_from_data(tl_dtype dtype, int rank, const int64_t *shape, void *data) {
  tl_tensor *t = new_header(dtype, rank, shape);
  t->data = data;
  return t;
}

size_t tl_offset(const tl_tensor *t, const int64_t *index) {
  int64_t off = 0;
  for (int d = 0; d < t->rank; d++) off += index[d] * t->stride[d];
  return (size_t)off;
}

static float load_as_f32(const void *data, tl_dtype dtype, size_t i) {
  switch (dtype) {
  case TL_F32: return ((const float *)data)[i];
  case TL_BF16: return tl_bf16_to_f32(((const uint16_t *)data)[i]);
  case TL_I32: return (float)((const int32_t *)data)[i];
  case TL_U8: return (float)((const uint8_t *)data)[i];
  default: TL_ASSERTF(0, "no f32 view of %s", tl_dtype_name(dtype));
  }
}

static void store_from_f32(void *data, tl_dtype dtype, size_t i, float x) {
  switch (dtype) {
  case TL_F32: ((float *)data)[i] = x; break;
  case TL_BF16: ((uint16_t *)data)[i] = tl_f32_to_bf16(x); break;
  case TL_I32: ((int32_t *)data)[i] = (int32_t)x; break;
  case TL_U8: ((uint8_t *)data)[i] = (uint8_t)x; break;
  default: TL_ASSERTF(0, "cannot store into %s", tl_dtype_name(dtype));
  }
}

float tl_get_f32(const tl_tensor *t, const int64_t *index) {
  return load_as_f32(t->data, t->dtype, tl_offset(t, index));
}

// Visits every index of shape in row-major order, calling fn(index, arg).
static void for_each_index(const tl_tensor *t, void (*fn)(const int64_t *, void *), void *arg) {
  int64_t n = tl_numel(t);
  int64_t index[TL_MAX_RANK] = {0};
  for (int64_t k = 0; k < n; k++) {
    fn(index, arg);
    for (int d = t->rank - 1; d >= 0; d--) {
      if (++index[d] < t->shape[d]) break;
      index[d] = 0;
    }
  }
}

typedef struct { tl_tensor *dst; const tl_tensor *src; } copy_args;

static void copy_one(const int64_t *index, void *arg) {
  copy_args *c = arg;
  size_t so = tl_offset(c->src, index), d = tl_offset(c->dst, index);
  if (c->src->dtype == c->dst->dtype && c->src->dtype == TL_I32) {
    ((int32_t *)c->dst->data)[d] = ((const int32_t *)c->src->data)[so];
    return;
  }
  store_from_f32(c->dst->data, c->dst->dtype, d, load_as_f32(c->src->data, c->src->dtype, so));
}

void tl_copy(tl_tensor *dst, const tl_tensor *src) {
  TL_ASSERTF(tl_same_shape(dst, src), "copy %s into %s", tl_shape_str(src), tl_shape_str(dst));
  TL_ASSERT(dst->device == TL_CPU && src->device == TL_CPU);
  if (dst->dtype == src->dtype && tl_is_contiguous(dst) && tl_is_contiguous(src)) {
    memmove(dst->data, src->data, (size_t)tl_numel(src) * tl_dtype_size(src->dtype));
    return;
  }
  copy_args args = {dst, src};
  for_each_index(src, copy_one, &args);
}

// --- parameter block ---------------------------------------------------------

void tl_params_init(tl_params *p) { memset(p, 0, sizeof *p); }

tl_tensor *tl_params_add(tl_params *p, const char *name, int rank, const int64_t *shape,
                         bool no_decay) {
  TL_ASSERTF(!p->allocated, "parameter %s declared after tl_params_alloc", name);
  TL_ASSERTF(!tl_params_find(p, name), "parameter %s declared twice", name);
  if (p->count == p->capacity) {
    p->capacity = p->capacity ? 2 * p->capacity : 64;
    p->info = tl_xrealloc(p->info, (size_t)p->capacity * sizeof *p->info);
  }
  // Parameter headers outlive every arena, so they are malloc'd once here.
  tl_tensor *t = tl_xcalloc(1, sizeof *t);
  t->dtype = TL_F32;
  t->device = TL_CPU;
  t->rank = rank;
  int64_t stride = 1;
  for (int d = rank - 1; d >= 0; d--) {
    t->shape[d] = shape[d];
    t->stride[d] = stride;
    stride *= shape[d];
  }
  t->requires_grad = true;
  t->is_param = true;
  t->name = tl_xstrdup(name);
  tl_param_info *info = &p->info[p->count++];
  info->tensor = t;
  // Keep every parameter 16-float aligned so vector loops start on a boundary.
  info->offset = p->numel;
  p->numel += ((size_t)tl_numel(t) + 15) & ~(size_t)15;
  info->frozen = false;
  info->no_decay = no_decay;
  return t;
}

void tl_params_alloc(tl_params *p) {
  TL_ASSERT(!p->allocated);
  size_t bytes = p->numel * sizeof(float);
  // One allocation, four regions: values, grads, m, v.
  float *block = aligned_alloc(64, 4 * bytes + 64);
  TL_ASSERTF(block, "cannot allocate %zu parameter floats", p->numel);
  memset(block, 0, 4 * bytes);
  p->values = block;
  p->grads = block + p->numel;
  p->m = block + 2 * p->numel;
  p->v = block + 3 * p->numel;
  for (int i = 0; i < p->count; i++) {
    tl_tensor *t = p->info[i].tensor;
    t->data = p->values + p->info[i].offset;
    tl_tensor *g = tl_xcalloc(1, sizeof *g);
    *g = *t;
    g->requires_grad = false;
    g->grad = NULL;
    g->name = NULL;
    g->data = p->grads + p->info[i].offset;
    t->grad = g;
    t->requires_grad = !p->info[i].frozen;
  }
  p->allocated = true;
}

tl_tensor *tl_params_find(const tl_params *p, const char *name) {
  for (int i = 0; i < p->count; i++)
    if (!strcmp(p->info[i].tensor->name, name)) return p->info[i].tensor;
  return NULL;
}

void tl_params_freeze(tl_params *p, const char *name, bool frozen) {
  for (int i = 0; i < p->count; i++) {
    if (strcmp(p->info[i].tensor->name, name)) continue;
    p->info[i].frozen = frozen;
    p->info[i].tensor->requires_grad = !frozen;
    return;
  }
  TL_ASSERTF(0, "no parameter named %s", name);
}

void tl_params_zero_grad(tl_params *p) {
  if (p->grads) memset(p->grads, 0, p->numel * sizeof(float));
}

void tl_params_free(tl_params *p) {
  if (!p) return;
  for (int i = 0; i < p->count; i++) {
    tl_tensor *t = p->info[i].tensor;
    free((void *)t->name);
    free(t->grad);
    free(t);
  }
  free(p->info);
  free(p->values);
  memset(p, 0, sizeof *p);
}
