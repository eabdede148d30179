// Causal softmax attention inside each segment, grouped-query heads, forward and backward.
//   rows = B*T tokens, segments of S consecutive rows; Q, dQ, O, dO: (rows, H*D);
//   K, V, dK, dV: (rows, Hkv*D); L, Dsum: (rows, H). Query head h reads KV head
//   g = h / (H / Hkv). For row t and keys u <= t of the same segment:
//   s_tu = scale * q_t . k_u    L_t = log sum_u exp(s_tu)    P_tu = exp(s_tu - L_t)
//   O_t = sum_u P_tu v_u
//   Dsum_t = dO_t . O_t    dS_tu = P_tu (dO_t . v_u - Dsum_t)
//   dq_t = scale sum_u dS_tu k_u    dk_u = scale sum_{h in g} sum_t dS_tu q_t
//   dv_u = sum_{h in g} sum_t P_tu dO_t
// Entry points, in recording order: `forward` (O, L); `dq` (Dsum, dQ); `dkdv` (dK, dV).
// Flash-attention style: a workgroup owns a block of BQ rows ("owned": queries for `forward`
// and `dq`, keys for `dkdv`) of one head and streams the other side in blocks of BK rows, so
// no S x S matrix exists; the forward keeps a running max and sum (online softmax). Each
// streamed block is two register-blocked products, like a matmul:
//   phase 1: scores tile (BQ, BK) in workgroup memory, SR x SC per invocation, over D;
//   phase 2 (forward only): softmax statistics per owned row;
//   phase 3: outputs (BQ, D) += tile (BQ, BK) . streamed rows (BK, D), OR x OC per invocation.
// dK and dV of a KV head sum over the query heads of its group inside one workgroup, in a
// fixed order: no atomics, reproducible bit for bit.
// Two variants of each entry: `_scalar` (any D; the GPU tuning) and `_vec` (D % 4 == 0, vec4
// loads; the lavapipe tuning). The tilings are chosen in src/ops/attention.ts.

