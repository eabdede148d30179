// Gemma RMSNorm over rows of C, f32:
//   forward      rstd = 1 / sqrt(mean_c(x^2) + eps);  y = x * rstd * (1 + w)
//   forward_add  s = x + a (the residual add, fused);   y = norm(s), rstd as above
//   backward     g = dy * (1 + w);  dx (+)= rstd * (g - x * rstd^2 * sum_c(g x) / C)
//                dw += sum over rows of dy * x * rstd, in two deterministic passes:
//                backward_rows writes partial[blk, :] = sum over the RB rows of block blk,
//                backward_dw adds dw[c] += sum over blk (ascending) of partial[blk, c].
// x, a, s, y, dy, dx: (rows, C); w, dw: (C); rstd: (rows); partial: (ceil(rows / RB), C).
// One workgroup per row (forward) or per block of RB rows (backward); its WG threads stride
// over C and the row sums go through workgroup memory in a fixed order (no atomics,
// reproducible). WG is a tuning: 8 on CPU rasterisers (every thread re-reads the WG partials,
// cheap at 8; on lavapipe 64 threads made the forward ~4x slower), 64 on GPUs.
// On CPU adapters with C % 4 == 0 the row kernels replace them: forward_rows and
// forward_add_rows (one invocation per row, in vec4s), and for the backward backward_dx_rows
// (one invocation per row, dx only) and backward_partial_rows (one invocation per block and 4
// columns, the same partial sums in the same order as backward_rows), then backward_dw. No
// workgroup memory and no barriers, which lavapipe pays for once per row in the others.

struct Params {
  rows: u32,
  C: u32,
  eps: f32,
  gx: u32,         // workgroups along x of the 2-D grid
  accumulate: u32, // backward_rows: 1 adds into dx (the residual stream's gradient)
  nblocks: u32,    // ceil(rows / RB)
}

override WG: u32 = 64u; // threads per workgroup, at most 256 (the size of `red` / 2)
const RB = 32u; // rows per block of the dw partial sums; mirrored in src/ops/rmsnorm.ts

@group(0) @binding(0) var<uniform> p: Params;

// forward, forward_add
@group(0) @binding(1) var<storage, read> x: array<f32>;          // (rows, C)
@group(0) @binding(2) var<storage, read> w: array<f32>;          // (C)
@group(0) @binding(3) var<storage, read_write> y: array<f32>;    // (rows, C)
@group(0) @binding(4) var<storage, read_write> rstd: array<f32>; // (rows)
@group(0) @binding(5) var<storage, read> a: array<f32>;          // (rows, C)
@group(0) @binding(6) var<storage, read_write> s: array<f32>;    // (rows, C)

// backward_rows
@group(0) @binding(1) var<storage, read> b_dy: array<f32>;          // (rows, C)
@group(0) @binding(2) var<storage, read> b_x: array<f32>;           // (rows, C)
@group(0) @binding(3) var<storage, read> b_w: array<f32>;           // (C)
@group(0) @binding(4) var<storage, read> b_rstd: array<f32>;        // (rows)
@group(0) @binding(5) var<storage, read_write> b_dx: array<f32>;    // (rows, C)
@group(0) @binding(6) var<storage, read_write> partial: array<f32>; // (nblocks, C)

// backward_dw
@group(0) @binding(1) var<storage, read> d_partial: array<f32>; // (nblocks, C)
@group(0) @binding(2) var<storage, read_write> dw: array<f32>;  // (C)

var<workgroup> red: array<f32, 512>; // two slots of up to 256, used in turn

// Sum of `v` over the workgroup, the same value in every thread. Consecutive calls must
// alternate `slot`: a thread that passed this call's barrier knows every thread has finished
// reading the other slot in the previous call, so one barrier per call is enough.
fn workgroup_sum(v: f32, lane: u32, slot: u32) -> f32 {
  let o = slot * WG;
  red[o + lane] = v;
  workgroupBarrier();
  var t = 0.0;
  for (var i = 0u; i < WG; i++) { t += red[o + i]; }
  return t;
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = wg.y * p.gx + wg.x;
  if (row >= p.rows) { return; }
  let o = row * p.C;
  var ss = 0.0;
  for (var c = lid.x; c < p.C; c += WG) {
    let v = x[o + c];
    ss = fma(v, v, ss);
  }
  let r = inverseSqrt(workgroup_sum(ss, lid.x, 0u) / f32(p.C) + p.eps);
  if (lid.x == 0u) { rstd[row] = r; }
  for (var c = lid.x; c < p.C; c += WG) {
    y[o + c] = x[o + c] * r * (1.0 + w[c]);
  }
}

@compute @workgroup_size(WG)
fn forward_add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let row = wg.y * p.gx + wg.x;
  if (row >= p.rows) { return; }
  let o = row * p.C;
  var ss = 0.0;
  for (var c = lid.x; c < p.C; c += WG) {
    let v = x[o + c] + a[o + c];
    s[o + c] = v;
    ss = fma(v, v, ss);
  }
  let r = inverseSqrt(workgroup_sum(ss, lid.x, 0u) / f32(p.C) + p.eps);
  if (lid.x == 0u) { rstd[row] = r; }
  for (var c = lid.x; c < p.C; c += WG) {
    y[o + c] = s[o + c] * r * (1.0 + w[c]); // s[o + c] was written by this same thread
  }
}

