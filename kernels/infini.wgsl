// Infini-attention compressive memory, forward (Munkhdalai et al. 2024, arXiv 2404.07143).
// For sequence b, KV head g, segment s of S rows, query head h of g's group (g = h / (H / Hkv)):
//   sigma(x)    = ELU(x) + 1
//   A_mem[t, h] = sigma(q_t) M_{s-1} / (sigma(q_t) . z_{s-1})   (one scalar denominator per
//                 row; A_mem = 0 where it is exactly 0, i.e. nothing written yet)
//   A[t, h]     = gm A_mem + ga A_dot, (gm, ga) = (g, 1 - g) learned (mode 0), (0, 1) memory off
//                 (mode 1), (0, 1 - g) read zeroed (mode 2); g = sigmoid(beta_h)
//   linear:  M_s = M_{s-1} + sigma(K_s)^T V_s
//   delta:   M_s = M_{s-1} + sigma(K_s)^T W_s,
//            W_t = V_t - sigma(K_t) M_{s-1} / (sigma(K_t) . z_{s-1})   (0 read where 0)
//   z_s = z_{s-1} + sum_t sigma(K_t)
// Shapes: q, A_dot, A (rows, H*D); k, v, W (rows, Hkv*D); rows = B*nS*S, row (b, s, t) =
// (b*nS + s)*S + t; M_in, M_out (B, Hkv, D, D); z_in, z_out (B, Hkv, D); Mprev (B, Hkv, nS, D, D)
// and zprev (B, Hkv, nS, D) = the state before each segment, saved for the backward.
// Entry points: linear rule `update` (per-segment sigma(K)^T V, all segments in parallel) then
// `scan` (exclusive prefix sum over segments, also run in reverse by the backward); delta rule
// `delta_states` (sequential over segments, parallel over (b, g, 8-column blocks of M)); both
// then `retrieve` (the read fused with the gate).
// Register blocking: a thread owns an 8x8 block held in registers (struct Blk of four mat4x4;
// private arrays indexed in loops live in memory on lavapipe), loads 8 + 8 values per step of
// the reduction and does 64 fused multiply-adds with them. Hot loops contain no inner loop:
// Mesa 22.3 lavapipe ends an invocation's loops after 65535 iterations in total, and the host
// keeps every invocation's total below that (src/ops/infini.ts). Sums run in a fixed order:
// results are reproducible bit for bit.

