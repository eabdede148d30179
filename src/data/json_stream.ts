/**
 * Streaming splitters for the two JSON inputs: a file holding one top-level array of records
 * (the Wikipedia dump's format, about 1 GB: never read into one string, since V8 caps strings
 * near 512 MB), and JSON Lines. They find each record's bytes and its file offset; decoding
 * and parsing a record is the caller's, so that a bad record can be skipped and the rest read.
 *
 * Memory is one read block plus the largest record, whatever the file's size.
 *
 * @example
 * ```ts
 * using file = await Deno.open("wiki.json");
 * for await (const r of jsonArrayRecords(file, "wiki.json")) {
 *   const obj = JSON.parse(new TextDecoder().decode(r.bytes)); // r.bytes is valid until the next
 * }
 * ```
 */

/** One record's bytes (a view valid only until the next record is asked for) and place. */
export interface RawRecord {
  bytes: Uint8Array;
  /** Byte offset of the record's first byte in the file. */
  offset: number;
  /** 1-based record number. */
  index: number;
  /** 1-based line of the record's first byte (JSON Lines only counts lines; 0 for arrays). */
  line: number;
}

/** A structural error that stops reading the file (the records before it were good). */
export class JsonStructureError extends Error {
  override name = "JsonStructureError";
}

/** Largest record accepted: past this a "record" is almost surely a broken file. */
export const MAX_RECORD_BYTES = 256 * 1024 * 1024;
const BLOCK = 1 << 20;

/** Anything with Deno.FsFile's `read`. */
export interface Reader {
  read(p: Uint8Array): Promise<number | null>;
}

/** A growable byte window over a file: bytes [start, len) of `buf` are file bytes from `base`. */
class Window {
  buf = new Uint8Array(2 * BLOCK);
  len = 0;
  /** File offset of buf[0]. */
  base = 0;
  eof = false;
  constructor(private reader: Reader, private onBytes?: (n: number) => void) {}

  /** Drops bytes before `keep`, reads one more block; returns the shift applied to indices. */
  async fill(keep: number): Promise<number> {
    if (keep > 0) {
      this.buf.copyWithin(0, keep, this.len);
      this.len -= keep;
      this.base += keep;
    }
    if (this.buf.length - this.len < BLOCK) {
      const bigger = new Uint8Array(Math.max(this.buf.length * 2, this.len + BLOCK));
      bigger.set(this.buf.subarray(0, this.len));
      this.buf = bigger;
    }
    const n = await this.reader.read(this.buf.subarray(this.len, this.len + BLOCK));
    if (n === null) this.eof = true;
    else {
      this.len += n;
      this.onBytes?.(n);
    }
    return keep;
  }
}

/** Reads the first bytes; returns 3 when they are a UTF-8 byte order mark, else 0. */
async function skipBom(w: Window): Promise<number> {
  while (w.len < 3 && !w.eof) await w.fill(0);
  return w.buf[0] === 0xef && w.buf[1] === 0xbb && w.buf[2] === 0xbf ? 3 : 0;
}

const enum S {
  Start,
  First,
  AfterComma,
  InRecord,
  AfterRecord,
  End,
}

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/**
 * Records of a file holding one JSON array. Only the array's structure is checked here (the
 * brackets, commas and string quoting that delimit records); each record's own syntax is
 * checked when the caller parses it. Throws JsonStructureError with the byte offset.
 */
