// Global gradient norm, clipping and AdamW (decoupled weight decay, bias-corrected):
//   sumsq        partials[base + w] = sum of g_i^2 over the 8192 elements of workgroup w of one
//                gradient piece (fixed order: 32 strided elements per thread, then a tree)
//   norm_finish  norm = sqrt(sum of all partials) (one workgroup, fixed order);
//                clip = min(1, maxNorm / (norm + 1e-6));
//                stats = (norm, clip, skip, skips so far), skip = 1 when norm is NaN or infinite
//   adamw        unless skip: g' = g * clip; m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2;
//                p -= lr_t * (mhat / (sqrt(vhat) + eps) + wd_t * p),
//                mhat = m / (1 - b1^t), vhat = v / (1 - b2^t)   (lr_t, wd_t: the tensor's group)
// The clip factor and the skip flag are read from `stats` on the GPU: no readback inside a step.
// Bindings are shared by the three entry points; each dispatch binds the prefix it needs.

struct Params {
  n: u32, // elements of this piece (sumsq, adamw) or number of partials (norm_finish)
  base: u32, // first partial of this piece (sumsq)
  maxNorm: f32, // norm_finish
  lr: f32, // lr_t = lr * the group's multiplier
  wd: f32, // wd_t, the group's weight decay
  b1: f32,
  b2: f32,
  omb1: f32, // 1 - b1 and 1 - b2, formed in f64 on the host (1 - f32(0.999) is 1e-5 off)
  omb2: f32,
  eps: f32,
  bc1: f32, // 1 - b1^t
  bc2: f32, // 1 - b2^t
}

@group(0) @binding(0) var<uniform> u: Params;
@group(0) @binding(1) var<storage, read_write> g: array<f32>; // gradient piece (n); only read
@group(0) @binding(2) var<storage, read_write> stats: array<f32>; // (4)
@group(0) @binding(3) var<storage, read_write> partials: array<f32>; // (all pieces' workgroups)
@group(0) @binding(4) var<storage, read_write> prm: array<f32>; // parameter piece (n)
@group(0) @binding(5) var<storage, read_write> m: array<f32>; // first moment (n)
@group(0) @binding(6) var<storage, read_write> v: array<f32>; // second moment (n)

const WG = 256u;
const PER_THREAD = 32u;
var<workgroup> red: array<f32, WG>;

fn tree_sum(t: u32, x: f32) -> f32 {
  red[t] = x;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    if (t < k) { red[t] += red[t + k]; }
    workgroupBarrier();
  }
  return red[0];
}

// Exponent bits all ones: infinity or NaN. Bit test, so no fast-math rewrite can drop it.
fn is_finite(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

@compute @workgroup_size(256)
fn sumsq(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let start = wg.x * (WG * PER_THREAD);
  var acc = 0.0;
  for (var k = 0u; k < PER_THREAD; k++) {
    let i = start + k * WG + t;
    if (i < u.n) { acc = fma(g[i], g[i], acc); }
  }
  let s = tree_sum(t, acc);
  if (t == 0u) { partials[u.base + wg.x] = s; }
}

@compute @workgroup_size(256)
fn norm_finish(@builtin(local_invocation_index) t: u32) {
  var acc = 0.0;
  for (var i = t; i < u.n; i += WG) { acc += partials[i]; }
  let norm = sqrt(tree_sum(t, acc));
  if (t == 0u) {
    let ok = is_finite(norm);
    stats[0] = norm;
    stats[1] = select(0.0, min(1.0, u.maxNorm / (norm + 1e-6)), ok);
    stats[2] = select(1.0, 0.0, ok);
    stats[3] += select(1.0, 0.0, ok);
  }
}

@compute @workgroup_size(256)
fn adamw(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
) {
  let i = (wg.y * groups.x + wg.x) * WG + t;
  if (i >= u.n || stats[2] != 0.0) { return; }
  let gc = g[i] * stats[1];
  let m1 = u.b1 * m[i] + u.omb1 * gc;
  let v1 = u.b2 * v[i] + u.omb2 * gc * gc;
  m[i] = m1;
  v[i] = v1;
  let w = prm[i];
  prm[i] = w - u.lr * ((m1 / u.bc1) / (sqrt(v1 / u.bc2) + u.eps) + u.wd * w);
}
