// Token embedding scaled as in Gemma, one vocabulary chunk [v0, v0 + Vc) per dispatch:
//   forward   x[row, :] = scale * E[token[row], :]                                scale = sqrt(C)
//   backward  dE[v, :] += scale * sum over rows r with token[r] = v (ascending r) of dx[r, :]
// E, dE: (V, C) f32, bound as the chunk's view (Vc, C), so row v of the chunk is token v0 + v.
// x, dx: (rows, C). Both entries read a host-built index (u32, 3 * rows + 1), see
// src/ops/embedding.ts:
//   idx[0 .. nd)                   the distinct tokens, ascending
//   idx[rows .. rows + nd]         start of each distinct token's run in `order`; the last is rows
//   idx[2 rows + 1 .. 3 rows + 1)  order: the rows sorted by (token, row)
// One workgroup per distinct token d = d0 + workgroup index (those of this chunk); its threads
// stride over C. Each dE element is written by one thread, which sums its rows in a fixed
// order: deterministic without atomics, and E is read once per distinct token. A dispatch
// handles occurrences [skip, skip + run) of each token's run; a token seen more often is
// finished by later dispatches (lavapipe stops a shader after 65535 loop iterations).

struct Params {
  rows: u32,
  C: u32,
  v0: u32,    // first token of the chunk
  d0: u32,    // first distinct-token slot of the chunk
  count: u32, // distinct tokens in the chunk (workgroups that do work)
  gx: u32,    // workgroups along x of the 2-D grid
  scale: f32,
  skip: u32,  // occurrences of each token handled by earlier dispatches
  run: u32,   // most occurrences of each token handled by this one
}

const WG = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> idx: array<u32>;        // (3 rows + 1)

// forward: bindings 2 = E chunk (Vc, C), 3 = x (rows, C)
@group(0) @binding(2) var<storage, read> table: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;

// backward: bindings 2 = dx (rows, C), 3 = dE chunk (Vc, C)
@group(0) @binding(2) var<storage, read> dx: array<f32>;
@group(0) @binding(3) var<storage, read_write> dtable: array<f32>;

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let w = wg.y * p.gx + wg.x;
  if (w >= p.count) { return; }
  let d = p.d0 + w;
  let base = (idx[d] - p.v0) * p.C;
  let first = idx[p.rows + d] + p.skip;
  let last = min(idx[p.rows + d + 1u], first + p.run);
  if (first >= last) { return; }
  let order = 2u * p.rows + 1u;
  for (var r = first; r < last; r++) {
    let out = idx[order + r] * p.C;
    for (var c = lid.x; c < p.C; c += WG) {
      x[out + c] = p.scale * table[base + c];
    }
  }
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let w = wg.y * p.gx + wg.x;
  if (w >= p.count) { return; }
  let d = p.d0 + w;
  let base = (idx[d] - p.v0) * p.C;
  let first = idx[p.rows + d] + p.skip;
  let last = min(idx[p.rows + d + 1u], first + p.run);
  if (first >= last) { return; }
  let order = 2u * p.rows + 1u;
  for (var c = lid.x; c < p.C; c += WG) {
    var acc = 0.0;
    for (var r = first; r < last; r++) {
      acc += dx[idx[order + r] * p.C + c];
    }
    dtable[base + c] += p.scale * acc;
  }
}