export async function* jsonArrayRecords(
  reader: Reader,
  file: string,
  onBytes?: (n: number) => void,
): AsyncGenerator<RawRecord> {
  const w = new Window(reader, onBytes);
  let state = S.Start;
  let pos = 0;
  let start = 0; // first byte of the current record, in buf
  let depth = 0;
  let inString = false;
  let count = 0;
  const fail = (at: number, what: string): never => {
    throw new JsonStructureError(`${file}: invalid JSON at byte ${w.base + at}: ${what}`);
  };
  pos = await skipBom(w);
  for (;;) {
    if (pos >= w.len) {
      if (w.eof) break;
      const shift = await w.fill(state === S.InRecord ? start : pos);
      pos -= shift;
      start -= shift;
      if (state === S.InRecord && w.len - start > MAX_RECORD_BYTES) {
        fail(start, `record ${count + 1} is larger than ${MAX_RECORD_BYTES >> 20} MiB`);
      }
      continue;
    }
    const buf = w.buf;
    switch (state) {
      case S.Start: {
        const c = buf[pos];
        if (isWs(c)) pos++;
        else if (c === 0x5b) {
          state = S.First;
          pos++;
        } else {
          fail(
            pos,
            `expected '[' (a .json input holds one array of records; use .jsonl for one record per line)`,
          );
        }
        break;
      }
      case S.First:
      case S.AfterComma: {
        const c = buf[pos];
        if (isWs(c)) pos++;
        else if (c === 0x5d) {
          if (state === S.AfterComma) fail(pos, `a ',' after record ${count} is followed by ']'`);
          state = S.End;
          pos++;
        } else if (c === 0x2c) {
          fail(pos, count === 0 ? "',' before the first record" : `two ',' after record ${count}`);
        } else {
          state = S.InRecord;
          start = pos;
          depth = 0;
          inString = false;
        }
        break;
      }
      case S.InRecord: {
        let end = -1;
        while (pos < w.len) {
          if (inString) {
            // Jump to the next quote; it closes the string unless an odd run of '\' precedes it.
            const q = buf.subarray(0, w.len).indexOf(0x22, pos);
            if (q < 0) {
              pos = w.len;
              break;
            }
            let b = q - 1;
            while (buf[b] === 0x5c) b--;
            pos = q + 1;
            if ((q - 1 - b) % 2 === 0) {
              inString = false;
              if (depth === 0) {
                end = pos;
                break;
              }
            }
            continue;
          }
          const c = buf[pos];
          if (c === 0x22) {
            inString = true;
            pos++;
          } else if (c === 0x7b || c === 0x5b) {
            depth++;
            pos++;
          } else if (c === 0x7d || c === 0x5d) {
            if (depth === 0) {
              end = pos;
              break;
            }
            depth--;
            pos++;
            if (depth === 0) {
              end = pos;
              break;
            }
          } else if (depth === 0 && (c === 0x2c || isWs(c))) {
            end = pos;
            break;
          } else pos++;
        }
        if (end >= 0) {
          count++;
          state = S.AfterRecord;
          yield { bytes: buf.subarray(start, end), offset: w.base + start, index: count, line: 0 };
        }
        break;
      }
      case S.AfterRecord: {
        const c = buf[pos];
        if (isWs(c)) pos++;
        else if (c === 0x2c) {
          state = S.AfterComma;
          pos++;
        } else if (c === 0x5d) {
          state = S.End;
          pos++;
        } else fail(pos, `expected ',' or ']' after record ${count}`);
        break;
      }
      case S.End: {
        if (isWs(buf[pos])) pos++;
        else fail(pos, "unexpected data after the array's closing ']'");
        break;
      }
    }
  }
  if (state === S.End) return;
  const at = w.base + w.len;
  if (state === S.Start) {
    throw new JsonStructureError(
      at === 0 ? `${file}: empty file` : `${file}: invalid JSON: no '[' before the end of file`,
    );
  }
  if (state === S.InRecord) {
    throw new JsonStructureError(
      `${file}: invalid JSON at byte ${at}: the file ends inside record ${
        count + 1
      } (which starts at byte ${w.base + start})`,
    );
  }
  throw new JsonStructureError(
    `${file}: invalid JSON at byte ${at}: the file ends before the array's closing ']'`,
  );
}

/** Records of a JSON Lines file: one per non-blank line. */
export async function* jsonLinesRecords(
  reader: Reader,
  file: string,
  onBytes?: (n: number) => void,
): AsyncGenerator<RawRecord> {
  const w = new Window(reader, onBytes);
  let pos = 0; // start of the current line, in buf
  let scan = 0; // where the search for '\n' resumes
  let line = 0;
  let count = 0;
  pos = scan = await skipBom(w);
  for (;;) {
    let nl = w.buf.subarray(0, w.len).indexOf(0x0a, scan);
    if (nl < 0) {
      if (!w.eof) {
        scan = w.len; // no '\n' up to here
        const shift = await w.fill(pos);
        pos -= shift;
        scan -= shift;
        if (w.len - pos > MAX_RECORD_BYTES) {
          throw new JsonStructureError(
            `${file}: line ${line + 1} is longer than ${MAX_RECORD_BYTES >> 20} MiB`,
          );
        }
        continue;
      }
      if (pos >= w.len) return;
      nl = w.len; // the last line has no newline
    }
    line++;
    let end = nl;
    if (end > pos && w.buf[end - 1] === 0x0d) end--;
    const s = pos;
    let blank = true;
    for (let i = s; i < end; i++) {
      if (!isWs(w.buf[i])) {
        blank = false;
        break;
      }
    }
    if (!blank) {
      count++;
      yield { bytes: w.buf.subarray(s, end), offset: w.base + s, index: count, line };
    }
    pos = nl + 1;
    scan = pos;
  }
}

