// In-place add: y[i] += x[i] for i < n (a 2-D grid: i = gid.y * stride + gid.x).
// Used where two backward paths meet in one gradient (the local and memory paths of dq, dk, dv).

struct Params {
  n: u32,
  stride: u32, // threads per grid row
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn add(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.y * p.stride + gid.x;
  if (i < p.n) {
    y[i] = y[i] + x[i];
  }
}
