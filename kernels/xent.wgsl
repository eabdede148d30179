// Fused LM head + cross-entropy over a tied embedding E (V, C), chunked over the vocabulary.
// The matmul kernel writes one chunk's logits l (rows, n) = x (rows, C) E[v0 : v0 + n]^T into
// scratch; these entry points do the rest. Per row r, target t_r (IGNORE = 0xFFFFFFFF takes no
// part), weight w_r (1 when unweighted):
//   lse_chunk  running max m_r and sum s_r of exp(l - m_r) across chunks (online log-sum-exp),
//              and the target's logit when t_r falls inside this chunk (lse_rows: the same for
//              short chunks, one invocation per row)
//   finish     lse_r = m_r + log s_r;  nll_r = lse_r - l_{r,t_r} (0 on ignored rows, NaN when
//              t_r >= V);  loss[lossIndex] = scale * sum_r w_r nll_r (one workgroup, fixed order)
//   dlogits    in place on the chunk: dl_rv = scale * w_r * (exp(l_rv - lse_r) - [v0 + v == t_r]),
//              0 on ignored rows; the matmul then does dx (+)= dl E_c and dE_c += dl^T x.
// A chunk whose n is not a multiple of 4 is stored with rows of ld = n rounded up to 4 (its
// columns past n are logits of zero rows of a padded copy of E, so 0, and are never read here):
// the matmuls then take the texture path on CPU adapters.
// Row-wise entries run one workgroup per row on a 2-D grid (row = wg.y * groups.x + wg.x) so that
// rows may exceed 65535. Every reduction has a fixed order: results are reproducible bit for bit.

struct Params {
  rows: u32,
  n: u32, // columns of this chunk
  v0: u32, // vocabulary id of the chunk's first column
  V: u32, // whole vocabulary
  scale: f32,
  lossIndex: u32,
  weighted: u32, // 1: multiply by weights[r]
  first: u32, // 1 on the first chunk: start the running max and sum afresh
  ld: u32, // row stride of the chunk's logits: n, or n rounded up to 4 (the columns past n are 0)
}

const IGNORE = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> logits: array<f32>; // (rows, n)
@group(0) @binding(2) var<storage, read> targets: array<u32>; // (rows)
@group(0) @binding(3) var<storage, read> weights: array<f32>; // (rows), read when weighted
@group(0) @binding(4) var<storage, read_write> state: array<vec4<f32>>; // (rows): m, s, l_t, lse
@group(0) @binding(5) var<storage, read_write> nll: array<f32>; // (rows)
@group(0) @binding(6) var<storage, read_write> loss: array<f32>; // (lossIndex + 1)

const WG = 64u;
var<workgroup> redM: array<f32, WG>;
var<workgroup> redS: array<f32, WG>;

fn row_weight(r: u32) -> f32 {
  if (p.weighted == 1u) { return weights[r]; }
  return 1.0;
}

// One logit l into a running (max m, sum s): with d = l - m and e = exp(-|d|), a new maximum
// gives (l, s * e + 1), otherwise (m, s + e).
fn online_step(m: f32, s: f32, l: f32) -> vec2<f32> {
  let d = l - m;
  let e = exp(-abs(d));
  let up = d > 0.0;
  return vec2<f32>(select(m, l, up), select(s + e, fma(s, e, 1.0), up));
}

// Each thread takes columns t, t + 64, ... with an online (max, sum) pair (one exp per logit),
// then the 64 pairs are merged in a tree. (One pass: loads dominate on lavapipe.)
@compute @workgroup_size(64)
fn lse_chunk(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
) {
  let r = wg.y * groups.x + wg.x;
  if (r >= p.rows) { return; }
  let base = r * p.ld;
  var m = -3.0e38; // below any logit: the first one always becomes the maximum, with s = 1
  var s = 0.0;
  for (var j = t; j < p.n; j += WG) {
    let ms = online_step(m, s, logits[base + j]);
    m = ms.x;
    s = ms.y;
  }
  redM[t] = m;
  redS[t] = s;
  workgroupBarrier();
  for (var k = WG / 2u; k > 0u; k >>= 1u) {
    if (t < k) {
      let m2 = redM[t + k];
      let mm = max(m, m2);
      s = s * exp(m - mm) + redS[t + k] * exp(m2 - mm);
      m = mm;
      redM[t] = m;
      redS[t] = s;
    }
    workgroupBarrier();
  }
  if (t == 0u) { fold_chunk(r, m, s); }
}

