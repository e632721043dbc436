#include "core/autograd.h"

#include <string.h>

#include "core/dev_kernels.h"

// The tape is an array of node pointers; nodes live in the arena. The array
// itself only grows, so after the first step recording allocates nothing.
static _Thread_local tl_node **g_tape;
static _Thread_local int g_tape_len, g_tape_cap;
static _Thread_local bool g_grad_disabled;

bool tl_grad_enabled(void) { return !g_grad_disabled; }
void tl_set_grad_enabled(bool on) { g_grad_disabled = !on; }

bool tl_needs_grad(tl_tensor *const *inputs, int n) {
  if (g_grad_disabled) return false;
  for (int k = 0; k < n; k++)
    if (inputs[k] && inputs[k]->requires_grad) return true;
  return false;
}

tl_node *tl_record(const char *op, tl_backward_fn backward, tl_tensor *out,
                   tl_tensor *const *inputs, int n) {
  TL_ASSERTF(n <= TL_NODE_MAX_INPUTS, "%s: %d inputs", op, n);
  tl_node *node = tl_arena_alloc(tl_get_arena(), sizeof *node);
  memset(node, 0, sizeof *node);
  node->op = op;
  node->backward = backward;
  node->out = out;
  node->n_in = n;
  for (int k = 0; k < n; k++) node->in[k] = inputs[k];
  out->requires_grad = true;
  out->node = node;
  if (g_tape_len == g_tape_cap) {
    g_tape_cap = g_tape_cap ? 2 * g_tape_cap : 1024;
    g_tape = tl_xrealloc(g_tape, (size_t)g_tape_cap * sizeof *g_tape);
  }
  g_tape[g_tape_len++] = node;
  return node;
}

tl_tensor *tl_grad(tl_tensor *t) {
  if (!t->grad) t->grad = tl_zeros_like(t); // on t's device
  return t->grad;
}

static void run_tape_backward(void) {
  // Backward ops record nothing: gradients are not differentiated again.
  bool was_enabled = tl_grad_enabled();
  tl_set_grad_enabled(false);
  for (int k = g_tape_len - 1; k >= 0; k--) {
    tl_node *node = g_tape[k];
    // Outputs nobody differentiated (e.g. unused branches) have no grad.
    if (node->out->grad && node->backward) node->backward(node);
  }
  tl_set_grad_enabled(was_enabled);
}

void tl_backward(tl_tensor *loss) {
  TL_ASSERTF(tl_numel(loss) == 1, "backward from a non-scalar %s", tl_shape_str(loss));
  TL_ASSERTF(loss->requires_grad, "backward from a tensor that does not require grad");
  TL_ASSERT(loss->dtype == TL_F32);
  tl_tensor *seed = tl_grad(loss);
  tl_dev_add_const(seed->device, seed->data, 1.0f, 1);
  run_tape_backward();
}

void tl_backward_with(tl_tensor *out, const tl_tensor *grad_out) {
  TL_ASSERTF(tl_same_shape(out, grad_out), "upstream grad %s for output %s",
             tl_shape_str(grad_out), tl_shape_str(out));
  TL_ASSERTF(out->requires_grad, "backward from a tensor that does not require grad");
  tl_tensor *seed = tl_grad(out);
  if (out->device == TL_CUDA) {
    // The upstream gradient, on the device too, added through its strides.
    TL_ASSERTF(grad_out->device == TL_CUDA, "upstream grad must be on the output's device");
    tl_dev_strided_add(TL_CUDA, seed->data, seed->stride, grad_out->data, grad_out->stride,
                       out->shape, out->rank);
    run_tape_backward();
    return;
  }
  float *g = seed->data;
  int64_t n = tl_numel(out);
  tl_tensor *contiguous_up = tl_empty(TL_F32, grad_out->rank, grad_out->shape);
  tl_copy(contiguous_up, grad_out);
  const float *up = contiguous_up->data;
  for (int64_t i = 0; i < n; i++) g[i] += up[i];
  run_tape_backward();
}

void tl_tape_reset(void) { g_tape_len = 0; }
int tl_tape_length(void) { return g_tape_len; }
