// Infini-attention memory kernels for small head dims (D % 4 == 0, D <= 4 * MAXD4): one
// invocation per (row, head), or per row of the D x D state, instead of the 8x8 register blocks
// of kernels/infini.wgsl and kernels/infini_backward.wgsl. Same formulas, bindings and outputs
// as the blocked entry points of the same name without `_rows` (notation there):
//   update_rows          linear rule: U_s = sigma(K_s)^T V_s, sum_t sigma(K_s,t) into the slots
//   state_grads_rows     the slots of what segment s's reads send to M_{s-1}, z_{s-1}; dbeta
//   retrieve_rows        A = gm sigma(q) M_{s-1} / (sigma(q) . z_{s-1}) + ga A_dot
//   retrieve_bwd_rows    dA_dot, dq, the per-row coefficients (gm/den, -gm e/den) and one dbeta
//                        partial per workgroup of WG rows (dbpart (H, nTiles), nTiles =
//                        ceil(rows / WG))
//   kv_bwd_linear_rows   dv = sigma(k) G_s, dk = sigma'(k) (G_s v + gz_s), per (row, KV head)
// A row's q (or k, v), dA and results live in registers as D4 vec4s, loaded and stored as
// whole vec4s, and the D x D state is read one vec4 at a time: on lavapipe, which loads
// divergent addresses lane by lane, this is 3-9x faster than the blocked kernels at D 8-16
// (those load 4 scalars per vec4 and recompute sigma per column block). Loops run over D4 and D
// (override constants); update_rows and state_grads_rows loop over the segment's rows (and the
// group's heads) with D4 inside, S (H / Hkv) (1 + D4) iterations, which the host keeps under
// lavapipe's 65535 (src/ops/infini.ts). Sums run in a fixed order: reproducible bit for bit.