@compute @workgroup_size(WG)
fn backward_rows(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let blk = wg.y * p.gx + wg.x;
  if (blk >= p.nblocks) { return; }
  let r0 = blk * RB;
  let r1 = min(r0 + RB, p.rows);
  let po = blk * p.C;
  for (var c = lid.x; c < p.C; c += WG) { partial[po + c] = 0.0; }
  for (var row = r0; row < r1; row++) {
    let o = row * p.C;
    let rs = b_rstd[row];
    var t = 0.0;
    for (var c = lid.x; c < p.C; c += WG) {
      t = fma(b_dy[o + c] * (1.0 + b_w[c]), b_x[o + c], t);
    }
    let k = rs * rs * workgroup_sum(t, lid.x, row & 1u) / f32(p.C);
    for (var c = lid.x; c < p.C; c += WG) {
      let dyv = b_dy[o + c];
      let xv = b_x[o + c];
      var d = rs * (dyv * (1.0 + b_w[c]) - xv * k);
      if (p.accumulate != 0u) { d += b_dx[o + c]; }
      b_dx[o + c] = d;
      partial[po + c] += dyv * xv * rs;
    }
  }
}

@compute @workgroup_size(WG)
fn backward_dw(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= p.C) { return; }
  var t = 0.0;
  for (var b = 0u; b < p.nblocks; b++) { t += d_partial[b * p.C + c]; }
  dw[c] += t;
}

// backward_dx_rows, backward_partial_rows (bindings as backward_rows, seen as vec4s)
@group(0) @binding(1) var<storage, read> v_dy: array<vec4<f32>>;         // (rows, C / 4)
@group(0) @binding(2) var<storage, read> v_x: array<vec4<f32>>;          // (rows, C / 4)
@group(0) @binding(3) var<storage, read> v_w: array<vec4<f32>>;          // (C / 4)
@group(0) @binding(5) var<storage, read_write> v_dx: array<vec4<f32>>;   // (rows, C / 4)
@group(0) @binding(6) var<storage, read_write> v_partial: array<vec4<f32>>; // (nblocks, C / 4)

const RWG = 64u; // invocations per workgroup of the two row kernels; mirrored in rmsnorm.ts

// Invocation index on a 2-D grid of RWG-wide workgroups (p.gx along x).
fn row_index(wg: vec3<u32>, t: u32) -> u32 {
  return (wg.y * p.gx + wg.x) * RWG + t;
}

@compute @workgroup_size(RWG)
fn backward_dx_rows(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
) {
  let row = row_index(wg, t);
  if (row >= p.rows) { return; }
  let C4 = p.C / 4u;
  let o = row * C4;
  let rs = b_rstd[row];
  var acc = vec4<f32>(0.0);
  for (var c = 0u; c < C4; c++) {
    acc = fma(v_dy[o + c] * (1.0 + v_w[c]), v_x[o + c], acc);
  }
  let k = rs * rs * ((acc.x + acc.y) + (acc.z + acc.w)) / f32(p.C);
  for (var c = 0u; c < C4; c++) {
    var d = rs * (v_dy[o + c] * (1.0 + v_w[c]) - v_x[o + c] * k);
    if (p.accumulate != 0u) { d += v_dx[o + c]; }
    v_dx[o + c] = d;
  }
}

@compute @workgroup_size(RWG)
fn backward_partial_rows(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
) {
  let C4 = p.C / 4u;
  let i = row_index(wg, t);
  if (i >= p.nblocks * C4) { return; }
  let blk = i / C4;
  let c = i % C4;
  let r1 = min((blk + 1u) * RB, p.rows);
  var acc = vec4<f32>(0.0);
  for (var row = blk * RB; row < r1; row++) {
    acc += v_dy[row * C4 + c] * v_x[row * C4 + c] * b_rstd[row];
  }
  v_partial[blk * C4 + c] = acc;
}

// forward_rows, forward_add_rows (bindings as forward / forward_add, seen as vec4s)
@group(0) @binding(1) var<storage, read> f_x: array<vec4<f32>>;        // (rows, C / 4)
@group(0) @binding(2) var<storage, read> f_w: array<vec4<f32>>;        // (C / 4)
@group(0) @binding(3) var<storage, read_write> f_y: array<vec4<f32>>;  // (rows, C / 4)
@group(0) @binding(5) var<storage, read> f_a: array<vec4<f32>>;        // (rows, C / 4)
@group(0) @binding(6) var<storage, read_write> f_s: array<vec4<f32>>;  // (rows, C / 4)

// rstd of a row from its vec4 lanes of sum of squares.
fn row_rstd(acc: vec4<f32>) -> f32 {
  return inverseSqrt(((acc.x + acc.y) + (acc.z + acc.w)) / f32(p.C) + p.eps);
}

@compute @workgroup_size(RWG)
fn forward_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let row = row_index(wg, t);
  if (row >= p.rows) { return; }
  let C4 = p.C / 4u;
  let o = row * C4;
  var acc = vec4<f32>(0.0);
  for (var c = 0u; c < C4; c++) {
    let v = f_x[o + c];
    acc = fma(v, v, acc);
  }
  let r = row_rstd(acc);
  rstd[row] = r;
  for (var c = 0u; c < C4; c++) {
    f_y[o + c] = f_x[o + c] * r * (1.0 + f_w[c]);
  }
}

@compute @workgroup_size(RWG)
fn forward_add_rows(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
) {
  let row = row_index(wg, t);
  if (row >= p.rows) { return; }
  let C4 = p.C / 4u;
  let o = row * C4;
  var acc = vec4<f32>(0.0);
  for (var c = 0u; c < C4; c++) {
    let v = f_x[o + c] + f_a[o + c];
    f_s[o + c] = v;
    acc = fma(v, v, acc);
  }
  let r = row_rstd(acc);
  rstd[row] = r;
  for (var c = 0u; c < C4; c++) {
    f_y[o + c] = f_s[o + c] * r * (1.0 + f_w[c]);
  }
}