struct Params {
  B: u32,
  nS: u32,
  S: u32,
  H: u32,
  Hkv: u32,
  mode: u32, // gate mode 0, 1, 2
  reverse: u32, // scan: 1 runs from the last segment to the first (the backward)
  hasBase: u32, // scan: 0 when the base state is zero (no binding to read)
  accDq: u32, // backward only
  accDk: u32,
  accDv: u32,
  nTiles: u32,
  D: u32, // head dim (<= 256)
  s0: u32, // delta_states: this dispatch runs segments s0 .. s1-1
  s1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn sigma4(x: vec4<f32>) -> vec4<f32> {
  return select(exp(x), x + 1.0, x > vec4<f32>(0.0));
}

// (gm, ga): weights of A_mem and A_dot.
fn gate(beta: f32, mode: u32) -> vec2<f32> {
  let g = 1.0 / (1.0 + exp(-beta));
  if (mode == 1u) { return vec2<f32>(0.0, 1.0); }
  if (mode == 2u) { return vec2<f32>(0.0, 1.0 - g); }
  return vec2<f32>(g, 1.0 - g);
}

// x0 + (0, 1, 2, 3), each clamped to `last` (loads past an edge repeat the last valid element;
// their results are dropped at the store).
fn idx4(x0: u32, last: u32) -> vec4<u32> {
  return min(vec4<u32>(x0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));
}

// An 8x8 block: ll = rows 0..3 x columns 0..3, lh = rows 0..3 x columns 4..7, hl, hh the same
// for rows 4..7; matrix column r holds row r's four values.
struct Blk {
  ll: mat4x4<f32>,
  lh: mat4x4<f32>,
  hl: mat4x4<f32>,
  hh: mat4x4<f32>,
}

fn outer4(m: mat4x4<f32>, a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(
    fma(vec4<f32>(a.x), b, m[0]),
    fma(vec4<f32>(a.y), b, m[1]),
    fma(vec4<f32>(a.z), b, m[2]),
    fma(vec4<f32>(a.w), b, m[3]),
  );
}

// k + a b^T, a = the rows' factors (a0 rows 0..3, a1 rows 4..7), b = the columns'.
fn blk_fma(k: Blk, a0: vec4<f32>, a1: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>) -> Blk {
  return Blk(
    outer4(k.ll, a0, b0),
    outer4(k.lh, a0, b1),
    outer4(k.hl, a1, b0),
    outer4(k.hh, a1, b1),
  );
}

fn blk_zero() -> Blk {
  return Blk(mat4x4<f32>(), mat4x4<f32>(), mat4x4<f32>(), mat4x4<f32>());
}

// Epilogues: a loop over the 8 rows (unrolled, so the rows are picked with constant indices)
// calls a per-row function whose loop over columns starts at a run-time value, so that it
// stays a loop. Fully unrolled 8x8 epilogues of masked loads and stores (or an array indexed in
// a loop) cost lavapipe's compiler tens of seconds per entry point.

// Row r of a block (r < 4: ll, lh; else hl, hh).
fn blk_lo(k: Blk, r: u32) -> vec4<f32> {
  if (r < 4u) { return k.ll[r]; }
  return k.hl[r - 4u];
}

fn blk_hi(k: Blk, r: u32) -> vec4<f32> {
  if (r < 4u) { return k.lh[r]; }
  return k.hh[r - 4u];
}

// Element r of the 8-vector (lo, hi).
fn pick(lo: vec4<f32>, hi: vec4<f32>, r: u32) -> f32 {
  if (r < 4u) { return lo[r]; }
  return hi[r - 4u];
}

// ---- update: U_s = sigma(K_s)^T V_s (D, D) and sum_t sigma(K_s,t) (D) per (b, g, s), written
// into the slots that `scan` turns into states. Thread: an 8x8 block of U (i rows, j columns);
// workgroup 8x8 threads = a 64x64 tile. Grid (ceil(D/64), ceil(D/64), B*Hkv*nS).
@group(0) @binding(1) var<storage, read> up_k: array<f32>; // (rows, Hkv*D)
@group(0) @binding(2) var<storage, read> up_v: array<f32>; // (rows, Hkv*D)
@group(0) @binding(3) var<storage, read_write> up_M: array<f32>; // (B, Hkv, nS, D, D)
@group(0) @binding(4) var<storage, read_write> up_z: array<f32>; // (B, Hkv, nS, D)

fn up_k4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(up_k[o.x], up_k[o.y], up_k[o.z], up_k[o.w]);
}

fn up_v4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(up_v[o.x], up_v[o.y], up_v[o.z], up_v[o.w]);
}

@compute @workgroup_size(8, 8, 1)
fn update(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let D = p.D;
  let i0 = (wg.y * 8u + lid.y) * 8u;
  let j0 = (wg.x * 8u + lid.x) * 8u;
  if (i0 >= D || j0 >= D) { return; }
  let bgs = wg.z;
  let s = bgs % p.nS;
  let bg = bgs / p.nS;
  let g = bg % p.Hkv;
  let b = bg / p.Hkv;
  let KD = p.Hkv * D;
  let row0 = (b * p.nS + s) * p.S;
  let ci0 = g * D + idx4(i0, D - 1u);
  let ci1 = g * D + idx4(i0 + 4u, D - 1u);
  let cj0 = g * D + idx4(j0, D - 1u);
  let cj1 = g * D + idx4(j0 + 4u, D - 1u);
  var acc = blk_zero();
  var z0 = vec4<f32>(0.0);
  var z1 = vec4<f32>(0.0);
  for (var t = 0u; t < p.S; t++) {
    let o = (row0 + t) * KD;
    let u0 = sigma4(up_k4(ci0 + o));
    let u1 = sigma4(up_k4(ci1 + o));
    acc = blk_fma(acc, u0, u1, up_v4(cj0 + o), up_v4(cj1 + o));
    z0 += u0;
    z1 += u1;
  }
  let e = vec3<u32>(i0, j0, bgs);
  for (var r = 0u; r < 8u; r++) {
    up_row(e, r, blk_lo(acc, r), blk_hi(acc, r), pick(z0, z1, r));
  }
}

