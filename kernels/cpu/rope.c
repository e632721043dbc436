// rope.c: rotary embedding. out[i] = x[i] cos - x[i + D/2] sin and
// out[i + D/2] = x[i + D/2] cos + x[i] sin, for i < D/2.
#include "kernels/cpu/rope.h"

#include <math.h>

void tl_cpu_rope_table(float *cos, float *sin, int64_t T, int64_t D, int64_t pos0, float theta) {
  int64_t half = D / 2;
  for (int64_t i = 0; i < half; i++) {
    // f32 throughout, as transformers: inv_freq = 1 / theta^(2i/D), angle = pos * inv_freq.
    float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)D);
    for (int64_t t = 0; t < T; t++) {
      float angle = (float)(pos0 + t) * inv_freq;
      cos[t * half + i] = cosf(angle);
      sin[t * half + i] = sinf(angle);
    }
  }
}

void tl_cpu_rope(const float *x, const int64_t stride[3], float *y, int64_t B, int64_t H,
                 int64_t T, int64_t D, const float *cos, const float *sin, bool inverse,
                 bool accumulate) {
  int64_t half = D / 2;
  float sign = inverse ? -1.0f : 1.0f; // backward rotates by -angle (R^T)
#pragma omp parallel for collapse(2) schedule(static) if (B * H * T * D >= 32768)
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t t = 0; t < T; t++) {
        const float *xr = x + b * stride[0] + h * stride[1] + t * stride[2];
        float *yr = y + ((b * H + h) * T + t) * D;
        const float *c = cos + t * half, *s = sin + t * half;
        for (int64_t i = 0; i < half; i++) {
          float x0 = xr[i], x1 = xr[i + half], si = sign * s[i];
          float y0 = x0 * c[i] - x1 * si, y1 = x1 * c[i] + x0 * si;
          yr[i] = accumulate ? yr[i] + y0 : y0;
          yr[i + half] = accumulate ? yr[i + half] + y1 : y1;
        }
      }
}
