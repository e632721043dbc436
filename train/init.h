// init.h: seeded parameter initialisation shared by the models.
#pragma once
#include "core/tensor.h"

// Fills the contiguous f32 tensor t with N(0, std^2) draws: Box-Muller over two
// Philox uniforms per element, at counters 2 (base + i) and 2 (base + i) + 1
// under seed. A pure function of (seed, base, i): pass a parameter's offset in
// its block as base so every parameter draws distinct numbers.
void tl_fill_normal(tl_tensor *t, float std, uint64_t seed, uint64_t base);

// Fills t with the constant value.
void tl_fill_const(tl_tensor *t, float value);
