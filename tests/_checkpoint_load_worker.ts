/**
 * Loads checkpoints on request for tests/checkpoint_fuzz_test.ts, in a worker so that the test
 * can time out a load that hangs (a busy loop would otherwise stall the test itself).
 *
 * Request `{ id, dir }`; reply `{ id, ok: true, params }` (the flat f32 params as bytes) or
 * `{ id, ok: false, userError, name, message }`.
 */
/// <reference lib="deno.worker" />
import { UserError } from "../src/util/errors.ts";
import { loadCheckpoint } from "../src/model/checkpoint.ts";

self.onmessage = async (ev: MessageEvent<{ id: number; dir: string }>) => {
  const { id, dir } = ev.data;
  try {
    const ck = await loadCheckpoint(dir);
    const params = new Uint8Array(ck.params.buffer, ck.params.byteOffset, ck.params.byteLength)
      .slice();
    self.postMessage({ id, ok: true, params }, [params.buffer]);
  } catch (e) {
    self.postMessage({
      id,
      ok: false,
      userError: e instanceof UserError,
      name: e instanceof Error ? e.constructor.name : typeof e,
      message: e instanceof Error ? e.message : String(e),
    });
  }
};