// Row r of update's block; e = (i0, j0, bgs).
fn up_row(e: vec3<u32>, r: u32, lo: vec4<f32>, hi: vec4<f32>, z: f32) {
  let D = p.D;
  let i = e.x + r;
  if (i >= D) { return; }
  for (var j = e.y; j < min(e.y + 8u, D); j++) {
    up_M[(e.z * D + i) * D + j] = pick(lo, hi, j - e.y);
  }
  if (e.y == 0u) { up_z[e.z * D + i] = z; }
}

// ---- scan: per element e of (M, z) of each (b, g), over the segment slots in order
// (reverse = 0) or backwards (reverse = 1):
//   running = base; for each slot: x = slot; slot = running; running += x; out = running
// Forward: base M_in, slots U_s -> M_{s-1}, out M_out. Backward: base dM_out, slots (the
// gradient the reads of segment s send to M_{s-1}) -> gradient w.r.t. M_s, out dM_in.
// One thread per element; grid (ceil((D*D + D) / 64), B*Hkv).
@group(0) @binding(1) var<storage, read> sc_baseM: array<f32>; // (B, Hkv, D, D)
@group(0) @binding(2) var<storage, read> sc_basez: array<f32>; // (B, Hkv, D)
@group(0) @binding(3) var<storage, read_write> sc_M: array<f32>; // (B, Hkv, nS, D, D)
@group(0) @binding(4) var<storage, read_write> sc_z: array<f32>; // (B, Hkv, nS, D)
@group(0) @binding(5) var<storage, read_write> sc_outM: array<f32>; // (B, Hkv, D, D)
@group(0) @binding(6) var<storage, read_write> sc_outz: array<f32>; // (B, Hkv, D)

@compute @workgroup_size(64, 1, 1)
fn scan(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
  let D = p.D;
  let e = gid.x;
  let bg = wg.y;
  let DD = D * D;
  if (e >= DD + D) { return; }
  if (e < DD) {
    var running = 0.0;
    if (p.hasBase != 0u) { running = sc_baseM[bg * DD + e]; }
    for (var n = 0u; n < p.nS; n++) {
      let s = select(n, p.nS - 1u - n, p.reverse != 0u);
      let at = (bg * p.nS + s) * DD + e;
      let x = sc_M[at];
      sc_M[at] = running;
      running += x;
    }
    sc_outM[bg * DD + e] = running;
  } else {
    let i = e - DD;
    var running = 0.0;
    if (p.hasBase != 0u) { running = sc_basez[bg * D + i]; }
    for (var n = 0u; n < p.nS; n++) {
      let s = select(n, p.nS - 1u - n, p.reverse != 0u);
      let at = (bg * p.nS + s) * D + i;
      let x = sc_z[at];
      sc_z[at] = running;
      running += x;
    }
    sc_outz[bg * D + i] = running;
  }
}

