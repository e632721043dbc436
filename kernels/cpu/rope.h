// rope.h: CPU kernels for rotary position embedding, Hugging Face Llama layout
// (rotate_half): element i of a head pairs with element i + D/2.
#pragma once
#include <stdbool.h>
#include <stdint.h>

// cos[t * D/2 + i], sin[...] of the angle (pos0 + t) * theta^(-2i/D), computed
// in f32 exactly as transformers' LlamaRotaryEmbedding does (f32 inverse
// frequencies, f32 product), so positions far from 0 round the same way.
void tl_cpu_rope_table(float *cos, float *sin, int64_t T, int64_t D, int64_t pos0, float theta);

// y [B, H, T, D] contiguous = x rotated by the table's angles (inverse: by minus
// the angles, which is the backward map). x is strided: stride[0..2] for the B,
// H, T dims, D contiguous. accumulate: y += instead of y =.
void tl_cpu_rope(const float *x, const int64_t stride[3], float *y, int64_t B, int64_t H,
                 int64_t T, int64_t D, const float *cos, const float *sin, bool inverse,
                 bool accumulate);