/**
 * Index of the first byte that is not valid UTF-8 (as TextDecoder's `fatal` mode judges:
 * no overlong forms, no surrogates, nothing past U+10FFFF), or -1 when all are valid.
 */
export function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    let n: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) n = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c === 0xe0) lo = 0xa0;
      if (c === 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c === 0xf0) lo = 0x90;
      if (c === 0xf4) hi = 0x8f;
    } else return i;
    for (let k = 1; k <= n; k++) {
      const d = b[i + k];
      if (d === undefined) return i;
      if (k === 1 ? d < lo || d > hi : d < 0x80 || d > 0xbf) return i;
    }
    i += n + 1;
  }
  return -1;
}

/**
 * Where JSON.parse failed in `s` (a UTF-16 index), for messages that do not say ("Unexpected
 * token 'x', ... is not valid JSON"). A small validator: it only runs on the error path.
 */
export function jsonErrorIndex(s: string, message: string): number {
  const m = /at position (\d+)/.exec(message);
  if (m) return Number(m[1]);
  let i = 0;
  const ws = () => {
    while (i < s.length && " \t\n\r".includes(s[i])) i++;
  };
  const fail = (): never => {
    throw i;
  };
  const lit = (w: string) => {
    for (const ch of w) if (s[i++] !== ch) (i--, fail());
  };
  const str = () => {
    i++;
    for (;;) {
      if (i >= s.length) fail();
      const c = s.charCodeAt(i);
      if (c === 0x22) return void i++;
      if (c < 0x20) fail();
      if (c === 0x5c) {
        i++;
        const e = s[i];
        if (e === "u") {
          for (let k = 1; k <= 4; k++) if (!/[0-9a-fA-F]/.test(s[i + k] ?? "")) (i += k, fail());
          i += 5;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i++;
        else fail();
      } else i++;
    }
  };
  const num = () => {
    const r = /-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
    r.lastIndex = i;
    const mm = r.exec(s);
    if (!mm || mm[0] === "" || mm[0] === "-") fail();
    i += mm![0].length;
  };
  const value = (): void => {
    ws();
    const c = s[i];
    if (c === "{") {
      i++;
      ws();
      if (s[i] === "}") return void i++;
      for (;;) {
        ws();
        if (s[i] !== '"') fail();
        str();
        ws();
        if (s[i] !== ":") fail();
        i++;
        value();
        ws();
        if (s[i] === ",") i++;
        else if (s[i] === "}") return void i++;
        else fail();
      }
    } else if (c === "[") {
      i++;
      ws();
      if (s[i] === "]") return void i++;
      for (;;) {
        value();
        ws();
        if (s[i] === ",") i++;
        else if (s[i] === "]") return void i++;
        else fail();
      }
    } else if (c === '"') str();
    else if (c === "t") lit("true");
    else if (c === "f") lit("false");
    else if (c === "n") lit("null");
    else num();
  };
  try {
    value();
    ws();
    return i;
  } catch (at) {
    return typeof at === "number" ? Math.min(at, s.length) : 0;
  }
}

/** V8's JSON.parse message without its echo of the input and position. */
export function jsonErrorText(message: string): string {
  return message
    .replace(/, ".*" is not valid JSON$/s, "")
    .replace(/ in JSON at position \d+( \(line \d+ column \d+\))?/, "")
    .split("\n")[0];
}

/** UTF-8 byte length of a string's prefix of `n` UTF-16 units. */
export function utf8Length(s: string, n = s.length): number {
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}
