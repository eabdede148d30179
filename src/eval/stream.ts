/**
 * Streaming evaluation: sequences of any length are fed through the model a fixed-size chunk
 * of segments at a time, with each layer's memory (M, z) carried from chunk to chunk. The
 * model's buffers are allocated once for (batch, chunkSegments * S) rows, so GPU memory does
 * not depend on the length of what is read.
 *
 * A chunk of k segments is the training forward with T = k * S (the memory recurrence runs
 * over those k segments inside the Infini op, then M_out is copied to M_in for the next
 * chunk), so streaming with k = 1 and scoring in one shot give the same numbers; a test
 * checks it.
 *
 * Variants (ablations on the same weights):
 *   memory     the model as trained: sigmoid(beta) A_mem + (1 - sigmoid(beta)) A_dot
 *   off        sigmoid(beta) forced to 0: local attention only, at full weight
 *   zero-read  the memory read zeroed, the learned gate kept: (1 - sigmoid(beta)) A_dot
 *   reset      memory cleared at every segment (each segment only sees itself)
 */
import type { Runtime } from "../gpu/runtime.ts";
import type { ModelConfig } from "../model/config.ts";
import { GATE, InfiniGemma, targetIsArgmax } from "../model/model.ts";
import { IGNORE_TARGET as IGNORE } from "../util/targets.ts";

export type Variant = "memory" | "off" | "zero-read" | "reset";
export const VARIANTS: readonly Variant[] = ["memory", "off", "zero-read", "reset"];
export const VARIANT_HELP: Record<Variant, string> = {
  memory: "memory on, as trained",
  off: "memory off: sigmoid(beta) = 0",
  "zero-read": "memory read zeroed, learned gate kept",
  reset: "memory reset at every segment",
};

/** One sequence to score: tokens and next-token targets (IGNORE where none). */
export interface Sequence {
  tokens: Uint32Array;
  targets: Uint32Array;
}

/** What scoring one sequence gives back. */
export interface Scored {
  /** NLL of every position (0 where the target is IGNORE). */
  nll: Float32Array;
  /** For the rows asked for: whether the target is the arg-max (greedy) prediction. */
  greedy?: Map<number, boolean>;
}

export interface StreamOptions {
  /** Sequences scored side by side. */
  batch: number;
  /** Segments per GPU call (the chunk); memory is carried between chunks. */
  chunkSegments: number;
}

export class Streamer {
  #reset: InfiniGemma | null = null;

  private constructor(
    readonly rt: Runtime,
    readonly cfg: Readonly<ModelConfig>,
    readonly opts: Readonly<StreamOptions>,
    readonly model: InfiniGemma,
    readonly params: Float32Array,
  ) {}

  static async create(
    rt: Runtime,
    cfg: Readonly<ModelConfig>,
    params: Float32Array,
    opts: StreamOptions,
  ): Promise<Streamer> {
    const model = await InfiniGemma.create(rt, cfg, {
      B: opts.batch,
      T: opts.chunkSegments * cfg.segmentLength,
      train: false,
    });
    model.setParams(params);
    return new Streamer(rt, cfg, opts, model, params);
  }

  /** Tokens per chunk of one sequence. */
  get chunkTokens(): number {
    return this.opts.chunkSegments * this.cfg.segmentLength;
  }

  /**
   * The model for the `reset` variant: the same rows laid out as B * k sequences of one
   * segment, so that every segment starts from an empty memory (made on first use).
   */
  async #resetModel(): Promise<InfiniGemma> {
    if (!this.#reset) {
      this.#reset = await InfiniGemma.create(this.rt, this.cfg, {
        B: this.opts.batch * this.opts.chunkSegments,
        T: this.cfg.segmentLength,
        train: false,
      });
      this.#reset.setParams(this.params);
    }
    return this.#reset;
  }

  /**
   * Scores sequences (any lengths) under a variant. `greedyRows(i)` names positions of
   * sequence i whose greedy correctness is wanted (e.g. a passkey's answer digits).
   * `onChunk` reports progress (chunks done, chunks in all).
   */
  async score(
    seqs: readonly Sequence[],
    variant: Variant,
    o: {
      greedyRows?: (i: number) => readonly number[];
      onChunk?: (done: number, total: number) => void;
    } = {},
  ): Promise<Scored[]> {
    const B = this.opts.batch, CT = this.chunkTokens;
    const model = variant === "reset" ? await this.#resetModel() : this.model;
    const gate = variant === "off"
      ? GATE.off
      : variant === "zero-read"
      ? GATE.zeroRead
      : GATE.learned;
    const out: Scored[] = seqs.map((s) => {
      if (s.tokens.length !== s.targets.length) {
        throw new RangeError(`score: ${s.tokens.length} tokens but ${s.targets.length} targets`);
      }
      return { nll: new Float32Array(s.tokens.length) };
    });
    let totalChunks = 0;
    for (let g = 0; g < seqs.length; g += B) {
      const longest = Math.max(...seqs.slice(g, g + B).map((s) => s.tokens.length), 1);
      totalChunks += Math.ceil(longest / CT);
    }
    let done = 0;
    // Readbacks in flight: awaited a few chunks later so the queue never drains.
    const pending: Promise<void>[] = [];
    const tokens = new Uint32Array(B * CT), targets = new Uint32Array(B * CT);
    for (let g = 0; g < seqs.length; g += B) {
      const group = seqs.slice(g, g + B);
      const longest = Math.max(...group.map((s) => s.tokens.length), 1);
      const nChunks = Math.ceil(longest / CT);
      for (let c = 0; c < nChunks; c++) {
        const start = c * CT;
        tokens.fill(0);
        targets.fill(IGNORE);
        const wanted: { seq: number; pos: number; row: number }[] = [];
        group.forEach((s, b) => {
          const end = Math.min(s.tokens.length, start + CT);
          if (end <= start) return;
          tokens.set(s.tokens.subarray(start, end), b * CT);
          targets.set(s.targets.subarray(start, end), b * CT);
          for (const p of o.greedyRows?.(g + b) ?? []) {
            if (p >= start && p < end) wanted.push({ seq: g + b, pos: p, row: b * CT + p - start });
          }
        });
        model.setBatch(tokens, targets);
        const rec = this.rt.record(`eval.${variant}`);
        if (c === 0 || variant === "reset") model.resetMemory(rec);
        model.recordForward(rec, { gate });
        const nll = rec.read(model.nll);
        const head = wanted.length ? rec.read(model.headState) : null;
        if (variant !== "reset") model.carryMemory(rec);
        this.rt.submit(rec);
        const spans = group.map((s) => [start, Math.min(s.tokens.length, start + CT)] as const);
        pending.push((async () => {
          const v = await nll;
          spans.forEach(([a, e], b) => {
            if (e > a) out[g + b].nll.set(v.subarray(b * CT, b * CT + (e - a)), a);
          });
          if (head) {
            const hs = await head;
            for (const w of wanted) {
              const r = out[w.seq].greedy ??= new Map();
              r.set(w.pos, targetIsArgmax(hs, w.row));
            }
          }
          o.onChunk?.(++done, totalChunks);
        })());
        if (pending.length > 3) await pending.shift();
      }
    }
    await Promise.all(pending);
    return out;
  }
}

/** Next-token targets of a token stream: targets[i] = tokens[i + 1], IGNORE at the end. */
export function nextTokenTargets(tokens: Uint32Array): Uint32Array {
  const t = new Uint32Array(tokens.length);
  t.set(tokens.subarray(1));
  if (t.length) t[t.length - 1] = IGNORE;
  return t;
}
