// One new token's causal attention against the key/value cache of its segment (generation).
//   q: (H*D), the token's RoPE'd query; k, v: (>= n rows, Hkv*D), rows 0..n-1 the segment's
//   RoPE'd keys and values so far, the new token's own at row n-1. Query head h reads KV head
//   g = h / (H / Hkv). Per head, over u < n:
//   s_u = scale * q . k_u    P_u = exp(s_u - max) / sum    o = sum_u P_u v_u
// This is row n-1 of kernels/attention.wgsl's `forward` for a segment whose first n rows are
// these; the log-sum-exp is not kept (no backward).
// One workgroup per query head streams the keys in blocks of WG: each invocation scores one
// key, the block's max and sum are reduced in workgroup memory (online softmax across blocks),
// and each invocation accumulates the output dims lid, lid + WG, ... (D <= 4 * WG).
// Loop iterations per invocation: ceil(n / WG) * (D + 2 log2(WG) + 4 WG), under lavapipe's
// 65535 for n <= 4096 at D 256.

struct Params {
  n: u32, // keys in the cache (the new token's position in its segment + 1)
  H: u32,
  Hkv: u32,
  D: u32,
  scale: f32,
}

const WG = 64u;
const NEG = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>; // (H*D)
@group(0) @binding(2) var<storage, read> k: array<f32>; // (rows, Hkv*D)
@group(0) @binding(3) var<storage, read> v: array<f32>; // (rows, Hkv*D)
@group(0) @binding(4) var<storage, read_write> o: array<f32>; // (H*D)

var<workgroup> prob: array<f32, WG>; // exp(s_u - m) of the block's keys
var<workgroup> red: array<f32, WG>; // reduction scratch

@compute @workgroup_size(WG)
fn decode(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wg.x;
  let g = h / (p.H / p.Hkv);
  let qo = h * p.D;
  let kw = p.Hkv * p.D;
  let ko = g * p.D;
  var m = NEG; // running max (the same in every invocation)
  var l = 0.0; // running sum of exp(s - m)
  var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
  for (var u0 = 0u; u0 < p.n; u0 += WG) {
    let u = u0 + lid;
    var s = NEG;
    if (u < p.n) {
      var dotp = 0.0;
      for (var d = 0u; d < p.D; d++) {
        dotp += q[qo + d] * k[u * kw + ko + d];
      }
      s = p.scale * dotp;
    }
    red[lid] = s;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w = w / 2u) {
      if (lid < w) {
        red[lid] = max(red[lid], red[lid + w]);
      }
      workgroupBarrier();
    }
    let mNew = max(m, red[0]);
    workgroupBarrier();
    let e = select(0.0, exp(s - mNew), u < p.n);
    prob[lid] = e;
    red[lid] = e;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w = w / 2u) {
      if (lid < w) {
        red[lid] = red[lid] + red[lid + w];
      }
      workgroupBarrier();
    }
    let alpha = exp(m - mNew); // 0 on the first block (m = NEG)
    l = l * alpha + red[0];
    let cnt = min(WG, p.n - u0);
    for (var j = 0u; j < 4u; j++) {
      let d = lid + j * WG;
      if (d < p.D) {
        var a = acc[j] * alpha;
        for (var i = 0u; i < cnt; i++) {
          a += prob[i] * v[(u0 + i) * kw + ko + d];
        }
        acc[j] = a;
      }
    }
    m = mNew;
    workgroupBarrier();
  }
  for (var j = 0u; j < 4u; j++) {
    let d = lid + j * WG;
    if (d < p.D) {
      o[qo + d] = acc[j] / l;
    }
  }
}
