/**
 * A pool of tokenizer workers (Web Workers). Batches go to whichever worker is free; each
 * `encode` promise resolves with that batch's tokens, so the caller keeps input order by
 * awaiting the promises in the order it made them. With 0 workers, batches are encoded on
 * the calling thread (no parallelism; handy for debugging).
 *
 * @example
 * ```ts
 * const pool = await EncoderPool.create("qwen", 2, 1);
 * const batch = await pool.encode(["first document", "second document"]);
 * pool.close();
 * ```
 */
import { UserError } from "../util/errors.ts";
import { encodeBatch, type EncodedBatch, type TokenizerInfo, tokenizerInfo } from "./encode.ts";
import { loadTokenizer } from "./tokenizer.ts";
import type { WorkerReply, WorkerRequest } from "./tokenize_worker.ts";

interface Job {
  id: number;
  texts: string[];
  resolve(b: EncodedBatch): void;
  reject(e: Error): void;
}

interface Slot {
  worker: Worker;
  job?: Job;
}

export class EncoderPool {
  readonly info: TokenizerInfo;
  #slots: Slot[];
  #queue: Job[] = [];
  #local?: (texts: string[]) => EncodedBatch;
  #nextId = 0;
  #failure?: Error;

  private constructor(info: TokenizerInfo, slots: Slot[], local?: (t: string[]) => EncodedBatch) {
    this.info = info;
    this.#slots = slots;
    this.#local = local;
    for (const s of slots) {
      s.worker.onmessage = (e: MessageEvent<WorkerReply>) => this.#reply(s, e.data);
      s.worker.onerror = (e) => {
        e.preventDefault();
        this.#fail(new Error(`tokenizer worker crashed: ${e.message}`));
      };
    }
  }

  /** Starts `workers` workers (0: encode on this thread) and waits until each has loaded. */
  static async create(spec: string, workers: number, seed: number): Promise<EncoderPool> {
    if (workers === 0) {
      const tok = await loadTokenizer(spec);
      return new EncoderPool(tokenizerInfo(tok), [], (texts) => encodeBatch(tok, texts, seed));
    }
    const slots: Slot[] = [];
    try {
      const infos = await Promise.all(
        Array.from({ length: workers }, () => {
          const worker = new Worker(new URL("./tokenize_worker.ts", import.meta.url).href, {
            type: "module",
          });
          slots.push({ worker });
          return new Promise<TokenizerInfo>((resolve, reject) => {
            worker.onmessage = (e: MessageEvent<WorkerReply>) => {
              const r = e.data;
              if (r.type === "ready") resolve(r.info);
              else if (r.type === "fail") reject(new UserError(r.message));
              else {reject(
                  new Error(
                    `tokenizer worker failed to start: ${"message" in r ? r.message : r.type}`,
                  ),
                );}
            };
            worker.onerror = (e) => {
              e.preventDefault();
              // The first line only: a module that cannot load reports its stack below it.
              reject(new Error(`tokenizer worker failed to start: ${e.message.split("\n")[0]}`));
            };
            worker.postMessage({ type: "init", spec, seed } satisfies WorkerRequest);
          });
        }),
      );
      return new EncoderPool(infos[0], slots);
    } catch (e) {
      for (const s of slots) s.worker.terminate();
      throw e;
    }
  }

  get workers(): number {
    return this.#slots.length;
  }

  /** Tokens of each text, in order, with their lengths and split hashes. */
  encode(texts: string[]): Promise<EncodedBatch> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#local) {
      try {
        return Promise.resolve(this.#local(texts));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ id: this.#nextId++, texts, resolve, reject });
      this.#dispatch();
    });
  }

  #dispatch(): void {
    for (const s of this.#slots) {
      if (this.#queue.length === 0) return;
      if (s.job) continue;
      const job = this.#queue.shift()!;
      s.job = job;
      s.worker.postMessage(
        { type: "encode", id: job.id, texts: job.texts } satisfies WorkerRequest,
      );
    }
  }

  #reply(s: Slot, r: WorkerReply): void {
    const job = s.job;
    if (r.type === "crash") return this.#fail(new Error(`tokenizer worker crashed: ${r.message}`));
    if (!job || (r.type !== "encoded" && r.type !== "fail") || r.id !== job.id) return;
    s.job = undefined;
    if (r.type === "encoded") job.resolve(r.batch);
    else job.reject(new Error(r.message));
    this.#dispatch();
  }

  #fail(e: Error): void {
    this.#failure ??= e;
    for (const s of this.#slots) {
      s.job?.reject(e);
      s.job = undefined;
    }
    for (const j of this.#queue.splice(0)) j.reject(e);
  }

  /** Stops the workers; pending batches are rejected. */
  close(): void {
    this.#fail(new Error("the tokenizer pool was closed"));
    for (const s of this.#slots) s.worker.terminate();
    this.#slots = [];
  }
}