// ---- retrieve: A = gm sigma(q) M_{s-1} / (sigma(q) . z_{s-1}) + ga A_dot. Thread: 8 rows x 8
// columns; workgroup 8x8 threads = 64 rows of one segment x 64 columns of one head.
// Grid (ceil(D/64), ceil(S/64)*B*nS, H). Modes 1 and 2 skip the read entirely.
@group(0) @binding(1) var<storage, read> rt_q: array<f32>; // (rows, H*D)
@group(0) @binding(2) var<storage, read> rt_adot: array<f32>; // (rows, H*D)
@group(0) @binding(3) var<storage, read> rt_beta: array<f32>; // (H)
@group(0) @binding(4) var<storage, read> rt_M: array<f32>; // Mprev (B, Hkv, nS, D, D)
@group(0) @binding(5) var<storage, read> rt_z: array<f32>; // zprev (B, Hkv, nS, D)
@group(0) @binding(6) var<storage, read_write> rt_A: array<f32>; // (rows, H*D)

fn rt_q4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(rt_q[o.x], rt_q[o.y], rt_q[o.z], rt_q[o.w]);
}

fn rt_M4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(rt_M[o.x], rt_M[o.y], rt_M[o.z], rt_M[o.w]);
}

// Workgroup of retrieve: CX threads along columns (8 each, CX = min(8, ceil(D / 8))) by RY
// along 8-row blocks (RY = 64 / CX). The blocks are numbered over all segments, so a
// workgroup may span segments: every thread finds its own segment (small D, short S waste
// nothing).
override CX: u32 = 8u;
override RY: u32 = 8u;

@compute @workgroup_size(CX, RY, 1)
fn retrieve(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let D = p.D;
  let bps = (p.S + 7u) / 8u; // 8-row blocks per segment
  let blk = wg.y * RY + lid.y;
  let bs = blk / bps; // b*nS + s
  let t0 = (blk % bps) * 8u;
  let j0 = (wg.x * CX + lid.x) * 8u;
  if (bs >= p.B * p.nS || j0 >= D) { return; }
  let h = wg.z;
  let g = h / (p.H / p.Hkv);
  let b = bs / p.nS;
  let s = bs % p.nS;
  let bgs = (b * p.Hkv + g) * p.nS + s;
  let HD = p.H * D;
  let gw = gate(rt_beta[h], p.mode);
  var acc = blk_zero();
  var den0 = vec4<f32>(0.0);
  var den1 = vec4<f32>(0.0);
  if (gw.x != 0.0) {
    let ro0 = (bs * p.S + idx4(t0, p.S - 1u)) * HD + h * D;
    let ro1 = (bs * p.S + idx4(t0 + 4u, p.S - 1u)) * HD + h * D;
    let mo0 = bgs * D * D + idx4(j0, D - 1u);
    let mo1 = bgs * D * D + idx4(j0 + 4u, D - 1u);
    let zo = bgs * D;
    for (var i = 0u; i < D; i++) {
      let zi = vec4<f32>(rt_z[zo + i]);
      let u0 = sigma4(rt_q4(ro0 + i));
      let u1 = sigma4(rt_q4(ro1 + i));
      den0 = fma(u0, zi, den0);
      den1 = fma(u1, zi, den1);
      acc = blk_fma(acc, u0, u1, rt_M4(mo0 + i * D), rt_M4(mo1 + i * D));
    }
  }
  let e = vec4<u32>(t0, j0, bs, h);
  for (var r = 0u; r < 8u; r++) {
    rt_row(e, gw, r, blk_lo(acc, r), blk_hi(acc, r), pick(den0, den1, r));
  }
}

// Row r of retrieve's block; e = (t0, j0, b*nS + s, h), gw = (gm, ga).
fn rt_row(e: vec4<u32>, gw: vec2<f32>, r: u32, lo: vec4<f32>, hi: vec4<f32>, den: f32) {
  let D = p.D;
  if (e.x + r >= p.S) { return; }
  var inv = 0.0;
  if (den != 0.0) { inv = 1.0 / den; }
  let o = (e.z * p.S + e.x + r) * p.H * D + e.w * D;
  for (var j = e.y; j < min(e.y + 8u, D); j++) {
    rt_A[o + j] = gw.x * (pick(lo, hi, j - e.y) * inv) + gw.y * rt_adot[o + j];
  }
}