struct Params {
  B: u32,
  nS: u32,
  S: u32,
  H: u32,
  Hkv: u32,
  mode: u32, // gate mode 0 learned, 1 memory off, 2 read zeroed
  reverse: u32, // unused here
  hasBase: u32, // unused here
  accDq: u32, // 1: dq += (else dq =)
  accDk: u32,
  accDv: u32,
  nTiles: u32, // retrieve_bwd_rows: workgroups along x
  D: u32, // head dim = 4 * D4
  s0: u32, // unused here
  s1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

override WG: u32 = 64u; // invocations (rows) per workgroup
override D4: u32 = 4u; // head dim / 4
override GH: u32 = 1u; // query heads per invocation of the read kernels (a divisor of H / Hkv)
const MAXD4 = 4u;
const MAXGH = 2u;
const MAXGD4 = 8u; // MAXGH * MAXD4

fn sigma4(x: vec4<f32>) -> vec4<f32> {
  return select(exp(x), x + 1.0, x > vec4<f32>(0.0));
}

// sigma'(x) from s = sigma(x): 1 for x > 0 (s > 1), exp(x) = s otherwise.
fn dsig4(s: vec4<f32>) -> vec4<f32> {
  return min(s, vec4<f32>(1.0));
}

// (gm, ga, g): weights of A_mem and A_dot, and sigmoid(beta).
fn gate(beta: f32, mode: u32) -> vec3<f32> {
  let g = 1.0 / (1.0 + exp(-beta));
  if (mode == 1u) { return vec3<f32>(0.0, 1.0, g); }
  if (mode == 2u) { return vec3<f32>(0.0, 1.0 - g, g); }
  return vec3<f32>(g, 1.0 - g, g);
}

// The row of an invocation and its segment's state index: (row, b*nS + s, (b*Hkv + g)*nS + s).
fn rowOf(wg: vec3<u32>, lid: u32, g: u32) -> vec3<u32> {
  let row = wg.x * WG + lid;
  let bs = row / p.S;
  let b = bs / p.nS;
  return vec3<u32>(row, bs, (b * p.Hkv + g) * p.nS + bs % p.nS);
}

// ---- retrieve_rows: grid (ceil(rows / WG), 1, H / GH). An invocation reads GH query heads
// h0 .. h0 + GH - 1 of one KV group, so every M_{s-1} load serves GH heads.
@group(0) @binding(1) var<storage, read> rt_q: array<vec4<f32>>; // (rows, H*D/4)
@group(0) @binding(2) var<storage, read> rt_adot: array<vec4<f32>>; // (rows, H*D/4)
@group(0) @binding(3) var<storage, read> rt_beta: array<f32>; // (H)
@group(0) @binding(4) var<storage, read> rt_M: array<vec4<f32>>; // Mprev (B, Hkv, nS, D, D/4)
@group(0) @binding(5) var<storage, read> rt_z: array<vec4<f32>>; // zprev (B, Hkv, nS, D/4)
@group(0) @binding(6) var<storage, read_write> rt_A: array<vec4<f32>>; // (rows, H*D/4)

@compute @workgroup_size(WG)
fn retrieve_rows(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let h0 = wg.z * GH;
  let r = rowOf(wg, lid, h0 / (p.H / p.Hkv));
  if (r.x >= p.B * p.nS * p.S) { return; }
  let qo = (r.x * p.H + h0) * D4; // head h0 + k at qo + k * D4
  var gm: array<f32, MAXGH>;
  var read = false;
  for (var k = 0u; k < GH; k++) {
    gm[k] = gate(rt_beta[h0 + k], p.mode).x;
    read = read || gm[k] != 0.0;
  }
  var acc: array<vec4<f32>, MAXGD4>; // [k * MAXD4 + j]
  for (var x = 0u; x < MAXGD4; x++) { acc[x] = vec4<f32>(0.0); }
  var den: array<f32, MAXGH>;
  for (var k = 0u; k < GH; k++) { den[k] = 0.0; }
  if (read) {
    let mo = r.z * 4u * D4 * D4;
    for (var d = 0u; d < D4; d++) {
      let zd = rt_z[r.z * D4 + d];
      var u: array<vec4<f32>, MAXGH>;
      for (var k = 0u; k < GH; k++) {
        u[k] = sigma4(rt_q[qo + k * D4 + d]);
        den[k] += dot(u[k], zd);
      }
      for (var c = 0u; c < 4u; c++) {
        let mr = mo + (4u * d + c) * D4;
        for (var j = 0u; j < D4; j++) {
          let m = rt_M[mr + j];
          for (var k = 0u; k < GH; k++) {
            acc[k * MAXD4 + j] = fma(vec4<f32>(u[k][c]), m, acc[k * MAXD4 + j]);
          }
        }
      }
    }
  }
  for (var k = 0u; k < GH; k++) {
    let gw = gate(rt_beta[h0 + k], p.mode);
    var inv = 0.0;
    if (den[k] != 0.0) { inv = 1.0 / den[k]; }
    for (var j = 0u; j < D4; j++) {
      let o = qo + k * D4 + j;
      rt_A[o] = gw.x * (acc[k * MAXD4 + j] * inv) + gw.y * rt_adot[o];
    }
  }
}

// ---- retrieve_bwd_rows: grid (nTiles = ceil(rows / WG), 1, H / GH), GH heads of one KV group
// per invocation as in retrieve_rows. Per row and head, with u = sigma(q), den = u . z,
// w = M_{s-1} dA (w_i = sum_j M_ij dA_j), e = (u . w) / den:
//   dq = sigma'(q) (gm / den) (w - e z),  coef = (gm / den, -(gm / den) e),  dA_dot = ga dA,
//   dbeta term: learned e - dA . A_dot, read zeroed -dA . A_dot, memory off 0 (times g (1 - g)
//   once per workgroup sum).
@group(0) @binding(1) var<storage, read> rb_q: array<vec4<f32>>; // (rows, H*D/4)
@group(0) @binding(2) var<storage, read> rb_adot: array<vec4<f32>>; // (rows, H*D/4)
@group(0) @binding(3) var<storage, read> rb_beta: array<f32>; // (H)
@group(0) @binding(4) var<storage, read> rb_M: array<vec4<f32>>; // Mprev (B, Hkv, nS, D, D/4)
@group(0) @binding(5) var<storage, read> rb_z: array<vec4<f32>>; // zprev (B, Hkv, nS, D/4)
@group(0) @binding(6) var<storage, read> rb_dA: array<vec4<f32>>; // (rows, H*D/4)
@group(0) @binding(7) var<storage, read_write> rb_dadot: array<vec4<f32>>; // (rows, H*D/4)
@group(0) @binding(8) var<storage, read_write> rb_dq: array<vec4<f32>>; // (rows, H*D/4)
@group(0) @binding(9) var<storage, read_write> rb_coef: array<f32>; // (rows, H, 2)
@group(0) @binding(10) var<storage, read_write> rb_dbpart: array<f32>; // (H, nTiles)

var<workgroup> rb_dg: array<f32, 512>; // [k][row]: each row's dbeta term (GH * WG <= 512)

@compute @workgroup_size(WG)
fn retrieve_bwd_rows(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let h0 = wg.z * GH;
  let r = rowOf(wg, lid, h0 / (p.H / p.Hkv));
  var dg: array<f32, MAXGH>;
  for (var k = 0u; k < GH; k++) { dg[k] = 0.0; }
  // Rows past the end take part in the barrier only.
  if (r.x < p.B * p.nS * p.S) {
    let qo = (r.x * p.H + h0) * D4; // head h0 + k at qo + k * D4
    var gw: array<vec3<f32>, MAXGH>;
    var read = false;
    var dA: array<vec4<f32>, MAXGD4>; // [k * MAXD4 + j]
    var ad: array<f32, MAXGH>; // dA . A_dot
    for (var k = 0u; k < GH; k++) {
      gw[k] = gate(rb_beta[h0 + k], p.mode);
      read = read || gw[k].x != 0.0;
      ad[k] = 0.0;
      for (var d = 0u; d < D4; d++) {
        let o = qo + k * D4 + d;
        let x = rb_dA[o];
        dA[k * MAXD4 + d] = x;
        ad[k] += dot(x, rb_adot[o]);
        rb_dadot[o] = gw[k].y * x;
      }
    }
    var cM: array<f32, MAXGH>;
    var e: array<f32, MAXGH>;
    for (var k = 0u; k < GH; k++) {
      cM[k] = 0.0;
      e[k] = 0.0;
    }
    if (read) {
      let mo = r.z * 4u * D4 * D4;
      var u: array<vec4<f32>, MAXGD4>;
      var w: array<vec4<f32>, MAXGD4>;
      var den: array<f32, MAXGH>;
      var uw: array<f32, MAXGH>;
      for (var k = 0u; k < GH; k++) {
        den[k] = 0.0;
        uw[k] = 0.0;
      }
      for (var d = 0u; d < D4; d++) {
        let zd = rb_z[r.z * D4 + d];
        var wd: array<vec4<f32>, MAXGH>;
        for (var k = 0u; k < GH; k++) {
          u[k * MAXD4 + d] = sigma4(rb_q[qo + k * D4 + d]);
          den[k] += dot(u[k * MAXD4 + d], zd);
          wd[k] = vec4<f32>(0.0);
        }
        for (var c = 0u; c < 4u; c++) {
          let mr = mo + (4u * d + c) * D4;
          for (var j = 0u; j < D4; j++) {
            let m = rb_M[mr + j];
            for (var k = 0u; k < GH; k++) { wd[k][c] += dot(m, dA[k * MAXD4 + j]); }
          }
        }
        for (var k = 0u; k < GH; k++) {
          w[k * MAXD4 + d] = wd[k];
          uw[k] += dot(u[k * MAXD4 + d], wd[k]);
        }
      }
      for (var k = 0u; k < GH; k++) {
        if (den[k] != 0.0) {
          cM[k] = gw[k].x / den[k];
          e[k] = uw[k] / den[k];
        }
        for (var d = 0u; d < D4; d++) {
          let o = qo + k * D4 + d;
          let x = k * MAXD4 + d;
          var dq = cM[k] * (w[x] - e[k] * rb_z[r.z * D4 + d]) * dsig4(u[x]);
          if (p.accDq != 0u) { dq += rb_dq[o]; }
          rb_dq[o] = dq;
        }
      }
    } else if (p.accDq == 0u) {
      for (var k = 0u; k < GH; k++) {
        for (var d = 0u; d < D4; d++) { rb_dq[qo + k * D4 + d] = vec4<f32>(0.0); }
      }
    }
    let cm = select(0.0, 1.0, p.mode == 0u);
    let ca = select(1.0, 0.0, p.mode == 1u);
    for (var k = 0u; k < GH; k++) {
      let crow = r.x * p.H + h0 + k;
      rb_coef[crow * 2u] = cM[k];
      rb_coef[crow * 2u + 1u] = -cM[k] * e[k];
      dg[k] = cm * e[k] - ca * ad[k];
    }
  }
  for (var k = 0u; k < GH; k++) { rb_dg[k * WG + lid] = dg[k]; }
  workgroupBarrier();
  if (lid < GH) {
    let g = gate(rb_beta[h0 + lid], p.mode).z;
    var sum = 0.0;
    for (var i = 0u; i < WG; i++) { sum += rb_dg[lid * WG + i]; }
    rb_dbpart[(h0 + lid) * p.nTiles + wg.x] = sum * g * (1.0 - g);
  }
}

// ---- kv_bwd_linear_rows: grid (ceil(rows / WG), 1, Hkv); G_s, gz_s = the gradient w.r.t.
// the state after segment s (the reverse scan's output).
@group(0) @binding(1) var<storage, read> kl_k: array<vec4<f32>>; // (rows, Hkv*D/4)
@group(0) @binding(2) var<storage, read> kl_v: array<vec4<f32>>; // (rows, Hkv*D/4)
@group(0) @binding(3) var<storage, read> kl_G: array<vec4<f32>>; // G_s (B, Hkv, nS, D, D/4)
@group(0) @binding(4) var<storage, read> kl_gz: array<vec4<f32>>; // gz_s (B, Hkv, nS, D/4)
@group(0) @binding(5) var<storage, read_write> kl_dk: array<vec4<f32>>; // (rows, Hkv*D/4)
@group(0) @binding(6) var<storage, read_write> kl_dv: array<vec4<f32>>; // (rows, Hkv*D/4)

@compute @workgroup_size(WG)
fn kv_bwd_linear_rows(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let g = wg.z;
  let r = rowOf(wg, lid, g);
  if (r.x >= p.B * p.nS * p.S) { return; }
  let ko = (r.x * p.Hkv + g) * D4;
  let go = r.z * 4u * D4 * D4;
  var v: array<vec4<f32>, MAXD4>;
  var dv: array<vec4<f32>, MAXD4>;
  for (var j = 0u; j < D4; j++) {
    v[j] = kl_v[ko + j];
    dv[j] = vec4<f32>(0.0);
  }
  for (var d = 0u; d < D4; d++) {
    let u = sigma4(kl_k[ko + d]);
    var gv = vec4<f32>(0.0); // (G_s v)_i for i = 4d..4d+3
    for (var c = 0u; c < 4u; c++) {
      let gr = go + (4u * d + c) * D4;
      let ui = vec4<f32>(u[c]);
      var s = 0.0;
      for (var j = 0u; j < D4; j++) {
        let gij = kl_G[gr + j];
        dv[j] = fma(ui, gij, dv[j]);
        s += dot(gij, v[j]);
      }
      gv[c] = s;
    }
    var dk = (gv + kl_gz[r.z * D4 + d]) * dsig4(u);
    if (p.accDk != 0u) { dk += kl_dk[ko + d]; }
    kl_dk[ko + d] = dk;
  }
  for (var j = 0u; j < D4; j++) {
    var x = dv[j];
    if (p.accDv != 0u) { x += kl_dv[ko + j]; }
    kl_dv[ko + j] = x;
  }
}

// Invocation n of the per-state-row entries: (row i of the state, its (b*Hkv + g)*nS + s, the KV
// head g, the segment's first row (b*nS + s)*S).
fn stateRowOf(n: u32) -> vec4<u32> {
  let D = 4u * D4;
  let bgs = n / D;
  let s = bgs % p.nS;
  let b = bgs / (p.nS * p.Hkv);
  return vec4<u32>(n % D, bgs, (bgs / p.nS) % p.Hkv, (b * p.nS + s) * p.S);
}

// ---- update_rows (linear rule): row i of U_s = sigma(K_s)^T V_s and of sum_t sigma(K_s,t),
// one invocation per (b, g, s, i), into the slots that `scan` (kernels/infini.wgsl) turns into
// states. Grid (ceil(B*Hkv*nS*D / WG)).
@group(0) @binding(1) var<storage, read> up_k: array<f32>; // (rows, Hkv*D)
@group(0) @binding(2) var<storage, read> up_v: array<vec4<f32>>; // (rows, Hkv*D/4)
@group(0) @binding(3) var<storage, read_write> up_M: array<vec4<f32>>; // (B, Hkv, nS, D, D/4)
@group(0) @binding(4) var<storage, read_write> up_z: array<f32>; // (B, Hkv, nS, D)

@compute @workgroup_size(WG)
fn update_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let D = 4u * D4;
  let e = stateRowOf(wg.x * WG + lid);
  let i = e.x;
  let bgs = e.y;
  let g = e.z;
  let row0 = e.w;
  if (bgs >= p.B * p.Hkv * p.nS) { return; }
  var acc: array<vec4<f32>, MAXD4>;
  for (var j = 0u; j < D4; j++) { acc[j] = vec4<f32>(0.0); }
  var z = 0.0;
  for (var t = 0u; t < p.S; t++) {
    let o = ((row0 + t) * p.Hkv + g) * D4;
    let x = up_k[4u * o + i];
    let u = select(exp(x), x + 1.0, x > 0.0);
    z += u;
    for (var j = 0u; j < D4; j++) { acc[j] = fma(vec4<f32>(u), up_v[o + j], acc[j]); }
  }
  for (var j = 0u; j < D4; j++) { up_M[(bgs * D + i) * D4 + j] = acc[j]; }
  up_z[bgs * D + i] = z;
}

