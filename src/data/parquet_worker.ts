/**
 * Parquet decoding in a worker of its own. parquet-wasm reports a corrupt data page by
 * trapping ("RuntimeError: unreachable") inside a promise callback, where no try/catch can
 * reach it and the process would die with a stack trace; here the worker reports the crash
 * and the main thread turns it into a one-line error naming the file.
 *
 * Protocol (see parquet.ts): open {path, field} -> opened | fail; read {group} -> rows | fail;
 * any uncaught error -> crash.
 */
/// <reference lib="deno.worker" />
import * as pq from "parquet-wasm";
import { DataType, tableFromIPC } from "apache-arrow";
import { firstInvalidUtf8 } from "./json_stream.ts";

export type ParquetRequest =
  | { type: "open"; path: string; field: string }
  | { type: "read"; group: number };

/** A row's text, or why it has none: null, or invalid UTF-8 at a byte of a binary value. */
export type ParquetRow = string | { null: true } | { invalidUtf8At: number };

export type ParquetReply =
  | {
    type: "opened";
    fields: string[];
    /** The text field's Arrow type when present ("Utf8", "LargeUtf8", "Binary"...). */
    fieldType: string | null;
    textual: boolean;
    groups: { rows: number; bytes: number }[];
  }
  | { type: "rows"; rows: ParquetRow[] }
  | { type: "fail"; message: string }
  | { type: "crash"; message: string };

let file: Deno.FsFile | undefined;
let parquet: pq.ParquetFile | undefined;
let field = "";
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function post(r: ParquetReply) {
  self.postMessage(r);
}

self.addEventListener("error", (e) => {
  e.preventDefault();
  post({ type: "crash", message: e.message });
});
self.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  post({ type: "crash", message: String(e.reason) });
});

/** A Blob look-alike that reads byte ranges on demand, so a file is never loaded whole. */
function lazyBlob(f: Deno.FsFile, size: number): Blob {
  return {
    size,
    slice(start: number, end: number) {
      return {
        async arrayBuffer() {
          const buf = new Uint8Array(Math.max(0, Math.min(end, size) - start));
          await f.seek(start, Deno.SeekMode.Start);
          let off = 0;
          while (off < buf.length) {
            const n = await f.read(buf.subarray(off));
            if (n === null) throw new Error(`unexpected end of file at byte ${start + off}`);
            off += n;
          }
          return buf.buffer;
        },
      };
    },
  } as unknown as Blob;
}

self.onmessage = async (e: MessageEvent<ParquetRequest>) => {
  const req = e.data;
  try {
    if (req.type === "open") {
      field = req.field;
      file = await Deno.open(req.path);
      const size = (await file.stat()).size;
      parquet = await pq.ParquetFile.fromFile(lazyBlob(file, size));
      const schema = tableFromIPC(parquet.schema().intoIPCStream()).schema;
      const f = schema.fields.find((x) => x.name === field);
      const t = f?.type;
      post({
        type: "opened",
        fields: schema.fields.map((x) => x.name),
        fieldType: t ? String(t) : null,
        textual: t !== undefined &&
          (DataType.isUtf8(t) || DataType.isLargeUtf8(t) || DataType.isBinary(t) ||
            DataType.isLargeBinary(t)),
        groups: parquet.metadata().rowGroups().map((g) => ({
          rows: g.numRows(),
          bytes: g.compressedSize(),
        })),
      });
    } else {
      const table = tableFromIPC(
        (await parquet!.read({ rowGroups: [req.group], columns: [field] })).intoIPCStream(),
      );
      const col = table.getChild(field);
      const rows: ParquetRow[] = new Array(table.numRows);
      for (let i = 0; i < table.numRows; i++) {
        const v = col?.get(i) as string | Uint8Array | null | undefined;
        if (v === null || v === undefined) rows[i] = { null: true };
        else if (typeof v === "string") rows[i] = v;
        else {
          try {
            rows[i] = utf8.decode(v);
          } catch {
            rows[i] = { invalidUtf8At: firstInvalidUtf8(v) };
          }
        }
      }
      post({ type: "rows", rows });
    }
  } catch (err) {
    post({
      type: "fail",
      message: (err instanceof Error ? err.message : String(err)).split("\n")[0],
    });
  }
};
