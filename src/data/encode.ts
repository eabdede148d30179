/**
 * Tokenizing a batch of documents, the unit of work sent to a tokenizer worker, and the hash
 * that assigns each document to the train or validation split.
 */
import type { Tokenizer } from "./tokenizer.ts";

/** Token ids of several documents, concatenated, with each one's length and split hash. */
export interface EncodedBatch {
  tokens: Uint32Array<ArrayBuffer>;
  lengths: Uint32Array<ArrayBuffer>;
  hashes: Uint32Array<ArrayBuffer>;
}

/** What the workers report about their tokenizer (the parts the manifest records). */
export interface TokenizerInfo {
  name: string;
  hash: string;
  vocabSize: number;
  eosId: number;
}

export function tokenizerInfo(t: Tokenizer): TokenizerInfo {
  return { name: t.name, hash: t.hash, vocabSize: t.vocabSize, eosId: t.eosId };
}

/** Encodes each text (no end-of-text token; the packer adds it) and checks every id. */
export function encodeBatch(tok: Tokenizer, texts: string[], seed: number): EncodedBatch {
  const parts: ArrayLike<number>[] = new Array(texts.length);
  const lengths = new Uint32Array(texts.length);
  const hashes = new Uint32Array(texts.length);
  let total = 0;
  for (let d = 0; d < texts.length; d++) {
    parts[d] = tok.encodeTyped ? tok.encodeTyped(texts[d]) : tok.encode(texts[d]);
    lengths[d] = parts[d].length;
    hashes[d] = docHash(texts[d], seed);
    total += parts[d].length;
  }
  const tokens = new Uint32Array(total);
  let o = 0;
  for (const ids of parts) {
    if (!Array.isArray(ids)) {
      // An unsigned typed array: integers >= 0 already; only the upper bound to check.
      const typed = ids as Uint8Array | Uint16Array | Uint32Array;
      tokens.set(typed, o);
      o += typed.length;
      let max = 0;
      for (let i = 0; i < typed.length; i++) if (typed[i] > max) max = typed[i];
      if (max >= tok.vocabSize) {
        throw new Error(
          `tokenizer ${tok.name} produced id ${max}, outside 0..${tok.vocabSize - 1}`,
        );
      }
      continue;
    }
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!(id >= 0 && id < tok.vocabSize && Number.isInteger(id))) {
        throw new Error(`tokenizer ${tok.name} produced id ${id}, outside 0..${tok.vocabSize - 1}`);
      }
      tokens[o++] = id;
    }
  }
  return { tokens, lengths, hashes };
}

/**
 * A 32-bit hash of a document's text and the seed (FNV-1a over UTF-16 units, then a
 * murmur3 finaliser). The split depends on the text only, so duplicate documents always land
 * in the same split and cannot leak from train into validation.
 */
export function docHash(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ Math.imul(seed | 0, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** True when a document with this hash belongs to the validation split. */
export function isValidation(hash: number, valFraction: number): boolean {
  return hash < valFraction * 4294967296;
}
