// device.h: the GPU side of tl's two memory lifetimes (tensor.h), and moving
// tensors between host and device.
//
// One process drives one GPU through one CUDA stream (kernels/cuda/tl_cuda.h);
// every call below is queued on that stream, so device work runs in program
// order and the host waits only where a function says so (downloads, sync).
//  - parameters: tl_device_params_attach copies a host parameter block (values,
//    AdamW moments) into one device allocation of the same four regions and
//    points every parameter tensor (and its grad) at it; the host block stays as
//    the staging area for checkpoints (tl_device_params_download fills it).
//  - activations: a device arena is a tl_arena whose base is device memory.
//    Tensor headers cannot live there, so device tensors take their header from
//    the current (host) arena and their data from the device arena; reset both
//    together after the optimizer step.
// Built without CUDA (TL_HAVE_CUDA undefined) every function that needs a GPU
// fails with "built without CUDA" (status functions) or aborts with it (the
// copy functions, which a caller cannot reach without a device tensor).
#pragma once
#include "core/tensor.h"

// True when tl was built with CUDA and at least one GPU is visible. Cheap after
// the first call; never aborts.
bool tl_device_available(void);
// Selects GPU `ordinal` (0 for the first), creates the stream and cuBLAS handle.
// Returns TL_OK, or TL_ERR with the reason in tl_last_error().
tl_status tl_device_init(int ordinal);
// Writes the current GPU's name (e.g. "NVIDIA H200") into buf; "none" without one.
void tl_device_name(char *buf, size_t len);
// Waits for every queued device operation.
void tl_device_sync(void);

// Raw device memory. tl_device_malloc returns NULL and sets the error (naming
// the size) when the GPU is out of memory; free accepts NULL.
void *tl_device_malloc(size_t bytes);
void tl_device_free(void *p);
// Copies: upload returns once src may be reused; download waits for the data.
void tl_device_upload(void *dst_device, const void *src_host, size_t bytes);
void tl_device_download(void *dst_host, const void *src_device, size_t bytes);

// ---------------------------------------------------------------------------
// Activation arena on the device.

// Reserves capacity bytes of device memory as an arena (device = TL_CUDA). The
// usual tl_arena_alloc / tl_arena_reset work on it; free it with
// tl_device_arena_free, never tl_arena_free. Returns TL_ERR if the GPU lacks it.
tl_status tl_device_arena_init(tl_arena *a, size_t capacity);
void tl_device_arena_free(tl_arena *a); // accepts a zeroed or half-built arena
// The device arena that ops allocate CUDA outputs from (per thread, like tl_set_arena).
void tl_set_device_arena(tl_arena *a);
tl_arena *tl_get_device_arena(void);

// A new contiguous device tensor: header from the current host arena, data
// (uninitialised / zeroed) from the device arena `dev`.
tl_tensor *tl_device_empty(tl_arena *dev, tl_dtype dtype, int rank, const int64_t *shape);
tl_tensor *tl_device_zeros(tl_arena *dev, tl_dtype dtype, int rank, const int64_t *shape);
// Copies a contiguous CPU tensor to a new device tensor in `dev`.
tl_tensor *tl_to_device(tl_arena *dev, const tl_tensor *host);
// Copies a contiguous device tensor to a new CPU tensor in the current arena
// (waits for the device).
tl_tensor *tl_to_host(const tl_tensor *dev);

// For the ops: a new tensor, or raw arena memory, on device dev: the current
// arena for TL_CPU, the current device arena (tl_set_device_arena) for TL_CUDA.
tl_tensor *tl_empty_on(tl_device dev, tl_dtype dtype, int rank, const int64_t *shape);
tl_tensor *tl_zeros_on(tl_device dev, tl_dtype dtype, int rank, const int64_t *shape);
void *tl_alloc_on(tl_device dev, size_t bytes);
// The value of a one-element f32 tensor on either device (waits for the device).
float tl_scalar_value(const tl_tensor *t);

// ---------------------------------------------------------------------------
// Parameter block on the device.

typedef struct tl_device_params {
  size_t numel;         // floats per region, as tl_params
  float *block;         // one device allocation: values, grads, m, v
  float *values, *grads, *m, *v;
  uint16_t *values_bf16; // bf16 copy of the values for bf16 matmuls, or NULL
  int64_t *seg_start;   // device: start of each parameter's region (AdamW)
  uint8_t *seg_flags;   // device: TL_CUDA_SEG_FROZEN | TL_CUDA_SEG_NO_DECAY
  int nseg;
} tl_device_params;

// Allocates the device block, uploads values and moments, zeroes the grads, and
// repoints every parameter tensor of p (data, grad data, device) to the device.
// bf16_copy also keeps a bf16 copy of the values, refreshed by each AdamW step.
// Returns TL_ERR (p untouched) when the GPU lacks memory.
tl_status tl_device_params_attach(tl_device_params *d, tl_params *p, bool bf16_copy);
// Copies values and moments from the device into p's host regions (p->values,
// p->m, p->v): what a checkpoint writer reads. Waits for the device.
void tl_device_params_download(const tl_device_params *d, tl_params *p);
// Copies p's host values and moments to the device (after loading a checkpoint).
void tl_device_params_upload(tl_device_params *d, const tl_params *p);
// Downloads, points the tensors back at the host block and frees the device
// block. Accepts a zeroed or half-built d.
void tl_device_params_detach(tl_device_params *d, tl_params *p);
void tl_device_params_zero_grad(tl_device_params *d);
// One AdamW step over the whole block (kernels/cuda tl_cuda_adamw), skipping
// frozen parameters and decaying only those without no_decay. step counts from 1;
// grad_scale multiplies the gradients first (clipping, loss scaling);
// bias_correction as train/optim.h's tl_adamw.
void tl_device_adamw_step(tl_device_params *d, float lr, float beta1, float beta2, float eps,
                          float weight_decay, float grad_scale, int64_t step,
                          bool bias_correction);
// Global L2 norm of the gradients (waits for the device).
float tl_device_grad_norm(const tl_device_params *d);
