// Infini-attention compressive memory, backward (forward and notation: kernels/infini.wgsl).
// Given dA (rows, H*D) and the gradient dM_out, dz_out arriving at the final state:
//   dA_dot = ga dA
//   read, per query row (u = sigma(q), den = u . z_{s-1}, a = A_mem, w = M_{s-1} dA):
//     e = dA . a = (u . w) / den
//     dq     = sigma'(q) * gm (w - e z_{s-1}) / den
//     dM_{s-1} += u^T (gm / den) dA,   dz_{s-1} += u (-gm e / den)          (0 where den = 0)
//     dbeta_h  += g (1 - g) (e - dA . A_dot)  learned;  -g (1 - g) dA . A_dot  read zeroed
//   write, with G_s, gz_s = gradient w.r.t. the state after segment s:
//     dW_t = sigma(K_t) G_s          linear: dv_t = dW_t,  dsigma(K_t) = G_s V_t + gz_s
//     delta: dv_t = dW_t; W = V - R with R_t = sigma(K_t) M_{s-1} / den_t is a read with upstream
//       dR = -dW: with dRs_t = dR_t / den_t and eps_t = dRs_t . R_t,
//       dsigma(K_t) = G_s W_t + gz_s + M_{s-1} dRs_t - eps_t z_{s-1},
//       dM_{s-1} += sigma(K)^T dRs,  dz_{s-1} -= sum_t sigma(K_t) eps_t
//   G_{s-1} = G_s + (what segment s's reads and writes send to M_{s-1}), G_{nS-1} = dM_out;
//   dM_in = G_{-1}. The gradient flows through every segment (no detaching).
// Entry points, in recording order:
//   retrieve_bwd   dq, dA_dot, per-row coefficients (gm/den, -gm e/den), dbeta partials per tile
//   state_grads    per segment: sum over its rows and the group's heads of u^T (gm/den) dA and
//                  u (-gm e/den) into the G slots; one extra slice sums the dbeta partials
//   linear: scan (kernels/infini.wgsl, reverse) turns the slots into G_s, gz_s; kv_bwd_linear
//   delta:  delta_bwd (sequential G over segments per 8-column block; dv, dRs), delta_zgrad
//           (eps, sequential gz), kv_bwd_delta. The sequential kernels run the segments
//           s1-1 down to s0 per dispatch and carry G, gz in dM_in, dz_in between dispatches.
// Register blocking and the loop limit as in kernels/infini.wgsl. Every reduction runs in a
// fixed order (no atomics): results are reproducible bit for bit. Scratch tensors are views of
// one work buffer; a dispatch that writes one of them declares its other scratch bindings
// read_write too (WebGPU rejects read-only and writable usage of one buffer in one dispatch).

struct Params {
  B: u32,
  nS: u32,
  S: u32,
  H: u32,
  Hkv: u32,
  mode: u32, // gate mode 0 learned, 1 memory off, 2 read zeroed
  reverse: u32, // forward scan only
  hasBase: u32, // 1 when dM_out / dz_out are given
  accDq: u32, // 1: dq += (else dq =)
  accDk: u32,
  accDv: u32,
  nTiles: u32, // retrieve_bwd workgroups along x (= row tiles of 64 over all segments)
  D: u32, // head dim (<= 256)
  s0: u32, // delta_bwd, delta_zgrad: this dispatch runs segments s1-1 down to s0
  s1: u32,
}

// Threads per row in retrieve_bwd: one per 8 columns of the head dim, ceil(D / 8) (<= 32), by
// RB 8-row blocks (RB = floor(64 / DB)).
override DB: u32 = 8u;
override RB: u32 = 8u;
// kv_bwd_linear, kv_bwd_delta: CX threads along columns (min(8, ceil(D / 8))) by RY 8-row
// blocks (64 / CX), as retrieve in kernels/infini.wgsl.
override CX: u32 = 8u;
override RY: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;

fn sigma(x: f32) -> f32 {
  return select(exp(x), x + 1.0, x > 0.0);
}

fn sigma4(x: vec4<f32>) -> vec4<f32> {
  return select(exp(x), x + 1.0, x > vec4<f32>(0.0));
}

// sigma'(x) from s = sigma(x): 1 for x > 0 (s > 1), exp(x) = s otherwise.
fn dsig(s: f32) -> f32 {
  return min(s, 1.0);
}

// (gm, ga, g): weights of A_mem and A_dot, and sigmoid(beta).
fn gate(beta: f32, mode: u32) -> vec3<f32> {
  let g = 1.0 / (1.0 + exp(-beta));
  if (mode == 1u) { return vec3<f32>(0.0, 1.0, g); }
  if (mode == 2u) { return vec3<f32>(0.0, 1.0 - g, g); }
  return vec3<f32>(g, 1.0 - g, g);
}

