// autograd.h: the tape and reverse-mode differentiation.
//
// While grad mode is on, each op whose inputs require grad appends a node to the
// tape: the op's name, its inputs, its output and whatever backward needs (ctx,
// allocated in the arena). tl_backward(loss) seeds d(loss)=1 and walks the tape
// in reverse, each node adding its inputs' gradients. Gradients accumulate:
// parameters' grads live in the parameter block and are zeroed by the caller
// (tl_params_zero_grad); activation grads are allocated zeroed in the arena when
// first needed. tl_tape_reset() forgets the tape (call with tl_arena_reset).
#pragma once
#include "core/tensor.h"

#define TL_NODE_MAX_INPUTS 4

typedef struct tl_node tl_node;
typedef void (*tl_backward_fn)(tl_node *node);

struct tl_node {
  const char *op;                         // "matmul", "layernorm", ...
  tl_backward_fn backward;
  tl_tensor *out;
  tl_tensor *in[TL_NODE_MAX_INPUTS];
  int n_in;
  void *ctx;                              // op-specific saved state (arena memory)
  float f[4];                             // small scalar arguments
  int64_t i[4];                           // small integer arguments
};

// Grad mode (on by default). tl_no_grad_begin/end nest.
bool tl_grad_enabled(void);
void tl_set_grad_enabled(bool on);

// True when out should be recorded: grad mode on and any input requires grad.
bool tl_needs_grad(tl_tensor *const *inputs, int n);
// Records a node producing out from inputs; sets out->requires_grad and out->node.
// Returns the node so the op can fill ctx, f[] and i[].
tl_node *tl_record(const char *op, tl_backward_fn backward, tl_tensor *out,
                   tl_tensor *const *inputs, int n);

// The gradient buffer of t, allocated zeroed in the current arena on first use.
tl_tensor *tl_grad(tl_tensor *t);
// Backward from a scalar loss (seeds gradient 1). Aborts if loss is not a scalar.
void tl_backward(tl_tensor *loss);
// Backward from any tensor with a given upstream gradient (same shape, f32);
// gradient checks use it to weigh every output element.
void tl_backward_with(tl_tensor *out, const tl_tensor *grad_out);
// Forgets every recorded node; activation grads are reclaimed with the arena.
void tl_tape_reset(void);
int tl_tape_length(void);
