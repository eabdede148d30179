/**
 * Input discovery and reading: turns files (JSON array, JSON Lines, parquet, plain text) into a
 * stream of documents, each either a text or a problem naming the file and the record.
 *
 * A problem with one record (invalid UTF-8 or JSON, a missing, non-string or empty text field)
 * is yielded as a `bad` item, so the caller can stop or skip it (--skip-bad). A problem with
 * the file itself (unreadable, corrupt parquet, a broken array structure) is thrown as a
 * SourceError once the records before it have been yielded.
 *
 * @example
 * ```ts
 * const files = await findInputs(["datasets"]);
 * for await (const item of readSource(files[0], { textField: "completion" })) {
 *   if (item.kind === "doc") console.log(item.text.length);
 * }
 * ```
 */
import { UserError } from "../util/errors.ts";
import {
  firstInvalidUtf8,
  jsonArrayRecords,
  jsonErrorIndex,
  jsonErrorText,
  jsonLinesRecords,
  JsonStructureError,
  type RawRecord,
  utf8Length,
} from "./json_stream.ts";
import { readParquetRecords } from "./parquet.ts";
import {
  bad,
  type BadReason,
  checkText,
  errorText,
  fieldItem,
  isIoError,
  type Item,
  SourceError,
} from "./records.ts";

export { type BadReason, type Item, SourceError };

export type SourceFormat = "json" | "jsonl" | "parquet" | "txt";

/** Extensions read, and how. */
export const FORMATS: Record<string, SourceFormat> = {
  ".json": "json",
  ".jsonl": "jsonl",
  ".ndjson": "jsonl",
  ".parquet": "parquet",
  ".txt": "txt",
};

export interface SourceFile {
  /** The path as messages and the manifest show it (the input as given, joined with the rest). */
  path: string;
  format: SourceFormat;
  bytes: number;
}

export interface ReadOptions {
  /** The record field holding the text (JSON, JSON Lines, parquet). */
  textField: string;
  /** Called with the count of source bytes consumed, for progress. */
  onBytes?: (n: number) => void;
}

/**
 * The input files under the given paths, sorted by path within each folder (so that the order,
 * and with it the output, does not depend on the file system). Hidden files and folders are
 * passed over; a folder with nothing readable, or a path that does not exist, is an error.
 */
export async function findInputs(inputs: string[], exclude?: string): Promise<SourceFile[]> {
  const out: SourceFile[] = [];
  // Folders already walked (by real path): guards against link loops and, with `exclude`,
  // against reading the output folder (its manifest.json) as input.
  const seen = new Set<string>();
  if (exclude) {
    try {
      seen.add(await Deno.realPath(exclude));
    } catch { /* not there yet */ }
  }
  for (const input of inputs) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(input);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new UserError(
          `input '${input}' does not exist (put the corpus there, or pass --input FILE|DIR)`,
        );
      }
      throw new UserError(`input '${input}': cannot read (${errorText(e)})`);
    }
    if (info.isFile) {
      const format = formatOf(input);
      if (!format) {
        throw new UserError(
          `input '${input}': unknown format (expected ${Object.keys(FORMATS).join(", ")})`,
        );
      }
      out.push({ path: input, format, bytes: info.size });
      continue;
    }
    const found: SourceFile[] = [];
    const others: string[] = [];
    await walk(input, found, others, seen);
    if (found.length === 0) {
      const seen = others.length === 0
        ? "it is empty"
        : `it has ${others.length} other file(s), e.g. ${others.slice(0, 3).join(", ")}`;
      throw new UserError(
        `input folder '${input}' has no ${Object.keys(FORMATS).join(", ")} files (${seen})`,
      );
    }
    out.push(...found);
  }
  return out;
}