fn idx4(x0: u32, last: u32) -> vec4<u32> {
  return min(vec4<u32>(x0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));
}

// An 8x8 block in registers, as in kernels/infini.wgsl.
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

// Row r of a block (r < 4: ll, lh; else hl, hh).
fn blk_lo(k: Blk, r: u32) -> vec4<f32> {
  if (r < 4u) { return k.ll[r]; }
  return k.hl[r - 4u];
}

fn blk_hi(k: Blk, r: u32) -> vec4<f32> {
  if (r < 4u) { return k.lh[r]; }
  return k.hh[r - 4u];
}

fn pick(lo: vec4<f32>, hi: vec4<f32>, r: u32) -> f32 {
  if (r < 4u) { return lo[r]; }
  return hi[r - 4u];
}

// ---- retrieve_bwd: one workgroup per (RB blocks of 8 rows, head h), the blocks numbered over
// all segments (a workgroup may span segments; each thread finds its own); thread (x, y) owns
// the rows of block y and columns 8x..8x+7, as i (for dq) and as j (for dA_dot). Row sums over
// all D columns (den, u . w, dA . A_dot) go through workgroup memory, added in column order.
// Grid (nTiles = ceil(B*nS*ceil(S/8) / RB), H); workgroup (DB, RB).
@group(0) @binding(1) var<storage, read> rb_q: array<f32>; // (rows, H*D)
@group(0) @binding(2) var<storage, read> rb_adot: array<f32>; // (rows, H*D)
@group(0) @binding(3) var<storage, read> rb_beta: array<f32>; // (H)
@group(0) @binding(4) var<storage, read> rb_M: array<f32>; // Mprev (B, Hkv, nS, D, D)
@group(0) @binding(5) var<storage, read> rb_z: array<f32>; // zprev (B, Hkv, nS, D)
@group(0) @binding(6) var<storage, read> rb_dA: array<f32>; // (rows, H*D)
@group(0) @binding(7) var<storage, read_write> rb_dadot: array<f32>; // (rows, H*D)
@group(0) @binding(8) var<storage, read_write> rb_dq: array<f32>; // (rows, H*D)
@group(0) @binding(9) var<storage, read_write> rb_coef: array<f32>; // (rows, H, 2)
@group(0) @binding(10) var<storage, read_write> rb_dbpart: array<f32>; // (H, nTiles)

var<workgroup> rb_pden: array<f32, 512>; // [8 RB rows][DB column threads], DB * RB <= 64
var<workgroup> rb_puw: array<f32, 512>;
var<workgroup> rb_pad: array<f32, 512>;
var<workgroup> rb_pdg: array<f32, 512>; // [8 RB rows]

fn rb_dA4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(rb_dA[o.x], rb_dA[o.y], rb_dA[o.z], rb_dA[o.w]);
}

fn rb_M4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(rb_M[o.x], rb_M[o.y], rb_M[o.z], rb_M[o.w]);
}

@compute @workgroup_size(DB, RB, 1)
fn retrieve_bwd(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let D = p.D;
  let bps = (p.S + 7u) / 8u;
  let total = p.B * p.nS * bps;
  // Threads past the last block take part in the barriers with every row invalid (t0 = S).
  let blk = wg.x * RB + lid.y;
  let bs = min(blk, total - 1u) / bps; // b*nS + s
  let t0 = select(p.S, (blk % bps) * 8u, blk < total);
  let i0 = lid.x * 8u;
  let h = wg.y;
  let g = h / (p.H / p.Hkv);
  let b = bs / p.nS;
  let s = bs % p.nS;
  let bgs = (b * p.Hkv + g) * p.nS + s;
  let HD = p.H * D;
  let gw = gate(rb_beta[h], p.mode);
  // Rows past S and columns past D are clamped for the loads.
  let ro0 = (bs * p.S + idx4(t0, p.S - 1u)) * HD + h * D;
  let ro1 = (bs * p.S + idx4(t0 + 4u, p.S - 1u)) * HD + h * D;
  let mb = bgs * D * D;
  // w = M_{s-1} dA for this thread's rows (t) and columns (i).
  var acc = blk_zero();
  if (gw.x != 0.0) {
    let mi0 = mb + idx4(i0, D - 1u) * D;
    let mi1 = mb + idx4(i0 + 4u, D - 1u) * D;
    for (var j = 0u; j < D; j++) {
      acc = blk_fma(acc, rb_dA4(ro0 + j), rb_dA4(ro1 + j), rb_M4(mi0 + j), rb_M4(mi1 + j));
    }
  }
  // Partial den = u . z, u . w and dA . A_dot over this thread's columns; dA_dot.
  let e = vec4<u32>(t0, i0, bgs, lid.x + DB * lid.y * 8u);
  let gv = vec3<f32>(gw.x, gw.y, 0.0);
  for (var r = 0u; r < 8u; r++) {
    rb_part(e, gv, r, select(ro1[r % 4u], ro0[r % 4u], r < 4u), blk_lo(acc, r), blk_hi(acc, r));
  }
  workgroupBarrier();
  let f = vec4<u32>(t0, i0, bgs, bs * p.S * p.H + h);
  let wrow = lid.y * 8u;
  for (var r = 0u; r < 8u; r++) {
    let ro = select(ro1[r % 4u], ro0[r % 4u], r < 4u);
    rb_grad(f, gw.x, wrow, r, ro, blk_lo(acc, r), blk_hi(acc, r), lid.x == 0u);
  }
  workgroupBarrier();
  if (lid.x == 0u && lid.y == 0u) {
    var sum = 0.0;
    for (var r = 0u; r < 8u * RB; r++) { sum += rb_pdg[r]; }
    rb_dbpart[h * p.nTiles + wg.x] = sum * gw.z * (1.0 - gw.z);
  }
}

