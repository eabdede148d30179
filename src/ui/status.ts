/**
 * A status line for long work on stderr: redrawn in place on a terminal (at most every 200 ms),
 * a plain line every `plainEveryMs` otherwise (logs, CI: so a slow run still shows it is
 * moving), nothing when off.
 */
export class StatusLine {
  #mode: "tty" | "plain" | "off";
  #every: number;
  #write: (s: string) => void;
  #last = -Infinity;
  #drawn = false;

  constructor(
    o: { mode?: "tty" | "plain" | "off"; plainEveryMs?: number; write?: (s: string) => void } = {},
  ) {
    this.#mode = o.mode ?? (Deno.stderr.isTerminal() ? "tty" : "plain");
    this.#every = this.#mode === "tty" ? 200 : o.plainEveryMs ?? 10_000;
    const enc = new TextEncoder();
    this.#write = o.write ?? ((s) => Deno.stderr.writeSync(enc.encode(s)));
  }

  /** Shows `text` if enough time has passed since the last line (always with `force`). */
  update(text: string, force = false): void {
    if (this.#mode === "off") return;
    const now = performance.now();
    if (!force && now - this.#last < this.#every) return;
    this.#last = now;
    if (this.#mode === "tty") {
      this.#write(`\r\x1b[2K${text}`);
      this.#drawn = true;
    } else this.#write(`${text}\n`);
  }

  /** Clears the redrawn line so that what follows starts clean. */
  done(): void {
    if (this.#mode === "tty" && this.#drawn) this.#write("\r\x1b[2K");
    this.#drawn = false;
  }
}
