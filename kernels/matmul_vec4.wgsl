// Matmul, vec4 variant of `reg` in matmul.wgsl (same formula and Params), for the case where
// M, N, K and the batch strides are multiples of 4: A and B are read as vec4<f32>, four k at a
// time, so each loaded value feeds 4-8 fused multiply-adds. One entry point per layout:
//   nt: y = x W^T    A (M, K), B (N, K)
//   nn: dx = dy W    A (M, K), B (K, N)
//   tn: dW += dy^T x A stored (K, M), B (K, N)
// Each thread owns an 8x8 block of C kept in 16 vec4 registers; a workgroup of 8x8 threads
// covers 64x64. Rows and columns past the edge are clamped on load and dropped on store.

struct Params {
  M: u32,
  N: u32,
  K: u32,
  strideA: u32,
  strideB: u32,
  strideC: u32,
  alpha: f32,
  beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

fn store1(i: u32, v: f32) {
  if (p.beta == 0.0) {
    c[i] = p.alpha * v;
  } else {
    c[i] = p.alpha * v + p.beta * c[i];
  }
}

fn store8(z: u32, m: u32, n0: u32, lo: vec4<f32>, hi: vec4<f32>) {
  if (m >= p.M) { return; }
  let i = z * p.strideC + m * p.N + n0;
  for (var j = 0u; j < 4u; j++) {
    if (n0 + j < p.N) { store1(i + j, lo[j]); }
    if (n0 + 4u + j < p.N) { store1(i + 4u + j, hi[j]); }
  }
}

@compute @workgroup_size(8, 8, 1)
fn nt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let z = wg.z;
  let row0 = wg.y * 64u + lid.y * 8u;
  let col0 = wg.x * 64u + lid.x * 8u;
  if (row0 >= p.M || col0 >= p.N) { return; }
  let baseA = z * p.strideA / 4u;
  let baseB = z * p.strideB / 4u;
  let ia0 = baseA + min(row0 + 0u, p.M - 1u) * (p.K / 4u);
  let ia1 = baseA + min(row0 + 1u, p.M - 1u) * (p.K / 4u);
  let ia2 = baseA + min(row0 + 2u, p.M - 1u) * (p.K / 4u);
  let ia3 = baseA + min(row0 + 3u, p.M - 1u) * (p.K / 4u);
  let ia4 = baseA + min(row0 + 4u, p.M - 1u) * (p.K / 4u);
  let ia5 = baseA + min(row0 + 5u, p.M - 1u) * (p.K / 4u);
  let ia6 = baseA + min(row0 + 6u, p.M - 1u) * (p.K / 4u);
  let ia7 = baseA + min(row0 + 7u, p.M - 1u) * (p.K / 4u);
  let ib0 = baseB + min(col0 + 0u, p.N - 1u) * (p.K / 4u);
  let ib1 = baseB + min(col0 + 1u, p.N - 1u) * (p.K / 4u);
  let ib2 = baseB + min(col0 + 2u, p.N - 1u) * (p.K / 4u);
  let ib3 = baseB + min(col0 + 3u, p.N - 1u) * (p.K / 4u);
  let ib4 = baseB + min(col0 + 4u, p.N - 1u) * (p.K / 4u);
  let ib5 = baseB + min(col0 + 5u, p.N - 1u) * (p.K / 4u);
  let ib6 = baseB + min(col0 + 6u, p.N - 1u) * (p.K / 4u);
  let ib7 = baseB + min(col0 + 7u, p.N - 1u) * (p.K / 4u);
  var c0a = vec4<f32>(0.0);
  var c0b = vec4<f32>(0.0);
  var c1a = vec4<f32>(0.0);
  var c1b = vec4<f32>(0.0);
  var c2a = vec4<f32>(0.0);
  var c2b = vec4<f32>(0.0);
  var c3a = vec4<f32>(0.0);
  var c3b = vec4<f32>(0.0);
  var c4a = vec4<f32>(0.0);
  var c4b = vec4<f32>(0.0);
  var c5a = vec4<f32>(0.0);
  var c5b = vec4<f32>(0.0);
  var c6a = vec4<f32>(0.0);
  var c6b = vec4<f32>(0.0);
  var c7a = vec4<f32>(0.0);
  var c7b = vec4<f32>(0.0);
  for (var k = 0u; k < p.K; k += 4u) {
    let kq = k / 4u;
    let a0 = a[ia0 + kq];
    let a1 = a[ia1 + kq];
    let a2 = a[ia2 + kq];
    let a3 = a[ia3 + kq];
    let a4 = a[ia4 + kq];
    let a5 = a[ia5 + kq];
    let a6 = a[ia6 + kq];
    let a7 = a[ia7 + kq];
    let kq2 = k / 4u;
    let bn0 = b[ib0 + kq2];
    let bn1 = b[ib1 + kq2];
    let bn2 = b[ib2 + kq2];
    let bn3 = b[ib3 + kq2];
    let bn4 = b[ib4 + kq2];
    let bn5 = b[ib5 + kq2];
    let bn6 = b[ib6 + kq2];
    let bn7 = b[ib7 + kq2];
    let b0a = vec4<f32>(bn0[0], bn1[0], bn2[0], bn3[0]);
    let b0b = vec4<f32>(bn4[0], bn5[0], bn6[0], bn7[0]);
    let b1a = vec4<f32>(bn0[1], bn1[1], bn2[1], bn3[1]);
    let b1b = vec4<f32>(bn4[1], bn5[1], bn6[1], bn7[1]);
    let b2a = vec4<f32>(bn0[2], bn1[2], bn2[2], bn3[2]);
    let b2b = vec4<f32>(bn4[2], bn5[2], bn6[2], bn7[2]);
    let b3a = vec4<f32>(bn0[3], bn1[3], bn2[3], bn3[3]);
    let b3b = vec4<f32>(bn4[3], bn5[3], bn6[3], bn7[3]);
    c0a = fma(vec4<f32>(a0[0]), b0a, c0a);
    c0b = fma(vec4<f32>(a0[0]), b0b, c0b);
    c1a = fma(vec4<f32>(a1[0]), b0a, c1a);
    c1b = fma(vec4<f32>(a1[0]), b0b, c1b);
    c2a = fma(vec4<f32>(a2[0]), b0a, c2a);
    c2b = fma(vec4<f32>(a2[0]), b0b, c2b);
    c3a = fma(vec4<f32>(a3[0]), b0a, c3a);
    c3b = fma(vec4<f32>(a3[0]), b0b, c3b);
    c4a = fma(vec4<f32>(a4[0]), b0a, c4a);
    c4b = fma(vec4<f32>(a4[0]), b0b, c4b);
    c5a = fma(vec4<f32>(a5[0]), b0a, c5a);
    c5b = fma(vec4<f32>(a5[0]), b0b, c5b);
    c6a = fma(vec4<f32>(a6[0]), b0a, c6a);
    c6b = fma(vec4<f32>(a6[0]), b0b, c6b);
    c7a = fma(vec4<f32>(a7[0]), b0a, c7a);
    c7b = fma(vec4<f32>(a7[0]), b0b, c7b);
    c0a = fma(vec4<f32>(a0[1]), b1a, c0a);
    c0b = fma(vec4<f32>(a0[1]), b1b, c0b);
    c1a = fma(vec4<f32>(a1[1]), b1a, c1a);
    c1b = fma(vec4<f32>(a1[1]), b1b, c1b);
    c2a = fma(vec4<f32>(a2[1]), b1a, c2a);
    c2b = fma(vec4<f32>(a2[1]), b1b, c2b);
    c3a = fma(vec4<f32>(a3[1]), b1a, c3a);
    c3b = fma(vec4<f32>(a3[1]), b1b, c3b);
    c4a = fma(vec4<f32>(a4[1]), b1a, c4a);
    c4b = fma(vec4<f32>(a4[1]), b1b, c4b);
    c5a = fma(vec4<f32>(a5[1]), b1a, c5a);
    c5b = fma(vec4<f32>(a5[1]), b1b, c5b);
    c6a = fma(vec4<f32>(a6[1]), b1a, c6a);
    c6b = fma(vec4<f32>(a6[1]), b1b, c6b);
    c7a = fma(vec4<f32>(a7[1]), b1a, c7a);
    c7b = fma(vec4<f32>(a7[1]), b1b, c7b);
    c0a = fma(vec4<f32>(a0[2]), b2a, c0a);
    c0b = fma(vec4<f32>(a0[2]), b2b, c0b);
    c1a = fma(vec4<f32>(a1[2]), b2a, c1a);
    c1b = fma(vec4<f32>(a1[2]), b2b, c1b);
    c2a = fma(vec4<f32>(a2[2]), b2a, c2a);
    c2b = fma(vec4<f32>(a2[2]), b2b, c2b);
    c3a = fma(vec4<f32>(a3[2]), b2a, c3a);
    c3b = fma(vec4<f32>(a3[2]), b2b, c3b);
    c4a = fma(vec4<f32>(a4[2]), b2a, c4a);
    c4b = fma(vec4<f32>(a4[2]), b2b, c4b);
    c5a = fma(vec4<f32>(a5[2]), b2a, c5a);
    c5b = fma(vec4<f32>(a5[2]), b2b, c5b);
    c6a = fma(vec4<f32>(a6[2]), b2a, c6a);
    c6b = fma(vec4<f32>(a6[2]), b2b, c6b);
    c7a = fma(vec4<f32>(a7[2]), b2a, c7a);
    c7b = fma(vec4<f32>(a7[2]), b2b, c7b);
    c0a = fma(vec4<f32>(a0[3]), b3a, c0a);
    c0b = fma(vec4<f32>(a0[3]), b3b, c0b);
    c1a = fma(vec4<f32>(a1[3]), b3a, c1a);
    c1b = fma(vec4<f32>(a1[3]), b3b, c1b);
    c2a = fma(vec4<f32>(a2[3]), b3a, c2a);
    c2b = fma(vec4<f32>(a2[3]), b3b, c2b);
    c3a = fma(vec4<f32>(a3[3]), b3a, c3a);
    c3b = fma(vec4<f32>(a3[3]), b3b, c3b);
    c4a = fma(vec4<f32>(a4[3]), b3a, c4a);
    c4b = fma(vec4<f32>(a4[3]), b3b, c4b);
    c5a = fma(vec4<f32>(a5[3]), b3a, c5a);
    c5b = fma(vec4<f32>(a5[3]), b3b, c5b);
    c6a = fma(vec4<f32>(a6[3]), b3a, c6a);
    c6b = fma(vec4<f32>(a6[3]), b3b, c6b);
    c7a = fma(vec4<f32>(a7[3]), b3a, c7a);
    c7b = fma(vec4<f32>(a7[3]), b3b, c7b);
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

@compute @workgroup_size(8, 8, 1)
fn nn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let z = wg.z;
  let row0 = wg.y * 64u + lid.y * 8u;
  let col0 = wg.x * 64u + lid.x * 8u;
  if (row0 >= p.M || col0 >= p.N) { return; }
  let baseA = z * p.strideA / 4u;
  let baseB = z * p.strideB / 4u;
  let ia0 = baseA + min(row0 + 0u, p.M - 1u) * (p.K / 4u);
  let ia1 = baseA + min(row0 + 1u, p.M - 1u) * (p.K / 4u);
  let ia2 = baseA + min(row0 + 2u, p.M - 1u) * (p.K / 4u);
  let ia3 = baseA + min(row0 + 3u, p.M - 1u) * (p.K / 4u);
  let ia4 = baseA + min(row0 + 4u, p.M - 1u) * (p.K / 4u);
  let ia5 = baseA + min(row0 + 5u, p.M - 1u) * (p.K / 4u);
  let ia6 = baseA + min(row0 + 6u, p.M - 1u) * (p.K / 4u);
  let ia7 = baseA + min(row0 + 7u, p.M - 1u) * (p.K / 4u);
  let nb0 = baseB + col0 / 4u;
  let nb1 = baseB + min(col0 + 4u, p.N - 4u) / 4u;
  var c0a = vec4<f32>(0.0);
  var c0b = vec4<f32>(0.0);
  var c1a = vec4<f32>(0.0);
  var c1b = vec4<f32>(0.0);
  var c2a = vec4<f32>(0.0);
  var c2b = vec4<f32>(0.0);
  var c3a = vec4<f32>(0.0);
  var c3b = vec4<f32>(0.0);
  var c4a = vec4<f32>(0.0);
  var c4b = vec4<f32>(0.0);
  var c5a = vec4<f32>(0.0);
  var c5b = vec4<f32>(0.0);
  var c6a = vec4<f32>(0.0);
  var c6b = vec4<f32>(0.0);
  var c7a = vec4<f32>(0.0);
  var c7b = vec4<f32>(0.0);
  for (var k = 0u; k < p.K; k += 4u) {
    let kq = k / 4u;
    let a0 = a[ia0 + kq];
    let a1 = a[ia1 + kq];
    let a2 = a[ia2 + kq];
    let a3 = a[ia3 + kq];
    let a4 = a[ia4 + kq];
    let a5 = a[ia5 + kq];
    let a6 = a[ia6 + kq];
    let a7 = a[ia7 + kq];
    let s0 = (k + 0u) * (p.N / 4u);
    let b0a = b[nb0 + s0];
    let b0b = b[nb1 + s0];
    let s1 = (k + 1u) * (p.N / 4u);
    let b1a = b[nb0 + s1];
    let b1b = b[nb1 + s1];
    let s2 = (k + 2u) * (p.N / 4u);
    let b2a = b[nb0 + s2];
    let b2b = b[nb1 + s2];
    let s3 = (k + 3u) * (p.N / 4u);
    let b3a = b[nb0 + s3];
    let b3b = b[nb1 + s3];
    c0a = fma(vec4<f32>(a0[0]), b0a, c0a);
    c0b = fma(vec4<f32>(a0[0]), b0b, c0b);
    c1a = fma(vec4<f32>(a1[0]), b0a, c1a);
    c1b = fma(vec4<f32>(a1[0]), b0b, c1b);
    c2a = fma(vec4<f32>(a2[0]), b0a, c2a);
    c2b = fma(vec4<f32>(a2[0]), b0b, c2b);
    c3a = fma(vec4<f32>(a3[0]), b0a, c3a);
    c3b = fma(vec4<f32>(a3[0]), b0b, c3b);
    c4a = fma(vec4<f32>(a4[0]), b0a, c4a);
    c4b = fma(vec4<f32>(a4[0]), b0b, c4b);
    c5a = fma(vec4<f32>(a5[0]), b0a, c5a);
    c5b = fma(vec4<f32>(a5[0]), b0b, c5b);
    c6a = fma(vec4<f32>(a6[0]), b0a, c6a);
    c6b = fma(vec4<f32>(a6[0]), b0b, c6b);
    c7a = fma(vec4<f32>(a7[0]), b0a, c7a);
    c7b = fma(vec4<f32>(a7[0]), b0b, c7b);
    c0a = fma(vec4<f32>(a0[1]), b1a, c0a);
    c0b = fma(vec4<f32>(a0[1]), b1b, c0b);
    c1a = fma(vec4<f32>(a1[1]), b1a, c1a);
    c1b = fma(vec4<f32>(a1[1]), b1b, c1b);
    c2a = fma(vec4<f32>(a2[1]), b1a, c2a);
    c2b = fma(vec4<f32>(a2[1]), b1b, c2b);
    c3a = fma(vec4<f32>(a3[1]), b1a, c3a);
    c3b = fma(vec4<f32>(a3[1]), b1b, c3b);
    c4a = fma(vec4<f32>(a4[1]), b1a, c4a);
    c4b = fma(vec4<f32>(a4[1]), b1b, c4b);
    c5a = fma(vec4<f32>(a5[1]), b1a, c5a);
    c5b = fma(vec4<f32>(a5[1]), b1b, c5b);
    c6a = fma(vec4<f32>(a6[1]), b1a, c6a);
    c6b = fma(vec4<f32>(a6[1]), b1b, c6b);
    c7a = fma(vec4<f32>(a7[1]), b1a, c7a);
    c7b = fma(vec4<f32>(a7[1]), b1b, c7b);
    c0a = fma(vec4<f32>(a0[2]), b2a, c0a);
    c0b = fma(vec4<f32>(a0[2]), b2b, c0b);
    c1a = fma(vec4<f32>(a1[2]), b2a, c1a);
    c1b = fma(vec4<f32>(a1[2]), b2b, c1b);
    c2a = fma(vec4<f32>(a2[2]), b2a, c2a);
    c2b = fma(vec4<f32>(a2[2]), b2b, c2b);
    c3a = fma(vec4<f32>(a3[2]), b2a, c3a);
    c3b = fma(vec4<f32>(a3[2]), b2b, c3b);
    c4a = fma(vec4<f32>(a4[2]), b2a, c4a);
    c4b = fma(vec4<f32>(a4[2]), b2b, c4b);
    c5a = fma(vec4<f32>(a5[2]), b2a, c5a);
    c5b = fma(vec4<f32>(a5[2]), b2b, c5b);
    c6a = fma(vec4<f32>(a6[2]), b2a, c6a);
    c6b = fma(vec4<f32>(a6[2]), b2b, c6b);
    c7a = fma(vec4<f32>(a7[2]), b2a, c7a);
    c7b = fma(vec4<f32>(a7[2]), b2b, c7b);
    c0a = fma(vec4<f32>(a0[3]), b3a, c0a);
    c0b = fma(vec4<f32>(a0[3]), b3b, c0b);
    c1a = fma(vec4<f32>(a1[3]), b3a, c1a);
    c1b = fma(vec4<f32>(a1[3]), b3b, c1b);
    c2a = fma(vec4<f32>(a2[3]), b3a, c2a);
    c2b = fma(vec4<f32>(a2[3]), b3b, c2b);
    c3a = fma(vec4<f32>(a3[3]), b3a, c3a);
    c3b = fma(vec4<f32>(a3[3]), b3b, c3b);
    c4a = fma(vec4<f32>(a4[3]), b3a, c4a);
    c4b = fma(vec4<f32>(a4[3]), b3b, c4b);
    c5a = fma(vec4<f32>(a5[3]), b3a, c5a);
    c5b = fma(vec4<f32>(a5[3]), b3b, c5b);
    c6a = fma(vec4<f32>(a6[3]), b3a, c6a);
    c6b = fma(vec4<f32>(a6[3]), b3b, c6b);
    c7a = fma(vec4<f32>(a7[3]), b3a, c7a);
    c7b = fma(vec4<f32>(a7[3]), b3b, c7b);
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

@compute @workgroup_size(8, 8, 1)
fn tn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let z = wg.z;
  let row0 = wg.y * 64u + lid.y * 8u;
  let col0 = wg.x * 64u + lid.x * 8u;
  if (row0 >= p.M || col0 >= p.N) { return; }
  let baseA = z * p.strideA / 4u;
  let baseB = z * p.strideB / 4u;
  let ma0 = baseA + row0 / 4u;
  let ma1 = baseA + min(row0 + 4u, p.M - 4u) / 4u;
  let nb0 = baseB + col0 / 4u;
  let nb1 = baseB + min(col0 + 4u, p.N - 4u) / 4u;
  var c0a = vec4<f32>(0.0);
  var c0b = vec4<f32>(0.0);
  var c1a = vec4<f32>(0.0);
  var c1b = vec4<f32>(0.0);
  var c2a = vec4<f32>(0.0);
  var c2b = vec4<f32>(0.0);
  var c3a = vec4<f32>(0.0);
  var c3b = vec4<f32>(0.0);
  var c4a = vec4<f32>(0.0);
  var c4b = vec4<f32>(0.0);
  var c5a = vec4<f32>(0.0);
  var c5b = vec4<f32>(0.0);
  var c6a = vec4<f32>(0.0);
  var c6b = vec4<f32>(0.0);
  var c7a = vec4<f32>(0.0);
  var c7b = vec4<f32>(0.0);
  for (var k = 0u; k < p.K; k += 4u) {
    let r0 = (k + 0u) * (p.M / 4u);
    let am0a = a[ma0 + r0];
    let am0b = a[ma1 + r0];
    let r1 = (k + 1u) * (p.M / 4u);
    let am1a = a[ma0 + r1];
    let am1b = a[ma1 + r1];
    let r2 = (k + 2u) * (p.M / 4u);
    let am2a = a[ma0 + r2];
    let am2b = a[ma1 + r2];
    let r3 = (k + 3u) * (p.M / 4u);
    let am3a = a[ma0 + r3];
    let am3b = a[ma1 + r3];
    let s0 = (k + 0u) * (p.N / 4u);
    let b0a = b[nb0 + s0];
    let b0b = b[nb1 + s0];
    let s1 = (k + 1u) * (p.N / 4u);
    let b1a = b[nb0 + s1];
    let b1b = b[nb1 + s1];
    let s2 = (k + 2u) * (p.N / 4u);
    let b2a = b[nb0 + s2];
    let b2b = b[nb1 + s2];
    let s3 = (k + 3u) * (p.N / 4u);
    let b3a = b[nb0 + s3];
    let b3b = b[nb1 + s3];
    c0a = fma(vec4<f32>(am0a[0]), b0a, c0a);
    c0b = fma(vec4<f32>(am0a[0]), b0b, c0b);
    c1a = fma(vec4<f32>(am0a[1]), b0a, c1a);
    c1b = fma(vec4<f32>(am0a[1]), b0b, c1b);
    c2a = fma(vec4<f32>(am0a[2]), b0a, c2a);
    c2b = fma(vec4<f32>(am0a[2]), b0b, c2b);
    c3a = fma(vec4<f32>(am0a[3]), b0a, c3a);
    c3b = fma(vec4<f32>(am0a[3]), b0b, c3b);
    c4a = fma(vec4<f32>(am0b[0]), b0a, c4a);
    c4b = fma(vec4<f32>(am0b[0]), b0b, c4b);
    c5a = fma(vec4<f32>(am0b[1]), b0a, c5a);
    c5b = fma(vec4<f32>(am0b[1]), b0b, c5b);
    c6a = fma(vec4<f32>(am0b[2]), b0a, c6a);
    c6b = fma(vec4<f32>(am0b[2]), b0b, c6b);
    c7a = fma(vec4<f32>(am0b[3]), b0a, c7a);
    c7b = fma(vec4<f32>(am0b[3]), b0b, c7b);
    c0a = fma(vec4<f32>(am1a[0]), b1a, c0a);
    c0b = fma(vec4<f32>(am1a[0]), b1b, c0b);
    c1a = fma(vec4<f32>(am1a[1]), b1a, c1a);
    c1b = fma(vec4<f32>(am1a[1]), b1b, c1b);
    c2a = fma(vec4<f32>(am1a[2]), b1a, c2a);
    c2b = fma(vec4<f32>(am1a[2]), b1b, c2b);
    c3a = fma(vec4<f32>(am1a[3]), b1a, c3a);
    c3b = fma(vec4<f32>(am1a[3]), b1b, c3b);
    c4a = fma(vec4<f32>(am1b[0]), b1a, c4a);
    c4b = fma(vec4<f32>(am1b[0]), b1b, c4b);
    c5a = fma(vec4<f32>(am1b[1]), b1a, c5a);
    c5b = fma(vec4<f32>(am1b[1]), b1b, c5b);
    c6a = fma(vec4<f32>(am1b[2]), b1a, c6a);
    c6b = fma(vec4<f32>(am1b[2]), b1b, c6b);
    c7a = fma(vec4<f32>(am1b[3]), b1a, c7a);
    c7b = fma(vec4<f32>(am1b[3]), b1b, c7b);
    c0a = fma(vec4<f32>(am2a[0]), b2a, c0a);
    c0b = fma(vec4<f32>(am2a[0]), b2b, c0b);
    c1a = fma(vec4<f32>(am2a[1]), b2a, c1a);
    c1b = fma(vec4<f32>(am2a[1]), b2b, c1b);
    c2a = fma(vec4<f32>(am2a[2]), b2a, c2a);
    c2b = fma(vec4<f32>(am2a[2]), b2b, c2b);
    c3a = fma(vec4<f32>(am2a[3]), b2a, c3a);
    c3b = fma(vec4<f32>(am2a[3]), b2b, c3b);
    c4a = fma(vec4<f32>(am2b[0]), b2a, c4a);
    c4b = fma(vec4<f32>(am2b[0]), b2b, c4b);
    c5a = fma(vec4<f32>(am2b[1]), b2a, c5a);
    c5b = fma(vec4<f32>(am2b[1]), b2b, c5b);
    c6a = fma(vec4<f32>(am2b[2]), b2a, c6a);
    c6b = fma(vec4<f32>(am2b[2]), b2b, c6b);
    c7a = fma(vec4<f32>(am2b[3]), b2a, c7a);
    c7b = fma(vec4<f32>(am2b[3]), b2b, c7b);
    c0a = fma(vec4<f32>(am3a[0]), b3a, c0a);
    c0b = fma(vec4<f32>(am3a[0]), b3b, c0b);
    c1a = fma(vec4<f32>(am3a[1]), b3a, c1a);
    c1b = fma(vec4<f32>(am3a[1]), b3b, c1b);
    c2a = fma(vec4<f32>(am3a[2]), b3a, c2a);
    c2b = fma(vec4<f32>(am3a[2]), b3b, c2b);
    c3a = fma(vec4<f32>(am3a[3]), b3a, c3a);
    c3b = fma(vec4<f32>(am3a[3]), b3b, c3b);
    c4a = fma(vec4<f32>(am3b[0]), b3a, c4a);
    c4b = fma(vec4<f32>(am3b[0]), b3b, c4b);
    c5a = fma(vec4<f32>(am3b[1]), b3a, c5a);
    c5b = fma(vec4<f32>(am3b[1]), b3b, c5b);
    c6a = fma(vec4<f32>(am3b[2]), b3a, c6a);
    c6b = fma(vec4<f32>(am3b[2]), b3b, c6b);
    c7a = fma(vec4<f32>(am3b[3]), b3a, c7a);
    c7b = fma(vec4<f32>(am3b[3]), b3b, c7b);
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
