#!/usr/bin/env python3
"""Fits the polynomial in kernels/cpu/elementwise.c's vnormal (GELU's normal cdf).

Phi(-u) = exp(-u^2/2) * erfcx(u/sqrt 2) / 2, and with t = 1 / (1 + u/4),
erfcx(u/sqrt 2) = t * P(t) where P(t) = erfcx(u/sqrt 2) * (1 + u/4) is smooth
on t in (0, 1]. We fit P by relative (1/P-weighted) least squares in the
Chebyshev basis on nodes covering u in [0, 16], convert to powers of t, and
report the fit's relative error in double and after f32 Horner evaluation.
Needs numpy only: python3 kernels/cpu/fit_normal_cdf.py
"""
import math

import numpy as np
from numpy.polynomial import chebyshev as cheb
from numpy.polynomial import polynomial as poly

A, U_MAX, DEGREE = 0.25, 16.0, 10


def target(u):
    # erfcx(u / sqrt 2) * (1 + A u), in double.
    return math.erfc(u / math.sqrt(2.0)) * math.exp(u * u / 2.0) * (1.0 + A * u)


t_min = 1.0 / (1.0 + A * U_MAX)
# Chebyshev nodes in s in [-1, 1], mapped onto t in [t_min, 1].
s = np.cos(np.linspace(0.0, math.pi, 6000))
t = (s * (1.0 - t_min) + (1.0 + t_min)) / 2.0
p = np.array([target((1.0 - x) / (A * x)) for x in t])
c = cheb.chebfit(s, p, DEGREE, w=1.0 / p)
# s = alpha t + beta, so P(t) = sum c_k T_k(alpha t + beta) -> powers of t.
alpha, beta = 2.0 / (1.0 - t_min), -(1.0 + t_min) / (1.0 - t_min)
coef = poly.Polynomial(cheb.cheb2poly(c))(poly.Polynomial([beta, alpha])).coef

u = np.linspace(0.0, U_MAX, 200001)
ref = np.array([target(x) for x in u])
tt = 1.0 / (1.0 + A * u)
fit = poly.polyval(tt, coef)
t32 = (np.float32(1.0) / (np.float32(1.0) + np.float32(A) * u.astype(np.float32)))
acc = np.float32(coef[-1])
for k in range(len(coef) - 2, -1, -1):
    acc = (acc * t32 + np.float32(coef[k])).astype(np.float32)
print("coefficients, t^0 first:")
for x in coef:
    print("  %.9e" % x)
print("max relative error: double %.2e, f32 Horner %.2e"
      % (np.max(np.abs(fit - ref) / ref), np.max(np.abs(acc - ref) / ref)))