// ---- state_grads_rows: what segment s's reads send to M_{s-1}, z_{s-1}, row i, over its S rows
// and the group's query heads: slot_M[i, :] = sum u_i coef0 dA, slot_z[i] = sum u_i coef1
// (u = sigma(q), coef from retrieve_bwd_rows). One invocation per (b, g, s, i); grid
// (ceil(B*Hkv*nS*D / WG) + 1): the last workgroup adds the dbeta partials, in tile order.
@group(0) @binding(1) var<storage, read> sg_q: array<f32>; // (rows, H*D)
@group(0) @binding(2) var<storage, read> sg_dA: array<vec4<f32>>; // (rows, H*D/4)
@group(0) @binding(3) var<storage, read_write> sg_coef: array<f32>; // (rows, H, 2)
@group(0) @binding(4) var<storage, read_write> sg_dbpart: array<f32>; // (H, nTiles)
@group(0) @binding(5) var<storage, read_write> sg_M: array<vec4<f32>>; // (B, Hkv, nS, D, D/4)
@group(0) @binding(6) var<storage, read_write> sg_z: array<f32>; // (B, Hkv, nS, D)
@group(0) @binding(7) var<storage, read_write> sg_dbeta: array<f32>; // (H), +=

@compute @workgroup_size(WG)
fn state_grads_rows(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  if (wg.x == nwg.x - 1u) {
    for (var h = lid; h < p.H; h += WG) {
      var sum = 0.0;
      for (var n = 0u; n < p.nTiles; n++) { sum += sg_dbpart[h * p.nTiles + n]; }
      sg_dbeta[h] += sum;
    }
    return;
  }
  let D = 4u * D4;
  let e = stateRowOf(wg.x * WG + lid);
  let i = e.x;
  let bgs = e.y;
  let g = e.z;
  let row0 = e.w;
  if (bgs >= p.B * p.Hkv * p.nS) { return; }
  let grp = p.H / p.Hkv;
  var acc: array<vec4<f32>, MAXD4>;
  for (var j = 0u; j < D4; j++) { acc[j] = vec4<f32>(0.0); }
  var z = 0.0;
  // Only the learned gate reads memory; otherwise the reads send nothing to the state.
  if (p.mode == 0u) {
    for (var hh = 0u; hh < grp; hh++) {
      let h = g * grp + hh;
      for (var t = 0u; t < p.S; t++) {
        let cr = (row0 + t) * p.H + h;
        let o = cr * D4;
        let x = sg_q[4u * o + i];
        let u = select(exp(x), x + 1.0, x > 0.0);
        let w = vec4<f32>(u * sg_coef[cr * 2u]);
        z = fma(u, sg_coef[cr * 2u + 1u], z);
        for (var j = 0u; j < D4; j++) { acc[j] = fma(w, sg_dA[o + j], acc[j]); }
      }
    }
  }
  for (var j = 0u; j < D4; j++) { sg_M[(bgs * D + i) * D4 + j] = acc[j]; }
  sg_z[bgs * D + i] = z;
}