// Row t0 + r before the barrier: this thread's share of den = u . z, u . w, dA . A_dot (to
// workgroup memory at slot e.w + DB r) and dA_dot = ga dA. e = (t0, i0, bgs, slot of row 0);
// ro = the row's offset in q; (wlo, whi) = w for columns i0..i0+7; gv = (gm, ga, _).
fn rb_part(e: vec4<u32>, gv: vec3<f32>, r: u32, ro: u32, wlo: vec4<f32>, whi: vec4<f32>) {
  let D = p.D;
  let valid = e.x + r < p.S;
  var pd = 0.0;
  var pu = 0.0;
  var pa = 0.0;
  for (var i = e.y; i < min(e.y + 8u, D); i++) {
    let uu = sigma(rb_q[ro + i]);
    pd = fma(uu, rb_z[e.z * D + i], pd);
    pu = fma(uu, pick(wlo, whi, i - e.y), pu);
    let d = rb_dA[ro + i];
    pa = fma(d, rb_adot[ro + i], pa);
    if (valid) { rb_dadot[ro + i] = gv.y * d; }
  }
  let slot = e.w + DB * r;
  rb_pden[slot] = pd;
  rb_puw[slot] = pu;
  rb_pad[slot] = pa;
}

// Row t0 + r after the barrier: the row sums (in column-thread order), dq for columns
// i0..i0+7, and (first column thread) the row's coefficients and dbeta term.
// f = (t0, i0, bgs, (b*nS + s)*S*H + h); wrow = the thread's first row in the tile.
fn rb_grad(
  f: vec4<u32>,
  gm: f32,
  wrow: u32,
  r: u32,
  ro: u32,
  wlo: vec4<f32>,
  whi: vec4<f32>,
  first: bool,
) {
  let D = p.D;
  let row = wrow + r;
  var den = 0.0;
  var uw = 0.0;
  var ad = 0.0;
  for (var x = 0u; x < DB; x++) {
    den += rb_pden[row * DB + x];
    uw += rb_puw[row * DB + x];
    ad += rb_pad[row * DB + x];
  }
  var e = 0.0;
  var cM = 0.0;
  var cz = 0.0;
  if (den != 0.0 && gm != 0.0) {
    let inv = 1.0 / den;
    e = uw * inv;
    cM = gm * inv;
    cz = -cM * e;
  }
  let valid = f.x + r < p.S;
  if (valid) {
    for (var i = f.y; i < min(f.y + 8u, D); i++) {
      let o = ro + i;
      var d = cM * (pick(wlo, whi, i - f.y) - e * rb_z[f.z * D + i]) * dsig(sigma(rb_q[o]));
      if (p.accDq != 0u) { d += rb_dq[o]; }
      rb_dq[o] = d;
    }
  }
  if (first) {
    if (valid) {
      let crow = f.w + (f.x + r) * p.H;
      rb_coef[crow * 2u] = cM;
      rb_coef[crow * 2u + 1u] = cz;
    }
    // dA/dg: learned A_mem - A_dot; read zeroed -A_dot; memory off 0.
    let cm = select(0.0, 1.0, p.mode == 0u);
    let ca = select(1.0, 0.0, p.mode == 1u);
    rb_pdg[row] = select(0.0, cm * e - ca * ad, valid);
  }
}

