// Matmul with both operands read through textureLoad, in the three layouts of matmul.wgsl:
//   nt: C = alpha A (M, K) B (N, K)^T + beta C   textures A [K/4 x M], B [K/4 x N]
//   nn: C = alpha A (M, K) B (K, N) + beta C     textures A [K/4 x M], B [N/4 x K]
//   tn: C = alpha A^T B, A stored (K, M), B (K, N) textures A [M/4 x K], B [N/4 x K]
// A and B are copied into rgba32float textures (one texel = 4 consecutive values of a row)
// before the dispatch. On lavapipe a texture fetch of divergent addresses is vectorised, where a storage
// load is issued lane by lane: the same 8x8-per-thread register blocking runs about 5x faster
// (measured 14.8 vs 2.0 GFLOPS at 2048x1024x256; 3.6-9.5x the vec4 kernel at 4096x64x64). Used on
// the CPU profile; rows of a multiple of 64 floats (WebGPU's 256-byte bytesPerRow rule) keep
// their shape, other multiples of 4 are PACKED.
// Each thread owns 8 rows x 8 columns (16 vec4 accumulators); a workgroup of 16x4 threads
// covers 32 rows x 128 columns. Rows/columns past the edge are clamped on load, dropped on store.
// PACKED (an override): an operand whose rows are not a multiple of 64 floats (any multiple of
// 4) is copied as one run of texels into a texture 2^sh texels wide, and texel (x, y) of the
// logical [cols/4 x rows] layout above is found at linear index y * (cols/4) + x.

