// ops_loss.c: fused softmax cross entropy (tape glue; loops in kernels/cpu/loss.c).
#include "core/ops.h"
#include "core/ops_cuda.h"
#include "kernels/cpu/loss.h"

typedef struct ce_ctx {
  tl_tensor *targets;  // i32 [N], kept for backward
  float *lse;          // [N] per-row logsumexp, so backward can rebuild softmax
  int64_t count;       // rows that count (target != ignore_index)
  int ignore_index;
} ce_ctx;

// Programmer errors: shapes, dtypes, and every target in range or ignored.
static void check_inputs(const tl_tensor *logits, const tl_tensor *targets, int ignore) {
  TL_ASSERTF(logits->dtype == TL_F32 && logits->rank == 2 && tl_is_contiguous(logits),
             "cross_entropy: logits must be contiguous f32 [N, V], got %s",
             tl_shape_str(logits));
  TL_ASSERTF(targets->dtype == TL_I32 && targets->rank == 1 && tl_is_contiguous(targets),
             "cross_entropy: targets must be contiguous i32 [N], got %s",
             tl_shape_str(targets));
  TL_ASSERTF(targets->device == TL_CPU || targets->device == logits->device,
             "cross_entropy: targets on another GPU than the logits");
  int64_t N = logits->shape[0], V = logits->shape[1];
  TL_ASSERTF(targets->shape[0] == N, "cross_entropy: %lld targets for %lld rows",
             (long long)targets->shape[0], (long long)N);
  // Host targets are checked here; device ones by the kernel (ops_cuda.c).
  const int32_t *tg = targets->data;
  for (int64_t n = 0; targets->device == TL_CPU && n < N; n++)
    TL_ASSERTF(tg[n] == ignore || (tg[n] >= 0 && tg[n] < V),
               "cross_entropy: target %d at row %lld is outside [0, %lld)", tg[n],
               (long long)n, (long long)V);
}

static void cross_entropy_backward(tl_node *node) {
  tl_tensor *logits = node->in[0], *loss = node->out;
  ce_ctx *c = node->ctx;
  if (!logits->requires_grad || !loss->grad || c->count == 0) return;

  // d loss / d logits = (softmax - onehot) / count, times the upstream scalar.
  float scale = *(float *)loss->grad->data / (float)c->count;
  tl_cpu_cross_entropy_bwd(logits->data, c->targets->data, c->lse, logits->shape[0],
                           logits->shape[1], c->ignore_index, scale, tl_grad(logits)->data);
}

tl_tensor *tl_cross_entropy(tl_tensor *logits, tl_tensor *targets, int ignore_index) {
  check_inputs(logits, targets, ignore_index);
#ifdef TL_HAVE_CUDA
  if (logits->device == TL_CUDA) return tl_cross_entropy_cuda(logits, targets, ignore_index);
#endif
  int64_t N = logits->shape[0], V = logits->shape[1];

  // Forward: per-row logsumexp (saved) and the mean over the rows that count.
  ce_ctx *c = tl_arena_alloc(tl_get_arena(), sizeof *c);
  c->lse = tl_arena_alloc(tl_get_arena(), (size_t)(N ? N : 1) * sizeof(float));
  c->targets = targets;
  c->ignore_index = ignore_index;
  double total = tl_cpu_cross_entropy_fwd(logits->data, targets->data, c->lse, N, V,
                                          ignore_index, &c->count);
  tl_tensor *loss = tl_empty(TL_F32, 0, NULL);
  *(float *)loss->data = c->count ? (float)(total / (double)c->count) : 0.0f;

  if (tl_needs_grad(&logits, 1)) tl_record("cross_entropy", cross_entropy_backward, loss,
                                           &logits, 1)->ctx = c;
  return loss;
}