async function walk(
  dir: string,
  found: SourceFile[],
  others: string[],
  seen: Set<string>,
): Promise<void> {
  let entries: Deno.DirEntry[];
  try {
    const real = await Deno.realPath(dir);
    if (seen.has(real)) return;
    seen.add(real);
    entries = await Array.fromAsync(Deno.readDir(dir));
  } catch (e) {
    throw new UserError(`input folder '${dir}': cannot read (${errorText(e)})`);
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith(".")) continue;
    const path = dir.endsWith("/") ? dir + e.name : `${dir}/${e.name}`;
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(path);
    } catch {
      // A dangling link or a file that cannot be looked at: reading it reports the error.
      const format = formatOf(path);
      if (format) found.push({ path, format, bytes: 0 });
      continue;
    }
    if (info.isDirectory) await walk(path, found, others, seen);
    else if (e.name === "README.md") continue;
    else {
      const format = formatOf(path);
      if (format) found.push({ path, format, bytes: info.size });
      else others.push(path);
    }
  }
}

function formatOf(path: string): SourceFormat | undefined {
  const m = /\.[^./\\]+$/.exec(path.toLowerCase());
  return m ? FORMATS[m[0]] : undefined;
}

/** Documents of one file, in file order. */
export async function* readSource(file: SourceFile, opts: ReadOptions): AsyncGenerator<Item> {
  if (file.format === "parquet") {
    yield* readParquetRecords(file.path, opts.textField, opts.onBytes);
    return;
  }
  let f: Deno.FsFile;
  try {
    f = await Deno.open(file.path);
  } catch (e) {
    throw new SourceError(`${file.path}: cannot read (${errorText(e)})`);
  }
  try {
    if (file.format === "txt") {
      yield await readText(f, file.path, opts);
      return;
    }
    const records = file.format === "json"
      ? jsonArrayRecords(f, file.path, opts.onBytes)
      : jsonLinesRecords(f, file.path, opts.onBytes);
    try {
      for await (const r of records) yield recordItem(r, file, opts.textField);
    } catch (e) {
      if (e instanceof JsonStructureError) throw new SourceError(e.message);
      if (isIoError(e)) throw new SourceError(`${file.path}: cannot read (${errorText(e)})`);
      throw e;
    }
  } finally {
    f.close();
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

async function readText(f: Deno.FsFile, path: string, opts: ReadOptions): Promise<Item> {
  const MAX = 256 * 1024 * 1024;
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const buf = new Uint8Array(1 << 20);
    let n: number | null;
    try {
      n = await f.read(buf);
    } catch (e) {
      throw new SourceError(`${path}: cannot read (${errorText(e)})`);
    }
    if (n === null) break;
    chunks.push(buf.subarray(0, n));
    size += n;
    opts.onBytes?.(n);
    if (size > MAX) {
      throw new SourceError(`${path}: a .txt input is one document, and this one is over 256 MiB`);
    }
  }
  const bytes = new Uint8Array(size);
  let o = 0;
  for (const c of chunks) (bytes.set(c, o), o += c.length);
  const bom = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  let text: string;
  try {
    text = utf8.decode(bytes.subarray(bom));
  } catch {
    const at = bom + firstInvalidUtf8(bytes.subarray(bom));
    return bad("invalid UTF-8", `${path}: invalid UTF-8 at byte ${at}`);
  }
  return checkText(text, path);
}

function recordItem(r: RawRecord, file: SourceFile, field: string): Item {
  const where = file.format === "jsonl"
    ? `${file.path}: record ${r.index} (line ${r.line})`
    : `${file.path}: record ${r.index} (byte ${r.offset})`;
  let s: string;
  try {
    s = utf8.decode(r.bytes);
  } catch {
    return bad(
      "invalid UTF-8",
      `${where}: invalid UTF-8 at byte ${r.offset + firstInvalidUtf8(r.bytes)}`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(s);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    const at = r.offset + utf8Length(s, jsonErrorIndex(s, msg));
    return bad("invalid JSON", `${where}: invalid JSON at byte ${at}: ${jsonErrorText(msg)}`);
  }
  return fieldItem(value, field, where);
}
