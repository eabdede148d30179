/**
 * What a source yields: a document's text, or a bad record with a one-line message naming the
 * file and the record. Shared by every input format.
 */
import { UserError } from "../util/errors.ts";

/** A problem with a whole file: stops it (the records before were good). */
export class SourceError extends UserError {
  override name = "SourceError";
}

/** Why a record was bad: the manifest counts skipped records by these. */
export type BadReason =
  | "invalid UTF-8"
  | "invalid JSON"
  | "not an object"
  | "missing field"
  | "not a string"
  | "empty document"
  | "unpaired surrogate";

export type Item =
  | { kind: "doc"; text: string }
  | { kind: "bad"; reason: BadReason; message: string };

/** The text field of a parsed record, or what is wrong with it. */
export function fieldItem(value: unknown, field: string, where: string): Item {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return bad("not an object", `${where}: the record is ${kindOf(value)}, not an object`);
  }
  const rec = value as Record<string, unknown>;
  if (!Object.hasOwn(rec, field)) {
    const keys = Object.keys(rec);
    const has = keys.length === 0
      ? "it has no fields"
      : `it has ${keys.slice(0, 12).join(", ")}${keys.length > 12 ? ", ..." : ""}`;
    return bad("missing field", `${where}: no field '${field}' (${has}; see --text-field)`);
  }
  const text = rec[field];
  if (typeof text !== "string") {
    return bad("not a string", `${where}: field '${field}' is ${kindOf(text)}, not a string`);
  }
  return checkText(text, where);
}

/** Empty text and unpaired surrogates (from "\ud800" escapes) are bad records. */
export function checkText(text: string, where: string): Item {
  if (!/\S/.test(text)) {
    return bad("empty document", `${where}: empty document${text.length ? " (only spaces)" : ""}`);
  }
  if (!text.isWellFormed()) {
    const i = [...text.matchAll(/[\ud800-\udfff]/g)].find((m) => {
      const c = text.charCodeAt(m.index);
      const next = text.charCodeAt(m.index + 1);
      const prev = text.charCodeAt(m.index - 1);
      return c <= 0xdbff
        ? !(next >= 0xdc00 && next <= 0xdfff)
        : !(prev >= 0xd800 && prev <= 0xdbff);
    })?.index ?? 0;
    return bad(
      "unpaired surrogate",
      `${where}: the text has an unpaired surrogate (\\u${
        text.charCodeAt(i).toString(16)
      }) at character ${i}; it is not valid Unicode`,
    );
  }
  return { kind: "doc", text };
}

export function bad(reason: BadReason, message: string): Item {
  return { kind: "bad", reason, message };
}

function kindOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  if (typeof v === "object") return "an object";
  if (typeof v === "boolean") return "a boolean";
  if (typeof v === "number") return "a number";
  return `a ${typeof v}`;
}

/** An error from the file system (Deno.errors.*), as opposed to a bug. */
export function isIoError(e: unknown): boolean {
  return Object.values(Deno.errors).some((C) => e instanceof C);
}

export function errorText(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}
