/**
 * Generation at constant memory. The context is cut into segments of S tokens: each segment
 * is folded into the memory exactly once, when it is complete (a forward of the segment model
 * over its S tokens, then M_out copied to M_in). Inside the current, partial segment a
 * key/value cache serves local attention: each new token is one decode step (one row through
 * every layer, its query against the cached keys and values of its segment, its memory read
 * from the committed M_in), so the cost per token is one row's, plus one segment forward per S
 * tokens to fold the segment in. A prompt's tail (an incomplete last segment) is read by one
 * segment forward that also fills the cache.
 */
import type { Runtime } from "../gpu/runtime.ts";
import type { ModelConfig } from "../model/config.ts";
import { InfiniGemma } from "../model/model.ts";
import { IGNORE_TARGET } from "../util/targets.ts";
import { Rng } from "../util/rng.ts";

export interface SampleOptions {
  /** 0 = greedy (arg-max). */
  temperature: number;
  /** Nucleus sampling: smallest set of tokens whose probability reaches top-p (1 = all). */
  topP: number;
  seed: number;
}

/** Picks a token from logits: arg-max at temperature 0, else top-p sampling. */
export function sampleToken(logits: Float32Array, o: SampleOptions, rng: Rng): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  if (o.temperature <= 0) return best;
  const max = logits[best];
  const p = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    p[i] = Math.exp((logits[i] - max) / o.temperature);
    sum += p[i];
  }
  const order = Array.from(p.keys()).sort((a, b) => p[b] - p[a]);
  let keep = 0, mass = 0;
  while (keep < order.length && mass < o.topP * sum) mass += p[order[keep++]];
  let r = rng.next() * mass;
  for (let i = 0; i < keep; i++) {
    r -= p[order[i]];
    if (r <= 0) return order[i];
  }
  return order[Math.max(0, keep - 1)];
}

export class Generator {
  /** Tokens of the current segment (not yet in memory). */
  #partial: number[] = [];
  /** How many of them have their keys and values in the decoder's cache. */
  #cached = 0;
  /** Segments folded into memory so far. */
  committed = 0;
  /** Segment forwards run (each completed segment, and a prompt's incomplete tail). */
  forwards = 0;
  /** One-token decode steps run. */
  decodes = 0;
  readonly #tokens: Uint32Array;
  readonly #targets: Uint32Array;
  #fresh = true;

  private constructor(
    readonly rt: Runtime,
    readonly cfg: Readonly<ModelConfig>,
    readonly model: InfiniGemma,
    readonly decoder: InfiniGemma,
  ) {
    const S = cfg.segmentLength;
    this.#tokens = new Uint32Array(S);
    this.#targets = new Uint32Array(S).fill(IGNORE_TARGET);
  }

  static async create(
    rt: Runtime,
    cfg: Readonly<ModelConfig>,
    params: Float32Array,
  ): Promise<Generator> {
    const model = await InfiniGemma.create(rt, cfg, { B: 1, T: cfg.segmentLength, train: false });
    model.setParams(params);
    const decoder = await InfiniGemma.create(rt, cfg, {
      B: 1,
      T: 1,
      train: false,
      decodeFor: model,
    });
    return new Generator(rt, cfg, model, decoder);
  }

  /**
   * Runs what the current segment's newest token needs and returns the logits after it: a
   * decode step when every earlier token of the segment is cached; else a segment forward
   * (filling the cache). A full segment always goes through the segment forward, which folds
   * it into memory.
   */
  async #step(wantLogits: boolean): Promise<Float32Array | null> {
    const S = this.cfg.segmentLength, n = this.#partial.length;
    const rec = this.rt.record("generate");
    if (this.#fresh) {
      this.model.resetMemory(rec);
      this.#fresh = false;
    }
    let logits: Promise<Float32Array> | null = null;
    if (n < S && this.#cached === n - 1) {
      this.decoder.setBatch(Uint32Array.of(this.#partial[n - 1]), Uint32Array.of(IGNORE_TARGET));
      this.decoder.recordDecode(rec, n - 1);
      if (wantLogits) logits = rec.read(this.decoder.recordLogits(rec, 0));
      this.decodes++;
    } else {
      this.#tokens.fill(0);
      this.#tokens.set(this.#partial);
      this.model.setBatch(this.#tokens, this.#targets);
      this.model.recordForward(rec, { head: false, kvCache: n < S ? this.decoder : undefined });
      if (wantLogits) logits = rec.read(this.model.recordLogits(rec, n - 1));
      this.forwards++;
    }
    this.#cached = n;
    if (n === S) {
      this.model.carryMemory(rec);
      this.committed++;
      this.#partial = [];
      this.#cached = 0;
    }
    this.rt.submit(rec);
    return logits ? await logits : null;
  }

  /**
   * Reads `prompt` (at least one token) and yields up to `maxTokens` new tokens, stopping
   * early at `stop` tokens.
   */
  async *generate(
    prompt: ArrayLike<number>,
    maxTokens: number,
    o: SampleOptions & {
      stop?: readonly number[];
      /** Sees the logits each new token is drawn from. */
      onLogits?: (logits: Float32Array) => void;
    },
  ): AsyncGenerator<number> {
    if (prompt.length === 0) throw new RangeError("generate: the prompt is empty");
    const S = this.cfg.segmentLength, V = this.cfg.vocabSize;
    const rng = new Rng(o.seed);
    // Every complete prompt segment except one that ends the prompt goes into memory now.
    for (let i = 0; i < prompt.length; i++) {
      const t = prompt[i];
      if (!(Number.isInteger(t) && t >= 0 && t < V)) {
        throw new RangeError(`generate: prompt token ${t} at ${i} is outside the vocabulary`);
      }
      this.#partial.push(t);
      if (this.#partial.length === S && i < prompt.length - 1) await this.#step(false);
    }
    for (let k = 0; k < maxTokens; k++) {
      const logits = (await this.#step(true))!;
      o.onLogits?.(logits);
      const next = sampleToken(logits, o, rng);
      yield next;
      if (o.stop?.includes(next)) return;
      this.#partial.push(next);
    }
  }

  /** Starts a new, independent context (memory cleared on the next forward). */
  reset(): void {
    this.#partial = [];
    this.#cached = 0;
    this.committed = 0;
    this.#fresh = true;
  }
}
