// Matmul for linear layers, batched, any M, N, K:
//   C[z] = alpha * A[z] B[z] + beta * C[z]          C: (M, N) row-major
//   A(m, k) = TRANS_A ? a[k * M + m] : a[m * K + k]
//   B(k, n) = TRANS_B ? b[n * K + k] : b[k * N + n]
// The three layouts of a linear layer with weight W (N_out, N_in), as Hugging Face stores it:
//   forward   y = x W^T     TRANS_A = false, TRANS_B = true
//   backward  dx = dy W     TRANS_A = false, TRANS_B = false
//   backward  dW += dy^T x  TRANS_A = true,  TRANS_B = false, beta = 1
// Two tunings: `reg` (register blocking, 8x8 outputs per thread straight from storage: what a
// CPU rasteriser such as lavapipe runs fastest) and `tiled` (64x64 workgroup-memory tiles,
// 4x4 per thread: what real GPUs want).

struct Params {
  M: u32,
  N: u32,
  K: u32,
  strideA: u32, // elements between batch items
  strideB: u32,
  strideC: u32,
  alpha: f32,
  beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

override TRANS_A: bool = false;
override TRANS_B: bool = true;

fn a_index(m: u32, k: u32) -> u32 {
  if (TRANS_A) { return k * p.M + m; }
  return m * p.K + k;
}

fn b_index(k: u32, n: u32) -> u32 {
  if (TRANS_B) { return n * p.K + k; }
  return k * p.N + n;
}

fn store(z: u32, m: u32, n: u32, acc: f32) {
  if (m < p.M && n < p.N) {
    let i = z * p.strideC + m * p.N + n;
    if (p.beta == 0.0) {
      c[i] = p.alpha * acc;
    } else {
      c[i] = p.alpha * acc + p.beta * c[i];
    }
  }
}

// ---- register blocking: workgroup 8x8 threads, each 8x8 outputs (a 64x64 tile) ----
const R = 8u;

@compute @workgroup_size(8, 8, 1)
fn reg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let z = wg.z;
  let row0 = wg.y * 64u + lid.y * R;
  let col0 = wg.x * 64u + lid.x * R;
  if (row0 >= p.M || col0 >= p.N) { return; }
  let baseA = z * p.strideA;
  let baseB = z * p.strideB;
  // Rows/cols past the edge are clamped to the last valid one: loads stay in bounds and the
  // results for them are dropped at the store.
  var ia: array<u32, 8>;
  var ib: array<u32, 8>;
  for (var i = 0u; i < R; i++) {
    ia[i] = baseA + a_index(min(row0 + i, p.M - 1u), 0u);
    ib[i] = baseB + b_index(0u, min(col0 + i, p.N - 1u));
  }
  let stepA = select(1u, p.M, TRANS_A);
  let stepB = select(p.N, 1u, TRANS_B);
  var acc: array<f32, 64>;
  for (var i = 0u; i < 64u; i++) { acc[i] = 0.0; }
  var av: array<f32, 8>;
  var bv: array<f32, 8>;
  for (var k = 0u; k < p.K; k++) {
    let oa = k * stepA;
    let ob = k * stepB;
    for (var i = 0u; i < R; i++) {
      av[i] = a[ia[i] + oa];
      bv[i] = b[ib[i] + ob];
    }
    for (var i = 0u; i < R; i++) {
      for (var j = 0u; j < R; j++) {
        acc[i * R + j] = fma(av[i], bv[j], acc[i * R + j]);
      }
    }
  }
  for (var i = 0u; i < R; i++) {
    for (var j = 0u; j < R; j++) {
      store(z, row0 + i, col0 + j, acc[i * R + j]);
    }
  }
}

// ---- workgroup-memory tiles: 16x16 threads, 64x64 tile, K step 16, 4x4 per thread ----
const TILE = 64u;
const BK = 16u;
var<workgroup> tileA: array<f32, 1024>; // [BK][TILE]: tileA[k * TILE + m]
var<workgroup> tileB: array<f32, 1024>; // [BK][TILE]: tileB[k * TILE + n]

@compute @workgroup_size(16, 16, 1)
fn tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let z = wg.z;
  let tid = lid.y * 16u + lid.x;
  let rowT = wg.y * TILE;
  let colT = wg.x * TILE;
  let baseA = z * p.strideA;
  let baseB = z * p.strideB;
  var acc: array<f32, 16>;
  for (var i = 0u; i < 16u; i++) { acc[i] = 0.0; }
  let nk = (p.K + BK - 1u) / BK;
  for (var t = 0u; t < nk; t++) {
    let k0 = t * BK;
    // 1024 elements of each tile, 4 per thread.
    for (var r = 0u; r < 4u; r++) {
      let e = tid + r * 256u;
      var kk: u32;
      var mm: u32;
      if (TRANS_A) { kk = e / TILE; mm = e % TILE; } else { mm = e / BK; kk = e % BK; }
      let gm = rowT + mm;
      let gk = k0 + kk;
      var va = 0.0;
      if (gm < p.M && gk < p.K) { va = a[baseA + a_index(gm, gk)]; }
      tileA[kk * TILE + mm] = va;
      var nn: u32;
      var kb: u32;
      if (TRANS_B) { nn = e / BK; kb = e % BK; } else { kb = e / TILE; nn = e % TILE; }
      let gn = colT + nn;
      let gkb = k0 + kb;
      var vb = 0.0;
      if (gn < p.N && gkb < p.K) { vb = b[baseB + b_index(gkb, gn)]; }
      tileB[kb * TILE + nn] = vb;
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) {
      var av: array<f32, 4>;
      var bv: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        av[i] = tileA[k * TILE + lid.y * 4u + i];
        bv[i] = tileB[k * TILE + lid.x * 4u + i];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
          acc[i * 4u + j] = fma(av[i], bv[j], acc[i * 4u + j]);
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 4u; j++) {
      store(z, rowT + lid.y * 4u + i, colT + lid.x * 4u + j, acc[i * 4u + j]);
    }
  }
}