// ---- delta_states: the delta rule's states, sequential over segments s0 .. s1-1 (the host
// splits nS over several dispatches to respect the loop limit; the state is carried in the
// Mprev / zprev slots). Columns of M are independent given z, so one workgroup owns 8 columns
// j0..j0+7 of M for one (b, g) and keeps its own copy of z (every workgroup computes it
// identically). Per segment:
//   phase A (threads over 8-row blocks): W_t = V_t - sigma(K_t) M_{s-1}[:, j] / (sigma(K_t) . z)
//   phase B (threads over 8-row blocks of M): M_s = M_{s-1} + sigma(K)^T W, z_s = z + sum sigma(K)
// Grid (ceil(D/8), B*Hkv); workgroup 64 threads.
@group(0) @binding(1) var<storage, read> dl_k: array<f32>; // (rows, Hkv*D)
@group(0) @binding(2) var<storage, read> dl_v: array<f32>; // (rows, Hkv*D)
@group(0) @binding(3) var<storage, read> dl_Min: array<f32>; // (B, Hkv, D, D)
@group(0) @binding(4) var<storage, read> dl_zin: array<f32>; // (B, Hkv, D)
@group(0) @binding(5) var<storage, read_write> dl_M: array<f32>; // Mprev (B, Hkv, nS, D, D)
@group(0) @binding(6) var<storage, read_write> dl_z: array<f32>; // zprev (B, Hkv, nS, D)
@group(0) @binding(7) var<storage, read_write> dl_Mout: array<f32>; // (B, Hkv, D, D)
@group(0) @binding(8) var<storage, read_write> dl_zout: array<f32>; // (B, Hkv, D)
@group(0) @binding(9) var<storage, read_write> dl_W: array<f32>; // (rows, Hkv*D)

var<workgroup> dl_zs: array<f32, 256>; // z_{s-1} (D)

fn dl_k4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(dl_k[o.x], dl_k[o.y], dl_k[o.z], dl_k[o.w]);
}

fn dl_M4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(dl_M[o.x], dl_M[o.y], dl_M[o.z], dl_M[o.w]);
}

fn dl_W4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(dl_W[o.x], dl_W[o.y], dl_W[o.z], dl_W[o.w]);
}

