import { Add } from "../src/ops/add.ts";
import { Rng } from "../src/util/rng.ts";
import { gpuTest } from "./_gpu.ts";
import { assertClose, randf32 } from "./_numeric.ts";

// One f32 addition per element: the GPU result is the correctly rounded sum, as is Math.fround.
gpuTest("add: y += x over odd lengths, exact in f32", async (rt) => {
  const add = await Add.create(rt);
  const rng = new Rng(5);
  for (const n of [1, 255, 257, 1000]) {
    const x = randf32(rng, n), y = randf32(rng, n);
    const tx = rt.tensor("x", n, x),
      ty = rt.tensor("y", n + 7, new Float32Array(n + 7).fill(9).map((v, i) => i < n ? y[i] : v));
    const rec = rt.record();
    add.record(rec, ty, tx, n);
    const out = rec.read(ty);
    rt.submit(rec);
    const got = await out;
    const want = Array.from({ length: n + 7 }, (_, i) => i < n ? Math.fround(x[i] + y[i]) : 9);
    assertClose(got, want, { atol: 0, rtol: 0, what: `add n=${n}` });
    rt.free(tx);
    rt.free(ty);
  }
});