// ---- state_grads: per (b, g, s), over the S rows and the group's query heads:
//   slot_M[i, j] = sum u_i coef0 dA_j     slot_z[i] = sum u_i coef1
// Thread: an 8x8 block (i, j); workgroup 8x8 threads. Grid (ceil(D/64), ceil(D/64),
// B*Hkv*nS + 1): the extra slice's first workgroup adds the dbeta partials, in tile order.
@group(0) @binding(1) var<storage, read> sg_q: array<f32>; // (rows, H*D)
@group(0) @binding(2) var<storage, read> sg_dA: array<f32>; // (rows, H*D)
@group(0) @binding(3) var<storage, read_write> sg_coef: array<f32>; // (rows, H, 2)
@group(0) @binding(4) var<storage, read_write> sg_dbpart: array<f32>; // (H, nTiles)
@group(0) @binding(5) var<storage, read_write> sg_M: array<f32>; // (B, Hkv, nS, D, D)
@group(0) @binding(6) var<storage, read_write> sg_z: array<f32>; // (B, Hkv, nS, D)
@group(0) @binding(7) var<storage, read_write> sg_dbeta: array<f32>; // (H), +=

fn sg_q4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(sg_q[o.x], sg_q[o.y], sg_q[o.z], sg_q[o.w]);
}

fn sg_dA4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(sg_dA[o.x], sg_dA[o.y], sg_dA[o.z], sg_dA[o.w]);
}

@compute @workgroup_size(8, 8, 1)
fn state_grads(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let D = p.D;
  let nBGS = p.B * p.Hkv * p.nS;
  if (wg.z == nBGS) {
    if (wg.x == 0u && wg.y == 0u) {
      for (var h = lid.y * 8u + lid.x; h < p.H; h += 64u) {
        var sum = 0.0;
        for (var n = 0u; n < p.nTiles; n++) { sum += sg_dbpart[h * p.nTiles + n]; }
        sg_dbeta[h] += sum;
      }
    }
    return;
  }
  let i0 = (wg.y * 8u + lid.y) * 8u;
  let j0 = (wg.x * 8u + lid.x) * 8u;
  if (i0 >= D || j0 >= D) { return; }
  let bgs = wg.z;
  let s = bgs % p.nS;
  let bg = bgs / p.nS;
  let g = bg % p.Hkv;
  let b = bg / p.Hkv;
  let HD = p.H * D;
  let grp = p.H / p.Hkv;
  let row0 = (b * p.nS + s) * p.S;
  var acc = blk_zero();
  var z0 = vec4<f32>(0.0);
  var z1 = vec4<f32>(0.0);
  // Only the learned gate reads memory; otherwise the reads send nothing to the state.
  if (p.mode == 0u) {
    let ci0 = idx4(i0, D - 1u);
    let ci1 = idx4(i0 + 4u, D - 1u);
    let cj0 = idx4(j0, D - 1u);
    let cj1 = idx4(j0 + 4u, D - 1u);
    // Rows and heads of the group in one loop: n = hh * S + t.
    for (var n = 0u; n < grp * p.S; n++) {
      let hh = n / p.S;
      let row = row0 + n - hh * p.S;
      let h = g * grp + hh;
      let c0 = vec4<f32>(sg_coef[(row * p.H + h) * 2u]);
      let c1 = vec4<f32>(sg_coef[(row * p.H + h) * 2u + 1u]);
      let o = row * HD + h * D;
      let u0 = sigma4(sg_q4(o + ci0));
      let u1 = sigma4(sg_q4(o + ci1));
      acc = blk_fma(acc, u0, u1, c0 * sg_dA4(o + cj0), c0 * sg_dA4(o + cj1));
      z0 = fma(u0, c1, z0);
      z1 = fma(u1, c1, z1);
    }
  }
  let e = vec3<u32>(i0, j0, bgs);
  for (var r = 0u; r < 8u; r++) {
    sg_row(e, r, blk_lo(acc, r), blk_hi(acc, r), pick(z0, z1, r));
  }
}

// Row i0 + r of the slot block; e = (i0, j0, bgs).
fn sg_row(e: vec3<u32>, r: u32, lo: vec4<f32>, hi: vec4<f32>, z: f32) {
  let D = p.D;
  let i = e.x + r;
  if (i >= D) { return; }
  for (var j = e.y; j < min(e.y + 8u, D); j++) {
    sg_M[(e.z * D + i) * D + j] = pick(lo, hi, j - e.y);
  }
  if (e.y == 0u) { sg_z[e.z * D + i] = z; }
}