// Merges a row's (max m, sum s) over this chunk into its running state, and records the
// target's logit when the target falls inside the chunk.
fn fold_chunk(r: u32, m: f32, s: f32) {
  var st = state[r];
  if (p.first == 1u) {
    st = vec4<f32>(m, s, 0.0, 0.0);
  } else {
    let mm = max(st.x, m);
    st = vec4<f32>(mm, st.y * exp(st.x - mm) + s * exp(m - mm), st.z, st.w);
  }
  let tg = targets[r];
  if (tg >= p.v0 && tg - p.v0 < p.n) { st.z = logits[r * p.ld + tg - p.v0]; }
  state[r] = st;
}

// lse_chunk for short chunks (n <= 1024, the byte vocabulary's 258): one invocation per row walks
// the row in order with the same online (max, sum) update. On a CPU adapter the 64-wide tree and
// its barriers cost more than the columns themselves. Rows on a 2-D grid of 64-row workgroups.
@compute @workgroup_size(64)
fn lse_rows(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
) {
  let r = (wg.y * groups.x + wg.x) * WG + t;
  if (r >= p.rows) { return; }
  let base = r * p.ld;
  var m = -3.0e38;
  var s = 0.0;
  for (var j = 0u; j < p.n; j++) {
    let ms = online_step(m, s, logits[base + j]);
    m = ms.x;
    s = ms.y;
  }
  fold_chunk(r, m, s);
}

const FWG = 256u;
var<workgroup> redL: array<f32, FWG>;

// A NaN made at run time (a NaN constant would be a shader-creation error).
fn nan_f32(seed: u32) -> f32 {
  return bitcast<f32>(0x7fc00000u | (seed & 0u));
}

// One workgroup: thread t takes rows t, t + 256, ...; then a tree over the 256 partial sums.
@compute @workgroup_size(256)
fn finish(@builtin(local_invocation_index) t: u32) {
  var acc = 0.0;
  for (var r = t; r < p.rows; r += FWG) {
    let tg = targets[r];
    let st = state[r];
    let lse = st.x + log(st.y);
    state[r].w = lse;
    var v = 0.0;
    if (tg != IGNORE) {
      v = lse - st.z;
      if (tg >= p.V) { v = nan_f32(tg); }
      acc += row_weight(r) * v;
    }
    nll[r] = v;
  }
  redL[t] = acc;
  workgroupBarrier();
  for (var k = FWG / 2u; k > 0u; k >>= 1u) {
    if (t < k) { redL[t] += redL[t + k]; }
    workgroupBarrier();
  }
  if (t == 0u) { loss[p.lossIndex] = p.scale * redL[0]; }
}

@compute @workgroup_size(64)
fn dlogits(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) groups: vec3<u32>,
  @builtin(local_invocation_index) t: u32,
) {
  let r = wg.y * groups.x + wg.x;
  if (r >= p.rows) { return; }
  let base = r * p.ld;
  let tg = targets[r];
  if (tg == IGNORE) {
    for (var j = t; j < p.n; j += WG) { logits[base + j] = 0.0; }
    return;
  }
  let lse = state[r].w;
  let f = p.scale * row_weight(r);
  for (var j = t; j < p.n; j += WG) {
    var d = f * exp(logits[base + j] - lse);
    if (p.v0 + j == tg) { d -= f; }
    logits[base + j] = d;
  }
}