struct Params {
  M: u32,
  N: u32,
  K: u32,
  strideA: u32, // unused: one batch item
  strideB: u32,
  strideC: u32,
  alpha: f32,
  beta: f32,
  aw: u32, // PACKED: texels per logical row of A
  bw: u32, // PACKED: texels per logical row of B
  sh: u32, // PACKED: log2 of the textures' width in texels
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var ta: texture_2d<f32>;
@group(0) @binding(2) var tb: texture_2d<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

override PACKED: bool = false;

// Texel (x, y) of A's and B's logical layouts.
fn lda(x: i32, y: i32) -> vec4<f32> {
  if (PACKED) {
    let i = u32(y) * p.aw + u32(x);
    return textureLoad(ta, vec2<i32>(i32(i & ((1u << p.sh) - 1u)), i32(i >> p.sh)), 0);
  }
  return textureLoad(ta, vec2<i32>(x, y), 0);
}

fn ldb(x: i32, y: i32) -> vec4<f32> {
  if (PACKED) {
    let i = u32(y) * p.bw + u32(x);
    return textureLoad(tb, vec2<i32>(i32(i & ((1u << p.sh) - 1u)), i32(i >> p.sh)), 0);
  }
  return textureLoad(tb, vec2<i32>(x, y), 0);
}

fn store1(i: u32, v: f32) {
  if (p.beta == 0.0) {
    c[i] = p.alpha * v;
  } else {
    c[i] = p.alpha * v + p.beta * c[i];
  }
}

// Stores one thread row: 8 columns from two vec4 accumulators, dropping those past the edge.
fn store8(m: u32, n0: u32, lo: vec4<f32>, hi: vec4<f32>) {
  if (m >= p.M) { return; }
  for (var j = 0u; j < 4u; j++) {
    if (n0 + j < p.N) { store1(m * p.N + n0 + j, lo[j]); }
    if (n0 + 4u + j < p.N) { store1(m * p.N + n0 + 4u + j, hi[j]); }
  }
}

@compute @workgroup_size(16, 4, 1)
fn nt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row0 = wg.y * 32u + lid.y * 8u;
  let col0 = wg.x * 128u + lid.x * 8u;
  if (row0 >= p.M || col0 >= p.N) { return; }
  let ra0 = i32(min(row0 + 0u, p.M - 1u));
  let ra1 = i32(min(row0 + 1u, p.M - 1u));
  let ra2 = i32(min(row0 + 2u, p.M - 1u));
  let ra3 = i32(min(row0 + 3u, p.M - 1u));
  let ra4 = i32(min(row0 + 4u, p.M - 1u));
  let ra5 = i32(min(row0 + 5u, p.M - 1u));
  let ra6 = i32(min(row0 + 6u, p.M - 1u));
  let ra7 = i32(min(row0 + 7u, p.M - 1u));
  let rb0 = i32(min(col0 + 0u, p.N - 1u));
  let rb1 = i32(min(col0 + 1u, p.N - 1u));
  let rb2 = i32(min(col0 + 2u, p.N - 1u));
  let rb3 = i32(min(col0 + 3u, p.N - 1u));
  let rb4 = i32(min(col0 + 4u, p.N - 1u));
  let rb5 = i32(min(col0 + 5u, p.N - 1u));
  let rb6 = i32(min(col0 + 6u, p.N - 1u));
  let rb7 = i32(min(col0 + 7u, p.N - 1u));
  var c0_0 = vec4<f32>(0.0);
  var c0_1 = vec4<f32>(0.0);
  var c1_0 = vec4<f32>(0.0);
  var c1_1 = vec4<f32>(0.0);
  var c2_0 = vec4<f32>(0.0);
  var c2_1 = vec4<f32>(0.0);
  var c3_0 = vec4<f32>(0.0);
  var c3_1 = vec4<f32>(0.0);
  var c4_0 = vec4<f32>(0.0);
  var c4_1 = vec4<f32>(0.0);
  var c5_0 = vec4<f32>(0.0);
  var c5_1 = vec4<f32>(0.0);
  var c6_0 = vec4<f32>(0.0);
  var c6_1 = vec4<f32>(0.0);
  var c7_0 = vec4<f32>(0.0);
  var c7_1 = vec4<f32>(0.0);
  for (var kq = 0; kq < i32(p.K / 4u); kq++) {
    let a0 = lda(kq, ra0);
    let a1 = lda(kq, ra1);
    let a2 = lda(kq, ra2);
    let a3 = lda(kq, ra3);
    let a4 = lda(kq, ra4);
    let a5 = lda(kq, ra5);
    let a6 = lda(kq, ra6);
    let a7 = lda(kq, ra7);
    let bn0 = ldb(kq, rb0);
    let bn1 = ldb(kq, rb1);
    let bn2 = ldb(kq, rb2);
    let bn3 = ldb(kq, rb3);
    let bn4 = ldb(kq, rb4);
    let bn5 = ldb(kq, rb5);
    let bn6 = ldb(kq, rb6);
    let bn7 = ldb(kq, rb7);
    let b0_0 = vec4<f32>(bn0[0], bn1[0], bn2[0], bn3[0]);
    let b0_1 = vec4<f32>(bn4[0], bn5[0], bn6[0], bn7[0]);
    c0_0 = fma(vec4<f32>(a0[0]), b0_0, c0_0);
    c0_1 = fma(vec4<f32>(a0[0]), b0_1, c0_1);
    c1_0 = fma(vec4<f32>(a1[0]), b0_0, c1_0);
    c1_1 = fma(vec4<f32>(a1[0]), b0_1, c1_1);
    c2_0 = fma(vec4<f32>(a2[0]), b0_0, c2_0);
    c2_1 = fma(vec4<f32>(a2[0]), b0_1, c2_1);
    c3_0 = fma(vec4<f32>(a3[0]), b0_0, c3_0);
    c3_1 = fma(vec4<f32>(a3[0]), b0_1, c3_1);
    c4_0 = fma(vec4<f32>(a4[0]), b0_0, c4_0);
    c4_1 = fma(vec4<f32>(a4[0]), b0_1, c4_1);
    c5_0 = fma(vec4<f32>(a5[0]), b0_0, c5_0);
    c5_1 = fma(vec4<f32>(a5[0]), b0_1, c5_1);
    c6_0 = fma(vec4<f32>(a6[0]), b0_0, c6_0);
    c6_1 = fma(vec4<f32>(a6[0]), b0_1, c6_1);
    c7_0 = fma(vec4<f32>(a7[0]), b0_0, c7_0);
    c7_1 = fma(vec4<f32>(a7[0]), b0_1, c7_1);
    let b1_0 = vec4<f32>(bn0[1], bn1[1], bn2[1], bn3[1]);
    let b1_1 = vec4<f32>(bn4[1], bn5[1], bn6[1], bn7[1]);
    c0_0 = fma(vec4<f32>(a0[1]), b1_0, c0_0);
    c0_1 = fma(vec4<f32>(a0[1]), b1_1, c0_1);
    c1_0 = fma(vec4<f32>(a1[1]), b1_0, c1_0);
    c1_1 = fma(vec4<f32>(a1[1]), b1_1, c1_1);
    c2_0 = fma(vec4<f32>(a2[1]), b1_0, c2_0);
    c2_1 = fma(vec4<f32>(a2[1]), b1_1, c2_1);
    c3_0 = fma(vec4<f32>(a3[1]), b1_0, c3_0);
    c3_1 = fma(vec4<f32>(a3[1]), b1_1, c3_1);
    c4_0 = fma(vec4<f32>(a4[1]), b1_0, c4_0);
    c4_1 = fma(vec4<f32>(a4[1]), b1_1, c4_1);
    c5_0 = fma(vec4<f32>(a5[1]), b1_0, c5_0);
    c5_1 = fma(vec4<f32>(a5[1]), b1_1, c5_1);
    c6_0 = fma(vec4<f32>(a6[1]), b1_0, c6_0);
    c6_1 = fma(vec4<f32>(a6[1]), b1_1, c6_1);
    c7_0 = fma(vec4<f32>(a7[1]), b1_0, c7_0);
    c7_1 = fma(vec4<f32>(a7[1]), b1_1, c7_1);
    let b2_0 = vec4<f32>(bn0[2], bn1[2], bn2[2], bn3[2]);
    let b2_1 = vec4<f32>(bn4[2], bn5[2], bn6[2], bn7[2]);
    c0_0 = fma(vec4<f32>(a0[2]), b2_0, c0_0);
    c0_1 = fma(vec4<f32>(a0[2]), b2_1, c0_1);
    c1_0 = fma(vec4<f32>(a1[2]), b2_0, c1_0);
    c1_1 = fma(vec4<f32>(a1[2]), b2_1, c1_1);
    c2_0 = fma(vec4<f32>(a2[2]), b2_0, c2_0);
    c2_1 = fma(vec4<f32>(a2[2]), b2_1, c2_1);
    c3_0 = fma(vec4<f32>(a3[2]), b2_0, c3_0);
    c3_1 = fma(vec4<f32>(a3[2]), b2_1, c3_1);
    c4_0 = fma(vec4<f32>(a4[2]), b2_0, c4_0);
    c4_1 = fma(vec4<f32>(a4[2]), b2_1, c4_1);
    c5_0 = fma(vec4<f32>(a5[2]), b2_0, c5_0);
    c5_1 = fma(vec4<f32>(a5[2]), b2_1, c5_1);
    c6_0 = fma(vec4<f32>(a6[2]), b2_0, c6_0);
    c6_1 = fma(vec4<f32>(a6[2]), b2_1, c6_1);
    c7_0 = fma(vec4<f32>(a7[2]), b2_0, c7_0);
    c7_1 = fma(vec4<f32>(a7[2]), b2_1, c7_1);
    let b3_0 = vec4<f32>(bn0[3], bn1[3], bn2[3], bn3[3]);
    let b3_1 = vec4<f32>(bn4[3], bn5[3], bn6[3], bn7[3]);
    c0_0 = fma(vec4<f32>(a0[3]), b3_0, c0_0);
    c0_1 = fma(vec4<f32>(a0[3]), b3_1, c0_1);
    c1_0 = fma(vec4<f32>(a1[3]), b3_0, c1_0);
    c1_1 = fma(vec4<f32>(a1[3]), b3_1, c1_1);
    c2_0 = fma(vec4<f32>(a2[3]), b3_0, c2_0);
    c2_1 = fma(vec4<f32>(a2[3]), b3_1, c2_1);
    c3_0 = fma(vec4<f32>(a3[3]), b3_0, c3_0);
    c3_1 = fma(vec4<f32>(a3[3]), b3_1, c3_1);
    c4_0 = fma(vec4<f32>(a4[3]), b3_0, c4_0);
    c4_1 = fma(vec4<f32>(a4[3]), b3_1, c4_1);
    c5_0 = fma(vec4<f32>(a5[3]), b3_0, c5_0);
    c5_1 = fma(vec4<f32>(a5[3]), b3_1, c5_1);
    c6_0 = fma(vec4<f32>(a6[3]), b3_0, c6_0);
    c6_1 = fma(vec4<f32>(a6[3]), b3_1, c6_1);
    c7_0 = fma(vec4<f32>(a7[3]), b3_0, c7_0);
    c7_1 = fma(vec4<f32>(a7[3]), b3_1, c7_1);
  }
  store8(row0 + 0u, col0, c0_0, c0_1);
  store8(row0 + 1u, col0, c1_0, c1_1);
  store8(row0 + 2u, col0, c2_0, c2_1);
  store8(row0 + 3u, col0, c3_0, c3_1);
  store8(row0 + 4u, col0, c4_0, c4_1);
  store8(row0 + 5u, col0, c5_0, c5_1);
  store8(row0 + 6u, col0, c6_0, c6_1);
  store8(row0 + 7u, col0, c7_0, c7_1);
}