// ---- kv_bwd_linear: dv_t = sigma(K_t) G_s, dk_t = sigma'(k_t) * (G_s V_t + gz_s). Thread: 8
// rows x 8 columns (j for dv, i for dk); workgroup 8x8 threads = 64 rows x 64 columns.
// Grid (ceil(D/64), ceil(S/64)*B*nS, Hkv).
@group(0) @binding(1) var<storage, read> kl_k: array<f32>; // (rows, Hkv*D)
@group(0) @binding(2) var<storage, read> kl_v: array<f32>; // (rows, Hkv*D)
@group(0) @binding(3) var<storage, read> kl_G: array<f32>; // G_s (B, Hkv, nS, D, D)
@group(0) @binding(4) var<storage, read> kl_gz: array<f32>; // gz_s (B, Hkv, nS, D)
@group(0) @binding(5) var<storage, read_write> kl_dk: array<f32>; // (rows, Hkv*D)
@group(0) @binding(6) var<storage, read_write> kl_dv: array<f32>; // (rows, Hkv*D)

fn kl_k4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(kl_k[o.x], kl_k[o.y], kl_k[o.z], kl_k[o.w]);
}

fn kl_v4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(kl_v[o.x], kl_v[o.y], kl_v[o.z], kl_v[o.w]);
}

fn kl_G4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(kl_G[o.x], kl_G[o.y], kl_G[o.z], kl_G[o.w]);
}

@compute @workgroup_size(CX, RY, 1)
fn kv_bwd_linear(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let D = p.D;
  let bps = (p.S + 7u) / 8u;
  let blk = wg.y * RY + lid.y;
  let bs = blk / bps;
  let t0 = (blk % bps) * 8u;
  let c0 = (wg.x * CX + lid.x) * 8u;
  if (bs >= p.B * p.nS || c0 >= D) { return; }
  let g = wg.z;
  let b = bs / p.nS;
  let s = bs % p.nS;
  let bgs = (b * p.Hkv + g) * p.nS + s;
  let KD = p.Hkv * D;
  let gb = bgs * D * D;
  let ko0 = (bs * p.S + idx4(t0, p.S - 1u)) * KD + g * D;
  let ko1 = (bs * p.S + idx4(t0 + 4u, p.S - 1u)) * KD + g * D;
  let cc0 = idx4(c0, D - 1u);
  let cc1 = idx4(c0 + 4u, D - 1u);
  var dv = blk_zero();
  for (var i = 0u; i < D; i++) {
    let u0 = sigma4(kl_k4(ko0 + i));
    let u1 = sigma4(kl_k4(ko1 + i));
    dv = blk_fma(dv, u0, u1, kl_G4(gb + i * D + cc0), kl_G4(gb + i * D + cc1));
  }
  var dk = blk_zero();
  for (var j = 0u; j < D; j++) {
    let g0 = kl_G4(gb + cc0 * D + j);
    let g1 = kl_G4(gb + cc1 * D + j);
    dk = blk_fma(dk, kl_v4(ko0 + j), kl_v4(ko1 + j), g0, g1);
  }
  let e = vec3<u32>(t0, c0, bgs);
  for (var r = 0u; r < 8u; r++) {
    let ro = select(ko1[r % 4u], ko0[r % 4u], r < 4u);
    kl_row(e, r, ro, blk_lo(dv, r), blk_hi(dv, r), blk_lo(dk, r), blk_hi(dk, r));
  }
}

// Row t0 + r: dv and dk for columns c0..c0+7; e = (t0, c0, bgs), ro = the row's offset in k.
fn kl_row(
  e: vec3<u32>,
  r: u32,
  ro: u32,
  vlo: vec4<f32>,
  vhi: vec4<f32>,
  klo: vec4<f32>,
  khi: vec4<f32>,
) {
  let D = p.D;
  if (e.x + r >= p.S) { return; }
  for (var i = e.y; i < min(e.y + 8u, D); i++) {
    let o = ro + i;
    var gv = pick(vlo, vhi, i - e.y);
    if (p.accDv != 0u) { gv += kl_dv[o]; }
    kl_dv[o] = gv;
    var gk = (pick(klo, khi, i - e.y) + kl_gz[e.z * D + i]) * dsig(sigma(kl_k[o]));
    if (p.accDk != 0u) { gk += kl_dk[o]; }
    kl_dk[o] = gk;
  }
}

