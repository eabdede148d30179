/**
 * A tokenizer worker: loads the tokenizer once, then encodes batches of documents.
 * Protocol (see pool.ts): init {spec, seed} -> ready {info} | fail; encode {id, texts} ->
 * encoded {id, batch} | fail {id}; an uncaught error -> crash.
 */
/// <reference lib="deno.worker" />
import { encodeBatch, type EncodedBatch, type TokenizerInfo, tokenizerInfo } from "./encode.ts";
import { loadTokenizer, type Tokenizer } from "./tokenizer.ts";

export type WorkerRequest =
  | { type: "init"; spec: string; seed: number }
  | { type: "encode"; id: number; texts: string[] };

export type WorkerReply =
  | { type: "ready"; info: TokenizerInfo }
  | { type: "encoded"; id: number; batch: EncodedBatch }
  | { type: "fail"; id?: number; message: string }
  | { type: "crash"; message: string };

let tok: Tokenizer | undefined;
let seed = 0;

function post(r: WorkerReply, transfer: Transferable[] = []) {
  self.postMessage(r, transfer);
}

self.addEventListener("error", (e) => {
  e.preventDefault();
  post({ type: "crash", message: e.message });
});
self.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  post({ type: "crash", message: String(e.reason) });
});

self.onmessage = async (e: MessageEvent<WorkerRequest>) => {
  const req = e.data;
  if (req.type === "init") {
    try {
      tok = await loadTokenizer(req.spec);
      seed = req.seed;
      post({ type: "ready", info: tokenizerInfo(tok) });
    } catch (err) {
      post({ type: "fail", message: err instanceof Error ? err.message : String(err) });
    }
    return;
  }
  try {
    const batch = encodeBatch(tok!, req.texts, seed);
    post({ type: "encoded", id: req.id, batch }, [
      batch.tokens.buffer,
      batch.lengths.buffer,
      batch.hashes.buffer,
    ]);
  } catch (err) {
    post({ type: "fail", id: req.id, message: err instanceof Error ? err.message : String(err) });
  }
};