@compute @workgroup_size(64, 1, 1)
fn delta_states(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let D = p.D;
  let l = lid.x;
  let j0 = wg.x * 8u;
  let bg = wg.y;
  let b = bg / p.Hkv;
  let g = bg % p.Hkv;
  let KD = p.Hkv * D;
  let DD = D * D;
  // State before segment s0: M_in / z_in (copied into slot 0) or the previous dispatch's slot.
  for (var i = l; i < D; i += 64u) {
    if (p.s0 == 0u) {
      dl_zs[i] = dl_zin[bg * D + i];
      if (wg.x == 0u) { dl_z[bg * p.nS * D + i] = dl_zs[i]; }
      for (var c = 0u; c < 8u; c++) {
        if (j0 + c < D) {
          dl_M[bg * p.nS * DD + i * D + j0 + c] = dl_Min[bg * DD + i * D + j0 + c];
        }
      }
    } else {
      dl_zs[i] = dl_z[(bg * p.nS + p.s0) * D + i];
    }
  }
  storageBarrier();
  workgroupBarrier();
  let cj0 = idx4(j0, D - 1u);
  let cj1 = idx4(j0 + 4u, D - 1u);
  let nRB = (p.S + 7u) / 8u;
  for (var s = p.s0; s < p.s1; s++) {
    let bgs = bg * p.nS + s;
    let row0 = (b * p.nS + s) * p.S;
    let mb = bgs * DD;
    // Phase A: the rows' retrieval from M_{s-1}, subtracted from V.
    for (var rb = l; rb < nRB; rb += 64u) {
      let t0 = rb * 8u;
      let ko0 = (row0 + idx4(t0, p.S - 1u)) * KD + g * D;
      let ko1 = (row0 + idx4(t0 + 4u, p.S - 1u)) * KD + g * D;
      var acc = blk_zero();
      var den0 = vec4<f32>(0.0);
      var den1 = vec4<f32>(0.0);
      for (var i = 0u; i < D; i++) {
        let zi = vec4<f32>(dl_zs[i]);
        let u0 = sigma4(dl_k4(ko0 + i));
        let u1 = sigma4(dl_k4(ko1 + i));
        den0 = fma(u0, zi, den0);
        den1 = fma(u1, zi, den1);
        acc = blk_fma(acc, u0, u1, dl_M4(mb + i * D + cj0), dl_M4(mb + i * D + cj1));
      }
      let e = vec4<u32>(row0, t0, g * D, j0);
      for (var r = 0u; r < 8u; r++) {
        dl_wrow(e, r, blk_lo(acc, r), blk_hi(acc, r), pick(den0, den1, r));
      }
    }
    storageBarrier();
    workgroupBarrier();
    // Phase B: M_s = M_{s-1} + sigma(K)^T W for rows i0..i0+7 of this column block.
    let i0 = l * 8u;
    if (i0 < D) {
      let ci0 = idx4(i0, D - 1u);
      let ci1 = idx4(i0 + 4u, D - 1u);
      var acc = blk_zero();
      var z0 = vec4<f32>(0.0);
      var z1 = vec4<f32>(0.0);
      for (var t = 0u; t < p.S; t++) {
        let o = (row0 + t) * KD + g * D;
        let u0 = sigma4(dl_k4(o + ci0));
        let u1 = sigma4(dl_k4(o + ci1));
        acc = blk_fma(acc, u0, u1, dl_W4(o + cj0), dl_W4(o + cj1));
        z0 += u0;
        z1 += u1;
      }
      let e = vec4<u32>(i0, j0, bg, s);
      for (var r = 0u; r < 8u; r++) {
        dl_mrow(e, r, blk_lo(acc, r), blk_hi(acc, r), pick(z0, z1, r));
      }
    }
    storageBarrier();
    workgroupBarrier();
  }
}

// Row t0 + r of phase A: W = V - retrieval; e = (segment's first row, t0, g*D, j0).
fn dl_wrow(e: vec4<u32>, r: u32, lo: vec4<f32>, hi: vec4<f32>, den: f32) {
  let D = p.D;
  if (e.y + r >= p.S) { return; }
  var inv = 0.0;
  if (den != 0.0) { inv = 1.0 / den; }
  let o = (e.x + e.y + r) * p.Hkv * D + e.z;
  for (var j = e.w; j < min(e.w + 8u, D); j++) {
    dl_W[o + j] = dl_v[o + j] - pick(lo, hi, j - e.w) * inv;
  }
}

// Row i0 + r of phase B: M_s = M_{s-1} + block, z_s = z_{s-1} + zsum; e = (i0, j0, b*Hkv + g, s).
// The workgroup that owns columns 0..7 also writes z.
fn dl_mrow(e: vec4<u32>, r: u32, lo: vec4<f32>, hi: vec4<f32>, zsum: f32) {
  let D = p.D;
  let DD = D * D;
  let i = e.x + r;
  if (i >= D) { return; }
  let bgs = e.z * p.nS + e.w;
  let last = e.w + 1u == p.nS;
  for (var j = e.y; j < min(e.y + 8u, D); j++) {
    let m = dl_M[bgs * DD + i * D + j] + pick(lo, hi, j - e.y);
    if (last) { dl_Mout[e.z * DD + i * D + j] = m; } else { dl_M[(bgs + 1u) * DD + i * D + j] = m; }
  }
  let zn = dl_zs[i] + zsum;
  dl_zs[i] = zn;
  if (e.y == 0u) {
    if (last) { dl_zout[e.z * D + i] = zn; } else { dl_z[(bgs + 1u) * D + i] = zn; }
  }
}