struct Params {
  S: u32, // segment length
  H: u32, // query heads
  Hkv: u32, // KV heads
  nblk: u32, // owned blocks per segment: ceil(S / BQ)
  nwork: u32, // segments * nblk: work items per head
  gx: u32, // workgroups along x of the folded 2-D grid (x, y) over work items
  scale: f32, // usually 1 / sqrt(D)
  D: u32, // head dim (a run-time value: pipelines are shared across D)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>; // (rows, H*D)
@group(0) @binding(2) var<storage, read> k: array<f32>; // (rows, Hkv*D)
@group(0) @binding(3) var<storage, read> v: array<f32>; // (rows, Hkv*D)
@group(0) @binding(4) var<storage, read_write> o: array<f32>; // (rows, H*D): forward writes
@group(0) @binding(5) var<storage, read_write> lse: array<f32>; // (rows, H): forward writes
@group(0) @binding(6) var<storage, read> dO: array<f32>; // (rows, H*D)
@group(0) @binding(7) var<storage, read_write> dsum: array<f32>; // (rows, H): dq writes
// dq: dQ (rows, H*D); dkdv: dK (rows, Hkv*D)
@group(0) @binding(8) var<storage, read_write> dqk: array<f32>;
@group(0) @binding(9) var<storage, read_write> dv: array<f32>; // (rows, Hkv*D)

override WG: u32 = 64u; // invocations per workgroup
override BQ: u32 = 64u; // owned rows per workgroup
override BK: u32 = 64u; // streamed rows per block
override SR: u32 = 8u; // phase 1: owned rows per thread (BQ / SR threads along rows)
override SC: u32 = 8u; // phase 1: streamed rows per thread ((BQ / SR) * (BK / SC) == WG)
override OR: u32 = 8u; // phase 3: owned rows per thread
override OC: u32 = 8u; // phase 3: columns per thread ((BQ / OR) * ceil(D / OC) <= WG)

const MAXS = 128u; // largest SR * SC (private tile size)
const MAXR = 16u; // largest SR, OR
const MAXC = 64u; // largest SC, OC
const MAXO = 64u; // largest OR * OC
const NEG = -3.0e38; // masked score; exp(NEG - m) == 0 for any finite m

// Scalar tiles (BQ, BK) with rows BK + 1 apart: invocations next to each other own
// neighbouring rows, and the padding puts those rows in different banks on GPUs.
var<workgroup> tileA: array<f32, BQ * (BK + 1u)>; // scores, then P / dS (dq) / P (dkdv)
var<workgroup> tileB: array<f32, BQ * (BK + 1u)>; // dkdv: dS
var<workgroup> rowM: array<f32, BQ>; // forward: running max; dq: L of the row
var<workgroup> rowL: array<f32, BQ>; // forward: running sum; dq: Dsum of the row
var<workgroup> rowA: array<f32, BQ>; // forward: rescale factor of this block

// Where one workgroup works: the segment's first row, its owned block start (relative to the
// segment), and the owned block's end (exclusive, relative to the segment).
struct Work {
  seg0: u32,
  a0: u32,
  aend: u32,
  valid: bool,
}

// Causal blocks cost in proportion to their position (queries) or to the rows after them
// (keys), and lavapipe hands each thread a contiguous run of workgroups. So consecutive
// workgroups alternate between the two ends of the segment: 0, n-1, 1, n-2, ...
fn work(wg: vec3<u32>) -> Work {
  let w = wg.y * p.gx + wg.x;
  var r: Work;
  r.valid = w < p.nwork;
  let seg = w / p.nblk;
  r.seg0 = seg * p.S;
  let b = w % p.nblk;
  r.a0 = select(p.nblk - 1u - b / 2u, b / 2u, b % 2u == 0u) * BQ;
  r.aend = min(r.a0 + BQ, p.S);
  return r;
}

// Thread roles. Phase 1: rows sr + i * (BQ / SR), streamed sc + j * (BK / SC). Phase 3: rows
// or + i * (BQ / OR), columns oc + c * ceil(D / OC). Neighbouring invocations differ in the
// owned row, so they share the streamed rows they load.
fn srow(lid: u32, i: u32) -> u32 { return lid % (BQ / SR) + i * (BQ / SR); }
fn scol(lid: u32, j: u32) -> u32 { return lid / (BQ / SR) + j * (BK / SC); }
fn orow(lid: u32, i: u32) -> u32 { return lid % (BQ / OR) + i * (BQ / OR); }
fn ocol(lid: u32, c: u32) -> u32 { return lid / (BQ / OR) + c * ((p.D + OC - 1u) / OC); }
fn ocActive(lid: u32) -> bool { return lid < (BQ / OR) * ((p.D + OC - 1u) / OC); }

// ---- forward: O, L from Q, K, V ----

@compute @workgroup_size(WG)
fn forward_scalar(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let wk = work(wg);
  if (!wk.valid) { return; }
  let h = wg.z;
  let g = h / (p.H / p.Hkv);
  let qs = p.H * p.D;
  let ks = p.Hkv * p.D;
  for (var r = lid; r < BQ; r += WG) {
    rowM[r] = NEG;
    rowL[r] = 0.0;
  }
  // Phase 1 loads: owned rows clamped into the block (padding rows compute and are dropped).
  var qi: array<u32, MAXR>;
  for (var i = 0u; i < SR; i++) {
    qi[i] = (wk.seg0 + min(wk.a0 + srow(lid, i), wk.aend - 1u)) * qs + h * p.D;
  }
  var acc: array<f32, MAXO>;
  for (var i = 0u; i < OR * OC; i++) { acc[i] = 0.0; }
  var oc: array<u32, MAXC>;
  for (var c = 0u; c < OC; c++) { oc[c] = min(ocol(lid, c), p.D - 1u); }
  let busy = ocActive(lid);
  let nkb = (wk.aend + BK - 1u) / BK;
  for (var kb = 0u; kb < nkb; kb++) {
    let k0 = kb * BK;
    let kend = min(k0 + BK, wk.aend);
    // phase 1: s = scale * q . k, masked above the diagonal
    var ki: array<u32, MAXC>;
    for (var j = 0u; j < SC; j++) {
      ki[j] = (wk.seg0 + min(k0 + scol(lid, j), kend - 1u)) * ks + g * p.D;
    }
    var s: array<f32, MAXS>;
    for (var x = 0u; x < SR * SC; x++) { s[x] = 0.0; }
    for (var d = 0u; d < p.D; d++) {
      var a: array<f32, MAXR>;
      var b: array<f32, MAXC>;
      for (var i = 0u; i < SR; i++) { a[i] = q[qi[i] + d]; }
      for (var j = 0u; j < SC; j++) { b[j] = k[ki[j] + d]; }
      for (var i = 0u; i < SR; i++) {
        for (var j = 0u; j < SC; j++) { s[i * SC + j] = fma(a[i], b[j], s[i * SC + j]); }
      }
    }
    for (var i = 0u; i < SR; i++) {
      let r = srow(lid, i);
      for (var j = 0u; j < SC; j++) {
        let c = scol(lid, j);
        tileA[r * (BK + 1u) + c] = select(NEG, s[i * SC + j] * p.scale, k0 + c <= wk.a0 + r);
      }
    }
    workgroupBarrier();
    // phase 2: running max m, rescale alpha = exp(m_old - m_new), P = exp(s - m_new)
    for (var r = lid; r < BQ; r += WG) {
      let mOld = rowM[r];
      var m = mOld;
      for (var j = 0u; j < BK; j++) { m = max(m, tileA[r * (BK + 1u) + j]); }
      var sum = 0.0;
      for (var j = 0u; j < BK; j++) {
        let e = exp(tileA[r * (BK + 1u) + j] - m);
        tileA[r * (BK + 1u) + j] = e;
        sum += e;
      }
      let alpha = exp(mOld - m);
      rowA[r] = alpha;
      rowL[r] = rowL[r] * alpha + sum;
      rowM[r] = m;
    }
    workgroupBarrier();
    // phase 3: acc = alpha * acc + P v
    if (busy) {
      for (var i = 0u; i < OR; i++) {
        let alpha = rowA[orow(lid, i)];
        for (var c = 0u; c < OC; c++) { acc[i * OC + c] *= alpha; }
      }
      let vb = (wk.seg0 + k0) * ks + g * p.D;
      for (var j = 0u; j < kend - k0; j++) {
        var a: array<f32, MAXR>;
        var b: array<f32, MAXC>;
        for (var i = 0u; i < OR; i++) { a[i] = tileA[orow(lid, i) * (BK + 1u) + j]; }
        for (var c = 0u; c < OC; c++) { b[c] = v[vb + j * ks + oc[c]]; }
        for (var i = 0u; i < OR; i++) {
          for (var c = 0u; c < OC; c++) { acc[i * OC + c] = fma(a[i], b[c], acc[i * OC + c]); }
        }
      }
    }
    workgroupBarrier();
  }
  if (busy) {
    for (var i = 0u; i < OR; i++) {
      let r = orow(lid, i);
      if (wk.a0 + r < wk.aend) {
        let inv = 1.0 / rowL[r];
        let ob = (wk.seg0 + wk.a0 + r) * qs + h * p.D;
        for (var c = 0u; c < OC; c++) {
          let col = ocol(lid, c);
          if (col < p.D) { o[ob + col] = acc[i * OC + c] * inv; }
        }
      }
    }
  }
  for (var r = lid; r < BQ; r += WG) {
    if (wk.a0 + r < wk.aend) {
      lse[(wk.seg0 + wk.a0 + r) * p.H + h] = rowM[r] + log(rowL[r]);
    }
  }
}

// ---- backward, queries owned: Dsum and dQ ----


@compute @workgroup_size(WG)
fn dq_scalar(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let wk = work(wg);
  if (!wk.valid) { return; }
  let h = wg.z;
  let g = h / (p.H / p.Hkv);
  let qs = p.H * p.D;
  let ks = p.Hkv * p.D;
  for (var r = lid; r < BQ; r += WG) {
    let row = wk.seg0 + min(wk.a0 + r, wk.aend - 1u);
    let ob = row * qs + h * p.D;
    var ds = 0.0;
    for (var d = 0u; d < p.D; d++) { ds = fma(dO[ob + d], o[ob + d], ds); }
    rowL[r] = ds;
    rowM[r] = lse[row * p.H + h];
    if (wk.a0 + r < wk.aend) { dsum[row * p.H + h] = ds; }
  }
  workgroupBarrier();
  var qi: array<u32, MAXR>;
  for (var i = 0u; i < SR; i++) {
    qi[i] = (wk.seg0 + min(wk.a0 + srow(lid, i), wk.aend - 1u)) * qs + h * p.D;
  }
  var acc: array<f32, MAXO>;
  for (var i = 0u; i < OR * OC; i++) { acc[i] = 0.0; }
  var oc: array<u32, MAXC>;
  for (var c = 0u; c < OC; c++) { oc[c] = min(ocol(lid, c), p.D - 1u); }
  let busy = ocActive(lid);
  let nkb = (wk.aend + BK - 1u) / BK;
  for (var kb = 0u; kb < nkb; kb++) {
    let k0 = kb * BK;
    let kend = min(k0 + BK, wk.aend);
    // phase 1: s = q . k and dp = dO . v, then dS = P (dp - Dsum)
    var ki: array<u32, MAXC>;
    for (var j = 0u; j < SC; j++) {
      ki[j] = (wk.seg0 + min(k0 + scol(lid, j), kend - 1u)) * ks + g * p.D;
    }
    var s: array<f32, MAXS>;
    var dp: array<f32, MAXS>;
    for (var x = 0u; x < SR * SC; x++) {
      s[x] = 0.0;
      dp[x] = 0.0;
    }
    for (var d = 0u; d < p.D; d++) {
      var a: array<f32, MAXR>;
      var a2: array<f32, MAXR>;
      var b: array<f32, MAXC>;
      var b2: array<f32, MAXC>;
      for (var i = 0u; i < SR; i++) {
        a[i] = q[qi[i] + d];
        a2[i] = dO[qi[i] + d];
      }
      for (var j = 0u; j < SC; j++) {
        b[j] = k[ki[j] + d];
        b2[j] = v[ki[j] + d];
      }
      for (var i = 0u; i < SR; i++) {
        for (var j = 0u; j < SC; j++) {
          s[i * SC + j] = fma(a[i], b[j], s[i * SC + j]);
          dp[i * SC + j] = fma(a2[i], b2[j], dp[i * SC + j]);
        }
      }
    }
    for (var i = 0u; i < SR; i++) {
      let r = srow(lid, i);
      let lr = rowM[r];
      let dr = rowL[r];
      for (var j = 0u; j < SC; j++) {
        let c = scol(lid, j);
        let pr = exp(s[i * SC + j] * p.scale - lr);
        tileA[r * (BK + 1u) + c] = select(0.0, pr * (dp[i * SC + j] - dr), k0 + c <= wk.a0 + r);
      }
    }
    workgroupBarrier();
    // phase 3: dq += dS k
    if (busy) {
      let kb0 = (wk.seg0 + k0) * ks + g * p.D;
      for (var j = 0u; j < kend - k0; j++) {
        var a: array<f32, MAXR>;
        var b: array<f32, MAXC>;
        for (var i = 0u; i < OR; i++) { a[i] = tileA[orow(lid, i) * (BK + 1u) + j]; }
        for (var c = 0u; c < OC; c++) { b[c] = k[kb0 + j * ks + oc[c]]; }
        for (var i = 0u; i < OR; i++) {
          for (var c = 0u; c < OC; c++) { acc[i * OC + c] = fma(a[i], b[c], acc[i * OC + c]); }
        }
      }
    }
    workgroupBarrier();
  }
  if (busy) {
    for (var i = 0u; i < OR; i++) {
      let r = orow(lid, i);
      if (wk.a0 + r < wk.aend) {
        let ob = (wk.seg0 + wk.a0 + r) * qs + h * p.D;
        for (var c = 0u; c < OC; c++) {
          let col = ocol(lid, c);
          if (col < p.D) { dqk[ob + col] = acc[i * OC + c] * p.scale; }
        }
      }
    }
  }
}

// ---- backward, keys owned: dK and dV summed over the group's query heads ----


@compute @workgroup_size(WG)
fn dkdv_scalar(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let wk = work(wg); // owned rows are keys u in [a0, aend)
  if (!wk.valid) { return; }
  let g = wg.z;
  let group = p.H / p.Hkv;
  let qs = p.H * p.D;
  let ks = p.Hkv * p.D;
  var ki: array<u32, MAXR>;
  for (var i = 0u; i < SR; i++) {
    ki[i] = (wk.seg0 + min(wk.a0 + srow(lid, i), wk.aend - 1u)) * ks + g * p.D;
  }
  var accK: array<f32, MAXO>;
  var accV: array<f32, MAXO>;
  for (var i = 0u; i < OR * OC; i++) {
    accK[i] = 0.0;
    accV[i] = 0.0;
  }
  var oc: array<u32, MAXC>;
  for (var c = 0u; c < OC; c++) { oc[c] = min(ocol(lid, c), p.D - 1u); }
  let busy = ocActive(lid);
  let t00 = wk.a0; // query blocks start at the first owned key: earlier rows see none
  let nqb = (p.S - t00 + BK - 1u) / BK;
  for (var x = 0u; x < group * nqb; x++) {
    let h = g * group + x / nqb;
    let t0 = t00 + (x % nqb) * BK;
    let tend = min(t0 + BK, p.S);
    // phase 1: s = k . q, dp = v . dO; P = exp(scale s - L_t), dS = P (dp - Dsum_t)
    var ti: array<u32, MAXC>;
    var lt: array<f32, MAXC>;
    var dt: array<f32, MAXC>;
    for (var j = 0u; j < SC; j++) {
      let t = wk.seg0 + min(t0 + scol(lid, j), tend - 1u);
      ti[j] = t * qs + h * p.D;
      lt[j] = lse[t * p.H + h];
      dt[j] = dsum[t * p.H + h];
    }
    var s: array<f32, MAXS>;
    var dp: array<f32, MAXS>;
    for (var y = 0u; y < SR * SC; y++) {
      s[y] = 0.0;
      dp[y] = 0.0;
    }
    for (var d = 0u; d < p.D; d++) {
      var a: array<f32, MAXR>;
      var a2: array<f32, MAXR>;
      var b: array<f32, MAXC>;
      var b2: array<f32, MAXC>;
      for (var i = 0u; i < SR; i++) {
        a[i] = k[ki[i] + d];
        a2[i] = v[ki[i] + d];
      }
      for (var j = 0u; j < SC; j++) {
        b[j] = q[ti[j] + d];
        b2[j] = dO[ti[j] + d];
      }
      for (var i = 0u; i < SR; i++) {
        for (var j = 0u; j < SC; j++) {
          s[i * SC + j] = fma(a[i], b[j], s[i * SC + j]);
          dp[i * SC + j] = fma(a2[i], b2[j], dp[i * SC + j]);
        }
      }
    }
    for (var i = 0u; i < SR; i++) {
      let r = srow(lid, i);
      for (var j = 0u; j < SC; j++) {
        let c = scol(lid, j);
        let ok = wk.a0 + r <= t0 + c && t0 + c < tend;
        let pr = select(0.0, exp(s[i * SC + j] * p.scale - lt[j]), ok);
        tileA[r * (BK + 1u) + c] = pr;
        tileB[r * (BK + 1u) + c] = pr * (dp[i * SC + j] - dt[j]);
      }
    }
    workgroupBarrier();
    // phase 3: dv += P dO, dk += dS q
    if (busy) {
      let qb0 = (wk.seg0 + t0) * qs + h * p.D;
      for (var j = 0u; j < tend - t0; j++) {
        var a: array<f32, MAXR>;
        var a2: array<f32, MAXR>;
        var b: array<f32, MAXC>;
        var b2: array<f32, MAXC>;
        for (var i = 0u; i < OR; i++) {
          a[i] = tileA[orow(lid, i) * (BK + 1u) + j];
          a2[i] = tileB[orow(lid, i) * (BK + 1u) + j];
        }
        for (var c = 0u; c < OC; c++) {
          b[c] = dO[qb0 + j * qs + oc[c]];
          b2[c] = q[qb0 + j * qs + oc[c]];
        }
        for (var i = 0u; i < OR; i++) {
          for (var c = 0u; c < OC; c++) {
            accV[i * OC + c] = fma(a[i], b[c], accV[i * OC + c]);
            accK[i * OC + c] = fma(a2[i], b2[c], accK[i * OC + c]);
          }
        }
      }
    }
    workgroupBarrier();
  }
  if (busy) {
    for (var i = 0u; i < OR; i++) {
      let r = orow(lid, i);
      if (wk.a0 + r < wk.aend) {
        let ob = (wk.seg0 + wk.a0 + r) * ks + g * p.D;
        for (var c = 0u; c < OC; c++) {
          let col = ocol(lid, c);
          if (col < p.D) {
            dqk[ob + col] = accK[i * OC + c] * p.scale;
            dv[ob + col] = accV[i * OC + c];
          }
        }
      }
    }
  }
}

// ==== vec4 variant (lavapipe), D % 4 == 0 ====
// The same three entry points with every load a vec4: on lavapipe a storage or workgroup load
// costs several multiply-adds and a vec4 load about two scalar ones, so vec4 loads along D
// (phase 1) and along columns and keys (phase 3) halve the cost per value. Phase 1 gives an
// invocation SC consecutive streamed rows and phase 3 OC consecutive columns (both multiples
// of 4), so tiles move as whole vec4s.

const MAXO4 = 16u; // largest OR * OC / 4

@group(0) @binding(1) var<storage, read> q4: array<vec4<f32>>; // (rows, H*D/4)
@group(0) @binding(2) var<storage, read> k4: array<vec4<f32>>; // (rows, Hkv*D/4)
@group(0) @binding(3) var<storage, read> v4: array<vec4<f32>>; // (rows, Hkv*D/4)
@group(0) @binding(4) var<storage, read_write> o4: array<vec4<f32>>; // (rows, H*D/4)
@group(0) @binding(6) var<storage, read> dO4: array<vec4<f32>>; // (rows, H*D/4)
@group(0) @binding(8) var<storage, read_write> dqk4: array<vec4<f32>>; // dQ or dK, vec4s
@group(0) @binding(9) var<storage, read_write> dv4: array<vec4<f32>>; // (rows, Hkv*D/4)

var<workgroup> tile4A: array<vec4<f32>, BQ * BK / 4u>; // (BQ, BK) as vec4s along BK
var<workgroup> tile4B: array<vec4<f32>, BQ * BK / 4u>;

fn vcol(lid: u32) -> u32 { return (lid / (BQ / SR)) * SC; }
fn vocol(lid: u32) -> u32 { return (lid / (BQ / OR)) * OC; }

// Phase 1 of `forward_vec`: s = scale * q . k over the block, masked, into tile4A.
fn scoresVec(wk: Work, lid: u32, h: u32, g: u32, k0: u32, kend: u32) {
  let D4 = p.D / 4u;
  let c0 = vcol(lid);
  var qi: array<u32, MAXR>;
  var ki: array<u32, MAXC>;
  for (var i = 0u; i < SR; i++) {
    qi[i] = (wk.seg0 + min(wk.a0 + srow(lid, i), wk.aend - 1u)) * p.H * D4 + h * D4;
  }
  for (var j = 0u; j < SC; j++) {
    ki[j] = (wk.seg0 + min(k0 + c0 + j, kend - 1u)) * p.Hkv * D4 + g * D4;
  }
  var s: array<f32, MAXS>;
  for (var x = 0u; x < SR * SC; x++) { s[x] = 0.0; }
  let nd = select(0u, D4, k0 + c0 < kend); // streamed rows all past the block: masked anyway
  for (var d = 0u; d < nd; d++) {
    var a: array<vec4<f32>, MAXR>;
    var b: array<vec4<f32>, MAXC>;
    for (var i = 0u; i < SR; i++) { a[i] = q4[qi[i] + d]; }
    for (var j = 0u; j < SC; j++) { b[j] = k4[ki[j] + d]; }
    for (var i = 0u; i < SR; i++) {
      for (var j = 0u; j < SC; j++) { s[i * SC + j] += dot(a[i], b[j]); }
    }
  }
  for (var i = 0u; i < SR; i++) {
    let r = srow(lid, i);
    for (var j = 0u; j < SC; j += 4u) {
      let c = vec4<u32>(k0 + c0 + j) + vec4<u32>(0u, 1u, 2u, 3u);
      let ij = i * SC + j;
      let x = vec4<f32>(s[ij], s[ij + 1u], s[ij + 2u], s[ij + 3u]);
      let keep = c <= vec4<u32>(wk.a0 + r);
      tile4A[(r * BK + c0 + j) / 4u] = select(vec4<f32>(NEG), x * p.scale, keep);
    }
  }
}

@compute @workgroup_size(WG)
fn forward_vec(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let wk = work(wg);
  if (!wk.valid) { return; }
  let h = wg.z;
  let g = h / (p.H / p.Hkv);
  let D4 = p.D / 4u;
  let ks4 = p.Hkv * D4;
  for (var r = lid; r < BQ; r += WG) {
    rowM[r] = NEG;
    rowL[r] = 0.0;
  }
  let oc0 = vocol(lid);
  let busy = oc0 < p.D;
  var acc: array<vec4<f32>, MAXO4>; // (OR, OC/4)
  for (var i = 0u; i < OR * OC / 4u; i++) { acc[i] = vec4<f32>(0.0); }
  let nkb = (wk.aend + BK - 1u) / BK;
  for (var kb = 0u; kb < nkb; kb++) {
    let k0 = kb * BK;
    let kend = min(k0 + BK, wk.aend);
    scoresVec(wk, lid, h, g, k0, kend);
    workgroupBarrier();
    // phase 2: running max m, rescale alpha = exp(m_old - m_new), P = exp(s - m_new)
    for (var r = lid; r < BQ; r += WG) {
      let mOld = rowM[r];
      let nj = (kend - k0 + 3u) / 4u; // phase 3 reads no further
      var m4 = vec4<f32>(mOld);
      for (var j = 0u; j < nj; j++) { m4 = max(m4, tile4A[r * BK / 4u + j]); }
      let m = max(max(m4.x, m4.y), max(m4.z, m4.w));
      var sum4 = vec4<f32>(0.0);
      for (var j = 0u; j < nj; j++) {
        let e = exp(tile4A[r * BK / 4u + j] - vec4<f32>(m));
        tile4A[r * BK / 4u + j] = e;
        sum4 += e;
      }
      let alpha = exp(mOld - m);
      rowA[r] = alpha;
      rowL[r] = rowL[r] * alpha + (sum4.x + sum4.y + sum4.z + sum4.w);
      rowM[r] = m;
    }
    workgroupBarrier();
    // phase 3: acc = alpha * acc + P v, four keys per step (P of keys past kend is 0)
    if (busy) {
      for (var i = 0u; i < OR; i++) {
        let alpha = rowA[orow(lid, i)];
        for (var c = 0u; c < OC / 4u; c++) { acc[i * OC / 4u + c] *= alpha; }
      }
      let kc = kend - k0;
      for (var j = 0u; j < kc; j += 4u) {
        var pa: array<vec4<f32>, MAXR>;
        for (var i = 0u; i < OR; i++) { pa[i] = tile4A[(orow(lid, i) * BK + j) / 4u]; }
        for (var e = 0u; e < 4u; e++) {
          let vb = (wk.seg0 + k0 + min(j + e, kc - 1u)) * ks4 + g * D4;
          for (var c = 0u; c < OC / 4u; c++) {
            let vv = v4[vb + min(oc0 / 4u + c, D4 - 1u)];
            for (var i = 0u; i < OR; i++) {
              acc[i * OC / 4u + c] = fma(vec4<f32>(pa[i][e]), vv, acc[i * OC / 4u + c]);
            }
          }
        }
      }
    }
    workgroupBarrier();
  }
  if (busy) {
    for (var i = 0u; i < OR; i++) {
      let r = orow(lid, i);
      if (wk.a0 + r < wk.aend) {
        let inv = 1.0 / rowL[r];
        let ob = (wk.seg0 + wk.a0 + r) * p.H * D4 + h * D4 + oc0 / 4u;
        for (var c = 0u; c < OC / 4u; c++) {
          if (oc0 + 4u * c < p.D) { o4[ob + c] = acc[i * OC / 4u + c] * inv; }
        }
      }
    }
  }
  for (var r = lid; r < BQ; r += WG) {
    if (wk.a0 + r < wk.aend) {
      lse[(wk.seg0 + wk.a0 + r) * p.H + h] = rowM[r] + log(rowL[r]);
    }
  }
}

@compute @workgroup_size(WG)
fn dq_vec(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let wk = work(wg);
  if (!wk.valid) { return; }
  let h = wg.z;
  let g = h / (p.H / p.Hkv);
  let D4 = p.D / 4u;
  let qs4 = p.H * D4;
  let ks4 = p.Hkv * D4;
  for (var r = lid; r < BQ; r += WG) {
    let row = wk.seg0 + min(wk.a0 + r, wk.aend - 1u);
    let ob = row * qs4 + h * D4;
    var ds = vec4<f32>(0.0);
    for (var d = 0u; d < D4; d++) { ds = fma(dO4[ob + d], o4[ob + d], ds); }
    let dsr = ds.x + ds.y + ds.z + ds.w;
    rowL[r] = dsr;
    rowM[r] = lse[row * p.H + h];
    if (wk.a0 + r < wk.aend) { dsum[row * p.H + h] = dsr; }
  }
  workgroupBarrier();
  let c0 = vcol(lid);
  let oc0 = vocol(lid);
  let busy = oc0 < p.D;
  var qi: array<u32, MAXR>;
  for (var i = 0u; i < SR; i++) {
    qi[i] = (wk.seg0 + min(wk.a0 + srow(lid, i), wk.aend - 1u)) * qs4 + h * D4;
  }
  var acc: array<vec4<f32>, MAXO4>;
  for (var i = 0u; i < OR * OC / 4u; i++) { acc[i] = vec4<f32>(0.0); }
  let nkb = (wk.aend + BK - 1u) / BK;
  for (var kb = 0u; kb < nkb; kb++) {
    let k0 = kb * BK;
    let kend = min(k0 + BK, wk.aend);
    // phase 1: s = q . k and dp = dO . v, then dS = P (dp - Dsum)
    var ki: array<u32, MAXC>;
    for (var j = 0u; j < SC; j++) {
      ki[j] = (wk.seg0 + min(k0 + c0 + j, kend - 1u)) * ks4 + g * D4;
    }
    var s: array<f32, MAXS>;
    var dp: array<f32, MAXS>;
    for (var x = 0u; x < SR * SC; x++) {
      s[x] = 0.0;
      dp[x] = 0.0;
    }
    let nd = select(0u, D4, k0 + c0 < kend);
    for (var d = 0u; d < nd; d++) {
      var a: array<vec4<f32>, MAXR>;
      var a2: array<vec4<f32>, MAXR>;
      var b: array<vec4<f32>, MAXC>;
      var b2: array<vec4<f32>, MAXC>;
      for (var i = 0u; i < SR; i++) {
        a[i] = q4[qi[i] + d];
        a2[i] = dO4[qi[i] + d];
      }
      for (var j = 0u; j < SC; j++) {
        b[j] = k4[ki[j] + d];
        b2[j] = v4[ki[j] + d];
      }
      for (var i = 0u; i < SR; i++) {
        for (var j = 0u; j < SC; j++) {
          s[i * SC + j] += dot(a[i], b[j]);
          dp[i * SC + j] += dot(a2[i], b2[j]);
        }
      }
    }
    for (var i = 0u; i < SR; i++) {
      let r = srow(lid, i);
      let lr = rowM[r];
      let dr = rowL[r];
      for (var j = 0u; j < SC; j += 4u) {
        let c = vec4<u32>(k0 + c0 + j) + vec4<u32>(0u, 1u, 2u, 3u);
        let ij = i * SC + j;
        let x = vec4<f32>(s[ij], s[ij + 1u], s[ij + 2u], s[ij + 3u]);
        let y = vec4<f32>(dp[ij], dp[ij + 1u], dp[ij + 2u], dp[ij + 3u]);
        let ds = exp(x * p.scale - vec4<f32>(lr)) * (y - vec4<f32>(dr));
        tile4A[(r * BK + c0 + j) / 4u] = select(vec4<f32>(0.0), ds, c <= vec4<u32>(wk.a0 + r));
      }
    }
    workgroupBarrier();
    // phase 3: dq += dS k
    if (busy) {
      let kc = kend - k0;
      for (var j = 0u; j < kc; j += 4u) {
        var pa: array<vec4<f32>, MAXR>;
        for (var i = 0u; i < OR; i++) { pa[i] = tile4A[(orow(lid, i) * BK + j) / 4u]; }
        for (var e = 0u; e < 4u; e++) {
          let kb0 = (wk.seg0 + k0 + min(j + e, kc - 1u)) * ks4 + g * D4;
          for (var c = 0u; c < OC / 4u; c++) {
            let kv = k4[kb0 + min(oc0 / 4u + c, D4 - 1u)];
            for (var i = 0u; i < OR; i++) {
              acc[i * OC / 4u + c] = fma(vec4<f32>(pa[i][e]), kv, acc[i * OC / 4u + c]);
            }
          }
        }
      }
    }
    workgroupBarrier();
  }
  if (busy) {
    for (var i = 0u; i < OR; i++) {
      let r = orow(lid, i);
      if (wk.a0 + r < wk.aend) {
        let ob = (wk.seg0 + wk.a0 + r) * qs4 + h * D4 + oc0 / 4u;
        for (var c = 0u; c < OC / 4u; c++) {
          if (oc0 + 4u * c < p.D) { dqk4[ob + c] = acc[i * OC / 4u + c] * p.scale; }
        }
      }
    }
  }
}

@compute @workgroup_size(WG)
fn dkdv_vec(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let wk = work(wg); // owned rows are keys u in [a0, aend)
  if (!wk.valid) { return; }
  let g = wg.z;
  let group = p.H / p.Hkv;
  let D4 = p.D / 4u;
  let qs4 = p.H * D4;
  let ks4 = p.Hkv * D4;
  let c0 = vcol(lid);
  let oc0 = vocol(lid);
  let busy = oc0 < p.D;
  var ki: array<u32, MAXR>;
  for (var i = 0u; i < SR; i++) {
    ki[i] = (wk.seg0 + min(wk.a0 + srow(lid, i), wk.aend - 1u)) * ks4 + g * D4;
  }
  var accK: array<vec4<f32>, MAXO4>;
  var accV: array<vec4<f32>, MAXO4>;
  for (var i = 0u; i < OR * OC / 4u; i++) {
    accK[i] = vec4<f32>(0.0);
    accV[i] = vec4<f32>(0.0);
  }
  let t00 = wk.a0; // query blocks start at the first owned key: earlier rows see none
  let nqb = (p.S - t00 + BK - 1u) / BK;
  for (var x = 0u; x < group * nqb; x++) {
    let h = g * group + x / nqb;
    let t0 = t00 + (x % nqb) * BK;
    let tend = min(t0 + BK, p.S);
    // phase 1: s = k . q, dp = v . dO; P = exp(scale s - L_t), dS = P (dp - Dsum_t)
    var ti: array<u32, MAXC>;
    var lt: array<f32, MAXC>;
    var dt: array<f32, MAXC>;
    for (var j = 0u; j < SC; j++) {
      let t = wk.seg0 + min(t0 + c0 + j, tend - 1u);
      ti[j] = t * qs4 + h * D4;
      lt[j] = lse[t * p.H + h];
      dt[j] = dsum[t * p.H + h];
    }
    var s: array<f32, MAXS>;
    var dp: array<f32, MAXS>;
    for (var y = 0u; y < SR * SC; y++) {
      s[y] = 0.0;
      dp[y] = 0.0;
    }
    let nd = select(0u, D4, t0 + c0 < tend);
    for (var d = 0u; d < nd; d++) {
      var a: array<vec4<f32>, MAXR>;
      var a2: array<vec4<f32>, MAXR>;
      var b: array<vec4<f32>, MAXC>;
      var b2: array<vec4<f32>, MAXC>;
      for (var i = 0u; i < SR; i++) {
        a[i] = k4[ki[i] + d];
        a2[i] = v4[ki[i] + d];
      }
      for (var j = 0u; j < SC; j++) {
        b[j] = q4[ti[j] + d];
        b2[j] = dO4[ti[j] + d];
      }
      for (var i = 0u; i < SR; i++) {
        for (var j = 0u; j < SC; j++) {
          s[i * SC + j] += dot(a[i], b[j]);
          dp[i * SC + j] += dot(a2[i], b2[j]);
        }
      }
    }
    for (var i = 0u; i < SR; i++) {
      let r = srow(lid, i);
      for (var j = 0u; j < SC; j += 4u) {
        let t = vec4<u32>(t0 + c0 + j) + vec4<u32>(0u, 1u, 2u, 3u);
        let ok = (t >= vec4<u32>(wk.a0 + r)) & (t < vec4<u32>(tend));
        let ij = i * SC + j;
        let x = vec4<f32>(s[ij], s[ij + 1u], s[ij + 2u], s[ij + 3u]);
        let y = vec4<f32>(dp[ij], dp[ij + 1u], dp[ij + 2u], dp[ij + 3u]);
        let l4 = vec4<f32>(lt[j], lt[j + 1u], lt[j + 2u], lt[j + 3u]);
        let d4 = vec4<f32>(dt[j], dt[j + 1u], dt[j + 2u], dt[j + 3u]);
        let pr = select(vec4<f32>(0.0), exp(x * p.scale - l4), ok);
        tile4A[(r * BK + c0 + j) / 4u] = pr;
        tile4B[(r * BK + c0 + j) / 4u] = pr * (y - d4);
      }
    }
    workgroupBarrier();
    // phase 3: dv += P dO, dk += dS q
    if (busy) {
      let tc = tend - t0;
      for (var j = 0u; j < tc; j += 4u) {
        var pa: array<vec4<f32>, MAXR>;
        var pd: array<vec4<f32>, MAXR>;
        for (var i = 0u; i < OR; i++) {
          pa[i] = tile4A[(orow(lid, i) * BK + j) / 4u];
          pd[i] = tile4B[(orow(lid, i) * BK + j) / 4u];
        }
        for (var e = 0u; e < 4u; e++) {
          let qb = (wk.seg0 + t0 + min(j + e, tc - 1u)) * qs4 + h * D4;
          for (var c = 0u; c < OC / 4u; c++) {
            let col = min(oc0 / 4u + c, D4 - 1u);
            let gv = dO4[qb + col];
            let qv = q4[qb + col];
            for (var i = 0u; i < OR; i++) {
              accV[i * OC / 4u + c] = fma(vec4<f32>(pa[i][e]), gv, accV[i * OC / 4u + c]);
              accK[i * OC / 4u + c] = fma(vec4<f32>(pd[i][e]), qv, accK[i * OC / 4u + c]);
            }
          }
        }
      }
    }
    workgroupBarrier();
  }
  if (busy) {
    for (var i = 0u; i < OR; i++) {
      let r = orow(lid, i);
      if (wk.a0 + r < wk.aend) {
        let ob = (wk.seg0 + wk.a0 + r) * ks4 + g * D4 + oc0 / 4u;
        for (var c = 0u; c < OC / 4u; c++) {
          if (oc0 + 4u * c < p.D) {
            dqk4[ob + c] = accK[i * OC / 4u + c] * p.scale;
            dv4[ob + c] = accV[i * OC / 4u + c];
          }
        }
      }
    }
  }
}