// ---- delta_bwd: the delta rule's G, sequential over segments from the last. One workgroup
// owns columns j0..j0+7 of G for one (b, g) (columns are independent: the delta read's
// denominator depends on z only). Per segment s, with G = G_s in workgroup memory:
//   phase A (threads over 8-row blocks): dW_t = sigma(K_t) G; dv_t (+)= dW_t;
//            dRs_t = -dW_t / (sigma(K_t) . z_{s-1})  (0 where the denominator is 0)
//   phase B (threads over 8-row blocks of G): slot_s <- G_s;
//            G_{s-1} = G_s + slot_s (the reads' share) + sigma(K)^T dRs
// G enters from dM_out (s1 = nS) or from the previous dispatch through dM_in, and leaves in
// dM_in. Grid (ceil(D/8), B*Hkv); workgroup 64 threads.
@group(0) @binding(1) var<storage, read> db_k: array<f32>; // (rows, Hkv*D)
@group(0) @binding(2) var<storage, read> db_z: array<f32>; // zprev (B, Hkv, nS, D)
@group(0) @binding(3) var<storage, read> db_dMout: array<f32>; // (B, Hkv, D, D)
@group(0) @binding(4) var<storage, read_write> db_G: array<f32>; // slots (B, Hkv, nS, D, D)
@group(0) @binding(5) var<storage, read_write> db_dRs: array<f32>; // (rows, Hkv*D)
@group(0) @binding(6) var<storage, read_write> db_dv: array<f32>; // (rows, Hkv*D)
@group(0) @binding(7) var<storage, read_write> db_dMin: array<f32>; // (B, Hkv, D, D)

var<workgroup> db_Gs: array<f32, 2048>; // G[:, j0..j0+7], (D, 8)

fn db_k4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(db_k[o.x], db_k[o.y], db_k[o.z], db_k[o.w]);
}

fn db_dRs4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(db_dRs[o.x], db_dRs[o.y], db_dRs[o.z], db_dRs[o.w]);
}

@compute @workgroup_size(64, 1, 1)
fn delta_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let D = p.D;
  let l = lid.x;
  let j0 = wg.x * 8u;
  let bg = wg.y;
  let b = bg / p.Hkv;
  let g = bg % p.Hkv;
  let KD = p.Hkv * D;
  let DD = D * D;
  for (var i = l; i < D; i += 64u) {
    for (var c = 0u; c < 8u; c++) {
      var x = 0.0;
      if (j0 + c < D) {
        if (p.s1 < p.nS) {
          x = db_dMin[bg * DD + i * D + j0 + c];
        } else if (p.hasBase != 0u) {
          x = db_dMout[bg * DD + i * D + j0 + c];
        }
      }
      db_Gs[i * 8u + c] = x;
    }
  }
  workgroupBarrier();
  let cj0 = idx4(j0, D - 1u);
  let cj1 = idx4(j0 + 4u, D - 1u);
  let nRB = (p.S + 7u) / 8u;
  for (var n = p.s0; n < p.s1; n++) {
    let s = p.s1 - 1u - (n - p.s0);
    let bgs = bg * p.nS + s;
    let row0 = (b * p.nS + s) * p.S;
    // Phase A.
    for (var rb = l; rb < nRB; rb += 64u) {
      let t0 = rb * 8u;
      let ko0 = (row0 + idx4(t0, p.S - 1u)) * KD + g * D;
      let ko1 = (row0 + idx4(t0 + 4u, p.S - 1u)) * KD + g * D;
      var acc = blk_zero();
      var den0 = vec4<f32>(0.0);
      var den1 = vec4<f32>(0.0);
      for (var i = 0u; i < D; i++) {
        let zi = vec4<f32>(db_z[bgs * D + i]);
        let u0 = sigma4(db_k4(ko0 + i));
        let u1 = sigma4(db_k4(ko1 + i));
        den0 = fma(u0, zi, den0);
        den1 = fma(u1, zi, den1);
        let gi = i * 8u;
        let g0 = vec4<f32>(db_Gs[gi], db_Gs[gi + 1u], db_Gs[gi + 2u], db_Gs[gi + 3u]);
        let g1 = vec4<f32>(db_Gs[gi + 4u], db_Gs[gi + 5u], db_Gs[gi + 6u], db_Gs[gi + 7u]);
        acc = blk_fma(acc, u0, u1, g0, g1);
      }
      let e = vec4<u32>(row0, t0, g * D, j0);
      for (var r = 0u; r < 8u; r++) {
        db_arow(e, r, blk_lo(acc, r), blk_hi(acc, r), pick(den0, den1, r));
      }
    }
    storageBarrier();
    workgroupBarrier();
    // Phase B.
    let i0 = l * 8u;
    if (i0 < D) {
      let ci0 = idx4(i0, D - 1u);
      let ci1 = idx4(i0 + 4u, D - 1u);
      var acc = blk_zero();
      for (var t = 0u; t < p.S; t++) {
        let o = (row0 + t) * KD + g * D;
        acc = blk_fma(
          acc,
          sigma4(db_k4(o + ci0)),
          sigma4(db_k4(o + ci1)),
          db_dRs4(o + cj0),
          db_dRs4(o + cj1),
        );
      }
      let e = vec3<u32>(i0, j0, bgs);
      for (var r = 0u; r < 8u; r++) {
        db_brow(e, r, blk_lo(acc, r), blk_hi(acc, r));
      }
    }
    storageBarrier();
    workgroupBarrier();
  }
  for (var i = l; i < D; i += 64u) {
    for (var c = 0u; c < 8u; c++) {
      if (j0 + c < D) { db_dMin[bg * DD + i * D + j0 + c] = db_Gs[i * 8u + c]; }
    }
  }
}

