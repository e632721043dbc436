// tensor.h: tl's tensor, its views, and the two memory lifetimes.
//
// A tensor is a small struct pointing at memory it does not own. That memory has
// one of two lifetimes (DESIGN.md):
//  - parameters, their gradients and the optimizer's two moments live in one
//    contiguous block per device (tl_params), allocated once;
//  - activations, their gradients and temporaries come from a per-step arena
//    (tl_arena) that is reset after the optimizer step, so the training loop
//    never mallocs; the arena's high-water mark is the step's activation memory.
// Tensor structs themselves come from the same place as their data.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"

#define TL_MAX_RANK 4

typedef enum { TL_F32, TL_BF16, TL_F16, TL_I32, TL_U8 } tl_dtype;
typedef enum { TL_CPU, TL_CUDA } tl_device;

struct tl_node;

typedef struct tl_tensor {
  tl_dtype dtype;
  tl_device device;
  int rank;
  int64_t shape[TL_MAX_RANK];
  int64_t stride[TL_MAX_RANK]; // in elements, not bytes
  void *data;                  // first element (views point inside another's memory)
  struct tl_tensor *grad;      // same shape, contiguous; NULL until backward needs it
  bool requires_grad;          // leaf parameters set it; op outputs inherit it
  bool is_param;               // grad lives in the parameter block, never freed
  struct tl_node *node;        // op that produced it while grad mode was on
  const char *name;            // parameters: the Hugging Face tensor name
} tl_tensor;

size_t tl_dtype_size(tl_dtype dtype);
const char *tl_dtype_name(tl_dtype dtype);
int64_t tl_numel(const tl_tensor *t);
bool tl_is_contiguous(const tl_tensor *t);
bool tl_same_shape(const tl_tensor *a, const tl_tensor *b);
// Writes "[2, 3, 4]" into a per-thread buffer, for messages.
const char *tl_shape_str(const tl_tensor *t);

// f32 <-> bf16 scalar conversion (round to nearest even).
uint16_t tl_f32_to_bf16(float x);
float tl_bf16_to_f32(uint16_t x);

// ---------------------------------------------------------------------------
// Arena: bump allocator for one step's activations. 64-byte aligned blocks.

typedef struct tl_arena {
  uint8_t *base;
  size_t capacity;
  size_t used;
  size_t high_water;
  tl_device device;
} tl_arena;

// Reserves capacity bytes up front; aborts with a message if it cannot.
void tl_arena_init(tl_arena *a, size_t capacity);
void tl_arena_free(tl_arena *a);
// Returns n bytes (uninitialised, 64-byte aligned); aborts naming the capacity
// and the request when the arena is full: size the arena from the reported peak.
void *tl_arena_alloc(tl_arena *a, size_t n);
void tl_arena_reset(tl_arena *a);
// Gives back everything allocated since mark (a value of a->used read earlier).
void tl_arena_rewind(tl_arena *a, size_t mark);

// The arena that ops allocate outputs from. Set it before running ops.
void tl_set_arena(tl_arena *a);
tl_arena *tl_get_arena(void);

// New tensors in the current arena: contiguous, uninitialised / zeroed.
tl_tensor *tl_empty(tl_dtype dtype, int rank, const int64_t *shape);
tl_tensor *tl_zeros(tl_dtype dtype, int rank, const int64_t *shape);
tl_tensor *tl_empty_like(const tl_tensor *t);
tl_tensor *tl_zeros_like(const tl_tensor *t);
// Shorthands: tl_new_f32(2, (int64_t[]){B, T}).
#define tl_new_f32(rank, ...) tl_zeros(TL_F32, rank, (const int64_t *)__VA_ARGS__)
// Wraps caller memory (not owned) as a contiguous tensor; struct from the arena.
tl_tensor *tl_from_data(tl_dtype dtype, int rank, const int64_t *shape, void *data);

// Element access for tests and references (contiguous or strided, any rank <= 4).
float tl_get_f32(const tl_tensor *t, const int64_t *index);
size_t tl_offset(const tl_tensor *t, const int64_t *index); // in elements

// Copies src into dst (same shape, any strides, same dtype or f32<->bf16).
void tl_copy(tl_tensor *dst, const tl_tensor *src);

// ---------------------------------------------------------------------------
// Parameter block: every parameter, its gradient and the two AdamW moments in
// four equal contiguous regions of one allocation. Declare, then allocate.

typedef struct tl_param_info {
  tl_tensor *tensor;   // view into values; tensor->grad views into grads
  size_t offset;       // in floats, from the start of each region
  bool frozen;         // no gradient, not updated (LoRA base weights)
  bool no_decay;       // biases and norms: AdamW skips weight decay
} tl_param_info;

typedef struct tl_params {
  int count;
  int capacity;
  tl_param_info *info;
  size_t numel;        // floats per region
  float *values;       // [numel]
  float *grads;        // [numel]
  float *m;            // [numel] AdamW first moment
  float *v;            // [numel] AdamW second moment
  bool allocated;
} tl_params;

void tl_params_init(tl_params *p);
// Declares an f32 parameter; the returned tensor's data is valid after
// tl_params_alloc (declare everything first). name is copied.
tl_tensor *tl_params_add(tl_params *p, const char *name, int rank, const int64_t *shape,
                         bool no_decay);
// Allocates the block (zeroed) and points every parameter and gradient into it.
void tl_params_alloc(tl_params *p);
tl_tensor *tl_params_find(const tl_params *p, const char *name); // NULL if absent
void tl_params_freeze(tl_params *p, const char *name, bool frozen);
void tl_params_zero_grad(tl_params *p);
void tl_params_free(tl_params *p); // accepts half-built blocks
