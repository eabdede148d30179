// Matmul for linear layers, batched, any M, N, K:
//   C[z] = alpha * A[z] B[z] + beta * C[z]          C: (M, N) row-major
//   A(m, k) = TRANS_A ? a[k * M + m] : a[m * K + k]
//   B(k, n) = TRANS_B ? b[n * K + k] : b[k * N + n]
// The three layouts of a linear layer with weight W (N_out, N_in), as Hugging Face stores it:
//   forward   y = x W^T     TRANS_A = false, TRANS_B = true
//   backward  dx = dy W     TRANS_A = false, TRANS_B = false
//   backward  dW += dy^T x  TRANS_A = true,  TRANS_B = false, beta = 1
// (`reg` has a vec4 twin in matmul_vec4.wgsl for sizes that are multiples of 4.)
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
// The 8x8 block lives in 16 named vec4 registers (private arrays indexed in loops compile to
// memory on lavapipe). Rows/cols past the edge are clamped to the last valid one, so loads
// stay in bounds; their results are dropped at the store. For M, N, K multiples of 4 the
// vec4 twin in matmul_vec4.wgsl is used instead.
fn store8(z: u32, m: u32, n0: u32, lo: vec4<f32>, hi: vec4<f32>) {
  for (var j = 0u; j < 4u; j++) {
    store(z, m, n0 + j, lo[j]);
    store(z, m, n0 + 4u + j, hi[j]);
  }
}
@compute @workgroup_size(8, 8, 1)
fn reg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let z = wg.z;
  let row0 = wg.y * 64u + lid.y * 8u;
  let col0 = wg.x * 64u + lid.x * 8u;
  if (row0 >= p.M || col0 >= p.N) { return; }
  let baseA = z * p.strideA;
  let baseB = z * p.strideB;
  let ia0 = baseA + a_index(min(row0 + 0u, p.M - 1u), 0u);
  let ia1 = baseA + a_index(min(row0 + 1u, p.M - 1u), 0u);
  let ia2 = baseA + a_index(min(row0 + 2u, p.M - 1u), 0u);
  let ia3 = baseA + a_index(min(row0 + 3u, p.M - 1u), 0u);
  let ia4 = baseA + a_index(min(row0 + 4u, p.M - 1u), 0u);
  let ia5 = baseA + a_index(min(row0 + 5u, p.M - 1u), 0u);
  let ia6 = baseA + a_index(min(row0 + 6u, p.M - 1u), 0u);
  let ia7 = baseA + a_index(min(row0 + 7u, p.M - 1u), 0u);
  let ib0 = baseB + b_index(0u, min(col0 + 0u, p.N - 1u));
  let ib1 = baseB + b_index(0u, min(col0 + 1u, p.N - 1u));
  let ib2 = baseB + b_index(0u, min(col0 + 2u, p.N - 1u));
  let ib3 = baseB + b_index(0u, min(col0 + 3u, p.N - 1u));
  let ib4 = baseB + b_index(0u, min(col0 + 4u, p.N - 1u));
  let ib5 = baseB + b_index(0u, min(col0 + 5u, p.N - 1u));
  let ib6 = baseB + b_index(0u, min(col0 + 6u, p.N - 1u));
  let ib7 = baseB + b_index(0u, min(col0 + 7u, p.N - 1u));
  let stepA = select(1u, p.M, TRANS_A);
  let stepB = select(p.N, 1u, TRANS_B);
  var c0a = vec4<f32>(0.0); var c0b = vec4<f32>(0.0);
  var c1a = vec4<f32>(0.0); var c1b = vec4<f32>(0.0);
  var c2a = vec4<f32>(0.0); var c2b = vec4<f32>(0.0);
  var c3a = vec4<f32>(0.0); var c3b = vec4<f32>(0.0);
  var c4a = vec4<f32>(0.0); var c4b = vec4<f32>(0.0);
  var c5a = vec4<f32>(0.0); var c5b = vec4<f32>(0.0);
  var c6a = vec4<f32>(0.0); var c6b = vec4<f32>(0.0);
  var c7a = vec4<f32>(0.0); var c7b = vec4<f32>(0.0);
  for (var k = 0u; k < p.K; k++) {
    let oa = k * stepA;
    let ob = k * stepB;
    let a0 = a[ia0 + oa];
    let a1 = a[ia1 + oa];
    let a2 = a[ia2 + oa];
    let a3 = a[ia3 + oa];
    let a4 = a[ia4 + oa];
    let a5 = a[ia5 + oa];
    let a6 = a[ia6 + oa];
    let a7 = a[ia7 + oa];
    let b0 = vec4<f32>(b[ib0 + ob], b[ib1 + ob], b[ib2 + ob], b[ib3 + ob]);
    let b1 = vec4<f32>(b[ib4 + ob], b[ib5 + ob], b[ib6 + ob], b[ib7 + ob]);
    c0a = fma(vec4<f32>(a0), b0, c0a); c0b = fma(vec4<f32>(a0), b1, c0b);
    c1a = fma(vec4<f32>(a1), b0, c1a); c1b = fma(vec4<f32>(a1), b1, c1b);
    c2a = fma(vec4<f32>(a2), b0, c2a); c2b = fma(vec4<f32>(a2), b1, c2b);
    c3a = fma(vec4<f32>(a3), b0, c3a); c3b = fma(vec4<f32>(a3), b1, c3b);
    c4a = fma(vec4<f32>(a4), b0, c4a); c4b = fma(vec4<f32>(a4), b1, c4b);
    c5a = fma(vec4<f32>(a5), b0, c5a); c5b = fma(vec4<f32>(a5), b1, c5b);
    c6a = fma(vec4<f32>(a6), b0, c6a); c6b = fma(vec4<f32>(a6), b1, c6b);
    c7a = fma(vec4<f32>(a7), b0, c7a); c7b = fma(vec4<f32>(a7), b1, c7b);
  }
  store8(z, row0 + 0u, col0, c0a, c0b);
  store8(z, row0 + 1u, col0, c1a, c1b);
  store8(z, row0 + 2u, col0, c2a, c2b);
  store8(z, row0 + 3u, col0, c3a, c3b);
  store8(z, row0 + 4u, col0, c4a, c4b);
  store8(z, row0 + 5u, col0, c5a, c5b);
  store8(z, row0 + 6u, col0, c6a, c6b);
  store8(z, row0 + 7u, col0, c7a, c7b);
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