@compute @workgroup_size(16, 4, 1)
fn nn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row0 = wg.y * 32u + lid.y * 8u;
  let col0 = wg.x * 128u + lid.x * 8u;
  if (row0 >= p.M || col0 >= p.N) { return; }
  let nb0 = i32(min(col0, p.N - 4u) / 4u);
  let nb1 = i32(min(col0 + 4u, p.N - 4u) / 4u);
  var c0_0 = vec4<f32>(0.0);
  var c0_1 = vec4<f32>(0.0);
  var c1_0 = vec4<f32>(0.0);
  var c1_1 = vec4<f32>(0.0);
  var c2_0 = vec4<f32>(0.0);
  var c2_1 = vec4<f32>(0.0);
  var c3_0 = vec4<f32>(0.0);
  var c3_1 = vec4<f32>(0.0);
  var c4_0 = vec4<f32>(0.0);
  var c4_1 = vec4<f32>(0.0);
  var c5_0 = vec4<f32>(0.0);
  var c5_1 = vec4<f32>(0.0);
  var c6_0 = vec4<f32>(0.0);
  var c6_1 = vec4<f32>(0.0);
  var c7_0 = vec4<f32>(0.0);
  var c7_1 = vec4<f32>(0.0);
  let ra0 = i32(min(row0 + 0u, p.M - 1u));
  let ra1 = i32(min(row0 + 1u, p.M - 1u));
  let ra2 = i32(min(row0 + 2u, p.M - 1u));
  let ra3 = i32(min(row0 + 3u, p.M - 1u));
  let ra4 = i32(min(row0 + 4u, p.M - 1u));
  let ra5 = i32(min(row0 + 5u, p.M - 1u));
  let ra6 = i32(min(row0 + 6u, p.M - 1u));
  let ra7 = i32(min(row0 + 7u, p.M - 1u));
  for (var kq = 0; kq < i32(p.K / 4u); kq++) {
    let a0 = lda(kq, ra0);
    let a1 = lda(kq, ra1);
    let a2 = lda(kq, ra2);
    let a3 = lda(kq, ra3);
    let a4 = lda(kq, ra4);
    let a5 = lda(kq, ra5);
    let a6 = lda(kq, ra6);
    let a7 = lda(kq, ra7);
    let b0_0 = ldb(nb0, kq * 4 + 0);
    let b0_1 = ldb(nb1, kq * 4 + 0);
    c0_0 = fma(vec4<f32>(a0[0]), b0_0, c0_0);
    c0_1 = fma(vec4<f32>(a0[0]), b0_1, c0_1);
    c1_0 = fma(vec4<f32>(a1[0]), b0_0, c1_0);
    c1_1 = fma(vec4<f32>(a1[0]), b0_1, c1_1);
    c2_0 = fma(vec4<f32>(a2[0]), b0_0, c2_0);
    c2_1 = fma(vec4<f32>(a2[0]), b0_1, c2_1);
    c3_0 = fma(vec4<f32>(a3[0]), b0_0, c3_0);
    c3_1 = fma(vec4<f32>(a3[0]), b0_1, c3_1);
    c4_0 = fma(vec4<f32>(a4[0]), b0_0, c4_0);
    c4_1 = fma(vec4<f32>(a4[0]), b0_1, c4_1);
    c5_0 = fma(vec4<f32>(a5[0]), b0_0, c5_0);
    c5_1 = fma(vec4<f32>(a5[0]), b0_1, c5_1);
    c6_0 = fma(vec4<f32>(a6[0]), b0_0, c6_0);
    c6_1 = fma(vec4<f32>(a6[0]), b0_1, c6_1);
    c7_0 = fma(vec4<f32>(a7[0]), b0_0, c7_0);
    c7_1 = fma(vec4<f32>(a7[0]), b0_1, c7_1);
    let b1_0 = ldb(nb0, kq * 4 + 1);
    let b1_1 = ldb(nb1, kq * 4 + 1);
    c0_0 = fma(vec4<f32>(a0[1]), b1_0, c0_0);
    c0_1 = fma(vec4<f32>(a0[1]), b1_1, c0_1);
    c1_0 = fma(vec4<f32>(a1[1]), b1_0, c1_0);
    c1_1 = fma(vec4<f32>(a1[1]), b1_1, c1_1);
    c2_0 = fma(vec4<f32>(a2[1]), b1_0, c2_0);
    c2_1 = fma(vec4<f32>(a2[1]), b1_1, c2_1);
    c3_0 = fma(vec4<f32>(a3[1]), b1_0, c3_0);
    c3_1 = fma(vec4<f32>(a3[1]), b1_1, c3_1);
    c4_0 = fma(vec4<f32>(a4[1]), b1_0, c4_0);
    c4_1 = fma(vec4<f32>(a4[1]), b1_1, c4_1);
    c5_0 = fma(vec4<f32>(a5[1]), b1_0, c5_0);
    c5_1 = fma(vec4<f32>(a5[1]), b1_1, c5_1);
    c6_0 = fma(vec4<f32>(a6[1]), b1_0, c6_0);
    c6_1 = fma(vec4<f32>(a6[1]), b1_1, c6_1);
    c7_0 = fma(vec4<f32>(a7[1]), b1_0, c7_0);
    c7_1 = fma(vec4<f32>(a7[1]), b1_1, c7_1);
    let b2_0 = ldb(nb0, kq * 4 + 2);
    let b2_1 = ldb(nb1, kq * 4 + 2);
    c0_0 = fma(vec4<f32>(a0[2]), b2_0, c0_0);
    c0_1 = fma(vec4<f32>(a0[2]), b2_1, c0_1);
    c1_0 = fma(vec4<f32>(a1[2]), b2_0, c1_0);
    c1_1 = fma(vec4<f32>(a1[2]), b2_1, c1_1);
    c2_0 = fma(vec4<f32>(a2[2]), b2_0, c2_0);
    c2_1 = fma(vec4<f32>(a2[2]), b2_1, c2_1);
    c3_0 = fma(vec4<f32>(a3[2]), b2_0, c3_0);
    c3_1 = fma(vec4<f32>(a3[2]), b2_1, c3_1);
    c4_0 = fma(vec4<f32>(a4[2]), b2_0, c4_0);
    c4_1 = fma(vec4<f32>(a4[2]), b2_1, c4_1);
    c5_0 = fma(vec4<f32>(a5[2]), b2_0, c5_0);
    c5_1 = fma(vec4<f32>(a5[2]), b2_1, c5_1);
    c6_0 = fma(vec4<f32>(a6[2]), b2_0, c6_0);
    c6_1 = fma(vec4<f32>(a6[2]), b2_1, c6_1);
    c7_0 = fma(vec4<f32>(a7[2]), b2_0, c7_0);
    c7_1 = fma(vec4<f32>(a7[2]), b2_1, c7_1);
    let b3_0 = ldb(nb0, kq * 4 + 3);
    let b3_1 = ldb(nb1, kq * 4 + 3);
    c0_0 = fma(vec4<f32>(a0[3]), b3_0, c0_0);
    c0_1 = fma(vec4<f32>(a0[3]), b3_1, c0_1);
    c1_0 = fma(vec4<f32>(a1[3]), b3_0, c1_0);
    c1_1 = fma(vec4<f32>(a1[3]), b3_1, c1_1);
    c2_0 = fma(vec4<f32>(a2[3]), b3_0, c2_0);
    c2_1 = fma(vec4<f32>(a2[3]), b3_1, c2_1);
    c3_0 = fma(vec4<f32>(a3[3]), b3_0, c3_0);
    c3_1 = fma(vec4<f32>(a3[3]), b3_1, c3_1);
    c4_0 = fma(vec4<f32>(a4[3]), b3_0, c4_0);
    c4_1 = fma(vec4<f32>(a4[3]), b3_1, c4_1);
    c5_0 = fma(vec4<f32>(a5[3]), b3_0, c5_0);
    c5_1 = fma(vec4<f32>(a5[3]), b3_1, c5_1);
    c6_0 = fma(vec4<f32>(a6[3]), b3_0, c6_0);
    c6_1 = fma(vec4<f32>(a6[3]), b3_1, c6_1);
    c7_0 = fma(vec4<f32>(a7[3]), b3_0, c7_0);
    c7_1 = fma(vec4<f32>(a7[3]), b3_1, c7_1);
  }
  store8(row0 + 0u, col0, c0_0, c0_1);
  store8(row0 + 1u, col0, c1_0, c1_1);
  store8(row0 + 2u, col0, c2_0, c2_1);
  store8(row0 + 3u, col0, c3_0, c3_1);
  store8(row0 + 4u, col0, c4_0, c4_1);
  store8(row0 + 5u, col0, c5_0, c5_1);
  store8(row0 + 6u, col0, c6_0, c6_1);
  store8(row0 + 7u, col0, c7_0, c7_1);
}

