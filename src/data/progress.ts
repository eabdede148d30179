/**
 * Progress of a long run on stderr: one line redrawn in place on a terminal, plain lines every
 * `plainEveryMs` otherwise (logs, CI), nothing when quiet.
 */

export interface ProgressStats {
  documents: number;
  tokens: number;
  /** Source bytes consumed so far, and in all. */
  bytes: number;
  totalBytes: number;
  skipped: number;
}

export interface ProgressOptions {
  /** "tty": redraw one line; "plain": a line now and then; "off": nothing. */
  mode: "tty" | "plain" | "off";
  plainEveryMs?: number;
  write?: (s: string) => void;
}

export class Progress {
  #mode: ProgressOptions["mode"];
  #every: number;
  #write: (s: string) => void;
  #start = performance.now();
  #last = 0;
  #drawn = false;

  constructor(o: ProgressOptions) {
    this.#mode = o.mode;
    this.#every = o.mode === "tty" ? 200 : o.plainEveryMs ?? 10_000;
    const enc = new TextEncoder();
    this.#write = o.write ?? ((s) => Deno.stderr.writeSync(enc.encode(s)));
    this.#last = this.#start;
  }

  /** Shows `s` if enough time has passed since the last line. */
  update(s: ProgressStats, phase = "reading"): void {
    if (this.#mode === "off") return;
    const now = performance.now();
    if (now - this.#last < this.#every) return;
    this.#last = now;
    this.#show(this.line(s, phase, now));
  }

  /** A one-off line (a phase change). */
  note(text: string): void {
    if (this.#mode === "off") return;
    this.#show(`gen: ${text}`);
  }

  /** A line that stays (a warning), printed above the redrawn progress line. */
  message(text: string): void {
    if (this.#mode === "off") return;
    this.#write(this.#mode === "tty" && this.#drawn ? `\r\x1b[2K${text}\n` : `${text}\n`);
    this.#drawn = false;
  }

  /** Ends the redrawn line so that what follows starts on a fresh one. */
  done(): void {
    if (this.#mode === "tty" && this.#drawn) this.#write("\n");
    this.#drawn = false;
  }

  #show(line: string): void {
    if (this.#mode === "tty") {
      this.#write(`\r\x1b[2K${line}`);
      this.#drawn = true;
    } else this.#write(line + "\n");
  }

  /** "gen: 1,234 docs  2.1M tokens  3.4 MB/s  45%  ETA 3m12s". */
  line(s: ProgressStats, phase: string, now = performance.now()): string {
    const secs = Math.max(1e-3, (now - this.#start) / 1000);
    const mbps = s.bytes / 1e6 / secs;
    const parts = [
      `gen: ${phase}`,
      `${s.documents.toLocaleString("en-US")} docs`,
      `${compact(s.tokens)} tokens`,
      `${mbps.toFixed(1)} MB/s`,
      `${compact(s.tokens / secs)} tok/s`,
    ];
    if (s.totalBytes > 0) {
      const frac = Math.min(1, s.bytes / s.totalBytes);
      parts.push(`${(frac * 100).toFixed(0)}%`);
      if (frac > 0.001 && frac < 1) parts.push(`ETA ${duration((secs * (1 - frac)) / frac)}`);
    }
    if (s.skipped > 0) parts.push(`${s.skipped} skipped`);
    return parts.join("  ");
  }
}

/** 1234567 -> "1.23M". */
export function compact(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n));
}

/** Seconds as "42s", "3m12s", "1h05m". */
export function duration(secs: number): string {
  const s = Math.round(secs);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
