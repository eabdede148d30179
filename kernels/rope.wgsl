// Rotary position embedding, "rotate half" layout (Hugging Face Gemma), out of place:
//   for each row, head and i < D/2, with pos = row mod S and angle = pos * theta^(-2i/D):
//   y_i        = x_i cos - x_{i+D/2} sin
//   y_{i+D/2}  = x_{i+D/2} cos + x_i sin
// The backward is the transposed rotation: the same with sin negated (p.sign = -1).
// x, y: (rows, nHeads * D), head h in columns h*D .. h*D + D-1. Positions restart at every
// segment of S rows. cos/sin come from a table built on the host in f64, (S, D/2, 2) as
// [pos][i] = (cos, sin): exact to f32 rounding for any position, and no sin/cos per element.
// `rotate` does one tensor; `rotate_qk` does q (nA heads) and k (nB heads) in one dispatch.
// With p.acc = 1 the result is added to y instead of replacing it (the Infini backward adds the
// local path's dq, dk onto the memory path's). One thread per (row, head, i) pair.
// rotate_rows / rotate_qk_rows: the same for D % 8 == 0 on CPU adapters, one invocation per
// (row, head) taking its D/2 pairs four at a time as vec4s (no index division per element).

struct Params {
  rows: u32,
  nA: u32,   // heads of the first tensor
  nB: u32,   // heads of the second tensor (rotate_qk only)
  D: u32,
  S: u32,
  gx: u32,   // threads along x of the 2-D grid (workgroups along x times WG)
  sign: f32, // +1 forward, -1 backward
  acc: u32, // 1: y += R x (else y = R x)
}

const WG = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<f32>;        // (S, D/2, 2)
@group(0) @binding(2) var<storage, read> xa: array<f32>;           // (rows, nA * D)
@group(0) @binding(3) var<storage, read_write> ya: array<f32>;     // (rows, nA * D)
@group(0) @binding(4) var<storage, read> xb: array<f32>;           // (rows, nB * D)
@group(0) @binding(5) var<storage, read_write> yb: array<f32>;     // (rows, nB * D)

struct Rot {
  c: f32,
  s: f32,
}

// The rotation of pair i of head-row rh (= row * nHeads + head).
fn rotation(rh: u32, nHeads: u32, i: u32) -> Rot {
  let half = p.D / 2u;
  let pos = (rh / nHeads) % p.S;
  let t = (pos * half + i) * 2u;
  return Rot(table[t], p.sign * table[t + 1u]);
}

// ya[o], ya[o + half] = (lo, hi), or += with p.acc.
fn store_a(o: u32, half: u32, lo: f32, hi: f32) {
  if (p.acc != 0u) {
    ya[o] = ya[o] + lo;
    ya[o + half] = ya[o + half] + hi;
  } else {
    ya[o] = lo;
    ya[o + half] = hi;
  }
}

fn store_b(o: u32, half: u32, lo: f32, hi: f32) {
  if (p.acc != 0u) {
    yb[o] = yb[o] + lo;
    yb[o + half] = yb[o + half] + hi;
  } else {
    yb[o] = lo;
    yb[o + half] = hi;
  }
}

@compute @workgroup_size(WG)
fn rotate(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.y * p.gx + gid.x;
  let half = p.D / 2u;
  if (t >= p.rows * p.nA * half) { return; }
  let rh = t / half;
  let i = t % half;
  let r = rotation(rh, p.nA, i);
  let o = rh * p.D + i;
  let a = xa[o];
  let b = xa[o + half];
  store_a(o, half, a * r.c - b * r.s, b * r.c + a * r.s);
}

@compute @workgroup_size(WG)
fn rotate_qk(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.y * p.gx + gid.x;
  let half = p.D / 2u;
  let na = p.rows * p.nA * half;
  if (t < na) {
    let rh = t / half;
    let i = t % half;
    let r = rotation(rh, p.nA, i);
    let o = rh * p.D + i;
    let a = xa[o];
    let b = xa[o + half];
    store_a(o, half, a * r.c - b * r.s, b * r.c + a * r.s);
  } else if (t < na + p.rows * p.nB * half) {
    let rh = (t - na) / half;
    let i = (t - na) % half;
    let r = rotation(rh, p.nB, i);
    let o = rh * p.D + i;
    let a = xb[o];
    let b = xb[o + half];
    store_b(o, half, a * r.c - b * r.s, b * r.c + a * r.s);
  }
}

// rotate_rows, rotate_qk_rows (same bindings, seen as vec4s; p.gx counts invocations as above)
@group(0) @binding(1) var<storage, read> table4: array<vec4<f32>>; // (S, D/4): c, s, c, s
@group(0) @binding(2) var<storage, read> xa4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> ya4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> xb4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> yb4: array<vec4<f32>>;

const RWG = 64u;

struct Pair4 {
  lo: vec4<f32>,
  hi: vec4<f32>,
}

// Pairs 4j .. 4j + 3 of a head at position pos: (lo, hi) = (x_i, x_{i+D/2}) rotated.
fn rot4(pos: u32, j: u32, lo: vec4<f32>, hi: vec4<f32>) -> Pair4 {
  let t0 = table4[pos * (p.D / 4u) + 2u * j];
  let t1 = table4[pos * (p.D / 4u) + 2u * j + 1u];
  let c = vec4<f32>(t0.x, t0.z, t1.x, t1.z);
  let s = p.sign * vec4<f32>(t0.y, t0.w, t1.y, t1.w);
  return Pair4(lo * c - hi * s, hi * c + lo * s);
}

// Head-row rh of the first tensor (nA heads).
fn rows_a(rh: u32) {
  let pos = (rh / p.nA) % p.S;
  let q = p.D / 8u;
  let o = rh * (p.D / 4u);
  for (var j = 0u; j < q; j++) {
    let r = rot4(pos, j, xa4[o + j], xa4[o + q + j]);
    if (p.acc != 0u) {
      ya4[o + j] = ya4[o + j] + r.lo;
      ya4[o + q + j] = ya4[o + q + j] + r.hi;
    } else {
      ya4[o + j] = r.lo;
      ya4[o + q + j] = r.hi;
    }
  }
}

// Head-row rh of the second tensor (nB heads).
fn rows_b(rh: u32) {
  let pos = (rh / p.nB) % p.S;
  let q = p.D / 8u;
  let o = rh * (p.D / 4u);
  for (var j = 0u; j < q; j++) {
    let r = rot4(pos, j, xb4[o + j], xb4[o + q + j]);
    if (p.acc != 0u) {
      yb4[o + j] = yb4[o + j] + r.lo;
      yb4[o + q + j] = yb4[o + q + j] + r.hi;
    } else {
      yb4[o + j] = r.lo;
      yb4[o + q + j] = r.hi;
    }
  }
}

@compute @workgroup_size(RWG)
fn rotate_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
  let rh = gid.y * p.gx + gid.x;
  if (rh < p.rows * p.nA) { rows_a(rh); }
}

@compute @workgroup_size(RWG)
fn rotate_qk_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
  let rh = gid.y * p.gx + gid.x;
  let na = p.rows * p.nA;
  if (rh < na) {
    rows_a(rh);
  } else if (rh < na + p.rows * p.nB) {
    rows_b(rh - na);
  }
}