// Phase A, row t0 + r: dv (+)= dW, dRs = -dW / den; e = (segment's first row, t0, g*D, j0).
fn db_arow(e: vec4<u32>, r: u32, lo: vec4<f32>, hi: vec4<f32>, den: f32) {
  let D = p.D;
  if (e.y + r >= p.S) { return; }
  var inv = 0.0;
  if (den != 0.0) { inv = 1.0 / den; }
  let o = (e.x + e.y + r) * p.Hkv * D + e.z;
  for (var j = e.w; j < min(e.w + 8u, D); j++) {
    let dw = pick(lo, hi, j - e.w);
    var gv = dw;
    if (p.accDv != 0u) { gv += db_dv[o + j]; }
    db_dv[o + j] = gv;
    db_dRs[o + j] = -dw * inv;
  }
}

// Phase B, row i0 + r of G: slot <- G_s, G_{s-1} = G_s + slot + block; e = (i0, j0, bgs).
fn db_brow(e: vec3<u32>, r: u32, lo: vec4<f32>, hi: vec4<f32>) {
  let D = p.D;
  let i = e.x + r;
  if (i >= D) { return; }
  for (var j = e.y; j < min(e.y + 8u, D); j++) {
    let at = (e.z * D + i) * D + j;
    let c = i * 8u + j - e.y;
    let old = db_Gs[c];
    let reads = db_G[at];
    db_G[at] = old;
    db_Gs[c] = old + reads + pick(lo, hi, j - e.y);
  }
}

// ---- delta_zgrad: per (b, g), sequential over segments from the last:
//   phase A (threads over rows): eps_t = dRs_t . (V_t - W_t)    (= dR_t . R_t / den_t)
//   phase B (thread i):          slot_z[s] <- gz_s;
//                                gz_{s-1} = gz_s + slot_z[s] - sum_t sigma(K_t) eps_t
// gz enters from dz_out (s1 = nS) or from the previous dispatch through dz_in, and leaves in
// dz_in. Grid (B*Hkv); workgroup 256 threads (one per i).
@group(0) @binding(1) var<storage, read> dz_k: array<f32>; // (rows, Hkv*D)
@group(0) @binding(2) var<storage, read> dz_v: array<f32>; // (rows, Hkv*D)
@group(0) @binding(3) var<storage, read> dz_W: array<f32>; // (rows, Hkv*D)
@group(0) @binding(4) var<storage, read_write> dz_dRs: array<f32>; // (rows, Hkv*D)
@group(0) @binding(5) var<storage, read> dz_dzout: array<f32>; // (B, Hkv, D)
@group(0) @binding(6) var<storage, read_write> dz_gz: array<f32>; // slots (B, Hkv, nS, D)
@group(0) @binding(7) var<storage, read_write> dz_eps: array<f32>; // (rows, Hkv)
@group(0) @binding(8) var<storage, read_write> dz_dzin: array<f32>; // (B, Hkv, D)

@compute @workgroup_size(256, 1, 1)
fn delta_zgrad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let D = p.D;
  let i = lid.x;
  let bg = wg.x;
  let b = bg / p.Hkv;
  let g = bg % p.Hkv;
  let KD = p.Hkv * D;
  var gz = 0.0;
  if (i < D) {
    if (p.s1 < p.nS) {
      gz = dz_dzin[bg * D + i];
    } else if (p.hasBase != 0u) {
      gz = dz_dzout[bg * D + i];
    }
  }
  for (var n = p.s0; n < p.s1; n++) {
    let s = p.s1 - 1u - (n - p.s0);
    let bgs = bg * p.nS + s;
    let row0 = (b * p.nS + s) * p.S;
    for (var t = i; t < p.S; t += 256u) {
      let o = (row0 + t) * KD + g * D;
      var e = 0.0;
      for (var j = 0u; j < D; j++) { e = fma(dz_dRs[o + j], dz_v[o + j] - dz_W[o + j], e); }
      dz_eps[(row0 + t) * p.Hkv + g] = e;
    }
    storageBarrier();
    workgroupBarrier();
    if (i < D) {
      var acc = 0.0;
      for (var t = 0u; t < p.S; t++) {
        let row = row0 + t;
        acc = fma(sigma(dz_k[row * KD + g * D + i]), dz_eps[row * p.Hkv + g], acc);
      }
      let reads = dz_gz[bgs * D + i];
      dz_gz[bgs * D + i] = gz;
      gz = gz + reads - acc;
    }
    storageBarrier();
    workgroupBarrier();
  }
  if (i < D) { dz_dzin[bg * D + i] = gz; }
}

