// fp32 GEMM throughput of the BLAS candidates pare could use, on this CPU, at a given thread count:
// OpenBLAS (Debian's OpenMP build) under each of its x86_64 kernel sets, BLIS (Debian's OpenMP
// build, which dispatches on CPU features) and oneDNN 2.6's dnnl_sgemm. Each candidate runs in
// a child process (OpenBLAS reads OPENBLAS_CORETYPE once, when it loads). Its product is checked
// against a float64 product of the same inputs (max relative error printed). README "Threads and
// kernels" gives the figures that chose pare's kernels.
//   cc -O2 -fopenmp scripts/gemm_candidates.c -ldl -o /tmp/gemm_candidates
//   /tmp/gemm_candidates 2        # threads
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef void (*sgemm_fn)(const char*, const char*, const int*, const int*, const int*, const float*,
                         const float*, const int*, const float*, const int*, const float*, float*,
                         const int*);
typedef int (*dnnl_sgemm_fn)(char, char, long, long, long, float, const float*, long, const float*,
                             long, float, float*, long);

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}
static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

// Runs one candidate in this process: lib, and for OpenBLAS the core already set in the env.
static int run(const char* label, const char* lib, int dnnl, int n, int reps) {
  void* h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (!h) { printf("| %s | not available (%s) |\n", label, dlerror()); return 1; }
  sgemm_fn sgemm = NULL;
  dnnl_sgemm_fn dsgemm = NULL;
  if (dnnl) dsgemm = (dnnl_sgemm_fn)dlsym(h, "dnnl_sgemm");
  else sgemm = (sgemm_fn)dlsym(h, "sgemm_");
  if (!sgemm && !dsgemm) { printf("| %s | no sgemm in %s |\n", label, lib); return 1; }
  const char* (*corename)(void) = (const char* (*)(void))dlsym(h, "openblas_get_corename");
  float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
        *c = malloc(sizeof(float) * n * n);
  srand(1);
  for (long i = 0; i < (long)n * n; ++i) {
    a[i] = (float)rand() / RAND_MAX - 0.5f;
    b[i] = (float)rand() / RAND_MAX - 0.5f;
  }
  float one = 1, zero = 0;
  double* t = malloc(sizeof(double) * reps);
  for (int r = -3; r < reps; ++r) {
    double s = now();
    if (dnnl) dsgemm('N', 'N', n, n, n, 1.f, a, n, b, n, 0.f, c, n);
    else sgemm("N", "N", &n, &n, &n, &one, a, &n, b, &n, &zero, c, &n);
    if (r >= 0) t[r] = now() - s;
  }
  qsort(t, reps, sizeof(double), cmp);
  // float64 check on 64 entries (row-major for dnnl, column-major for sgemm_: same formula with
  // the roles of a and b swapped, so check both layouts' meaning by the call convention).
  double worst = 0;
  for (int k = 0; k < 64; ++k) {
    int i = (k * 37) % n, j = (k * 91) % n;
    double ref = 0, mag = 0;
    for (int l = 0; l < n; ++l) {
      double p = dnnl ? (double)a[(long)i * n + l] * b[(long)l * n + j]
                      : (double)a[(long)l * n + i] * b[(long)j * n + l];
      ref += p;
      mag += fabs(p);
    }
    double got = dnnl ? c[(long)i * n + j] : c[(long)j * n + i];
    double e = fabs(got - ref) / mag;
    if (e > worst) worst = e;
  }
  double med = t[reps / 2];
  printf("| %s | %s | %.1f | %.2e |\n", label, corename ? corename() : "-",
         2.0 * n * n * (double)n / med / 1e9, worst);
  return 0;
}

int main(int argc, char** argv) {
  const char* threads = argc > 1 ? argv[1] : "2";
  int n = argc > 2 ? atoi(argv[2]) : 1024, reps = argc > 3 ? atoi(argv[3]) : 20;
  if (argc > 5) return run(argv[4], argv[5], argc > 6, n, reps);
  const char* ob = "/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0";
  const char* cores[] = {"Prescott", "Nehalem", "Sandybridge", "Haswell", "Zen", "SkylakeX", "Cooperlake", NULL};
  printf("fp32 GEMM %dx%d, %s threads, median of %d\n\n", n, n, threads, reps);
  printf("| candidate | kernel | GFLOP/s | max rel. error vs float64 |\n|---|---|---:|---:|\n");
  fflush(stdout);
  char nbuf[16], rbuf[16];
  snprintf(nbuf, sizeof nbuf, "%d", n);
  snprintf(rbuf, sizeof rbuf, "%d", reps);
  for (int k = -1; cores[k + 1] || k < 0; ++k) {
    pid_t p = fork();
    if (p == 0) {
      setenv("OMP_NUM_THREADS", threads, 1);
      char label[64];
      if (k < 0) {
        unsetenv("OPENBLAS_CORETYPE");
        snprintf(label, sizeof label, "OpenBLAS, its own choice");
      } else {
        setenv("OPENBLAS_CORETYPE", cores[k], 1);
        snprintf(label, sizeof label, "OpenBLAS, OPENBLAS_CORETYPE=%s", cores[k]);
      }
      execl("/proc/self/exe", argv[0], threads, nbuf, rbuf, label, ob, (char*)NULL);
      _exit(1);
    }
    waitpid(p, NULL, 0);
  }
  const char* others[][3] = {
      {"BLIS 0.9 (OpenMP)", "/usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4", NULL},
      {"oneDNN 2.6 dnnl_sgemm", "libdnnl.so.2", "1"}};
  for (int k = 0; k < 2; ++k) {
    pid_t p = fork();
    if (p == 0) {
      setenv("OMP_NUM_THREADS", threads, 1);
      setenv("BLIS_NUM_THREADS", threads, 1);
      if (others[k][2]) execl("/proc/self/exe", argv[0], threads, nbuf, rbuf, others[k][0], others[k][1], "1", (char*)NULL);
      else execl("/proc/self/exe", argv[0], threads, nbuf, rbuf, others[k][0], others[k][1], (char*)NULL);
      _exit(1);
    }
    waitpid(p, NULL, 0);
  }
  return 0;
}
