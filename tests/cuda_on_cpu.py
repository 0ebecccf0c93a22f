"""Run the platform's CUDA kernels on the CPU: the CUDA C source compiled as C++ by g++, one call per thread.

Slow, and only for small inputs, but it executes the very kernel code a GPU would, so CI (which has no GPU)
checks the kernels' logic against the NumPy twins, not only their syntax."""
import ctypes, hashlib, shutil, subprocess, tempfile
from pathlib import Path
import numpy as np

PRELUDE = r"""
#include <cmath>
#include <cstring>
#include <algorithm>
struct Dim { long long x; };
static Dim blockIdx, threadIdx, blockDim;
#define __global__
#define __device__
#define __forceinline__ inline
static inline double __longlong_as_double(long long v) { double d; std::memcpy(&d, &v, 8); return d; }
using std::min; using std::max; using std::isnan; using std::isinf; using std::fmax; using std::fmin;
using std::fabs; using std::sqrt; using std::pow;
extern "C" void set_thread(long long b, long long t, long long d) { blockIdx.x = b; threadIdx.x = t; blockDim.x = d; }
"""

def have_compiler() -> bool: return shutil.which("g++") is not None

_libs = {}

def library(source):
    "The CUDA `source` compiled for the CPU, as a ctypes library."
    key = hashlib.sha256(source.encode()).hexdigest()[:16]
    if key not in _libs:
        folder = Path(tempfile.mkdtemp())
        (folder / "k.cpp").write_text(PRELUDE + source)
        subprocess.run(["g++", "-O2", "-shared", "-fPIC", "-o", str(folder / "k.so"), str(folder / "k.cpp")], check=True)
        _libs[key] = ctypes.CDLL(str(folder / "k.so"))
    return _libs[key]

def _arg(a):
    if isinstance(a, np.ndarray):
        assert a.flags.c_contiguous, "kernel arrays must be C-contiguous"
        return ctypes.c_void_p(a.ctypes.data)
    if isinstance(a, np.int32): return ctypes.c_int(int(a))
    if isinstance(a, np.int64): return ctypes.c_longlong(int(a))
    if isinstance(a, np.float64): return ctypes.c_double(float(a))
    raise TypeError(f"kernel argument of type {type(a).__name__}: pass NumPy arrays or NumPy scalars, as CuPy needs")

class CpuKernel:
    "Called like a `cupy.RawKernel`: `kernel(grid, block, args)`, each thread in turn."
    def __init__(self, source, name):
        self.lib = library(source)
        self.fn = getattr(self.lib, name)
    def __call__(self, grid, block, args):
        cargs = [_arg(a) for a in args]
        for b in range(grid[0]):
            for t in range(block[0]):
                self.lib.set_thread(ctypes.c_longlong(b), ctypes.c_longlong(t), ctypes.c_longlong(block[0]))
                self.fn(*cargs)