@compute @workgroup_size(16, 4, 1)
fn tn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row0 = wg.y * 32u + lid.y * 8u;
  let col0 = wg.x * 128u + lid.x * 8u;
  if (row0 >= p.M || col0 >= p.N) { return; }
  let nb0 = i32(min(col0, p.N - 4u) / 4u);
  let nb1 = i32(min(col0 + 4u, p.N - 4u) / 4u);
  var c0_0 = vec4<f32>(0.0);
  var c0_1 = vec4<f32>(0.0);
  var c1_0 = vec4<f32>(0.0);
  var c1_1 = vec4<f32>(0.0);
  var c2_0 = vec4<f32>(0.0);
  var c2_1 = vec4<f32>(0.0);
  var c3_0 = vec4<f32>(0.0);
  var c3_1 = vec4<f32>(0.0);
  var c4_0 = vec4<f32>(0.0);
  var c4_1 = vec4<f32>(0.0);
  var c5_0 = vec4<f32>(0.0);
  var c5_1 = vec4<f32>(0.0);
  var c6_0 = vec4<f32>(0.0);
  var c6_1 = vec4<f32>(0.0);
  var c7_0 = vec4<f32>(0.0);
  var c7_1 = vec4<f32>(0.0);
  let ma0 = i32(min(row0, p.M - 4u) / 4u);
  let ma1 = i32(min(row0 + 4u, p.M - 4u) / 4u);
  for (var k = 0; k < i32(p.K); k++) {
    let a0 = lda(ma0, k);
    let a1 = lda(ma1, k);
    let b0 = ldb(nb0, k);
    let b1 = ldb(nb1, k);
    c0_0 = fma(vec4<f32>(a0[0]), b0, c0_0);
    c0_1 = fma(vec4<f32>(a0[0]), b1, c0_1);
    c1_0 = fma(vec4<f32>(a0[1]), b0, c1_0);
    c1_1 = fma(vec4<f32>(a0[1]), b1, c1_1);
    c2_0 = fma(vec4<f32>(a0[2]), b0, c2_0);
    c2_1 = fma(vec4<f32>(a0[2]), b1, c2_1);
    c3_0 = fma(vec4<f32>(a0[3]), b0, c3_0);
    c3_1 = fma(vec4<f32>(a0[3]), b1, c3_1);
    c4_0 = fma(vec4<f32>(a1[0]), b0, c4_0);
    c4_1 = fma(vec4<f32>(a1[0]), b1, c4_1);
    c5_0 = fma(vec4<f32>(a1[1]), b0, c5_0);
    c5_1 = fma(vec4<f32>(a1[1]), b1, c5_1);
    c6_0 = fma(vec4<f32>(a1[2]), b0, c6_0);
    c6_1 = fma(vec4<f32>(a1[2]), b1, c6_1);
    c7_0 = fma(vec4<f32>(a1[3]), b0, c7_0);
    c7_1 = fma(vec4<f32>(a1[3]), b1, c7_1);
  }
  store8(row0 + 0u, col0, c0_0, c0_1);
  store8(row0 + 1u, col0, c1_0, c1_1);
  store8(row0 + 2u, col0, c2_0, c2_1);
  store8(row0 + 3u, col0, c3_0, c3_1);
  store8(row0 + 4u, col0, c4_0, c4_1);
  store8(row0 + 5u, col0, c5_0, c5_1);
  store8(row0 + 6u, col0, c6_0, c6_1);
  store8(row0 + 7u, col0, c7_0, c7_1);
}
