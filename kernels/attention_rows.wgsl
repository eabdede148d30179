// Causal softmax attention inside each segment for small head dims (D % 4 == 0, D <= 4 * MAXD4):
// one invocation per (row, head) instead of kernels/attention.wgsl's blocks of rows. The same
// formulas, bindings and recording order (`forward`, then `dq`, then `dkdv`):
//   s_tu = scale * q_t . k_u    L_t = log sum_u exp(s_tu)    P_tu = exp(s_tu - L_t)
//   O_t = sum_u P_tu v_u    Dsum_t = dO_t . O_t    dS_tu = P_tu (dO_t . v_u - Dsum_t)
//   dq_t = scale sum_u dS_tu k_u    dk_u = scale sum_{h in g} sum_t dS_tu q_t
//   dv_u = sum_{h in g} sum_t P_tu dO_t
// `forward` and `dq` own a query row t and stream the keys u <= t of its segment (online
// softmax in `forward`); `dkdv` owns a key row u of KV head g and streams the rows t >= u of
// every query head of the group, in a fixed order (no atomics). Rows, keys and head dims live
// in registers: no workgroup memory and no barriers. Measured on lavapipe it beats the blocked
// kernel only for short segments (see ROWS_MAX_WORK in src/ops/attention.ts). Loop iterations
// per invocation: at most S * (H / Hkv) * (1 + 3 D / 4), far under lavapipe's 65535 within
// the host's limit S * (H / Hkv) <= 64.

struct Params {
  S: u32, // segment length
  H: u32, // query heads
  Hkv: u32, // KV heads
  rows: u32, // rows = B*T (a multiple of S)
  gx: u32, // workgroups along x of the folded 2-D grid over rows
  scale: f32, // usually 1 / sqrt(D)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>; // (rows, H*D/4)
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>; // (rows, Hkv*D/4)
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>; // (rows, Hkv*D/4)
@group(0) @binding(4) var<storage, read_write> o: array<vec4<f32>>; // (rows, H*D/4)
@group(0) @binding(5) var<storage, read_write> lse: array<f32>; // (rows, H)
@group(0) @binding(6) var<storage, read> dO: array<vec4<f32>>; // (rows, H*D/4)
@group(0) @binding(7) var<storage, read_write> dsum: array<f32>; // (rows, H)
@group(0) @binding(8) var<storage, read_write> dqk: array<vec4<f32>>; // dQ (dq) or dK (dkdv)
@group(0) @binding(9) var<storage, read_write> dv: array<vec4<f32>>; // (rows, Hkv*D/4)

override WG: u32 = 64u; // invocations (rows) per workgroup
override D4: u32 = 2u; // head dim / 4
const MAXD4 = 4u;
const NEG = -3.0e38;

fn rowOf(wg: vec3<u32>, lid: u32) -> u32 { return (wg.y * p.gx + wg.x) * WG + lid; }

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = rowOf(wg, lid);
  if (row >= p.rows) { return; }
  let h = wg.z;
  let g = h / (p.H / p.Hkv);
  let seg0 = row - row % p.S;
  let qo = (row * p.H + h) * D4;
  var qr: array<vec4<f32>, MAXD4>;
  var acc: array<vec4<f32>, MAXD4>;
  for (var d = 0u; d < D4; d++) {
    qr[d] = q[qo + d] * p.scale;
    acc[d] = vec4<f32>(0.0);
  }
  var m = NEG;
  var l = 0.0;
  for (var u = seg0; u <= row; u++) {
    let ko = (u * p.Hkv + g) * D4;
    var s = 0.0;
    for (var d = 0u; d < D4; d++) { s += dot(qr[d], k[ko + d]); }
    let mNew = max(m, s);
    let alpha = exp(m - mNew);
    let e = exp(s - mNew);
    l = l * alpha + e;
    for (var d = 0u; d < D4; d++) { acc[d] = fma(vec4<f32>(e), v[ko + d], acc[d] * alpha); }
    m = mNew;
  }
  let inv = 1.0 / l;
  for (var d = 0u; d < D4; d++) { o[qo + d] = acc[d] * inv; }
  lse[row * p.H + h] = m + log(l);
}

@compute @workgroup_size(WG)
fn dq(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = rowOf(wg, lid);
  if (row >= p.rows) { return; }
  let h = wg.z;
  let g = h / (p.H / p.Hkv);
  let seg0 = row - row % p.S;
  let qo = (row * p.H + h) * D4;
  var qr: array<vec4<f32>, MAXD4>;
  var gr: array<vec4<f32>, MAXD4>;
  var acc: array<vec4<f32>, MAXD4>;
  var ds4 = vec4<f32>(0.0);
  for (var d = 0u; d < D4; d++) {
    qr[d] = q[qo + d] * p.scale;
    gr[d] = dO[qo + d];
    ds4 = fma(gr[d], o[qo + d], ds4);
    acc[d] = vec4<f32>(0.0);
  }
  let dsr = ds4.x + ds4.y + ds4.z + ds4.w;
  dsum[row * p.H + h] = dsr;
  let lr = lse[row * p.H + h];
  for (var u = seg0; u <= row; u++) {
    let ko = (u * p.Hkv + g) * D4;
    var s = 0.0;
    var dp = 0.0;
    for (var d = 0u; d < D4; d++) {
      s += dot(qr[d], k[ko + d]);
      dp += dot(gr[d], v[ko + d]);
    }
    let dS = exp(s - lr) * (dp - dsr);
    for (var d = 0u; d < D4; d++) { acc[d] = fma(vec4<f32>(dS), k[ko + d], acc[d]); }
  }
  for (var d = 0u; d < D4; d++) { dqk[qo + d] = acc[d] * p.scale; }
}

@compute @workgroup_size(WG)
fn dkdv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = rowOf(wg, lid); // the owned key u
  if (row >= p.rows) { return; }
  let g = wg.z;
  let group = p.H / p.Hkv;
  let segEnd = row - row % p.S + p.S;
  let ko = (row * p.Hkv + g) * D4;
  var kr: array<vec4<f32>, MAXD4>;
  var vr: array<vec4<f32>, MAXD4>;
  var accK: array<vec4<f32>, MAXD4>;
  var accV: array<vec4<f32>, MAXD4>;
  for (var d = 0u; d < D4; d++) {
    kr[d] = k[ko + d] * p.scale;
    vr[d] = v[ko + d];
    accK[d] = vec4<f32>(0.0);
    accV[d] = vec4<f32>(0.0);
  }
  for (var h = g * group; h < (g + 1u) * group; h++) {
    for (var t = row; t < segEnd; t++) {
      let qo = (t * p.H + h) * D4;
      var s = 0.0;
      var dp = 0.0;
      for (var d = 0u; d < D4; d++) {
        s += dot(kr[d], q[qo + d]);
        dp += dot(vr[d], dO[qo + d]);
      }
      let pr = exp(s - lse[t * p.H + h]);
      let dS = pr * (dp - dsum[t * p.H + h]);
      for (var d = 0u; d < D4; d++) {
        accV[d] = fma(vec4<f32>(pr), dO[qo + d], accV[d]);
        accK[d] = fma(vec4<f32>(dS), q[qo + d], accK[d]);
      }
    }
  }
  for (var d = 0u; d < D4; d++) {
    dqk[ko + d] = accK[d] * p.scale;
    dv[ko + d] = accV[d];
  }
}
