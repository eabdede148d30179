/**
 * Ctrl-C for long-running work: the first SIGINT asks the work to stop at its next safe point
 * (the trainer saves a checkpoint there); the second ends the process at once with status 130.
 * Both take effect immediately even while the main thread is held inside a GPU submit, because
 * the listener runs in a worker of its own (interrupt_worker.ts) and the count is shared
 * memory, read without waiting for the event loop.
 *
 * @example
 * ```ts
 * const ctrlC = await InterruptWatcher.start({
 *   notice: "\ninterrupt: finishing this step (Ctrl-C again to quit now)\n",
 *   second: "\nsecond interrupt: exiting\n",
 * });
 * try {
 *   while (!ctrlC.interrupted && more()) step();
 * } finally {
 *   ctrlC.stop();
 * }
 * ```
 */

export interface InterruptMessages {
  /** Printed to stderr at the first SIGINT (with its own line breaks). */
  notice: string;
  /** Printed to stderr at the second SIGINT, just before the process ends. */
  second: string;
}

export class InterruptWatcher {
  readonly #count: Int32Array;
  readonly #stop: () => void;

  private constructor(count: Int32Array, stop: () => void) {
    this.#count = count;
    this.#stop = stop;
  }

  /**
   * Starts listening (resolves once the listener is in place). Where the worker cannot start,
   * a listener on this thread does the same, acting only between steps; where signals are
   * unavailable, Ctrl-C keeps its default action and `interrupted` stays false.
   */
  static async start(messages: InterruptMessages): Promise<InterruptWatcher> {
    const count = new Int32Array(new SharedArrayBuffer(4));
    let worker: Worker | null = null;
    try {
      worker = new Worker(new URL("./interrupt_worker.ts", import.meta.url).href, {
        type: "module",
      });
      const w = worker;
      await new Promise<void>((resolve, reject) => {
        w.onmessage = () => resolve();
        w.onerror = (e) => {
          e.preventDefault();
          reject(new Error(e.message));
        };
        w.postMessage({ count: count.buffer, ...messages });
      });
      return new InterruptWatcher(count, () => w.terminate());
    } catch {
      worker?.terminate();
    }
    const enc = new TextEncoder();
    const onSigint = () => {
      const n = Atomics.add(count, 0, 1) + 1;
      Deno.stderr.writeSync(enc.encode(n === 1 ? messages.notice : messages.second));
      if (n >= 2) Deno.exit(130);
    };
    try {
      Deno.addSignalListener("SIGINT", onSigint);
    } catch {
      return new InterruptWatcher(count, () => {});
    }
    return new InterruptWatcher(count, () => Deno.removeSignalListener("SIGINT", onSigint));
  }

  /** SIGINTs received so far. */
  get count(): number {
    return Atomics.load(this.#count, 0);
  }

  /**
   * Whether a SIGINT asked the work to stop. After a second one the process is already ending
   * (or, where the worker may not signal it, ends here with status 130).
   */
  get interrupted(): boolean {
    const n = this.count;
    if (n >= 2) Deno.exit(130);
    return n >= 1;
  }

  /** Stops listening; Ctrl-C has its default action again. */
  stop(): void {
    this.#stop();
  }
}