// ---- kv_bwd_delta: dk_t = sigma'(k_t) * (G_s W_t + M_{s-1} dRs_t + gz_s - eps_t z_{s-1})
// (dv was written by delta_bwd). Layout and grid as kv_bwd_linear.
@group(0) @binding(1) var<storage, read> kd_k: array<f32>; // (rows, Hkv*D)
@group(0) @binding(2) var<storage, read> kd_W: array<f32>; // (rows, Hkv*D)
@group(0) @binding(3) var<storage, read> kd_dRs: array<f32>; // (rows, Hkv*D)
@group(0) @binding(4) var<storage, read> kd_eps: array<f32>; // (rows, Hkv)
@group(0) @binding(5) var<storage, read> kd_M: array<f32>; // Mprev (B, Hkv, nS, D, D)
@group(0) @binding(6) var<storage, read> kd_z: array<f32>; // zprev (B, Hkv, nS, D)
@group(0) @binding(7) var<storage, read> kd_G: array<f32>; // G_s (B, Hkv, nS, D, D)
@group(0) @binding(8) var<storage, read> kd_gz: array<f32>; // gz_s (B, Hkv, nS, D)
@group(0) @binding(9) var<storage, read_write> kd_dk: array<f32>; // (rows, Hkv*D)

fn kd_W4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(kd_W[o.x], kd_W[o.y], kd_W[o.z], kd_W[o.w]);
}

fn kd_dRs4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(kd_dRs[o.x], kd_dRs[o.y], kd_dRs[o.z], kd_dRs[o.w]);
}

fn kd_G4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(kd_G[o.x], kd_G[o.y], kd_G[o.z], kd_G[o.w]);
}

fn kd_M4(o: vec4<u32>) -> vec4<f32> {
  return vec4<f32>(kd_M[o.x], kd_M[o.y], kd_M[o.z], kd_M[o.w]);
}

@compute @workgroup_size(CX, RY, 1)
fn kv_bwd_delta(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let D = p.D;
  let bps = (p.S + 7u) / 8u;
  let blk = wg.y * RY + lid.y;
  let bs = blk / bps;
  let t0 = (blk % bps) * 8u;
  let c0 = (wg.x * CX + lid.x) * 8u;
  if (bs >= p.B * p.nS || c0 >= D) { return; }
  let g = wg.z;
  let b = bs / p.nS;
  let s = bs % p.nS;
  let bgs = (b * p.Hkv + g) * p.nS + s;
  let KD = p.Hkv * D;
  let gb = bgs * D * D;
  let ko0 = (bs * p.S + idx4(t0, p.S - 1u)) * KD + g * D;
  let ko1 = (bs * p.S + idx4(t0 + 4u, p.S - 1u)) * KD + g * D;
  let cc0 = gb + idx4(c0, D - 1u) * D;
  let cc1 = gb + idx4(c0 + 4u, D - 1u) * D;
  var dk = blk_zero();
  for (var j = 0u; j < D; j++) {
    dk = blk_fma(dk, kd_W4(ko0 + j), kd_W4(ko1 + j), kd_G4(cc0 + j), kd_G4(cc1 + j));
    dk = blk_fma(dk, kd_dRs4(ko0 + j), kd_dRs4(ko1 + j), kd_M4(cc0 + j), kd_M4(cc1 + j));
  }
  let e = vec4<u32>(t0, c0, bgs, bs * p.S);
  for (var r = 0u; r < 8u; r++) {
    kd_row(e, r, select(ko1[r % 4u], ko0[r % 4u], r < 4u), blk_lo(dk, r), blk_hi(dk, r));
  }
}

// Row t0 + r: dk for columns c0..c0+7; e = (t0, c0, bgs, segment's first row), ro = the row's
// offset in k (its KV head's columns start there).
fn kd_row(e: vec4<u32>, r: u32, ro: u32, lo: vec4<f32>, hi: vec4<f32>) {
  let D = p.D;
  let t = e.x + r;
  if (t >= p.S) { return; }
  let g = (ro / D) % p.Hkv;
  let eps = kd_eps[(e.w + t) * p.Hkv + g];
  for (var i = e.y; i < min(e.y + 8u, D); i++) {
    let o = ro + i;
    let d = pick(lo, hi, i - e.y) + kd_gz[e.z * D + i] - eps * kd_z[e.z * D + i];
    var gk = d * dsig(sigma(kd_k[o]));
    if (p.accDk != 0u) { gk += kd_dk[o]; }
    kd_dk[o] = gk;
  }
}
