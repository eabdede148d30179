// GeGLU, elementwise over n = rows * F (g, u are the outputs of gate_proj and up_proj):
//   forward   h = gelu_tanh(g) * u,   gelu_tanh(x) = 0.5 x (1 + tanh(z)),  z = k (x + a x^3)
//   backward  dg = dh * u * gelu_tanh'(g),   du = dh * gelu_tanh(g)
// with k = sqrt(2 / pi), a = 0.044715. Written without tanh: 0.5 (1 + tanh(z)) = sigmoid(2z)
// = 1 / (1 + exp(-2|z|)) (or its complement), and sigmoid(2z) (1 - sigmoid(2z)) =
// e / (1 + e)^2 with e = exp(-2|z|) <= 1, so nothing overflows, and
//   gelu_tanh'(x) = s + x * 2 s (1 - s) * k (1 + 3 a x^2),  s = sigmoid(2z).
// x is clamped to [-100, 100] inside z: beyond it s is exactly 0 or 1 in f32 and the x^2
// terms could otherwise overflow into inf * 0 = NaN.
// g, u, h, dh, dg, du: (rows, F) flat (n elements). One thread per element; forward4 and
// backward4 (CPU adapters, n % 4 == 0) take 4 elements per invocation as a vec4, with the same
// arithmetic per element, so that lavapipe's per-invocation indexing is paid once per 4.

struct Params {
  n: u32,  // elements (forward4, backward4: vec4s)
  gx: u32, // threads along x of the 2-D grid (workgroups along x times WG)
}

const WG = 256u;
const K = 0.7978845608028654; // sqrt(2 / pi)
const A = 0.044715;

@group(0) @binding(0) var<uniform> p: Params;

// forward
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read_write> h: array<f32>;

// backward
@group(0) @binding(1) var<storage, read> b_dh: array<f32>;
@group(0) @binding(2) var<storage, read> b_g: array<f32>;
@group(0) @binding(3) var<storage, read> b_u: array<f32>;
@group(0) @binding(4) var<storage, read_write> dg: array<f32>;
@group(0) @binding(5) var<storage, read_write> du: array<f32>;

struct Gelu {
  value: f32, // gelu_tanh(x)
  grad: f32,  // gelu_tanh'(x)
}

fn gelu(x: f32) -> Gelu {
  let xc = clamp(x, -100.0, 100.0);
  let z = K * xc * (1.0 + A * xc * xc);
  let e = exp(-2.0 * abs(z));
  let r = 1.0 / (1.0 + e);
  let s = select(e * r, r, z >= 0.0);
  let ds = 2.0 * e * r * r * K * (1.0 + 3.0 * A * xc * xc);
  return Gelu(x * s, s + xc * ds);
}

@compute @workgroup_size(WG)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.y * p.gx + gid.x;
  if (i >= p.n) { return; }
  h[i] = gelu(g[i]).value * u[i];
}

@compute @workgroup_size(WG)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.y * p.gx + gid.x;
  if (i >= p.n) { return; }
  let r = gelu(b_g[i]);
  let d = b_dh[i];
  dg[i] = d * b_u[i] * r.grad;
  du[i] = d * r.value;
}

// forward4, backward4 (bindings as forward / backward, seen as vec4s)
@group(0) @binding(1) var<storage, read> g4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> u4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> h4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b_dh4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b_g4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b_u4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dg4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> du4: array<vec4<f32>>;

struct Gelu4 {
  value: vec4<f32>,
  grad: vec4<f32>,
}

// gelu, lane by lane.
fn gelu4(x: vec4<f32>) -> Gelu4 {
  let xc = clamp(x, vec4<f32>(-100.0), vec4<f32>(100.0));
  let z = K * xc * (1.0 + A * xc * xc);
  let e = exp(-2.0 * abs(z));
  let r = 1.0 / (1.0 + e);
  let s = select(e * r, r, z >= vec4<f32>(0.0));
  let ds = 2.0 * e * r * r * K * (1.0 + 3.0 * A * xc * xc);
  return Gelu4(x * s, s + xc * ds);
}

@compute @workgroup_size(WG)
fn forward4(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.y * p.gx + gid.x;
  if (i >= p.n) { return; }
  h4[i] = gelu4(g4[i]).value * u4[i];
}

@compute @workgroup_size(WG)
fn backward4(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.y * p.gx + gid.x;
  if (i >= p.n) { return; }
  let r = gelu4(b_g4[i]);
  let d = b_dh4[i];
  dg4[i] = d * b_u4[i] * r.grad;
  du4[i] = d * r.value;
}
