/**
 * Parquet input (the Hugging Face converted form of a dataset): one row group at a time, only
 * the text column, the file read by byte ranges rather than whole. Decoding runs in a worker
 * (parquet_worker.ts) so that a corrupt file is an error message, not a crash.
 */
import type { ParquetReply, ParquetRequest } from "./parquet_worker.ts";
import { checkText, type Item, SourceError } from "./records.ts";

/** Records of one parquet file; file-level problems are thrown as SourceError. */
export async function* readParquetRecords(
  path: string,
  field: string,
  onBytes?: (n: number) => void,
): AsyncGenerator<Item> {
  const worker = new Worker(new URL("./parquet_worker.ts", import.meta.url).href, {
    type: "module",
  });
  let pending: { resolve(r: ParquetReply): void } | undefined;
  const crash = (message: string) => pending?.resolve({ type: "crash", message });
  worker.onmessage = (e: MessageEvent<ParquetReply>) => {
    if (e.data.type === "crash") crash(e.data.message);
    else pending?.resolve(e.data);
  };
  worker.onerror = (e) => {
    e.preventDefault();
    crash(e.message);
  };
  const call = (req: ParquetRequest, what: string): Promise<ParquetReply> =>
    new Promise<ParquetReply>((resolve) => {
      pending = { resolve };
      worker.postMessage(req);
    }).then((r) => {
      pending = undefined;
      if (r.type === "fail") {
        throw new SourceError(`${path}: ${what}: ${r.message.replace(/^Error: /, "")}`);
      }
      if (r.type === "crash") {
        throw new SourceError(
          `${path}: ${what}: corrupt parquet data (the reader failed: ${
            r.message.replace(/^Uncaught /, "")
          })`,
        );
      }
      return r;
    });
  try {
    const opened = await call({ type: "open", path, field }, "not a readable parquet file");
    if (opened.type !== "opened") throw new Error("parquet worker: unexpected reply");
    if (opened.fieldType === null) {
      throw new SourceError(
        `${path}: no column '${field}' (it has ${opened.fields.join(", ")}; see --text-field)`,
      );
    }
    if (!opened.textual) {
      throw new SourceError(
        `${path}: column '${field}' holds ${opened.fieldType}, not strings (see --text-field)`,
      );
    }
    let row = 0;
    for (let g = 0; g < opened.groups.length; g++) {
      const r = await call({ type: "read", group: g }, `row group ${g}`);
      if (r.type !== "rows") throw new Error("parquet worker: unexpected reply");
      for (const v of r.rows) {
        row++;
        const where = `${path}: record ${row} (row group ${g})`;
        if (typeof v === "string") yield checkText(v, where);
        else if ("null" in v) {
          yield {
            kind: "bad",
            reason: "not a string",
            message: `${where}: field '${field}' is null`,
          };
        } else {
          yield {
            kind: "bad",
            reason: "invalid UTF-8",
            message: `${where}: invalid UTF-8 at byte ${v.invalidUtf8At} of field '${field}'`,
          };
        }
      }
      onBytes?.(opened.groups[g].bytes);
    }
  } finally {
    worker.terminate();
  }
}
